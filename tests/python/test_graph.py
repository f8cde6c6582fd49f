"""Entities, edges and traversal."""

import pytest

from percolate_core import InvalidInputError, MemoryEngine, NotFoundError


def test_an_entity_round_trips_and_updates(memory: MemoryEngine) -> None:
    ada = memory.create_entity("Ada Lovelace", "person", properties={"born": 1815})
    got = memory.get_entity(ada.id)
    assert (got.name, got.kind, got.properties) == ("Ada Lovelace", "person", {"born": 1815})
    got.name = "Augusta Ada King"
    got.properties["title"] = "Countess"
    memory.update_entity(got)
    again = memory.get_entity(ada.id)
    assert again.name == "Augusta Ada King"
    assert again.properties == {"born": 1815, "title": "Countess"}
    assert again.created_at == ada.created_at


def test_entity_search_matches_word_prefixes_kind_and_properties(memory: MemoryEngine) -> None:
    memory.create_entity("Ada Lovelace", "person", properties={"field": "math"})
    memory.create_entity("Alan Turing", "person", properties={"field": "cs"})
    memory.create_entity("Analytical Engine", "machine")
    assert [e.name for e in memory.search_entities("love ad")] == ["Ada Lovelace"]
    assert [e.name for e in memory.search_entities(kind="person")] == [
        "Ada Lovelace",
        "Alan Turing",
    ]
    assert [e.name for e in memory.search_entities(properties={"field": "cs"})] == ["Alan Turing"]
    assert len(memory.search_entities(limit=2)) == 2
    with pytest.raises(InvalidInputError, match="limit"):
        memory.search_entities(limit=0)


def test_edges_are_visible_from_both_ends_and_filter_by_relation(memory: MemoryEngine) -> None:
    ada = memory.create_entity("Ada", "person")
    engine = memory.create_entity("Engine", "machine")
    babbage = memory.create_entity("Babbage", "person")
    wrote = memory.create_edge(ada.id, engine.id, "wrote_about", weight=0.5, properties={"y": 1843})
    memory.create_edge(babbage.id, engine.id, "designed")
    got = memory.get_edge(wrote.id)
    assert (got.from_id, got.to_id, got.relation, got.weight) == (
        ada.id,
        engine.id,
        "wrote_about",
        0.5,
    )
    assert got.properties == {"y": 1843}
    assert [e.id for e in memory.get_edges(ada.id, "out")] == [wrote.id]
    assert memory.get_edges(ada.id, "in") == []
    assert len(memory.get_edges(engine.id, "in")) == 2
    assert [e.relation for e in memory.get_edges(engine.id, "in", relation="designed")] == [
        "designed"
    ]
    assert len(memory.get_edges(engine.id, "both")) == 2
    memory.delete_edge(wrote.id)
    with pytest.raises(NotFoundError):
        memory.get_edge(wrote.id)
    with pytest.raises(InvalidInputError, match="direction"):
        memory.get_edges(ada.id, "sideways")  # type: ignore[arg-type]


def test_an_edge_to_a_missing_entity_is_not_found(memory: MemoryEngine) -> None:
    ada = memory.create_entity("Ada", "person")
    ghost = memory.create_entity("Ghost", "person")
    memory.delete_entity(ghost.id)
    with pytest.raises(NotFoundError):
        memory.create_edge(ada.id, ghost.id, "knows")


def test_deleting_an_entity_deletes_its_edges(memory: MemoryEngine) -> None:
    a = memory.create_entity("A", "node")
    b = memory.create_entity("B", "node")
    edge = memory.create_edge(a.id, b.id, "links")
    memory.delete_entity(b.id)
    with pytest.raises(NotFoundError):
        memory.get_entity(b.id)
    with pytest.raises(NotFoundError):
        memory.get_edge(edge.id)
    assert memory.get_edges(a.id, "out") == []


def test_traverse_is_breadth_first_with_fewest_hops(memory: MemoryEngine) -> None:
    a, b, c, d = (memory.create_entity(name, "node") for name in "ABCD")
    memory.create_edge(a.id, b.id, "next")
    memory.create_edge(b.id, c.id, "next")
    memory.create_edge(a.id, c.id, "shortcut")
    memory.create_edge(c.id, d.id, "next")
    reached = memory.traverse(a.id, 2)
    assert {(r.entity_id, r.depth) for r in reached} == {(b.id, 1), (c.id, 1), (d.id, 2)}
    assert [r.depth for r in reached] == sorted(r.depth for r in reached)
    only_next = memory.traverse(a.id, 3, relations=["next"])
    assert {(r.entity_id, r.depth) for r in only_next} == {(b.id, 1), (c.id, 2), (d.id, 3)}
    backwards = memory.traverse(d.id, 1, direction="in")
    assert [r.entity_id for r in backwards] == [c.id]
    with pytest.raises(InvalidInputError, match="depth"):
        memory.traverse(a.id, 0)
