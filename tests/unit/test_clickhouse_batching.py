"""BatchingSink: flush on rows / age / checkpoint, commit only what was written."""
import pytest

from framelog.sinks.base.batching import Batch, BatchingSink


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class RecordingSink(BatchingSink):
    def __init__(self, *a, fail_on=None, **kw):
        super().__init__(*a, **kw)
        self.written: list[tuple[str, int, int, int, list]] = []
        self.fail_on = fail_on or set()
        self.revoked = []

    def write(self, batch: Batch) -> None:
        if (batch.topic, batch.partition) in self.fail_on:
            raise RuntimeError("insert failed")
        self.written.append((batch.topic, batch.partition, batch.first_offset, batch.last_offset, list(batch.records)))

    def on_revoked(self, partitions):
        self.revoked.extend(partitions)


def make(max_rows=3, max_age=1.0, **kw):
    commits = []
    clock = FakeClock()
    sink = RecordingSink(max_rows, max_age, on_committed=commits.append, clock=clock, **kw)
    return sink, commits, clock


def test_flushes_at_max_rows_one_write_per_partition_and_commits_next_offsets():
    sink, commits, _ = make(max_rows=3)
    assert sink.add("a", "t", 0, 10) is None
    assert sink.add("b", "t", 1, 5) is None
    assert sink.add("c", "t", 0, 11) == {("t", 0): 12, ("t", 1): 6}
    assert sink.written == [("t", 0, 10, 11, ["a", "c"]), ("t", 1, 5, 5, ["b"])]
    assert commits == [{("t", 0): 12, ("t", 1): 6}]
    assert sink.pending_rows == 0


def test_flushes_on_age_via_add_and_poll():
    sink, commits, clock = make(max_rows=100, max_age=1.0)
    sink.add("a", "t", 0, 0)
    clock.now = 0.5
    assert sink.poll() is None
    clock.now = 1.0
    assert sink.poll() == {("t", 0): 1}
    sink.add("b", "t", 0, 1)
    clock.now = 2.5
    assert sink.add("c", "t", 0, 2) == {("t", 0): 3}
    assert [w[4] for w in sink.written] == [["a"], ["b", "c"]]
    assert commits == [{("t", 0): 1}, {("t", 0): 3}]


def test_checkpoint_flushes_everything_and_empty_flush_commits_nothing():
    sink, commits, _ = make(max_rows=100)
    assert sink.checkpoint() == {}
    assert commits == []
    sink.add("a", "t", 2, 7)
    assert sink.checkpoint() == {("t", 2): 8}


def test_failed_write_is_not_committed_and_retried_with_the_same_batch():
    sink, commits, _ = make(max_rows=100, fail_on={("t", 1)})
    sink.add("a", "t", 0, 0)
    sink.add("b", "t", 1, 0)
    sink.add("c", "t", 1, 1)
    with pytest.raises(RuntimeError):
        sink.flush()
    # partition 0 was written and committed; partition 1 stays pending, uncommitted
    assert commits == [{("t", 0): 1}]
    assert sink.pending_rows == 2
    sink.fail_on.clear()
    assert sink.flush() == {("t", 1): 2}
    assert sink.written[-1] == ("t", 1, 0, 1, ["b", "c"])   # same boundaries -> same dedup token


def test_revoke_drops_uncommitted_records_of_revoked_partitions():
    sink, commits, _ = make(max_rows=100)
    sink.add("a", "t", 0, 0)
    sink.add("b", "t", 1, 0)
    sink.revoke([("t", 1)])
    assert sink.revoked == [("t", 1)]
    assert sink.flush() == {("t", 0): 1}
    assert [w[1] for w in sink.written] == [0]


def test_offsets_must_increase_within_a_partition():
    sink, _, _ = make(max_rows=100)
    sink.add("a", "t", 0, 5)
    with pytest.raises(ValueError):
        sink.add("b", "t", 0, 5)


def test_limits_are_validated():
    with pytest.raises(ValueError):
        RecordingSink(0, 1.0)
    with pytest.raises(ValueError):
        RecordingSink(1, 0)


class OverlappingSink(BatchingSink):
    """Starts each write, finishes it later (like an insert on another thread)."""

    def __init__(self, *a, fail_finish=(), fail_start=(), **kw):
        super().__init__(*a, **kw)
        self.log: list[str] = []
        self.fail_finish, self.fail_start = set(fail_finish), set(fail_start)

    def write(self, batch: Batch) -> None:
        raise AssertionError("flush must use start_write")

    def start_write(self, batch: Batch):
        p = batch.partition
        if p in self.fail_start:
            raise RuntimeError(f"start {p} failed")
        self.log.append(f"start {p}")

        def finish():
            if p in self.fail_finish:
                raise RuntimeError(f"insert {p} failed")
            self.log.append(f"done {p}")
        return finish


def _overlapping(**kw):
    commits = []
    sink = OverlappingSink(100, 60.0, on_committed=commits.append, clock=FakeClock(), **kw)
    for p in range(4):
        sink.add("x", "t", p, 10 * p)
    return sink, commits


def test_flush_starts_the_next_write_before_finishing_the_previous_and_commits_all():
    sink, commits = _overlapping()
    assert sink.flush() == {("t", p): 10 * p + 1 for p in range(4)}
    assert sink.log == ["start 0", "start 1", "done 0", "start 2", "done 1", "start 3", "done 2", "done 3"]
    assert commits == [{("t", p): 10 * p + 1 for p in range(4)}] and sink.pending_rows == 0


def test_a_failed_finish_commits_only_the_writes_before_it():
    sink, commits = _overlapping(fail_finish={1})
    with pytest.raises(RuntimeError, match="insert 1"):
        sink.flush()
    assert commits == [{("t", 0): 1}]
    assert set(sink.pending()) == {("t", 1), ("t", 2), ("t", 3)} and sink.pending_rows == 3


def test_a_failed_start_still_commits_the_write_in_flight_if_it_landed():
    sink, commits = _overlapping(fail_start={2})
    with pytest.raises(RuntimeError, match="start 2"):
        sink.flush()
    assert commits == [{("t", 0): 1, ("t", 1): 11}]
    assert set(sink.pending()) == {("t", 2), ("t", 3)}


def test_add_many_takes_a_partitions_poll_at_once_and_checks_offset_order():
    sink, commits, _ = make(max_rows=5)
    assert sink.add_many(["a", "b"], "t", 0, [3, 4]) is None
    assert sink.add_many(["c"], "t", 1, [9]) is None
    with pytest.raises(ValueError):
        sink.add_many(["x"], "t", 0, [4])                      # not after the last one taken
    with pytest.raises(ValueError):
        sink.add_many(["x", "y"], "t", 0, [8, 7])
    assert sink.pending_rows == 3
    assert sink.add_many(["d", "e", "f"], "t", 0, [5, 6, 7]) == {("t", 0): 8, ("t", 1): 10}   # 6 >= 5: flushed
    assert [w[4] for w in sink.written] == [["a", "b", "d", "e", "f"], ["c"]]
    assert commits == [{("t", 0): 8, ("t", 1): 10}]


class PipelinedSink(OverlappingSink):
    pipelined = True


def _pipelined(**kw):
    commits = []
    clock = FakeClock()
    sink = PipelinedSink(2, 60.0, on_committed=commits.append, clock=clock, **kw)
    return sink, commits, clock


def test_pipelined_flush_returns_with_writes_in_flight_and_finishes_them_at_the_next_flush():
    sink, commits, _ = _pipelined()
    sink.add("a", "t", 0, 0)
    assert sink.add("b", "t", 1, 0) == {}                          # due: both started, none finished
    assert sink.log == ["start 0", "start 1"] and commits == [] and sink.pending_rows == 0
    assert set(sink.uncommitted()) == {("t", 0), ("t", 1)} and sink.pending() == {}
    sink.add("c", "t", 0, 1)                                       # the consumer goes on meanwhile
    assert sink.add("d", "t", 0, 2) == {("t", 0): 1, ("t", 1): 1}  # next flush: the first one finished first
    assert sink.log == ["start 0", "start 1", "done 0", "done 1", "start 0"]
    assert commits == [{("t", 0): 1, ("t", 1): 1}]
    assert sink.flush() == {("t", 0): 3}                            # explicit flush waits for everything
    assert commits[-1] == {("t", 0): 3} and sink.uncommitted() == {}


def test_pipelined_idle_poll_finishes_the_writes_in_flight():
    sink, commits, _ = _pipelined()
    sink.add_many(["a", "b"], "t", 0, [0, 1])
    assert commits == []
    assert sink.poll() == {("t", 0): 2}
    assert commits == [{("t", 0): 2}] and sink.poll() is None


def test_pipelined_failed_write_goes_back_in_front_of_newer_records_uncommitted():
    sink, commits, _ = _pipelined(fail_finish={0})
    sink.add_many(["a", "b"], "t", 0, [0, 1])                     # started, will fail
    sink.add("c", "t", 0, 2)                                        # newer record, pending
    with pytest.raises(RuntimeError, match="insert 0"):
        sink.flush()
    assert commits == []
    batch = sink.pending()[("t", 0)]
    assert batch.offsets == [0, 1, 2] and batch.records == ["a", "b", "c"] and sink.pending_rows == 3
    sink.fail_finish.clear()
    assert sink.flush() == {("t", 0): 3}


def test_pipelined_revoke_commits_what_is_in_flight_then_drops_pending():
    sink, commits, _ = _pipelined()
    sink.add_many(["a", "b"], "t", 0, [0, 1])                     # in flight
    sink.add("c", "t", 0, 2)                                        # pending
    sink.revoke([("t", 0)])
    assert commits == [{("t", 0): 2}]
    assert sink.pending() == {} and sink.uncommitted() == {} and sink.pending_rows == 0
