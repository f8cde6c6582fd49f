"""The design document's Python snippet ("Python Bindings"), as written."""

from pathlib import Path

import pytest

from conftest import postgres_urls


def test_the_rocksdb_snippet_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # --- verbatim ---
    from percolate_core import MemoryEngine, ProviderType

    # RocksDB (default)
    memory = MemoryEngine(
        provider="rocksdb",
        connection_string="./data/percolate.db",
        tenant_id="tenant-123"
    )
    # --- end ---
    assert (tmp_path / "data" / "percolate.db").is_dir()
    assert memory.id == "tenant-123"
    assert memory.provider is ProviderType.ROCKSDB
    memory.create_resource("remembered")
    memory.close()
    again = MemoryEngine(provider=ProviderType.ROCKSDB, connection_string="./data/percolate.db",
                         tenant_id="tenant-123")
    assert [r.content for r in again.scan("resource")] == ["remembered"]  # type: ignore[union-attr]
    again.close()


def test_the_postgres_snippet_with_an_owner_url_is_refused_unless_allowed() -> None:
    from percolate_core import MemoryEngine, PercolateError, ProviderType

    # The snippet's URL names one user who owns the database: the test server's owner role
    # (the application role alone may not create the tenant registry or schemas). Row-level
    # security does not bind an owner, so the engine refuses it as its application role...
    _, owner_url = postgres_urls()
    with pytest.raises(PercolateError, match="allow_privileged_app_role"):
        # --- the snippet, with the test server's URL for "postgresql://user:pass@localhost/..." ---
        # PostgreSQL (enterprise)
        memory = MemoryEngine(
            provider="postgres",
            connection_string=owner_url,
            tenant_id="tenant-123"
        )
        # --- end ---
    # ... unless the caller says this is single-role development.
    memory = MemoryEngine(
        provider="postgres",
        connection_string=owner_url,
        tenant_id="tenant-123",
        allow_privileged_app_role=True,
    )
    assert memory.provider is ProviderType.POSTGRES
    assert memory.id == "tenant-123"
    note = memory.create_resource("remembered in postgres")
    assert memory.get_resource(note.id).content == "remembered in postgres"
    memory.delete_tenant("tenant-123")
    memory.close()
