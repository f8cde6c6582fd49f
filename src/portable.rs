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

use crate::engine::{MAX_CONTENT_BYTES, MAX_NAME_BYTES, MemoryEngine, TenantHandle};
use crate::error::{Error, Result};
use crate::model::{
    EntityId, MAX_DIMENSION, Metadata, Metric, Record, RecordKind, Resource, ResourceId,
    TenantConfig, TenantId, Timestamp,
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
/// The most bytes of resources (an estimate of their size in memory) gathered into one import
/// batch.
pub const BATCH_BYTES: usize = 64 << 20;
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

fn join_error(provider: &'static str) -> impl Fn(tokio::task::JoinError) -> Error {
    move |e| Error::Backend { provider, source: Box::new(e) }
}

/// A page of records as export lines.
struct EncodedPage {
    lines: Vec<u8>,
    counts: Counts,
}

fn encode_page(page: &[Record]) -> Result<EncodedPage> {
    let mut lines = Vec::new();
    let mut counts = Counts::default();
    for record in page {
        serde_json::to_writer(&mut lines, record)
            .map_err(|e| Error::invalid("export record", e))?;
        lines.push(b'\n');
        *counts.slot(record_kind(record)) += 1;
    }
    Ok(EncodedPage { lines, counts })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
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
/// One pass of keyset pages ([`PAGE`] records, the next page read while earlier ones are
/// serialised on the blocking pool, one page per core at a time) writes the records in order
/// to an unnamed temporary file in `spool_dir` (the system's temporary directory when `None`)
/// and counts them; then the header, the spooled records and the trailer go to `out`. So the
/// header's counts are exact without a second scan of the tenant, and memory use stays at a
/// few pages. `progress` is called after every page with `total` 0 (unknown), then once at the
/// end. `out` should be buffered; it is flushed at the end.
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
    let mut spool = match spool_dir {
        Some(dir) => tempfile::tempfile_in(dir),
        None => tempfile::tempfile(),
    }
    .map_err(spool_error)?;
    let mut counts = Counts::default();
    let workers = workers();
    // Pages being encoded, oldest first: they are spooled in this order.
    let mut encoding: VecDeque<tokio::task::JoinHandle<Result<EncodedPage>>> = VecDeque::new();
    for kind in RecordKind::ALL {
        let mut next = Some(scan_ahead(tenant, kind, None));
        while let Some(task) = next.take() {
            let page = task.await.map_err(join_error("export scan"))??;
            if page.len() == PAGE
                && let Some(last) = page.last()
            {
                next = Some(scan_ahead(tenant, kind, Some(record_id(last))));
            }
            if page.is_empty() {
                continue;
            }
            encoding.push_back(tokio::task::spawn_blocking(move || encode_page(&page)));
            while encoding.len() >= workers {
                spool_page(&mut encoding, &mut spool, &mut counts).await?;
                progress(Progress { done: counts.total(), total: 0 });
            }
        }
    }
    while !encoding.is_empty() {
        spool_page(&mut encoding, &mut spool, &mut counts).await?;
        progress(Progress { done: counts.total(), total: 0 });
    }
    spool.seek(SeekFrom::Start(0)).map_err(spool_error)?;

    let header = Header {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        tenant: tenant.id().clone(),
        dimension: config.dimension,
        metric: config.metric,
        counts,
    };
    let mut head = serde_json::to_vec(&header).map_err(|e| Error::invalid("export header", e))?;
    head.push(b'\n');
    // A thread reads the spool and hashes it while this one writes what it has hashed.
    let (chunks, mut hashed) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let mut hasher = Sha256::new();
    hasher.update(&head);
    let hashing = tokio::task::spawn_blocking(move || -> Result<Sha256> {
        loop {
            let mut chunk = vec![0u8; COPY_CHUNK];
            let read = read_full(&mut spool, &mut chunk).map_err(spool_error)?;
            if read == 0 {
                return Ok(hasher);
            }
            chunk.truncate(read);
            hasher.update(&chunk);
            if chunks.blocking_send(chunk).is_err() {
                // The writer failed and stopped listening; it reports its own error.
                return Ok(hasher);
            }
        }
    });
    let mut out = out;
    out.write_all(&head).map_err(write_error)?;
    let mut bytes = head.len() as u64;
    while let Some(chunk) = hashed.recv().await {
        out.write_all(&chunk).map_err(write_error)?;
        bytes += chunk.len() as u64;
    }
    let hasher = hashing.await.map_err(join_error("export spool file"))??;
    let trailer = Trailer { records: counts.total(), sha256: hex(&hasher.finalize()) };
    let mut last = serde_json::to_vec(&trailer).map_err(|e| Error::invalid("export trailer", e))?;
    last.push(b'\n');
    out.write_all(&last).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    progress(Progress { done: counts.total(), total: counts.total() });
    Ok(ExportSummary { header, trailer, bytes: bytes + last.len() as u64 })
}

/// Waits for the oldest page being encoded and appends it to the spool.
async fn spool_page(
    encoding: &mut VecDeque<tokio::task::JoinHandle<Result<EncodedPage>>>,
    spool: &mut File,
    counts: &mut Counts,
) -> Result<()> {
    let Some(task) = encoding.pop_front() else { return Ok(()) };
    let page = task.await.map_err(join_error("export"))??;
    spool.write_all(&page.lines).map_err(spool_error)?;
    for kind in RecordKind::ALL {
        *counts.slot(kind) += page.counts.get(kind);
    }
    Ok(())
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
    check_no_nul(what, value)?;
    if value.len() > MAX_NAME_BYTES {
        return Err(format!("{what} is {} bytes, at most {MAX_NAME_BYTES}", value.len()));
    }
    Ok(())
}

/// The engine refuses NUL in text (PostgreSQL cannot store it): so does the verifier, before
/// anything is written.
fn check_no_nul(what: &str, value: &str) -> std::result::Result<(), String> {
    match value.find('\0') {
        Some(at) => Err(format!("{what} has a NUL character at byte {at}")),
        None => Ok(()),
    }
}

fn check_content(what: &str, value: &str) -> std::result::Result<(), String> {
    check_no_nul(what, value)?;
    if value.len() > MAX_CONTENT_BYTES {
        return Err(format!("{what} is {} bytes, at most {MAX_CONTENT_BYTES}", value.len()));
    }
    Ok(())
}

fn check_metadata(what: &str, metadata: &Metadata) -> std::result::Result<(), String> {
    if metadata.keys().any(String::is_empty) {
        return Err(format!("{what} has an empty key"));
    }
    if metadata.iter().any(|(key, value)| key.contains('\0') || crate::engine::json_has_nul(value))
    {
        return Err(format!("{what} has a NUL character in a key or string"));
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

/// The checks of one record that need nothing but the record (and the header's dimension): run
/// on any thread, in any order.
fn check_fields(record: &Record, dimension: Option<u32>) -> std::result::Result<(), String> {
    match record {
        Record::Resource(r) => {
            if let Some(uri) = &r.uri {
                check_name("uri", uri)?;
            }
            check_content("content", &r.content)?;
            check_metadata("metadata", &r.metadata)?;
            check_embedding(r, dimension)?;
        }
        Record::Entity(e) => {
            check_name("name", &e.name)?;
            check_name("kind", &e.kind)?;
            check_metadata("properties", &e.properties)?;
        }
        Record::Edge(e) => {
            check_name("relation", &e.relation)?;
            if !e.weight.is_finite() {
                return Err(format!("weight {} is not finite", e.weight));
            }
            check_metadata("properties", &e.properties)?;
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
    Ok(())
}

/// The file-level checks of pass 1, made in line order: canonical order, counts, edge ends.
struct Verifier {
    header: Header,
    seen: Counts,
    rank: usize,
    last_id: Option<uuid::Uuid>,
    entities: HashSet<EntityId>,
}

impl Verifier {
    fn new(header: Header) -> Self {
        Self { header, seen: Counts::default(), rank: 0, last_id: None, entities: HashSet::new() }
    }

    /// Validates a record as the engine would, plus what only the whole file can tell; `fields`
    /// is the outcome of [`check_fields`] on it.
    fn record(
        &mut self,
        record: &Record,
        fields: std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
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
        fields?;
        match record {
            Record::Entity(e) => {
                self.entities.insert(e.id);
            }
            Record::Edge(e) => {
                for (end, entity) in [("from", e.from), ("to", e.to)] {
                    if !self.entities.contains(&entity) {
                        return Err(format!(
                            "edge {}: {end} entity {entity} is not in the file",
                            e.id
                        ));
                    }
                }
            }
            Record::Resource(_) | Record::Moment(_) => {}
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
    check_file(path, CHUNK, |_, _| Ok(()))
}

/// A record line parsed and its fields checked, or why it does not parse.
type Parsed = std::result::Result<(Record, std::result::Result<(), String>), serde_json::Error>;

fn parse_line(line: &[u8], dimension: Option<u32>) -> Parsed {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let record = parse_record(body)?;
    let fields = check_fields(&record, dimension);
    Ok((record, fields))
}

/// Parses whole lines, each ending in a newline.
fn parse_lines(lines: &[u8], dimension: Option<u32>) -> Vec<Parsed> {
    lines.split_inclusive(|b| *b == b'\n').map(|line| parse_line(line, dimension)).collect()
}

fn stopped(what: &'static str) -> Error {
    Error::Backend { provider: "import", source: format!("the {what} thread stopped").into() }
}

/// Pass 1 over the file at `path`: checks everything an import needs (see [`verify`]) and
/// hands each record to `accept` with its line number, in file order. Nothing `accept` was
/// given may be written anywhere before this returns `Ok`: only then is the file vouched for.
/// `chunk` is the bytes read at a time (lines longer than that are read whole).
fn check_file(
    path: &Path,
    chunk: usize,
    mut accept: impl FnMut(Record, u64) -> Result<()>,
) -> Result<Header> {
    let mut reader = open(path)?;
    let mut first = Vec::with_capacity(1 << 10);
    if !read_line(&mut reader, &mut first)? {
        return Err(at_line(1, "empty file"));
    }
    let header = parse_header(&first)?;
    let dimension = header.dimension;
    let workers = workers();
    let mut verifier = Verifier::new(header);
    // Three stages on threads of their own: a reader cuts the file into chunks of whole lines,
    // hashes them and deals them out to the parsers in turn; each parser parses and checks the
    // lines of its chunks; this thread takes the parsed chunks back in the same turn, so in
    // file order, and makes the file-level checks. Every channel holds one chunk, so a few
    // chunks are in memory at most.
    std::thread::scope(|scope| {
        let mut to_parsers = Vec::with_capacity(workers);
        let mut from_parsers = Vec::with_capacity(workers);
        let mut parsers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (to_parser, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
            let (to_checker, parsed) = std::sync::mpsc::sync_channel::<Vec<Parsed>>(1);
            parsers.push(scope.spawn(move || {
                for lines in chunks {
                    if to_checker.send(parse_lines(&lines, dimension)).is_err() {
                        break;
                    }
                }
            }));
            to_parsers.push(to_parser);
            from_parsers.push(parsed);
        }
        // `buffer` holds what is not dealt out yet: always the last complete line read (it is
        // the trailer if the file ends there) and whatever follows it.
        let reading = scope.spawn(move || -> Result<(Vec<u8>, Sha256)> {
            let mut hasher = Sha256::new();
            hasher.update(&first);
            let mut buffer = Vec::new();
            // Chunks dealt out so far: chunk n goes to parser n % workers.
            let mut dealt = 0usize;
            loop {
                let filled = buffer.len();
                buffer.resize(filled + chunk.max(1), 0);
                let read = read_full(&mut reader, &mut buffer[filled..]).map_err(read_error)?;
                buffer.truncate(filled + read);
                if read == 0 {
                    break;
                }
                let Some(last) = buffer.iter().rposition(|b| *b == b'\n') else { continue };
                let Some(cut) = buffer[..last].iter().rposition(|b| *b == b'\n') else {
                    continue;
                };
                let rest = buffer[cut + 1..].to_vec();
                buffer.truncate(cut + 1);
                let lines = std::mem::replace(&mut buffer, rest);
                hasher.update(&lines);
                to_parsers[dealt % workers].send(lines).map_err(|_| stopped("parsing"))?;
                dealt += 1;
            }
            Ok((buffer, hasher))
        });
        let mut number = 2u64;
        let mut check = |parsed: Vec<Parsed>| -> Result<()> {
            for parsed in parsed {
                let (record, fields) = parsed.map_err(|e| at_line(number, e))?;
                verifier.record(&record, fields).map_err(|reason| at_line(number, reason))?;
                accept(record, number)?;
                number += 1;
            }
            Ok(())
        };
        // A parser's channel closes after its last chunk, once the reader is done (or failed).
        for turn in 0.. {
            let Ok(parsed) = from_parsers[turn % workers].recv() else { break };
            check(parsed)?;
        }
        let (mut buffer, mut hasher) = reading.join().map_err(|_| stopped("reading"))??;
        for parser in parsers {
            parser.join().map_err(|_| stopped("parsing"))?;
        }
        if buffer.is_empty() {
            return Err(at_line(number, "truncated: no records and no trailer"));
        }
        // The last line is the trailer; any line before it is a record.
        let trailer_at =
            buffer[..buffer.len() - 1].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let trailer = buffer.split_off(trailer_at);
        hasher.update(&buffer);
        check(parse_lines(&buffer, dimension))?;
        let digest = hex(&hasher.finalize());
        let truncated = || at_line(number, "truncated: the last line is not a trailer");
        let body = trailer.strip_suffix(b"\n").ok_or_else(truncated)?;
        let trailer: Trailer = serde_json::from_slice(body).map_err(|_| truncated())?;
        let records = number - 2;
        if trailer.records != records {
            return Err(at_line(
                number,
                format!("trailer counts {} records, the file has {records}", trailer.records),
            ));
        }
        if trailer.sha256 != digest {
            return Err(at_line(
                number,
                format!(
                    "checksum mismatch: the file is damaged (sha256 {digest}, trailer says {})",
                    trailer.sha256
                ),
            ));
        }
        if verifier.seen != verifier.header.counts {
            return Err(at_line(
                number,
                format!(
                    "the header counts {:?} but the file holds {:?}",
                    verifier.header.counts, verifier.seen
                ),
            ));
        }
        Ok(())
    })?;
    Ok(verifier.header)
}

/// Imports the export file at `path` into `tenant` (the header's tenant when `None`), creating
/// the tenant with the header's dimension and metric if it does not exist.
///
/// The whole file is verified first (as [`verify`] does); nothing is written unless it passes.
/// What the verification parsed is kept in an unnamed spool file (next to `path`, or in the
/// system's temporary directory if that directory is not writable), and the records are
/// written from it with their ids and timestamps: resources in batches of up to [`BATCH`],
/// the others one by one. A record whose id exists is skipped when identical. `progress` is
/// called after every batch.
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
    let (header, spool) = tokio::task::spawn_blocking(move || -> Result<(Header, File)> {
        let mut spool = RecordSpool::create(&owned)?;
        let header = check_file(&owned, CHUNK, |record, number| spool.push(&record, number))?;
        Ok((header, spool.finish()?))
    })
    .await
    .map_err(join_error("import"))??;
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
    let mut spooled = SpoolReader { input: BufReader::with_capacity(1 << 20, spool) };
    while let Some((number, record)) = spooled.next()? {
        match record {
            Record::Resource(resource) => {
                writer.batch_bytes += resource_bytes(&resource);
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

/// Roughly the bytes a resource holds, to bound a batch.
fn resource_bytes(resource: &Resource) -> usize {
    resource.content.len()
        + resource.uri.as_ref().map_or(0, String::len)
        + resource.embedding.as_ref().map_or(0, |e| 4 * e.len())
        + 256
}

fn import_spool_error(e: std::io::Error) -> Error {
    Error::Backend { provider: "import spool file", source: Box::new(e) }
}

/// Pass 1's records, in file order, as pass 2 reads them back: a little-endian binary form
/// that holds exactly what was parsed (floats as their bits, metadata as a tree of values,
/// so nothing is rounded through text again). Resources, the bulk of a file, are written
/// field by field; the other kinds as their line's JSON, parsed again in pass 2 (it parses
/// exactly as it did in pass 1). Each entry: the line number (u64), a tag, the body.
struct RecordSpool {
    output: BufWriter<File>,
}

const SPOOL_RESOURCE: u8 = 0;
const SPOOL_JSON: u8 = 1;
/// Metadata nested deeper than this is refused when read back (serde_json parses at most 128).
const SPOOL_DEPTH: usize = 256;

impl RecordSpool {
    /// An unnamed file next to `input` (so it is on a disk that had room for the input, which
    /// is larger), or in the system's temporary directory.
    fn create(input: &Path) -> Result<Self> {
        let dir =
            input.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file = tempfile::tempfile_in(dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(import_spool_error)?;
        Ok(Self { output: BufWriter::with_capacity(1 << 20, file) })
    }

    fn push(&mut self, record: &Record, number: u64) -> Result<()> {
        let mut entry = Vec::with_capacity(256);
        entry.extend_from_slice(&number.to_le_bytes());
        match record {
            Record::Resource(r) => {
                entry.push(SPOOL_RESOURCE);
                entry.extend_from_slice(r.id.as_bytes());
                match &r.uri {
                    Some(uri) => {
                        entry.push(1);
                        put_bytes(&mut entry, uri.as_bytes());
                    }
                    None => entry.push(0),
                }
                put_bytes(&mut entry, r.content.as_bytes());
                put_map(&mut entry, &r.metadata);
                match &r.embedding {
                    Some(embedding) => {
                        entry.push(1);
                        entry.extend_from_slice(&(embedding.len() as u64).to_le_bytes());
                        for x in embedding {
                            entry.extend_from_slice(&x.to_le_bytes());
                        }
                    }
                    None => entry.push(0),
                }
                entry.extend_from_slice(&r.created_at.as_micros().to_le_bytes());
                entry.extend_from_slice(&r.updated_at.as_micros().to_le_bytes());
            }
            other => {
                entry.push(SPOOL_JSON);
                let json =
                    serde_json::to_vec(other).map_err(|e| Error::invalid("import record", e))?;
                put_bytes(&mut entry, &json);
            }
        }
        self.output.write_all(&entry).map_err(import_spool_error)
    }

    /// Flushes the spool and rewinds it for reading.
    fn finish(self) -> Result<File> {
        let mut file = self.output.into_inner().map_err(|e| import_spool_error(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(import_spool_error)?;
        Ok(file)
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_map(out: &mut Vec<u8>, map: &Metadata) {
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (key, value) in map {
        put_bytes(out, key.as_bytes());
        put_value(out, value);
    }
}

fn put_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.push(3);
                out.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                out.push(4);
                out.extend_from_slice(&i.to_le_bytes());
            } else {
                out.push(5);
                out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
            }
        }
        Value::String(text) => {
            out.push(6);
            put_bytes(out, text.as_bytes());
        }
        Value::Array(items) => {
            out.push(7);
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        Value::Object(map) => {
            out.push(8);
            put_map(out, map);
        }
    }
}

/// Reads back what a [`RecordSpool`] wrote.
struct SpoolReader {
    input: BufReader<File>,
}

fn spool_corrupt(reason: &str) -> Error {
    Error::corrupt("import spool file", reason)
}

impl SpoolReader {
    /// The next record and its line number, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Record)>> {
        let mut number = [0u8; 8];
        match self.input.read_exact(&mut number) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(import_spool_error(e)),
        }
        let number = u64::from_le_bytes(number);
        let record = match self.byte()? {
            SPOOL_RESOURCE => {
                let id = ResourceId::from_bytes(self.array()?);
                let uri = match self.byte()? {
                    0 => None,
                    _ => Some(self.string()?),
                };
                let content = self.string()?;
                let metadata = self.map(0)?;
                let embedding = match self.byte()? {
                    0 => None,
                    _ => {
                        let len = self.len()?;
                        let mut bytes = vec![
                            0u8;
                            len.checked_mul(4)
                                .ok_or_else(|| spool_corrupt("embedding length"))?
                        ];
                        self.input.read_exact(&mut bytes).map_err(import_spool_error)?;
                        Some(
                            bytes
                                .chunks_exact(4)
                                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                                .collect(),
                        )
                    }
                };
                let created_at = Timestamp::from_micros(i64::from_le_bytes(self.array()?));
                let updated_at = Timestamp::from_micros(i64::from_le_bytes(self.array()?));
                Record::Resource(Resource {
                    id,
                    uri,
                    content,
                    metadata,
                    embedding,
                    created_at,
                    updated_at,
                })
            }
            SPOOL_JSON => {
                let json = self.bytes()?;
                parse_record(&json).map_err(|e| spool_corrupt(&e.to_string()))?
            }
            _ => return Err(spool_corrupt("unknown entry")),
        };
        Ok(Some((number, record)))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut bytes = [0u8; N];
        self.input.read_exact(&mut bytes).map_err(import_spool_error)?;
        Ok(bytes)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A length, refused when larger than anything pass 1 could have written (a line is held
    /// in memory whole, so no field is near this).
    fn len(&mut self) -> Result<usize> {
        let len = u64::from_le_bytes(self.array()?);
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= 1 << 40)
            .ok_or_else(|| spool_corrupt("length"))
    }

    fn bytes(&mut self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.len()?];
        self.input.read_exact(&mut bytes).map_err(import_spool_error)?;
        Ok(bytes)
    }

    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| spool_corrupt("text is not UTF-8"))
    }

    fn map(&mut self, depth: usize) -> Result<Metadata> {
        let len = self.len()?;
        let mut map = Metadata::new();
        for _ in 0..len {
            let key = self.string()?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(map)
    }

    fn value(&mut self, depth: usize) -> Result<serde_json::Value> {
        use serde_json::Value;
        if depth > SPOOL_DEPTH {
            return Err(spool_corrupt("metadata nested too deep"));
        }
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::from(u64::from_le_bytes(self.array()?)),
            4 => Value::from(i64::from_le_bytes(self.array()?)),
            5 => serde_json::Number::from_f64(f64::from_le_bytes(self.array()?))
                .map(Value::Number)
                .ok_or_else(|| spool_corrupt("a number is not finite"))?,
            6 => Value::String(self.string()?),
            7 => {
                let len = self.len()?;
                let mut items = Vec::new();
                for _ in 0..len {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            8 => Value::Object(self.map(depth)?),
            _ => return Err(spool_corrupt("unknown value")),
        })
    }
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

    /// A small export built by hand: resources (one with nested metadata of every JSON type
    /// and one without an embedding), two entities, an edge between them and a moment.
    fn sample() -> (Vec<u8>, Vec<Record>) {
        use crate::model::{Edge, EdgeId, Entity, Moment, MomentId};
        let at = Timestamp::from_micros(1_700_000_000_000_000);
        let metadata: Metadata = serde_json::from_str(
            r#"{"a":[1,-2,2.5,1e300,0.30000000000000004,"x",null,true,false],"b":{"c":{}},"u":18446744073709551615}"#,
        )
        .expect("metadata");
        let mut records = Vec::new();
        for i in 0..3u8 {
            records.push(Record::Resource(Resource {
                id: ResourceId::from_bytes([i + 1; 16]),
                uri: (i == 1).then(|| "file:///a".to_owned()),
                content: format!("resource {i}: \"quoted\" \\ \n and more"),
                metadata: if i == 0 { metadata.clone() } else { Metadata::new() },
                embedding: (i != 2).then(|| vec![0.1, -0.2 * f32::from(i), 3.4e-7]),
                created_at: at,
                updated_at: at,
            }));
        }
        let entities = [EntityId::from_bytes([7; 16]), EntityId::from_bytes([8; 16])];
        for (n, id) in entities.iter().enumerate() {
            records.push(Record::Entity(Entity {
                id: *id,
                name: format!("Entity {n}"),
                kind: "person".into(),
                properties: Metadata::new(),
                created_at: at,
                updated_at: at,
            }));
        }
        records.push(Record::Edge(Edge {
            id: EdgeId::from_bytes([9; 16]),
            from: entities[0],
            to: entities[1],
            relation: "knows".into(),
            weight: 0.5,
            properties: Metadata::new(),
            created_at: at,
        }));
        records.push(Record::Moment(Moment {
            id: MomentId::from_bytes([10; 16]),
            start: at,
            end: at,
            kind: "meeting".into(),
            content: "met".into(),
            entities: entities.iter().copied().collect(),
            metadata: Metadata::new(),
        }));
        let header = Header {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            tenant: TenantId::new("acme").expect("tenant"),
            dimension: Some(3),
            metric: Metric::default(),
            counts: Counts { resources: 3, entities: 2, edges: 1, moments: 1 },
        };
        let mut bytes = serde_json::to_vec(&header).expect("header");
        bytes.push(b'\n');
        for record in &records {
            serde_json::to_writer(&mut bytes, record).expect("record");
            bytes.push(b'\n');
        }
        let trailer =
            Trailer { records: records.len() as u64, sha256: hex(&Sha256::digest(&bytes)) };
        serde_json::to_writer(&mut bytes, &trailer).expect("trailer");
        bytes.push(b'\n');
        (bytes, records)
    }

    /// What [`check_file`] says about `bytes` read `chunk` bytes at a time: the records it
    /// accepted, with their lines, or its error.
    fn check_bytes(bytes: &[u8], chunk: usize) -> std::result::Result<Vec<(u64, Record)>, String> {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("write");
        let mut accepted = Vec::new();
        check_file(file.path(), chunk, |record, number| {
            accepted.push((number, record));
            Ok(())
        })
        .map(|_| accepted)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn verification_does_not_depend_on_where_chunks_end() {
        let (bytes, records) = sample();
        let expected: Vec<(u64, Record)> = (2..).zip(records).collect();
        let lines: Vec<usize> =
            bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1).collect();
        let damaged = {
            let mut damaged = bytes.clone();
            damaged[lines[2] + 30] ^= 1;
            damaged
        };
        let mut broken_record = bytes[..lines[3]].to_vec();
        broken_record.extend_from_slice(b"{\"type\":\"entity\"}\n");
        broken_record.extend_from_slice(&bytes[lines[3]..]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("whole", bytes.clone()),
            ("cut mid-record", bytes[..lines[4] + 17].to_vec()),
            ("no trailer", bytes[..lines[lines.len() - 2]].to_vec()),
            ("no final newline", bytes[..bytes.len() - 1].to_vec()),
            ("header only", bytes[..lines[0]].to_vec()),
            ("damaged", damaged),
            ("a bad record", broken_record),
        ];
        for (name, case) in &cases {
            let reference = check_bytes(case, CHUNK);
            if *name == "whole" {
                assert_eq!(reference.as_ref().expect("whole file"), &expected);
            } else {
                assert!(reference.is_err(), "{name} passed");
            }
            for chunk in (1..=lines[2] + 3).step_by(7).chain([0, bytes.len(), bytes.len() + 1]) {
                assert_eq!(check_bytes(case, chunk), reference, "{name}, chunks of {chunk}");
            }
        }
    }

    #[test]
    fn the_import_spool_gives_back_exactly_what_was_parsed() {
        let (_, records) = sample();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut spool = RecordSpool::create(&dir.path().join("input.jsonl")).expect("spool");
        for (number, record) in (2..).zip(&records) {
            spool.push(record, number).expect("push");
        }
        let mut reader = SpoolReader { input: BufReader::new(spool.finish().expect("finish")) };
        let mut back = Vec::new();
        while let Some(entry) = reader.next().expect("read") {
            back.push(entry);
        }
        let expected: Vec<(u64, Record)> = (2..).zip(records).collect();
        assert_eq!(back, expected);
        // Bit for bit, floats included: equal records serialise to the same bytes.
        for ((_, a), (_, b)) in back.iter().zip(&expected) {
            assert_eq!(serde_json::to_string(a).expect("a"), serde_json::to_string(b).expect("b"));
        }
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
