"""The light client (client/, framelog-client; issue 15 pt 6) stands alone: it imports nothing of framelog,
depends on httpx only, runs on Python 3.9 (vermin), and speaks the protocol the API serves."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "client"
PACKAGE = CLIENT / "src" / "framelog_client"
VERMIN = Path(sys.executable).with_name("vermin")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_metadata_names_the_package_its_python_and_only_httpx():
    meta = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert (meta["name"], meta["version"], meta["requires-python"]) == ("framelog-client", "0.1.0", ">=3.9")
    assert [d.split(">")[0].split("=")[0].split("<")[0].strip() for d in meta["dependencies"]] == ["httpx"]
    assert not meta.get("optional-dependencies")
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"framelog-client=={meta['version']}" in [d.split("#")[0].strip() for d in main]


def test_modules_import_only_the_standard_library_httpx_and_themselves():
    modules = sorted(PACKAGE.glob("*.py"))
    assert {m.stem for m in modules} >= {"__init__", "upload", "status", "events", "client", "backoff"}
    for module in modules:
        outside = imported_roots(module) - set(sys.stdlib_module_names) - {"__future__", "httpx", "framelog_client"}
        assert not outside, (module.name, outside)


def test_importing_it_loads_no_framelog_module():
    probe = ("import sys, pkgutil, importlib, framelog_client\n"
             "for m in pkgutil.iter_modules(framelog_client.__path__):\n"
             "    importlib.import_module('framelog_client.' + m.name)\n"
             "print(sorted(n for n in sys.modules if n.split('.')[0] == 'framelog'))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=CLIENT / "src", env=env, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_it_runs_on_python_3_9():
    """vermin (pinned in the test extra) finds nothing that needs a Python newer than 3.9, annotations included."""
    assert VERMIN.exists(), "vermin is missing: scripts/bootstrap.sh installs the test extra"
    proc = subprocess.run([str(VERMIN), "-t=3.9-", "--violations", "--eval-annotations", "--no-tips", "-q",
                           str(PACKAGE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_version_and_the_shared_backoff():
    import framelog_client
    from framelog.core.backoff import Backoff

    assert framelog_client.__version__ == tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]["version"]
    assert Backoff is framelog_client.Backoff           # one retry rule, defined in the client


def test_the_upload_protocol_matches_the_server():
    from framelog.api import upload_protocol as server
    from framelog_client import upload as client

    assert client.TUS_RESUMABLE == server.TUS_RESUMABLE == "1.0.0"
    assert client.OFFSET_CONTENT_TYPE == server.OFFSET_CONTENT_TYPE
    assert client.DEFAULT_CHUNK_SIZE == server.DEFAULT_CHUNK_SIZE
    assert client.CHECKSUM_MISMATCH == server.CHECKSUM_MISMATCH == 460
    meta = {"filename": "clip été.mp4", "visibility": "public", "empty": ""}
    assert server.parse_upload_metadata(client.encode_upload_metadata(meta)) == meta
    with pytest.raises(ValueError):
        client.encode_upload_metadata({"bad key": "x"})


def test_server_sent_events_are_parsed_as_the_api_writes_them():
    from framelog.api.live import sse
    from framelog_client.status import sse_events

    wire = (sse("transition", {"stage": "validation", "state": "started"}, 1) + b": keepalive\n\n"
            + sse("end", {"video_id": "v1", "state": "ready"}, 2)).decode()
    events = list(sse_events(wire.split("\n")))
    assert [(e.event, e.id, e.final) for e in events] == [("transition", "1", False), ("end", "2", True)]
    assert events[1].data == {"video_id": "v1", "state": "ready"}


@pytest.mark.parametrize("body, expected", [
    ({"error": {"code": "invalid_field", "message": "type: no such symbol", "event_index": 3}},
     {"code": "invalid_field", "message": "type: no such symbol", "event_index": 3}),
    ({"error": "type: no such symbol", "reason": "invalid_field", "event_index": 3, "field": "type"},
     {"code": "invalid_field", "message": "type: no such symbol", "event_index": 3, "field": "type"}),
    ({"detail": "only the owner may see this"}, {"message": "only the owner may see this"}),
])
def test_refusals_are_read_in_the_api_shape_and_the_older_ones(body, expected):
    import httpx

    from framelog_client.errors import error_message, error_of

    response = httpx.Response(400, json=body)
    assert error_of(response) == expected
    assert error_message(response) == expected["message"]
    assert error_of(httpx.Response(502, text="<html>bad gateway</html>")) == {}
