"""The multi-tenant form: create, open, list, delete; isolation between tenants."""

import pytest

from conftest import EngineFactory, unique_tenant
from percolate_core import (
    AlreadyExistsError,
    InvalidInputError,
    MemoryEngine,
    NotFoundError,
    PercolateError,
    ProviderType,
    Tenant,
)


def test_tenants_are_created_listed_opened_and_deleted(open_engine: EngineFactory) -> None:
    engine = open_engine()
    first, second = sorted([unique_tenant(), unique_tenant()])
    acme = engine.create_tenant(first, dimension=3, metric="l2")
    assert isinstance(acme, Tenant)
    assert acme.id == first
    assert acme.config() == {"dimension": 3, "metric": "l2"}
    engine.create_tenant(second)
    listed = engine.list_tenants()
    assert first in listed and second in listed
    assert listed == sorted(listed)
    reopened = engine.tenant(first)
    note = acme.create_resource("shared handle", embedding=[1.0, 2.0, 3.0])
    assert reopened.get_resource(note.id).content == "shared handle"
    kept = engine.tenant(second)
    engine.delete_tenant(second)
    with pytest.raises(PercolateError, match="deleted"):
        kept.get_resource(note.id)
    assert acme.get_resource(note.id).content == "shared handle"
    assert second not in engine.list_tenants()
    with pytest.raises(NotFoundError):
        engine.tenant(second)
    with pytest.raises(NotFoundError):
        engine.delete_tenant(second)


def test_creating_an_existing_tenant_is_already_exists(open_engine: EngineFactory) -> None:
    engine = open_engine()
    name = unique_tenant()
    engine.create_tenant(name)
    with pytest.raises(AlreadyExistsError, match=name):
        engine.create_tenant(name)


def test_tenants_do_not_see_each_other(open_engine: EngineFactory) -> None:
    engine = open_engine()
    a = engine.create_tenant(unique_tenant())
    b = engine.create_tenant(unique_tenant())
    note = a.create_resource("a's", embedding=[1.0, 0.0])
    entity = a.create_entity("A", "x")
    with pytest.raises(NotFoundError):
        b.get_resource(note.id)
    with pytest.raises(NotFoundError):
        b.delete_entity(entity.id)
    assert b.search_resources([1.0, 0.0], k=5) == []
    assert b.search_entities("A") == []


def test_an_engine_without_a_tenant_id_has_no_record_methods(open_engine: EngineFactory) -> None:
    engine = open_engine()
    with pytest.raises(PercolateError, match="no default tenant"):
        engine.create_resource("nowhere")


def test_the_one_tenant_form_creates_its_tenant_and_reopens_it(
    open_engine: EngineFactory, provider: str
) -> None:
    name = unique_tenant()
    first = open_engine(name)
    assert first.id == name
    assert first.provider == ProviderType(provider)
    note = first.create_resource("kept")
    # One process may hold a RocksDB store open once: the first engine lets it go.
    first.close()
    second = open_engine(name)
    assert second.get_resource(note.id).content == "kept"
    assert name in second.list_tenants()


def test_bad_tenant_ids_and_providers_are_invalid(open_engine: EngineFactory) -> None:
    engine = open_engine()
    with pytest.raises(InvalidInputError, match="tenant id"):
        engine.create_tenant("Not Valid!")
    with pytest.raises(InvalidInputError, match="provider"):
        MemoryEngine(provider="mysql", connection_string="x")
    with pytest.raises(InvalidInputError, match="metric"):
        engine.create_tenant(unique_tenant(), metric="manhattan")  # type: ignore[arg-type]
