//! The portable export format: one tenant as JSON Lines, lossless across providers.
//!
//! ```text
//! {"format":"percolate-export","version":1,"tenant":"acme","dimension":384,"metric":"cosine","counts":{"resources":2,"entities":2,"edges":1,"moments":1}}
//! {"type":"resource","id":"0197…","content":"…","metadata":{},"embedding":[0.1,…],"created_at":"…","updated_at":"…"}
//! {"type":"entity",…}
//! {"type":"edge",…}
//! {"type":"moment",…}
//! {"records":6,"sha256":"9f86d0…"}
//! ```
//!
//! Design decisions:
//! - **Line 1 is a [`Header`]** (format name and version, the tenant, its embedding dimension and
//!   metric, and the count of each kind); **then one [`Record`] per line**, tagged by `"type"`,
//!   embeddings included so nothing is recomputed; **the last line is a [`Trailer`]** with the
//!   record count and the SHA-256 of every byte before it. A file without a valid trailer is
//!   truncated or damaged and imports nothing.
//! - **Canonical.** Records come by kind (resources, entities, edges, moments: entities before
//!   the edges that need them) and then by id; keys are in declaration order and metadata keys
//!   sorted (serde_json's map is a `BTreeMap`; a test guards it); floats are written shortest
//!   round-trip. Equal tenants export to byte-identical files, whatever the provider.
//! - **Export streams**: it reads keyset pages of [`PAGE`] records through
//!   [`TenantHandle::scan`] (the next page is read while the current one is serialised) and
//!   writes each record as it comes; a tenant is never held in memory. Serialising is most of
//!   the work (every float is formatted), so pages are encoded on the blocking pool, as many at
//!   once as there are cores (at most 4), and written in page order. The header must carry
//!   the counts, which are known only at the end, so the records go to an unnamed temporary
//!   spool file first and are copied out behind the header (a thread reads and hashes the
//!   spool while the caller's thread writes): one scan of the tenant instead of a counting
//!   scan plus a writing scan, and the counts always agree with the records. Pages are not
//!   one snapshot: export a tenant that is not being written to.
//! - **Import verifies before it writes.** Pass 1 reads the whole file: the header, every record
//!   (parsed, validated, in canonical order, no duplicate ids, every edge's ends among the
//!   file's entities, the dimension), the counts and the checksum. Only then does pass 2 write.
//!   Errors name the line. A corrupt, truncated or tampered file therefore imports nothing.
//!   Pass 1 is a pipeline: a thread reads the file in chunks of whole lines and hashes them,
//!   one parser per core (at most 4) parses and checks the lines of every other chunk, and the
//!   file-level checks take the chunks back in file order, so the error reported is always the
//!   first one in the file. Import keeps what pass 1 parsed
//!   in a binary spool file (unnamed, next to the input; floats as their bits, metadata as a
//!   tree), and pass 2 writes from it: the JSON is parsed once, and what is written is exactly
//!   what was verified even if the file changes in between. Import needs a file it can read:
//!   stdin is first copied to a temporary file.
//! - **Import is idempotent by id.** Records keep their ids and timestamps. A record whose id
//!   already exists is skipped when the stored record is identical and is an error when it
//!   differs; so re-running an interrupted import completes it without duplicates.
//! - The checksum guards against damage, not against an adversary, who can recompute it.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{MAX_CONTENT_BYTES, MemoryEngine, TenantHandle};
use crate::error::{Error, Result};
use crate::model::{
    EntityId, MAX_DIMENSION, Metadata, Metric, Record, RecordKind, Resource, ResourceId,
    TenantConfig, TenantId, Timestamp,
};
use crate::provider::Provider;

mod export;
mod import;
mod spool;
#[cfg(test)]
mod tests;
mod verify;

#[allow(unused_imports)]
use export::*;
pub use export::{export, export_with_spool};
pub use import::import;
#[allow(unused_imports)]
use import::*;
#[allow(unused_imports)]
use spool::*;
pub use verify::verify;
#[allow(unused_imports)]
use verify::*;

/// The `format` of every header.
pub const FORMAT: &str = "percolate-export";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Records read per [`TenantHandle::scan`] page on export.
pub const PAGE: usize = 1000;
/// Resources written per batch on import (fewer when their bytes exceed [`BATCH_BYTES`]).
pub const BATCH: usize = 1000;
/// The most bytes of resources (an estimate of their size in memory) gathered into one import
/// batch.
pub const BATCH_BYTES: usize = 64 << 20;
/// The longest record line import reads: a resource at the engine's largest content with every
/// character escaped, a 16k-d embedding and room for metadata. A longer line (a file without
/// newlines, say) is refused before it is held in memory.
pub const MAX_LINE_BYTES: usize = 6 * MAX_CONTENT_BYTES + (16 << 20);
/// The longest header line import reads.
pub const MAX_HEADER_BYTES: usize = 64 << 10;
/// Bytes of an import file read, hashed and parsed at a time (in whole lines).
const CHUNK: usize = 4 << 20;
/// Bytes of the export spool read and hashed at a time.
const COPY_CHUNK: usize = 1 << 20;

/// How many threads encode or parse records at once: the cores, at most 4 (beyond that the
/// sequential parts, hashing and storage, dominate).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4)
}

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version, [`FORMAT_VERSION`].
    pub version: u32,
    /// The exported tenant.
    pub tenant: TenantId,
    /// The tenant's embedding dimension, if fixed.
    pub dimension: Option<u32>,
    /// The tenant's vector metric.
    pub metric: Metric,
    /// How many records of each kind follow.
    pub counts: Counts,
}

impl Header {
    /// The tenant configuration this header describes.
    pub fn tenant_config(&self) -> TenantConfig {
        TenantConfig { dimension: self.dimension, metric: self.metric }
    }
}

/// How many records of each kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Resources.
    pub resources: u64,
    /// Entities.
    pub entities: u64,
    /// Edges.
    pub edges: u64,
    /// Moments.
    pub moments: u64,
}

impl Counts {
    /// The count of `kind`.
    pub fn get(&self, kind: RecordKind) -> u64 {
        match kind {
            RecordKind::Resource => self.resources,
            RecordKind::Entity => self.entities,
            RecordKind::Edge => self.edges,
            RecordKind::Moment => self.moments,
        }
    }

    fn slot(&mut self, kind: RecordKind) -> &mut u64 {
        match kind {
            RecordKind::Resource => &mut self.resources,
            RecordKind::Entity => &mut self.entities,
            RecordKind::Edge => &mut self.edges,
            RecordKind::Moment => &mut self.moments,
        }
    }

    /// All records.
    pub fn total(&self) -> u64 {
        self.resources + self.entities + self.edges + self.moments
    }
}

/// The last line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trailer {
    /// How many record lines precede it (the header is not counted).
    pub records: u64,
    /// Lowercase hex SHA-256 of every byte before this line (header and records, newlines
    /// included).
    pub sha256: String,
}

/// How far a long operation has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Records done.
    pub done: u64,
    /// Records in all.
    pub total: u64,
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// The header it wrote.
    pub header: Header,
    /// Its trailer.
    pub trailer: Trailer,
    /// Bytes written.
    pub bytes: u64,
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// The tenant written.
    pub tenant: TenantId,
    /// The file's header.
    pub header: Header,
    /// Whether the tenant was created by this import.
    pub created_tenant: bool,
    /// Records stored.
    pub inserted: Counts,
    /// Records already present and identical, left as they were.
    pub skipped: Counts,
}

fn kind_rank(kind: RecordKind) -> usize {
    RecordKind::ALL.iter().position(|k| *k == kind).unwrap_or(RecordKind::ALL.len())
}

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Resource => "resource",
        RecordKind::Entity => "entity",
        RecordKind::Edge => "edge",
        RecordKind::Moment => "moment",
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

fn write_error(e: std::io::Error) -> Error {
    Error::io("export output", e)
}

fn read_error(e: std::io::Error) -> Error {
    Error::io("import input", e)
}

fn spool_error(e: std::io::Error) -> Error {
    Error::io("export spool file", e)
}
