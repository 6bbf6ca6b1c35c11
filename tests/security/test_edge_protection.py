"""Edge protection (``edge_protection``; the seed's DDoS protection / WAF / bot management) on the real edges.

Bounded bursts on loopback only. Each client is its own loopback source address
(127.0.0.x: Linux answers the whole 127/8 on lo), so the limits of one never
touch the other, nor the rest of the suite's requests from 127.0.0.1.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from framelog.core.ids import new_video_id
from framelog.processors.cdn_routing import edge_base_url
from framelog.processors.edge_signing import signed_edge_url
from framelog.sinks.edges.cache_commands import EdgeCache
from framelog.sinks.edges.protocol import access_log_path, shield_dir
from framelog.sinks.s3 import s3_client
from framelog.stack.process import wait_until
from tests.integration.support.edges import cache_settings, put_fake_video

pytestmark = pytest.mark.integration

BURST_REQUESTS = 300
BURST_THREADS = 16
TIMEOUT = 10.0
LOG_WAIT = 10.0
PROVIDER = "primary_cdn"


def client_at(address: str) -> httpx.Client:
    """An HTTP client whose requests come from ``address`` (a loopback alias)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=TIMEOUT)


@pytest.fixture()
def video(stack, config) -> str:
    vid = new_video_id()
    put_fake_video(config, vid)
    return vid


def signed(config, secret, path: str) -> str:
    return signed_edge_url(PROVIDER, path, config.cdn, config.stack.host, config.security, secret=secret,
                           now=time.time())


def raw_status(address: str, base: str, target: str, headers: str = "") -> int:
    """The status of one request sent byte for byte (no client-side path normalisation) from ``address``."""
    u = httpx.URL(base)
    with socket.create_connection((u.host, u.port), timeout=TIMEOUT, source_address=(address, 0)) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {u.host}:{u.port}\r\n{headers}Connection: close\r\n\r\n"
                  .encode())
        return int(s.recv(64).split(b" ", 2)[1])


def log_records(path, needle: str) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if needle in r["path"]]


def test_one_client_over_its_rate_is_refused_while_another_is_served(config, secret, video):
    guard = config.cdn.protection
    url = signed(config, secret, f"hls/{video}/master.m3u8")
    with client_at("127.0.0.3") as warm:
        assert warm.get(url).status_code == 200                  # cached: the burst measures the edge alone
    other_statuses: list[int] = []
    stop = threading.Event()

    def other_client() -> None:                                  # a second viewer, well under the limit
        with client_at("127.0.0.4") as c:
            while not stop.is_set() and len(other_statuses) < 50:
                other_statuses.append(c.get(url).status_code)
                stop.wait(1.0 / guard.requests_per_second * 4)

    watcher = threading.Thread(target=other_client)
    watcher.start()
    with client_at("127.0.0.3") as flood, ThreadPoolExecutor(BURST_THREADS) as pool:
        t0 = time.monotonic()
        statuses = list(pool.map(lambda _: flood.get(url).status_code, range(BURST_REQUESTS)))
        elapsed = time.monotonic() - t0
    stop.set()
    watcher.join(TIMEOUT)
    served, refused = statuses.count(200), statuses.count(guard.refused_status)
    assert served + refused == BURST_REQUESTS, sorted(set(statuses))
    assert refused > 0, f"{BURST_REQUESTS} requests in {elapsed:.1f}s, none refused"
    # the token bucket: the burst at once, then the rate (one extra for the bucket's partial refill)
    assert served <= 1 + guard.burst + guard.requests_per_second * elapsed + 1, (served, elapsed)
    assert other_statuses and set(other_statuses) == {200}, other_statuses


def test_concurrent_requests_per_client_are_capped(config, secret, video):
    """More requests in progress at once than ``connections_per_client``: the extra ones are refused at once.

    Each request asks for an object much larger than what loopback's socket buffers
    hold and reads only its status line, so the edge is still sending every one of
    them while the next arrives.
    """
    guard = config.cdn.protection
    key = f"hls/{video}/720p/big.ts"
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=b"\x47" * (32 << 20), ContentType="video/mp2t")
    url = httpx.URL(signed(config, secret, key))
    with client_at("127.0.0.5") as c:
        assert c.head(str(url)).status_code == 200
    request = (f"GET {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n\r\n").encode()
    held: list[socket.socket] = []
    statuses = []
    try:
        for _ in range(guard.connections_per_client + 4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)       # keep the edge's send blocked
            s.settimeout(TIMEOUT)
            s.bind(("127.0.0.5", 0))
            s.connect((url.host, url.port))
            s.sendall(request)
            statuses.append(int(s.recv(64).split(b" ", 2)[1]))
            held.append(s)
    finally:
        for s in held:
            s.close()
    assert statuses[:guard.connections_per_client] == [200] * guard.connections_per_client, statuses
    assert statuses[guard.connections_per_client:] == [guard.refused_status] * 4, statuses
    with client_at("127.0.0.6") as c:                                      # another client is not affected
        assert c.head(str(url)).status_code == 200


def test_the_request_filter_refuses_before_the_origin(config, secret, video):
    base = edge_base_url(PROVIDER, config.cdn, config.stack.host)
    url = signed(config, secret, f"hls/{video}/master.m3u8")
    sig_part = url[len(base):].split("/hls/")[0]                           # /s/<sig>/<expires>
    with client_at("127.0.0.7") as c:
        refused = {
            "POST": c.post(url, content=b"x").status_code,
            "PUT": c.put(url, content=b"x").status_code,
            "PURGE-like path from a client without the token":
                c.get(f"{base}/_purge/hls/{video}/master.m3u8").status_code,
            "dot segments into keys/":
                raw_status("127.0.0.7", base, f"{sig_part}/hls/{video}/../../keys/{video}/k.key"),
            "dot segments above the root": raw_status("127.0.0.7", base, f"/s/../../../hls/{video}/master.m3u8"),
            "unsigned path shape": c.get(f"{base}/{config.object_storage.bucket}/hls/{video}/master.m3u8").status_code,
            "huge header": raw_status("127.0.0.7", base, url[len(base):],
                                      f"X-Junk: {'j' * (config.cdn.protection.large_header_buffer_size + 1)}\r\n"),
            "huge body": c.request("GET", url, content=b"b" * (config.cdn.protection.max_body + 1)).status_code,
        }
    assert refused["POST"] == refused["PUT"] == 403, refused
    assert refused["PURGE-like path from a client without the token"] == 403
    assert refused["dot segments into keys/"] == 403 and refused["dot segments above the root"] == 400, refused
    assert refused["unsigned path shape"] == 403
    assert refused["huge header"] in (400, 431, 494), refused
    assert refused["huge body"] == 413, refused
    # none of them touched the shield (so none reached S3): a refusal never opens an upstream request
    assert log_records(shield_dir(config.stack.state_dir) / "access.log", video) == []

    # a query string and a small body are dropped on the way: the shield sees the object path only
    with client_at("127.0.0.7") as c:
        r = c.request("GET", url + "?cachebust=1&x=../../keys", content=b"tiny")
        assert r.status_code == 200 and r.headers["X-Cache-Status"] == "MISS"
    assert wait_until(lambda: log_records(shield_dir(config.stack.state_dir) / "access.log", video), LOG_WAIT)
    [seen] = log_records(shield_dir(config.stack.state_dir) / "access.log", video)
    assert (seen["path"], seen["args"], seen["method"]) == (f"/hls/{video}/master.m3u8", "", "GET")
    edge_side = log_records(access_log_path(config.stack.state_dir, PROVIDER), video)
    assert {r["upstream_status"] for r in edge_side if r["status"] != 200} == {""}   # refusals: no upstream at all


def test_purge_still_works_from_the_cdn_agent_address(config, secret, video):
    with client_at("127.0.0.8") as c:
        assert c.get(signed(config, secret, f"hls/{video}/master.m3u8")).status_code == 200
    assert EdgeCache(cache_settings(config), PROVIDER, secret=secret).purge_key(f"/hls/{video}/master.m3u8") is True
