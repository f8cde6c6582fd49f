//! Pass 2 of import: writing what pass 1 verified, from the spool, idempotently by id. Owns
//! the batching of writes; the checks themselves are in `verify` and the engine.

#[allow(unused_imports)]
use super::*;

/// Imports the export file at `path` into `tenant` (the header's tenant when `None`), creating
/// the tenant with the header's dimension and metric if it does not exist.
///
/// The whole file is verified first (as [`verify`] does); nothing is written unless it passes.
/// What the verification parsed is kept in an unnamed spool file (next to `path`, or in the
/// system's temporary directory if that directory is not writable), and the records are
/// written from it with their ids and timestamps, in file order, in batches of up to [`BATCH`]
/// records of one kind (fewer when they hold over [`BATCH_BYTES`]), each one atomic write. A
/// batch that meets an existing id is written again one record at a time, and a record whose
/// id exists is skipped when identical. `progress` is called after every batch.
///
/// # Errors
/// [`Error::Invalid`] naming the line for a bad file (nothing is written), or if an existing
/// tenant's dimension or metric differs from the header's; [`Error::AlreadyExists`] naming the
/// line if a record's id exists with different content (records before it are kept; the rest
/// is not written); [`Error::NotFound`] for an edge whose endpoint is in neither the file nor
/// the tenant (the batches before its own are kept); [`Error::Backend`] on storage failure.
pub async fn import<P: Provider>(
    engine: &MemoryEngine<P>,
    path: &Path,
    tenant: Option<&TenantId>,
    mut progress: impl FnMut(Progress),
) -> Result<ImportSummary> {
    let owned: PathBuf = path.to_owned();
    let (header, spool) = tokio::task::spawn_blocking(move || -> Result<(Header, File)> {
        let mut spool = RecordSpool::create(&owned)?;
        let header = check_file(&owned, CHUNK, MAX_LINE_BYTES, |record, number| {
            spool.push(&record, number)
        })?;
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
        // A batch holds one kind: a record of another kind sends it first.
        if writer.batch.first().is_some_and(|first| first.kind() != record.kind()) {
            writer.send().await?;
            progress(Progress { done: writer.done(), total });
        }
        writer.batch_bytes += record_bytes(&record);
        writer.batch.push(record);
        writer.batch_lines.push(number);
        if writer.batch.len() >= BATCH || writer.batch_bytes >= BATCH_BYTES {
            writer.send().await?;
            progress(Progress { done: writer.done(), total });
        }
    }
    writer.send().await?;
    writer.settle().await?;
    // A bulk load's last step: what the provider holds outside its vector index goes in now
    // (on PostgreSQL, one index build for a large import), so searches are fast on return.
    let handle = &writer.handle;
    handle.provider().flush_vector_index(handle.provider_tenant()).await?;
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
pub(super) fn resource_bytes(resource: &Resource) -> usize {
    resource.content.len()
        + resource.uri.as_ref().map_or(0, String::len)
        + resource.embedding.as_ref().map_or(0, |e| 4 * e.len())
        + 256
}

/// Roughly the bytes a record holds, to bound a batch.
pub(super) fn record_bytes(record: &Record) -> usize {
    match record {
        Record::Resource(resource) => resource_bytes(resource),
        Record::Entity(entity) => {
            entity.name.len() + entity.kind.len() + map_bytes(&entity.properties) + 256
        }
        Record::Edge(edge) => edge.relation.len() + map_bytes(&edge.properties) + 256,
        Record::Moment(moment) => {
            moment.kind.len()
                + moment.content.len()
                + 16 * moment.entities.len()
                + map_bytes(&moment.metadata)
                + 256
        }
    }
}

/// Roughly the bytes a metadata map holds: its keys and strings, and a word per value.
fn map_bytes(map: &Metadata) -> usize {
    fn value_bytes(value: &serde_json::Value) -> usize {
        16 + match value {
            serde_json::Value::String(text) => text.len(),
            serde_json::Value::Array(items) => items.iter().map(value_bytes).sum(),
            serde_json::Value::Object(map) => map_bytes(map),
            _ => 0,
        }
    }
    map.iter().map(|(key, value)| key.len() + value_bytes(value)).sum()
}

pub(super) fn import_spool_error(e: std::io::Error) -> Error {
    Error::io("import spool file", e)
}

pub(super) fn check_compatible(
    target: &TenantId,
    config: &TenantConfig,
    header: &Header,
) -> Result<()> {
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
pub(super) type BatchOutcome = (Vec<Record>, Vec<u64>, Result<()>);

/// Writes `batch` (records of one kind) with one batch call of its kind; gives it back.
async fn insert_batch<P: Provider>(
    handle: &TenantHandle<P>,
    batch: Vec<Record>,
) -> (Vec<Record>, Result<()>) {
    // Each record is moved out of its `Record` and back, not copied.
    macro_rules! batch_of {
        ($variant:ident, $insert:ident) => {{
            let records: Vec<_> = batch
                .into_iter()
                .filter_map(|record| match record {
                    Record::$variant(record) => Some(record),
                    _ => None,
                })
                .collect();
            let outcome = handle.$insert(&records).await;
            (records.into_iter().map(Record::$variant).collect(), outcome)
        }};
    }
    match batch.first().map(Record::kind) {
        None => (batch, Ok(())),
        Some(RecordKind::Resource) => batch_of!(Resource, insert_resources),
        Some(RecordKind::Entity) => batch_of!(Entity, insert_entities),
        Some(RecordKind::Edge) => batch_of!(Edge, insert_edges),
        Some(RecordKind::Moment) => batch_of!(Moment, insert_moments),
    }
}

pub(super) struct ImportWriter<P: Provider> {
    handle: TenantHandle<P>,
    inserted: Counts,
    skipped: Counts,
    /// Records of one kind, in file order, not yet sent.
    batch: Vec<Record>,
    batch_lines: Vec<u64>,
    batch_bytes: usize,
    /// The batch being written while the next one is parsed; at most one, so batches land in
    /// file order (every entity an edge batch joins has landed before it is sent) and a
    /// failure stops the import one batch after it.
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
                if let Some(first) = batch.first() {
                    *self.inserted.slot(first.kind()) += batch.len() as u64;
                }
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
                for (record, number) in batch.into_iter().zip(lines) {
                    self.one(record, number).await?;
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Starts writing the gathered records (after the previous batch has landed) and
    /// returns, so parsing goes on while they are written.
    async fn send(&mut self) -> Result<()> {
        self.settle().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let lines = std::mem::replace(&mut self.batch_lines, Vec::with_capacity(BATCH));
        self.batch_bytes = 0;
        let handle = self.handle.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let (batch, outcome) = insert_batch(&handle, batch).await;
            (batch, lines, outcome)
        }));
        Ok(())
    }

    /// Inserts one record; an identical existing record is skipped.
    async fn one(&mut self, record: Record, number: u64) -> Result<()> {
        let kind = record.kind();
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
                    record.id()
                ),
            });
        }
        *self.skipped.slot(kind) += 1;
        Ok(())
    }
}
