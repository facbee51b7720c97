"""The stall watch flags a partition with lag whose stream makes no progress while the database answers,
and nothing else: not a partition that moves, nor one whose events wait for PostgreSQL."""

from processors.lag import StallWatch


def test_lagging_partition_that_does_not_move_is_flagged_once_per_period() -> None:
    watch = StallWatch(stall_s=30, db_quiet_s=45)
    assert watch.check({"p0": 5}, {"p0": (100, 90)}, now=0) == []
    assert watch.check({"p0": 5}, {"p0": (100, 90)}, now=29) == []
    assert watch.check({"p0": 5}, {"p0": (100, 90)}, now=30) == ["p0"]
    assert watch.check({"p0": 5}, {"p0": (100, 90)}, now=31) == []


def test_moving_or_caught_up_partitions_are_not_flagged() -> None:
    watch = StallWatch(stall_s=30)
    watch.check({"moving": 5, "idle": 0}, {"moving": (100, 90), "idle": (7, 7)}, now=0)
    assert watch.check({"moving": 5, "idle": 0}, {"moving": (101, 90), "idle": (7, 7)}, now=40) == []
    assert watch.check({"moving": 5, "idle": 0}, {"moving": (101, 91), "idle": (7, 7)}, now=80) == []


def test_a_fetched_partition_whose_commits_move_is_not_flagged() -> None:
    """faust fetches to the end offset at once; the committed offset is what moves while it works."""
    watch = StallWatch(stall_s=30)
    watch.check({"p0": 50}, {"p0": (200, 150)}, now=0)
    assert watch.check({"p0": 40}, {"p0": (200, 160)}, now=31) == []
    assert watch.check({"p0": 30}, {"p0": (200, 170)}, now=62) == []


def test_no_stall_while_the_database_fails_and_for_a_while_after() -> None:
    watch = StallWatch(stall_s=30, db_quiet_s=45)
    watch.note_db_errors(0, now=0)
    watch.check({"p0": 5}, {"p0": (16, 6)}, now=0)
    watch.note_db_errors(1, now=10)  # the write is retrying: events wait for PostgreSQL
    assert watch.check({"p0": 5}, {"p0": (16, 6)}, now=40) == []
    assert watch.check({"p0": 5}, {"p0": (16, 6)}, now=54) == []
    assert watch.check({"p0": 5}, {"p0": (16, 6)}, now=55) == ["p0"]  # 45 s without a database error


def test_a_partition_nobody_committed_counts_its_records_from_the_first_offset() -> None:
    from processors.lag import unprocessed

    assert unprocessed(highwater=81, committed=None, earliest=0, gauge_lag=0) == 81  # fetched, never processed
    assert unprocessed(highwater=81, committed=36, earliest=0, gauge_lag=45) == 45
    assert unprocessed(highwater=10, committed=None, earliest=10, gauge_lag=0) == 0  # all deleted by retention
