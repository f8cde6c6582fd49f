"""Fixtures: every test that takes ``provider`` runs against RocksDB (in a temporary
directory) and against the real PostgreSQL that ``scripts/with-postgres.sh`` starts.

PostgreSQL is never skipped: without ``PERCOLATE_TEST_POSTGRES_URL`` (and ``_ADMIN_URL``) the
PostgreSQL cases fail, so a run without a server cannot pass for a green one.
"""

import os
import uuid
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from percolate_core import MemoryEngine, NotFoundError

PROVIDERS = ["rocksdb", "postgres"]

EngineFactory = Callable[..., MemoryEngine]


def postgres_urls() -> "tuple[str, str]":
    """The application and owner URLs of the test server; fails the test when unset."""
    url = os.environ.get("PERCOLATE_TEST_POSTGRES_URL")
    admin = os.environ.get("PERCOLATE_TEST_POSTGRES_ADMIN_URL")
    if not url or not admin:
        pytest.fail(
            "PERCOLATE_TEST_POSTGRES_URL and PERCOLATE_TEST_POSTGRES_ADMIN_URL are not set: "
            "run under scripts/with-postgres.sh (scripts/test-python.sh does)"
        )
    return url, admin


TENANT_PREFIX = "py-"


def unique_tenant() -> str:
    """A tenant id no other test uses."""
    return f"{TENANT_PREFIX}{uuid.uuid4().hex[:16]}"


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """The provider under test."""
    return str(request.param)


@pytest.fixture
def open_engine(provider: str, tmp_path: Path) -> Iterator[EngineFactory]:
    """Opens engines on the provider under test (one store per test); closes them after,
    deleting the PostgreSQL tenants they created."""
    opened: List[MemoryEngine] = []
    store = tmp_path / "store"

    def factory(tenant_id: Optional[str] = None, **options: object) -> MemoryEngine:
        if provider == "rocksdb":
            engine = MemoryEngine("rocksdb", str(store), tenant_id, **options)  # type: ignore[arg-type]
        else:
            url, admin = postgres_urls()
            engine = MemoryEngine(
                "postgres",
                url,
                tenant_id,
                admin_connection_string=admin,
                **options,  # type: ignore[arg-type]
            )
        opened.append(engine)
        return engine

    yield factory
    for engine in opened:
        engine.close()
    if provider == "postgres":
        # The server is the run's own (scripts/with-postgres.sh); tests run one at a time, so
        # every tenant of this suite's naming is this test's.
        url, admin = postgres_urls()
        with MemoryEngine("postgres", url, admin_connection_string=admin) as cleaner:
            for tenant in cleaner.list_tenants():
                if tenant.startswith(TENANT_PREFIX):
                    try:
                        cleaner.delete_tenant(tenant)
                    except NotFoundError:
                        pass


@pytest.fixture
def memory(open_engine: EngineFactory) -> MemoryEngine:
    """A one-tenant engine on a fresh tenant."""
    return open_engine(unique_tenant())
