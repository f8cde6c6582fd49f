//! The column families of a tenant database: the only place that names them.

/// Tenant-wide settings: format version, configuration, moment span.
pub(crate) const CF_META: &str = "meta";
/// Resources without their embeddings.
pub(crate) const CF_RESOURCES: &str = "resources";
/// Resource embeddings, apart so scans over vectors do not read content.
pub(crate) const CF_EMBEDDINGS: &str = "embeddings";
/// Entities.
pub(crate) const CF_ENTITIES: &str = "entities";
/// Name words of entities, for name search.
pub(crate) const CF_ENTITY_NAMES: &str = "entity_names";
/// Edges.
pub(crate) const CF_EDGES: &str = "edges";
/// The adjacency list, both directions.
pub(crate) const CF_ADJACENCY: &str = "adjacency";
/// Moments.
pub(crate) const CF_MOMENTS: &str = "moments";
/// Moments by start time.
pub(crate) const CF_MOMENT_TIME: &str = "moment_time";

/// The full-text inverted index: postings of resource and moment content terms.
pub(crate) const CF_TEXT: &str = "text";

/// Every column family, all opened together: a database missing one is not a percolate tenant.
pub(crate) const ALL: [&str; 10] = [
    CF_META,
    CF_RESOURCES,
    CF_EMBEDDINGS,
    CF_ENTITIES,
    CF_ENTITY_NAMES,
    CF_EDGES,
    CF_ADJACENCY,
    CF_MOMENTS,
    CF_MOMENT_TIME,
    CF_TEXT,
];

/// Every domain a tenant seals values in with a session key made at open: its column
/// families. (Its index snapshot, sealed rarely, derives its key when it is sealed.)
pub(crate) const SEALED_DOMAINS: &[&str] = &ALL;
