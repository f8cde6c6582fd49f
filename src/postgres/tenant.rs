//! The only place a [`TenantId`] becomes a PostgreSQL schema name.
//!
//! A tenant id is 1 to 48 bytes of `[a-z0-9_-]` ([`TenantId`] enforces it before anything
//! reaches SQL). The schema name must be a valid, collision-free identifier of at most 63 bytes
//! (PostgreSQL silently truncates longer ones, which would merge tenants):
//!
//! `t_` + the id with every `-` written as `_` + `_` + 12 hex digits of a bit mask whose bit `i`
//! is set when byte `i` of the id was a `-`.
//!
//! The mapping is injective: the mask restores exactly which underscores were hyphens, so `a-b`
//! (`t_a_b_000000000002`) and `a_b` (`t_a_b_000000000000`) never share a schema, and the longest
//! name is 2 + 48 + 1 + 12 = 63 bytes, so nothing is truncated. The name stays readable for an
//! operator. The registry table (`percolate.tenants`) additionally declares `schema` unique, so
//! even a future change to this mapping could not make two tenants share a schema silently.

use std::fmt;

use crate::model::{TENANT_ID_MAX_LEN, TenantId};

/// The schema of one tenant: only built from a validated [`TenantId`]; displays quoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

// The hyphen mask needs one bit per byte of the id.
const _: () = assert!(TENANT_ID_MAX_LEN <= 48);

impl SchemaName {
    /// The schema of `tenant`.
    pub fn of(tenant: &TenantId) -> Self {
        let id = tenant.as_str();
        let mut mask: u64 = 0;
        let mut name = String::with_capacity(2 + id.len() + 13);
        name.push_str("t_");
        for (i, byte) in id.bytes().enumerate() {
            if byte == b'-' {
                mask |= 1 << i;
                name.push('_');
            } else {
                name.push(char::from(byte));
            }
        }
        name.push('_');
        name.push_str(&format!("{mask:012x}"));
        Self(name)
    }

    /// The bare name, as stored in the registry (a bind parameter, never SQL text).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SchemaName {
    /// The name as a quoted identifier. The alphabet is `[a-z0-9_]`, so there is nothing to
    /// escape, but quoting keeps it exact whatever it contains.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&quote_identifier(&self.0))
    }
}

/// `name` as a quoted SQL identifier: wrapped in `"`, inner quotes doubled.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(id: &str) -> String {
        SchemaName::of(&TenantId::new(id).expect("valid")).as_str().to_owned()
    }

    #[test]
    fn hyphen_and_underscore_get_different_schemas() {
        assert_ne!(schema("a-b"), schema("a_b"));
        assert_eq!(schema("a-b"), "t_a_b_000000000002");
        assert_eq!(schema("a_b"), "t_a_b_000000000000");
    }

    #[test]
    fn longest_ids_fit_in_63_bytes_without_collisions() {
        let a = "a".repeat(TENANT_ID_MAX_LEN);
        let b = format!("{}b", "a".repeat(TENANT_ID_MAX_LEN - 1));
        let hyphens = format!("a{}", "-".repeat(TENANT_ID_MAX_LEN - 1));
        for id in [&a, &b, &hyphens] {
            assert!(schema(id).len() <= 63, "{id}");
        }
        assert_ne!(schema(&a), schema(&b));
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_identifier("x\"y"), "\"x\"\"y\"");
        assert_eq!(
            SchemaName::of(&TenantId::new("acme").expect("valid")).to_string(),
            "\"t_acme_000000000000\""
        );
    }
}
