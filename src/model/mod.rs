//! The data model: ids, records, queries and filters. Nothing here knows a backend.

mod filter;
mod ids;
mod query;
mod recall;
mod records;
mod text;
mod text_query;
mod time;

pub use filter::{CmpOp, Filter, MAX_FILTER_DEPTH, MAX_FILTER_NODES, MAX_FILTER_VALUES};
pub use ids::{EdgeId, EntityId, MomentId, ResourceId, TENANT_ID_MAX_LEN, TenantId};
pub use query::{
    Direction, EntityQuery, MAX_DEPTH, MAX_DIMENSION, MAX_K, Metric, Reached, ScoredResource,
    SearchQuery, TenantConfig, TraverseQuery,
};
pub use recall::{RRF_K, RecallHit, RecallQuery, RecallWeights, SignalRanks};
pub use records::{
    Edge, Entity, EntityIds, Metadata, Moment, NewEdge, NewEntity, NewMoment, NewResource, Record,
    RecordKind, Resource,
};
pub use text::{MAX_WORD_LEN, words, words_match};
pub use text_query::{MAX_TEXT_QUERY_BYTES, MAX_TEXT_QUERY_TERMS, TextHit, TextQuery, TextTarget};
pub use time::{TimeRange, Timestamp};
