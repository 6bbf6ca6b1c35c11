"""S3 credentials are generated per state dir, never shipped, and the narrow identity cannot read keys/.

Replays issue 11's finding (the key pair shipped in framelog.yaml read every object, AES keys
included) against the real SeaweedFS gateway.
"""
from __future__ import annotations

import dataclasses
import stat
import urllib.error
import urllib.request

import pytest
import yaml
from botocore.exceptions import ClientError

from framelog.core.config import DEFAULT_CONFIG_PATH
from framelog.core.ids import new_video_id
from framelog.core.service_credentials import s3_credentials_path
from framelog.sinks.s3 import s3_client

pytestmark = pytest.mark.integration

SHIPPED = ("framelog", "framelog-local-secret")   # what framelog.yaml used to carry


def as_identity(config, identity: str):
    return dataclasses.replace(config, object_storage=dataclasses.replace(config.object_storage, identity=identity))


def with_keys(config, access_key: str, secret_key: str):
    return dataclasses.replace(config, object_storage=dataclasses.replace(
        config.object_storage, access_key=access_key, secret_key=secret_key))


def status_of(call) -> int:
    try:
        call()
        return 200
    except ClientError as exc:
        return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


@pytest.fixture
def objects(stack, config):
    """A fake key, rendition segment and thumbnail of a new video, written by the pipeline identity."""
    video_id = new_video_id()
    client = s3_client(config.object_storage, config.stack.state_dir)
    bucket = config.object_storage.bucket
    keys = {"key": f"keys/{video_id}/aes128.key", "hls": f"hls/{video_id}/720p/seg_00000.ts",
            "thumb": f"thumbnails/{video_id}/poster.jpg"}
    for key in keys.values():
        client.put_object(Bucket=bucket, Key=key, Body=b"0123456789abcdef")
    yield keys
    for key in keys.values():
        client.delete_object(Bucket=bucket, Key=key)


def test_no_credentials_in_the_configuration_file():
    s3 = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())["object_storage"]
    assert "access_key" not in s3 and "secret_key" not in s3
    assert SHIPPED[1] not in DEFAULT_CONFIG_PATH.read_text()


def test_credentials_file_is_private(stack, config):
    path = s3_credentials_path(config.stack.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((stack.seaweed.s3_config_path).stat().st_mode) == 0o600


def test_shipped_and_wrong_keys_are_refused(stack, config, objects):
    bucket = config.object_storage.bucket
    ours = s3_client(config.object_storage, config.stack.state_dir)._request_signer._credentials.access_key
    for keys in (SHIPPED, ("nobody", "wrong"), (ours, "wrong")):
        client = s3_client(with_keys(config, *keys).object_storage, config.stack.state_dir, max_attempts=1)
        assert status_of(lambda c=client: c.get_object(Bucket=bucket, Key=objects["key"])) == 403
        assert status_of(lambda c=client: c.list_objects_v2(Bucket=bucket)) == 403


def test_unsigned_request_is_refused(stack, config, objects):
    url = f"{config.object_storage.endpoint_url}/{config.object_storage.bucket}/{objects['key']}"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == 403


def test_media_identity_reads_renditions_but_not_keys(stack, config, objects):
    bucket = config.object_storage.bucket
    media = s3_client(as_identity(config, "media").object_storage, config.stack.state_dir, max_attempts=1)
    assert media.get_object(Bucket=bucket, Key=objects["hls"])["Body"].read() == b"0123456789abcdef"
    assert media.get_object(Bucket=bucket, Key=objects["thumb"])["Body"].read() == b"0123456789abcdef"
    # the tiering worker copies renditions (its storage-class moves) within hls/
    copy = objects["hls"] + ".copy"
    media.copy_object(Bucket=bucket, Key=copy, CopySource={"Bucket": bucket, "Key": objects["hls"]},
                      StorageClass="STANDARD_IA")
    media.delete_object(Bucket=bucket, Key=copy)
    assert status_of(lambda: media.get_object(Bucket=bucket, Key=objects["key"])) == 403
    assert status_of(lambda: media.head_object(Bucket=bucket, Key=objects["key"])) == 403
    assert status_of(lambda: media.put_object(Bucket=bucket, Key=objects["key"], Body=b"x")) == 403
    assert status_of(lambda: media.delete_object(Bucket=bucket, Key=objects["key"])) == 403
    assert status_of(lambda: media.copy_object(Bucket=bucket, Key=f"hls/{objects['key']}",
                                               CopySource={"Bucket": bucket, "Key": objects["key"]})) == 403
    # and the pipeline identity still reads the key it wrote
    pipeline = s3_client(config.object_storage, config.stack.state_dir)
    assert pipeline.get_object(Bucket=bucket, Key=objects["key"])["Body"].read() == b"0123456789abcdef"
