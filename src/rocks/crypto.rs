//! Encryption at rest: per-tenant data keys wrapped by a master key, sealed values, keyed name
//! tokens and crypto-shredding.
//!
//! RocksDB's own `EncryptedEnv` is a demonstration cipher without integrity and the `rocksdb`
//! crate does not expose it, so percolate seals values itself, above RocksDB:
//!
//! - **Keys.** The master key (32 random bytes, or a passphrase stretched with Argon2id over a
//!   salt kept in the store root) is a key-encryption key only. Each tenant has its own random
//!   32-byte data key, stored *wrapped* (AES-256-GCM-SIV, associated data = the tenant id) in
//!   the small file [`KEY_FILE`] inside the tenant directory, with a fingerprint of the master
//!   key that wrapped it. Rotating the master key rewrites those files only; no data moves.
//! - **Values.** Every non-empty value of every column family is sealed with AES-256-GCM under
//!   a *session key* bound to its tenant and column family, with the value's key as associated
//!   data: a value copied to another key, column family or tenant fails to open. Each opening
//!   of a tenant starts a session: a random 128-bit session id, from which (with the data key,
//!   the tenant id and the column family) BLAKE3 derives the session keys; within a session the
//!   nonce is a counter, so no nonce ever repeats under a key without any counter having to
//!   survive a crash (a new open is a new key).
//!   Each session is registered, before it seals anything, under the next *session number*
//!   in the tenant's meta column family (a durable write at open), so a value names its
//!   session by that number rather than by the 16-byte id. Sealed value layout: `0xA3`,
//!   session number and counter (LEB128 varints), ciphertext, tag (16): about 21 bytes of
//!   overhead. Readers derive (and cache) the key of any session they meet. The number only
//!   finds the id; the key comes from the random id, so a directory restored from a backup,
//!   which hands out a number again, still never reuses a key and nonce.
//!
//!   Why the number: every sealed byte is written to the WAL, the memtable and every SST
//!   level, and a 75-byte record grew by 55% sealed. Twenty bytes fewer moved a batch of 1000
//!   small records from +34/+34/+37% over plaintext to +31/+29/+30% (alternating runs of the
//!   two builds); the rest is the cipher's own cost. (A first experiment, plaintext padded
//!   with 41 random bytes costing as much as sealed values, had overstated the bytes' share.)
//!   Values sealed by earlier builds (`0xA2`: session id (16), counter (8), ciphertext,
//!   tag; 41 bytes of overhead) still open; a [`TenantCrypto`] whose session has no number
//!   yet (unit tests, fuzzing) still writes them.
//!
//!   Why not AES-256-GCM-SIV with random nonces (the first design, still read: values starting
//!   `0xA1` open with it) or XChaCha20-Poly1305: both pay a key derivation per value, and that
//!   was the whole cost of encryption. Per 120-byte value on this project's reference machine
//!   (AES-NI and CLMUL compiled in): GCM-SIV 371 ns, XChaCha20-Poly1305 614 ns, AES-256-GCM
//!   158 ns; against a point read of ~1.3 µs and a batched put of ~0.7 µs per record, only GCM
//!   keeps encryption near its 25% budget. XChaCha's answer to GCM's nonce limit is the same
//!   move made per message (HChaCha derives a subkey from a random 192-bit nonce); a session
//!   key makes it once per open.
//! - **Names.** Key bytes cannot be sealed without losing order, so the two key layouts that
//!   would hold user text hold keyed BLAKE3 tokens instead: an edge's relation in the adjacency
//!   key, and the name prefixes of the entity-name index (see [`TenantCrypto::name_tokens`]).
//! - **Index snapshots** are sealed as one value.
//! - **Shredding.** Deleting a tenant first overwrites, syncs and removes its key file; without
//!   the data key whatever remains on disk (SST files not yet reclaimed, backups) is noise.
//!
//! What still leaks is listed in the README: key structure (ids, which are UUIDv7 and so carry
//! creation times, moment start times, graph shape), value sizes, record counts, and equality of
//! relation names and name prefixes within one tenant.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aes_gcm::Aes256Gcm;
use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use parking_lot::RwLock;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use super::gcm::SealingKey;
use crate::error::{Error, Result};
use crate::model::TenantId;

/// The wrapped data key's file name inside a tenant directory.
pub(crate) const KEY_FILE: &str = "percolate.key";
/// The Argon2id salt of a passphrase master key, in the store root.
const SALT_FILE: &str = ".percolate-salt";

const KEY_FILE_MAGIC: &[u8; 8] = b"PCLKEY01";
/// The first byte of a value sealed by the first design (AES-256-GCM-SIV, random nonce): still
/// opened, no longer written.
const SEALED_SIV: u8 = 0xA1;
/// The first byte of a value sealed under a session key (AES-256-GCM, counter nonce) that
/// names its session by id.
const SEALED_SESSION: u8 = 0xA2;
/// The first byte of a value sealed under a session key that names its session by number.
const SEALED_NUMBERED: u8 = 0xA3;
const NONCE_BYTES: usize = 12;
/// Bytes of a random session id.
pub(crate) const SESSION_BYTES: usize = 16;
const COUNTER_BYTES: usize = 8;
const TAG_BYTES: usize = 16;
/// The most bytes a sealed value adds to its plaintext (a numbered one adds about 21).
pub const SEAL_OVERHEAD: usize = SEAL_HEADER + TAG_BYTES;
/// The longest header, before the ciphertext: format byte, session id, counter (`0xA2`); a
/// numbered header is at most 16 bytes.
const SEAL_HEADER: usize = 1 + SESSION_BYTES + COUNTER_BYTES;
/// Sessions whose keys a reader keeps derived; past this the cache starts over.
const SESSION_CACHE: usize = 1024;
/// Name prefixes longer than this many characters share the token of their first
/// `NAME_TOKEN_CHARS` characters (the query re-checks every candidate's name).
const NAME_TOKEN_CHARS: usize = 8;

/// Where the master key comes from. Its bytes never leave this type unwrapped except into
/// the key-encryption key derived from it, and both are wiped on drop.
#[derive(Clone)]
pub struct MasterKey(Secret);

#[derive(Clone)]
enum Secret {
    Key(Zeroizing<[u8; 32]>),
    Passphrase(Zeroizing<String>),
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Secret::Key(_) => "MasterKey(key, redacted)",
            Secret::Passphrase(_) => "MasterKey(passphrase, redacted)",
        })
    }
}

impl MasterKey {
    /// A raw 256-bit key (use a random one: `head -c 32 /dev/urandom | xxd -p -c 64`).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        Self(Secret::Key(Zeroizing::new(key)))
    }

    /// A passphrase, stretched with Argon2id when the store opens.
    ///
    /// # Errors
    /// [`Error::Invalid`] when it is empty.
    pub fn from_passphrase(passphrase: impl Into<String>) -> Result<Self> {
        let passphrase = Zeroizing::new(passphrase.into());
        if passphrase.is_empty() {
            return Err(Error::invalid("master key", "the passphrase is empty"));
        }
        Ok(Self(Secret::Passphrase(passphrase)))
    }

    /// A key given as text, as in `PERCOLATE_MASTER_KEY`: 64 hex digits are a raw key, anything
    /// else is a passphrase. Surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`Error::Invalid`] when it is empty.
    pub fn from_text(text: &str) -> Result<Self> {
        let text = text.trim();
        match parse_hex_key(text) {
            Some(key) => Ok(Self::from_bytes(key)),
            None => Self::from_passphrase(text),
        }
    }

    /// A key file, as in `PERCOLATE_MASTER_KEY_FILE`: exactly 32 bytes are a raw key, otherwise
    /// the UTF-8 text is read as by [`MasterKey::from_text`].
    ///
    /// # Errors
    /// [`Error::Crypto`] when the file cannot be read or is neither a key nor UTF-8 text;
    /// [`Error::Invalid`] when it is empty.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            Error::Crypto(format!("cannot read master key file {}: {e}", path.display()))
        })?);
        // 32 bytes that are not all printable text are a raw key (a random key is printable
        // with probability (95/256)^32, about 1e-14); anything else is text.
        if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
            && !key.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace())
        {
            return Ok(Self::from_bytes(key));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::Crypto(format!(
                "master key file {} is neither 32 raw bytes nor UTF-8 text",
                path.display()
            ))
        })?;
        Self::from_text(text)
    }

    /// Derives the key-encryption key. A passphrase is stretched with Argon2id (default
    /// parameters: 19 MiB, 2 passes) over the store's salt, created on first use.
    pub(crate) fn kek(&self, root: &Path) -> Result<MasterKek> {
        let mut key = Zeroizing::new([0u8; 32]);
        match &self.0 {
            Secret::Key(raw) => {
                *key = blake3::derive_key("percolate 2026 master key-encryption key", &raw[..]);
            }
            Secret::Passphrase(passphrase) => {
                let salt = store_salt(root)?;
                argon2::Argon2::default()
                    .hash_password_into(passphrase.as_bytes(), &salt, &mut key[..])
                    .map_err(|e| Error::Crypto(format!("argon2id: {e}")))?;
            }
        }
        let fingerprint = blake3::derive_key("percolate 2026 master key fingerprint", &key[..]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&fingerprint[..8]);
        Ok(MasterKek { cipher: Aes256GcmSiv::new((&*key).into()), id })
    }
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(key)
}

/// The store-wide Argon2id salt: read, or created atomically (temp file, fsync, rename).
fn store_salt(root: &Path) -> Result<[u8; 16]> {
    let path = root.join(SALT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            return bytes.try_into().map_err(|_| {
                Error::Crypto(format!("salt file {} is not 16 bytes", path.display()))
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Crypto(format!("cannot read {}: {e}", path.display()))),
    }
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    write_atomically(&path, &salt)
        .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))?;
    // Another process may have won the race: whatever is on disk now is the salt.
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::Crypto(format!("cannot read {}: {e}", path.display())))?;
    bytes
        .try_into()
        .map_err(|_| Error::Crypto(format!("salt file {} is not 16 bytes", path.display())))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
    path.with_file_name(name)
}

/// The key-encryption key derived from a [`MasterKey`], and its public fingerprint.
pub(crate) struct MasterKek {
    cipher: Aes256GcmSiv,
    id: [u8; 8],
}

impl MasterKek {
    /// Makes a new random data key for `tenant` and writes it, wrapped, into `dir`.
    pub(crate) fn create_tenant_key(&self, dir: &Path, tenant: &TenantId) -> Result<TenantCrypto> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut data_key[..]);
        let path = dir.join(KEY_FILE);
        write_atomically(&path, &self.wrap(tenant, &data_key)?)
            .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))?;
        Ok(TenantCrypto::new(tenant, &data_key))
    }

    /// Reads and unwraps the data key of the tenant in `dir`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the key file is damaged or was wrapped by another master key.
    pub(crate) fn open_tenant_key(&self, dir: &Path, tenant: &TenantId) -> Result<TenantCrypto> {
        let data_key = self.unwrap_file(&dir.join(KEY_FILE), tenant)?;
        Ok(TenantCrypto::new(tenant, &data_key))
    }

    /// Re-wraps the tenant key in `dir` from `self` to `new`; a file already wrapped by `new`
    /// is left alone, so an interrupted rotation can simply be run again.
    pub(crate) fn rewrap(&self, new: &MasterKek, dir: &Path, tenant: &TenantId) -> Result<()> {
        let path = dir.join(KEY_FILE);
        if read_key_file(&path)?.0 == new.id {
            return Ok(());
        }
        let data_key = self.unwrap_file(&path, tenant)?;
        write_atomically(&path, &new.wrap(tenant, &data_key)?)
            .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))
    }

    fn wrap(&self, tenant: &TenantId, data_key: &[u8; 32]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let mut wrapped = data_key.to_vec();
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &key_aad(tenant),
                wrapped.as_mut_slice().into(),
            )
            .map_err(|_| Error::Crypto("cannot wrap a data key".into()))?;
        let mut out = Vec::with_capacity(8 + 8 + NONCE_BYTES + 32 + TAG_BYTES);
        out.extend_from_slice(KEY_FILE_MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    fn unwrap_file(&self, path: &Path, tenant: &TenantId) -> Result<Zeroizing<[u8; 32]>> {
        let (id, nonce, mut wrapped, tag) = read_key_file(path)?;
        if id != self.id {
            return Err(Error::Crypto(format!(
                "tenant {tenant} is sealed under a different master key"
            )));
        }
        self.cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &key_aad(tenant),
                wrapped.as_mut_slice().into(),
                &tag.into(),
            )
            .map_err(|_| {
                Error::Crypto(format!("the data key of tenant {tenant} fails authentication"))
            })?;
        let key = Zeroizing::new(wrapped);
        wrapped.zeroize();
        Ok(key)
    }
}

type KeyFile = ([u8; 8], [u8; NONCE_BYTES], [u8; 32], [u8; TAG_BYTES]);

fn read_key_file(path: &Path) -> Result<KeyFile> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Crypto(format!("cannot read key file {}: {e}", path.display())))?;
    let damaged = || Error::Crypto(format!("key file {} is damaged", path.display()));
    let body = bytes.strip_prefix(KEY_FILE_MAGIC.as_slice()).ok_or_else(damaged)?;
    if body.len() != 8 + NONCE_BYTES + 32 + TAG_BYTES {
        return Err(damaged());
    }
    let (id, rest) = body.split_at(8);
    let (nonce, rest) = rest.split_at(NONCE_BYTES);
    let (wrapped, tag) = rest.split_at(32);
    Ok((
        id.try_into().map_err(|_| damaged())?,
        nonce.try_into().map_err(|_| damaged())?,
        wrapped.try_into().map_err(|_| damaged())?,
        tag.try_into().map_err(|_| damaged())?,
    ))
}

/// Whether `value` is a sealed value (of either design), by its first byte.
pub(crate) fn is_sealed(value: &[u8]) -> bool {
    matches!(value.first(), Some(&(SEALED_SIV | SEALED_SESSION | SEALED_NUMBERED)))
}

/// The domains values are sealed in, each under its own session key: the column families and
/// the index snapshot.
const DOMAINS: [&str; 10] = [
    super::cf::CF_META,
    super::cf::CF_RESOURCES,
    super::cf::CF_EMBEDDINGS,
    super::cf::CF_ENTITIES,
    super::cf::CF_ENTITY_NAMES,
    super::cf::CF_EDGES,
    super::cf::CF_ADJACENCY,
    super::cf::CF_MOMENTS,
    super::cf::CF_MOMENT_TIME,
    super::vector::SNAPSHOT_FILE,
];

/// The AES-256-GCM key of session `id` for values of `tenant` in `domain`. Binding tenant and
/// domain into the key rather than into every value's associated data leaves only the value's
/// key to authenticate per value: 16 bytes instead of ~45, two GHASH blocks fewer per seal and
/// open (~45 ns of a ~200 ns open).
fn domain_key(
    root: &[u8; 32],
    tenant: &[u8],
    domain: &str,
    id: &[u8; SESSION_BYTES],
) -> Zeroizing<[u8; 32]> {
    let mut hasher = blake3::Hasher::new_derive_key("percolate 2026 value session key");
    hasher.update(root);
    for part in [tenant, domain.as_bytes()] {
        hasher.update(&(part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(id);
    Zeroizing::new(*hasher.finalize().as_bytes())
}

/// [`domain_key`] as a cipher that opens values.
fn domain_cipher(
    root: &[u8; 32],
    tenant: &[u8],
    domain: &str,
    id: &[u8; SESSION_BYTES],
) -> Aes256Gcm {
    Aes256Gcm::new((&*domain_key(root, tenant, domain, id)).into())
}

/// The keys of session `id` for every one of [`DOMAINS`].
fn session_ciphers(root: &[u8; 32], tenant: &[u8], id: &[u8; SESSION_BYTES]) -> Vec<Aes256Gcm> {
    DOMAINS.iter().map(|domain| domain_cipher(root, tenant, domain, id)).collect()
}

/// The same keys as [`session_ciphers`], to seal with.
fn session_sealers(root: &[u8; 32], tenant: &[u8], id: &[u8; SESSION_BYTES]) -> Vec<SealingKey> {
    DOMAINS.iter().map(|domain| SealingKey::new(&domain_key(root, tenant, domain, id))).collect()
}

/// Writes `value` as a LEB128 varint at the front of `out` (room for 10 bytes); its length.
fn put_varint(mut value: u64, out: &mut [u8]) -> usize {
    let mut at = 0;
    while value >= 0x80 {
        out[at] = value as u8 | 0x80;
        value >>= 7;
        at += 1;
    }
    out[at] = value as u8;
    at + 1
}

/// A LEB128 varint from the front of `bytes` and the bytes after it; `None` unless it is the
/// shortest encoding of a `u64`, so each number has exactly one encoding.
fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (at, &byte) in bytes.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7F);
        if at == 9 && byte > 1 {
            return None;
        }
        value |= bits << (7 * at);
        if byte & 0x80 == 0 {
            // A last byte of zero after others pads the encoding.
            return (at == 0 || byte != 0).then_some((value, &bytes[at + 1..]));
        }
    }
    None
}

/// The 96-bit GCM nonce of the `counter`th value sealed in a session.
fn counter_nonce(counter: u64) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[NONCE_BYTES - COUNTER_BYTES..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

fn key_aad(tenant: &TenantId) -> Vec<u8> {
    let mut aad = b"percolate tenant data key\0".to_vec();
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad
}

/// Whether the tenant in `dir` is encrypted (has a key file).
pub(crate) fn is_encrypted(dir: &Path) -> bool {
    dir.join(KEY_FILE).exists()
}

/// Destroys the tenant's data key: overwrites the key file with zeros, syncs, removes it and
/// syncs the directory. Called before the tenant's data is removed, so a crash in between
/// leaves unreadable data, never readable data without its owner.
pub(crate) fn shred_key(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(KEY_FILE);
    let length = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.write_all(&vec![0u8; usize::try_from(length).unwrap_or(0)])?;
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(&path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// A session's nonce counters, striped so that threads sealing one batch together do not take
/// turns at one cache line (that cost as much as the sealing it fed). Stripe `s` hands out
/// `count * STRIPES + s` for count = 0, 1, 2, ...: stripes share no value, and each hands out
/// every value once, so no nonce repeats within a session. A thread keeps to one stripe. The
/// values stay small (a varint of 3 bytes for the first 2^17 seals of each stripe).
#[derive(Default)]
struct Counters([Stripe; STRIPES]);

/// One counter on a cache line of its own.
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

const STRIPES: usize = 16;
/// `log2(STRIPES)`.
const STRIPE_BITS: u32 = 4;

impl Counters {
    fn next(&self) -> u64 {
        self.reserve(1).next().unwrap_or_default()
    }

    /// `n` counter values, taken with one atomic add (a batch takes a chunk's at a time).
    fn reserve(&self, n: u64) -> Nonces {
        static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        let stripe = STRIPE.with(|stripe| *stripe);
        let count = self.0[stripe].0.fetch_add(n, Ordering::Relaxed);
        // 2^60 seals by one thread in one open (decades at a seal per nanosecond) would
        // overflow into the stripe bits.
        assert!(
            count.checked_add(n).is_some_and(|end| end <= 1 << (64 - STRIPE_BITS)),
            "sealing counter exhausted: reopen the tenant"
        );
        Nonces { next: count, end: count + n, stripe: stripe as u64 }
    }
}

/// Counter values reserved by one thread for the seals it is about to begin: each is used
/// once or never.
pub(crate) struct Nonces {
    next: u64,
    end: u64,
    stripe: u64,
}

impl Iterator for Nonces {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            (self.next - 1) << STRIPE_BITS | self.stripe
        })
    }
}

/// One tenant's sealing state: the data key's derivatives, this open's session, the keys of
/// other sessions met while reading, and the tenant id that every seal is bound to.
pub(crate) struct TenantCrypto {
    /// The key session keys are derived from.
    session_root: Zeroizing<[u8; 32]>,
    /// This open's session: values sealed now carry its number (or, before it has one, its
    /// id) and a counter value from `counters`.
    session: Session,
    /// Session numbers registered in the tenant, this session's included.
    numbers: HashMap<u32, [u8; SESSION_BYTES]>,
    counters: Counters,
    /// Keys of the other sessions whose values were read (sessions are tenant opens, so few),
    /// one per [`DOMAINS`] entry.
    sessions: RwLock<HashMap<[u8; SESSION_BYTES], Vec<Aes256Gcm>>>,
    /// Opens values of the first design (`0xA1`).
    legacy: Aes256GcmSiv,
    token_key: Zeroizing<[u8; 32]>,
    tenant: Vec<u8>,
}

/// [`TenantCrypto::seal_append`] for a run of values of one domain: the domain's key looked up
/// once, and nonces reserved [`RunSealer::NONCES`] at a time rather than one by one.
pub(crate) struct RunSealer<'a> {
    crypto: &'a TenantCrypto,
    sealer: DomainKey<'a>,
    nonces: Nonces,
}

/// The sealing key of a domain: this session's, or one derived for a domain percolate does
/// not otherwise seal in.
enum DomainKey<'a> {
    Session(&'a SealingKey),
    Derived(Box<SealingKey>),
}

impl DomainKey<'_> {
    fn get(&self) -> &SealingKey {
        match self {
            DomainKey::Session(sealer) => sealer,
            DomainKey::Derived(sealer) => sealer,
        }
    }
}

impl RunSealer<'_> {
    const NONCES: usize = 64;

    /// Appends to `out` the sealed value of the plaintext `encode` appends to it, as the value
    /// of `key`, encrypted where it was written (while it is in this core's cache).
    ///
    /// # Errors
    /// [`Error::Invalid`] when the plaintext is over GCM's 64 GiB limit; `out` is then as it
    /// was.
    pub(crate) fn seal_append(
        &mut self,
        key: &[u8],
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let counter = match self.nonces.next() {
            Some(counter) => counter,
            None => {
                self.nonces = self.crypto.reserve_nonces(Self::NONCES);
                self.nonces.next().expect("a fresh reservation holds nonces")
            }
        };
        let start = out.len();
        let Some(Unsealed { body, counter }) = self.crypto.begin_seal_at(counter, out, encode)
        else {
            return Ok(());
        };
        let Some(tag) = self.sealer.get().encrypt(&counter_nonce(counter), key, out, body.clone())
        else {
            out.truncate(start);
            return Err(Error::invalid("sealed value", "over the AES-GCM message limit"));
        };
        out[body.end..body.end + TAG_BYTES].copy_from_slice(&tag);
        Ok(())
    }
}

/// A value [`TenantCrypto::begin_seal`] appended to a buffer, waiting for
/// [`TenantCrypto::finish_seal`] to encrypt it there.
pub(crate) struct Unsealed {
    /// Where its plaintext is in the buffer (its tag's room follows).
    body: std::ops::Range<usize>,
    counter: u64,
}

struct Session {
    id: [u8; SESSION_BYTES],
    /// The number it is registered under, once it is.
    number: Option<u32>,
    /// One per [`DOMAINS`] entry, to open values.
    ciphers: Vec<Aes256Gcm>,
    /// The same keys, to seal values (see [`super::gcm`]: values are sealed by percolate's
    /// own AES-256-GCM and opened by `aes-gcm`).
    sealers: Vec<SealingKey>,
}

impl TenantCrypto {
    pub(crate) fn new(tenant: &TenantId, data_key: &[u8; 32]) -> Self {
        let legacy_key =
            Zeroizing::new(blake3::derive_key("percolate 2026 value sealing", data_key));
        let session_root =
            Zeroizing::new(blake3::derive_key("percolate 2026 value sealing sessions", data_key));
        let mut id = [0u8; SESSION_BYTES];
        rand::rng().fill_bytes(&mut id);
        Self {
            session: Session {
                id,
                number: None,
                ciphers: session_ciphers(&session_root, tenant.as_str().as_bytes(), &id),
                sealers: session_sealers(&session_root, tenant.as_str().as_bytes(), &id),
            },
            session_root,
            counters: Counters::default(),
            numbers: HashMap::new(),
            sessions: RwLock::new(HashMap::new()),
            legacy: Aes256GcmSiv::new((&*legacy_key).into()),
            token_key: Zeroizing::new(blake3::derive_key("percolate 2026 name tokens", data_key)),
            tenant: tenant.as_str().as_bytes().to_vec(),
        }
    }

    /// This open's random session id, to register under a session number.
    pub(crate) fn session_id(&self) -> [u8; SESSION_BYTES] {
        self.session.id
    }

    /// Records that this open's session is registered (durably, before anything is sealed in
    /// it) as `number`, and the ids of the sessions registered before it: from now on values
    /// name their session by number.
    pub(crate) fn numbered(&mut self, number: u32, mut earlier: HashMap<u32, [u8; SESSION_BYTES]>) {
        earlier.insert(number, self.session.id);
        self.numbers = earlier;
        self.session.number = Some(number);
    }

    /// Writes the header of the `counter`th seal into `out`; its length.
    fn header(&self, counter: u64, out: &mut [u8; SEAL_HEADER]) -> usize {
        match self.session.number {
            Some(number) => {
                out[0] = SEALED_NUMBERED;
                let at = 1 + put_varint(u64::from(number), &mut out[1..]);
                at + put_varint(counter, &mut out[at..])
            }
            None => {
                out[0] = SEALED_SESSION;
                out[1..1 + SESSION_BYTES].copy_from_slice(&self.session.id);
                out[1 + SESSION_BYTES..].copy_from_slice(&counter.to_be_bytes());
                SEAL_HEADER
            }
        }
    }

    /// Associated data of a first-design (`0xA1`) value: tenant, column family (or file name)
    /// and key, each length-prefixed so no two triples share an encoding. (Session values bind
    /// tenant and domain in their key, and authenticate only the value's key.)
    fn aad(&self, domain: &str, key: &[u8]) -> smallvec::SmallVec<[u8; 128]> {
        let mut aad = smallvec::SmallVec::new();
        for part in [&self.tenant[..], domain.as_bytes(), key] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }

    /// Seals `plaintext` as the value of `key` in `domain` (a column family or file name).
    /// An empty value stays empty: it carries nothing to hide.
    pub(crate) fn seal(&self, domain: &str, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEAL_OVERHEAD + plaintext.len());
        let encode = |out: &mut Vec<u8>| out.extend_from_slice(plaintext);
        match self.seal_append(domain, key, &mut out, encode) {
            Ok(()) => out,
            // Over GCM's 64 GiB message limit: no value of percolate's comes near it.
            Err(_) => Vec::new(),
        }
    }

    /// Appends to `out` the sealed value of the plaintext `encode` appends to it, encrypted
    /// where it was written: [`Self::begin_seal`] and [`Self::finish_seal`] in one.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the plaintext is over GCM's 64 GiB limit; `out` is then as it
    /// was.
    pub(crate) fn seal_append(
        &self,
        domain: &str,
        key: &[u8],
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let start = out.len();
        let Some(unsealed) = self.begin_seal(out, encode) else { return Ok(()) };
        self.finish_seal(domain, key, out, unsealed).inspect_err(|_| out.truncate(start))
    }

    /// The first half of [`Self::seal_append`]: appends to `out` the header of a seal (so its
    /// nonce is fixed here, on this thread), then the plaintext `encode` appends, then room for
    /// the tag. [`Self::finish_seal`] encrypts it where it is, on any thread. `None`, and
    /// nothing appended, for an empty plaintext: an empty value carries nothing to hide and
    /// stays empty.
    pub(crate) fn begin_seal(
        &self,
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Option<Unsealed> {
        self.begin_seal_at(self.counters.next(), out, encode)
    }

    /// Whether plaintexts of about `len` bytes are sealed quickly, by percolate's own
    /// AES-256-GCM (see [`super::gcm`]), on this CPU.
    pub(crate) fn seals_quickly(&self, len: usize) -> bool {
        self.session.sealers.first().is_some_and(|sealer| sealer.is_quick(len))
    }

    /// A sealer for a run of values of `domain` sealed one after another on this thread.
    pub(crate) fn run(&self, domain: &str) -> RunSealer<'_> {
        RunSealer { crypto: self, sealer: self.sealer(domain), nonces: self.counters.reserve(0) }
    }

    /// This session's sealing key for `domain`.
    fn sealer(&self, domain: &str) -> DomainKey<'_> {
        match DOMAINS.iter().position(|d| *d == domain) {
            Some(index) => DomainKey::Session(&self.session.sealers[index]),
            None => DomainKey::Derived(Box::new(SealingKey::new(&domain_key(
                &self.session_root,
                &self.tenant,
                domain,
                &self.session.id,
            )))),
        }
    }

    /// `n` nonces for [`Self::begin_seal_at`], reserved at once.
    pub(crate) fn reserve_nonces(&self, n: usize) -> Nonces {
        self.counters.reserve(n as u64)
    }

    /// [`Self::begin_seal`] with a nonce reserved by [`Self::reserve_nonces`] (on any
    /// thread: the nonce, not the thread, is what must be used once).
    pub(crate) fn begin_seal_at(
        &self,
        counter: u64,
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Option<Unsealed> {
        let start = out.len();
        let mut header = [0; SEAL_HEADER];
        let header_len = self.header(counter, &mut header);
        out.extend_from_slice(&header[..header_len]);
        let body = out.len();
        encode(out);
        if out.len() == body {
            out.truncate(start);
            return None;
        }
        let unsealed = Unsealed { body: body..out.len(), counter };
        out.extend_from_slice(&[0; TAG_BYTES]);
        Some(unsealed)
    }

    /// Encrypts, where it is in `buffer`, a value [`Self::begin_seal`] appended to it, as the
    /// value of `key` in `domain`, and writes its tag into the room kept for it.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the plaintext is over GCM's 64 GiB limit.
    ///
    /// # Panics
    /// When `buffer` is not (a buffer that begins like) the one `unsealed` was appended to.
    pub(crate) fn finish_seal(
        &self,
        domain: &str,
        key: &[u8],
        buffer: &mut [u8],
        unsealed: Unsealed,
    ) -> Result<()> {
        let Unsealed { body, counter } = unsealed;
        let tag_at = body.end;
        let tag = self
            .encrypt(domain, key, counter, buffer, body)
            .ok_or_else(|| Error::invalid("sealed value", "over the AES-GCM message limit"))?;
        buffer[tag_at..tag_at + TAG_BYTES].copy_from_slice(&tag);
        Ok(())
    }

    /// Seals into `out` the plaintext `encode` writes over the slice it is given, which is
    /// `out.len() - SEAL_OVERHEAD` bytes long (at least one): for values whose size is known
    /// before they are encoded, written into a buffer the caller reuses. The header is shorter
    /// than the room [`SEAL_OVERHEAD`] keeps for it: the sealed value is `out[start..]`, and
    /// the start is returned.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `out` has no room for a plaintext, or the plaintext is over
    /// GCM's 64 GiB limit.
    pub(crate) fn seal_into(
        &self,
        domain: &str,
        key: &[u8],
        out: &mut [u8],
        encode: impl FnOnce(&mut [u8]),
    ) -> Result<usize> {
        let too_small = || Error::invalid("sealed value", "no room for a plaintext");
        let body_len =
            out.len().checked_sub(SEAL_OVERHEAD).filter(|n| *n > 0).ok_or_else(too_small)?;
        let counter = self.counters.next();
        let mut header = [0; SEAL_HEADER];
        let header_len = self.header(counter, &mut header);
        let start = SEAL_HEADER - header_len;
        out[start..SEAL_HEADER].copy_from_slice(&header[..header_len]);
        let body = SEAL_HEADER..SEAL_HEADER + body_len;
        encode(&mut out[body.clone()]);
        let tag = self
            .encrypt(domain, key, counter, out, body.clone())
            .ok_or_else(|| Error::invalid("sealed value", "over the AES-GCM message limit"))?;
        out[body.end..].copy_from_slice(&tag);
        Ok(start)
    }

    /// Encrypts `buffer[body]`, the `counter`th seal of this session, in place (the tag's room
    /// follows it); the tag, or `None` for messages over GCM's 64 GiB limit.
    fn encrypt(
        &self,
        domain: &str,
        key: &[u8],
        counter: u64,
        buffer: &mut [u8],
        body: std::ops::Range<usize>,
    ) -> Option<[u8; TAG_BYTES]> {
        self.sealer(domain).get().encrypt(&counter_nonce(counter), key, buffer, body)
    }

    /// Opens a value sealed by [`TenantCrypto::seal`] (in this or any earlier open of the
    /// tenant) for the same tenant, domain and key.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it is not a sealed value or fails authentication (damaged,
    /// tampered with, or moved from another key, column family or tenant).
    pub(crate) fn open(&self, domain: &'static str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        const SESSION_HEADER: usize = SESSION_BYTES + COUNTER_BYTES;
        let failed = || Error::corrupt(domain, "sealed value fails authentication");
        match sealed.split_first() {
            None => Ok(Vec::new()),
            Some((&SEALED_NUMBERED, body)) => {
                let (number, body) = take_varint(body).ok_or_else(failed)?;
                let (counter, rest) = take_varint(body).ok_or_else(failed)?;
                // An unknown number is no session of this tenant: nothing could open it.
                let id = u32::try_from(number)
                    .ok()
                    .and_then(|number| self.numbers.get(&number))
                    .ok_or_else(failed)?;
                self.open_session(domain, key, id, counter, rest)
            }
            Some((&SEALED_SESSION, body)) if body.len() >= SESSION_HEADER + TAG_BYTES => {
                let (header, rest) = body.split_at(SESSION_HEADER);
                let (id, counter) = header.split_at(SESSION_BYTES);
                let id: [u8; SESSION_BYTES] = id.try_into().unwrap_or_default();
                let counter = u64::from_be_bytes(counter.try_into().unwrap_or_default());
                self.open_session(domain, key, &id, counter, rest)
            }
            Some((&SEALED_SIV, body)) if body.len() >= NONCE_BYTES + TAG_BYTES => {
                let (nonce, rest) = body.split_at(NONCE_BYTES);
                let (ciphertext, tag) = rest.split_at(rest.len() - TAG_BYTES);
                let nonce: [u8; NONCE_BYTES] = nonce.try_into().unwrap_or_default();
                let tag: [u8; TAG_BYTES] = tag.try_into().unwrap_or_default();
                let mut plaintext = ciphertext.to_vec();
                self.legacy
                    .decrypt_inout_detached(
                        &Nonce::from(nonce),
                        &self.aad(domain, key),
                        plaintext.as_mut_slice().into(),
                        &tag.into(),
                    )
                    .map_err(|_| failed())?;
                Ok(plaintext)
            }
            Some(_) => Err(Error::corrupt(domain, "value is not sealed")),
        }
    }

    /// Opens `rest` (ciphertext and tag), the `counter`th seal of session `id`.
    fn open_session(
        &self,
        domain: &'static str,
        key: &[u8],
        id: &[u8; SESSION_BYTES],
        counter: u64,
        rest: &[u8],
    ) -> Result<Vec<u8>> {
        let failed = |_| Error::corrupt(domain, "sealed value fails authentication");
        let Some(split) = rest.len().checked_sub(TAG_BYTES) else {
            return Err(Error::corrupt(domain, "sealed value fails authentication"));
        };
        let (ciphertext, tag) = rest.split_at(split);
        let tag: [u8; TAG_BYTES] = tag.try_into().unwrap_or_default();
        let mut plaintext = ciphertext.to_vec();
        let mut decrypt = |cipher: &Aes256Gcm| {
            cipher.decrypt_inout_detached(
                &counter_nonce(counter).into(),
                key,
                plaintext.as_mut_slice().into(),
                &tag.into(),
            )
        };
        let Some(index) = DOMAINS.iter().position(|d| *d == domain) else {
            // Not a domain percolate seals in: derive its key for this value alone.
            let cipher = domain_cipher(&self.session_root, &self.tenant, domain, id);
            decrypt(&cipher).map_err(failed)?;
            return Ok(plaintext);
        };
        if *id == self.session.id {
            decrypt(&self.session.ciphers[index]).map_err(failed)?;
        } else {
            let known = self.sessions.read().get(id).map(|c| decrypt(&c[index]));
            match known {
                Some(result) => result.map_err(failed)?,
                None => {
                    let ciphers = session_ciphers(&self.session_root, &self.tenant, id);
                    decrypt(&ciphers[index]).map_err(failed)?;
                    // Only authenticated sessions are cached: forged ids cannot fill it.
                    let mut sessions = self.sessions.write();
                    if sessions.len() >= SESSION_CACHE {
                        sessions.clear();
                    }
                    sessions.insert(*id, ciphers);
                }
            }
        }
        Ok(plaintext)
    }

    /// Seals as the first design did (AES-256-GCM-SIV, random nonce): for tests that check
    /// such values still open.
    #[cfg(test)]
    fn seal_legacy(&self, domain: &str, key: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let mut body = plaintext.to_vec();
        let tag = self
            .legacy
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &self.aad(domain, key),
                body.as_mut_slice().into(),
            )
            .unwrap();
        [&[SEALED_SIV][..], &nonce, &body, &tag].concat()
    }

    /// A 16-byte keyed token standing for `text` in a key (`domain` separates token uses).
    pub(crate) fn token(&self, domain: &[u8], text: &[u8]) -> [u8; 16] {
        let mut hasher = blake3::Hasher::new_keyed(&self.token_key);
        hasher.update(&(domain.len() as u32).to_be_bytes());
        hasher.update(domain);
        hasher.update(text);
        let mut token = [0u8; 16];
        token.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        token
    }

    /// The tokens a name word is indexed under: one per prefix of 1 to
    /// `NAME_TOKEN_CHARS` characters, so a query word finds every word it starts.
    pub(crate) fn name_tokens<'a>(&'a self, word: &'a str) -> impl Iterator<Item = [u8; 16]> + 'a {
        let ends = word.char_indices().skip(1).map(|(i, _)| i).chain(std::iter::once(word.len()));
        ends.take(NAME_TOKEN_CHARS).map(move |end| self.token(b"name", &word.as_bytes()[..end]))
    }

    /// The token a query word looks up: that of its first `NAME_TOKEN_CHARS` characters.
    pub(crate) fn name_query_token(&self, word: &str) -> [u8; 16] {
        let end = word.char_indices().nth(NAME_TOKEN_CHARS).map_or(word.len(), |(i, _)| i);
        self.token(b"name", &word.as_bytes()[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).unwrap()
    }

    #[test]
    fn sealed_values_open_only_at_their_own_key() {
        let dir = tempfile::tempdir().unwrap();
        let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
        let crypto = kek.create_tenant_key(dir.path(), &tenant("a")).unwrap();
        let sealed = crypto.seal("resources", b"k1", b"hello");
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(crypto.open("resources", b"k1", &sealed).unwrap(), b"hello");
        assert!(crypto.open("resources", b"k2", &sealed).is_err());
        assert!(crypto.open("entities", b"k1", &sealed).is_err());
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x40;
            assert!(crypto.open("resources", b"k1", &tampered).is_err(), "byte {i}");
        }
        for cut in 0..sealed.len() {
            assert!(crypto.open("resources", b"k1", &sealed[..cut]).is_err() || cut == 0);
        }
    }

    #[test]
    fn values_sealed_into_a_buffer_open_like_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
        let crypto = kek.create_tenant_key(dir.path(), &tenant("a")).unwrap();
        // Stale bytes in the buffer are overwritten, whatever they were.
        let mut out = vec![0xEE; 5 + SEAL_OVERHEAD];
        crypto
            .seal_into("embeddings", b"k1", &mut out, |body| body.copy_from_slice(b"hello"))
            .unwrap();
        assert_eq!(crypto.open("embeddings", b"k1", &out).unwrap(), b"hello");
        assert!(crypto.open("embeddings", b"k2", &out).is_err());
        assert!(crypto.open("resources", b"k1", &out).is_err());
        // Two seals of the same value never share a nonce.
        let mut again = vec![0; out.len()];
        crypto
            .seal_into("embeddings", b"k1", &mut again, |body| body.copy_from_slice(b"hello"))
            .unwrap();
        assert_ne!(again, out);
        // No room for a plaintext: an error, not a panic or an empty seal.
        for len in [0, SEAL_OVERHEAD - 1, SEAL_OVERHEAD] {
            let mut small = vec![0; len];
            assert!(crypto.seal_into("embeddings", b"k1", &mut small, |_| {}).is_err(), "{len}");
        }
    }

    /// A run of values sealed one after another into one buffer: each opens at its own key
    /// only, empty ones stay empty, no two share a nonce (across reservations, and with
    /// values sealed singly meanwhile), and a domain outside [`DOMAINS`] seals too.
    #[test]
    fn values_sealed_in_a_run_open_like_any_other() {
        let mut crypto = TenantCrypto::new(&tenant("a"), &[3u8; 32]);
        crypto.numbered(5, HashMap::new());
        // Session 5, then the value's counter.
        let counter_of = |sealed: &[u8]| {
            let (number, rest) = take_varint(&sealed[1..]).unwrap();
            assert_eq!(number, 5);
            take_varint(rest).unwrap().0
        };
        let mut counters = std::collections::HashSet::new();
        for domain in ["resources", "not-a-column-family"] {
            let mut run = crypto.run(domain);
            let mut out = Vec::new();
            let mut ends = Vec::new();
            for i in 0..3 * RunSealer::NONCES {
                let plaintext = if i % 7 == 3 { Vec::new() } else { vec![i as u8; i % 150] };
                let key = (i as u32).to_be_bytes();
                run.seal_append(&key, &mut out, |out| out.extend_from_slice(&plaintext)).unwrap();
                ends.push((out.len(), plaintext, key));
                let single = crypto.seal(domain, &key, b"single");
                assert!(counters.insert(counter_of(&single)), "single seal {i}");
            }
            let mut start = 0;
            for (end, plaintext, key) in ends {
                let sealed = &out[start..end];
                assert_eq!(sealed.is_empty(), plaintext.is_empty());
                if !sealed.is_empty() {
                    let domain = static_domain(domain);
                    assert_eq!(crypto.open(domain, &key, sealed).unwrap(), plaintext);
                    assert!(crypto.open(domain, b"other", sealed).is_err());
                    assert!(counters.insert(counter_of(sealed)), "a counter used twice");
                }
                start = end;
            }
        }
    }

    fn static_domain(domain: &str) -> &'static str {
        DOMAINS.iter().copied().find(|d| *d == domain).unwrap_or("not-a-column-family")
    }

    /// Bytes sealed by the build that used `aes-gcm` 0.10 / `aes-gcm-siv` 0.11 (before the move
    /// to the 0.11 / 0.12 releases with 4-block GHASH): the stored format must not drift with
    /// a dependency.
    #[test]
    fn values_sealed_by_an_earlier_build_open() {
        let crypto = TenantCrypto::new(&tenant("kat-tenant"), &[0x5a; 32]);
        let session = unhex(concat!(
            "a2a2fc520e6421e8ec2144fa16c049543b000000000000000009ab8d67a17475bd3aae331723c72aa6",
            "8e7b883e947126c0cbe02299e82a70e873bd2907dc8266bd203af4facc286daaebbdaf165c7b8f2abd",
            "6dfcb6e9c76f0426",
        ));
        let legacy =
            unhex("a10dda6eb143eaae7890729fce5df7298db680b2fbd2014eb012c49b6efe10c24de483");
        assert_eq!(
            crypto.open("embeddings", b"key-1", &session).unwrap(),
            b"a value sealed by percolate 0.1 with aes-gcm 0.10"
        );
        assert_eq!(crypto.open("resources", b"key-2", &legacy).unwrap(), b"legacy");
        let other = TenantCrypto::new(&tenant("kat-tenant"), &[0x5b; 32]);
        assert!(other.open("embeddings", b"key-1", &session).is_err());
    }

    #[test]
    fn values_of_earlier_sessions_and_of_the_first_design_open() {
        let key = [9u8; 32];
        let earlier = TenantCrypto::new(&tenant("a"), &key);
        let now = TenantCrypto::new(&tenant("a"), &key);
        assert_ne!(earlier.session.id, now.session.id, "each open is a new session");
        let sealed = earlier.seal("resources", b"k", b"from an earlier open");
        let legacy = earlier.seal_legacy("resources", b"k", b"from the first design");
        for _ in 0..2 {
            // The second round opens with the cached session key.
            assert_eq!(now.open("resources", b"k", &sealed).unwrap(), b"from an earlier open");
            assert_eq!(now.open("resources", b"k", &legacy).unwrap(), b"from the first design");
            assert!(now.open("resources", b"j", &sealed).is_err());
            assert!(now.open("resources", b"j", &legacy).is_err());
        }
        assert!(is_sealed(&sealed) && is_sealed(&legacy) && !is_sealed(b"\x01plain"));
        // Another data key derives another session key from the same session id.
        let stranger = TenantCrypto::new(&tenant("a"), &[8u8; 32]);
        assert!(stranger.open("resources", b"k", &sealed).is_err());
        assert!(stranger.open("resources", b"k", &legacy).is_err());
    }

    #[test]
    fn numbered_values_are_short_and_open_in_later_sessions_only_by_their_number() {
        let key = [3u8; 32];
        let mut first = TenantCrypto::new(&tenant("a"), &key);
        first.numbered(0, HashMap::new());
        let sealed = first.seal("resources", b"k", b"hello");
        assert_eq!(sealed[0], SEALED_NUMBERED);
        // Format byte, session 0, a counter under 2^14, the tag: 21 to 22 bytes, not 41.
        assert!(sealed.len() - 5 <= 1 + 1 + 3 + TAG_BYTES, "{}", sealed.len());
        assert_eq!(first.open("resources", b"k", &sealed).unwrap(), b"hello");
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x40;
            assert!(first.open("resources", b"k", &tampered).is_err(), "byte {i}");
        }
        for cut in 1..sealed.len() {
            assert!(first.open("resources", b"k", &sealed[..cut]).is_err(), "cut {cut}");
        }
        // The same counter written in a padded (non-shortest) varint is refused.
        let (_, after_number) = take_varint(&sealed[2..]).unwrap();
        let counter_len = sealed.len() - 2 - after_number.len();
        let mut padded = sealed[..2].to_vec();
        padded.extend(sealed[2..1 + 2 + counter_len - 1].iter().copied());
        padded.push(sealed[2 + counter_len - 1] | 0x80);
        padded.push(0);
        padded.extend_from_slice(after_number);
        assert!(first.open("resources", b"k", &padded).is_err());

        // A later open knows session 0 by the id registered for it.
        let mut later = TenantCrypto::new(&tenant("a"), &key);
        later.numbered(1, HashMap::from([(0, first.session_id())]));
        assert_eq!(later.open("resources", b"k", &sealed).unwrap(), b"hello");
        let newer = later.seal("resources", b"k", b"again");
        assert_eq!(later.open("resources", b"k", &newer).unwrap(), b"again");
        assert!(first.open("resources", b"k", &newer).is_err(), "session 1 is unknown to it");
        // A restored backup hands number 0 out again, to a new random id: another key, so the
        // old value does not open under it (and no key and nonce pair is ever reused).
        let mut restored = TenantCrypto::new(&tenant("a"), &key);
        restored.numbered(0, HashMap::new());
        assert!(restored.open("resources", b"k", &sealed).is_err());
        // Values that name their session by id (earlier builds) still open.
        let by_id = TenantCrypto::new(&tenant("a"), &key);
        let old = by_id.seal("resources", b"k", b"by id");
        assert_eq!(old[0], SEALED_SESSION);
        assert_eq!(later.open("resources", b"k", &old).unwrap(), b"by id");
    }

    #[test]
    fn numbered_values_sealed_into_a_buffer_start_where_they_say() {
        let mut crypto = TenantCrypto::new(&tenant("a"), &[4u8; 32]);
        crypto.numbered(7, HashMap::new());
        let mut out = vec![0xEE; 5 + SEAL_OVERHEAD];
        let start = crypto
            .seal_into("embeddings", b"k1", &mut out, |body| body.copy_from_slice(b"hello"))
            .unwrap();
        assert!(start > 0);
        assert_eq!(crypto.open("embeddings", b"k1", &out[start..]).unwrap(), b"hello");
        assert!(crypto.open("embeddings", b"k1", &out[start - 1..]).is_err());
    }

    /// A numbered value as this layout writes it (session 3, counter 300): the stored format
    /// must not drift.
    #[test]
    fn a_numbered_value_of_this_layout_opens() {
        // Made by hand: the header and cipher of session 3 (id 0x11...), counter 300.
        let id = [0x11; SESSION_BYTES];
        let mut writer = TenantCrypto::new(&tenant("kat-tenant"), &[0x5a; 32]);
        writer.session.id = id;
        writer.session.ciphers = session_ciphers(&writer.session_root, b"kat-tenant", &id);
        writer.session.sealers = session_sealers(&writer.session_root, b"kat-tenant", &id);
        writer.numbered(3, HashMap::new());
        let mut header = [0; SEAL_HEADER];
        let len = writer.header(300, &mut header);
        let mut body = [&b"numbered"[..], &[0; TAG_BYTES]].concat();
        let tag = writer.encrypt("resources", b"key-3", 300, &mut body, 0..8).unwrap();
        let made = [&header[..len], &body[..8], &tag].concat();
        let hex: String = made.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, NUMBERED_KAT);
        assert_eq!(&made[..4], &[SEALED_NUMBERED, 3, 0xAC, 0x02]);
        // A later open that knows session 3 by its id opens it.
        let mut reader = TenantCrypto::new(&tenant("kat-tenant"), &[0x5a; 32]);
        reader.numbered(4, HashMap::from([(3, id)]));
        assert_eq!(reader.open("resources", b"key-3", &unhex(NUMBERED_KAT)).unwrap(), b"numbered");
    }

    const NUMBERED_KAT: &str = "a303ac02af231545083274c9c2001f7486a5a30b2a9c2e2f28e8da63";

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn varints_have_one_encoding() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = [0; 10];
            let len = put_varint(value, &mut out);
            assert_eq!(take_varint(&out[..len]), Some((value, &[][..])), "{value}");
            assert_eq!(take_varint(&out[..len - 1]), None, "cut {value}");
        }
        assert_eq!(take_varint(&[0x80, 0x00]), None, "padded zero");
        assert_eq!(take_varint(&[0xAC, 0x82, 0x00]), None, "padded 300");
        assert_eq!(take_varint(&[0xFF; 9].iter().copied().chain([0x02]).collect::<Vec<_>>()), None);
        assert_eq!(take_varint(&[0x80; 11]), None);
        assert_eq!(take_varint(&[]), None);
    }

    #[test]
    fn counters_of_threads_sealing_together_never_meet() {
        let counters = Counters::default();
        let seen: Vec<u64> = std::thread::scope(|scope| {
            // Half take one value at a time, half blocks of 32 (of which they use 31).
            let threads: Vec<_> = (0..2 * STRIPES)
                .map(|thread| {
                    let counters = &counters;
                    scope.spawn(move || match thread % 2 {
                        0 => (0..1000).map(|_| counters.next()).collect::<Vec<_>>(),
                        _ => (0..32).flat_map(|_| counters.reserve(32).take(31)).collect(),
                    })
                })
                .collect();
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let unique: std::collections::HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len());
    }

    #[test]
    fn nonces_never_repeat_within_a_session() {
        let crypto = TenantCrypto::new(&tenant("a"), &[1u8; 32]);
        let a = crypto.seal("resources", b"k", b"same");
        let b = crypto.seal("resources", b"k", b"same");
        assert_ne!(a, b, "the same value sealed twice differs");
        assert_eq!(a[..1 + SESSION_BYTES], b[..1 + SESSION_BYTES]);
        assert_ne!(
            a[1 + SESSION_BYTES..][..COUNTER_BYTES],
            b[1 + SESSION_BYTES..][..COUNTER_BYTES]
        );
    }

    #[test]
    fn a_value_moved_to_another_tenant_fails_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let kek = MasterKey::from_bytes([7; 32]).kek(dir.path()).unwrap();
        let a = kek.create_tenant_key(&dir.path().join(""), &tenant("a")).unwrap();
        let sealed = a.seal("resources", b"k", b"secret");
        let other = tempfile::tempdir().unwrap();
        let b = kek.create_tenant_key(other.path(), &tenant("b")).unwrap();
        assert!(b.open("resources", b"k", &sealed).is_err());
    }

    #[test]
    fn wrong_master_key_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let old = MasterKey::from_text("correct horse battery staple").unwrap();
        let old_kek = old.kek(dir.path()).unwrap();
        let sealed =
            old_kek.create_tenant_key(dir.path(), &tenant("t")).unwrap().seal("m", b"", b"x");
        let wrong = MasterKey::from_text("wrong horse").unwrap().kek(dir.path()).unwrap();
        assert!(matches!(wrong.open_tenant_key(dir.path(), &tenant("t")), Err(Error::Crypto(_))));
        // The same passphrase derives the same key again (the salt persists).
        let again = old.kek(dir.path()).unwrap();
        assert_eq!(
            again
                .open_tenant_key(dir.path(), &tenant("t"))
                .unwrap()
                .open("m", b"", &sealed)
                .unwrap(),
            b"x"
        );
        let new = MasterKey::from_bytes([9; 32]).kek(dir.path()).unwrap();
        old_kek.rewrap(&new, dir.path(), &tenant("t")).unwrap();
        old_kek.rewrap(&new, dir.path(), &tenant("t")).unwrap();
        assert!(old_kek.open_tenant_key(dir.path(), &tenant("t")).is_err());
        let reopened = new.open_tenant_key(dir.path(), &tenant("t")).unwrap();
        assert_eq!(reopened.open("m", b"", &sealed).unwrap(), b"x");
        // A key file bound to another tenant name does not open.
        assert!(new.open_tenant_key(dir.path(), &tenant("u")).is_err());
    }

    #[test]
    fn name_tokens_cover_every_short_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let kek = MasterKey::from_bytes([1; 32]).kek(dir.path()).unwrap();
        let crypto = kek.create_tenant_key(dir.path(), &tenant("n")).unwrap();
        let tokens: Vec<_> = crypto.name_tokens("éléphantesque").collect();
        assert_eq!(tokens.len(), NAME_TOKEN_CHARS);
        for query in ["é", "élé", "éléphan", "éléphant", "éléphantesque", "éléphantes"] {
            assert!(tokens.contains(&crypto.name_query_token(query)), "{query}");
        }
        assert!(!tokens.contains(&crypto.name_query_token("x")));
    }

    #[test]
    fn master_key_text_forms() {
        let hex = "00".repeat(31) + "ff";
        assert!(matches!(MasterKey::from_text(&hex).unwrap().0, Secret::Key(_)));
        assert!(matches!(MasterKey::from_text("a phrase").unwrap().0, Secret::Passphrase(_)));
        assert!(MasterKey::from_text("  \n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [0x80u8; 32]).unwrap();
        assert!(matches!(MasterKey::from_file(&raw).unwrap().0, Secret::Key(_)));
        let text = dir.path().join("text");
        std::fs::write(&text, format!("{hex}\n")).unwrap();
        assert!(matches!(MasterKey::from_file(&text).unwrap().0, Secret::Key(_)));
        assert!(matches!(MasterKey::from_file(&dir.path().join("missing")), Err(Error::Crypto(_))));
    }
}
