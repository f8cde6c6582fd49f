"""percolate: a storage engine for agent memory (type stubs of the Rust extension)."""

import enum
import os
from datetime import datetime
from types import TracebackType
from typing import (
    IO,
    Any,
    Awaitable,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)
from uuid import UUID

import numpy as np
import numpy.typing as npt

__version__: str

_Vector = Union[npt.NDArray[np.floating[Any]], Sequence[float]]
"""An embedding: a 1-D numpy array (float32 is read without conversion) or numbers."""
_Vectors = Union[npt.NDArray[np.floating[Any]], Sequence[_Vector]]
"""Embeddings of a batch: a 2-D numpy array (one row each) or a sequence of vectors."""
_Id = Union[str, UUID]
"""A record id: its string form or a ``uuid.UUID``."""
_Json = Dict[str, Any]
"""A JSON object: str keys; values str, int, finite float, bool, None, lists and dicts."""
_Filter = Mapping[str, Any]
"""A metadata filter, MongoDB-like: ``{"lang": "en", "year": {"$gte": 2020}}``; operators
``$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or $not``; dotted paths reach nested keys."""
_Direction = Literal["out", "in", "both"]
_Kind = Literal["resource", "entity", "edge", "moment"]
_Metric = Literal["cosine", "l2", "dot"]
_Path = Union[str, "os.PathLike[str]"]
_Summary = Dict[str, Any]

class ProviderType(str, enum.Enum):
    """The storage providers; a member can be passed wherever a provider name can."""

    ROCKSDB = "rocksdb"
    POSTGRES = "postgres"

class PercolateError(Exception):
    """Base class of every error percolate raises."""

class NotFoundError(PercolateError):
    """The record or tenant does not exist (in this tenant)."""

class AlreadyExistsError(PercolateError):
    """A record or tenant with this id already exists."""

class ConflictError(PercolateError):
    """A concurrent writer won; retrying the whole transaction may succeed."""

class InvalidInputError(PercolateError):
    """The input was rejected before it reached storage."""

class CryptoError(PercolateError):
    """A key is missing or wrong, or sealed data failed authentication."""

class BackendError(PercolateError):
    """The storage backend failed (I/O, connection, server), or stored data is unreadable."""

class DiskFullError(BackendError):
    """The device is full: the write that met it left nothing behind; free space and retry."""

class LockedError(BackendError):
    """Another process (or another engine in this one) holds the store for writing."""

class Resource:
    """A piece of content an agent remembers, with metadata and an optional embedding.

    ``metadata`` and ``embedding`` may be changed in place or replaced; pass the record to
    ``update_resource`` to store the change."""

    @property
    def id(self) -> str:
        """Its id (a UUIDv7: ids sort in creation order)."""
    uri: Optional[str]
    """Where it came from, if anywhere."""
    content: str
    """Its text."""
    metadata: _Json
    """Arbitrary JSON fields; vector search can filter on them."""
    @property
    def embedding(self) -> Optional[npt.NDArray[np.float32]]:
        """Its embedding, or None."""
    @embedding.setter
    def embedding(self, value: Optional[_Vector]) -> None: ...
    @property
    def created_at(self) -> datetime:
        """When it was created (aware, UTC)."""
    @property
    def updated_at(self) -> datetime:
        """When it was last changed (aware, UTC)."""

class Entity:
    """A typed node of the memory graph."""

    @property
    def id(self) -> str:
        """Its id."""
    name: str
    """Its name; ``search_entities`` searches it."""
    kind: str
    """Its type, e.g. "person"."""
    properties: _Json
    """Arbitrary JSON fields."""
    @property
    def created_at(self) -> datetime:
        """When it was created (aware, UTC)."""
    @property
    def updated_at(self) -> datetime:
        """When it was last changed (aware, UTC)."""

class Edge:
    """A directed, typed edge between two entities of the same tenant."""

    @property
    def id(self) -> str:
        """Its id."""
    @property
    def from_id(self) -> str:
        """The id of the entity it leaves."""
    @property
    def to_id(self) -> str:
        """The id of the entity it reaches."""
    @property
    def relation(self) -> str:
        """Its type, e.g. "works_at"."""
    @property
    def weight(self) -> float:
        """Its weight."""
    @property
    def properties(self) -> _Json:
        """Arbitrary JSON fields."""
    @property
    def created_at(self) -> datetime:
        """When it was created (aware, UTC)."""

class Moment:
    """A time-ranged event that involves entities."""

    @property
    def id(self) -> str:
        """Its id."""
    start: datetime
    """When it started (read back aware, in UTC)."""
    end: datetime
    """When it ended (``end >= start``)."""
    kind: str
    """Its type, e.g. "meeting"."""
    content: str
    """Its text."""
    @property
    def entities(self) -> List[str]:
        """The ids of the entities it involves."""
    @entities.setter
    def entities(self, value: Iterable[_Id]) -> None: ...
    metadata: _Json
    """Arbitrary JSON fields."""

class ScoredResource:
    """A vector search hit."""

    @property
    def resource(self) -> Resource:
        """The resource, embedding included."""
    @property
    def distance(self) -> float:
        """Its distance to the query under the tenant's metric (smaller is nearer)."""

class TextHit:
    """A full-text hit."""

    @property
    def record(self) -> Union[Resource, Moment]:
        """The resource (or, for a search of moments, the moment)."""
    @property
    def score(self) -> float:
        """Its BM25 score (larger is better)."""

class RecallHit:
    """A recall hit: why it came back is in its ranks."""

    @property
    def resource(self) -> Resource:
        """The resource, embedding included."""
    @property
    def score(self) -> float:
        """Its reciprocal rank fusion score (larger is better)."""
    @property
    def text_rank(self) -> Optional[int]:
        """Its rank (from 1) in the full-text list; ``None`` if the text did not find it."""
    @property
    def vector_rank(self) -> Optional[int]:
        """Its rank (from 1) in the vector list; ``None`` if the vector did not find it."""

class Reached:
    """An entity reached by a traversal."""

    @property
    def entity_id(self) -> str:
        """The entity's id."""
    @property
    def depth(self) -> int:
        """The fewest hops it took from the start."""

class Transaction:
    """A transaction on one tenant: it sees its own writes on top of one snapshot, is
    invisible to others until it commits, and vanishes on rollback.

    ``with tenant.transaction() as tx:`` commits when the block ends normally and rolls back
    when it raises; a commit that loses a race raises ``ConflictError``."""

    @property
    def active(self) -> bool:
        """Whether it is neither committed nor rolled back."""
    def create_resource(
        self,
        content: str,
        *,
        embedding: Optional[_Vector] = None,
        metadata: Optional[_Json] = None,
        uri: Optional[str] = None,
    ) -> Resource:
        """Creates a resource in the transaction."""
    def get_resource(self, id: _Id) -> Resource:
        """Reads a resource, seeing this transaction's writes."""
    def update_resource(self, resource: Resource) -> Resource:
        """Replaces a resource in the transaction."""
    def delete_resource(self, id: _Id) -> None:
        """Deletes a resource in the transaction."""
    def create_entity(self, name: str, kind: str, *, properties: Optional[_Json] = None) -> Entity:
        """Creates an entity in the transaction."""
    def get_entity(self, id: _Id) -> Entity:
        """Reads an entity, seeing this transaction's writes."""
    def update_entity(self, entity: Entity) -> Entity:
        """Replaces an entity in the transaction."""
    def delete_entity(self, id: _Id) -> None:
        """Deletes an entity and its edges in the transaction."""
    def create_edge(
        self,
        from_id: _Id,
        to_id: _Id,
        relation: str,
        *,
        weight: float = 1.0,
        properties: Optional[_Json] = None,
    ) -> Edge:
        """Creates an edge in the transaction; its ends may be entities created in it."""
    def get_edge(self, id: _Id) -> Edge:
        """Reads an edge, seeing this transaction's writes."""
    def get_edges(
        self, entity_id: _Id, direction: _Direction = "out", *, relation: Optional[str] = None
    ) -> List[Edge]:
        """The edges of an entity, seeing this transaction's writes."""
    def delete_edge(self, id: _Id) -> None:
        """Deletes an edge in the transaction."""
    def create_moment(
        self,
        start: datetime,
        end: datetime,
        kind: str,
        *,
        content: str = "",
        entities: Optional[Iterable[_Id]] = None,
        metadata: Optional[_Json] = None,
    ) -> Moment:
        """Creates a moment in the transaction."""
    def get_moment(self, id: _Id) -> Moment:
        """Reads a moment, seeing this transaction's writes."""
    def update_moment(self, moment: Moment) -> Moment:
        """Replaces a moment in the transaction."""
    def delete_moment(self, id: _Id) -> None:
        """Deletes a moment in the transaction."""
    def commit(self) -> None:
        """Commits; ``ConflictError`` if a concurrent commit won."""
    def rollback(self) -> None:
        """Rolls back."""
    def __enter__(self) -> "Transaction": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...

class Tenant:
    """One tenant's records. Every method blocks and releases the GIL while it runs, so
    threads calling at once run in parallel."""

    @property
    def id(self) -> str:
        """The tenant's id."""
    def config(self) -> _Summary:
        """``{"dimension": int | None, "metric": "cosine" | "l2" | "dot"}``."""
    def create_resource(
        self,
        content: str,
        *,
        embedding: Optional[_Vector] = None,
        metadata: Optional[_Json] = None,
        uri: Optional[str] = None,
    ) -> Resource:
        """Creates a resource; returns it with its id and timestamps."""
    def batch_create_resources(
        self,
        contents: Sequence[str],
        *,
        embeddings: Optional[_Vectors] = None,
        metadatas: Optional[Sequence[Optional[_Json]]] = None,
        uris: Optional[Sequence[Optional[str]]] = None,
    ) -> List[Resource]:
        """Creates many resources in one atomic write; all are searchable when it returns."""
    def get_resource(self, id: _Id) -> Resource:
        """The resource with this id (``NotFoundError`` if there is none)."""
    def update_resource(self, resource: Resource) -> Resource:
        """Replaces a resource's fields (found by its id); returns what is stored."""
    def delete_resource(self, id: _Id) -> None:
        """Deletes a resource."""
    def search_resources(
        self,
        vector: _Vector,
        k: int = 10,
        *,
        filter: Optional[_Filter] = None,
        ef: Optional[int] = None,
    ) -> List[ScoredResource]:
        """The ``k`` nearest resources whose metadata matches ``filter``, nearest first.
        ``ef`` (rocksdb only) widens the HNSW search for better recall."""
    def text_search(
        self,
        text: str,
        k: int = 10,
        *,
        moments: bool = False,
        filter: Optional[_Filter] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
    ) -> List[TextHit]:
        """The ``k`` resources (or moments) whose content best matches ``text`` by BM25,
        best first; only those matching ``filter`` and created (moments: overlapping)
        between ``since`` and ``until``."""
    def recall(
        self,
        k: int = 10,
        *,
        text: Optional[str] = None,
        vector: Optional[_Vector] = None,
        filter: Optional[_Filter] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        candidates: int = 0,
        text_weight: float = 1.0,
        vector_weight: float = 1.0,
    ) -> List[RecallHit]:
        """The ``k`` resources that best fuse full text and vector neighbours by reciprocal
        rank fusion; give ``text``, ``vector`` or both."""
    def create_entity(self, name: str, kind: str, *, properties: Optional[_Json] = None) -> Entity:
        """Creates an entity."""
    def get_entity(self, id: _Id) -> Entity:
        """The entity with this id."""
    def update_entity(self, entity: Entity) -> Entity:
        """Replaces an entity's fields; returns what is stored."""
    def delete_entity(self, id: _Id) -> None:
        """Deletes an entity and every edge that touches it."""
    def search_entities(
        self,
        text: str = "",
        *,
        kind: Optional[str] = None,
        properties: Optional[_Filter] = None,
        limit: int = 100,
    ) -> List[Entity]:
        """Entities whose names match ``text`` (each word a prefix of a word of the name)."""
    def create_edge(
        self,
        from_id: _Id,
        to_id: _Id,
        relation: str,
        *,
        weight: float = 1.0,
        properties: Optional[_Json] = None,
    ) -> Edge:
        """Creates an edge between two existing entities."""
    def get_edge(self, id: _Id) -> Edge:
        """The edge with this id."""
    def get_edges(
        self, entity_id: _Id, direction: _Direction = "out", *, relation: Optional[str] = None
    ) -> List[Edge]:
        """The edges of an entity in ``direction``, only of ``relation`` when given."""
    def delete_edge(self, id: _Id) -> None:
        """Deletes an edge."""
    def traverse(
        self,
        start: _Id,
        depth: int = 1,
        *,
        direction: _Direction = "out",
        relations: Optional[List[str]] = None,
    ) -> List[Reached]:
        """Breadth-first traversal from ``start``, at most ``depth`` hops; the start is not
        included; ordered by depth, then id."""
    def create_moment(
        self,
        start: datetime,
        end: datetime,
        kind: str,
        *,
        content: str = "",
        entities: Optional[Iterable[_Id]] = None,
        metadata: Optional[_Json] = None,
    ) -> Moment:
        """Creates a moment over ``[start, end]`` (a naive datetime is local time)."""
    def get_moment(self, id: _Id) -> Moment:
        """The moment with this id."""
    def update_moment(self, moment: Moment) -> Moment:
        """Replaces a moment; returns what is stored."""
    def delete_moment(self, id: _Id) -> None:
        """Deletes a moment."""
    def moments_in_range(
        self, start: Optional[datetime] = None, end: Optional[datetime] = None
    ) -> List[Moment]:
        """Moments overlapping ``[start, end]`` (None is open), ordered by start."""
    def scan(
        self, kind: _Kind, *, after: Optional[_Id] = None, limit: int = 1000
    ) -> List[Union[Resource, Entity, Edge, Moment]]:
        """A page of records of ``kind`` after the id ``after``, in id (creation) order."""
    def export(self, destination: Union[_Path, IO[bytes]]) -> _Summary:
        """Writes the tenant in the portable format to a path or a binary file object."""
    def transaction(self) -> Transaction:
        """Begins a transaction; use it as a context manager."""

_E = TypeVar("_E", bound="MemoryEngine")

class MemoryEngine(Tenant):
    """The storage engine. Opened with ``tenant_id`` it is that tenant (created when
    missing), with every ``Tenant`` method; without, use ``tenant(id)``."""

    def __init__(
        self,
        provider: Union[str, ProviderType, None] = None,
        connection_string: Optional[_Path] = None,
        tenant_id: Optional[str] = None,
        *,
        admin_connection_string: Optional[str] = None,
        pool_size: Optional[int] = None,
        ef_search: Optional[int] = None,
        master_key: Optional[str] = None,
        dimension: Optional[int] = None,
        metric: _Metric = "cosine",
        allow_privileged_app_role: bool = False,
    ) -> None:
        """Opens an engine: ``provider`` "rocksdb" (default) or "postgres";
        ``connection_string`` the RocksDB directory (default "./data/percolate.db") or the
        PostgreSQL URL; ``admin_connection_string`` the schema owner's URL (postgres);
        ``master_key`` encrypts new RocksDB tenants at rest. A postgres engine refuses a
        ``connection_string`` whose role row-level security does not bind (a superuser,
        BYPASSRLS, or the owner of the schemas) unless ``allow_privileged_app_role`` is true:
        for single-role development only."""
    @classmethod
    def from_settings(
        cls, config_file: Optional[_Path] = None, *, tenant_id: Optional[str] = None
    ) -> "MemoryEngine":
        """Opens the engine the ``PERCOLATE_*`` settings describe (as the CLI does)."""
    @property
    def provider(self) -> ProviderType:
        """The provider."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def tenant(self, tenant_id: str) -> Tenant:
        """The handle of an existing tenant (``NotFoundError`` if missing)."""
    def create_tenant(
        self, tenant_id: str, *, dimension: Optional[int] = None, metric: _Metric = "cosine"
    ) -> Tenant:
        """Creates a tenant (``AlreadyExistsError`` if it exists)."""
    def list_tenants(self) -> List[str]:
        """Every tenant's id, sorted."""
    def release_memory(self) -> None:
        """Call when the app goes to the background: flushes what the provider holds only
        in memory and releases its caches; the engine stays usable."""
    def delete_tenant(self, tenant_id: str) -> None:
        """Deletes a tenant and all its records."""
    def import_(
        self, source: Union[_Path, IO[bytes]], *, tenant_id: Optional[str] = None
    ) -> _Summary:
        """Imports an export file into ``tenant_id`` (default: this engine's tenant, else the
        file's). Verified whole before anything is written; idempotent."""
    def close(self) -> None:
        """Releases the store; every handle of this engine raises from now on."""
    def __enter__(self: _E) -> _E: ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...

class AsyncTenant:
    """One tenant's records; every method returns an awaitable driven by the engine's
    runtime, so many can run at once (``asyncio.gather``)."""

    @property
    def id(self) -> str:
        """The tenant's id."""
    def config(self) -> Awaitable[_Summary]:
        """``{"dimension": int | None, "metric": str}``."""
    def create_resource(
        self,
        content: str,
        *,
        embedding: Optional[_Vector] = None,
        metadata: Optional[_Json] = None,
        uri: Optional[str] = None,
    ) -> Awaitable[Resource]:
        """Creates a resource."""
    def batch_create_resources(
        self,
        contents: Sequence[str],
        *,
        embeddings: Optional[_Vectors] = None,
        metadatas: Optional[Sequence[Optional[_Json]]] = None,
        uris: Optional[Sequence[Optional[str]]] = None,
    ) -> Awaitable[List[Resource]]:
        """Creates many resources in one atomic write."""
    def get_resource(self, id: _Id) -> Awaitable[Resource]:
        """The resource with this id."""
    def update_resource(self, resource: Resource) -> Awaitable[Resource]:
        """Replaces a resource's fields."""
    def delete_resource(self, id: _Id) -> Awaitable[None]:
        """Deletes a resource."""
    def search_resources(
        self,
        vector: _Vector,
        k: int = 10,
        *,
        filter: Optional[_Filter] = None,
        ef: Optional[int] = None,
    ) -> Awaitable[List[ScoredResource]]:
        """The ``k`` nearest resources whose metadata matches ``filter``."""
    def text_search(
        self,
        text: str,
        k: int = 10,
        *,
        moments: bool = False,
        filter: Optional[_Filter] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
    ) -> Awaitable[List[TextHit]]:
        """The ``k`` best full-text matches of ``text``."""
    def recall(
        self,
        k: int = 10,
        *,
        text: Optional[str] = None,
        vector: Optional[_Vector] = None,
        filter: Optional[_Filter] = None,
        since: Optional[datetime] = None,
        until: Optional[datetime] = None,
        candidates: int = 0,
        text_weight: float = 1.0,
        vector_weight: float = 1.0,
    ) -> Awaitable[List[RecallHit]]:
        """The ``k`` resources that best fuse full text and vector neighbours."""
    def create_entity(
        self, name: str, kind: str, *, properties: Optional[_Json] = None
    ) -> Awaitable[Entity]:
        """Creates an entity."""
    def get_entity(self, id: _Id) -> Awaitable[Entity]:
        """The entity with this id."""
    def update_entity(self, entity: Entity) -> Awaitable[Entity]:
        """Replaces an entity's fields."""
    def delete_entity(self, id: _Id) -> Awaitable[None]:
        """Deletes an entity and its edges."""
    def search_entities(
        self,
        text: str = "",
        *,
        kind: Optional[str] = None,
        properties: Optional[_Filter] = None,
        limit: int = 100,
    ) -> Awaitable[List[Entity]]:
        """Entities whose names match ``text``."""
    def create_edge(
        self,
        from_id: _Id,
        to_id: _Id,
        relation: str,
        *,
        weight: float = 1.0,
        properties: Optional[_Json] = None,
    ) -> Awaitable[Edge]:
        """Creates an edge."""
    def get_edge(self, id: _Id) -> Awaitable[Edge]:
        """The edge with this id."""
    def get_edges(
        self, entity_id: _Id, direction: _Direction = "out", *, relation: Optional[str] = None
    ) -> Awaitable[List[Edge]]:
        """The edges of an entity."""
    def delete_edge(self, id: _Id) -> Awaitable[None]:
        """Deletes an edge."""
    def traverse(
        self,
        start: _Id,
        depth: int = 1,
        *,
        direction: _Direction = "out",
        relations: Optional[List[str]] = None,
    ) -> Awaitable[List[Reached]]:
        """Breadth-first traversal from ``start``."""
    def create_moment(
        self,
        start: datetime,
        end: datetime,
        kind: str,
        *,
        content: str = "",
        entities: Optional[Iterable[_Id]] = None,
        metadata: Optional[_Json] = None,
    ) -> Awaitable[Moment]:
        """Creates a moment."""
    def get_moment(self, id: _Id) -> Awaitable[Moment]:
        """The moment with this id."""
    def update_moment(self, moment: Moment) -> Awaitable[Moment]:
        """Replaces a moment."""
    def delete_moment(self, id: _Id) -> Awaitable[None]:
        """Deletes a moment."""
    def moments_in_range(
        self, start: Optional[datetime] = None, end: Optional[datetime] = None
    ) -> Awaitable[List[Moment]]:
        """Moments overlapping ``[start, end]``."""
    def scan(
        self, kind: _Kind, *, after: Optional[_Id] = None, limit: int = 1000
    ) -> Awaitable[List[Union[Resource, Entity, Edge, Moment]]]:
        """A page of records of ``kind``."""
    def export(self, destination: Union[_Path, IO[bytes]]) -> Awaitable[_Summary]:
        """Writes the tenant in the portable format."""

_A = TypeVar("_A", bound="AsyncMemoryEngine")

class AsyncMemoryEngine(AsyncTenant):
    """``MemoryEngine`` with awaitable methods (opening is synchronous)."""

    def __init__(
        self,
        provider: Union[str, ProviderType, None] = None,
        connection_string: Optional[_Path] = None,
        tenant_id: Optional[str] = None,
        *,
        admin_connection_string: Optional[str] = None,
        pool_size: Optional[int] = None,
        ef_search: Optional[int] = None,
        master_key: Optional[str] = None,
        dimension: Optional[int] = None,
        metric: _Metric = "cosine",
        allow_privileged_app_role: bool = False,
    ) -> None:
        """Opens an engine; the arguments are ``MemoryEngine``'s."""
    @classmethod
    def from_settings(
        cls, config_file: Optional[_Path] = None, *, tenant_id: Optional[str] = None
    ) -> "AsyncMemoryEngine":
        """Opens the engine the ``PERCOLATE_*`` settings describe."""
    @property
    def provider(self) -> ProviderType:
        """The provider."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def tenant(self, tenant_id: str) -> Awaitable[AsyncTenant]:
        """The handle of an existing tenant."""
    def create_tenant(
        self, tenant_id: str, *, dimension: Optional[int] = None, metric: _Metric = "cosine"
    ) -> Awaitable[AsyncTenant]:
        """Creates a tenant."""
    def list_tenants(self) -> Awaitable[List[str]]:
        """Every tenant's id, sorted."""
    def release_memory(self) -> Awaitable[None]:
        """``MemoryEngine.release_memory``."""
    def delete_tenant(self, tenant_id: str) -> Awaitable[None]:
        """Deletes a tenant and all its records."""
    def import_(
        self, source: Union[_Path, IO[bytes]], *, tenant_id: Optional[str] = None
    ) -> Awaitable[_Summary]:
        """Imports an export file."""
    def close(self) -> None:
        """Releases the store."""
    async def __aenter__(self: _A) -> _A: ...
    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> bool: ...
