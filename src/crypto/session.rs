//! Sealing and opening values: a tenant's session keys, nonce counters, the sealed layout and
//! keyed name tokens. Owns no file. Every cipher operation is `ring`'s AES-256-GCM; this
//! module only derives keys and lays out bytes.
//!
//! Sealed layout: [`SEALED`], the session number and the counter (LEB128 varints), the
//! ciphertext, the tag (16 bytes). The nonce is the counter. The key is derived from the
//! tenant's data key, the tenant id, the domain (column family or file name), the session's
//! random id and its durable number, so neither a repeated id nor a repeated number alone
//! repeats a key, and within a session no counter repeats. A session must be registered
//! under its number ([`TenantCrypto::numbered`]) before it seals anything.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::RwLock;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use zeroize::Zeroizing;

use super::{NAME_TOKEN_CHARS, SEAL_HEADER, SEALED, SESSION_BYTES, SESSION_CACHE, TAG_BYTES};
use crate::error::{Error, Result};
use crate::model::TenantId;

/// Whether `value` is a sealed value, by its first byte.
pub(crate) fn is_sealed(value: &[u8]) -> bool {
    value.first() == Some(&SEALED)
}

/// The domains a store seals values in (its column families), named by the provider: each
/// gets its session key derived once per open; any other domain still seals, with its key
/// derived per value.
pub(crate) type Domains = &'static [&'static str];

/// A random session id.
pub(crate) type SessionId = [u8; SESSION_BYTES];

/// The AES-256-GCM key of session (`id`, `number`) for values of `tenant` in `domain`.
/// Binding tenant and domain into the key leaves only the value's own key to authenticate
/// per value.
fn domain_key(
    root: &[u8; 32],
    tenant: &[u8],
    domain: &str,
    id: &SessionId,
    number: u32,
) -> LessSafeKey {
    let mut hasher = blake3::Hasher::new_derive_key("percolate value session key v1");
    hasher.update(root);
    for part in [tenant, domain.as_bytes()] {
        hasher.update(&(part.len() as u32).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(id);
    hasher.update(&number.to_be_bytes());
    let bytes = Zeroizing::new(*hasher.finalize().as_bytes());
    // 32 bytes are always an AES-256 key: `new` fails only on a wrong length.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes[..]).expect("a 32-byte key"))
}

/// The keys of a session for every one of `domains`, in order.
fn session_keys(
    domains: Domains,
    root: &[u8; 32],
    tenant: &[u8],
    id: &SessionId,
    number: u32,
) -> Arc<[LessSafeKey]> {
    domains.iter().map(|domain| domain_key(root, tenant, domain, id, number)).collect()
}

/// Writes `value` as a LEB128 varint at the front of `out` (room for 10 bytes); its length.
pub(crate) fn put_varint(mut value: u64, out: &mut [u8]) -> usize {
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
pub(crate) fn take_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
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
fn counter_nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// A session's nonce counters, striped so that threads sealing one batch together do not take
/// turns at one cache line. Stripe `s` hands out `count * STRIPES + s` for count = 0, 1, 2,
/// ...: stripes share no value, and each hands out every value once, so no nonce repeats
/// within a session. A thread keeps to one stripe.
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
    /// `n` counter values, taken with one atomic add.
    ///
    /// # Errors
    /// [`Error::Crypto`] once a stripe has handed out 2^60 values (decades of sealing at one
    /// value a nanosecond): the tenant must be reopened, which starts a new session.
    fn reserve(&self, n: u64) -> Result<Nonces> {
        static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        }
        let stripe = STRIPE.with(|stripe| *stripe);
        let count = self.0[stripe].0.fetch_add(n, Ordering::Relaxed);
        if count.checked_add(n).is_none_or(|end| end > 1 << (64 - STRIPE_BITS)) {
            return Err(Error::Crypto("sealing counter exhausted: reopen the tenant".into()));
        }
        Ok(Nonces { next: count, end: count + n, stripe: stripe as u64 })
    }
}

/// Counter values reserved by one thread for the seals it is about to make: each is used
/// once or never.
struct Nonces {
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

/// This open's session once it is registered: its number and its keys.
struct Session {
    number: u32,
    /// One per entry of the tenant's domains.
    keys: Arc<[LessSafeKey]>,
}

/// One tenant's sealing state: the data key's derivatives, this open's session, the keys of
/// other sessions met while reading, and the tenant id that every seal is bound to.
pub(crate) struct TenantCrypto {
    /// The key session keys are derived from.
    session_root: Zeroizing<[u8; 32]>,
    token_key: Zeroizing<[u8; 32]>,
    tenant: Vec<u8>,
    domains: Domains,
    /// This open's random id, drawn from the operating system.
    pub(super) id: SessionId,
    /// Set by [`Self::numbered`]; nothing is sealed before.
    session: Option<Session>,
    /// Session numbers registered in the tenant, this session's included. A reader learns
    /// more while it is open ([`Self::learn_sessions`]).
    numbers: RwLock<HashMap<u32, SessionId>>,
    counters: Counters,
    /// Keys of the other sessions whose values were read (sessions are tenant opens, so few).
    others: RwLock<HashMap<u32, Arc<[LessSafeKey]>>>,
}

impl TenantCrypto {
    /// The sealing state of `tenant` under `data_key`, with a new random session id.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the operating system has no randomness to give.
    pub(crate) fn new(tenant: &TenantId, data_key: &[u8; 32], domains: Domains) -> Result<Self> {
        let mut id = [0u8; SESSION_BYTES];
        super::fill_random(&mut id)?;
        Ok(Self {
            session_root: Zeroizing::new(blake3::derive_key(
                "percolate value sealing sessions v1",
                data_key,
            )),
            token_key: Zeroizing::new(blake3::derive_key("percolate name tokens v1", data_key)),
            tenant: tenant.as_str().as_bytes().to_vec(),
            domains,
            id,
            session: None,
            numbers: RwLock::new(HashMap::new()),
            counters: Counters::default(),
            others: RwLock::new(HashMap::new()),
        })
    }

    /// This open's random session id, to register under a session number.
    pub(crate) fn session_id(&self) -> SessionId {
        self.id
    }

    /// Records that this open's session is registered (durably, before anything is sealed in
    /// it) as `number`, and the ids of the sessions registered before it. Sealing is possible
    /// from now on.
    pub(crate) fn numbered(&mut self, number: u32, mut earlier: HashMap<u32, SessionId>) {
        earlier.insert(number, self.id);
        *self.numbers.get_mut() = earlier;
        let keys = session_keys(self.domains, &self.session_root, &self.tenant, &self.id, number);
        self.session = Some(Session { number, keys });
    }

    /// Records the sessions registered in the tenant so far, without a session of this open:
    /// a reader opens values of every writer session and seals nothing.
    pub(crate) fn learn_sessions(&self, registered: HashMap<u32, SessionId>) {
        self.numbers.write().extend(registered);
    }

    fn session(&self) -> Result<&Session> {
        self.session.as_ref().ok_or_else(|| Error::Crypto("session not registered".into()))
    }

    /// This session's key for `domain`.
    fn key_for(&self, domain: &str) -> Result<DomainKey<'_>> {
        let session = self.session()?;
        Ok(match self.domains.iter().position(|d| *d == domain) {
            Some(index) => DomainKey::Session(&session.keys[index]),
            None => DomainKey::Derived(Box::new(domain_key(
                &self.session_root,
                &self.tenant,
                domain,
                &self.id,
                session.number,
            ))),
        })
    }

    /// Seals `plaintext` as the value of `key` in `domain` (a column family or file name).
    /// An empty value stays empty: it carries nothing to hide.
    ///
    /// # Errors
    /// [`Error::Crypto`] before the session is registered, or when the cipher refuses the
    /// value (over GCM's 64 GiB limit).
    pub(crate) fn seal(&self, domain: &str, key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(SEAL_HEADER + TAG_BYTES + plaintext.len());
        self.run(domain)?.seal_append(key, &mut out, |out| out.extend_from_slice(plaintext))?;
        Ok(out)
    }

    /// A sealer for a run of values of `domain` sealed one after another on this thread: the
    /// domain's key looked up once, nonces reserved [`RunSealer::NONCES`] at a time.
    ///
    /// # Errors
    /// [`Error::Crypto`] before the session is registered.
    pub(crate) fn run(&self, domain: &str) -> Result<RunSealer<'_>> {
        let number = self.session()?.number;
        let nonces = self.counters.reserve(0)?;
        Ok(RunSealer { crypto: self, key: self.key_for(domain)?, number, nonces })
    }

    /// Seals into `out` the plaintext `encode` writes over the slice it is given, which is
    /// `out.len() - SEAL_OVERHEAD` bytes long (at least one): for values whose size is known
    /// before they are encoded, written into a buffer the caller reuses. The header is shorter
    /// than the room [`super::SEAL_OVERHEAD`] keeps for it: the sealed value is
    /// `out[start..]`, and the start is returned.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `out` has no room for a plaintext; [`Error::Crypto`] as
    /// [`Self::seal`].
    pub(crate) fn seal_into(
        &self,
        domain: &str,
        key: &[u8],
        out: &mut [u8],
        encode: impl FnOnce(&mut [u8]),
    ) -> Result<usize> {
        let too_small = || Error::invalid("sealed value", "no room for a plaintext");
        let body_len = (out.len().checked_sub(SEAL_HEADER + TAG_BYTES))
            .filter(|n| *n > 0)
            .ok_or_else(too_small)?;
        let mut run = self.run(domain)?;
        let counter = run.next_counter()?;
        let mut header = [0; SEAL_HEADER];
        let header_len = run.header(counter, &mut header);
        let start = SEAL_HEADER - header_len;
        out[start..SEAL_HEADER].copy_from_slice(&header[..header_len]);
        let body = SEAL_HEADER..SEAL_HEADER + body_len;
        encode(&mut out[body.clone()]);
        let tag = run.encrypt(counter, key, &mut out[body.clone()])?;
        out[body.end..].copy_from_slice(&tag);
        Ok(start)
    }

    /// Opens a value sealed by [`TenantCrypto::seal`] (in this or any earlier open of the
    /// tenant) for the same tenant, domain and key.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when it is not a sealed value or fails authentication (damaged,
    /// tampered with, or moved from another key, column family or tenant).
    pub(crate) fn open(&self, domain: &'static str, key: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        let failed = || Error::corrupt(domain, "sealed value fails authentication");
        let body = match sealed.split_first() {
            None => return Ok(Vec::new()),
            Some((&SEALED, body)) => body,
            Some(_) => return Err(Error::corrupt(domain, "value is not sealed")),
        };
        let (number, body) = take_varint(body).ok_or_else(failed)?;
        let (counter, rest) = take_varint(body).ok_or_else(failed)?;
        // An unknown number is no session of this tenant: nothing could open it.
        let number = u32::try_from(number).map_err(|_| failed())?;
        let id = *self.numbers.read().get(&number).ok_or_else(failed)?;
        if rest.len() < TAG_BYTES {
            return Err(failed());
        }
        let mut plaintext = rest.to_vec();
        let decrypt = |key_: &LessSafeKey, buffer: &mut Vec<u8>| {
            let len = key_
                .open_in_place(counter_nonce(counter), Aad::from(key), buffer)
                .map_err(|_| failed())?
                .len();
            buffer.truncate(len);
            Ok::<(), Error>(())
        };
        let Some(index) = self.domains.iter().position(|d| *d == domain) else {
            // Not a domain with session keys: derive its key for this value alone.
            let derived = domain_key(&self.session_root, &self.tenant, domain, &id, number);
            decrypt(&derived, &mut plaintext)?;
            return Ok(plaintext);
        };
        if let Some(session) = self.session.as_ref().filter(|s| s.number == number) {
            decrypt(&session.keys[index], &mut plaintext)?;
            return Ok(plaintext);
        }
        let known = self.others.read().get(&number).cloned();
        let keys = match known {
            Some(keys) => keys,
            None => {
                let keys =
                    session_keys(self.domains, &self.session_root, &self.tenant, &id, number);
                let mut others = self.others.write();
                if others.len() >= SESSION_CACHE {
                    others.clear();
                }
                others.insert(number, Arc::clone(&keys));
                keys
            }
        };
        decrypt(&keys[index], &mut plaintext)?;
        Ok(plaintext)
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

/// The key of a domain: this session's, or one derived for a domain without session keys.
enum DomainKey<'a> {
    Session(&'a LessSafeKey),
    Derived(Box<LessSafeKey>),
}

impl DomainKey<'_> {
    fn get(&self) -> &LessSafeKey {
        match self {
            DomainKey::Session(key) => key,
            DomainKey::Derived(key) => key,
        }
    }
}

/// [`TenantCrypto`]'s sealing of a run of values of one domain on one thread.
pub(crate) struct RunSealer<'a> {
    crypto: &'a TenantCrypto,
    key: DomainKey<'a>,
    number: u32,
    nonces: Nonces,
}

impl RunSealer<'_> {
    /// Nonces reserved at a time.
    const NONCES: u64 = 64;

    fn next_counter(&mut self) -> Result<u64> {
        if let Some(counter) = self.nonces.next() {
            return Ok(counter);
        }
        self.nonces = self.crypto.counters.reserve(Self::NONCES)?;
        self.nonces.next().ok_or_else(|| Error::Crypto("no nonce reserved".into()))
    }

    /// Writes the header of the `counter`th seal into `out`; its length.
    fn header(&self, counter: u64, out: &mut [u8; SEAL_HEADER]) -> usize {
        out[0] = SEALED;
        let at = 1 + put_varint(u64::from(self.number), &mut out[1..]);
        at + put_varint(counter, &mut out[at..])
    }

    /// Encrypts `body` in place as the `counter`th seal, the value of `key`; its tag.
    fn encrypt(&self, counter: u64, key: &[u8], body: &mut [u8]) -> Result<[u8; TAG_BYTES]> {
        let tag = (self.key.get())
            .seal_in_place_separate_tag(counter_nonce(counter), Aad::from(key), body)
            .map_err(|_| Error::Crypto("the cipher refused a value (over 64 GiB?)".into()))?;
        let mut out = [0u8; TAG_BYTES];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Appends to `out` the sealed value of the plaintext `encode` appends to it, as the value
    /// of `key`, encrypted where it was written (while it is in this core's cache). An empty
    /// plaintext appends nothing: an empty value stays empty.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the cipher refuses the value; `out` is then as it was.
    pub(crate) fn seal_append(
        &mut self,
        key: &[u8],
        out: &mut Vec<u8>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<()> {
        let counter = self.next_counter()?;
        let start = out.len();
        let mut header = [0; SEAL_HEADER];
        let header_len = self.header(counter, &mut header);
        out.extend_from_slice(&header[..header_len]);
        let body = out.len();
        encode(out);
        if out.len() == body {
            out.truncate(start);
            return Ok(());
        }
        match self.encrypt(counter, key, &mut out[body..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }
}

/// The session number and counter a sealed value names; `None` for anything else.
#[cfg(feature = "testing")]
pub(crate) fn sealed_header(value: &[u8]) -> Option<(u32, u64)> {
    let (&SEALED, body) = value.split_first()? else { return None };
    let (number, body) = take_varint(body)?;
    let (counter, _) = take_varint(body)?;
    Some((u32::try_from(number).ok()?, counter))
}
