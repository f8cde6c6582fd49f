//! Diagnostics for the encryption tests: where the key and nonce of every sealed value a
//! tenant stores come from. Compiled only with the `testing` feature; no production path
//! calls it.

use std::collections::HashMap;

use super::RocksProvider;
use super::cf;
use super::codec;
use super::keys;
use super::store::map_rocks_error;
use crate::crypto;
use crate::error::Result;
use crate::model::TenantId;

/// What a sealed value's key and nonce are made from: the session's random id and durable
/// number (the key) and the counter (the nonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SealedNonce {
    /// The random id of the session that sealed it.
    pub session_id: [u8; crypto::SESSION_BYTES],
    /// The number the session is registered under.
    pub session: u32,
    /// The counter: the value's nonce within its session.
    pub counter: u64,
}

impl RocksProvider {
    /// The [`SealedNonce`] of every sealed value stored in `tenant`, in every column family,
    /// read from its files; empty for a plaintext tenant.
    ///
    /// # Errors
    /// [`crate::Error::NotFound`] for a missing tenant; [`crate::Error::Backend`] on storage
    /// failure.
    pub fn sealed_nonces(&self, tenant: &TenantId) -> Result<Vec<SealedNonce>> {
        let db = self.tenants.get(tenant)?;
        let meta = db.cf(cf::CF_META)?;
        let mut sessions = HashMap::new();
        let from = rocksdb::IteratorMode::From(keys::META_SESSION, rocksdb::Direction::Forward);
        let writer = db.db.writer("probe sealed values")?;
        for item in writer.iterator_cf(meta, from) {
            let (key, value) = item.map_err(map_rocks_error)?;
            let Some(number) = keys::session_number(&key) else { break };
            sessions.insert(number, codec::decode_session(&value)?);
        }
        let mut found = Vec::new();
        for name in cf::ALL {
            for item in writer.iterator_cf(db.cf(name)?, rocksdb::IteratorMode::Start) {
                let (_, value) = item.map_err(map_rocks_error)?;
                let Some((session, counter)) = crypto::sealed_header(&value) else { continue };
                let session_id = sessions.get(&session).copied().unwrap_or_default();
                found.push(SealedNonce { session_id, session, counter });
            }
        }
        Ok(found)
    }
}
