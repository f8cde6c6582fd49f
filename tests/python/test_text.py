"""Full-text search and recall from Python, on both providers."""

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from conftest import EngineFactory, postgres_urls, unique_tenant
from percolate_core import (
    AsyncMemoryEngine,
    InvalidInputError,
    MemoryEngine,
    Moment,
    RecallHit,
    Resource,
    TextHit,
)

NOTES = [
    "The contract with Acme was signed on Monday",
    "An apple pie recipe with cinnamon",
    "Acme wants the contract renewed next year",
    "Running is good for the heart",
]


def axis(i: int) -> npt.NDArray[np.float32]:
    """A unit vector along axis ``i`` of 4."""
    v = np.zeros(4, dtype=np.float32)
    v[i] = 1.0
    return v


def test_text_search_ranks_by_bm25_with_stemming(memory: MemoryEngine) -> None:
    created = memory.batch_create_resources(NOTES, metadatas=[{"n": i} for i in range(4)])
    hits = memory.text_search("contracts ACME", k=10)
    assert all(isinstance(hit, TextHit) for hit in hits)
    assert {hit.record.id for hit in hits} == {created[0].id, created[2].id}
    assert all(isinstance(hit.record, Resource) for hit in hits)
    assert hits[0].score >= hits[1].score > 0
    assert [h.record.id for h in memory.text_search("runs", k=5)] == [created[3].id]
    assert memory.text_search("zebra") == []
    filtered = memory.text_search("contract", filter={"n": 2})
    assert [hit.record.id for hit in filtered] == [created[2].id]
    assert "TextHit(id=" in repr(hits[0])


def test_text_search_finds_moments_and_applies_the_window(memory: MemoryEngine) -> None:
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    early = memory.create_moment(t0, t0 + timedelta(hours=1), "call", content="called Acme")
    late = memory.create_moment(
        t0 + timedelta(days=3), t0 + timedelta(days=3, hours=1), "call", content="Acme again"
    )
    hits = memory.text_search("acme", moments=True)
    assert {hit.record.id for hit in hits} == {early.id, late.id}
    assert all(isinstance(hit.record, Moment) for hit in hits)
    windowed = memory.text_search("acme", moments=True, since=t0 + timedelta(days=1))
    assert [hit.record.id for hit in windowed] == [late.id]


def test_an_update_is_searched_by_its_new_content(memory: MemoryEngine) -> None:
    note = memory.create_resource("an apple pie")
    assert [h.record.id for h in memory.text_search("apple")] == [note.id]
    note.content = "a pear tart"
    memory.update_resource(note)
    assert memory.text_search("apple") == []
    assert [h.record.id for h in memory.text_search("tart")] == [note.id]
    memory.delete_resource(note.id)
    assert memory.text_search("tart") == []


def test_recall_fuses_text_and_vector_and_says_why(memory: MemoryEngine) -> None:
    created = memory.batch_create_resources(NOTES, embeddings=[axis(i) for i in range(4)])
    # The text finds notes 0 and 2; the vector points at note 2 first.
    hits = memory.recall(k=4, text="acme contract", vector=axis(2))
    assert all(isinstance(hit, RecallHit) for hit in hits)
    assert hits[0].resource.id == created[2].id
    assert hits[0].text_rank is not None and hits[0].vector_rank == 1
    found_by_text = {hit.resource.id for hit in hits if hit.text_rank is not None}
    assert found_by_text == {created[0].id, created[2].id}
    assert hits == sorted(hits, key=lambda hit: -hit.score)
    text_only = memory.recall(k=2, text="cinnamon")
    assert [hit.resource.id for hit in text_only] == [created[1].id]
    assert text_only[0].vector_rank is None
    vector_only = memory.recall(k=1, vector=axis(3), vector_weight=2.0)
    assert [hit.resource.id for hit in vector_only] == [created[3].id]
    assert vector_only[0].text_rank is None


def test_bad_queries_are_refused_with_clear_errors(memory: MemoryEngine) -> None:
    memory.create_resource("something")
    with pytest.raises(InvalidInputError, match="no signal"):
        memory.recall(k=3)
    with pytest.raises(InvalidInputError, match="k"):
        memory.text_search("something", k=0)
    with pytest.raises(InvalidInputError, match="weight"):
        memory.recall(k=3, text="something", text_weight=-1.0)
    with pytest.raises(InvalidInputError, match="NUL"):
        memory.text_search("a\0b")


def test_async_text_search_and_recall(
    provider: str, tmp_path: Path, open_engine: EngineFactory
) -> None:
    async def scenario() -> None:
        tenant = unique_tenant()
        if provider == "rocksdb":
            engine = AsyncMemoryEngine("rocksdb", str(tmp_path / "async"), tenant)
        else:
            url, admin = postgres_urls()
            engine = AsyncMemoryEngine("postgres", url, tenant, admin_connection_string=admin)
        async with engine as memory:
            created = await memory.batch_create_resources(
                NOTES, embeddings=[axis(i) for i in range(4)]
            )
            hits = await memory.text_search("cinnamon")
            assert [hit.record.id for hit in hits] == [created[1].id]
            fused = await memory.recall(k=2, text="heart", vector=axis(3))
            assert fused[0].resource.id == created[3].id
            assert (fused[0].text_rank, fused[0].vector_rank) == (1, 1)

    asyncio.run(scenario())
