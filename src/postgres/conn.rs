//! Pooled connections that can never go back to the pool mid-transaction, and the mapping of
//! PostgreSQL errors onto [`Error`] kinds.
//!
//! A [`PgConn`] knows whether it has an open transaction. Dropping it while one is open (a
//! [`super::PgTxn`] dropped without commit, or an operation's future cancelled half-way) does
//! not return it to the pool: `Drop` cannot await a `ROLLBACK`, and deadpool's recycle check
//! (`RecyclingMethod::Clean`) runs its cleanup statements *inside* an open transaction without
//! ending it. Instead the connection is detached from the pool ([`Object::take`]) and closed,
//! which makes the server roll the transaction back; the pool opens a fresh one when needed.

use std::fmt;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::{NAME, sql};
use crate::error::{Error, Result};

/// A pooled connection, detached from the pool if dropped inside a transaction.
pub(crate) struct PgConn {
    object: Option<Object>,
    in_transaction: bool,
}

impl PgConn {
    /// A connection from `pool`; a failure names the server address, never the password.
    pub(crate) async fn get(pool: &Pool, address: &str) -> Result<Self> {
        let object = pool.get().await.map_err(|e| connect_error(address, e))?;
        Ok(Self { object: Some(object), in_transaction: false })
    }

    fn client(&self) -> Result<&deadpool_postgres::ClientWrapper> {
        self.object.as_deref().ok_or_else(|| Error::invalid("connection", "already released"))
    }

    /// Begins a transaction with `begin` and sets the tenant for it, in one round trip.
    pub(crate) async fn begin(&mut self, begin: &str, tenant: &str) -> Result<()> {
        self.in_transaction = true;
        let client = self.client()?;
        let set_tenant = client.prepare_cached(sql::SET_TENANT).await.map_err(backend)?;
        let params: [&(dyn ToSql + Sync); 1] = [&tenant];
        // Sent back to back: the server runs them in order, one round trip in all.
        let (started, set) =
            tokio::join!(client.batch_execute(begin), client.query_one(&set_tenant, &params));
        started.map_err(map_error)?;
        set.map_err(map_error)?;
        Ok(())
    }

    /// Treats the connection as inside a transaction: it will not return to the pool.
    pub(crate) fn mark_in_transaction(&mut self) {
        self.in_transaction = true;
    }

    /// Commits; on failure the transaction is gone and the error says why.
    pub(crate) async fn commit(&mut self) -> Result<()> {
        let result = self.client()?.batch_execute(sql::COMMIT).await.map_err(map_error);
        if result.is_ok() {
            self.in_transaction = false;
        }
        result
    }

    /// Rolls back.
    pub(crate) async fn rollback(&mut self) -> Result<()> {
        self.client()?.batch_execute(sql::ROLLBACK).await.map_err(map_error)?;
        self.in_transaction = false;
        Ok(())
    }

    /// Commits when `result` is a success, rolls back otherwise; returns `result` (or the
    /// commit's failure).
    pub(crate) async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        match result {
            Ok(value) => self.commit().await.map(|()| value),
            Err(e) => {
                // The original error matters more than a failed rollback; if the rollback
                // failed, dropping `self` detaches the connection.
                let _ = self.rollback().await;
                Err(e)
            }
        }
    }

    /// A statement, prepared once per connection.
    pub(crate) async fn prepare(&self, sql: &str) -> Result<Statement> {
        self.client()?.prepare_cached(sql).await.map_err(map_error)
    }

    /// Runs `sql` and returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let statement = self.prepare(sql).await?;
        self.client()?.query(&statement, params).await.map_err(map_error)
    }

    /// Runs `sql` and returns at most one row.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let statement = self.prepare(sql).await?;
        self.client()?.query_opt(&statement, params).await.map_err(map_error)
    }

    /// Runs `sql` and returns how many rows it changed.
    pub(crate) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.prepare(sql).await?;
        self.client()?.execute(&statement, params).await.map_err(map_error)
    }

    /// Runs statements without parameters (DDL built by [`sql`]).
    pub(crate) async fn batch(&self, sql: &str) -> Result<()> {
        self.client()?.batch_execute(sql).await.map_err(map_error)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if self.in_transaction
            && let Some(object) = self.object.take()
        {
            // Detached and dropped: the connection closes and the server rolls back.
            drop(Object::take(object));
        }
    }
}

/// A connection failure, naming the server but not the credentials.
#[derive(Debug)]
pub(crate) struct ConnectError {
    address: String,
    source: deadpool_postgres::PoolError,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to postgres at {}", self.address)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub(crate) fn connect_error(address: &str, source: deadpool_postgres::PoolError) -> Error {
    Error::Backend {
        provider: NAME,
        source: Box::new(ConnectError { address: address.to_owned(), source }),
    }
}

/// A backend error without interpretation.
pub(crate) fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend { provider: NAME, source: Box::new(error) }
}

/// Maps a PostgreSQL error: serialization failures, deadlocks and lock timeouts are conflicts
/// (retrying may succeed); anything else is a backend failure. Unique violations are mapped by
/// the caller, which knows what was being inserted.
pub(crate) fn map_error(error: tokio_postgres::Error) -> Error {
    match error.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::LOCK_NOT_AVAILABLE =>
        {
            let message = error.as_db_error().map(|e| e.message().to_owned());
            Error::Conflict(message.unwrap_or_else(|| code.code().to_owned()))
        }
        _ => backend(error),
    }
}

/// Whether `error` is a unique violation (an id already taken).
pub(crate) fn is_unique_violation(error: &Error) -> bool {
    sql_state(error).is_some_and(|code| *code == SqlState::UNIQUE_VIOLATION)
}

/// Whether `error` is a foreign key violation (an edge endpoint missing).
pub(crate) fn is_foreign_key_violation(error: &Error) -> bool {
    sql_state(error).is_some_and(|code| *code == SqlState::FOREIGN_KEY_VIOLATION)
}

/// The SQLSTATE of a backend error, if it came from the server.
pub(crate) fn sql_state(error: &Error) -> Option<&SqlState> {
    match error {
        Error::Backend { source, .. } => {
            source.downcast_ref::<tokio_postgres::Error>().and_then(tokio_postgres::Error::code)
        }
        _ => None,
    }
}

/// The id in a unique violation's detail (`Key (id)=(...) already exists.`), if any.
pub(crate) fn violating_key(error: &Error) -> Option<String> {
    let Error::Backend { source, .. } = error else { return None };
    let detail = source.downcast_ref::<tokio_postgres::Error>()?.as_db_error()?.detail()?;
    let start = detail.find("=(")? + 2;
    let end = detail[start..].find(')')? + start;
    Some(detail[start..end].to_owned())
}
