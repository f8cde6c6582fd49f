//! The REM records: resources, entities joined by edges, and moments.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::ids::{EdgeId, EntityId, MomentId, ResourceId};
use super::time::Timestamp;

/// A JSON object: the metadata of resources and moments, the properties of entities and edges.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// The entities a moment involves. Most moments involve a handful, which fit inline.
pub type EntityIds = SmallVec<[EntityId; 4]>;

/// A piece of content an agent remembers, with metadata and an optional embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// Its id.
    pub id: ResourceId,
    /// Where it came from, if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Its text.
    pub content: String,
    /// Arbitrary JSON fields; vector search can filter on them.
    #[serde(default)]
    pub metadata: Metadata,
    /// Its embedding. All embeddings of a tenant have the same dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// A resource to create: the engine assigns its id and timestamps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewResource {
    /// Where it came from, if anywhere.
    #[serde(default)]
    pub uri: Option<String>,
    /// Its text.
    #[serde(default)]
    pub content: String,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub metadata: Metadata,
    /// Its embedding.
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

impl NewResource {
    /// A resource with this content and nothing else.
    pub fn new(content: impl Into<String>) -> Self {
        Self { content: content.into(), ..Self::default() }
    }

    /// With this embedding.
    pub fn with_embedding(mut self, embedding: Vec<f32>) -> Self {
        self.embedding = Some(embedding);
        self
    }

    /// With this metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A typed node of the memory graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Its id.
    pub id: EntityId,
    /// Its name; [`crate::EntityQuery`] searches it.
    pub name: String,
    /// Its type, e.g. `"person"`.
    pub kind: String,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub properties: Metadata,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was last changed.
    pub updated_at: Timestamp,
}

/// An entity to create.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NewEntity {
    /// Its name.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub properties: Metadata,
}

impl NewEntity {
    /// An entity with this name and kind.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Self { name: name.into(), kind: kind.into(), properties: Metadata::new() }
    }
}

/// A directed, typed edge between two entities of the same tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// Its id.
    pub id: EdgeId,
    /// The entity it leaves.
    pub from: EntityId,
    /// The entity it reaches.
    pub to: EntityId,
    /// Its type, e.g. `"works_at"`.
    pub relation: String,
    /// Its weight (finite).
    pub weight: f32,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub properties: Metadata,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An edge to create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEdge {
    /// The entity it leaves; must exist.
    pub from: EntityId,
    /// The entity it reaches; must exist.
    pub to: EntityId,
    /// Its type.
    pub relation: String,
    /// Its weight; 1.0 when not given.
    #[serde(default = "default_weight")]
    pub weight: f32,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub properties: Metadata,
}

fn default_weight() -> f32 {
    1.0
}

impl NewEdge {
    /// An edge `from -relation-> to` of weight 1.
    pub fn new(from: EntityId, to: EntityId, relation: impl Into<String>) -> Self {
        Self { from, to, relation: relation.into(), weight: 1.0, properties: Metadata::new() }
    }
}

/// A time-ranged event that involves entities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Moment {
    /// Its id.
    pub id: MomentId,
    /// When it started.
    pub start: Timestamp,
    /// When it ended (`end >= start`).
    pub end: Timestamp,
    /// Its type, e.g. `"meeting"`.
    pub kind: String,
    /// Its text.
    pub content: String,
    /// The entities it involves.
    #[serde(default)]
    pub entities: EntityIds,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub metadata: Metadata,
}

/// A moment to create.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewMoment {
    /// When it started.
    pub start: Timestamp,
    /// When it ended (`end >= start`).
    pub end: Timestamp,
    /// Its type.
    pub kind: String,
    /// Its text.
    #[serde(default)]
    pub content: String,
    /// The entities it involves.
    #[serde(default)]
    pub entities: EntityIds,
    /// Arbitrary JSON fields.
    #[serde(default)]
    pub metadata: Metadata,
}

impl NewMoment {
    /// A moment of this kind over `[start, end]`.
    pub fn new(start: Timestamp, end: Timestamp, kind: impl Into<String>) -> Self {
        Self {
            start,
            end,
            kind: kind.into(),
            content: String::new(),
            entities: EntityIds::new(),
            metadata: Metadata::new(),
        }
    }
}

/// Any record, as streamed by [`crate::Provider::scan`] for export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A resource, with its embedding.
    Resource(Resource),
    /// An entity.
    Entity(Entity),
    /// An edge.
    Edge(Edge),
    /// A moment.
    Moment(Moment),
}

impl Record {
    /// The record's id, whatever its kind (ids of every kind are UUIDv7: byte order is
    /// creation order, the order [`crate::Provider::scan`] pages in).
    pub fn id(&self) -> uuid::Uuid {
        match self {
            Record::Resource(r) => r.id.as_uuid(),
            Record::Entity(e) => e.id.as_uuid(),
            Record::Edge(e) => e.id.as_uuid(),
            Record::Moment(m) => m.id.as_uuid(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Resource(_) => RecordKind::Resource,
            Record::Entity(_) => RecordKind::Entity,
            Record::Edge(_) => RecordKind::Edge,
            Record::Moment(_) => RecordKind::Moment,
        }
    }
}

/// The kinds of [`Record`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// [`Resource`]s.
    Resource,
    /// [`Entity`]s.
    Entity,
    /// [`Edge`]s.
    Edge,
    /// [`Moment`]s.
    Moment,
}

impl RecordKind {
    /// Every kind, in the order an import must load them (edges after their entities).
    pub const ALL: [RecordKind; 4] =
        [RecordKind::Resource, RecordKind::Entity, RecordKind::Edge, RecordKind::Moment];
}
