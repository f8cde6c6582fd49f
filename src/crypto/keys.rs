//! The master key and the tenants' key files: deriving the key-encryption key, wrapping and
//! unwrapping data keys, rotation and shredding. Owns every file it reads or writes (never
//! through a symbolic link); seals no value.

use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use zeroize::{Zeroize, Zeroizing};

use super::session::{Domains, TenantCrypto};
use super::{KEY_FILE, KEY_FILE_MAGIC, SALT_FILE, SALT_FILE_MAGIC, TAG_BYTES, fill_random};
use crate::error::{Error, Result};
use crate::model::TenantId;

/// Bytes of a key-wrapping nonce (random, from the operating system).
const NONCE_BYTES: usize = 12;

/// The Argon2id cost of new passphrase stores: 64 MiB of memory, 3 passes, one lane (RFC 9106's
/// second recommended option, with the lanes a single-threaded derivation can use). The
/// parameters are stored beside the salt, so a store keeps opening whatever later builds
/// choose for new stores.
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 3;
const ARGON2_LANES: u32 = 1;
/// The algorithm byte of the salt file: Argon2id, version 0x13.
const ARGON2ID_V13: u8 = 1;
/// The most memory a stored parameter set may ask for (4 GiB): a damaged or planted salt
/// file must not make opening the store exhaust memory.
const ARGON2_MEMORY_KIB_MAX: u32 = 4 * 1024 * 1024;

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
            Some(key) => Ok(Self::from_bytes(*key)),
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

    /// Derives the key-encryption key. A passphrase is stretched with Argon2id under the
    /// parameters and salt stored in the store root (written with [`ARGON2_MEMORY_KIB`],
    /// [`ARGON2_PASSES`] and [`ARGON2_LANES`] on first use).
    pub(crate) fn kek(&self, root: &Path) -> Result<MasterKek> {
        let mut key = Zeroizing::new([0u8; 32]);
        match &self.0 {
            Secret::Key(raw) => {
                *key = blake3::derive_key("percolate master key-encryption key v1", &raw[..]);
            }
            Secret::Passphrase(passphrase) => {
                let salt = store_salt(root)?;
                let params = argon2::Params::new(salt.memory_kib, salt.passes, salt.lanes, None)
                    .map_err(|e| Error::Crypto(format!("argon2id parameters: {e}")))?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(passphrase.as_bytes(), &salt.salt, &mut key[..])
                    .map_err(|e| Error::Crypto(format!("argon2id: {e}")))?;
            }
        }
        let fingerprint = blake3::derive_key("percolate master key fingerprint v1", &key[..]);
        let mut id = [0u8; 8];
        id.copy_from_slice(&fingerprint[..8]);
        Ok(MasterKek { cipher: Aes256GcmSiv::new((&*key).into()), id })
    }
}

/// 64 hex digits as a key; `None` for anything else.
fn parse_hex_key(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    if text.len() != 64 {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(key)
}

/// The store-wide Argon2id salt and the parameters it goes with.
struct StoredSalt {
    memory_kib: u32,
    passes: u32,
    lanes: u32,
    salt: [u8; 16],
}

/// Salt file layout: [`SALT_FILE_MAGIC`], the algorithm byte, memory (KiB), passes and lanes
/// (each a big-endian `u32`), the salt (16 bytes).
const SALT_FILE_LEN: usize = 8 + 1 + 12 + 16;

impl StoredSalt {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SALT_FILE_LEN);
        out.extend_from_slice(SALT_FILE_MAGIC);
        out.push(ARGON2ID_V13);
        for value in [self.memory_kib, self.passes, self.lanes] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out.extend_from_slice(&self.salt);
        out
    }

    fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let damaged = || Error::Crypto(format!("salt file {} is damaged", path.display()));
        let body = bytes.strip_prefix(SALT_FILE_MAGIC.as_slice()).ok_or_else(damaged)?;
        let (&algorithm, body) = body.split_first().ok_or_else(damaged)?;
        if algorithm != ARGON2ID_V13 || body.len() != SALT_FILE_LEN - 9 {
            return Err(damaged());
        }
        let word =
            |at: usize| u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
        let salt = Self {
            memory_kib: word(0),
            passes: word(4),
            lanes: word(8),
            salt: body[12..].try_into().map_err(|_| damaged())?,
        };
        if salt.memory_kib > ARGON2_MEMORY_KIB_MAX {
            return Err(Error::Crypto(format!(
                "salt file {} asks for {} KiB of memory, more than {ARGON2_MEMORY_KIB_MAX}",
                path.display(),
                salt.memory_kib
            )));
        }
        Ok(salt)
    }
}

/// The store-wide salt and parameters: read, or created atomically (temp file, fsync,
/// rename) with today's parameters.
fn store_salt(root: &Path) -> Result<StoredSalt> {
    let path = root.join(SALT_FILE);
    let read = |path: &Path| {
        read_no_follow(path)
            .map_err(|e| Error::Crypto(format!("cannot read {}: {e}", path.display())))
    };
    match read_no_follow(&path) {
        Ok(bytes) => return StoredSalt::decode(&bytes, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Crypto(format!("cannot read {}: {e}", path.display()))),
    }
    let mut salt = [0u8; 16];
    fill_random(&mut salt)?;
    let stored = StoredSalt {
        memory_kib: ARGON2_MEMORY_KIB,
        passes: ARGON2_PASSES,
        lanes: ARGON2_LANES,
        salt,
    };
    write_atomically(&path, &stored.encode())
        .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))?;
    // Another process may have won the race: whatever is on disk now is the salt.
    StoredSalt::decode(&read(&path)?, &path)
}

/// Opening options that refuse a symbolic link as the last path component.
fn no_follow(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Reads a whole file, refusing a symbolic link.
fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut file = no_follow(std::fs::OpenOptions::new().read(true)).open(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` whole or not at all: a new temporary file (never an existing one,
/// never through a link), fsync, rename over `path`, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = temporary_path(path);
    let result = (|| {
        let mut file =
            no_follow(std::fs::OpenOptions::new().write(true).create_new(true)).open(&temporary)?;
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
    ///
    /// # Errors
    /// [`Error::Crypto`] when the file cannot be written or the system has no randomness.
    pub(crate) fn create_tenant_key(
        &self,
        dir: &Path,
        tenant: &TenantId,
        domains: Domains,
    ) -> Result<TenantCrypto> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        fill_random(&mut data_key[..])?;
        let path = dir.join(KEY_FILE);
        write_atomically(&path, &self.wrap(tenant, &data_key)?)
            .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))?;
        TenantCrypto::new(tenant, &data_key, domains)
    }

    /// Reads and unwraps the data key of the tenant in `dir`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when the key file is damaged, a symbolic link, or was wrapped by
    /// another master key.
    pub(crate) fn open_tenant_key(
        &self,
        dir: &Path,
        tenant: &TenantId,
        domains: Domains,
    ) -> Result<TenantCrypto> {
        let data_key = self.unwrap_file(&dir.join(KEY_FILE), tenant)?;
        TenantCrypto::new(tenant, &data_key, domains)
    }

    /// Re-wraps the tenant key in `dir` from `self` to `new`; a file already wrapped by `new`
    /// is left alone, so an interrupted rotation can simply be run again.
    pub(crate) fn rewrap(&self, new: &MasterKek, dir: &Path, tenant: &TenantId) -> Result<()> {
        let path = dir.join(KEY_FILE);
        if read_key_file(&path)?.id == new.id {
            return Ok(());
        }
        let data_key = self.unwrap_file(&path, tenant)?;
        write_atomically(&path, &new.wrap(tenant, &data_key)?)
            .map_err(|e| Error::Crypto(format!("cannot write {}: {e}", path.display())))
    }

    fn wrap(&self, tenant: &TenantId, data_key: &[u8; 32]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_BYTES];
        fill_random(&mut nonce)?;
        let mut wrapped = Zeroizing::new(data_key.to_vec());
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
        let KeyFile { id, nonce, mut wrapped, tag } = read_key_file(path)?;
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

/// A key file's fields: the wrapping master key's fingerprint, nonce, wrapped key, tag.
struct KeyFile {
    id: [u8; 8],
    nonce: [u8; NONCE_BYTES],
    wrapped: [u8; 32],
    tag: [u8; TAG_BYTES],
}

fn read_key_file(path: &Path) -> Result<KeyFile> {
    let bytes = Zeroizing::new(read_no_follow(path).map_err(|e| {
        Error::Crypto(format!(
            "cannot read key file {} (a symbolic link is refused): {e}",
            path.display()
        ))
    })?);
    let damaged = || Error::Crypto(format!("key file {} is damaged", path.display()));
    let body = bytes.strip_prefix(KEY_FILE_MAGIC.as_slice()).ok_or_else(damaged)?;
    if body.len() != 8 + NONCE_BYTES + 32 + TAG_BYTES {
        return Err(damaged());
    }
    let (id, rest) = body.split_at(8);
    let (nonce, rest) = rest.split_at(NONCE_BYTES);
    let (wrapped, tag) = rest.split_at(32);
    Ok(KeyFile {
        id: id.try_into().map_err(|_| damaged())?,
        nonce: nonce.try_into().map_err(|_| damaged())?,
        wrapped: wrapped.try_into().map_err(|_| damaged())?,
        tag: tag.try_into().map_err(|_| damaged())?,
    })
}

fn key_aad(tenant: &TenantId) -> Vec<u8> {
    let mut aad = b"percolate tenant data key\0".to_vec();
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad
}

/// Whether the tenant in `dir` has a key file (or something planted in its place, which
/// opening then refuses).
pub(crate) fn is_encrypted(dir: &Path) -> bool {
    dir.join(KEY_FILE).symlink_metadata().is_ok()
}

/// Destroys the tenant's data key: overwrites the key file with zeros, syncs, removes it and
/// syncs the directory. Called before the tenant's data is removed, so a crash in between
/// leaves unreadable data, never readable data without its owner. A symbolic link in the key
/// file's place is refused, not followed: nothing outside the tenant is ever written.
///
/// What this gives and does not is in `docs/encryption.md`: the overwrite does not reach
/// copies a flash translation layer or a copy-on-write file system keeps, nor backups.
pub(crate) fn shred_key(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(KEY_FILE);
    let metadata = match path.symlink_metadata() {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file (a symbolic link is refused)",
            path.display()
        )));
    }
    let mut file = no_follow(std::fs::OpenOptions::new().write(true)).open(&path)?;
    file.write_all(&vec![0u8; usize::try_from(metadata.len()).unwrap_or(0)])?;
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(&path)?;
    std::fs::File::open(dir)?.sync_all()
}
