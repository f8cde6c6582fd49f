//! Sealing a batch's records with help from a thread that the batch never waits for.
//!
//! Used for records that are slow to seal: those longer than the quick path of [`super::gcm`]
//! (a 1 KB text takes `aes-gcm` ~370 ns), and every record on CPUs without that path. Short
//! records (~100 ns to encode, ~50 ns to seal on the quick path) are sealed by the calling
//! thread as each is encoded, while it is in its cache: timed in one process, alternating
//! blocks of 100 batches of 1000, that took 572-897 µs a batch against 600-912 µs with this
//! helper (six processes, every one faster), because the helper's chunks cost the calling
//! thread 40-90 µs of cache traffic in its encoding loop (below).
//!
//! A batch of such records costs about 100 ns per record to encode and, in an encrypted
//! tenant, 130-400 ns more to encrypt. Handing such a batch to rayon's pool made it wait for a
//! sleeping pool thread to start (~30 µs) and for the calling thread to be woken again when the
//! pool was done: on the 2-core reference machine that cost more than it saved.
//!
//! So the calling thread encodes every record itself, fixing each one's nonce as it goes
//! ([`TenantCrypto::begin_seal_at`], a chunk's nonces reserved at once), into one buffer per
//! chunk of [`CHUNK`] records, and
//! publishes each chunk as it fills. A helper thread, woken when the batch starts, encrypts
//! published chunks where they are; once the caller has encoded everything it encrypts
//! whatever chunk is left. A chunk's buffer moves to the helper and back whole, so the caller
//! never waits for the helper to start: a helper that comes late finds nothing left, and one
//! that never comes costs nothing. The caller waits only for a chunk the helper is
//! encrypting at that moment (32 records, ~5 µs).
//!
//! Chunks, not records: an earlier version gave each record a buffer of its own. The helper
//! took most of the encryption, and the batch saved little: the caller allocated a thousand
//! buffers per batch, the helper wrote into them and freed the lists that carried them, and
//! the allocator's bookkeeping crossed cores with every one. The calling thread's encoding
//! loop took 260-270 µs per batch of 1000 where the plaintext batch encoded in 140-190 µs, and
//! malloc and free took ~95 µs more per batch than in plaintext (a profile of the 2,200
//! batches of the bench). With one buffer per chunk, and nothing allocated or freed by the
//! helper, a record's bytes cross cores only as part of a contiguous chunk. (That version's
//! helper was also often woken on the caller's own CPU: see [`placement`].)
//!
//! An alternative that had the helper encode and seal whole chunks itself, reading the
//! caller's records, got a third of the chunks and saved nothing either: reading a record's
//! scattered fields from the other core's cache made its chunks take twice as long.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::{Nonces, TenantCrypto, Unsealed};
use crate::Result;

/// Records per chunk: small enough that waiting for the helper's current chunk is short,
/// big enough that claiming one is negligible against encrypting it.
pub(crate) const CHUNK: usize = 32;
/// How many times the helper polls for the next chunk before leaving the rest to the caller
/// (each poll a spin-loop hint, ~10-40 ns: tens of µs in all, about a chunk's encoding).
const HELPER_POLLS: usize = 2_000;

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

    /// How many values there are.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
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

/// Seals the records of one batch, in order. See the module documentation.
pub(crate) struct RecordSealer {
    job: Arc<Job>,
    /// The chunk being encoded.
    pending: Encoded,
    /// Chunks sealed here because more records were pushed than the sealer was started for.
    overflow: Vec<Result<Encoded>>,
}

/// A chunk encoded and not yet encrypted: its values, each behind its seal's header and
/// before the room for its tag, and what encrypting each needs.
struct Encoded {
    values: Values,
    seals: Vec<([u8; 16], Unsealed)>,
    /// The nonces of the chunk's seals, reserved with its first.
    nonces: Option<Nonces>,
}

impl Encoded {
    fn new(bytes: usize) -> Self {
        Encoded {
            values: Values::with_capacity(CHUNK, bytes),
            seals: Vec::with_capacity(CHUNK),
            nonces: None,
        }
    }

    /// Encrypts every value where it is. Frees nothing: the chunk goes back to the thread
    /// that encoded it, which frees its buffers (a buffer freed on another thread than the
    /// one that allocated it costs both threads cache traffic in the allocator).
    fn seal(mut self, crypto: &TenantCrypto, domain: &str) -> Result<Self> {
        for (key, unsealed) in self.seals.drain(..) {
            crypto.finish_seal(domain, &key, &mut self.values.bytes, unsealed)?;
        }
        Ok(self)
    }
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
    Encoded(Encoded),
    Sealed(Result<Encoded>),
}

impl RecordSealer {
    /// A sealer for `records` values of `domain`, about `bytes` bytes of plaintext each, with
    /// its helper already woken.
    pub(crate) fn start(
        crypto: Arc<TenantCrypto>,
        domain: &'static str,
        records: usize,
        bytes: usize,
    ) -> Self {
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
        let chunk_bytes = CHUNK * (bytes + super::SEAL_OVERHEAD);
        RecordSealer { job, pending: Encoded::new(chunk_bytes), overflow: Vec::new() }
    }

    /// Encodes the next record (the plaintext `encode` appends) as the value of `key`, to be
    /// encrypted by whichever thread gets to it first.
    pub(crate) fn push(&mut self, key: [u8; 16], encode: impl FnOnce(&mut Vec<u8>)) {
        let Encoded { values, seals, nonces } = &mut self.pending;
        let crypto = &self.job.crypto;
        let nonce = nonces.get_or_insert_with(|| crypto.reserve_nonces(CHUNK)).next();
        let unsealed = match nonce {
            Some(nonce) => crypto.begin_seal_at(nonce, &mut values.bytes, encode),
            None => crypto.begin_seal(&mut values.bytes, encode),
        };
        values.ends.push(values.bytes.len());
        seals.extend(unsealed.map(|unsealed| (key, unsealed)));
        if values.len() == CHUNK {
            self.publish();
        }
    }

    fn publish(&mut self) {
        let at = self.job.published.load(Ordering::Relaxed);
        let capacity = self.pending.values.bytes.capacity();
        let chunk = std::mem::replace(&mut self.pending, Encoded::new(capacity));
        match self.job.chunks.get(at) {
            Some(slot) => {
                *slot.lock() = Chunk::Encoded(chunk);
                self.job.published.store(at + 1, Ordering::Release);
            }
            None => self.overflow.push(chunk.seal(&self.job.crypto, self.job.domain)),
        }
    }

    /// Every record's sealed value, in the order pushed, in chunks.
    ///
    /// # Errors
    /// [`Error::Invalid`](crate::Error::Invalid) for a value over AES-GCM's message limit.
    ///
    /// # Panics
    /// When encrypting panicked on the helper thread: that panic is resumed here, as
    /// `std::thread::scope` resumes the panics of the threads it joins.
    pub(crate) fn finish(mut self) -> Result<Vec<Values>> {
        if self.pending.values.len() > 0 {
            self.publish();
        }
        let job = &self.job;
        let published = job.published.load(Ordering::Relaxed);
        while job.seal_next(published) {}
        let mut sealed = Vec::with_capacity(published + self.overflow.len());
        for chunk in &job.chunks[..published] {
            // Claimed by the helper, which holds its lock while it encrypts it (or has not
            // taken the lock yet): wait for it.
            let mut spins = 0u32;
            loop {
                if let Some(mut chunk) = chunk.try_lock()
                    && matches!(*chunk, Chunk::Sealed(_))
                {
                    if let Chunk::Sealed(values) = std::mem::replace(&mut *chunk, Chunk::Waiting) {
                        sealed.push(values?.values);
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
        for values in std::mem::take(&mut self.overflow) {
            sealed.push(values?.values);
        }
        Ok(sealed)
    }
}

/// The newest batch offered to the helper thread and not yet taken by it. A batch offered
/// while the helper works on another replaces any batch still waiting here, and that one
/// seals on its own thread.
static OFFERED: Mutex<Option<Arc<Job>>> = Mutex::new(None);

/// Offers `job` to the thread that helps seal batches: started on the first offer, parked
/// between batches, and kept off the calling thread's CPU (see [`placement`]). If it cannot be
/// started, or there is no other CPU for it, batches seal on their own thread.
fn offer(job: Arc<Job>) {
    struct Helper {
        thread: std::thread::Thread,
        placement: Mutex<placement::Placement>,
    }
    static HELPER: std::sync::OnceLock<Option<Helper>> = std::sync::OnceLock::new();
    let helper = HELPER.get_or_init(|| {
        let (started, placed) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("percolate-seal".into()).spawn(move || {
            let _ = started.send(placement::Placement::of_this_thread());
            loop {
                std::thread::park();
                while let Some(job) = OFFERED.lock().take() {
                    job.help();
                }
            }
        });
        let thread = spawned.ok()?.thread().clone();
        let placement = Mutex::new(placed.recv().ok()?);
        Some(Helper { thread, placement })
    });
    if let Some(helper) = helper
        && helper.placement.lock().keep_off(placement::current_cpu())
    {
        *OFFERED.lock() = Some(job);
        helper.thread.unpark();
    }
}

/// Where the helper may run. Woken by a batch, the helper was often placed on the CPU of the
/// thread that woke it, which it then preempted: in one process of the bench that happened in
/// 1,696 of 2,161 batches, and the batch took 45 µs to wake it (p50) and sealed 143 µs of its
/// chunks itself, against 3 µs and 42 µs in a process where it happened in 482 of 1,988. A
/// helper on the caller's CPU only takes that CPU's time from the caller, so it is kept off
/// it: its affinity is every CPU the process may use but the caller's (changed only when the
/// caller's CPU changes), and a process with a single CPU does without it.
mod placement {
    /// The helper thread's id and the CPUs it may use, and the CPU it is kept off.
    pub(super) struct Placement {
        #[cfg(target_os = "linux")]
        thread: libc::pid_t,
        #[cfg(target_os = "linux")]
        allowed: libc::cpu_set_t,
        #[cfg(target_os = "linux")]
        kept_off: Option<usize>,
    }

    /// The CPU the calling thread is on, where that is known.
    #[allow(unsafe_code)]
    pub(super) fn current_cpu() -> Option<usize> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: a plain call about the calling thread; no memory passed.
            let cpu = unsafe { libc::sched_getcpu() };
            usize::try_from(cpu).ok()
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    impl Placement {
        /// The calling thread (the helper, as it starts) and the CPUs it may use.
        #[allow(unsafe_code)]
        pub(super) fn of_this_thread() -> Self {
            #[cfg(target_os = "linux")]
            {
                // SAFETY: `gettid` takes nothing; `sched_getaffinity` writes at most
                // `size_of::<cpu_set_t>()` bytes into the set, which is that big (and starts
                // zeroed, so a failed call leaves it empty).
                unsafe {
                    let thread = libc::gettid();
                    let mut allowed: libc::cpu_set_t = std::mem::zeroed();
                    let size = std::mem::size_of::<libc::cpu_set_t>();
                    if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
                        libc::CPU_ZERO(&mut allowed);
                    }
                    Placement { thread, allowed, kept_off: None }
                }
            }
            #[cfg(not(target_os = "linux"))]
            Placement {}
        }

        /// Keeps the helper off `cpu` (the caller's); false when that leaves it no CPU, and
        /// the caller should seal alone. Where CPUs are unknown, the helper runs where the
        /// scheduler puts it.
        #[allow(unsafe_code)]
        pub(super) fn keep_off(&mut self, cpu: Option<usize>) -> bool {
            #[cfg(target_os = "linux")]
            {
                let Some(cpu) = cpu.filter(|cpu| *cpu < libc::CPU_SETSIZE as usize) else {
                    return true;
                };
                if self.kept_off == Some(cpu) {
                    return true;
                }
                let mut others = self.allowed;
                // SAFETY: the CPU_* helpers only read and write the set they are given, at an
                // index checked against its size above; `sched_setaffinity` reads
                // `size_of::<cpu_set_t>()` bytes from the set, which is that big.
                unsafe {
                    libc::CPU_CLR(cpu, &mut others);
                    if libc::CPU_COUNT(&others) == 0 {
                        return false;
                    }
                    let size = std::mem::size_of::<libc::cpu_set_t>();
                    if libc::sched_setaffinity(self.thread, size, &others) == 0 {
                        self.kept_off = Some(cpu);
                    }
                }
                true
            }
            #[cfg(not(target_os = "linux"))]
            {
                let _ = cpu;
                true
            }
        }
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
        if let Chunk::Encoded(encoded) = std::mem::replace(&mut *chunk, Chunk::Waiting) {
            *chunk = Chunk::Sealed(encoded.seal(&self.crypto, self.domain));
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
    use crate::crypto::MasterKey;
    use crate::model::TenantId;

    fn crypto() -> (tempfile::TempDir, Arc<TenantCrypto>) {
        let dir = tempfile::tempdir().unwrap();
        let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
        let crypto = kek
            .create_tenant_key(dir.path(), &TenantId::new("a").unwrap(), &["resources"])
            .unwrap();
        (dir, Arc::new(crypto))
    }

    fn key(i: usize) -> [u8; 16] {
        let mut key = [0; 16];
        key[..8].copy_from_slice(&(i as u64).to_be_bytes());
        key
    }

    /// Record `i`'s plaintext: every seventh is empty, and some are longer than the room the
    /// sealer was started with.
    fn plaintext(i: usize) -> Vec<u8> {
        if i % 7 == 3 {
            return Vec::new();
        }
        format!("record {i}: {}", "x".repeat(i % 190)).into_bytes()
    }

    /// Pushes `pushed` values through a sealer started for `announced` and checks each opens,
    /// in order, to its own plaintext at its own key and nowhere else.
    fn seal_and_check(crypto: &Arc<TenantCrypto>, announced: usize, pushed: usize) {
        let mut sealer = RecordSealer::start(Arc::clone(crypto), "resources", announced, 64);
        for i in 0..pushed {
            sealer.push(key(i), |out| out.extend_from_slice(&plaintext(i)));
        }
        let chunks = sealer.finish().unwrap();
        assert!(chunks.iter().all(|chunk| chunk.len() <= CHUNK));
        let sealed: Vec<&[u8]> = chunks.iter().flat_map(Values::iter).collect();
        assert_eq!(sealed.len(), pushed);
        for (i, value) in sealed.into_iter().enumerate() {
            if plaintext(i).is_empty() {
                assert!(value.is_empty(), "{i}");
                continue;
            }
            assert_eq!(crypto.open("resources", &key(i), value).unwrap(), plaintext(i), "{i}");
            assert!(crypto.open("resources", &key(i + 1), value).is_err());
            assert!(crypto.open("entities", &key(i), value).is_err());
        }
    }

    #[test]
    fn every_record_is_sealed_in_order_whatever_the_chunking() {
        let (_dir, crypto) = crypto();
        for records in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 1000, 4 * CHUNK + 7] {
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

    /// A helper kept off the caller's CPU runs on another, and with no other CPU allowed there
    /// is no helper: the batch seals alone.
    #[cfg(target_os = "linux")]
    #[test]
    #[allow(unsafe_code)]
    fn the_helper_is_kept_off_the_callers_cpu_or_not_used() {
        let cpu = placement::current_cpu().unwrap();
        let mut placement = placement::Placement::of_this_thread();
        if crate::host::cores() >= 2 {
            assert!(placement.keep_off(Some(cpu)));
        }
        std::thread::spawn(move || {
            // SAFETY: the set is as big as the size passed; `cpu` < CPU_SETSIZE.
            unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                let size = std::mem::size_of::<libc::cpu_set_t>();
                assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
            }
            let mut alone = placement::Placement::of_this_thread();
            assert!(!alone.keep_off(Some(cpu)), "a single CPU leaves the helper none");
            assert!(alone.keep_off(None), "an unknown CPU keeps the helper");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn no_two_values_share_a_nonce() {
        let (_dir, crypto) = crypto();
        let mut sealer = RecordSealer::start(Arc::clone(&crypto), "resources", 2000, 32);
        for _ in 0..2000 {
            sealer.push(key(0), |out| out.extend_from_slice(b"same plaintext, same key"));
        }
        let chunks = sealer.finish().unwrap();
        let distinct: std::collections::HashSet<&[u8]> =
            chunks.iter().flat_map(Values::iter).collect();
        assert_eq!(distinct.len(), 2000);
    }
}
