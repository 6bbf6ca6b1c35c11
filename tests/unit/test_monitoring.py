"""The operators' monitoring files (deploy/): every metric they name exists in the code, and the
scrape targets follow the ports the workers and the sink really listen on."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from framelog.core.config import get_config
from framelog.pipeline.worker import groups

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
SOURCE = ROOT / "src" / "framelog"
_DEFINED = re.compile(r"(?:Counter|Gauge|Histogram|Summary|MetricFamily)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
_PROMQL_WORDS = {"sum", "by", "rate", "increase", "deriv", "max", "min", "avg", "and", "or", "absent", "le",
                 "histogram_quantile", "without", "on", "ignoring", "count", "topk", "bottomk"}


def defined_metrics() -> set[str]:
    names = set(get_config().metrics)                      # the seed's metrics, created from configuration
    for path in SOURCE.rglob("*.py"):
        names |= set(_DEFINED.findall(path.read_text()))
    return names


def referenced(expr: str) -> set[str]:
    expr = re.sub(r"\{[^}]*\}", "", expr)                  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                 # range selectors
    expr = re.sub(r"\bby\s*\([^)]*\)", "", expr)           # grouping labels
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", expr)) - _PROMQL_WORDS
    return {w for w in words if "_" in w}


def base_name(metric: str, known: set[str]) -> str:
    if metric in known:
        return metric
    for suffix in _SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in known:
            return metric[: -len(suffix)]
    return metric


def expressions() -> dict[str, str]:
    out = {}
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            out[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "framelog.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            out[f"panel {panel['title']}"] = target["expr"]
    return out


def test_every_metric_the_dashboard_and_alerts_name_exists():
    known = defined_metrics()
    missing = {where: sorted(m for m in referenced(expr) if base_name(m, known) not in known)
               for where, expr in expressions().items()}
    assert not {k: v for k, v in missing.items() if v}, missing
    assert len(expressions()) >= 20


def test_alerts_cover_what_operators_asked_for():
    names = {k.split(" ", 1)[1] for k in expressions() if k.startswith("alert ")}
    assert {"StageBacklogGrowing", "DeadLettersGrowing", "StageFailures", "AnalyticsSinkBehind",
            "EdgeHitRatioLow"} <= names


def test_scrape_targets_follow_the_metrics_ports():
    # compose runs the image's packaged framelog.yaml, not this machine's overlay (the test stack moves ports)
    from framelog.core.config import DEFAULT_CONFIG_PATH, build_config

    config = build_config(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    ports = {}
    for job in scrape["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            ports[job["job_name"]] = sd["port"]
        for static in job.get("static_configs", []):
            ports[job["job_name"]] = int(static["targets"][0].rsplit(":", 1)[1])
    base = config.stack.worker_metrics_port
    for i, group in enumerate(groups(config.pipeline)):
        assert ports[f"worker-{group.replace('_', '-')}"] == base + i, group
    assert ports["analytics-sink"] == base + len(groups(config.pipeline))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {f"worker-{g.replace('_', '-')}" for g in groups(config.pipeline)} <= set(compose["services"])


def test_json_logs_behind_a_switch(monkeypatch, capsys):
    import logging

    from framelog.core.logs import configure_logging

    monkeypatch.setenv("FRAMELOG_LOG_FORMAT", "json")
    configure_logging("validation")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("framelog.test").exception("stage failed for %s", "vid1")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["level"], line["role"], line["message"]) == ("ERROR", "validation", "stage failed for vid1")
    assert "ValueError: boom" in line["exception"]
    monkeypatch.setenv("FRAMELOG_LOG_FORMAT", "text")
    configure_logging("validation")
    logging.getLogger("framelog.test").warning("plain")
    assert "validation WARNING framelog.test: plain" in capsys.readouterr().err
