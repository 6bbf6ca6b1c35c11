"""AnalyticsSinkRunner.export_lag: records and seconds behind, refreshed every poll."""
import time

from prometheus_client import REGISTRY

from framelog.sinks.base.batching import BatchingSink
from framelog.sinks.clickhouse.runner import AnalyticsSinkRunner


class Held(BatchingSink):
    def write(self, batch):
        raise AssertionError("not flushed in this test")


class Message:
    def __init__(self, appended_ms):
        self.appended_ms = appended_ms

    def timestamp(self):
        return (1, self.appended_ms)


class Watermarks:
    def __init__(self, highs):
        self.highs = highs

    def high_watermark(self, topic, partition):
        return self.highs.get((topic, partition))


def _runner(highs, committed):
    runner = object.__new__(AnalyticsSinkRunner)
    runner.consumer = Watermarks(highs)
    runner.sink = Held(10_000, 600.0)
    runner.committed = dict(committed)
    return runner


def _lag(topic, partition):
    labels = {"topic": topic, "partition": str(partition)}
    return (REGISTRY.get_sample_value("framelog_analytics_sink_lag_records", labels),
            REGISTRY.get_sample_value("framelog_analytics_sink_lag_seconds", labels))


def test_lag_counts_records_after_the_commit_and_ages_the_oldest_uncommitted_one():
    now_ms = time.time() * 1000
    runner = _runner({("lag.t", 0): 150, ("lag.t", 1): 40, ("lag.t", 2): 7}, {("lag.t", 0): 100, ("lag.t", 1): 40})
    runner.sink.add_many([Message(now_ms - 30_000), Message(now_ms - 1000)], "lag.t", 0, [100, 101])
    runner.sink.add_many([Message(now_ms - 5000)], "lag.t", 2, [5])        # never committed yet
    runner.export_lag()
    records, seconds = _lag("lag.t", 0)
    assert records == 50 and 29 < seconds < 60            # the oldest held record is 30 s old
    assert _lag("lag.t", 1) == (0, 0)                      # caught up
    records, seconds = _lag("lag.t", 2)
    assert records == 2 and 4 < seconds < 60               # counted from the first offset it holds


def test_lag_keeps_growing_while_nothing_is_committed():
    runner = _runner({("lag.u", 0): 10}, {("lag.u", 0): 10})
    runner.export_lag()
    assert _lag("lag.u", 0) == (0, 0)
    runner.consumer.highs[("lag.u", 0)] = 500              # the broker has more; the sink has not committed
    runner.export_lag()
    assert _lag("lag.u", 0)[0] == 490
