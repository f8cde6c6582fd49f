//! Export: a tenant streamed page by page into a spool, then written behind its header with
//! the trailer's checksum. Owns the writing side of the format only.

#[allow(unused_imports)]
use super::*;

/// Scans one page in a task of its own, so the next page is read while this one is written.
pub(super) fn scan_ahead<P: Provider>(
    tenant: &TenantHandle<P>,
    kind: RecordKind,
    after: Option<uuid::Uuid>,
) -> tokio::task::JoinHandle<Result<Vec<Record>>> {
    let tenant = tenant.clone();
    tokio::spawn(async move { tenant.scan(kind, after, PAGE).await })
}

pub(super) fn join_error(provider: &'static str) -> impl Fn(tokio::task::JoinError) -> Error {
    move |e| Error::Backend { provider, source: Box::new(e) }
}

/// A page of records as export lines.
pub(super) struct EncodedPage {
    lines: Vec<u8>,
    counts: Counts,
}

pub(super) fn encode_page(page: &[Record]) -> Result<EncodedPage> {
    let mut lines = Vec::new();
    let mut counts = Counts::default();
    for record in page {
        serde_json::to_writer(&mut lines, record)
            .map_err(|e| Error::invalid("export record", e))?;
        lines.push(b'\n');
        *counts.slot(record.kind()) += 1;
    }
    Ok(EncodedPage { lines, counts })
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(super) fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
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
                next = Some(scan_ahead(tenant, kind, Some(last.id())));
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
pub(super) async fn spool_page(
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
