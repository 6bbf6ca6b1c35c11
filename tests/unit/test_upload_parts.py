"""PartWriter cuts any stream of chunks into S3 parts of one size and keeps a partial tail (a fake store)."""
from __future__ import annotations

import os
from typing import Any

from framelog.sinks.upload_sessions import PartWriter, UploadService, UploadSession, UploadView, partial_key

MIB = 2**20


class FakeStore:
    """The ObjectStore methods PartWriter uses, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.parts: dict[int, bytes] = {}

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        self.parts[number] = body
        return {"PartNumber": number, "ETag": f"e{number}", "Size": len(body)}

    def put_bytes(self, key: str, body: bytes, content_type: str = "") -> None:
        self.objects[key] = body

    def get_bytes(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


class Cfg:
    class upload_limits:  # noqa: N801
        part_size = 5 * MIB


def view_of(store: FakeStore, session: UploadSession) -> UploadView:
    parts = [{"PartNumber": n, "ETag": f"e{n}", "Size": len(b)} for n, b in sorted(store.parts.items())]
    offset = sum(p["Size"] for p in parts)
    view = UploadView(session.video_id, "open", offset, session.length, session, parts)
    key = partial_key(session.video_id, len(parts) + 1)
    for k, body in store.objects.items():
        if k == key:
            view.partial = (k, len(body))
            view.offset += len(body)
        else:
            view.stale_partials.append(k)
    return view


def test_chunks_of_any_size_make_equal_parts_and_a_partial_tail_resumes():
    data = os.urandom(23 * MIB + 11)
    store = FakeStore()
    service = UploadService(Cfg(), store, lambda: None)  # type: ignore[arg-type]
    session = UploadSession("v1", "uploads/v1/original", "u", len(data), "a", "video/mp4", "o", "t", "e",
                            part_size=5 * MIB)
    offset = 0
    for size in (MIB + 3, 7 * MIB, 2 * MIB, 9 * MIB, 4 * MIB):      # requests of odd sizes
        writer = PartWriter(service, view_of(store, session))
        assert writer.offset == offset
        writer.load()
        for i in range(offset, min(offset + size, len(data)), 64 * 1024):
            if writer.add(data[i:min(i + 64 * 1024, offset + size, len(data))]):
                writer.flush()
        offset = writer.close()
        assert offset == min(offset, len(data))
        assert all(len(b) == 5 * MIB for b in store.parts.values())     # every part whole while incomplete
        assert len(store.objects) <= 1                                   # one partial object at most
    writer = PartWriter(service, view_of(store, session))
    writer.load()
    writer.add(data[offset:])
    assert writer.close() == len(data) and writer.complete
    assert b"".join(store.parts[n] for n in sorted(store.parts)) == data
    assert [len(store.parts[n]) for n in sorted(store.parts)][:-1] == [5 * MIB] * 4
    assert store.objects == {}


def test_a_stale_partial_is_ignored_and_removed():
    store = FakeStore()
    service = UploadService(Cfg(), store, lambda: None)  # type: ignore[arg-type]
    session = UploadSession("v2", "k", "u", 20 * MIB, "a", "video/mp4", "o", "t", "e", part_size=5 * MIB)
    store.parts[1] = b"x" * 5 * MIB
    store.objects[partial_key("v2", 1)] = b"y" * MIB       # consumed by part 1, then the process died
    view = view_of(store, session)
    assert view.offset == 5 * MIB and view.partial is None
    writer = PartWriter(service, view)
    writer.load()
    writer.add(b"z" * 10)
    assert writer.close() == 5 * MIB + 10
    assert list(store.objects) == [partial_key("v2", 2)]
