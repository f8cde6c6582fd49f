"""Moments and time ranges, with datetimes."""

from datetime import datetime, timedelta, timezone

import pytest

from percolate_core import InvalidInputError, MemoryEngine, NotFoundError

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def test_a_moment_round_trips_to_the_microsecond(memory: MemoryEngine) -> None:
    ada = memory.create_entity("Ada", "person")
    start = T0 + timedelta(microseconds=123457)
    created = memory.create_moment(
        start,
        start + timedelta(hours=1),
        "meeting",
        content="planning",
        entities=[ada.id],
        metadata={"room": 4},
    )
    got = memory.get_moment(created.id)
    assert got.start == start
    assert got.end == start + timedelta(hours=1)
    assert got.start.tzinfo is not None
    assert (got.kind, got.content, got.entities, got.metadata) == (
        "meeting",
        "planning",
        [ada.id],
        {"room": 4},
    )


def test_other_time_zones_are_the_same_instant(memory: MemoryEngine) -> None:
    paris = timezone(timedelta(hours=1))
    created = memory.create_moment(
        datetime(2026, 3, 1, 10, 0, tzinfo=paris), datetime(2026, 3, 1, 11, 0, tzinfo=paris), "x"
    )
    assert memory.get_moment(created.id).start == T0


def test_update_and_delete(memory: MemoryEngine) -> None:
    created = memory.create_moment(T0, T0 + timedelta(minutes=5), "call")
    created.end = T0 + timedelta(minutes=30)
    created.content = "longer"
    created.metadata = {"late": True}
    memory.update_moment(created)
    got = memory.get_moment(created.id)
    assert got.end == T0 + timedelta(minutes=30)
    assert (got.content, got.metadata) == ("longer", {"late": True})
    memory.delete_moment(created.id)
    with pytest.raises(NotFoundError):
        memory.get_moment(created.id)


def test_moments_in_range_overlap_and_are_ordered_by_start(memory: MemoryEngine) -> None:
    hour = timedelta(hours=1)
    early = memory.create_moment(T0, T0 + hour, "a")
    middle = memory.create_moment(T0 + 2 * hour, T0 + 3 * hour, "b")
    late = memory.create_moment(T0 + 5 * hour, T0 + 6 * hour, "c")
    window = memory.moments_in_range(T0 + hour, T0 + 2 * hour)
    assert [m.id for m in window] == [early.id, middle.id]  # touching counts
    assert [m.id for m in memory.moments_in_range(start=T0 + 4 * hour)] == [late.id]
    assert [m.id for m in memory.moments_in_range(end=T0)] == [early.id]
    assert len(memory.moments_in_range()) == 3
    with pytest.raises(InvalidInputError, match="time range"):
        memory.moments_in_range(T0 + hour, T0)


def test_bad_moments_are_invalid_input(memory: MemoryEngine) -> None:
    with pytest.raises(InvalidInputError, match="moment"):
        memory.create_moment(T0, T0 - timedelta(seconds=1), "backwards")
    with pytest.raises(InvalidInputError, match="datetime"):
        memory.create_moment("2026-03-01", T0, "text")  # type: ignore[arg-type]


def test_a_naive_datetime_is_local_time(memory: MemoryEngine) -> None:
    naive = datetime(2026, 3, 1, 9, 0)
    created = memory.create_moment(naive, naive, "local")
    assert memory.get_moment(created.id).start == naive.astimezone(timezone.utc)
