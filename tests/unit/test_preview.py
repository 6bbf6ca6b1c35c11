"""Playable while processing (issue 13 pt 4): which rungs a growing preview lists, and what each growth purges."""
from __future__ import annotations

import json

from framelog.processors.chunk_ledger import Entry
from framelog.processors.media.chunked import ChunkOutput, RungSegments, leading_by_rung
from framelog.processors.media.hls import Segment
from framelog.processors.preview import preview_paths, preview_renditions


def _chunk(index: int, *rungs: str) -> ChunkOutput:
    segs = (Segment(f"segment_{index:05d}.ts", 10.0, 1000),)
    return ChunkOutput(index, 10.0 * index, 10.0 * (index + 1),
                       tuple(RungSegments(r, "avc1.64001e", segs, "") for r in rungs), 250, 1.0)


def test_each_rung_lists_its_own_leading_chunks_and_joins_with_its_first():
    outputs = {0: _chunk(0, "360p", "720p"), 1: _chunk(1, "360p", "720p"), 3: _chunk(3, "360p", "720p")}
    leads = leading_by_rung(outputs, 4, ["360p", "720p"])
    assert {name: [o.index for o in lead] for name, lead in leads.items()} == {"360p": [0, 1], "720p": [0, 1]}
    partial = {0: _chunk(0, "360p", "720p"), 1: _chunk(1, "360p")}           # 720p of chunk 1 not written
    leads = leading_by_rung(partial, 4, ["360p", "720p", "1080p"])
    assert {name: len(lead) for name, lead in leads.items()} == {"360p": 2, "720p": 1}   # 1080p has not joined
    assert leading_by_rung({1: _chunk(1, "360p")}, 4, ["360p"]) == {}          # nothing before chunk 0


def test_preview_outputs_name_every_rung_lowest_first_and_the_old_single_rung_form_still_reads():
    listed = [{"name": "360p", "width": 640, "height": 360, "bandwidth": 900000, "average_bandwidth": 800000,
               "codecs": "avc1.64001e,mp4a.40.2", "chunks": 2},
              {"name": "720p", "width": 1280, "height": 720, "bandwidth": 3000000, "average_bandwidth": 2500000,
               "codecs": "avc1.64001f,mp4a.40.2", "chunks": 1}]
    assert [r["name"] for r in preview_renditions({"preview_renditions": json.dumps(listed)})] == ["360p", "720p"]
    old = {"preview_rendition": "360p", "preview_width": "640", "preview_height": "360", "preview_bandwidth": "9",
           "preview_average_bandwidth": "8", "preview_codecs": "avc1", "preview_chunks": "3"}
    assert preview_renditions(old) == [{"name": "360p", "width": 640, "height": 360, "bandwidth": 9,
                                        "average_bandwidth": 8, "codecs": "avc1", "chunks": 3}]
    assert preview_renditions({}) == []


def test_a_growth_purges_the_master_and_the_playlists_that_grew():
    outputs = {"preview_renditions": json.dumps([{"name": "360p", "chunks": 2}, {"name": "720p", "chunks": 1}])}
    assert preview_paths("v1", outputs, {"360p": 1, "720p": 1}) == ["/hls/v1/master.m3u8", "/hls/v1/360p/playlist.m3u8"]
    assert preview_paths("v1", outputs, {"360p": 2}) == ["/hls/v1/master.m3u8", "/hls/v1/720p/playlist.m3u8"]
    assert preview_paths("v1", outputs) == ["/hls/v1/master.m3u8", "/hls/v1/360p/playlist.m3u8",
                                            "/hls/v1/720p/playlist.m3u8"]


def test_the_ledger_keeps_each_rungs_published_chunks_through_its_changelog():
    entry = Entry(job_id="j", previewed=2, previewed_rungs={"360p": 2, "720p": 1})
    assert Entry.from_dict(entry.to_dict()).previewed_rungs == {"360p": 2, "720p": 1}
    assert Entry.from_dict({"job_id": "j", "previewed": 2}).previewed_rungs == {}    # an entry from before
