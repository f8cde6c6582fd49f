//! [`State`]: one tenant's records as plain ordered maps, and the checked operations that plan
//! changes to them. It owns record-level rules (ids taken or missing, edges need their ends,
//! `created_at` is kept); it must not touch locks, versions or transactions (`tenant.rs`).
//!
//! Every write is planned before anything changes: a checked operation reads a `&State` and
//! returns a [`Change`] (its result, the raw [`Write`]s to apply, and the keys it wrote or
//! validated), or an error with nothing applied. Auto-commit calls and transactions both apply
//! the writes with [`State::apply`], so there is one definition of what each operation does,
//! and every multi-record write is atomic by construction.
//!
//! Invariant: `adjacency[e]` holds exactly the ids of the stored edges with `from == e` or
//! `to == e`, and every edge's ends are stored entities.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::{Error, Result};
use crate::model::{Edge, EdgeId, Entity, EntityId, Moment, MomentId, Resource, ResourceId};

/// One tenant's records.
#[derive(Clone, Debug, Default)]
pub(crate) struct State {
    pub(crate) resources: BTreeMap<ResourceId, Resource>,
    pub(crate) entities: BTreeMap<EntityId, Entity>,
    pub(crate) edges: BTreeMap<EdgeId, Edge>,
    pub(crate) moments: BTreeMap<MomentId, Moment>,
    /// The edges at each entity that has any, in both directions; a self-loop once.
    pub(crate) adjacency: BTreeMap<EntityId, BTreeSet<EdgeId>>,
}

/// What a concurrent commit can change and a transaction can depend on: a record, or the set
/// of edges at an entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Resource(ResourceId),
    Entity(EntityId),
    Edge(EdgeId),
    Moment(MomentId),
    /// The set of edges at an entity: changed by adding or removing an edge that touches it.
    Adjacency(EntityId),
}

/// A raw change, applied without checks: only a [`Change`] planned on a state that the target
/// state agrees with at every key of its footprint may apply it.
#[derive(Clone, Debug)]
pub(crate) enum Write {
    PutResource(Resource),
    DeleteResource(ResourceId),
    PutEntity(Entity),
    /// Deletes the entity and every edge at it.
    DeleteEntity(EntityId),
    PutEdge(Edge),
    DeleteEdge(EdgeId),
    PutMoment(Moment),
    DeleteMoment(MomentId),
}

/// A planned operation: its result, the writes that make it happen, and its footprint, the keys
/// it wrote or read to validate (a transaction conflicts when a concurrent commit changed one).
#[derive(Debug)]
pub(crate) struct Change<T> {
    pub(crate) value: T,
    pub(crate) writes: Vec<Write>,
    pub(crate) footprint: Vec<Key>,
}

impl<T> Change<T> {
    fn new(value: T, writes: Vec<Write>, footprint: Vec<Key>) -> Self {
        Self { value, writes, footprint }
    }
}

fn missing<I: std::fmt::Display>(what: &'static str, id: I) -> Error {
    Error::not_found(what, id)
}

impl State {
    /// The resource with this id.
    pub(crate) fn resource(&self, id: ResourceId) -> Result<Resource> {
        self.resources.get(&id).cloned().ok_or_else(|| missing(ResourceId::WHAT, id))
    }

    /// The entity with this id.
    pub(crate) fn entity(&self, id: EntityId) -> Result<Entity> {
        self.entities.get(&id).cloned().ok_or_else(|| missing(EntityId::WHAT, id))
    }

    /// The edge with this id.
    pub(crate) fn edge(&self, id: EdgeId) -> Result<Edge> {
        self.edges.get(&id).cloned().ok_or_else(|| missing(EdgeId::WHAT, id))
    }

    /// The moment with this id.
    pub(crate) fn moment(&self, id: MomentId) -> Result<Moment> {
        self.moments.get(&id).cloned().ok_or_else(|| missing(MomentId::WHAT, id))
    }

    /// The edges at `entity`, in id order.
    pub(crate) fn edges_at(&self, entity: EntityId) -> impl Iterator<Item = &Edge> {
        self.adjacency.get(&entity).into_iter().flatten().filter_map(|id| self.edges.get(id))
    }

    /// Inserts resources, all or none: fails if any id is stored or repeated in the batch.
    pub(crate) fn insert_resources(&self, resources: &[Resource]) -> Result<Change<()>> {
        let mut ids = HashSet::with_capacity(resources.len());
        for resource in resources {
            if self.resources.contains_key(&resource.id) || !ids.insert(resource.id) {
                return Err(Error::already_exists(ResourceId::WHAT, resource.id));
            }
        }
        Ok(Change::new(
            (),
            resources.iter().cloned().map(Write::PutResource).collect(),
            resources.iter().map(|r| Key::Resource(r.id)).collect(),
        ))
    }

    /// Replaces a stored resource, keeping its `created_at`; the value is what is stored.
    pub(crate) fn update_resource(&self, resource: &Resource) -> Result<Change<Resource>> {
        let stored = self
            .resources
            .get(&resource.id)
            .ok_or_else(|| missing(ResourceId::WHAT, resource.id))?;
        let updated = Resource { created_at: stored.created_at, ..resource.clone() };
        let writes = vec![Write::PutResource(updated.clone())];
        Ok(Change::new(updated, writes, vec![Key::Resource(resource.id)]))
    }

    /// Deletes a stored resource.
    pub(crate) fn delete_resource(&self, id: ResourceId) -> Result<Change<()>> {
        self.resource(id)?;
        Ok(Change::new((), vec![Write::DeleteResource(id)], vec![Key::Resource(id)]))
    }

    /// Inserts an entity under a free id.
    pub(crate) fn insert_entity(&self, entity: &Entity) -> Result<Change<()>> {
        if self.entities.contains_key(&entity.id) {
            return Err(Error::already_exists(EntityId::WHAT, entity.id));
        }
        Ok(Change::new((), vec![Write::PutEntity(entity.clone())], vec![Key::Entity(entity.id)]))
    }

    /// Inserts entities, all or none: fails if any id is stored or repeated in the batch.
    pub(crate) fn insert_entities(&self, entities: &[Entity]) -> Result<Change<()>> {
        let mut ids = HashSet::with_capacity(entities.len());
        for entity in entities {
            if self.entities.contains_key(&entity.id) || !ids.insert(entity.id) {
                return Err(Error::already_exists(EntityId::WHAT, entity.id));
            }
        }
        Ok(Change::new(
            (),
            entities.iter().cloned().map(Write::PutEntity).collect(),
            entities.iter().map(|e| Key::Entity(e.id)).collect(),
        ))
    }

    /// Replaces a stored entity, keeping its `created_at`; the value is what is stored.
    pub(crate) fn update_entity(&self, entity: &Entity) -> Result<Change<Entity>> {
        let stored =
            self.entities.get(&entity.id).ok_or_else(|| missing(EntityId::WHAT, entity.id))?;
        let updated = Entity { created_at: stored.created_at, ..entity.clone() };
        let writes = vec![Write::PutEntity(updated.clone())];
        Ok(Change::new(updated, writes, vec![Key::Entity(entity.id)]))
    }

    /// Deletes a stored entity and every edge at it. Its footprint holds the entity's edge set,
    /// so a concurrent commit that adds an edge to it makes a transaction holding this fail
    /// rather than leave that edge dangling.
    pub(crate) fn delete_entity(&self, id: EntityId) -> Result<Change<()>> {
        self.entity(id)?;
        let mut footprint = vec![Key::Entity(id), Key::Adjacency(id)];
        footprint.extend(self.edges_at(id).map(|edge| Key::Edge(edge.id)));
        Ok(Change::new((), vec![Write::DeleteEntity(id)], footprint))
    }

    /// Inserts an edge under a free id between stored entities. Its footprint holds both ends,
    /// so a concurrent commit that deletes one makes a transaction holding this fail.
    pub(crate) fn insert_edge(&self, edge: &Edge) -> Result<Change<()>> {
        if self.edges.contains_key(&edge.id) {
            return Err(Error::already_exists(EdgeId::WHAT, edge.id));
        }
        for end in [edge.from, edge.to] {
            self.entity(end)?;
        }
        let footprint = vec![Key::Edge(edge.id), Key::Entity(edge.from), Key::Entity(edge.to)];
        Ok(Change::new((), vec![Write::PutEdge(edge.clone())], footprint))
    }

    /// Inserts edges, all or none, between entities stored before the batch: fails if any id
    /// is stored or repeated in the batch, or an endpoint is missing.
    pub(crate) fn insert_edges(&self, edges: &[Edge]) -> Result<Change<()>> {
        let mut ids = HashSet::with_capacity(edges.len());
        let mut footprint = Vec::with_capacity(3 * edges.len());
        for edge in edges {
            if self.edges.contains_key(&edge.id) || !ids.insert(edge.id) {
                return Err(Error::already_exists(EdgeId::WHAT, edge.id));
            }
            for end in [edge.from, edge.to] {
                self.entity(end)?;
            }
            footprint.extend([Key::Edge(edge.id), Key::Entity(edge.from), Key::Entity(edge.to)]);
        }
        Ok(Change::new((), edges.iter().cloned().map(Write::PutEdge).collect(), footprint))
    }

    /// Deletes a stored edge.
    pub(crate) fn delete_edge(&self, id: EdgeId) -> Result<Change<()>> {
        self.edge(id)?;
        Ok(Change::new((), vec![Write::DeleteEdge(id)], vec![Key::Edge(id)]))
    }

    /// Inserts a moment under a free id.
    pub(crate) fn insert_moment(&self, moment: &Moment) -> Result<Change<()>> {
        if self.moments.contains_key(&moment.id) {
            return Err(Error::already_exists(MomentId::WHAT, moment.id));
        }
        Ok(Change::new((), vec![Write::PutMoment(moment.clone())], vec![Key::Moment(moment.id)]))
    }

    /// Inserts moments, all or none: fails if any id is stored or repeated in the batch.
    pub(crate) fn insert_moments(&self, moments: &[Moment]) -> Result<Change<()>> {
        let mut ids = HashSet::with_capacity(moments.len());
        for moment in moments {
            if self.moments.contains_key(&moment.id) || !ids.insert(moment.id) {
                return Err(Error::already_exists(MomentId::WHAT, moment.id));
            }
        }
        Ok(Change::new(
            (),
            moments.iter().cloned().map(Write::PutMoment).collect(),
            moments.iter().map(|m| Key::Moment(m.id)).collect(),
        ))
    }

    /// Replaces a stored moment; the value is what is stored.
    pub(crate) fn update_moment(&self, moment: &Moment) -> Result<Change<Moment>> {
        self.moment(moment.id)?;
        let writes = vec![Write::PutMoment(moment.clone())];
        Ok(Change::new(moment.clone(), writes, vec![Key::Moment(moment.id)]))
    }

    /// Deletes a stored moment.
    pub(crate) fn delete_moment(&self, id: MomentId) -> Result<Change<()>> {
        self.moment(id)?;
        Ok(Change::new((), vec![Write::DeleteMoment(id)], vec![Key::Moment(id)]))
    }

    /// Applies a write and returns the keys it changed. Keeps the adjacency invariant whatever
    /// the write; it is the planning above that keeps edges' ends stored.
    pub(crate) fn apply(&mut self, write: &Write) -> Vec<Key> {
        match write {
            Write::PutResource(resource) => {
                self.resources.insert(resource.id, resource.clone());
                vec![Key::Resource(resource.id)]
            }
            Write::DeleteResource(id) => {
                self.resources.remove(id);
                vec![Key::Resource(*id)]
            }
            Write::PutEntity(entity) => {
                self.entities.insert(entity.id, entity.clone());
                vec![Key::Entity(entity.id)]
            }
            Write::DeleteEntity(id) => {
                self.entities.remove(id);
                let mut changed = vec![Key::Entity(*id), Key::Adjacency(*id)];
                for edge in self.adjacency.get(id).cloned().unwrap_or_default() {
                    changed.extend(self.remove_edge(edge));
                }
                changed
            }
            Write::PutEdge(edge) => {
                let mut changed = self.remove_edge(edge.id);
                for end in [edge.from, edge.to] {
                    self.adjacency.entry(end).or_default().insert(edge.id);
                }
                self.edges.insert(edge.id, edge.clone());
                changed.extend([
                    Key::Edge(edge.id),
                    Key::Adjacency(edge.from),
                    Key::Adjacency(edge.to),
                ]);
                changed
            }
            Write::DeleteEdge(id) => {
                let mut changed = self.remove_edge(*id);
                changed.push(Key::Edge(*id));
                changed
            }
            Write::PutMoment(moment) => {
                self.moments.insert(moment.id, moment.clone());
                vec![Key::Moment(moment.id)]
            }
            Write::DeleteMoment(id) => {
                self.moments.remove(id);
                vec![Key::Moment(*id)]
            }
        }
    }

    /// Removes an edge, if stored, from the edges and from both ends' edge sets.
    fn remove_edge(&mut self, id: EdgeId) -> Vec<Key> {
        let Some(edge) = self.edges.remove(&id) else { return Vec::new() };
        for end in [edge.from, edge.to] {
            if let Some(set) = self.adjacency.get_mut(&end) {
                set.remove(&id);
                if set.is_empty() {
                    self.adjacency.remove(&end);
                }
            }
        }
        vec![Key::Edge(id), Key::Adjacency(edge.from), Key::Adjacency(edge.to)]
    }
}
