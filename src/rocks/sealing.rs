//! Sealing a batch's records with help from a thread that the batch never waits for.
//!
//! A batch of small records costs about 100 ns per record to encode and, in an encrypted
//! tenant, 130 ns more to encrypt (AES-256-GCM on a ~75-byte value). Handing such a batch to
//! rayon's pool made it wait for a sleeping pool thread to start (~30 µs) and for the calling
//! thread to be woken again when the pool was done: on the 2-core reference machine that cost
//! more than it saved. A plaintext batch of 1000 encoded in 180 µs on the pool against 98 µs
//! on the calling thread, and its p99 was 1.3-2.1 ms against 0.7 ms; a sealed one took 290-350
//! µs on the pool against 230 µs alone.
//!
//! So the calling thread encodes every record itself, fixing each one's nonce as it goes
//! ([`TenantCrypto::begin_seal`]), and publishes them in chunks. A helper thread, woken when
//! the batch starts, encrypts published chunks; once the caller has encoded everything it
//! encrypts whatever chunk is left. The helper's job owns what it works on (the
//! encoded buffers, their keys and the tenant's keys, behind an [`Arc`]), so the caller never
//! waits for it to start: a helper that comes late finds nothing left, and one that never
//! comes costs nothing. The caller waits only for a chunk the helper is encrypting at that
//! moment (32 records, ~4 µs). The helper still takes 17-52 µs to start (p10-p90 in the
//! batch bench: waking a thread on the other, idle, vCPU of the reference VM), and then seals
//! about three quarters of a batch of 1000; timed in one process, alternating batch by batch,
//! it saved 20-60 µs per batch against sealing on the calling thread alone. Across processes
//! (sixteen alternating pairs of sealed batch children) it saved about 15 µs at p50 and cost
//! 50-90 µs at p99: when RocksDB's flush thread holds the other core, the helper starts late
//! or not at all (in about one batch in twenty), and the in-process comparison shared that
//! fate between its two halves.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::crypto::{TenantCrypto, Unsealed};

/// Records per chunk: small enough that waiting for the helper's current chunk is short,
/// big enough that claiming one is negligible against encrypting it.
const CHUNK: usize = 32;
/// How many times the helper polls for the next chunk before leaving the rest to the caller
/// (each poll a spin-loop hint, ~10-40 ns: tens of µs in all, about a chunk's encoding).
const HELPER_POLLS: usize = 2_000;

/// Seals the records of one batch, in order. See the module documentation.
pub(crate) struct RecordSealer {
    job: Arc<Job>,
    /// Records encoded since the last chunk was published.
    pending: Vec<([u8; 16], Unsealed)>,
    /// Values sealed here because more records were pushed than the sealer was started for.
    overflow: Vec<Vec<u8>>,
}

struct Job {
    crypto: Arc<TenantCrypto>,
    domain: &'static str,
    chunks: Vec<Mutex<Chunk>>,
    /// Chunks published so far (a prefix of `chunks`).
    published: AtomicUsize,
    /// Chunks claimed for encryption so far (a prefix of the published ones).
    claimed: AtomicUsize,
    /// Set when encrypting panicked on the helper thread (the chunk it held is lost), with
    /// the panic, for the caller to resume.
    failed: AtomicBool,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

enum Chunk {
    Waiting,
    Encoded(Vec<([u8; 16], Unsealed)>),
    Sealed(Vec<Vec<u8>>),
}

impl RecordSealer {
    /// A sealer for `records` values of `domain`, with its helper already woken.
    pub(crate) fn start(crypto: Arc<TenantCrypto>, domain: &'static str, records: usize) -> Self {
        let job = Arc::new(Job {
            crypto,
            domain,
            chunks: (0..records.div_ceil(CHUNK)).map(|_| Mutex::new(Chunk::Waiting)).collect(),
            published: AtomicUsize::new(0),
            claimed: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        offer(Arc::clone(&job));
        RecordSealer { job, pending: Vec::with_capacity(CHUNK), overflow: Vec::new() }
    }

    /// Encodes the next record (the plaintext `encode` appends, about `size` bytes) as the
    /// value of `key`, to be encrypted by whichever thread gets to it first.
    pub(crate) fn push(&mut self, key: [u8; 16], size: usize, encode: impl FnOnce(&mut Vec<u8>)) {
        self.pending.push((key, self.job.crypto.begin_seal(size, encode)));
        if self.pending.len() == CHUNK {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let at = self.job.published.load(Ordering::Relaxed);
        let records = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        match self.job.chunks.get(at) {
            Some(chunk) => {
                *chunk.lock() = Chunk::Encoded(records);
                self.job.published.store(at + 1, Ordering::Release);
            }
            None => self.overflow.extend(records.into_iter().map(|(key, unsealed)| {
                self.job.crypto.finish_seal(self.job.domain, &key, unsealed)
            })),
        }
    }

    /// Every record's sealed value, in the order pushed.
    ///
    /// # Panics
    /// When encrypting panicked on the helper thread: that panic is resumed here, as
    /// `std::thread::scope` resumes the panics of the threads it joins.
    pub(crate) fn finish(mut self) -> Vec<Vec<u8>> {
        if !self.pending.is_empty() {
            self.publish();
        }
        let job = &self.job;
        let published = job.published.load(Ordering::Relaxed);
        while job.seal_next(published) {}
        let mut sealed = Vec::with_capacity(published * CHUNK);
        for chunk in &job.chunks[..published] {
            // Claimed by the helper, which holds its lock while it encrypts it (or has not
            // taken the lock yet): wait for it.
            let mut spins = 0u32;
            loop {
                if let Some(mut chunk) = chunk.try_lock()
                    && matches!(*chunk, Chunk::Sealed(_))
                {
                    if let Chunk::Sealed(values) = std::mem::replace(&mut *chunk, Chunk::Waiting) {
                        sealed.extend(values);
                    }
                    break;
                }
                if job.failed.load(Ordering::Acquire) {
                    let panic = job.panic.lock().take();
                    std::panic::resume_unwind(panic.unwrap_or_else(|| Box::new("sealing failed")));
                }
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        sealed.append(&mut self.overflow);
        sealed
    }
}

/// The newest batch offered to the helper thread and not yet taken by it. A batch offered
/// while the helper works on another replaces any batch still waiting here, and that one
/// seals on its own thread.
static OFFERED: Mutex<Option<Arc<Job>>> = Mutex::new(None);

/// Offers `job` to the thread that helps seal batches: started on the first offer, parked
/// between batches. If it cannot be started, batches seal on their own thread.
fn offer(job: Arc<Job>) {
    static HELPER: std::sync::OnceLock<Option<std::thread::Thread>> = std::sync::OnceLock::new();
    let helper = HELPER.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("percolate-seal".into()).spawn(|| {
            loop {
                std::thread::park();
                while let Some(job) = OFFERED.lock().take() {
                    job.help();
                }
            }
        });
        spawned.ok().map(|handle| handle.thread().clone())
    });
    if let Some(helper) = helper {
        *OFFERED.lock() = Some(job);
        helper.unpark();
    }
}

impl Job {
    /// Claims and encrypts the next of the first `published` chunks; false when every one
    /// of them is claimed.
    fn seal_next(&self, published: usize) -> bool {
        let at = self.claimed.load(Ordering::Relaxed);
        if at >= published
            || self
                .claimed
                .compare_exchange(at, at + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return at < published;
        }
        let mut chunk = self.chunks[at].lock();
        if let Chunk::Encoded(records) = std::mem::replace(&mut *chunk, Chunk::Waiting) {
            let values = records
                .into_iter()
                .map(|(key, unsealed)| self.crypto.finish_seal(self.domain, &key, unsealed))
                .collect();
            *chunk = Chunk::Sealed(values);
        }
        true
    }

    /// The helper: encrypts chunks as they are published, until all are claimed or the
    /// caller has gone quiet for [`HELPER_POLLS`] polls.
    fn help(&self) {
        let mut polls = 0;
        while self.claimed.load(Ordering::Relaxed) < self.chunks.len() && polls < HELPER_POLLS {
            let published = self.published.load(Ordering::Acquire);
            let sealed = std::panic::catch_unwind(AssertUnwindSafe(|| self.seal_next(published)));
            match sealed {
                Ok(true) => polls = 0,
                Ok(false) => {
                    polls += 1;
                    std::hint::spin_loop();
                }
                Err(panic) => {
                    *self.panic.lock() = Some(panic);
                    self.failed.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantId;
    use crate::rocks::crypto::MasterKey;

    fn crypto() -> (tempfile::TempDir, Arc<TenantCrypto>) {
        let dir = tempfile::tempdir().unwrap();
        let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
        let crypto = kek.create_tenant_key(dir.path(), &TenantId::new("a").unwrap()).unwrap();
        (dir, Arc::new(crypto))
    }

    fn key(i: usize) -> [u8; 16] {
        let mut key = [0; 16];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        key
    }

    fn plaintext(i: usize) -> Vec<u8> {
        format!("record {i}: {}", "x".repeat(i % 90)).into_bytes()
    }

    /// Pushes `pushed` values through a sealer started for `announced` and checks each opens,
    /// in order, to its own plaintext at its own key and nowhere else.
    fn seal_and_check(crypto: &Arc<TenantCrypto>, announced: usize, pushed: usize) {
        let mut sealer = RecordSealer::start(Arc::clone(crypto), "resources", announced);
        for i in 0..pushed {
            sealer.push(key(i), 64, |out| out.extend_from_slice(&plaintext(i)));
        }
        let sealed = sealer.finish();
        assert_eq!(sealed.len(), pushed);
        for (i, value) in sealed.iter().enumerate() {
            assert_eq!(crypto.open("resources", &key(i), value).unwrap(), plaintext(i), "{i}");
            assert!(crypto.open("resources", &key(i + 1), value).is_err());
            assert!(crypto.open("entities", &key(i), value).is_err());
        }
    }

    #[test]
    fn every_record_is_sealed_in_order_whatever_the_chunking() {
        let (_dir, crypto) = crypto();
        for records in [1, CHUNK - 1, CHUNK, CHUNK + 1, 1000, 4 * CHUNK + 7] {
            seal_and_check(&crypto, records, records);
        }
    }

    #[test]
    fn more_or_fewer_records_than_announced_are_all_sealed() {
        let (_dir, crypto) = crypto();
        seal_and_check(&crypto, 40, 150);
        seal_and_check(&crypto, 1000, 70);
    }

    #[test]
    fn concurrent_batches_share_the_helper_without_mixing_values() {
        let (_dir, crypto) = crypto();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for records in [300, 1000, 257] {
                        seal_and_check(&crypto, records, records);
                    }
                });
            }
        });
    }

    #[test]
    fn no_two_values_share_a_nonce() {
        let (_dir, crypto) = crypto();
        let mut sealer = RecordSealer::start(Arc::clone(&crypto), "resources", 2000);
        for _ in 0..2000 {
            sealer.push(key(0), 64, |out| out.extend_from_slice(b"same plaintext, same key"));
        }
        let sealed = sealer.finish();
        let distinct: std::collections::HashSet<_> = sealed.iter().collect();
        assert_eq!(distinct.len(), 2000);
    }
}
