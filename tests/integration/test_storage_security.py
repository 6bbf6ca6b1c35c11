"""The bucket is reachable through the S3 gateway only: SeaweedFS's filer and volume HTTP ports want JWTs.

stack/seaweed_security.py writes the security.toml every weed process reads;
these tests check both sides: the gateway (credentials) still does everything
the pipeline asks of it, every other port wants the stack's client
certificate, and even with it the filer and volume ports refuse a direct read
of an AES key object without weed's JWT.
"""
from __future__ import annotations

import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from framelog.core.ids import new_video_id
from framelog.processors.edge_signing import signed_edge_url
from framelog.processors.tokens import load_or_create_secret
from framelog.sinks.object_store import ObjectStore
from framelog.sinks.s3 import s3_client
from framelog.stack.seaweed import weed_binary
from framelog.stack.seaweed_security import SECURITY_FILE, read_keys

pytestmark = pytest.mark.integration

KEY_BYTES = b"0123456789abcdef"
PART = 5 * 2**20                      # S3's smallest multipart part


def http_status(url: str, context: ssl.SSLContext | None = None) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def file_id(stack, key: str) -> str:
    """The volume file id of an object's first chunk (read over the filer's gRPC with weed shell)."""
    s = stack.config.stack
    path = f"/buckets/{stack.config.object_storage.bucket}/{key}"
    out = subprocess.run([weed_binary(), f"-config_dir={stack.seaweed.config_dir}", "shell",   # with our certificate
                          f"-master={s.host}:{s.seaweed_master_port}",
                          f"-filer={s.host}:{s.seaweed_filer_port}"],
                         input=f"fs.meta.cat {path}\n", capture_output=True, text=True, timeout=60)
    for line in out.stdout.splitlines():
        if '"fileId"' in line:
            return line.split('"fileId":', 1)[1].strip().strip('",')
    raise AssertionError(f"no chunk file id for {path} in weed shell's answer:\n{out.stdout}\n{out.stderr}")


@pytest.fixture()
def key_object(stack, config) -> str:
    key = f"keys/{new_video_id()}/aes.key"
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=KEY_BYTES)
    return key


def test_every_weed_process_reads_the_generated_security_toml(stack):
    path = stack.seaweed.config_dir / SECURITY_FILE
    assert read_keys(path) is not None and stack.seaweed.tls.exist()
    assert (path.stat().st_mode & 0o077) == 0
    assert f"-config_dir={stack.seaweed.config_dir}" in stack.seaweed.command()


def refused_without_certificate(stack, port: int) -> bool:
    """The port ends the TLS handshake for a client that shows no certificate (trusting the stack's CA)."""
    ctx = ssl.create_default_context(cafile=str(stack.seaweed.tls.ca))
    ctx.check_hostname = False
    try:
        with socket.create_connection((stack.seaweed.host, port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname=stack.seaweed.host) as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            tls.recv(1)                       # TLS 1.3: the refusal arrives with the first read
    except ssl.SSLError as exc:
        return "CERTIFICATE_REQUIRED" in str(exc) or "certificate" in str(exc).lower()
    return False


def test_every_port_but_the_gateway_wants_the_stacks_client_certificate(stack):
    sw = stack.seaweed
    for label, port in sw.ports():
        if label == "s3":                 # the gateway: plain HTTP with SigV4
            continue
        assert refused_without_certificate(stack, port), f"{label} port {port} answered without a certificate"
    # plain HTTP is not spoken at all on the master (its admin API: /col/delete, /dir/assign)
    assert http_status(f"http://{sw.host}:{sw.master_port}/dir/assign") == 400


def test_filer_and_volume_ports_refuse_a_direct_read_of_a_key(stack, config, key_object):
    s = config.stack
    ctx = stack.seaweed.tls.client_context()     # even with the certificate, a read needs weed's JWT
    filer = f"https://{s.host}:{s.seaweed_filer_port}/buckets/{config.object_storage.bucket}"
    assert http_status(f"{filer}/{key_object}", ctx) in (401, 403)
    assert http_status(f"{filer}/{key_object}?metadata=true", ctx) in (401, 403)
    assert http_status(f"{filer}/keys/", ctx) in (401, 403)
    fid = file_id(stack, key_object)
    assert http_status(f"https://{s.host}:{s.seaweed_volume_port}/{fid}", ctx) in (401, 403)
    assert refused_without_certificate(stack, s.seaweed_volume_port)
    # the gateway, with credentials, still reads it
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    body = s3.get_object(Bucket=config.object_storage.bucket, Key=key_object)["Body"].read()
    assert body == KEY_BYTES


def test_gateway_still_lists_copies_with_a_storage_class_and_takes_multipart_uploads(stack, config):
    client, bucket = s3_client(config.object_storage, config.stack.state_dir), config.object_storage.bucket
    prefix = f"hls/{new_video_id()}/"
    upload = client.create_multipart_upload(Bucket=bucket, Key=prefix + "big.ts")
    parts = [client.upload_part(Bucket=bucket, Key=prefix + "big.ts", UploadId=upload["UploadId"], PartNumber=n,
                                Body=bytes([n]) * (PART if n == 1 else 1000)) for n in (1, 2)]
    client.complete_multipart_upload(Bucket=bucket, Key=prefix + "big.ts", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"ETag": p["ETag"], "PartNumber": n}
                                                                for n, p in zip((1, 2), parts)]})
    store = ObjectStore(config.object_storage, config.stack.state_dir)
    store.set_storage_class(prefix + "big.ts", "STANDARD_IA")      # the tiering mover's copy
    head = client.head_object(Bucket=bucket, Key=prefix + "big.ts")
    assert (head["ContentLength"], head.get("StorageClass")) == (PART + 1000, "STANDARD_IA")
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    assert [o["Key"] for o in listed] == [prefix + "big.ts"]
    assert client.get_object(Bucket=bucket, Key=prefix + "big.ts", Range="bytes=-1000")["Body"].read() == b"\2" * 1000


def test_edges_still_read_hls_objects_through_the_gateway(stack, config):
    key = f"hls/{new_video_id()}/720p/playlist.m3u8"
    s3 = s3_client(config.object_storage, config.stack.state_dir)
    s3.put_object(Bucket=config.object_storage.bucket, Key=key, Body=b"#EXTM3U\n",
                  ContentType="application/vnd.apple.mpegurl")
    secret = load_or_create_secret(config.security, config.stack.state_dir)
    url = signed_edge_url("primary_cdn", key, config.cdn, config.stack.host, config.security, secret=secret,
                          now=time.time())
    with urllib.request.urlopen(url, timeout=5) as r:
        assert (r.status, r.read()) == (200, b"#EXTM3U\n")
