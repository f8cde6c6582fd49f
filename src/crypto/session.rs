//! Sealing and opening values: a tenant's session keys, nonce counters, the sealed layout, and
//! keyed name tokens. Owns no file.

#[allow(unused_imports)]
use super::*;

/// Whether `value` is a sealed value (of either design), by its first byte.
pub(crate) fn is_sealed(value: &[u8]) -> bool {
    matches!(value.first(), Some(&(SEALED_SIV | SEALED_SESSION | SEALED_NUMBERED)))
}

/// The domains a store seals values in (its column families and file names), named by the
/// provider: each gets its session key derived once per open; any other domain still seals,
/// with its key derived per value.
pub(crate) type Domains = &'static [&'static str];

/// The AES-256-GCM key of session `id` for values of `tenant` in `domain`. Binding tenant and
/// domain into the key rather than into every value's associated data leaves only the value's
/// key to authenticate per value: 16 bytes instead of ~45, two GHASH blocks fewer per seal and
/// open (~45 ns of a ~200 ns open).
pub(crate) fn domain_key(
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
pub(crate) fn domain_cipher(
    root: &[u8; 32],
    tenant: &[u8],
    domain: &str,
    id: &[u8; SESSION_BYTES],
) -> Aes256Gcm {
    Aes256Gcm::new((&*domain_key(root, tenant, domain, id)).into())
}

/// The keys of session `id` for every one of `domains`.
pub(crate) fn session_ciphers(
    domains: Domains,
    root: &[u8; 32],
    tenant: &[u8],
    id: &[u8; SESSION_BYTES],
) -> Vec<Aes256Gcm> {
    domains.iter().map(|domain| domain_cipher(root, tenant, domain, id)).collect()
}

/// The same keys as [`session_ciphers`], to seal with.
pub(crate) fn session_sealers(
    domains: Domains,
    root: &[u8; 32],
    tenant: &[u8],
    id: &[u8; SESSION_BYTES],
) -> Vec<SealingKey> {
    domains.iter().map(|domain| SealingKey::new(&domain_key(root, tenant, domain, id))).collect()
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
pub(crate) fn counter_nonce(counter: u64) -> [u8; NONCE_BYTES] {
    let mut nonce = [0u8; NONCE_BYTES];
    nonce[NONCE_BYTES - COUNTER_BYTES..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

/// A session's nonce counters, striped so that threads sealing one batch together do not take
/// turns at one cache line (that cost as much as the sealing it fed). Stripe `s` hands out
/// `count * STRIPES + s` for count = 0, 1, 2, ...: stripes share no value, and each hands out
/// every value once, so no nonce repeats within a session. A thread keeps to one stripe. The
/// values stay small (a varint of 3 bytes for the first 2^17 seals of each stripe).
#[derive(Default)]
pub(crate) struct Counters([Stripe; STRIPES]);

/// One counter on a cache line of its own.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct Stripe(AtomicU64);

pub(crate) const STRIPES: usize = 16;
/// `log2(STRIPES)`.
pub(crate) const STRIPE_BITS: u32 = 4;

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
    /// one per entry of `domains`.
    sessions: RwLock<HashMap<[u8; SESSION_BYTES], Vec<Aes256Gcm>>>,
    /// Opens values of the first design (`0xA1`).
    legacy: Aes256GcmSiv,
    token_key: Zeroizing<[u8; 32]>,
    tenant: Vec<u8>,
    domains: Domains,
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
pub(crate) enum DomainKey<'a> {
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

pub(crate) struct Session {
    id: [u8; SESSION_BYTES],
    /// The number it is registered under, once it is.
    number: Option<u32>,
    /// One per entry of `domains`, to open values.
    ciphers: Vec<Aes256Gcm>,
    /// The same keys, to seal values (see [`super::gcm`]: values are sealed by percolate's
    /// own AES-256-GCM and opened by `aes-gcm`).
    sealers: Vec<SealingKey>,
}

impl TenantCrypto {
    pub(crate) fn new(tenant: &TenantId, data_key: &[u8; 32], domains: Domains) -> Self {
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
                ciphers: session_ciphers(domains, &session_root, tenant.as_str().as_bytes(), &id),
                sealers: session_sealers(domains, &session_root, tenant.as_str().as_bytes(), &id),
            },
            session_root,
            counters: Counters::default(),
            numbers: HashMap::new(),
            sessions: RwLock::new(HashMap::new()),
            legacy: Aes256GcmSiv::new((&*legacy_key).into()),
            token_key: Zeroizing::new(blake3::derive_key("percolate 2026 name tokens", data_key)),
            tenant: tenant.as_str().as_bytes().to_vec(),
            domains,
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
        match self.domains.iter().position(|d| *d == domain) {
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
        let Some(index) = self.domains.iter().position(|d| *d == domain) else {
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
                    let ciphers =
                        session_ciphers(self.domains, &self.session_root, &self.tenant, id);
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
