//! Record ids and the validated [`TenantId`].
//!
//! Record ids are UUIDv7: their 16 big-endian bytes sort in creation-time order, which keeps
//! RocksDB keys of recent records together and makes scans come back oldest first.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

macro_rules! record_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// What this id names, as used in error messages.
            pub const WHAT: &'static str = $what;

            /// A fresh, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id with these 16 bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }

            /// The id's 16 bytes; byte order is creation-time order.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// The id as a [`Uuid`].
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(s: &str) -> Result<Self> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|e| Error::invalid(concat!($what, " id"), e))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

record_id!(
    /// The id of a [`crate::Resource`].
    ResourceId, "resource"
);
record_id!(
    /// The id of an [`crate::Entity`].
    EntityId, "entity"
);
record_id!(
    /// The id of an [`crate::Edge`].
    EdgeId, "edge"
);
record_id!(
    /// The id of a [`crate::Moment`].
    MomentId, "moment"
);

/// The longest tenant id, in bytes. It keeps a tenant id usable as a directory name and, with a
/// short prefix, as a PostgreSQL identifier (at most 63 bytes) without truncation.
pub const TENANT_ID_MAX_LEN: usize = 48;

/// A validated tenant id: 1 to [`TENANT_ID_MAX_LEN`] bytes of lowercase ASCII letters, digits,
/// `-` and `_`, starting with a letter or digit.
///
/// The alphabet is deliberately narrow: the id becomes a directory name (RocksDB) and part of a
/// schema name (PostgreSQL), so it must be the same on every file system (no case folding, no
/// Unicode normalisation, no `.` or `/`) and there must be exactly one spelling per tenant.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the rule the id breaks.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let what = "tenant id";
        if id.is_empty() {
            return Err(Error::invalid(what, "empty"));
        }
        if id.len() > TENANT_ID_MAX_LEN {
            return Err(Error::invalid(
                what,
                format!("{} bytes, at most {TENANT_ID_MAX_LEN} allowed", id.len()),
            ));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(Error::invalid(
                what,
                format!("{c:?} not allowed (only a-z, 0-9, '-' and '_')"),
            ));
        }
        if !id.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(Error::invalid(what, "must start with a letter or digit"));
        }
        Ok(Self(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = Error;

    fn try_from(id: String) -> Result<Self> {
        Self::new(id)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl FromStr for TenantId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_outside_the_alphabet_are_rejected() {
        for bad in ["", "../x", "A", "ab/c", "é", "a b", "-a", "_a", "a.b", &"a".repeat(300)] {
            assert!(matches!(TenantId::new(bad), Err(Error::Invalid { .. })), "{bad:?}");
        }
        for good in ["a", "acme", "t-1_x", "0abc", &"a".repeat(TENANT_ID_MAX_LEN)] {
            assert_eq!(TenantId::new(good).map(|t| t.to_string()).ok().as_deref(), Some(good));
        }
    }

    #[test]
    fn record_ids_sort_in_creation_order() {
        let a = ResourceId::new();
        let b = ResourceId::new();
        assert!(a.as_bytes() < b.as_bytes());
    }
}
