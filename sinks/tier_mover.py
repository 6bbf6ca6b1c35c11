"""Change the storage class of every object of a rendition, and prove nothing was lost.

``TierMover.move(prefix, storage_class)`` lists the objects under the
rendition's prefix, copies each one that is not yet in ``storage_class`` onto
its own key with the new class (``ObjectStore.set_storage_class``: content type
and cache control kept), lists again and checks that the same keys are there
with the same sizes and checksums, each in the new class. Objects already in the
class are not copied again, so a move interrupted half way (a crash) and then
repeated finishes the rest and copies nothing twice: the move is idempotent.

Checksums: the ETag when it is the MD5 of the content (a single-part upload);
a multipart ETag ("<md5>-<parts>") changes on copy in AWS S3, so for those the
SHA-256 of the content is computed before and after instead.

SeaweedFS's S3 gateway applies ``x-amz-storage-class`` on a copy and reports it
in HEAD and LIST, like AWS S3 (checked by tests/integration/test_tiering_agent.py).
On AWS an object in GLACIER/DEEP_ARCHIVE must be restored (RestoreObject,
``request_restore``) before it can be copied back to a faster class; until the
restore finished such a copy fails (InvalidObjectState) and the tiering job
tries again at its next evaluation. SeaweedFS answers RestoreObject with
MethodNotAllowed and serves archived classes directly, so there the request is
a no-op.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Iterable, Mapping

from botocore.exceptions import ClientError

from framelog.exceptions import FramelogError
from framelog.sinks.object_store import ObjectStore

log = logging.getLogger(__name__)

DEFAULT_STORAGE_CLASS = "STANDARD"        # what S3 reports (or omits) for an object never given a class
_HASH_CHUNK = 1 << 20
RESTORE_IN_PROGRESS = "RestoreAlreadyInProgress"
RESTORE_UNSUPPORTED = ("MethodNotAllowed", "NotImplemented")


class TierMoveError(FramelogError):
    """Objects differ after a storage-class change (missing, extra, changed or not in the class)."""


@dataclass(frozen=True)
class ObjectFacts:
    key: str
    size: int
    etag: str
    storage_class: str

    @property
    def multipart(self) -> bool:
        return "-" in self.etag


@dataclass(frozen=True)
class MoveReport:
    prefix: str
    storage_class: str
    keys: tuple[str, ...]
    size_bytes: int
    copied: int                    # objects whose class this call changed (0 when repeated)

    @property
    def object_count(self) -> int:
        return len(self.keys)


class TierMover:
    def __init__(self, store: ObjectStore):
        self.store = store

    def inventory(self, prefix: str) -> dict[str, ObjectFacts]:
        """Every object under ``prefix`` with size, ETag and storage class, from one listing."""
        if not prefix.endswith("/"):
            raise ValueError(f"a rendition prefix ends with '/', got {prefix!r}")
        return {o["Key"]: ObjectFacts(o["Key"], int(o["Size"]), o.get("ETag", "").strip('"'),
                                      o.get("StorageClass") or DEFAULT_STORAGE_CLASS)
                for o in self.store.objects(prefix)}

    def _sha256(self, key: str) -> str:
        body = self.store.client.get_object(Bucket=self.store.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in iter(lambda: body.read(_HASH_CHUNK), b""):
            digest.update(chunk)
        return digest.hexdigest()

    def _checksums(self, facts: Mapping[str, ObjectFacts], strong: set[str]) -> dict[str, str]:
        return {k: (f"sha256:{self._sha256(k)}" if k in strong else f"etag:{f.etag}") for k, f in facts.items()}

    def move(self, prefix: str, storage_class: str) -> MoveReport:
        """Put every object under ``prefix`` into ``storage_class``; raises TierMoveError if anything differs after."""
        before = self.inventory(prefix)
        strong = {k for k, f in before.items() if f.multipart}
        sums_before = self._checksums(before, strong)
        copied = 0
        for key, facts in sorted(before.items()):
            if facts.storage_class != storage_class:
                self.store.set_storage_class(key, storage_class)
                copied += 1
        after = self.inventory(prefix)
        problems = []
        if set(after) != set(before):
            problems.append(f"keys missing {sorted(set(before) - set(after))[:5]}, "
                            f"new {sorted(set(after) - set(before))[:5]}")
        common = {k: after[k] for k in set(before) & set(after)}
        sums_after = self._checksums(common, strong)
        changed = sorted(k for k in common if sums_after[k] != sums_before[k] or after[k].size != before[k].size)
        if changed:
            problems.append(f"content changed: {changed[:5]}")
        wrong = sorted(k for k, f in common.items() if f.storage_class != storage_class)
        if wrong:
            problems.append(f"not in {storage_class}: {wrong[:5]}")
        if problems:
            raise TierMoveError(f"moving {prefix} to {storage_class}: " + "; ".join(problems))
        return MoveReport(prefix, storage_class, tuple(sorted(after)), sum(f.size for f in after.values()), copied)

    def request_restore(self, prefix: str, archive_classes: Iterable[str], days: int) -> int:
        """RestoreObject for every object under ``prefix`` in one of ``archive_classes``; returns how many were asked.

        Idempotent: a restore already running counts as asked. A server without
        RestoreObject (SeaweedFS) reads archived objects as they are: 0.
        """
        classes = set(archive_classes)
        asked = 0
        for facts in self.inventory(prefix).values():
            if facts.storage_class not in classes:
                continue
            try:
                self.store.client.restore_object(Bucket=self.store.bucket, Key=facts.key, RestoreRequest={
                    "Days": max(1, days), "GlacierJobParameters": {"Tier": "Standard"}})
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in RESTORE_UNSUPPORTED:
                    log.info("object storage has no RestoreObject (%s): archived objects are read as they are", code)
                    return 0
                if code != RESTORE_IN_PROGRESS:
                    raise
            asked += 1
        return asked
