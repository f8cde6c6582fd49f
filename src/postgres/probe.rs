//! Diagnostics for the isolation tests: what a pooled connection carries when the next user
//! gets it. Compiled only with the `testing` feature; no production path calls it.

use super::conn::PgConn;
use super::{PgProvider, sql};
use crate::error::{Error, Result};

/// What [`PgProvider::probe_session`] found on a pooled connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionProbe {
    /// The server process behind the connection.
    pub backend_pid: i32,
    /// `app.current_tenant` as the next statement would see it (empty when unset).
    pub current_tenant: String,
    /// Whether a transaction was open on the connection.
    pub in_transaction: bool,
    /// Session state found on it, one line each (`setting application_name`, `cursor c`,
    /// `listening c`, `advisory lock 42`, `temporary table t`, `role r`); empty when clean.
    pub leftovers: Vec<String>,
}

impl PgProvider {
    /// Takes a connection from the application pool, as the next operation would, and
    /// reports what it carries. A diagnostic for isolation tests: the tenant setting must be
    /// empty and no transaction open, whatever the previous user of the connection did.
    ///
    /// # Errors
    /// [`Error::Backend`] if the server cannot be reached.
    pub async fn probe_session(&self) -> Result<SessionProbe> {
        let mut conn = self.app.get().await?;
        let in_transaction = conn.batch(sql::PROBE_TRANSACTION).await.is_ok();
        if in_transaction {
            // Never hand this connection out again.
            conn.mark_in_transaction();
        }
        probe(&conn, in_transaction).await
    }

    /// Leaves session state of every kind the application role can make (settings, a
    /// session-level tenant, a listened channel, an advisory lock, an open cursor) on a pooled
    /// connection, as a careless user of a pool would, and returns it probed just before the
    /// connection goes back. For the test that the next user finds it clean: not for use.
    ///
    /// # Errors
    /// [`Error::Backend`] if the server cannot be reached.
    #[doc(hidden)]
    pub async fn leave_session_state(&self) -> Result<SessionProbe> {
        let conn = self.app.get().await?;
        conn.batch(sql::LEAVE_SESSION_STATE).await?;
        probe(&conn, false).await
    }
}

/// Runs [`sql::PROBE_SESSION`] on `conn`.
async fn probe(conn: &PgConn, in_transaction: bool) -> Result<SessionProbe> {
    let row = conn
        .query_opt(sql::PROBE_SESSION, &[])
        .await?
        .ok_or_else(|| Error::corrupt("session probe", "no row"))?;
    let bad = |e| Error::corrupt("session probe", e);
    Ok(SessionProbe {
        backend_pid: row.try_get(0).map_err(bad)?,
        current_tenant: row.try_get(1).map_err(bad)?,
        in_transaction,
        leftovers: row.try_get(2).map_err(bad)?,
    })
}
