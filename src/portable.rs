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
//!   writes each record as it comes; a tenant is never held in memory. The header must carry
//!   the counts, which are known only at the end, so the records go to an unnamed temporary
//!   spool file first and are copied out behind the header: one scan of the tenant instead of
//!   a counting scan plus a writing scan (the scan is most of the cost), and the counts always
//!   agree with the records. Pages are not one snapshot: export a tenant that is not being
//!   written to.
//! - **Import verifies before it writes.** Pass 1 reads the whole file: the header, every record
//!   (parsed, validated, in canonical order, no duplicate ids, every edge's ends among the
//!   file's entities, the dimension), the counts and the checksum. Only then does pass 2 write.
//!   Errors name the line. A corrupt, truncated or tampered file therefore imports nothing.
//!   Import needs to read its input twice: stdin is first copied to a temporary file.
//! - **Import is idempotent by id.** Records keep their ids and timestamps. A record whose id
//!   already exists is skipped when the stored record is identical and is an error when it
//!   differs; so re-running an interrupted import completes it without duplicates.
//! - The checksum guards against damage, not against an adversary, who can recompute it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::{MAX_CONTENT_BYTES, MAX_NAME_BYTES, MemoryEngine, TenantHandle};
use crate::error::{Error, Result};
use crate::model::{
    EntityId, MAX_DIMENSION, Metadata, Metric, Record, RecordKind, Resource, TenantConfig, TenantId,
};
use crate::provider::Provider;

/// The `format` of every header.
pub const FORMAT: &str = "percolate-export";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Records read per [`TenantHandle::scan`] page on export.
pub const PAGE: usize = 1000;
/// Resources written per batch on import (fewer when their bytes exceed [`BATCH_BYTES`]).
pub const BATCH: usize = 1000;
/// The most line bytes of resources gathered into one import batch.
pub const BATCH_BYTES: usize = 64 << 20;

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

fn record_kind(record: &Record) -> RecordKind {
    match record {
        Record::Resource(_) => RecordKind::Resource,
        Record::Entity(_) => RecordKind::Entity,
        Record::Edge(_) => RecordKind::Edge,
        Record::Moment(_) => RecordKind::Moment,
    }
}

fn record_id(record: &Record) -> uuid::Uuid {
    match record {
        Record::Resource(r) => r.id.as_uuid(),
        Record::Entity(e) => e.id.as_uuid(),
        Record::Edge(e) => e.id.as_uuid(),
        Record::Moment(m) => m.id.as_uuid(),
    }
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
    Error::Backend { provider: "export output", source: Box::new(e) }
}

fn read_error(e: std::io::Error) -> Error {
    Error::Backend { provider: "import input", source: Box::new(e) }
}

/// A writer that hashes what it writes and counts the bytes.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    fn line(&mut self, line: &[u8]) -> Result<()> {
        self.hasher.update(line);
        self.bytes += line.len() as u64;
        self.inner.write_all(line).map_err(write_error)
    }
}

fn spool_error(e: std::io::Error) -> Error {
    Error::Backend { provider: "export spool file", source: Box::new(e) }
}

/// Scans one page in a task of its own, so the next page is read while this one is written.
fn scan_ahead<P: Provider>(
    tenant: &TenantHandle<P>,
    kind: RecordKind,
    after: Option<uuid::Uuid>,
) -> tokio::task::JoinHandle<Result<Vec<Record>>> {
    let tenant = tenant.clone();
    tokio::spawn(async move { tenant.scan(kind, after, PAGE).await })
}

/// Writes the tenant to `out` in the portable format, streaming page by page; records are
/// spooled to an anonymous temporary file in the system's temporary directory. See
/// [`export_with_spool`].
///
/// # Errors
/// As [`export_with_spool`].
pub async fn export<P: Provider, W: Write>(
    tenant: &TenantHandle<P>,
    out: W,
    progress: impl FnMut(Progress),
) -> Result<ExportSummary> {
    export_with_spool(tenant, out, None, progress).await
}

/// Writes the tenant to `out` in the portable format.
///
/// One pass of keyset pages ([`PAGE`] records, the next page read while the current one is
/// serialised) writes the records to an unnamed temporary file in `spool_dir` (the system's
/// temporary directory when `None`) and counts them; then the header, the spooled records and
/// the trailer go to `out`. So the header's counts are exact without a second scan of the
/// tenant, and memory use stays at one page. `progress` is called after every page with
/// `total` 0 (unknown), then once at the end. `out` should be buffered; it is flushed at the
/// end.
///
/// # Errors
/// [`Error::Backend`] if storage, the spool file or `out` fails.
pub async fn export_with_spool<P: Provider, W: Write>(
    tenant: &TenantHandle<P>,
    out: W,
    spool_dir: Option<&Path>,
    mut progress: impl FnMut(Progress),
) -> Result<ExportSummary> {
    let config = tenant.config().await?;
    let spool = match spool_dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(spool_error)?;
    let mut spooled = std::io::BufWriter::with_capacity(1 << 20, spool);
    let mut counts = Counts::default();
    let mut line = Vec::with_capacity(1 << 16);
    for kind in RecordKind::ALL {
        let mut next = Some(scan_ahead(tenant, kind, None));
        while let Some(task) = next.take() {
            let page = task
                .await
                .map_err(|e| Error::Backend { provider: "export scan", source: Box::new(e) })??;
            if page.len() == PAGE
                && let Some(last) = page.last()
            {
                next = Some(scan_ahead(tenant, kind, Some(record_id(last))));
            }
            for record in &page {
                line.clear();
                serde_json::to_writer(&mut line, record)
                    .map_err(|e| Error::invalid("export record", e))?;
                line.push(b'\n');
                spooled.write_all(&line).map_err(spool_error)?;
                *counts.slot(record_kind(record)) += 1;
            }
            progress(Progress { done: counts.total(), total: 0 });
        }
    }
    let mut spool = spooled.into_inner().map_err(|e| spool_error(e.into_error()))?;
    spool.seek(SeekFrom::Start(0)).map_err(spool_error)?;

    let header = Header {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        tenant: tenant.id().clone(),
        dimension: config.dimension,
        metric: config.metric,
        counts,
    };
    let mut out = Hashing { inner: out, hasher: Sha256::new(), bytes: 0 };
    let mut head = serde_json::to_vec(&header).map_err(|e| Error::invalid("export header", e))?;
    head.push(b'\n');
    out.line(&head)?;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let read = spool.read(&mut chunk).map_err(spool_error)?;
        if read == 0 {
            break;
        }
        out.line(&chunk[..read])?;
    }
    let Hashing { mut inner, hasher, bytes } = out;
    let trailer = Trailer { records: counts.total(), sha256: hex(&hasher.finalize()) };
    let mut last = serde_json::to_vec(&trailer).map_err(|e| Error::invalid("export trailer", e))?;
    last.push(b'\n');
    inner.write_all(&last).map_err(write_error)?;
    inner.flush().map_err(write_error)?;
    progress(Progress { done: counts.total(), total: counts.total() });
    Ok(ExportSummary { header, trailer, bytes: bytes + last.len() as u64 })
}

fn at_line(line: u64, reason: impl std::fmt::Display) -> Error {
    Error::invalid("import file", format!("line {line}: {reason}"))
}

/// Parses one record line (without its newline). Canonical lines start with their tag, which
/// lets the record struct be read directly instead of through serde's buffered tagged-enum
/// path (most of the import time is float parsing; buffering doubled it).
fn parse_record(body: &[u8]) -> std::result::Result<Record, serde_json::Error> {
    if body.starts_with(br#"{"type":"resource","#) {
        serde_json::from_slice(body).map(Record::Resource)
    } else if body.starts_with(br#"{"type":"entity","#) {
        serde_json::from_slice(body).map(Record::Entity)
    } else if body.starts_with(br#"{"type":"edge","#) {
        serde_json::from_slice(body).map(Record::Edge)
    } else if body.starts_with(br#"{"type":"moment","#) {
        serde_json::from_slice(body).map(Record::Moment)
    } else {
        serde_json::from_slice(body)
    }
}

fn check_name(what: &str, value: &str) -> std::result::Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("{what} is {} bytes, at most {MAX_NAME_BYTES}", value.len()));
    }
    Ok(())
}

fn check_content(what: &str, value: &str) -> std::result::Result<(), String> {
    if value.len() > MAX_CONTENT_BYTES {
        return Err(format!("{what} is {} bytes, at most {MAX_CONTENT_BYTES}", value.len()));
    }
    Ok(())
}

fn check_metadata(what: &str, metadata: &Metadata) -> std::result::Result<(), String> {
    if metadata.keys().any(String::is_empty) {
        return Err(format!("{what} has an empty key"));
    }
    Ok(())
}

fn check_embedding(resource: &Resource, dimension: Option<u32>) -> std::result::Result<(), String> {
    let Some(embedding) = &resource.embedding else { return Ok(()) };
    match dimension {
        None => return Err("has an embedding but the header's dimension is null".into()),
        Some(d) if d as usize != embedding.len() => {
            return Err(format!(
                "embedding has dimension {} but the header's is {d}",
                embedding.len()
            ));
        }
        Some(_) => {}
    }
    if let Some(position) = embedding.iter().position(|x| !x.is_finite()) {
        return Err(format!("embedding value at {position} is not finite"));
    }
    Ok(())
}

/// The file-level checks of pass 1: canonical order, counts, edge ends.
struct Verifier {
    header: Header,
    seen: Counts,
    rank: usize,
    last_id: Option<uuid::Uuid>,
    entities: HashSet<EntityId>,
}

impl Verifier {
    /// Validates a record as the engine would, plus what only the whole file can tell.
    fn record(&mut self, record: &Record) -> std::result::Result<(), String> {
        let kind = record_kind(record);
        let id = record_id(record);
        let rank = kind_rank(kind);
        if rank < self.rank {
            return Err(format!(
                "{} after the {}s: records must be ordered by kind (resource, entity, edge, \
                 moment)",
                kind_name(kind),
                kind_name(RecordKind::ALL[self.rank])
            ));
        }
        if rank > self.rank {
            self.rank = rank;
            self.last_id = None;
        }
        if let Some(last) = self.last_id
            && id <= last
        {
            return Err(format!(
                "{} {id} is {} (records of a kind must be in increasing id order)",
                kind_name(kind),
                if id == last { "a duplicate" } else { "out of order" }
            ));
        }
        self.last_id = Some(id);
        match record {
            Record::Resource(r) => {
                if let Some(uri) = &r.uri {
                    check_name("uri", uri)?;
                }
                check_content("content", &r.content)?;
                check_metadata("metadata", &r.metadata)?;
                check_embedding(r, self.header.dimension)?;
            }
            Record::Entity(e) => {
                check_name("name", &e.name)?;
                check_name("kind", &e.kind)?;
                check_metadata("properties", &e.properties)?;
                self.entities.insert(e.id);
            }
            Record::Edge(e) => {
                check_name("relation", &e.relation)?;
                if !e.weight.is_finite() {
                    return Err(format!("weight {} is not finite", e.weight));
                }
                check_metadata("properties", &e.properties)?;
                for (end, entity) in [("from", e.from), ("to", e.to)] {
                    if !self.entities.contains(&entity) {
                        return Err(format!(
                            "edge {}: {end} entity {entity} is not in the file",
                            e.id
                        ));
                    }
                }
            }
            Record::Moment(m) => {
                if m.end < m.start {
                    return Err(format!("moment ends ({}) before it starts ({})", m.end, m.start));
                }
                check_name("kind", &m.kind)?;
                check_content("content", &m.content)?;
                check_metadata("metadata", &m.metadata)?;
            }
        }
        let seen = self.seen.slot(kind);
        *seen += 1;
        if *seen > self.header.counts.get(kind) {
            return Err(format!(
                "more {}s than the header's count of {}",
                kind_name(kind),
                self.header.counts.get(kind)
            ));
        }
        Ok(())
    }
}

/// Reads lines, each with its newline (a missing final newline is reported by the caller).
fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    Ok(reader.read_until(b'\n', buf).map_err(read_error)? > 0)
}

fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path)
        .map_err(|e| Error::invalid("import file", format!("{}: {e}", path.display())))?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

fn parse_header(line: &[u8]) -> Result<Header> {
    let body = line.strip_suffix(b"\n").ok_or_else(|| at_line(1, "truncated header"))?;
    let header: Header = serde_json::from_slice(body)
        .map_err(|e| at_line(1, format!("not a {FORMAT} header: {e}")))?;
    if header.format != FORMAT {
        return Err(at_line(1, format!("format {:?}, expected {FORMAT:?}", header.format)));
    }
    if header.version != FORMAT_VERSION {
        return Err(at_line(
            1,
            format!("format version {}, this build reads {FORMAT_VERSION}", header.version),
        ));
    }
    if let Some(dimension) = header.dimension
        && (dimension == 0 || dimension as usize > MAX_DIMENSION)
    {
        return Err(at_line(1, format!("dimension {dimension} (must be 1..={MAX_DIMENSION})")));
    }
    Ok(header)
}

/// Reads the whole file at `path` and checks everything an import needs before it writes: the
/// header, every record, the counts and the checksum. Returns the header.
///
/// # Errors
/// [`Error::Invalid`] naming the line of the first problem, for a file that is malformed,
/// out of order, truncated or does not match its checksum.
pub fn verify(path: &Path) -> Result<Header> {
    let mut reader = open(path)?;
    let mut hasher = Sha256::new();
    let mut line = Vec::with_capacity(1 << 16);
    if !read_line(&mut reader, &mut line)? {
        return Err(at_line(1, "empty file"));
    }
    let header = parse_header(&line)?;
    hasher.update(&line);
    let mut verifier = Verifier {
        header,
        seen: Counts::default(),
        rank: 0,
        last_id: None,
        entities: HashSet::new(),
    };
    // The trailer is the last line, known only at the end: hold each line back by one.
    let mut pending = Vec::with_capacity(1 << 16);
    let mut pending_number = 0u64;
    let mut number = 1u64;
    loop {
        if !read_line(&mut reader, &mut line)? {
            break;
        }
        number += 1;
        if pending_number > 0 {
            check_record_line(&pending, pending_number, &mut verifier)?;
            hasher.update(&pending);
        }
        std::mem::swap(&mut pending, &mut line);
        pending_number = number;
    }
    if pending_number == 0 {
        return Err(at_line(2, "truncated: no records and no trailer"));
    }
    let truncated = || at_line(pending_number, "truncated: the last line is not a trailer");
    let body = pending.strip_suffix(b"\n").ok_or_else(truncated)?;
    let trailer: Trailer = serde_json::from_slice(body).map_err(|_| truncated())?;
    let records = pending_number - 2;
    if trailer.records != records {
        return Err(at_line(
            pending_number,
            format!("trailer counts {} records, the file has {records}", trailer.records),
        ));
    }
    let digest = hex(&hasher.finalize());
    if trailer.sha256 != digest {
        return Err(at_line(
            pending_number,
            format!(
                "checksum mismatch: the file is damaged (sha256 {digest}, trailer says {})",
                trailer.sha256
            ),
        ));
    }
    if verifier.seen != verifier.header.counts {
        return Err(at_line(
            pending_number,
            format!(
                "the header counts {:?} but the file holds {:?}",
                verifier.header.counts, verifier.seen
            ),
        ));
    }
    Ok(verifier.header)
}

fn check_record_line(line: &[u8], number: u64, verifier: &mut Verifier) -> Result<()> {
    let body = line.strip_suffix(b"\n").ok_or_else(|| at_line(number, "truncated"))?;
    let record = parse_record(body).map_err(|e| at_line(number, e))?;
    verifier.record(&record).map_err(|reason| at_line(number, reason))
}

/// Imports the export file at `path` into `tenant` (the header's tenant when `None`), creating
/// the tenant with the header's dimension and metric if it does not exist.
///
/// The whole file is verified first ([`verify`]); nothing is written unless it passes. Then
/// records are written with their ids and timestamps: resources in batches of up to
/// [`BATCH`], the others one by one. A record whose id exists is skipped when identical.
/// `progress` is called after every batch.
///
/// # Errors
/// [`Error::Invalid`] naming the line for a bad file (nothing is written), or if an existing
/// tenant's dimension or metric differs from the header's; [`Error::AlreadyExists`] naming the
/// line if a record's id exists with different content (records before it are kept; the rest
/// is not written); [`Error::Backend`] on storage failure.
pub async fn import<P: Provider>(
    engine: &MemoryEngine<P>,
    path: &Path,
    tenant: Option<&TenantId>,
    mut progress: impl FnMut(Progress),
) -> Result<ImportSummary> {
    let owned: PathBuf = path.to_owned();
    let header = tokio::task::spawn_blocking(move || verify(&owned))
        .await
        .map_err(|e| Error::Backend { provider: "import", source: Box::new(e) })??;
    let target = tenant.cloned().unwrap_or_else(|| header.tenant.clone());
    let (handle, created_tenant) = match engine.tenant(&target).await {
        Ok(handle) => {
            let config = handle.config().await?;
            check_compatible(&target, &config, &header)?;
            (handle, false)
        }
        Err(Error::NotFound { .. }) => {
            (engine.create_tenant(&target, header.tenant_config()).await?, true)
        }
        Err(e) => return Err(e),
    };

    let mut writer = ImportWriter {
        handle,
        inserted: Counts::default(),
        skipped: Counts::default(),
        batch: Vec::with_capacity(BATCH),
        batch_lines: Vec::with_capacity(BATCH),
        batch_bytes: 0,
        in_flight: None,
    };
    let total = header.counts.total();
    let mut reader = open(path)?;
    let mut line = Vec::with_capacity(1 << 16);
    read_line(&mut reader, &mut line)?;
    for number in 2..total + 2 {
        if !read_line(&mut reader, &mut line)? {
            return Err(at_line(number, "the file changed since it was verified"));
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        let record = parse_record(body).map_err(|e| at_line(number, e))?;
        match record {
            Record::Resource(resource) => {
                writer.batch_bytes += line.len();
                writer.batch.push(resource);
                writer.batch_lines.push(number);
                if writer.batch.len() >= BATCH || writer.batch_bytes >= BATCH_BYTES {
                    writer.send_resources().await?;
                    progress(Progress { done: writer.done(), total });
                }
            }
            other => {
                writer.flush_resources().await?;
                writer.one(other, number).await?;
                if writer.done() % BATCH as u64 == 0 {
                    progress(Progress { done: writer.done(), total });
                }
            }
        }
    }
    writer.flush_resources().await?;
    progress(Progress { done: writer.done(), total });
    Ok(ImportSummary {
        tenant: target,
        header,
        created_tenant,
        inserted: writer.inserted,
        skipped: writer.skipped,
    })
}

fn check_compatible(target: &TenantId, config: &TenantConfig, header: &Header) -> Result<()> {
    if config.metric != header.metric {
        return Err(Error::invalid(
            "import file",
            format!(
                "tenant {target} uses metric {} but the file's is {}",
                config.metric.as_str(),
                header.metric.as_str()
            ),
        ));
    }
    if let (Some(have), Some(want)) = (config.dimension, header.dimension)
        && have != want
    {
        return Err(Error::invalid(
            "import file",
            format!("tenant {target} has dimension {have} but the file's is {want}"),
        ));
    }
    Ok(())
}

/// The outcome of one batch insert, with the batch back for the one-by-one path.
type BatchOutcome = (Vec<Resource>, Vec<u64>, Result<()>);

struct ImportWriter<P: Provider> {
    handle: TenantHandle<P>,
    inserted: Counts,
    skipped: Counts,
    batch: Vec<Resource>,
    batch_lines: Vec<u64>,
    batch_bytes: usize,
    /// The batch being written while the next one is parsed; at most one, so batches land in
    /// file order and a failure stops the import one batch after it.
    in_flight: Option<tokio::task::JoinHandle<BatchOutcome>>,
}

impl<P: Provider> ImportWriter<P> {
    fn done(&self) -> u64 {
        self.inserted.total() + self.skipped.total()
    }

    /// Waits for the batch in flight and settles its outcome.
    async fn settle(&mut self) -> Result<()> {
        let Some(task) = self.in_flight.take() else { return Ok(()) };
        let (batch, lines, outcome) =
            task.await.map_err(|e| Error::Backend { provider: "import", source: Box::new(e) })?;
        match outcome {
            Ok(()) => {
                self.inserted.resources += batch.len() as u64;
                Ok(())
            }
            Err(Error::Invalid { what, reason }) => {
                let (first, last) = (lines.first().copied(), lines.last().copied());
                Err(Error::invalid(
                    "import file",
                    format!(
                        "lines {}..={}: invalid {what}: {reason}",
                        first.unwrap_or(0),
                        last.unwrap_or(0)
                    ),
                ))
            }
            // Some of the batch is there already (an earlier, interrupted import): go one by
            // one, skipping what is identical.
            Err(Error::AlreadyExists { .. }) => {
                for (resource, number) in batch.into_iter().zip(lines) {
                    self.one(Record::Resource(resource), number).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts writing the gathered resources (after the previous batch has landed) and
    /// returns, so parsing goes on while they are written.
    async fn send_resources(&mut self) -> Result<()> {
        self.settle().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let lines = std::mem::replace(&mut self.batch_lines, Vec::with_capacity(BATCH));
        self.batch_bytes = 0;
        let handle = self.handle.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let outcome = handle.insert_resources(&batch).await;
            (batch, lines, outcome)
        }));
        Ok(())
    }

    /// Writes every gathered resource and waits until they have landed.
    async fn flush_resources(&mut self) -> Result<()> {
        self.send_resources().await?;
        self.settle().await
    }

    /// Inserts one record; an identical existing record is skipped.
    async fn one(&mut self, record: Record, number: u64) -> Result<()> {
        let kind = record_kind(&record);
        let handle = &self.handle;
        let inserted = match &record {
            Record::Resource(r) => handle.insert_resources(std::slice::from_ref(r)).await,
            Record::Entity(e) => handle.insert_entity(e).await,
            Record::Edge(e) => handle.insert_edge(e).await,
            Record::Moment(m) => handle.insert_moment(m).await,
        };
        match inserted {
            Ok(()) => {
                *self.inserted.slot(kind) += 1;
                return Ok(());
            }
            Err(Error::AlreadyExists { .. }) => {}
            Err(Error::Invalid { what, reason }) => {
                return Err(at_line(number, format!("invalid {what}: {reason}")));
            }
            Err(e) => return Err(e),
        }
        let identical = match &record {
            Record::Resource(r) => handle.get_resource(r.id).await? == *r,
            Record::Entity(e) => handle.get_entity(e.id).await? == *e,
            Record::Edge(e) => handle.get_edge(e.id).await? == *e,
            Record::Moment(m) => handle.get_moment(m.id).await? == *m,
        };
        if !identical {
            return Err(Error::AlreadyExists {
                what: "different record",
                id: format!(
                    "{} {} (line {number}): the tenant holds another version of it",
                    kind_name(kind),
                    record_id(&record)
                ),
            });
        }
        *self.skipped.slot(kind) += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keys_serialize_sorted() {
        // Canonical exports rely on serde_json's map being ordered by key. The `preserve_order`
        // feature would keep insertion order instead and break byte-identical exports.
        let mut metadata = Metadata::new();
        metadata.insert("zeta".into(), serde_json::json!(1));
        metadata.insert("alpha".into(), serde_json::json!(2));
        let text = serde_json::to_string(&metadata).expect("serialize");
        assert_eq!(text, r#"{"alpha":2,"zeta":1}"#);
    }

    #[test]
    fn a_tagged_line_in_any_key_order_parses() {
        let id = crate::model::EntityId::new();
        let canonical = format!(
            r#"{{"type":"entity","id":"{id}","name":"Ada","kind":"person","properties":{{}},"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}}"#
        );
        let shuffled = format!(
            r#"{{"name":"Ada","id":"{id}","type":"entity","kind":"person","created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}}"#
        );
        let a = parse_record(canonical.as_bytes()).expect("canonical");
        let b = parse_record(shuffled.as_bytes()).expect("shuffled");
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).expect("serialize"), canonical);
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
