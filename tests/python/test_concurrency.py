"""Threads and asyncio: the GIL is released during calls; awaitables run on the engine's
runtime."""

import asyncio
import threading
from pathlib import Path
from typing import List

import numpy as np
import pytest

from conftest import EngineFactory, postgres_urls, unique_tenant
from percolate_core import (
    AsyncMemoryEngine,
    AsyncTenant,
    MemoryEngine,
    NotFoundError,
    PercolateError,
)


def test_eight_threads_calling_at_once_all_succeed(memory: MemoryEngine) -> None:
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((64, 16)).astype(np.float32)
    created = memory.batch_create_resources([f"r{i}" for i in range(64)], embeddings=vectors)
    errors: List[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        mine_rng = np.random.default_rng(100 + index)
        try:
            barrier.wait()
            for round_ in range(25):
                j = (index * 25 + round_) % 64
                assert memory.get_resource(created[j].id).content == f"r{j}"
                hits = memory.search_resources(vectors[j], k=3)
                assert hits[0].resource.id == created[j].id
                fresh = mine_rng.standard_normal(16).astype(np.float32)
                mine = memory.create_resource(f"t{index}-{round_}", embedding=fresh)
                assert memory.get_resource(mine.id).content == f"t{index}-{round_}"
        except BaseException as error:  # noqa: BLE001 - reported to the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(memory.scan("resource", limit=1000)) == 64 + 8 * 25


def open_async(provider: str, tmp_path: Path, tenant_id: str) -> AsyncMemoryEngine:
    if provider == "rocksdb":
        return AsyncMemoryEngine("rocksdb", str(tmp_path / "async"), tenant_id)
    url, admin = postgres_urls()
    return AsyncMemoryEngine("postgres", url, tenant_id, admin_connection_string=admin)


def test_asyncio_gather_of_a_hundred_searches(provider: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((100, 12)).astype(np.float32)

    async def scenario() -> None:
        async with open_async(provider, tmp_path, unique_tenant()) as memory:
            created = await memory.batch_create_resources(
                [f"a{i}" for i in range(100)], embeddings=vectors
            )
            results = await asyncio.gather(
                *(memory.search_resources(vectors[i], k=1) for i in range(100))
            )
            assert [hits[0].resource.id for hits in results] == [r.id for r in created]

    asyncio.run(scenario())


def test_every_async_method_awaits_to_the_same_results(provider: str, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    async def scenario() -> None:
        memory = open_async(provider, tmp_path, unique_tenant())
        try:
            assert (await memory.config())["metric"] == "cosine"
            note = await memory.create_resource("n", embedding=[1.0, 0.0], metadata={"a": 1})
            got = await memory.get_resource(note.id)
            got.content = "n2"
            assert (await memory.update_resource(got)).content == "n2"
            assert (await memory.search_resources([1.0, 0.0], k=1))[0].resource.id == note.id
            a = await memory.create_entity("A", "x", properties={"p": True})
            b = await memory.create_entity("B", "x")
            a.name = "A2"
            await memory.update_entity(a)
            assert (await memory.get_entity(a.id)).name == "A2"
            assert [e.id for e in await memory.search_entities("a2")] == [a.id]
            edge = await memory.create_edge(a.id, b.id, "r")
            assert (await memory.get_edge(edge.id)).from_id == a.id
            assert len(await memory.get_edges(b.id, "in")) == 1
            assert [r.entity_id for r in await memory.traverse(a.id, 1)] == [b.id]
            at = datetime(2026, 2, 2, tzinfo=timezone.utc)
            moment = await memory.create_moment(at, at + timedelta(hours=1), "m")
            moment.content = "c"
            await memory.update_moment(moment)
            assert (await memory.get_moment(moment.id)).content == "c"
            assert len(await memory.moments_in_range(at, at)) == 1
            assert len(await memory.scan("entity")) == 2
            await memory.delete_edge(edge.id)
            await memory.delete_entity(b.id)
            await memory.delete_moment(moment.id)
            await memory.delete_resource(note.id)
            with pytest.raises(NotFoundError):
                await memory.get_resource(note.id)
            other = await memory.create_tenant(unique_tenant())
            assert isinstance(other, AsyncTenant)
            other_id = other.id
            assert other_id in await memory.list_tenants()
            assert (await memory.tenant(other_id)).id == other_id
            # The engine releases its own handles to the tenant first (RocksDB refuses to
            # delete a tenant that open handles hold); `other` is one of them.
            await memory.delete_tenant(other_id)
            with pytest.raises(PercolateError, match="deleted"):
                other.id
            assert other_id not in await memory.list_tenants()
        finally:
            memory.close()

    asyncio.run(scenario())


def test_async_export_and_import(provider: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        memory = open_async(provider, tmp_path, unique_tenant())
        try:
            await memory.create_resource("exported", embedding=[0.0, 1.0])
            summary = await memory.export(tmp_path / "async.jsonl")
            assert summary["header"]["counts"]["resources"] == 1
            target = unique_tenant()
            imported = await memory.import_(tmp_path / "async.jsonl", tenant_id=target)
            assert imported["inserted"]["resources"] == 1
            await memory.delete_tenant(target)
        finally:
            memory.close()

    asyncio.run(scenario())
