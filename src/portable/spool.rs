//! The binary spool of import: what pass 1 parsed, written once and read back by pass 2, so
//! what is written is exactly what was verified. Owns its own byte layout only.

#[allow(unused_imports)]
use super::*;

/// Pass 1's records, in file order, as pass 2 reads them back: a little-endian binary form
/// that holds exactly what was parsed (floats as their bits, metadata as a tree of values,
/// so nothing is rounded through text again). Resources, the bulk of a file, are written
/// field by field; the other kinds as their line's JSON, parsed again in pass 2 (it parses
/// exactly as it did in pass 1). Each entry: the line number (u64), a tag, the body.
pub(super) struct RecordSpool {
    output: BufWriter<File>,
}

pub(super) const SPOOL_RESOURCE: u8 = 0;
pub(super) const SPOOL_JSON: u8 = 1;
/// Metadata nested deeper than this is refused when read back (serde_json parses at most 128).
pub(super) const SPOOL_DEPTH: usize = 256;

impl RecordSpool {
    /// An unnamed file next to `input` (so it is on a disk that had room for the input, which
    /// is larger), or in the system's temporary directory.
    pub(super) fn create(input: &Path) -> Result<Self> {
        let dir =
            input.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let file = tempfile::tempfile_in(dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(import_spool_error)?;
        Ok(Self { output: BufWriter::with_capacity(1 << 20, file) })
    }

    pub(super) fn push(&mut self, record: &Record, number: u64) -> Result<()> {
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
    pub(super) fn finish(self) -> Result<File> {
        let mut file = self.output.into_inner().map_err(|e| import_spool_error(e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(import_spool_error)?;
        Ok(file)
    }
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

pub(super) fn put_map(out: &mut Vec<u8>, map: &Metadata) {
    out.extend_from_slice(&(map.len() as u64).to_le_bytes());
    for (key, value) in map {
        put_bytes(out, key.as_bytes());
        put_value(out, value);
    }
}

pub(super) fn put_value(out: &mut Vec<u8>, value: &serde_json::Value) {
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
pub(super) struct SpoolReader {
    pub(super) input: BufReader<File>,
}

pub(super) fn spool_corrupt(reason: &str) -> Error {
    Error::corrupt("import spool file", reason)
}

impl SpoolReader {
    /// The next record and its line number, or `None` at the end.
    pub(super) fn next(&mut self) -> Result<Option<(u64, Record)>> {
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

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut bytes = [0u8; N];
        self.input.read_exact(&mut bytes).map_err(import_spool_error)?;
        Ok(bytes)
    }

    pub(super) fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// A length, refused when larger than anything pass 1 could have written (a line is held
    /// in memory whole, so no field is near this).
    pub(super) fn len(&mut self) -> Result<usize> {
        let len = u64::from_le_bytes(self.array()?);
        usize::try_from(len)
            .ok()
            .filter(|len| *len <= 1 << 40)
            .ok_or_else(|| spool_corrupt("length"))
    }

    pub(super) fn bytes(&mut self) -> Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.len()?];
        self.input.read_exact(&mut bytes).map_err(import_spool_error)?;
        Ok(bytes)
    }

    pub(super) fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| spool_corrupt("text is not UTF-8"))
    }

    pub(super) fn map(&mut self, depth: usize) -> Result<Metadata> {
        let len = self.len()?;
        let mut map = Metadata::new();
        for _ in 0..len {
            let key = self.string()?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
        }
        Ok(map)
    }

    pub(super) fn value(&mut self, depth: usize) -> Result<serde_json::Value> {
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
