//! Encoding (and sealing) a batch of new resources into RocksDB values, on every core for big
//! batches, and writing it. Owns the batch path only; single writes go through `store`.

#[allow(unused_imports)]
use super::*;
use crate::rocks::text;

impl TenantDb {
    /// Writes resources with engine-generated ids in one atomic batch, without a transaction:
    /// a fresh UUIDv7 cannot collide with a stored key, so there is nothing to check, and
    /// transactions that touch the same keys still see this write when they validate.
    pub(crate) fn write_fresh_resources(&self, resources: &[Resource]) -> Result<()> {
        let db = self.db.writer("write records")?;
        let records = self.cf(cf::CF_RESOURCES)?;
        let embeddings_cf = self.cf(cf::CF_EMBEDDINGS)?;
        let index = self.vector_index();
        // A big batch prepares its embeddings for the index while RocksDB writes it (below);
        // a small one while it encodes them, as a transaction does.
        let overlap = index.is_some()
            && crate::host::cores() >= 2
            && resources.len() >= PARALLEL_VALUES
            && resources.iter().any(|resource| resource.embedding.is_some());
        let Encoded { values, records: stored, embeddings } =
            self.resource_values(resources, if overlap { None } else { index.map(Arc::as_ref) })?;
        // Sized up front: growing a 1.6 MB batch by doubling copied it about twice over and
        // faulted in every intermediate buffer (~1 ms of a 1000 x 384-d batch).
        let embedding_bytes: usize =
            values.iter().map(|value| value.embedding.as_ref().map_or(0, Range::len)).sum();
        let bytes = stored.bytes() + embedding_bytes + 64 * resources.len();
        let mut batch = rocksdb::WriteBatchWithTransaction::<true>::with_capacity_bytes(bytes + 64);
        let text_cf = self.cf(cf::CF_TEXT)?;
        let mut changes = Vec::with_capacity(resources.len());
        for ((resource, record), value) in resources.iter().zip(stored.iter()).zip(values) {
            let key = resource.id.as_bytes();
            batch.put_cf(records, key, record);
            if let Some(range) = value.embedding {
                batch.put_cf(embeddings_cf, key, &embeddings[range]);
            }
            changes.extend(value.change);
        }
        for (key, value) in
            text::pending_entries(text::RESOURCE, resources.iter().map(|r| r.id.as_bytes()))
        {
            batch.put_cf(text_cf, key, value);
        }
        drop(embeddings);
        let write = || db.write_opt(batch, &self.write_options).map_err(map_rocks_error);
        match index {
            Some(index) if overlap => {
                // The RocksDB write runs on one core; the index's copies of the embeddings
                // (hashed, normalised, their metadata's fields), needed only once it has
                // committed, are made meanwhile on the others, under the commit lock so the
                // index still sees commits in order.
                use rayon::prelude::*;
                let _order = index.commit_lock.lock();
                let _encoding = index.encoding();
                let prepare = || -> Vec<VectorChange> {
                    resources
                        .par_iter()
                        .with_min_len(64)
                        .filter_map(|resource| {
                            let vector = resource.embedding.as_deref()?;
                            Some(index.prepare(resource.id, vector, &resource.metadata))
                        })
                        .collect()
                };
                let (written, changes) = rayon::join(write, prepare);
                written?;
                index.apply(changes);
                Ok(())
            }
            _ => self.commit_with_vectors(changes, write),
        }
    }

    /// The stored values of `resources`, encoded and sealed (when the tenant is encrypted),
    /// and, when `index` is given, each embedding's change prepared for it. Big batches are
    /// done on every idle core: the background indexer runs at a lower priority and gives
    /// the other cores up to them.
    ///
    /// The stored embeddings are written into one buffer, the tenant's scratch when no other
    /// batch holds it: a 1000 x 384-d batch allocated 1.5 MB in 1000 pieces, and about 220
    /// of its pages were fresh ones the kernel had to fault in and zero, every batch.
    ///
    /// # Errors
    /// Only for a value over AES-GCM's message limit, which an embedding cannot reach.
    pub(crate) fn resource_values(
        &self,
        resources: &[Resource],
        index: Option<&VectorIndex>,
    ) -> Result<Encoded<'_>> {
        let overhead = if self.crypto.is_some() { crypto::SEAL_OVERHEAD } else { 0 };
        let mut end = 0;
        let ranges: Vec<Option<Range<usize>>> = resources
            .iter()
            .map(|resource| {
                let vector = resource.embedding.as_deref()?;
                let start = end;
                end += codec::embedding_len(vector) + overhead;
                Some(start..end)
            })
            .collect();
        let mut embeddings = Scratch::take(&self.scratch, end);
        let mut rest = &mut embeddings[..end];
        let mut slots: Vec<Option<(&mut [u8], Range<usize>)>> = ranges
            .into_iter()
            .map(|range| {
                let range = range?;
                let (slot, tail) = std::mem::take(&mut rest).split_at_mut(range.len());
                rest = tail;
                Some((slot, range))
            })
            .collect();
        // Each embedding's slot holds it, sealed or not; a sealed one may start a few bytes
        // in (its header is shorter than the room kept for it). With it, the embedding's
        // change prepared for the index, if one was given.
        type Slot<'a> = Option<(&'a mut [u8], Range<usize>)>;
        type Embedded = (Option<Range<usize>>, Option<VectorChange>);
        let embedded = |resource: &Resource, slot: Slot<'_>| -> Result<Embedded> {
            let (Some(vector), Some((slot, range))) = (&resource.embedding, slot) else {
                return Ok((None, None));
            };
            let key = resource.id.as_bytes();
            let encode = |out: &mut [u8]| codec::write_embedding(vector, out);
            let start = match &self.crypto {
                Some(crypto) => crypto.seal_into(cf::CF_EMBEDDINGS, key, slot, encode)?,
                None => {
                    encode(slot);
                    0
                }
            };
            let change = index.map(|index| index.prepare(resource.id, vector, &resource.metadata));
            Ok((Some(range.start + start..range.end), change))
        };
        let record_size = |resource: &Resource| 64 + overhead + resource.content.len();
        // The stored records of a run of resources, one after another in one buffer.
        let records = |resources: &[Resource]| -> Result<Values> {
            let bytes = resources.iter().map(record_size).sum();
            let mut values = Values::with_capacity(resources.len(), bytes);
            let mut sealer =
                self.crypto.as_ref().map(|crypto| crypto.run(cf::CF_RESOURCES)).transpose()?;
            for resource in resources {
                let encode = |out: &mut Vec<u8>| codec::encode_resource_into(resource, out);
                values.push(|out| match &mut sealer {
                    Some(sealer) => sealer.seal_append(resource.id.as_bytes(), out, encode),
                    None => {
                        encode(out);
                        Ok(())
                    }
                })?;
            }
            Ok(values)
        };
        let embedded_all = |resources: &[Resource], slots: &mut [Slot<'_>]| {
            let slots = slots.iter_mut().map(Option::take);
            (resources.iter().zip(slots))
                .map(|(resource, slot)| {
                    let (embedding, change) = embedded(resource, slot)?;
                    Ok(ResourceValues { embedding, change })
                })
                .collect::<Result<Vec<_>>>()
        };
        let parallel = crate::host::cores() >= 2 && resources.len() >= PARALLEL_VALUES;
        let (records, values) = if parallel && end >= PARALLEL_EMBEDDING_BYTES {
            // On rayon's pool (one thread per core, started once): chunks are stolen by
            // whichever pool thread is free, so a thread the scheduler keeps waiting holds up
            // no more than the chunk it took, and no thread is started per batch (threads
            // started per batch would make it wait for them to be scheduled and to exit).
            use rayon::prelude::*;
            let _encoding = index.map(VectorIndex::encoding);
            let chunks: Vec<(Values, Vec<ResourceValues>)> = resources
                .par_chunks(CHUNK)
                .zip(slots.par_chunks_mut(CHUNK))
                .map(|(resources, slots)| {
                    Ok((records(resources)?, embedded_all(resources, slots)?))
                })
                .collect::<Result<_>>()?;
            let mut values = Vec::with_capacity(resources.len());
            let records = (chunks.into_iter())
                .map(|(records, chunk)| {
                    values.extend(chunk);
                    records
                })
                .collect();
            (records, values)
        } else {
            // Small records cost about a hundred nanoseconds each to encode and seal: handing
            // a batch of them to the pool costs more in wake-ups than it saves, so each is
            // sealed here as it is encoded, while it is in this core's cache.
            (vec![records(resources)?], embedded_all(resources, &mut slots)?)
        };
        Ok(Encoded { values, records: Records(records), embeddings })
    }
}

/// What [`TenantDb::resource_values`] makes of a batch: each resource's values, their stored
/// records, and the buffer holding their stored embeddings.
pub(crate) struct Encoded<'a> {
    pub(crate) values: Vec<ResourceValues>,
    pub(crate) records: Records,
    pub(crate) embeddings: Scratch<'a>,
}

/// The stored records of a batch, in order, in runs.
pub(crate) struct Records(Vec<Values>);

impl Records {
    /// The stored records, in the order of the resources.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().flat_map(Values::iter)
    }

    /// The stored records' bytes, in all.
    pub(crate) fn bytes(&self) -> usize {
        self.0.iter().map(Values::bytes).sum()
    }
}

/// What [`TenantDb::resource_values`] makes of one resource.
pub(crate) struct ResourceValues {
    /// Where the stored embedding is in [`Encoded::embeddings`], if the resource has one.
    pub(crate) embedding: Option<Range<usize>>,
    /// The embedding's change, prepared for the vector index, if an index was given.
    pub(crate) change: Option<VectorChange>,
}

/// Batches of at least this many resources are encoded on several cores, when they carry
/// [`PARALLEL_EMBEDDING_BYTES`] of stored embeddings.
pub(super) const PARALLEL_VALUES: usize = 256;

/// The stored embedding bytes that make a batch worth handing to rayon's pool (each
/// embedding also costs a copy for the index, and sealing when encrypted): ~40 384-d ones.
pub(super) const PARALLEL_EMBEDDING_BYTES: usize = 64 << 10;

/// The most scratch memory a tenant keeps between batches (a batch of ~2,600 384-d
/// embeddings); a bigger batch gets a buffer of its own.
pub(super) const SCRATCH_KEPT: usize = 4 << 20;

/// A buffer for the stored embeddings of one batch: the tenant's scratch, kept from batch to
/// batch so its pages stay mapped, or a fresh one when another batch holds the scratch or
/// the batch needs more than [`SCRATCH_KEPT`]. Encoding overwrites every byte a batch uses,
/// so nothing of an earlier batch can be written out again.
pub(crate) enum Scratch<'a> {
    Kept(parking_lot::MutexGuard<'a, Vec<u8>>),
    Fresh(Vec<u8>),
}

impl<'a> Scratch<'a> {
    fn take(kept: &'a Mutex<Vec<u8>>, len: usize) -> Self {
        match kept.try_lock() {
            Some(mut buffer) if len <= SCRATCH_KEPT => {
                if buffer.len() < len {
                    buffer.resize(len, 0);
                }
                Scratch::Kept(buffer)
            }
            _ => Scratch::Fresh(vec![0; len]),
        }
    }
}

impl std::ops::Deref for Scratch<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Scratch::Kept(buffer) => buffer,
            Scratch::Fresh(buffer) => buffer,
        }
    }
}

impl std::ops::DerefMut for Scratch<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Scratch::Kept(buffer) => buffer,
            Scratch::Fresh(buffer) => buffer,
        }
    }
}

/// Resources a pool thread encodes (and seals) at a time in a big batch.
pub(super) const CHUNK: usize = 32;

/// The values of a run of records, one after another in one buffer.
#[derive(Default)]
pub(crate) struct Values {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Values {
    /// Room for `values` values of `bytes` bytes in all.
    pub(crate) fn with_capacity(values: usize, bytes: usize) -> Self {
        Values { bytes: Vec::with_capacity(bytes), ends: Vec::with_capacity(values) }
    }

    /// Adds the value `write` appends to the buffer it is given.
    ///
    /// # Errors
    /// Those of `write`, which must then leave the buffer as it was.
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
        write(&mut self.bytes)?;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    /// The values' bytes, in all.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The values, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(start, &end)| &self.bytes[start..end])
    }
}
