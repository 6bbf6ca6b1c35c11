"""The one place framelog builds its S3 client (SeaweedFS locally, any S3 in production)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from framelog.core.config import ObjectStorageConfig


def s3_credentials(s3: ObjectStorageConfig, state_dir: Path) -> tuple[str, str]:
    """(access key, secret key): the environment's (FRAMELOG_S3_ACCESS_KEY/SECRET_KEY) if set, else the
    key pair of ``object_storage.identity`` that ``stack up`` generated into the state dir
    (``config.object_storage, config.stack.state_dir``)."""
    if s3.access_key and s3.secret_key:
        return s3.access_key, s3.secret_key
    from framelog.core.service_credentials import s3_keys

    return s3_keys(state_dir, s3.identity)


def s3_client(s3: ObjectStorageConfig, state_dir: Path, *, connect_timeout: float = 5.0,
              read_timeout: float = 60.0, max_attempts: int = 3) -> Any:
    """A boto3 S3 client for ``s3`` (``config.object_storage``; ``state_dir``: ``config.stack.state_dir``,
    where the generated key pairs are).

    Path-style addressing (the local endpoint is an ip:port, not a domain), and
    checksums only when an operation requires them: SeaweedFS, like several S3
    implementations, does not speak boto3's default flexible checksums.
    Each call builds its own session, so threads may each create one safely.
    """
    import boto3
    from botocore.config import Config as BotoConfig

    access_key, secret_key = s3_credentials(s3, state_dir)
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=s3.endpoint_url or None,
        region_name=s3.region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=BotoConfig(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
        ),
    )


def ensure_bucket(client: Any, bucket: str, *, object_lock: bool = False) -> bool:
    """Create ``bucket`` unless it exists; True if this call created it.

    Safe when several processes race (the loser sees BucketAlreadyOwnedByYou),
    and it ends with a HEAD, so it returns only once the bucket answers.
    ``object_lock``: created with S3 Object Lock (it can only be enabled at
    creation), and an existing bucket without it is an error.
    """
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
        if object_lock:
            _require_object_lock(client, bucket)
        return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    created = True
    try:
        client.create_bucket(Bucket=bucket, **({"ObjectLockEnabledForBucket": True} if object_lock else {}))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
        created = False
    client.head_bucket(Bucket=bucket)
    return created


def _require_object_lock(client: Any, bucket: str) -> None:
    from botocore.exceptions import ClientError

    try:
        conf = client.get_object_lock_configuration(Bucket=bucket).get("ObjectLockConfiguration", {})
    except ClientError:          # ObjectLockConfigurationNotFoundError
        conf = {}
    if conf.get("ObjectLockEnabled") != "Enabled":
        from framelog.core.errors import ConfigError

        raise ConfigError("object_storage.vault_bucket",
                          f"bucket {bucket!r} exists without S3 Object Lock (it can only be enabled at creation)")


def ensure_buckets(client: Any, s3: ObjectStorageConfig) -> None:
    """The serving bucket, and the vault bucket (Object Lock) when one is configured (``config.object_storage``)."""
    ensure_bucket(client, s3.bucket)
    if s3.vault_bucket:
        ensure_bucket(client, s3.vault_bucket, object_lock=True)
