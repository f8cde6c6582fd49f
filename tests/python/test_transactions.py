"""Transactions as context managers: commit, rollback, conflicts."""

import pytest

from percolate_core import ConflictError, InvalidInputError, MemoryEngine, NotFoundError


def test_a_block_that_ends_normally_commits(memory: MemoryEngine) -> None:
    with memory.transaction() as tx:
        ada = tx.create_entity("Ada", "person")
        engine = tx.create_entity("Engine", "machine")
        edge = tx.create_edge(ada.id, engine.id, "wrote_about")
        note = tx.create_resource("in a transaction", embedding=[1.0, 0.0])
        assert tx.get_resource(note.id).content == "in a transaction"
        assert [e.id for e in tx.get_edges(ada.id, "out")] == [edge.id]
    assert not tx.active
    assert memory.get_entity(ada.id).name == "Ada"
    assert memory.get_edge(edge.id).to_id == engine.id
    assert memory.get_resource(note.id).content == "in a transaction"


def test_a_block_that_raises_rolls_back(memory: MemoryEngine) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with memory.transaction() as tx:
            note = tx.create_resource("never stored")
            raise RuntimeError("boom")
    with pytest.raises(NotFoundError):
        memory.get_resource(note.id)


def test_writes_are_invisible_outside_until_commit(memory: MemoryEngine) -> None:
    tx = memory.transaction()
    entity = tx.create_entity("Hidden", "secret")
    with pytest.raises(NotFoundError):
        memory.get_entity(entity.id)
    tx.commit()
    assert memory.get_entity(entity.id).name == "Hidden"
    with pytest.raises(InvalidInputError, match="transaction"):
        tx.create_entity("late", "x")
    with pytest.raises(InvalidInputError, match="transaction"):
        tx.commit()


def test_every_record_kind_works_in_a_transaction(memory: MemoryEngine) -> None:
    from datetime import datetime, timezone

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    kept = memory.create_resource("r", metadata={"v": 1})
    person = memory.create_entity("P", "person")
    moment = memory.create_moment(at, at, "m")
    with memory.transaction() as tx:
        record = tx.get_resource(kept.id)
        record.metadata = {"v": 2}
        tx.update_resource(record)
        entity = tx.get_entity(person.id)
        entity.kind = "human"
        tx.update_entity(entity)
        got = tx.get_moment(moment.id)
        got.content = "changed"
        tx.update_moment(got)
        extra = tx.create_moment(at, at, "extra", entities=[person.id])
        other = tx.create_entity("Q", "person")
        edge = tx.create_edge(person.id, other.id, "knows")
        assert tx.get_edge(edge.id).relation == "knows"
        tx.delete_edge(edge.id)
        tx.delete_entity(other.id)
        tx.delete_moment(extra.id)
        doomed = tx.create_resource("doomed")
        tx.delete_resource(doomed.id)
    assert memory.get_resource(kept.id).metadata == {"v": 2}
    assert memory.get_entity(person.id).kind == "human"
    assert memory.get_moment(moment.id).content == "changed"
    for gone in (lambda: memory.get_moment(extra.id), lambda: memory.get_entity(other.id)):
        with pytest.raises(NotFoundError):
            gone()


def test_explicit_rollback_discards(memory: MemoryEngine) -> None:
    tx = memory.transaction()
    entity = tx.create_entity("Temp", "x")
    tx.rollback()
    with pytest.raises(NotFoundError):
        memory.get_entity(entity.id)


def test_a_lost_race_raises_conflict_and_keeps_the_winner(memory: MemoryEngine) -> None:
    shared = memory.create_resource("v0")
    loser = memory.transaction()
    # The loser reads first, so its snapshot predates the winner's commit.
    stale = loser.get_resource(shared.id)
    with memory.transaction() as winner:
        record = winner.get_resource(shared.id)
        record.content = "winner"
        winner.update_resource(record)
    with pytest.raises(ConflictError):
        # The conflict is found at the write (PostgreSQL) or at the commit (RocksDB).
        with loser:
            stale.content = "loser"
            loser.update_resource(stale)
    assert not loser.active
    assert memory.get_resource(shared.id).content == "winner"


def test_a_transaction_open_at_close_can_only_roll_back(memory: MemoryEngine) -> None:
    from percolate_core import PercolateError

    tx = memory.transaction()
    tx.create_entity("Unsaved", "x")
    memory.close()
    with pytest.raises(PercolateError, match="closed"):
        tx.create_entity("more", "x")
    with pytest.raises(PercolateError, match="closed"):
        tx.commit()
    tx.rollback()
    assert not tx.active
