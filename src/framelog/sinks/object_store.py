"""Object storage operations framelog needs, on one bucket.

Job handlers, the uploaders (the API's resumable upload sessions and
``upload_file``), tiering, restore and delete all go through this class, so the
S3 details (paging, server-side copies, metadata replacement, storage class
changes, multipart uploads, "missing" error codes) live in one place. It is the
only user of boto3 outside the local stack's admin code (framelog.stack,
framelog.ops.provision) and the client factory (framelog.sinks.s3).
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from framelog.core.config import ObjectStorageConfig
from framelog.sinks.s3 import s3_client

# What a store call raises when the storage did not answer or refused (callers that retry catch these)
STORE_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
HASH_CHUNK = 8 * 2**20
RESTORE_IN_PROGRESS = "RestoreAlreadyInProgress"
RESTORE_UNSUPPORTED = ("MethodNotAllowed", "NotImplemented")


def error_code(exc: BaseException) -> str:
    """The S3 error code of a failed call ('' for errors that carry none)."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _no_upload(exc: ClientError) -> bool:
    return error_code(exc) in ("NoSuchUpload", "404", "NotFound")


class ObjectStore:
    def __init__(self, s3: ObjectStorageConfig, state_dir: Path, client: Any = None, *, bucket: str | None = None,
                 read_timeout: float = 60.0):
        """``s3``: ``config.object_storage``; ``state_dir``: ``config.stack.state_dir`` (the key pairs)."""
        self.client = client or s3_client(s3, state_dir, read_timeout=read_timeout)
        self.bucket = bucket or s3.bucket

    @classmethod
    def over(cls, client: Any, bucket: str) -> ObjectStore:
        """A store on an existing client (one the caller shares between buckets or threads)."""
        store = cls.__new__(cls)
        store.client, store.bucket = client, bucket
        return store

    # ------------------------------------------------------------ reading

    def download(self, key: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.client.download_file(self.bucket, key, str(path))
        return path

    def presigned_url(self, key: str, expires: float) -> str:
        """A GET URL for ``key`` valid ``expires`` seconds: ffmpeg reads only the byte ranges it needs
        (an index, a few sampled seconds) instead of the whole object."""
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                  ExpiresIn=max(1, int(expires)))

    def download_prefix(self, prefix: str, dest: Path) -> list[Path]:
        """Every object under ``prefix/`` into ``dest`` keeping relative paths."""
        out = []
        for key in self.keys(prefix):
            rel = key[len(prefix):].lstrip("/")
            if rel:
                out.append(self.download(key, dest / rel))
        return out

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def get_json(self, key: str) -> Any:
        body = self.get_bytes(key)
        return None if body is None else json.loads(body)

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise

    def size(self, key: str) -> int | None:
        """Bytes of ``key``, or None when it does not exist."""
        head = self.head(key)
        return None if head is None else int(head["ContentLength"])

    def sha256(self, key: str, chunk_size: int = HASH_CHUNK) -> tuple[str, int]:
        """sha256 and byte count of an object, streamed (never the whole object in memory)."""
        digest = hashlib.sha256()
        size = 0
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            for chunk in body.iter_chunks(chunk_size):
                digest.update(chunk)
                size += len(chunk)
        finally:
            body.close()
        return digest.hexdigest(), size

    def keys(self, prefix: str) -> Iterator[str]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    # ------------------------------------------------------------ writing

    def put_bytes(self, key: str, body: bytes, content_type: str = "application/octet-stream",
                  cache_control: str | None = None) -> None:
        extra = {"CacheControl": cache_control} if cache_control else {}
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **extra)

    def put_json(self, key: str, value: Any) -> None:
        self.put_bytes(key, json.dumps(value, default=str).encode(), "application/json")

    def upload_file(self, path: Path, key: str, content_type: str = "application/octet-stream",
                    cache_control: str | None = None) -> None:
        extra: dict[str, str] = {"ContentType": content_type}
        if cache_control:
            extra["CacheControl"] = cache_control
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra)

    def upload_fileobj(self, fileobj: IO[bytes] | Any, key: str, content_type: str = "application/octet-stream",
                       metadata: Mapping[str, str] | None = None) -> None:
        """Stream a readable object (multipart above boto3's threshold); ``metadata`` as x-amz-meta-*."""
        extra: dict[str, Any] = {"ContentType": content_type}
        if metadata:
            extra["Metadata"] = dict(metadata)
        self.client.upload_fileobj(fileobj, self.bucket, key, ExtraArgs=extra)

    def upload_dir(self, directory: Path, prefix: str, before_each: Callable[[], None] | None = None) -> list[str]:
        """Upload every file under ``directory`` to ``prefix/<relative path>``.

        ``before_each`` runs before every file and may raise to stop (a timed-out
        job's ``check_cancelled``): no further upload, multipart or not, starts.
        """
        keys = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            if before_each is not None:
                before_each()
            key = f"{prefix}/{path.relative_to(directory).as_posix()}"
            self.upload_file(path, key)
            keys.append(key)
        return keys

    def copy(self, src_key: str, dst_key: str, headers: Mapping[str, str] | None = None,
             storage_class: str | None = None) -> None:
        """Server-side copy; ``headers`` (ContentType, CacheControl) replace the source's."""
        extra: dict[str, Any] = {}
        if headers:
            extra.update(headers)
            extra["MetadataDirective"] = "REPLACE"
        if storage_class:
            extra["StorageClass"] = storage_class
            extra["MetadataDirective"] = "REPLACE"
        self.client.copy_object(Bucket=self.bucket, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key},
                                **extra)

    def copy_from(self, source: ObjectStore, key: str, storage_class: str) -> None:
        """Server-side copy of ``key`` from another bucket onto the same key here, in ``storage_class``."""
        head = source.head(key)
        if head is None:
            raise FileNotFoundError(f"{source.bucket}/{key}")
        extra: dict[str, Any] = {"ContentType": head.get("ContentType", "application/octet-stream")}
        if head.get("CacheControl"):
            extra["CacheControl"] = head["CacheControl"]
        self.client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": source.bucket, "Key": key},
                                StorageClass=storage_class, MetadataDirective="REPLACE", **extra)

    def retain(self, key: str, mode: str, until: Any) -> None:
        """S3 Object Lock on the current version of ``key`` (the bucket must have Object Lock enabled).

        Set after the copy, not with it: SeaweedFS ignores lock headers on CopyObject.
        """
        self.client.put_object_retention(Bucket=self.bucket, Key=key,
                                         Retention={"Mode": mode.upper(), "RetainUntilDate": until})

    def retention(self, key: str) -> tuple[str, Any] | None:
        """(mode, retain-until) of ``key``'s lock, or None."""
        head = self.head(key)
        if head is None or not head.get("ObjectLockMode"):
            return None
        return head["ObjectLockMode"], head.get("ObjectLockRetainUntilDate")

    def delete_locked_prefix(self, prefix: str, *, bypass: bool = False) -> int:
        """Every version under ``prefix`` of a lock-enabled bucket whose retention allows it; with
        ``bypass`` (an operator's recorded override) GOVERNANCE retention too, never COMPLIANCE."""
        n = 0
        extra = {"BypassGovernanceRetention": True} if bypass else {}
        for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=v["Key"], VersionId=v["VersionId"], **extra)
                    n += 1
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") != "AccessDenied":
                        raise
        return n

    def set_storage_class(self, key: str, storage_class: str) -> None:
        """Copy onto the same key with the new class, keeping content type and cache control."""
        head = self.head(key)
        if head is None:
            raise FileNotFoundError(key)
        headers = {"ContentType": head.get("ContentType", "application/octet-stream")}
        if head.get("CacheControl"):
            headers["CacheControl"] = head["CacheControl"]
        self.copy(key, key, headers=headers, storage_class=storage_class)

    def restore(self, key: str, days: int, tier: str = "Standard") -> bool:
        """RestoreObject (a readable copy of an archived object for ``days``): True when asked or already
        running, False when the server has no RestoreObject (SeaweedFS reads archived objects as they are)."""
        try:
            self.client.restore_object(Bucket=self.bucket, Key=key, RestoreRequest={
                "Days": max(1, days), "GlacierJobParameters": {"Tier": tier}})
        except ClientError as exc:
            code = error_code(exc)
            if code in RESTORE_UNSUPPORTED:
                return False
            if code != RESTORE_IN_PROGRESS:
                raise
        return True

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when it is already gone)."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_keys(self, keys: Iterable[str]) -> int:
        """Remove many keys, 1000 per request; returns how many were named."""
        batch = list(keys)
        for i in range(0, len(batch), 1000):
            self.client.delete_objects(Bucket=self.bucket,
                                       Delete={"Objects": [{"Key": k} for k in batch[i:i + 1000]], "Quiet": True})
        return len(batch)

    # ------------------------------------------------------------ multipart (resumable uploads)

    def create_multipart(self, key: str, content_type: str, metadata: Mapping[str, str]) -> str:
        """Start a multipart upload of ``key``; returns its upload id."""
        out = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type,
                                                  Metadata=dict(metadata))
        return str(out["UploadId"])

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        """One part (Content-MD5 checked by the store); returns {PartNumber, ETag, Size}."""
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")
        out = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                      Body=body, ContentLength=len(body), ContentMD5=md5)
        return {"PartNumber": number, "ETag": out["ETag"], "Size": len(body)}

    def list_parts(self, key: str, upload_id: str) -> list[dict[str, Any]] | None:
        """Every part of an open multipart upload ({PartNumber, ETag, Size}), or None once it is
        completed or aborted."""
        parts: list[dict[str, Any]] = []
        marker = 0
        while True:
            try:
                page = self.client.list_parts(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                              PartNumberMarker=marker, MaxParts=1000)
            except ClientError as exc:
                if _no_upload(exc):
                    return None
                raise
            got = page.get("Parts") or []
            parts.extend({"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]} for p in got)
            if not page.get("IsTruncated") or not got:
                return parts
            marker = int(page.get("NextPartNumberMarker") or got[-1]["PartNumber"])

    def complete_multipart(self, key: str, upload_id: str, parts: list[dict[str, Any]]) -> bool:
        """Assemble the parts into ``key``; False when the upload is already gone (completed by another
        request, or aborted)."""
        ordered = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                   for p in sorted(parts, key=lambda p: p["PartNumber"])]
        try:
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": ordered})
        except ClientError as exc:
            if _no_upload(exc):
                return False
            raise
        return True

    def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if not _no_upload(exc):
                raise

    def delete_prefix(self, prefix: str) -> int:
        return self.delete_keys(self.keys(prefix))


def vault_store(s3: ObjectStorageConfig, state_dir: Path) -> ObjectStore | None:
    """The Object Lock bucket of tiers with a retention_lock, if one is configured."""
    return ObjectStore(s3, state_dir, bucket=s3.vault_bucket) if s3.vault_bucket else None
