"""scan, export and import."""

import io
import json
from pathlib import Path

import numpy as np

from conftest import EngineFactory, unique_tenant
from percolate_core import Edge, Entity, MemoryEngine, Moment, Resource


def fill(memory: MemoryEngine) -> None:
    from datetime import datetime, timezone

    rng = np.random.default_rng(3)
    memory.batch_create_resources(
        [f"doc {i}" for i in range(25)],
        embeddings=rng.standard_normal((25, 6)).astype(np.float32),
        metadatas=[{"i": i} for i in range(25)],
    )
    a = memory.create_entity("A", "node")
    b = memory.create_entity("B", "node")
    memory.create_edge(a.id, b.id, "links")
    at = datetime(2026, 5, 1, tzinfo=timezone.utc)
    memory.create_moment(at, at, "event", entities=[a.id])


def test_scan_pages_through_each_kind_in_creation_order(memory: MemoryEngine) -> None:
    fill(memory)
    first = memory.scan("resource", limit=10)
    assert [r.content for r in first] == [f"doc {i}" for i in range(10)]  # type: ignore[union-attr]
    rest = memory.scan("resource", after=first[-1].id, limit=100)
    assert len(rest) == 15
    assert all(isinstance(r, Resource) for r in first + rest)
    assert [type(r) for r in memory.scan("entity")] == [Entity, Entity]
    assert [type(r) for r in memory.scan("edge")] == [Edge]
    assert [type(r) for r in memory.scan("moment")] == [Moment]


def test_export_to_a_path_imports_into_another_tenant(
    memory: MemoryEngine, open_engine: EngineFactory, tmp_path: Path
) -> None:
    fill(memory)
    path = tmp_path / "tenant.jsonl"
    summary = memory.export(path)
    assert summary["header"]["counts"] == {"resources": 25, "entities": 2, "edges": 1, "moments": 1}
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["format"] == "percolate-export"
    target = unique_tenant()
    engine = open_engine()
    imported = engine.import_(str(path), tenant_id=target)
    assert imported["tenant"] == target and imported["created_tenant"] is True
    copy = engine.tenant(target)
    assert len(copy.scan("resource")) == 25
    again = engine.import_(path, tenant_id=target)
    assert again["inserted"]["resources"] == 0 and again["skipped"]["resources"] == 25


def test_export_and_import_through_file_objects(
    memory: MemoryEngine, open_engine: EngineFactory
) -> None:
    fill(memory)
    buffer = io.BytesIO()
    memory.export(buffer)
    assert buffer.getvalue().startswith(b'{"format":"percolate-export"')
    target = open_engine(unique_tenant())
    summary = target.import_(io.BytesIO(buffer.getvalue()))
    assert summary["tenant"] == target.id
    assert summary["inserted"] == {"resources": 25, "entities": 2, "edges": 1, "moments": 1}
    hits = target.search_resources(memory.scan("resource", limit=1)[0].embedding, k=1)  # type: ignore[union-attr, arg-type]
    assert hits[0].resource.content == "doc 0"
