//! Encryption at rest: per-tenant data keys wrapped by a master key, sealed values, keyed name
//! tokens and crypto-shredding. Imports nothing from a storage backend: a provider names its
//! domains (column families) and calls [`TenantCrypto`] on the bytes it stores.
//!
//! No cipher is implemented here. Values are sealed with `ring`'s AES-256-GCM (BoringSSL's
//! assembly, with hardware AES on x86-64 and aarch64), data keys wrapped with RustCrypto's
//! AES-256-GCM-SIV, passphrases stretched with RustCrypto's Argon2id; this module derives
//! keys (BLAKE3) and lays out bytes. `docs/encryption.md` has the threat model.
//!
//! - **Keys.** The master key (32 random bytes, or a passphrase stretched with Argon2id under
//!   parameters stored with the salt in the store root) is a key-encryption key only. Each
//!   tenant has its own random 32-byte data key, stored *wrapped* (associated data = the
//!   tenant id) in [`KEY_FILE`] inside the tenant directory, with a fingerprint of the
//!   master key that wrapped it. Rotating the master key rewrites those files only.
//! - **Values.** Every non-empty value is sealed under a *session key* bound to its tenant,
//!   domain, the session's random id and its durable number, with the value's key as
//!   associated data: a value copied to another key, column family or tenant fails to open.
//!   Each opening of a tenant is a session, registered under the next session number before
//!   it seals anything; within a session the nonce is a counter. All randomness (session
//!   ids, data keys, salts, wrapping nonces) comes from the operating system, so a forked
//!   process never repeats its parent's draws.
//! - **Names.** Key bytes cannot be sealed without losing order, so the key layouts that would
//!   hold user text hold keyed BLAKE3 tokens instead (see [`TenantCrypto::name_tokens`]).
//! - **Shredding.** Deleting a tenant first overwrites, syncs and removes its key file.

mod keys;
mod session;
#[cfg(test)]
mod tests;

pub use keys::MasterKey;
pub(crate) use keys::{MasterKek, is_encrypted, shred_key};
#[cfg(test)]
use session::Domains;
#[cfg(feature = "testing")]
pub(crate) use session::sealed_header;
pub(crate) use session::{SessionId, TenantCrypto, is_sealed};

use crate::error::{Error, Result};

/// The wrapped data key's file name inside a tenant directory.
pub(crate) const KEY_FILE: &str = "percolate.key";
/// The Argon2id salt and parameters of a passphrase master key, in the store root.
const SALT_FILE: &str = ".percolate-salt";
const SALT_FILE_MAGIC: &[u8; 8] = b"PCSALT01";
const KEY_FILE_MAGIC: &[u8; 8] = b"PCLKEY01";
/// The first byte of every sealed value: the layout's version.
const SEALED: u8 = 0xA3;
/// Bytes of a random session id.
pub(crate) const SESSION_BYTES: usize = 16;
const TAG_BYTES: usize = 16;
/// The longest header before the ciphertext: the format byte, the session number (at most 5
/// varint bytes) and the counter (at most 10).
const SEAL_HEADER: usize = 1 + 5 + 10;
/// The most bytes a sealed value adds to its plaintext (usually about 21).
pub const SEAL_OVERHEAD: usize = SEAL_HEADER + TAG_BYTES;
/// Sessions whose keys a reader keeps derived; past this the cache starts over.
const SESSION_CACHE: usize = 1024;
/// Name prefixes longer than this many characters share the token of their first
/// `NAME_TOKEN_CHARS` characters (the query re-checks every candidate's name).
const NAME_TOKEN_CHARS: usize = 8;

/// Fills `out` from the operating system's random source (never a user-space generator that a
/// forked child would share with its parent).
///
/// # Errors
/// [`Error::Crypto`] when the system has none to give.
pub(crate) fn fill_random(out: &mut [u8]) -> Result<()> {
    getrandom::fill(out).map_err(|e| Error::Crypto(format!("no randomness from the system: {e}")))
}
