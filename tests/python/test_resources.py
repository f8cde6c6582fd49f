"""Resources: create, batch create, get, update, delete, and vector search."""

import uuid

import numpy as np
import numpy.typing as npt
import pytest

from percolate_core import InvalidInputError, MemoryEngine, NotFoundError


def unit(values: "list[float]") -> "npt.NDArray[np.float32]":
    array = np.asarray(values, dtype=np.float32)
    return array / np.linalg.norm(array)


def test_a_created_resource_reads_back_with_every_field(memory: MemoryEngine) -> None:
    created = memory.create_resource(
        "hello world",
        embedding=np.array([1.0, 0.0, 0.0], dtype=np.float32),
        metadata={"lang": "en", "year": 2024, "tags": ["a", "b"], "nested": {"x": 1.5}},
        uri="file:///notes/1",
    )
    got = memory.get_resource(created.id)
    assert got.id == created.id
    assert got.content == "hello world"
    assert got.uri == "file:///notes/1"
    assert got.metadata == {"lang": "en", "year": 2024, "tags": ["a", "b"], "nested": {"x": 1.5}}
    embedding = got.embedding
    assert isinstance(embedding, np.ndarray)
    assert embedding.dtype == np.float32
    assert embedding.tolist() == [1.0, 0.0, 0.0]
    assert got.created_at == created.created_at
    assert got.created_at.tzinfo is not None
    assert got.updated_at >= got.created_at


def test_ids_are_accepted_as_str_or_uuid(memory: MemoryEngine) -> None:
    created = memory.create_resource("by uuid")
    assert memory.get_resource(uuid.UUID(created.id)).content == "by uuid"


def test_lists_and_float64_arrays_are_accepted_as_embeddings(memory: MemoryEngine) -> None:
    from_list = memory.create_resource("list", embedding=[0.0, 1.0])
    from_f64 = memory.create_resource("f64", embedding=np.array([0.5, 0.5], dtype=np.float64))
    strided = np.array([[1.0, 9.0], [0.25, 9.0]], dtype=np.float32)[:, 0]
    from_view = memory.create_resource("view", embedding=strided)
    assert memory.get_resource(from_list.id).embedding.tolist() == [0.0, 1.0]  # type: ignore[union-attr]
    assert memory.get_resource(from_f64.id).embedding.tolist() == [0.5, 0.5]  # type: ignore[union-attr]
    assert memory.get_resource(from_view.id).embedding.tolist() == [1.0, 0.25]  # type: ignore[union-attr]


def test_a_resource_without_embedding_has_none(memory: MemoryEngine) -> None:
    created = memory.create_resource("plain")
    assert created.embedding is None
    assert memory.get_resource(created.id).metadata == {}


def test_update_stores_changes_made_in_place(memory: MemoryEngine) -> None:
    created = memory.create_resource("v1", metadata={"n": 1}, embedding=[1.0, 0.0])
    record = memory.get_resource(created.id)
    record.content = "v2"
    record.metadata["n"] = 2
    record.metadata["added"] = True
    record.embedding = [0.0, 1.0]
    stored = memory.update_resource(record)
    assert stored.content == "v2"
    got = memory.get_resource(created.id)
    assert got.content == "v2"
    assert got.metadata == {"n": 2, "added": True}
    assert got.embedding.tolist() == [0.0, 1.0]  # type: ignore[union-attr]
    assert got.created_at == created.created_at
    assert got.updated_at >= created.updated_at


def test_delete_removes_and_a_second_delete_is_not_found(memory: MemoryEngine) -> None:
    created = memory.create_resource("gone soon")
    memory.delete_resource(created.id)
    with pytest.raises(NotFoundError, match="not found"):
        memory.get_resource(created.id)
    with pytest.raises(NotFoundError):
        memory.delete_resource(created.id)


def test_batch_create_takes_a_2d_array_and_lines_up_fields(memory: MemoryEngine) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((50, 8)).astype(np.float32)
    contents = [f"doc {i}" for i in range(50)]
    metadatas = [{"i": i, "even": i % 2 == 0} for i in range(50)]
    created = memory.batch_create_resources(contents, embeddings=vectors, metadatas=metadatas)
    assert [r.content for r in created] == contents
    assert len({r.id for r in created}) == 50
    got = memory.get_resource(created[17].id)
    assert got.metadata == {"i": 17, "even": False}
    np.testing.assert_array_equal(got.embedding, vectors[17])


def test_batch_create_takes_lists_of_lists_and_uris(memory: MemoryEngine) -> None:
    created = memory.batch_create_resources(
        ["a", "b"], embeddings=[[1.0, 0.0], [0.0, 1.0]], uris=["u:a", None]
    )
    assert [r.uri for r in created] == ["u:a", None]
    assert memory.get_resource(created[1].id).embedding.tolist() == [0.0, 1.0]  # type: ignore[union-attr]


def test_batch_fields_that_do_not_line_up_are_rejected(memory: MemoryEngine) -> None:
    with pytest.raises(InvalidInputError, match="embeddings"):
        memory.batch_create_resources(["a", "b"], embeddings=np.zeros((3, 2), np.float32) + 1)
    with pytest.raises(InvalidInputError, match="metadatas"):
        memory.batch_create_resources(["a"], metadatas=[{}, {}])
    with pytest.raises(InvalidInputError, match="batch"):
        memory.batch_create_resources([])


def test_search_returns_the_nearest_first_with_distances(memory: MemoryEngine) -> None:
    east = memory.create_resource("east", embedding=unit([1.0, 0.0]))
    north = memory.create_resource("north", embedding=unit([0.0, 1.0]))
    memory.create_resource("west", embedding=unit([-1.0, 0.1]))
    hits = memory.search_resources(unit([0.9, 0.2]), k=2)
    assert [h.resource.id for h in hits] == [east.id, north.id]
    assert hits[0].distance <= hits[1].distance
    assert hits[0].resource.embedding is not None


def test_search_accepts_lists_and_filters_on_metadata(memory: MemoryEngine) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((40, 4)).astype(np.float32)
    memory.batch_create_resources(
        [f"r{i}" for i in range(40)],
        embeddings=vectors,
        metadatas=[{"group": "even" if i % 2 == 0 else "odd", "i": i} for i in range(40)],
    )
    hits = memory.search_resources(vectors[3].tolist(), k=5, filter={"group": "odd"})
    assert len(hits) == 5
    assert all(h.resource.metadata["group"] == "odd" for h in hits)
    assert hits[0].resource.content == "r3"
    ranged = memory.search_resources(vectors[0], k=40, filter={"i": {"$gte": 10, "$lt": 20}})
    assert sorted(h.resource.metadata["i"] for h in ranged) == list(range(10, 20))


def test_search_with_ef_on_rocksdb_and_a_clear_error_on_postgres(
    memory: MemoryEngine, provider: str
) -> None:
    vectors = np.eye(4, dtype=np.float32)
    memory.batch_create_resources(["a", "b", "c", "d"], embeddings=vectors)
    if provider == "rocksdb":
        hits = memory.search_resources(vectors[2], k=1, ef=64)
        assert hits[0].resource.content == "c"
        with pytest.raises(InvalidInputError, match="ef"):
            memory.search_resources(vectors[2], k=1, ef=0)
    else:
        with pytest.raises(InvalidInputError, match="ef_search"):
            memory.search_resources(vectors[2], k=1, ef=64)


def test_bad_vectors_and_arguments_are_invalid_input(memory: MemoryEngine) -> None:
    memory.create_resource("fixes the dimension", embedding=[1.0, 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="dimension"):
        memory.create_resource("wrong dimension", embedding=[1.0, 0.0])
    with pytest.raises(InvalidInputError, match="embedding"):
        memory.create_resource("nan", embedding=[float("nan"), 0.0, 0.0])
    with pytest.raises(InvalidInputError, match="2-D"):
        memory.create_resource("matrix", embedding=np.zeros((2, 3), np.float32))
    with pytest.raises(InvalidInputError, match="embedding"):
        memory.create_resource("text", embedding="1,2,3")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="k"):
        memory.search_resources([1.0, 0.0, 0.0], k=0)
    with pytest.raises(InvalidInputError, match="dimension"):
        memory.search_resources([1.0, 0.0], k=1)
    with pytest.raises(InvalidInputError, match="filter"):
        memory.search_resources([1.0, 0.0, 0.0], k=1, filter={"$bogus": 1})
    with pytest.raises(InvalidInputError, match="resource id"):
        memory.get_resource("not-a-uuid")
    with pytest.raises(InvalidInputError, match="metadata"):
        memory.create_resource("nan meta", metadata={"x": float("inf")})
    with pytest.raises(InvalidInputError, match="metadata"):
        memory.create_resource("bad key", metadata={1: "x"})  # type: ignore[dict-item]


def test_numpy_scalars_in_metadata_become_json_numbers(memory: MemoryEngine) -> None:
    created = memory.create_resource(
        "scalars", metadata={"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True)}
    )
    assert memory.get_resource(created.id).metadata == {"i": 3, "f": 0.5, "b": True}
