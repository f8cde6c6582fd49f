//! Pass 1 of import: the whole file read, parsed and checked (header, every record, order,
//! references, counts, checksum) before anything is written. Owns no storage access.

#[allow(unused_imports)]
use super::*;

pub(super) fn at_line(line: u64, reason: impl std::fmt::Display) -> Error {
    Error::invalid("import file", format!("line {line}: {reason}"))
}

/// Parses one record line (without its newline). Canonical lines start with their tag, which
/// lets the record struct be read directly instead of through serde's buffered tagged-enum
/// path (most of the import time is float parsing; buffering doubled it).
pub(super) fn parse_record(body: &[u8]) -> std::result::Result<Record, serde_json::Error> {
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

/// The checks of one record that need nothing but the record and the header's dimension,
/// the engine's own under its default limits: run on any thread, in any order. (The engine
/// that imports checks every record again under its own limits before it writes.)
pub(super) fn check_fields(
    record: &Record,
    dimension: Option<u32>,
) -> std::result::Result<(), String> {
    crate::engine::check_record(record, &crate::engine::Limits::default())
        .map_err(|e| e.to_string())?;
    let Record::Resource(resource) = record else { return Ok(()) };
    let Some(embedding) = &resource.embedding else { return Ok(()) };
    match dimension {
        None => Err("has an embedding but the header's dimension is null".into()),
        Some(d) if d as usize != embedding.len() => {
            Err(format!("embedding has dimension {} but the header's is {d}", embedding.len()))
        }
        Some(_) => Ok(()),
    }
}

/// The file-level checks of pass 1, made in line order: canonical order, counts, edge ends.
pub(super) struct Verifier {
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
        let kind = record.kind();
        let id = record.id();
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
pub(super) fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    Ok(reader.read_until(b'\n', buf).map_err(read_error)? > 0)
}

pub(super) fn open(path: &Path) -> Result<BufReader<File>> {
    let file = File::open(path)
        .map_err(|e| Error::invalid("import file", format!("{}: {e}", path.display())))?;
    Ok(BufReader::with_capacity(1 << 20, file))
}

pub(super) fn parse_header(line: &[u8]) -> Result<Header> {
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
    check_file(path, CHUNK, MAX_LINE_BYTES, |_, _| Ok(()))
}

/// A record line parsed and its fields checked, or why it does not parse.
pub(super) type Parsed =
    std::result::Result<(Record, std::result::Result<(), String>), serde_json::Error>;

pub(super) fn parse_line(line: &[u8], dimension: Option<u32>) -> Parsed {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let record = parse_record(body)?;
    let fields = check_fields(&record, dimension);
    Ok((record, fields))
}

/// Parses whole lines, each ending in a newline.
pub(super) fn parse_lines(lines: &[u8], dimension: Option<u32>) -> Vec<Parsed> {
    lines.split_inclusive(|b| *b == b'\n').map(|line| parse_line(line, dimension)).collect()
}

pub(super) fn stopped(what: &'static str) -> Error {
    Error::Backend { provider: "import", source: format!("the {what} thread stopped").into() }
}

/// Pass 1 over the file at `path`: checks everything an import needs (see [`verify`]) and
/// hands each record to `accept` with its line number, in file order. Nothing `accept` was
/// given may be written anywhere before this returns `Ok`: only then is the file vouched for.
/// `chunk` is the bytes read at a time (lines longer than that are read whole, up to
/// `max_line` bytes).
pub(super) fn check_file(
    path: &Path,
    chunk: usize,
    max_line: usize,
    mut accept: impl FnMut(Record, u64) -> Result<()>,
) -> Result<Header> {
    let mut reader = open(path)?;
    let mut first = Vec::with_capacity(1 << 10);
    let header_bytes = (MAX_HEADER_BYTES + 1) as u64;
    if !read_line(&mut std::io::Read::take(&mut reader, header_bytes), &mut first)? {
        return Err(at_line(1, "empty file"));
    }
    if first.len() > MAX_HEADER_BYTES {
        return Err(at_line(1, format!("the header is longer than {MAX_HEADER_BYTES} bytes")));
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
                let last = buffer.iter().rposition(|b| *b == b'\n');
                let unfinished = last.map_or(buffer.len(), |last| buffer.len() - last - 1);
                if unfinished > max_line {
                    return Err(Error::invalid(
                        "import file",
                        format!("a line is longer than {max_line} bytes"),
                    ));
                }
                let Some(last) = last else { continue };
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
