//! Record reads and writes over a tenant database, shared by auto-commit calls and
//! transactions.
//!
//! Every write runs inside a RocksDB optimistic transaction ([`Ops`]): its writes form one
//! atomic batch, its reads see its own writes, and the keys it reads "for update" are checked at
//! commit, so a concurrent commit that changed them makes this one fail with
//! [`Error::Conflict`]. Reads outside transactions go straight to the database ([`View::Db`]).
//!
//! Invariants kept here:
//! - an edge exists iff its two adjacency entries exist (written and deleted together);
//! - an edge's endpoints exist: inserting an edge reads both entities for update *and rewrites
//!   them unchanged*, so an entity deletion racing with it conflicts whichever commits first
//!   (a read alone would not be seen by the deleting transaction's validation);
//! - an entity's name words are in `entity_names` iff the entity is stored with that name;
//! - a moment's `moment_time` entry matches its stored start and end;
//! - a resource or moment is pending in the text index, or its postings are those of its
//!   stored content (see `text`).

use std::cell::RefCell;
use std::sync::Arc;

use rocksdb::{
    DBAccess, DBPinnableSlice, DBRawIteratorWithThreadMode, OptimisticTransactionDB, ReadOptions,
    Transaction,
};

use super::cf::{
    CF_ADJACENCY, CF_EDGES, CF_EMBEDDINGS, CF_ENTITIES, CF_ENTITY_NAMES, CF_MOMENT_TIME,
    CF_MOMENTS, CF_RESOURCES,
};
use super::codec;
use super::keys::{self, Side};
use super::tenants::{TenantDb, for_both};
use super::text;
use crate::error::{Error, Result};
use crate::index::VectorChange;
use crate::model::{
    Direction, Edge, EdgeId, Entity, EntityId, Moment, MomentId, Resource, ResourceId,
};

/// A value read from the store: pinned in RocksDB's cache when stored in plaintext, an owned
/// buffer when it was opened from a sealed value.
pub(crate) enum Value<'a> {
    Pinned(DBPinnableSlice<'a>),
    Borrowed(&'a [u8]),
    Opened(Vec<u8>),
}

impl<'a> From<DBPinnableSlice<'a>> for Value<'a> {
    fn from(slice: DBPinnableSlice<'a>) -> Self {
        Value::Pinned(slice)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Value::Borrowed(bytes)
    }
}

impl std::ops::Deref for Value<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Value::Pinned(slice) => slice,
            Value::Borrowed(bytes) => bytes,
            Value::Opened(bytes) => bytes,
        }
    }
}

/// Maps a RocksDB error at the boundary: `Busy`/`TryAgain` (a lost optimistic validation) is a
/// conflict, an I/O error with RocksDB's `NoSpace` subcode is [`Error::DiskFull`], anything
/// else a backend failure.
///
/// The C API hands over only the status text, so `NoSpace` is recognised by what
/// `Status::ToString` prints for that subcode (and for a background error that it left, which
/// is what later writes return until RocksDB has resumed).
pub(crate) fn map_rocks_error(error: rocksdb::Error) -> Error {
    match error.kind() {
        rocksdb::ErrorKind::Busy | rocksdb::ErrorKind::TryAgain => {
            Error::Conflict(error.into_string())
        }
        rocksdb::ErrorKind::IOError if error.as_ref().contains(NO_SPACE) => {
            Error::DiskFull { provider: super::NAME, source: Box::new(error) }
        }
        _ => Error::Backend { provider: super::NAME, source: Box::new(error) },
    }
}

/// What RocksDB's status text holds for its `NoSpace` subcode (and what `strerror(ENOSPC)`
/// says on Linux and macOS, which an I/O status built from `errno` carries).
const NO_SPACE: &str = "No space left on device";

type RocksTxn<'a> = Transaction<'a, OptimisticTransactionDB>;

/// Where reads go: the database's latest state, or a transaction (which sees its own writes).
#[derive(Clone, Copy)]
pub(crate) enum View<'a> {
    Db(&'a TenantDb),
    Txn(&'a TenantDb, &'a RocksTxn<'a>),
}

impl<'a> View<'a> {
    pub(crate) fn tenant(&self) -> &'a TenantDb {
        match self {
            View::Db(tenant) | View::Txn(tenant, _) => tenant,
        }
    }

    /// The value of `key`, opened (decrypted and authenticated) when the tenant is encrypted.
    pub(crate) fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Value<'a>>> {
        self.get_raw(cf, key)?.map(|raw| self.tenant().open_value(cf, key, raw)).transpose()
    }

    /// The value of `key` as stored (sealed, when the tenant is encrypted).
    pub(crate) fn get_raw(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'a>>> {
        self.read_raw(cf, key, false)
    }

    /// Whether `key` exists, without opening its value.
    pub(crate) fn contains(&self, cf: &'static str, key: &[u8]) -> Result<bool> {
        Ok(self.get_raw(cf, key)?.is_some())
    }

    /// Reads a key as stored and, in a transaction, makes the commit fail if someone else
    /// changes it.
    pub(crate) fn get_for_update(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<DBPinnableSlice<'a>>> {
        self.read_raw(cf, key, true)
    }

    /// A key as stored, at the transaction's snapshot in a transaction; `for_update` makes
    /// the transaction's commit fail if someone else changes the key meanwhile.
    fn read_raw(
        &self,
        cf: &'static str,
        key: &[u8],
        for_update: bool,
    ) -> Result<Option<DBPinnableSlice<'a>>> {
        let handle = self.tenant().cf(cf)?;
        match self {
            View::Db(tenant) => tenant.db.get_pinned_cf(handle, key),
            View::Txn(_, txn) if for_update => {
                txn.get_pinned_for_update_cf_opt(handle, key, true, &at_snapshot(txn))
            }
            View::Txn(_, txn) => txn.get_pinned_cf_opt(handle, key, &at_snapshot(txn)),
        }
        .map_err(map_rocks_error)
    }

    /// Calls `visit` on every key and opened value in `[lower, upper)` in key order while it
    /// returns true.
    pub(crate) fn scan(
        &self,
        cf: &'static str,
        lower: &[u8],
        upper: Option<Vec<u8>>,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let tenant = self.tenant();
        self.scan_raw(cf, lower, upper, |key, value| {
            let value = tenant.open_value(cf, key, value)?;
            visit(key, &value)
        })
    }

    /// [`View::scan`] over the values as stored (sealed, when the tenant is encrypted).
    pub(crate) fn scan_raw(
        &self,
        cf: &'static str,
        lower: &[u8],
        upper: Option<Vec<u8>>,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let handle = self.tenant().cf(cf)?;
        let mut options = ReadOptions::default();
        if let Some(upper) = upper {
            options.set_iterate_upper_bound(upper);
        }
        match self {
            View::Db(tenant) => for_both!(&tenant.db, db => {
                drive(db.raw_iterator_cf_opt(handle, options), lower, visit)
            }),
            View::Txn(_, txn) => {
                options.set_snapshot(&txn.snapshot());
                drive(txn.raw_iterator_cf_opt(handle, options), lower, visit)
            }
        }
    }

    /// [`View::scan`] over every key that starts with `prefix`.
    pub(crate) fn scan_prefix(
        &self,
        cf: &'static str,
        prefix: &[u8],
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.scan(cf, prefix, keys::prefix_end(prefix), visit)
    }

    /// The resource `id` with its embedding: a record and an embedding stored together, never
    /// one write's record with another's embedding.
    ///
    /// A transaction reads both at its snapshot. Outside one, the two point reads are
    /// bracketed by the database's last sequence number: when it has not moved, no write
    /// landed between them and both read the same state; when it has, both are read again
    /// from one snapshot. (A MultiGet over both column families costs more than two plain
    /// reads, a snapshot per get takes a DB mutex, and the check costs two atomic loads.)
    pub(crate) fn resource(&self, id: ResourceId) -> Result<Resource> {
        let View::Db(tenant) = self else { return self.resource_once(id) };
        let before = tenant.db.latest_sequence_number();
        let resource = self.resource_once(id);
        if tenant.db.latest_sequence_number() == before {
            return resource;
        }
        match self.resources(&[id])?.pop().flatten() {
            Some(resource) => Ok(resource),
            None => Err(Error::not_found("resource", id)),
        }
    }

    /// [`View::resource`] by two point reads, consistent only in a transaction or when no
    /// write lands between them.
    fn resource_once(&self, id: ResourceId) -> Result<Resource> {
        let bytes = self
            .get(CF_RESOURCES, id.as_bytes())?
            .ok_or_else(|| Error::not_found("resource", id))?;
        let mut resource = codec::decode_resource(id, &bytes)?;
        if let Some(embedding) = self.get(CF_EMBEDDINGS, id.as_bytes())? {
            resource.embedding = Some(codec::decode_embedding(&embedding)?);
        }
        Ok(resource)
    }

    /// The resources `ids` name, each with its embedding, in order; `None` for one that does
    /// not exist. Outside a transaction both column families are read in one batched lookup
    /// each (RocksDB's MultiGet), from one snapshot: a search's hits cost two lookups, not two
    /// per hit.
    pub(crate) fn resources(&self, ids: &[ResourceId]) -> Result<Vec<Option<Resource>>> {
        let View::Db(tenant) = self else {
            return ids
                .iter()
                .map(|&id| match self.resource_once(id) {
                    Ok(resource) => Ok(Some(resource)),
                    Err(Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                })
                .collect();
        };
        let point = tenant.db.read_point();
        let options = point.options();
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
        let read = |cf: &'static str| -> Result<_> {
            let cf = tenant.cf(cf)?;
            Ok(for_both!(&tenant.db, db => db.batched_multi_get_cf_opt(cf, &keys, false, &options)))
        };
        let (records, embeddings) = (read(CF_RESOURCES)?, read(CF_EMBEDDINGS)?);
        let mut found = Vec::with_capacity(ids.len());
        for ((&id, record), embedding) in ids.iter().zip(records).zip(embeddings) {
            let key = id.as_bytes();
            let Some(record) = record.map_err(map_rocks_error)? else {
                found.push(None);
                continue;
            };
            let mut resource =
                codec::decode_resource(id, &tenant.open_value(CF_RESOURCES, key, record)?)?;
            if let Some(embedding) = embedding.map_err(map_rocks_error)? {
                let embedding = tenant.open_value(CF_EMBEDDINGS, key, embedding)?;
                resource.embedding = Some(codec::decode_embedding(&embedding)?);
            }
            found.push(Some(resource));
        }
        Ok(found)
    }

    /// The stored embeddings of `ids`, in order, in one batched lookup (RocksDB's MultiGet)
    /// from one snapshot: `None` for a resource without one, or whose embedding does not open
    /// or decode (the caller scores it some other way; reading the resource reports it).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the column family is missing.
    pub(crate) fn embeddings(&self, ids: &[ResourceId]) -> Result<Vec<Option<Vec<f32>>>> {
        let View::Db(tenant) = self else {
            return Ok(ids
                .iter()
                .map(|id| {
                    let raw = self.get(CF_EMBEDDINGS, id.as_bytes()).ok()??;
                    codec::decode_embedding(&raw).ok()
                })
                .collect());
        };
        let keys: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
        let point = tenant.db.read_point();
        let options = point.options();
        let cf = tenant.cf(CF_EMBEDDINGS)?;
        let found =
            for_both!(&tenant.db, db => db.batched_multi_get_cf_opt(cf, &keys, false, &options));
        Ok(keys
            .iter()
            .zip(found)
            .map(|(key, raw)| {
                let raw = raw.ok()??;
                let opened = tenant.open_value(CF_EMBEDDINGS, key, raw).ok()?;
                codec::decode_embedding(&opened).ok()
            })
            .collect())
    }

    pub(crate) fn entity(&self, id: EntityId) -> Result<Entity> {
        let bytes =
            self.get(CF_ENTITIES, id.as_bytes())?.ok_or_else(|| Error::not_found("entity", id))?;
        codec::decode_entity(id, &bytes)
    }

    pub(crate) fn edge(&self, id: EdgeId) -> Result<Edge> {
        let bytes =
            self.get(CF_EDGES, id.as_bytes())?.ok_or_else(|| Error::not_found("edge", id))?;
        codec::decode_edge(id, &bytes)
    }

    pub(crate) fn moment(&self, id: MomentId) -> Result<Moment> {
        let bytes =
            self.get(CF_MOMENTS, id.as_bytes())?.ok_or_else(|| Error::not_found("moment", id))?;
        codec::decode_moment(id, &bytes)
    }

    /// The edges of `entity` in `direction`, optionally of one relation, by edge id.
    pub(crate) fn edges(
        &self,
        entity: EntityId,
        direction: Direction,
        relation: Option<&str>,
    ) -> Result<Vec<Edge>> {
        if !self.contains(CF_ENTITIES, entity.as_bytes())? {
            return Err(Error::not_found("entity", entity));
        }
        let mut ids = Vec::new();
        for side in sides(direction) {
            let prefix = match relation {
                Some(relation) => keys::adjacency_relation_prefix(
                    entity,
                    *side,
                    &self.tenant().relation_key(relation),
                ),
                None => keys::adjacency_prefix(entity, *side).to_vec(),
            };
            self.scan_prefix(CF_ADJACENCY, &prefix, |key, _| {
                let adjacent = keys::parse_adjacency(key)
                    .ok_or_else(|| Error::corrupt("adjacency key", "bad layout"))?;
                ids.push(adjacent.edge);
                Ok(true)
            })?;
        }
        // A self-loop is listed on both sides.
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|id| self.edge(id)).collect()
    }
}

/// The adjacency sides a direction covers.
pub(crate) fn sides(direction: Direction) -> &'static [Side] {
    match direction {
        Direction::Out => &[Side::Out],
        Direction::In => &[Side::In],
        Direction::Both => &[Side::Out, Side::In],
    }
}

/// Read options at `txn`'s snapshot, taken when it began: a transaction's reads all see one
/// state (plus its own writes), as PostgreSQL's `REPEATABLE READ` does, and its commit fails
/// if a key it read for update or wrote changed after that snapshot.
fn at_snapshot(txn: &RocksTxn<'_>) -> ReadOptions {
    let mut options = ReadOptions::default();
    options.set_snapshot(&txn.snapshot());
    options
}

fn drive<D: DBAccess>(
    mut iterator: DBRawIteratorWithThreadMode<'_, D>,
    lower: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    iterator.seek(lower);
    while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
        if !visit(key, value)? {
            return Ok(());
        }
        iterator.next();
    }
    iterator.status().map_err(map_rocks_error)
}

/// The writes of one transaction.
pub(crate) struct Ops<'a> {
    pub(crate) tenant: &'a TenantDb,
    pub(crate) txn: &'a RocksTxn<'a>,
    /// Embedding changes, applied to the vector index once the transaction commits.
    pub(crate) changes: &'a RefCell<Vec<VectorChange>>,
}

impl<'a> Ops<'a> {
    pub(crate) fn view(&self) -> View<'a> {
        View::Txn(self.tenant, self.txn)
    }

    /// Writes `value`, sealed when the tenant is encrypted.
    fn put(&self, cf: &'static str, key: &[u8], value: &[u8]) -> Result<()> {
        if self.tenant.is_encrypted() {
            let sealed = self.tenant.seal_value(cf, key, value.to_vec())?;
            self.put_raw(cf, key, &sealed)
        } else {
            self.put_raw(cf, key, value)
        }
    }

    /// Writes bytes as they are (already sealed, or empty).
    fn put_raw(&self, cf: &'static str, key: &[u8], value: &[u8]) -> Result<()> {
        self.txn.put_cf(self.tenant.cf(cf)?, key, value).map_err(map_rocks_error)
    }

    fn delete(&self, cf: &'static str, key: &[u8]) -> Result<()> {
        self.txn.delete_cf(self.tenant.cf(cf)?, key).map_err(map_rocks_error)
    }

    /// The stored value of `key`, read for update and opened; `NotFound` naming `what` if
    /// absent.
    fn existing(&self, cf: &'static str, what: &'static str, id: &[u8; 16]) -> Result<Vec<u8>> {
        let raw = self.existing_raw(cf, what, id)?;
        Ok(self.tenant.open_value(cf, id, raw)?.to_vec())
    }

    /// [`Ops::existing`] as stored, sealed when the tenant is encrypted.
    fn existing_raw(
        &self,
        cf: &'static str,
        what: &'static str,
        id: &[u8; 16],
    ) -> Result<DBPinnableSlice<'a>> {
        self.view()
            .get_for_update(cf, id)?
            .ok_or_else(|| Error::not_found(what, uuid::Uuid::from_bytes(*id)))
    }

    fn absent(&self, cf: &'static str, what: &'static str, id: &[u8; 16]) -> Result<()> {
        match self.view().get_for_update(cf, id)? {
            Some(_) => Err(Error::already_exists(what, uuid::Uuid::from_bytes(*id))),
            None => Ok(()),
        }
    }

    pub(crate) fn insert_resource(&self, resource: &Resource) -> Result<()> {
        self.insert_resources(std::slice::from_ref(resource))
    }

    /// Inserts resources. Existence is checked with one batched read rather than a
    /// read-for-update per key: the optimistic transaction already fails at commit if any key
    /// it writes was written by someone else after it began, and the batched read catches
    /// every key written before.
    pub(crate) fn insert_resources(&self, resources: &[Resource]) -> Result<()> {
        let cf = self.tenant.cf(CF_RESOURCES)?;
        let existing = self.txn.multi_get_cf(resources.iter().map(|r| (cf, r.id.as_bytes())));
        for (resource, found) in resources.iter().zip(existing) {
            if found.map_err(map_rocks_error)?.is_some() {
                return Err(Error::already_exists("resource", resource.id));
            }
        }
        let embeddings = self.tenant.cf(CF_EMBEDDINGS)?;
        let mut seen = std::collections::HashSet::with_capacity(resources.len());
        for resource in resources {
            if !seen.insert(resource.id) {
                return Err(Error::already_exists("resource", resource.id));
            }
        }
        let index = self.tenant.vector_index().map(Arc::as_ref);
        let encoded = self.tenant.resource_values(resources, index)?;
        let records = encoded.records.iter();
        for ((resource, record), value) in resources.iter().zip(records).zip(encoded.values) {
            let key = resource.id.as_bytes();
            self.txn.put_cf(cf, key, record).map_err(map_rocks_error)?;
            if let Some(range) = value.embedding {
                let stored = &encoded.embeddings[range];
                self.txn.put_cf(embeddings, key, stored).map_err(map_rocks_error)?;
                match value.change {
                    Some(change) => self.changes.borrow_mut().push(change),
                    None => self.upserted(resource),
                }
            }
        }
        text::added(self, text::RESOURCE, resources.iter().map(|r| r.id.as_bytes()))
    }

    pub(crate) fn update_resource(&self, resource: &Resource) -> Result<Resource> {
        let key = resource.id.as_bytes();
        let old =
            codec::decode_resource(resource.id, &self.existing(CF_RESOURCES, "resource", key)?)?;
        let stored = Resource { created_at: old.created_at, ..resource.clone() };
        self.put(CF_RESOURCES, key, &codec::encode_resource(&stored))?;
        text::changed(self, text::RESOURCE, key, &old.content, &stored.content)?;
        match &stored.embedding {
            Some(embedding) => {
                self.put(CF_EMBEDDINGS, key, &codec::encode_embedding(embedding))?;
                self.upserted(&stored);
            }
            None => {
                self.delete(CF_EMBEDDINGS, key)?;
                self.changes.borrow_mut().push(VectorChange::Remove { id: stored.id });
            }
        }
        Ok(stored)
    }

    pub(crate) fn delete_resource(&self, id: ResourceId) -> Result<()> {
        let old =
            codec::decode_resource(id, &self.existing(CF_RESOURCES, "resource", id.as_bytes())?)?;
        text::removed(self, text::RESOURCE, id.as_bytes(), &old.content)?;
        self.delete(CF_RESOURCES, id.as_bytes())?;
        self.delete(CF_EMBEDDINGS, id.as_bytes())?;
        self.changes.borrow_mut().push(VectorChange::Remove { id });
        Ok(())
    }

    fn upserted(&self, resource: &Resource) {
        if let Some(embedding) = &resource.embedding {
            self.changes.borrow_mut().push(VectorChange::Upsert {
                id: resource.id,
                vector: embedding.clone(),
                metadata: Arc::new(resource.metadata.clone()),
            });
        }
    }

    fn put_names(&self, entity: &Entity) -> Result<()> {
        for key in self.tenant.name_keys(entity) {
            self.put_raw(CF_ENTITY_NAMES, &key, &[])?;
        }
        Ok(())
    }

    fn delete_names(&self, entity: &Entity) -> Result<()> {
        for key in self.tenant.name_keys(entity) {
            self.delete(CF_ENTITY_NAMES, &key)?;
        }
        Ok(())
    }

    pub(crate) fn insert_entity(&self, entity: &Entity) -> Result<()> {
        let key = entity.id.as_bytes();
        self.absent(CF_ENTITIES, "entity", key)?;
        self.put(CF_ENTITIES, key, &codec::encode_entity(entity))?;
        self.put_names(entity)
    }

    /// Inserts entities in this transaction: each checked absent (a repeated id finds the
    /// copy written earlier in the batch), stored, and its name words indexed.
    pub(crate) fn insert_entities(&self, entities: &[Entity]) -> Result<()> {
        entities.iter().try_for_each(|entity| self.insert_entity(entity))
    }

    pub(crate) fn update_entity(&self, entity: &Entity) -> Result<Entity> {
        let key = entity.id.as_bytes();
        let old = codec::decode_entity(entity.id, &self.existing(CF_ENTITIES, "entity", key)?)?;
        let stored = Entity { created_at: old.created_at, ..entity.clone() };
        self.delete_names(&old)?;
        self.put(CF_ENTITIES, key, &codec::encode_entity(&stored))?;
        self.put_names(&stored)?;
        Ok(stored)
    }

    pub(crate) fn delete_entity(&self, id: EntityId) -> Result<()> {
        let old = codec::decode_entity(id, &self.existing(CF_ENTITIES, "entity", id.as_bytes())?)?;
        let mut adjacency = Vec::new();
        for side in [Side::Out, Side::In] {
            self.view().scan_prefix(
                CF_ADJACENCY,
                &keys::adjacency_prefix(id, side),
                |key, _| {
                    adjacency.push(key.to_vec());
                    Ok(true)
                },
            )?;
        }
        for key in adjacency {
            let adjacent = keys::parse_adjacency(&key)
                .ok_or_else(|| Error::corrupt("adjacency key", "bad layout"))?;
            self.delete(CF_EDGES, adjacent.edge.as_bytes())?;
            self.delete(CF_ADJACENCY, &key)?;
            self.delete(
                CF_ADJACENCY,
                &keys::adjacency(
                    adjacent.other,
                    adjacent.side.opposite(),
                    adjacent.relation,
                    id,
                    adjacent.edge,
                ),
            )?;
        }
        self.delete_names(&old)?;
        self.delete(CF_ENTITIES, id.as_bytes())
    }

    pub(crate) fn insert_edge(&self, edge: &Edge) -> Result<()> {
        self.absent(CF_EDGES, "edge", edge.id.as_bytes())?;
        let ends: &[EntityId] =
            if edge.from == edge.to { &[edge.from] } else { &[edge.from, edge.to] };
        for end in ends {
            // Rewriting the endpoint unchanged makes a concurrent delete of it conflict.
            let bytes = self.existing_raw(CF_ENTITIES, "entity", end.as_bytes())?.to_vec();
            self.put_raw(CF_ENTITIES, end.as_bytes(), &bytes)?;
        }
        self.put_edge(edge)
    }

    /// Writes an edge and its adjacency keys at both ends; the caller checked the id is free
    /// and the endpoints exist.
    fn put_edge(&self, edge: &Edge) -> Result<()> {
        self.put(CF_EDGES, edge.id.as_bytes(), &codec::encode_edge(edge))?;
        let relation = self.tenant.relation_key(&edge.relation);
        self.put_raw(
            CF_ADJACENCY,
            &keys::adjacency(edge.from, Side::Out, &relation, edge.to, edge.id),
            &[],
        )?;
        self.put_raw(
            CF_ADJACENCY,
            &keys::adjacency(edge.to, Side::In, &relation, edge.from, edge.id),
            &[],
        )
    }

    /// Inserts edges in this transaction, each as [`Ops::insert_edge`] (both adjacency keys,
    /// its endpoints checked and rewritten so a concurrent delete of one conflicts), except
    /// that an endpoint shared by several edges of the batch is read and rewritten once.
    pub(crate) fn insert_edges(&self, edges: &[Edge]) -> Result<()> {
        let mut locked = std::collections::HashSet::with_capacity(2 * edges.len());
        for edge in edges {
            self.absent(CF_EDGES, "edge", edge.id.as_bytes())?;
            for end in [edge.from, edge.to] {
                if locked.insert(end) {
                    let bytes = self.existing_raw(CF_ENTITIES, "entity", end.as_bytes())?.to_vec();
                    self.put_raw(CF_ENTITIES, end.as_bytes(), &bytes)?;
                }
            }
            self.put_edge(edge)?;
        }
        Ok(())
    }

    pub(crate) fn delete_edge(&self, id: EdgeId) -> Result<()> {
        let edge = codec::decode_edge(id, &self.existing(CF_EDGES, "edge", id.as_bytes())?)?;
        self.delete(CF_EDGES, id.as_bytes())?;
        let relation = self.tenant.relation_key(&edge.relation);
        self.delete(CF_ADJACENCY, &keys::adjacency(edge.from, Side::Out, &relation, edge.to, id))?;
        self.delete(CF_ADJACENCY, &keys::adjacency(edge.to, Side::In, &relation, edge.from, id))
    }

    fn put_moment(&self, moment: &Moment) -> Result<()> {
        let span = moment.end.as_micros().saturating_sub(moment.start.as_micros());
        self.tenant.widen_moment_span(span)?;
        let key = moment.id.as_bytes();
        self.put(CF_MOMENTS, key, &codec::encode_moment(moment))?;
        self.put(CF_MOMENT_TIME, &keys::moment_time(moment.start, key), &keys::time(moment.end))
    }

    pub(crate) fn insert_moment(&self, moment: &Moment) -> Result<()> {
        self.absent(CF_MOMENTS, "moment", moment.id.as_bytes())?;
        text::added(self, text::MOMENT, [moment.id.as_bytes()])?;
        self.put_moment(moment)
    }

    /// Inserts moments in this transaction: each checked absent, stored with its time index
    /// entry, the tenant's moment span widened to cover it.
    pub(crate) fn insert_moments(&self, moments: &[Moment]) -> Result<()> {
        moments.iter().try_for_each(|moment| self.insert_moment(moment))
    }

    pub(crate) fn update_moment(&self, moment: &Moment) -> Result<Moment> {
        let key = moment.id.as_bytes();
        let old = codec::decode_moment(moment.id, &self.existing(CF_MOMENTS, "moment", key)?)?;
        self.delete(CF_MOMENT_TIME, &keys::moment_time(old.start, key))?;
        text::changed(self, text::MOMENT, key, &old.content, &moment.content)?;
        self.put_moment(moment)?;
        Ok(moment.clone())
    }

    pub(crate) fn delete_moment(&self, id: MomentId) -> Result<()> {
        let key = id.as_bytes();
        let old = codec::decode_moment(id, &self.existing(CF_MOMENTS, "moment", key)?)?;
        self.delete(CF_MOMENT_TIME, &keys::moment_time(old.start, key))?;
        text::removed(self, text::MOMENT, key, &old.content)?;
        self.delete(CF_MOMENTS, key)
    }
}
