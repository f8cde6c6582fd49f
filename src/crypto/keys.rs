//! The master key and the tenants' key files: deriving the key-encryption key, wrapping and
//! unwrapping data keys, rotation and shredding. Owns every file it reads or writes; seals
//! no value.

#[allow(unused_imports)]
use super::*;

/// Where the master key comes from. Its bytes never leave this type unwrapped except into
/// the key-encryption key derived from it, and both are wiped on drop.
#[derive(Clone)]
pub struct MasterKey(Secret);

#[derive(Clone)]
pub(crate) enum Secret {
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

pub(crate) fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
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
pub(crate) fn store_salt(root: &Path) -> Result<[u8; 16]> {
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

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

pub(crate) fn temporary_path(path: &Path) -> PathBuf {
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
    pub(crate) fn create_tenant_key(
        &self,
        dir: &Path,
        tenant: &TenantId,
        domains: Domains,
    ) -> Result<TenantCrypto> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut data_key[..]);
        let path = dir.join(KEY_FILE);
        write_atomically(&path, &self.wrap(tenant, &data_key)?)
            .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))?;
        Ok(TenantCrypto::new(tenant, &data_key, domains))
    }

    /// Reads and unwraps the data key of the tenant in `dir`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the key file is damaged or was wrapped by another master key.
    pub(crate) fn open_tenant_key(
        &self,
        dir: &Path,
        tenant: &TenantId,
        domains: Domains,
    ) -> Result<TenantCrypto> {
        let data_key = self.unwrap_file(&dir.join(KEY_FILE), tenant)?;
        Ok(TenantCrypto::new(tenant, &data_key, domains))
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

pub(crate) type KeyFile = ([u8; 8], [u8; NONCE_BYTES], [u8; 32], [u8; TAG_BYTES]);

pub(crate) fn read_key_file(path: &Path) -> Result<KeyFile> {
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

pub(crate) fn key_aad(tenant: &TenantId) -> Vec<u8> {
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
