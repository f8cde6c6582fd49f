//! The one validation of input: every rule a record, query or batch must meet before it
//! reaches a provider, used by the engine and by import. Owns no storage access.

#[allow(unused_imports)]
use super::*;

pub(crate) fn at_index(error: Error, index: usize) -> Error {
    match error {
        Error::Invalid { what, reason } => {
            Error::Invalid { what, reason: format!("{reason} (at index {index})") }
        }
        other => other,
    }
}

pub(crate) fn check_batch_len(len: usize) -> Result<()> {
    if len == 0 || len > MAX_BATCH {
        return Err(Error::invalid("batch", format!("{len} records (must be 1..={MAX_BATCH})")));
    }
    Ok(())
}

pub(crate) fn check_dimension(dimension: usize) -> Result<()> {
    if dimension == 0 || dimension > MAX_DIMENSION {
        return Err(Error::invalid(
            "dimension",
            format!("{dimension} (must be 1..={MAX_DIMENSION})"),
        ));
    }
    Ok(())
}

pub(crate) fn check_vector(what: &'static str, vector: &[f32]) -> Result<()> {
    check_dimension(vector.len()).map_err(|e| match e {
        Error::Invalid { reason, .. } => {
            Error::Invalid { what, reason: format!("dimension {reason}") }
        }
        other => other,
    })?;
    if all_finite(vector) {
        return Ok(());
    }
    let position = vector.iter().position(|x| !x.is_finite()).unwrap_or_default();
    Err(Error::invalid(what, format!("value at {position} is {}", vector[position])))
}

/// Whether every value is finite, in a form the compiler vectorises (an early-exit search is
/// scalar, and was a fifth of validating a batch of 1000 x 384-d embeddings): a value is NaN or
/// infinite exactly when its bits, less the sign, are at least those of infinity.
pub(crate) fn all_finite(vector: &[f32]) -> bool {
    const INFINITY: u32 = 0x7f80_0000;
    vector.chunks(64).all(|chunk| {
        chunk.iter().fold(0, |max: u32, x| max.max(x.to_bits() & !(1 << 31))) < INFINITY
    })
}

/// Text everywhere must be free of NUL: PostgreSQL cannot store it in `text` or `jsonb`, and a
/// record one provider accepts must move to every other one.
pub(crate) fn check_no_nul(what: &'static str, value: &str) -> Result<()> {
    match value.find('\0') {
        Some(at) => Err(Error::invalid(what, format!("a NUL character at byte {at}"))),
        None => Ok(()),
    }
}

/// Whether any key or string in `value` contains NUL.
pub(crate) fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(text) => text.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => {
            map.iter().any(|(key, value)| key.contains('\0') || json_has_nul(value))
        }
        _ => false,
    }
}

/// [`check_name`] on each of `values`: an optional name, or a list of them.
pub(crate) fn check_names<'a>(
    what: &'static str,
    values: impl IntoIterator<Item = &'a str>,
) -> Result<()> {
    values.into_iter().try_for_each(|value| check_name(what, value))
}

pub(crate) fn check_name(what: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(what, "empty"));
    }
    check_no_nul(what, value)?;
    if value.len() > MAX_NAME_BYTES {
        return Err(Error::invalid(
            what,
            format!("{} bytes, at most {MAX_NAME_BYTES}", value.len()),
        ));
    }
    Ok(())
}

pub(crate) fn check_content(what: &'static str, value: &str) -> Result<()> {
    check_no_nul(what, value)?;
    if value.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(
            what,
            format!("{} bytes, at most {MAX_CONTENT_BYTES}", value.len()),
        ));
    }
    Ok(())
}

/// Whether `metadata` as JSON text is at most `max` bytes, found without holding the text:
/// the count stops at the first byte over.
fn json_fits(metadata: &Metadata, max: usize) -> bool {
    struct Count(usize, usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            if self.0 > self.1 {
                Err(std::io::Error::other("over the limit"))
            } else {
                Ok(bytes.len())
            }
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Count(0, max), metadata).is_ok()
}

pub(crate) fn check_metadata(
    what: &'static str,
    metadata: &Metadata,
    limits: &Limits,
) -> Result<()> {
    if !json_fits(metadata, limits.max_metadata_bytes) {
        return Err(Error::invalid(
            what,
            format!(
                "over {} bytes as JSON (the engine's `Limits::max_metadata_bytes`)",
                limits.max_metadata_bytes
            ),
        ));
    }
    // Keys become filter paths; an empty key could never be addressed.
    if metadata.keys().any(String::is_empty) {
        return Err(Error::invalid(what, "empty key"));
    }
    if metadata.iter().any(|(key, value)| key.contains('\0') || json_has_nul(value)) {
        return Err(Error::invalid(what, "a NUL character in a key or string"));
    }
    Ok(())
}

pub(crate) fn check_resource_fields(resource: &Resource, limits: &Limits) -> Result<()> {
    if let Some(uri) = &resource.uri {
        check_name("uri", uri)?;
    }
    check_content("content", &resource.content)?;
    check_metadata("metadata", &resource.metadata, limits)
}

pub(crate) fn check_entity(entity: &Entity, limits: &Limits) -> Result<()> {
    check_name("name", &entity.name)?;
    check_name("kind", &entity.kind)?;
    check_metadata("properties", &entity.properties, limits)
}

pub(crate) fn check_edge(edge: &Edge, limits: &Limits) -> Result<()> {
    check_name("relation", &edge.relation)?;
    if !edge.weight.is_finite() {
        return Err(Error::invalid("weight", format!("{} is not finite", edge.weight)));
    }
    check_metadata("properties", &edge.properties, limits)
}

pub(crate) fn check_moment(moment: &Moment, limits: &Limits) -> Result<()> {
    if moment.end < moment.start {
        return Err(Error::invalid(
            "moment",
            format!("ends ({}) before it starts ({})", moment.end, moment.start),
        ));
    }
    check_name("kind", &moment.kind)?;
    check_content("content", &moment.content)?;
    check_metadata("metadata", &moment.metadata, limits)
}

/// Every rule a stored record must meet that needs nothing but the record: the checks the
/// engine makes before a write, and import makes on every line of a file. (The tenant's
/// dimension is checked by the caller, which knows it.)
pub(crate) fn check_record(record: &Record, limits: &Limits) -> Result<()> {
    match record {
        Record::Resource(resource) => {
            check_resource_fields(resource, limits)?;
            match &resource.embedding {
                Some(embedding) => check_vector("embedding", embedding),
                None => Ok(()),
            }
        }
        Record::Entity(entity) => check_entity(entity, limits),
        Record::Edge(edge) => check_edge(edge, limits),
        Record::Moment(moment) => check_moment(moment, limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_agrees_with_is_finite_at_every_position() {
        let specials = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            -0.0,
            1e-45,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffff_ffff),
        ];
        for len in [1, 63, 64, 65, 384] {
            for position in [0, len / 2, len - 1] {
                for special in specials {
                    let mut vector = vec![0.5f32; len];
                    vector[position] = special;
                    assert_eq!(all_finite(&vector), special.is_finite(), "{special} at {position}");
                    let error = check_vector("embedding", &vector);
                    assert_eq!(error.is_ok(), special.is_finite());
                }
            }
        }
    }
}
