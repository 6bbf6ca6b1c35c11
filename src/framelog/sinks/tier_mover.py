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

Tiers with a ``retention_lock`` (deep archive: compliance and legal retention)
keep their objects in the vault bucket, which has S3 Object Lock: ``archive``
copies the rendition there, locks every object until its retention ends,
verifies the copies the same way, and only then deletes the serving copies;
``unarchive`` (a restore, or a later move out) copies them back into the
serving bucket in the new class and verifies; the locked vault copies stay
until their retention ends. Both are idempotent like ``move``.

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

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from framelog.core.config import StorageTier
from framelog.core.errors import FramelogError
from framelog.sinks.object_store import ObjectStore

log = logging.getLogger(__name__)

DEFAULT_STORAGE_CLASS = "STANDARD"        # what S3 reports (or omits) for an object never given a class
_HASH_CHUNK = 1 << 20


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


def _inventory(store: ObjectStore, prefix: str) -> dict[str, ObjectFacts]:
    """The objects a move covers: everything under a prefix ending in '/' (a rendition, the thumbnails),
    else that one key and nothing it is a prefix of (a video's upload or MP4)."""
    exact = not prefix.endswith("/")
    return {o["Key"]: ObjectFacts(o["Key"], int(o["Size"]), o.get("ETag", "").strip('"'),
                                  o.get("StorageClass") or DEFAULT_STORAGE_CLASS)
            for o in store.objects(prefix) if not exact or o["Key"] == prefix}


def _sha256(store: ObjectStore, key: str) -> str:
    return store.sha256(key, _HASH_CHUNK)[0]


def _checksums(store: ObjectStore, facts: Mapping[str, ObjectFacts], strong: set[str]) -> dict[str, str]:
    return {k: (f"sha256:{_sha256(store, k)}" if k in strong else f"etag:{f.etag}") for k, f in facts.items()}


def _differences(expected: Mapping[str, ObjectFacts], expected_sums: Mapping[str, str], store: ObjectStore,
                 prefix: str, storage_class: str, strong: set[str],
                 extra_allowed: bool = False) -> tuple[dict[str, ObjectFacts], list[str]]:
    """What ``store`` holds under ``prefix`` now, and how it differs from ``expected`` (same keys,
    sizes and checksums, each in ``storage_class``; more keys only if ``extra_allowed``)."""
    after = _inventory(store, prefix)
    problems = []
    if set(expected) - set(after) or (set(after) - set(expected) and not extra_allowed):
        problems.append(f"keys missing {sorted(set(expected) - set(after))[:5]}, "
                        f"new {sorted(set(after) - set(expected))[:5]}")
    common = {k: after[k] for k in set(expected) & set(after)}
    sums_after = _checksums(store, common, strong)
    changed = sorted(k for k in common if sums_after[k] != expected_sums[k] or after[k].size != expected[k].size)
    if changed:
        problems.append(f"content changed: {changed[:5]}")
    wrong = sorted(k for k, f in common.items() if f.storage_class != storage_class)
    if wrong:
        problems.append(f"not in {storage_class}: {wrong[:5]}")
    return after, problems


def _copy_missing(source: ObjectStore, target: ObjectStore, wanted: Mapping[str, ObjectFacts],
                  present: Mapping[str, ObjectFacts], storage_class: str) -> int:
    """Copy each wanted object that ``target`` lacks (or holds with another size or class); how many."""
    copied = 0
    for key, facts in sorted(wanted.items()):
        there = present.get(key)
        if there is None or there.size != facts.size or there.storage_class != storage_class:
            target.copy_from(source, key, storage_class)
            copied += 1
    return copied


class TierMover:
    def __init__(self, store: ObjectStore, vault: ObjectStore | None = None):
        self.store = store
        self.vault = vault          # the Object Lock bucket of tiers with a retention_lock (None: not used)

    def inventory(self, prefix: str) -> dict[str, ObjectFacts]:
        """Every object under ``prefix`` with size, ETag and storage class, from one listing."""
        return _inventory(self.store, prefix)

    def move(self, prefix: str, storage_class: str) -> MoveReport:
        """Put every object under ``prefix`` into ``storage_class``; raises TierMoveError if anything differs after."""
        before = self.inventory(prefix)
        strong = {k for k, f in before.items() if f.multipart}
        sums_before = _checksums(self.store, before, strong)
        copied = 0
        for key, facts in sorted(before.items()):
            if facts.storage_class != storage_class:
                self.store.set_storage_class(key, storage_class)
                copied += 1
        after, problems = _differences(before, sums_before, self.store, prefix, storage_class, strong)
        if problems:
            raise TierMoveError(f"moving {prefix} to {storage_class}: " + "; ".join(problems))
        return MoveReport(prefix, storage_class, tuple(sorted(after)), sum(f.size for f in after.values()), copied)

    def move_between(self, prefix: str, from_tier: StorageTier, to_tier: StorageTier, now: datetime) -> MoveReport:
        """The move of a rendition from one tier to another, through the vault where a tier is locked."""
        if self.vault is not None and to_tier.retention_lock != "none":
            return self.archive(prefix, to_tier.storage_class, to_tier.retention_lock,
                                now + timedelta(seconds=to_tier.retention_period))
        if self.vault is not None and from_tier.retention_lock != "none":
            return self.unarchive(prefix, to_tier.storage_class)
        return self.move(prefix, to_tier.storage_class)

    def archive(self, prefix: str, storage_class: str, mode: str, until: datetime) -> MoveReport:
        """Serving bucket → vault: copy, lock until ``until``, verify, then delete the serving copies."""
        assert self.vault is not None
        serving = self.inventory(prefix)
        vaulted = _inventory(self.vault, prefix)
        if not serving and vaulted:          # an earlier run finished the copies and the deletes
            return MoveReport(prefix, storage_class, tuple(sorted(vaulted)),
                              sum(f.size for f in vaulted.values()), 0)
        strong = {k for k, f in serving.items() if f.multipart}
        sums = _checksums(self.store, serving, strong)
        copied = _copy_missing(self.store, self.vault, serving, vaulted, storage_class)
        for key in serving:
            if self.vault.retention(key) is None:
                self.vault.retain(key, mode, until)
        # extra vault keys: the part of an interrupted archive whose serving copies are deleted already
        after, problems = _differences(serving, sums, self.vault, prefix, storage_class, strong, extra_allowed=True)
        unlocked = [k for k in serving if self.vault.retention(k) is None]
        if unlocked:
            problems.append(f"not locked: {unlocked[:5]}")
        if problems:
            raise TierMoveError(f"archiving {prefix} to the vault ({storage_class}): " + "; ".join(problems))
        self.store.delete_prefix(prefix)
        return MoveReport(prefix, storage_class, tuple(sorted(after)), sum(f.size for f in after.values()), copied)

    def unarchive(self, prefix: str, storage_class: str) -> MoveReport:
        """Vault → serving bucket in ``storage_class``, verified; the locked vault copies stay."""
        assert self.vault is not None
        vaulted = _inventory(self.vault, prefix)
        if not vaulted:                      # never archived through the vault (e.g. before it existed)
            return self.move(prefix, storage_class)
        serving = self.inventory(prefix)
        strong = {k for k, f in vaulted.items() if f.multipart}
        sums = _checksums(self.vault, vaulted, strong)
        copied = _copy_missing(self.vault, self.store, vaulted, serving, storage_class)
        after, problems = _differences(vaulted, sums, self.store, prefix, storage_class, strong)
        if problems:
            raise TierMoveError(f"restoring {prefix} from the vault to {storage_class}: " + "; ".join(problems))
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
            if not self.store.restore(facts.key, days):
                log.info("object storage has no RestoreObject: archived objects are read as they are")
                return 0
            asked += 1
        return asked
