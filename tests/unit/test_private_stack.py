"""The test command's private stack: every port and the state dir move, nothing else does."""
from __future__ import annotations

import yaml

from framelog.core.config import DEFAULT_CONFIG_PATH, build_config, merge_overlay
from framelog.stack.private_stack import private_overlay


def _ports(config) -> set[int]:
    s = config.stack
    ports = {s.kafka_port, s.kafka_controller_port, s.seaweed_master_port, s.seaweed_volume_port,
             s.seaweed_filer_port, s.seaweed_s3_port, s.seaweed_admin_port, s.api_port, s.worker_metrics_port}
    ports |= {p.edge_port for p in config.cdn.providers.values()}
    return ports


def test_every_port_and_the_state_dir_move_and_nothing_else():
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    overlay = private_overlay(raw, 1100, "/tmp/private-state")
    default, private = build_config(raw), build_config(merge_overlay(raw, overlay))

    assert str(private.stack.state_dir) == "/tmp/private-state"
    assert _ports(private).isdisjoint(_ports(default))
    assert private.kafka.bootstrap_servers.endswith(f":{default.stack.kafka_port + 1100}")
    assert private.object_storage.endpoint_url.endswith(f":{default.stack.seaweed_s3_port + 1100}")
    from framelog.processors.public_urls import key_url_base, public_edge_url
    # derived from the moved port
    assert f":{default.stack.api_port + 1100}/" in key_url_base(private.delivery, private.stack)
    edge_port = default.cdn.providers["primary_cdn"].edge_port + 1100
    assert public_edge_url("primary_cdn", private.cdn, private.stack.host).endswith(f":{edge_port}")
    assert private.hls.key_uri_base == "/v1/keys"                           # stored playlists name no host
    # the seed's numbers are not in the overlay: only ports, URLs with ports and the state dir
    flat = yaml.safe_dump(overlay)
    assert "segment_duration" not in flat and "storage_tiers" not in flat


def test_a_port_key_added_later_moves_too():
    raw = {"stack": {"state_dir": ".state", "shield_port": 18090}, "edges": {"url": "http://localhost:18090/x"},
           "analytics": {"sink_batch_max_rows": 5000}}
    overlay = private_overlay(raw, 100, "s")
    assert overlay == {"stack": {"shield_port": 18190, "state_dir": "s"}, "edges": {"url": "http://localhost:18190/x"}}


def test_the_image_build_context_leaves_out_state_history_and_environments():
    from pathlib import Path

    ignored = {line.strip() for line in (Path(__file__).parents[2] / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".state*", ".venv", "node_modules"} <= ignored          # .state* covers .state and .state-test
