"""The API documents itself: /openapi.json names every route's parameters, bodies and answers, and the
/docs page loads nothing from another host (its Swagger UI files come from node_modules, served locally).

No stack: the document is built from the routes' declarations; nothing is started.
"""
from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from framelog.api.app import SWAGGER_DIST, create_app, create_ops_app
from tests.unit.support.api_routes import routes

UNDOCUMENTED_BODIES = {   # (method, path): why the JSON body is documented as a schema, not a model
    ("POST", "/v1/events"): "JSON, gzip or a beacon's text/plain, parsed and capped by the route itself",
}


@pytest.fixture(scope="module")
def app(config):
    return create_app(config, warm=())


@pytest.fixture(scope="module")
def ops(app):
    with TestClient(create_ops_app(app)) as client:
        yield client


@pytest.fixture(scope="module")
def document(ops) -> dict:
    r = ops.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def api_routes(app) -> list[APIRoute]:
    found = [r for r in routes(app) if r.include_in_schema]
    assert len(found) >= 30, [r.path for r in found]
    return found


def test_every_route_is_in_the_document_with_its_path_parameters(app, document):
    paths = document["paths"]
    for route in api_routes(app):
        for method in route.methods:
            op = paths.get(route.path, {}).get(method.lower())
            assert op is not None, (method, route.path)
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([^}]+)\}", route.path)), (method, route.path, declared)
            assert op.get("summary") or op.get("description"), (method, route.path)


def test_every_route_documents_its_answers_and_its_errors_in_one_shape(app, document):
    for route in api_routes(app):
        if route.path == "/healthz":
            continue
        for method in route.methods:
            responses = document["paths"][route.path][method.lower()]["responses"]
            ok = [s for s in responses if s.startswith("2")]
            assert ok, (method, route.path)
            errors = {s: r for s, r in responses.items() if s[0] in "45"}
            assert errors, (method, route.path, "no refusal documented")
            for status, answer in errors.items():
                schema = answer["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, route.path, status)
            assert "422" not in responses, (method, route.path, "validation errors are 400 ErrorBody")


def test_json_answers_and_bodies_have_models(app, document):
    """A 200/201 JSON answer names a schema with properties; a JSON request body too."""
    schemas = document["components"]["schemas"]

    def resolved(schema: dict) -> dict:
        branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:                        # an optional body: the model or nothing
            schema = branches[0]
        ref = schema.get("$ref")
        return schemas[ref.rsplit("/", 1)[1]] if ref else schema

    for route in api_routes(app):
        for method in route.methods:
            op = document["paths"][route.path][method.lower()]
            for status, answer in op["responses"].items():
                json_schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and json_schema is not None:
                    assert resolved(json_schema).get("properties"), (method, route.path, status, json_schema)
            body = op.get("requestBody")
            if body is None:
                continue
            for media_type, content in body["content"].items():
                assert content.get("schema"), (method, route.path, media_type)
            if "application/json" in body["content"] and (method, route.path) not in UNDOCUMENTED_BODIES:
                schema = body["content"]["application/json"]["schema"]
                assert resolved(schema).get("properties"), (method, route.path)
    assert set(schemas["ErrorBody"]["properties"]) == {"error"}
    assert {"code", "message"} <= set(schemas["ErrorDetail"]["properties"])


def test_query_parameters_are_documented(document):
    """Routes that used to read the raw query string now declare what they read."""
    def names(path: str, method: str) -> set[str]:
        return {p["name"] for p in document["paths"][path][method].get("parameters", []) if p["in"] == "query"}

    assert {"video_id", "quality", "share", "country"} <= names("/v1/stream", "get")
    assert {"from", "to"} <= names("/v1/videos/{video_id}/analytics", "get")
    assert {"reason", "retention_override"} <= names("/videos/{video_id}", "delete")
    assert {"sig", "exp"} <= names("/v1/keys/{video_id}", "get")


def test_the_docs_page_loads_nothing_from_another_host(ops):
    page = ops.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    urls += re.findall(r"""url\s*:\s*["']([^"']+)["']""", page.text)
    assert urls, page.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
    assert "cdn" not in page.text.lower()
    for url in urls:
        if url.startswith("/docs/assets/"):
            asset = ops.get(url)
            assert asset.status_code == 200, url
            assert asset.content == (SWAGGER_DIST / url.rsplit("/", 1)[1]).read_bytes()
    assert ops.get("/docs/assets/package.json").status_code == 404        # nothing else of node_modules
    assert ops.get("/docs/assets/..%2Fhls.js").status_code == 404


def test_the_public_listener_serves_no_docs(app):
    with TestClient(app) as client:
        for path in ("/docs", "/openapi.json", "/redoc"):
            r = client.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", path
