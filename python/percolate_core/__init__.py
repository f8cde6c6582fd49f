"""percolate: a storage engine for agent memory.

Resources (content, metadata, an embedding), entities joined by edges, and moments
(time-ranged events), stored per tenant in RocksDB (embedded) or PostgreSQL::

    from percolate_core import MemoryEngine, ProviderType

    memory = MemoryEngine(provider="rocksdb", connection_string="./data/percolate.db",
                          tenant_id="tenant-123")
    note = memory.create_resource("hello", embedding=[0.1, 0.2, 0.3])
    hits = memory.search_resources([0.1, 0.2, 0.3], k=5)

``AsyncMemoryEngine`` has the same methods as awaitables. The classes are implemented in
Rust (``percolate_core._native``); this module adds ``ProviderType`` and re-exports them.
"""

import enum

from ._native import (
    AlreadyExistsError,
    AsyncMemoryEngine,
    AsyncTenant,
    BackendError,
    ConflictError,
    CryptoError,
    DiskFullError,
    Edge,
    Entity,
    InvalidInputError,
    LockedError,
    MemoryEngine,
    Moment,
    NotFoundError,
    PercolateError,
    Reached,
    RecallHit,
    Resource,
    ScoredResource,
    Tenant,
    TextHit,
    Transaction,
    __version__,
)


class ProviderType(str, enum.Enum):
    """The storage providers; a member can be passed wherever a provider name can."""

    ROCKSDB = "rocksdb"
    """The embedded RocksDB provider: a directory per tenant."""
    POSTGRES = "postgres"
    """The PostgreSQL + pgvector provider: a schema per tenant."""

    def __str__(self) -> str:
        return self.value


__all__ = [
    "AlreadyExistsError",
    "AsyncMemoryEngine",
    "AsyncTenant",
    "BackendError",
    "ConflictError",
    "CryptoError",
    "DiskFullError",
    "Edge",
    "Entity",
    "InvalidInputError",
    "LockedError",
    "MemoryEngine",
    "Moment",
    "NotFoundError",
    "PercolateError",
    "ProviderType",
    "Reached",
    "RecallHit",
    "Resource",
    "ScoredResource",
    "Tenant",
    "TextHit",
    "Transaction",
    "__version__",
]
