"""The stall watch flags a partition with lag whose position stands still, and nothing else."""

from processors.lag import StallWatch


def test_lagging_partition_that_does_not_move_is_flagged_once_per_period() -> None:
    watch = StallWatch(stall_s=30)
    assert watch.check({"p0": 5}, {"p0": 100}, now=0) == []
    assert watch.check({"p0": 5}, {"p0": 100}, now=29) == []
    assert watch.check({"p0": 5}, {"p0": 100}, now=30) == ["p0"]
    assert watch.check({"p0": 5}, {"p0": 100}, now=31) == []  # the clock starts again after a resume


def test_moving_or_caught_up_partitions_are_not_flagged() -> None:
    watch = StallWatch(stall_s=30)
    watch.check({"moving": 5, "idle": 0}, {"moving": 100, "idle": 7}, now=0)
    assert watch.check({"moving": 5, "idle": 0}, {"moving": 101, "idle": 7}, now=40) == []
    assert watch.check({"moving": 5, "idle": 0}, {"moving": 102, "idle": 7}, now=80) == []


def test_resumed_mark_survives_quiet_rounds_and_clears_when_the_partition_moves() -> None:
    watch = StallWatch(stall_s=30)
    watch.check({"p0": 5}, {"p0": 100}, now=0)
    assert watch.check({"p0": 5}, {"p0": 100}, now=30) == ["p0"]
    watch.resumed.add("p0")
    assert watch.check({"p0": 5}, {"p0": 100}, now=35) == []
    assert "p0" in watch.resumed  # still stuck: the next stall will restart the worker
    watch.check({"p0": 5}, {"p0": 101}, now=40)
    assert "p0" not in watch.resumed
