//! Pooled connections that can never go back to the pool mid-transaction, that send a whole
//! auto-commit operation in one round trip, and the mapping of PostgreSQL errors onto
//! [`Error`] kinds.
//!
//! **Pipelining.** tokio-postgres sends a request when its future is first polled and matches
//! responses to requests in order, so futures started together on one client travel in one
//! round trip and the server runs them in the order sent. A [`PgConn`] uses this to keep
//! round trips down without changing what runs:
//! - the session cleanup of deadpool's `RecyclingMethod::Clean` (the very same statements,
//!   [`sql::SESSION_CLEAN`], checked against deadpool's by a test) runs at the checkout of a
//!   connection that may carry session state (see below), sent ahead of the checkout's first
//!   statement instead of in a round trip of its own (the pool itself recycles with `Fast`,
//!   which only checks the connection is open);
//! - a transaction opened with [`PgConn::begin_lazy`] sends its `BEGIN` and
//!   `set_config('app.current_tenant', $1, true)` (plus any transaction-local settings) ahead
//!   of its first statement, in the same round trip: every statement still runs inside the
//!   transaction with the tenant set, because the server runs them in order;
//! - [`PgConn::one_shot`] also sends `COMMIT` right behind that first statement, so a
//!   single-statement auto-commit operation is one round trip. A second statement on a
//!   one-shot connection is refused rather than run outside the transaction. If the statement
//!   fails, the transaction is aborted and the server answers the `COMMIT` with a rollback.
//!
//! Every statement is prepared (and cached per connection) *before* anything of its pipeline
//! is sent, so no preparation round trip can reorder a pipeline.
//!
//! **Never back to the pool mid-transaction.** A [`PgConn`] knows whether it may have a
//! transaction open. Dropping it then (a [`super::PgTxn`] dropped without commit, or an
//! operation's future cancelled half-way, even between sending a pipeline and reading its
//! answers) does not return it to the pool: `Drop` cannot await a `ROLLBACK`. Instead the
//! connection is detached from the pool ([`Object::take`]) and closed, which makes the server
//! roll the transaction back; the pool opens a fresh one when needed.
//!
//! **Session state: cleaned when a connection may carry some, not at every checkout.** What
//! `RecyclingMethod::Clean` guards against is session state (settings, a role, cursors,
//! listened channels, advisory locks, temporary tables, sequence caches) left by one user of
//! a pooled connection for the next. Almost every statement the provider runs cannot leave
//! any: each is one parameterised statement of [`sql`], run through the extended protocol
//! (which takes one statement only), and every setting in them is transaction-local
//! (`set_config(.., true)`, gone at `COMMIT` or `ROLLBACK`); a unit test of [`sql`] checks that
//! none of its statements sets anything for the session. And a connection that may still be
//! inside a transaction never returns to the pool (above), so nothing transaction-local
//! outlives its user either. The one way free text reaches the server is [`PgConn::batch`]
//! (the simple protocol: DDL of tenant setup, the index build, diagnostics): a connection that
//! ran one is *tainted*, and its pool cleans it with [`sql::SESSION_CLEAN`] at its next
//! checkout (a checkout cancelled before its cleanup was answered leaves it tainted). So every
//! connection handed out is in the state the cleanup would leave it in, and the isolation tests
//! check it: after every kind of operation, a drop mid-transaction and a cancelled future, a
//! probe on a pool of one connection finds no setting made for the session, no cursor,
//! channel, advisory lock, temporary table or role change, no tenant and no transaction; and a
//! connection deliberately left with all of those is found clean by the next user.
//!
//! Why not at every checkout, as before: the cleanup is seven statements in one simple query.
//! Pipelined ahead of a single get (`BEGIN`, tenant, `SELECT`, `COMMIT` in one round trip)
//! it took that get from 108 to 146 µs p50 on loopback (bare tokio-postgres, 3000 calls of
//! each variant interleaved, load 2.3 on two cores; `cargo test --test postgres_perf --
//! --ignored get_breakdown`), a quarter of the call, for state no statement of the provider
//! can create. `SELECT pg_advisory_unlock_all()` alone cost 23 µs of it (a query with a
//! snapshot and a result row), `RESET ALL` and `SET SESSION AUTHORIZATION DEFAULT` most of the
//! rest.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Object, ObjectId, Pool};
use parking_lot::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, SimpleQueryMessage, SimpleQueryRow};

use super::tls::{self, TlsSummary};
use super::{NAME, sql};
use crate::error::{Error, Result};

/// Transaction-local settings sent with a lazy `BEGIN`: a statement setting them *and the
/// tenant* (its `$1`; see [`sql::SET_SEARCH`]) and its further parameters (`$2`, ...). It takes
/// the place of [`sql::SET_TENANT`]: one statement fewer in the pipeline.
pub(crate) type Settings = (&'static str, Vec<String>);

/// A transaction not yet sent: it goes out with the next statement.
struct Begin {
    sql: &'static str,
    tenant: String,
    settings: Option<Settings>,
}

/// The pooled connections of one pool that may carry session state: each is cleaned at its
/// next checkout (see the module docs).
pub(crate) type Tainted = Arc<Mutex<HashSet<ObjectId>>>;

/// What the next statement carries in front of (and behind) itself.
#[derive(Default)]
struct Pending {
    /// The session cleanup is due and not yet sent.
    clean: bool,
    /// The session cleanup was sent and not yet answered (a cancelled call may never send
    /// what it took).
    cleaning: bool,
    /// Free text ran on this checkout: the connection may carry session state.
    tainted: bool,
    /// A transaction to open before the next statement.
    begin: Option<Begin>,
    /// Commit right behind the statement that opens the transaction.
    commit_after: bool,
    /// A one-shot transaction already ran (and committed or rolled back).
    spent: bool,
}

/// A statement and its parameters, sent ahead of another in the same round trip.
pub(crate) type Statement<'a> = (&'a str, &'a [&'a (dyn ToSql + Sync)]);

/// What a statement returns.
enum Output {
    Rows(Vec<Row>),
    Count(u64),
    Text(Vec<SimpleQueryRow>),
}

/// How a statement is run.
#[derive(Clone, Copy)]
enum Call {
    Query,
    Execute,
    /// Through the simple protocol, unprepared, rows as text: for `FETCH`, whose columns are
    /// those of a cursor that does not exist yet when the pipeline is prepared (a prepared
    /// `FETCH` would be described as returning nothing).
    Text,
}

/// A pooled connection, detached from the pool if dropped inside a transaction.
pub(crate) struct PgConn {
    object: Option<Object>,
    /// Its pool's tainted connections.
    pool_tainted: Tainted,
    in_transaction: AtomicBool,
    pending: Mutex<Pending>,
}

impl PgConn {
    /// A connection from `pool`; a failure names the server address, never the password, and
    /// says what it means for TLS when it is about TLS. If it may carry session state (it is
    /// in `tainted`), the session cleanup goes out with its first statement.
    pub(crate) async fn get(pool: &Pool, target: &Target, tainted: &Tainted) -> Result<Self> {
        let object = pool.get().await.map_err(|e| connect_error(target, e))?;
        let clean = {
            let mut tainted = tainted.lock();
            !tainted.is_empty() && tainted.remove(&Object::id(&object))
        };
        Ok(Self {
            object: Some(object),
            pool_tainted: Arc::clone(tainted),
            in_transaction: AtomicBool::new(false),
            pending: Mutex::new(Pending { clean, ..Pending::default() }),
        })
    }

    fn client(&self) -> Result<&deadpool_postgres::ClientWrapper> {
        self.object.as_deref().ok_or_else(|| Error::invalid("connection", "already released"))
    }

    /// Opens a transaction with `begin` for `tenant`, sent ahead of the next statement in the
    /// same round trip, with the transaction-local `settings` if any.
    pub(crate) fn begin_lazy(
        &mut self,
        begin: &'static str,
        tenant: &str,
        settings: Option<Settings>,
    ) {
        let pending = self.pending.get_mut();
        pending.begin = Some(Begin { sql: begin, tenant: tenant.to_owned(), settings });
    }

    /// Like [`Self::begin_lazy`], and commits right behind the next statement: the whole
    /// operation is one round trip, and the connection takes no further statement.
    pub(crate) fn one_shot(
        &mut self,
        begin: &'static str,
        tenant: &str,
        settings: Option<Settings>,
    ) {
        self.begin_lazy(begin, tenant, settings);
        self.pending.get_mut().commit_after = true;
    }

    /// Begins a transaction with `begin` and sets the tenant for it now, in one round trip.
    pub(crate) async fn begin(&mut self, begin: &'static str, tenant: &str) -> Result<()> {
        self.begin_lazy(begin, tenant, None);
        self.run(&[], None, &[], Call::Execute).await.map(drop)
    }

    /// Treats the connection as inside a transaction: it will not return to the pool.
    #[cfg(feature = "testing")]
    pub(crate) fn mark_in_transaction(&mut self) {
        self.in_transaction.store(true, Ordering::SeqCst);
    }

    /// Sends what is pending, then the statements of `before` (their answers dropped), then
    /// `sql` (if any), all in one round trip.
    async fn run(
        &self,
        before: &[Statement<'_>],
        sql: Option<&str>,
        params: &[&(dyn ToSql + Sync)],
        call: Call,
    ) -> Result<Output> {
        let client = self.client()?;
        // Everything is prepared before anything is sent (see the module docs).
        let mut prepared_before = Vec::with_capacity(before.len());
        for (sql, params) in before {
            prepared_before.push((client.prepare_cached(sql).await.map_err(map_error)?, *params));
        }
        let statement = match (sql, call) {
            (Some(sql), Call::Query | Call::Execute) => {
                Some(client.prepare_cached(sql).await.map_err(map_error)?)
            }
            _ => None,
        };
        let (begins, settings_sql) = {
            let pending = self.pending.lock();
            if pending.spent {
                return Err(Error::invalid(
                    "connection",
                    "a statement after its one-shot transaction ended",
                ));
            }
            let settings = pending.begin.as_ref().and_then(|b| b.settings.as_ref()).map(|s| s.0);
            (pending.begin.is_some(), settings)
        };
        // Settings statements set the tenant themselves.
        let set_tenant = match begins && settings_sql.is_none() {
            true => Some(client.prepare_cached(sql::SET_TENANT).await.map_err(map_error)?),
            false => None,
        };
        let set_settings = match settings_sql {
            Some(sql) => Some(client.prepare_cached(sql).await.map_err(map_error)?),
            None => None,
        };
        let (clean, begin, commit) = {
            let mut pending = self.pending.lock();
            let clean = std::mem::take(&mut pending.clean);
            pending.cleaning |= clean;
            let begin = pending.begin.take();
            let open = begin.is_some() || self.in_transaction.load(Ordering::SeqCst);
            let commit = open && sql.is_some() && pending.commit_after;
            if commit {
                pending.spent = true;
            }
            (clean, begin, commit)
        };
        if begin.is_some() {
            self.in_transaction.store(true, Ordering::SeqCst);
        }
        // Each future sends its request at its first poll, which `biased` makes in order.
        let clean_f =
            async { if clean { client.batch_execute(sql::SESSION_CLEAN).await } else { Ok(()) } };
        let begin_f = async {
            match &begin {
                Some(b) => client.batch_execute(b.sql).await,
                None => Ok(()),
            }
        };
        let tenant_f = async {
            match (&begin, &set_tenant) {
                (Some(b), Some(s)) => client.query(s, &[&b.tenant]).await.map(drop),
                _ => Ok(()),
            }
        };
        let settings_f = async {
            match (&begin, &set_settings) {
                (Some(Begin { tenant, settings: Some((_, values)), .. }), Some(s)) => {
                    let params: Vec<&(dyn ToSql + Sync)> = std::iter::once(tenant)
                        .chain(values)
                        .map(|v| v as &(dyn ToSql + Sync))
                        .collect();
                    client.query(s, &params).await.map(drop)
                }
                _ => Ok(()),
            }
        };
        // `join_all` polls its futures in order, so they are sent in order.
        let before_f = futures_util::future::join_all(
            prepared_before.iter().map(|(statement, params)| client.execute(statement, params)),
        );
        let statement_f = async {
            match (&statement, sql, call) {
                (Some(s), _, Call::Query) => client.query(s, params).await.map(Output::Rows),
                (Some(s), _, Call::Execute) => client.execute(s, params).await.map(Output::Count),
                (_, Some(sql), Call::Text) => client.simple_query(sql).await.map(|messages| {
                    let rows = messages.into_iter().filter_map(|message| match message {
                        SimpleQueryMessage::Row(row) => Some(row),
                        _ => None,
                    });
                    Output::Text(rows.collect())
                }),
                _ => Ok(Output::Count(0)),
            }
        };
        let commit_f =
            async { if commit { client.batch_execute(sql::COMMIT).await } else { Ok(()) } };
        let (cleaned, begun, tenant_set, settings_set, before_done, output, committed) = tokio::join!(
            biased; clean_f, begin_f, tenant_f, settings_f, before_f, statement_f, commit_f
        );
        if commit && committed.is_ok() {
            // Committed, or (after a failed statement) rolled back: no transaction is open.
            self.in_transaction.store(false, Ordering::SeqCst);
        }
        self.cleaned(clean, cleaned.is_ok());
        cleaned.map_err(map_error)?;
        begun.map_err(map_error)?;
        tenant_set.map_err(map_error)?;
        settings_set.map_err(map_error)?;
        for done in before_done {
            done.map_err(map_error)?;
        }
        let output = output.map_err(map_error)?;
        committed.map_err(map_error)?;
        Ok(output)
    }

    /// Commits; on failure the transaction is gone and the error says why.
    pub(crate) async fn commit(&mut self) -> Result<()> {
        let result = self.client()?.batch_execute(sql::COMMIT).await.map_err(map_error);
        if result.is_ok() {
            self.in_transaction.store(false, Ordering::SeqCst);
        }
        result
    }

    /// Rolls back.
    pub(crate) async fn rollback(&mut self) -> Result<()> {
        self.client()?.batch_execute(sql::ROLLBACK).await.map_err(map_error)?;
        self.in_transaction.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Ends the operation's transaction: commits when `result` is a success, rolls back
    /// otherwise; returns `result` (or the commit's failure). A one-shot transaction has
    /// already ended, and a lazy one that sent nothing has nothing to end.
    pub(crate) async fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        let pending = self.pending.get_mut();
        let unsent = pending.begin.take().is_some();
        if pending.spent || unsent {
            return result;
        }
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

    /// Runs `sql` and returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        self.query_after(&[], sql, params).await
    }

    /// Runs the statements of `before` (their answers dropped) and then `sql`, in one round
    /// trip, and returns the rows of `sql`. The first failure is the result.
    pub(crate) async fn query_after(
        &self,
        before: &[Statement<'_>],
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        match self.run(before, Some(sql), params, Call::Query).await? {
            Output::Rows(rows) => Ok(rows),
            Output::Count(_) | Output::Text(_) => Ok(Vec::new()),
        }
    }

    /// Runs the statements of `before` (their answers dropped) and then `sql`, a statement
    /// without parameters that [`sql`] made, through the simple protocol, in one round trip,
    /// and returns its rows as text. For `FETCH` (see [`Call::Text`]); it leaves nothing on
    /// the session.
    pub(crate) async fn fetch_after(
        &self,
        before: &[Statement<'_>],
        sql: &str,
    ) -> Result<Vec<SimpleQueryRow>> {
        match self.run(before, Some(sql), &[], Call::Text).await? {
            Output::Text(rows) => Ok(rows),
            Output::Rows(_) | Output::Count(_) => Ok(Vec::new()),
        }
    }

    /// Commits right behind the next statement, in its round trip, when a transaction is open
    /// or pending: the operation's last statement. The connection then takes no further
    /// statement, and [`Self::finish`] has nothing to end.
    pub(crate) fn commit_after_next(&self) {
        self.pending.lock().commit_after = true;
    }

    /// Runs `sql` and returns at most one row.
    pub(crate) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params).await?;
        if rows.len() > 1 {
            return Err(Error::corrupt(
                "query",
                format!("{} rows where one was expected", rows.len()),
            ));
        }
        Ok(rows.pop())
    }

    /// Runs `sql` and returns how many rows it changed.
    pub(crate) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        match self.run(&[], Some(sql), params, Call::Execute).await? {
            Output::Count(n) => Ok(n),
            Output::Rows(rows) => Ok(rows.len() as u64),
            Output::Text(rows) => Ok(rows.len() as u64),
        }
    }

    /// Records the answer to a cleanup this call sent (`sent`): done, or due again.
    fn cleaned(&self, sent: bool, ok: bool) {
        if sent {
            let mut pending = self.pending.lock();
            pending.cleaning = false;
            pending.clean |= !ok;
        }
    }

    /// Runs statements without parameters (DDL built by [`sql`]), after any pending cleanup.
    /// Free text through the simple protocol: the connection is tainted, cleaned at its next
    /// checkout (see the module docs).
    pub(crate) async fn batch(&self, sql: &str) -> Result<()> {
        let client = self.client()?;
        let clean = {
            let mut pending = self.pending.lock();
            pending.tainted = true;
            let clean = std::mem::take(&mut pending.clean);
            pending.cleaning |= clean;
            clean
        };
        let clean_f =
            async { if clean { client.batch_execute(sql::SESSION_CLEAN).await } else { Ok(()) } };
        let (cleaned, ran) = tokio::join!(biased; clean_f, client.batch_execute(sql));
        self.cleaned(clean, cleaned.is_ok());
        cleaned.map_err(map_error)?;
        ran.map_err(map_error)
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else { return };
        if *self.in_transaction.get_mut() {
            // Detached and dropped: the connection closes and the server rolls back.
            drop(Object::take(object));
            return;
        }
        let pending = self.pending.get_mut();
        if pending.tainted || pending.clean || pending.cleaning {
            // Back to the pool, to be cleaned before its next user runs anything.
            self.pool_tainted.lock().insert(Object::id(&object));
        }
    }
}

/// Where a pool connects: for error messages, without credentials.
#[derive(Debug)]
pub(crate) struct Target {
    /// `host:port`.
    pub(crate) address: String,
    /// The TLS in force.
    pub(crate) tls: TlsSummary,
}

/// A connection failure, naming the server but not the credentials, with what it means for
/// TLS when it is about TLS (a certificate refused, TLS required on one side and forbidden
/// or missing on the other).
#[derive(Debug)]
pub(crate) struct ConnectError {
    address: String,
    hint: Option<String>,
    source: deadpool_postgres::PoolError,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to postgres at {}", self.address)?;
        match &self.hint {
            Some(hint) => write!(f, ": {hint}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

pub(crate) fn connect_error(target: &Target, source: deadpool_postgres::PoolError) -> Error {
    let hint = tls::explain(&target.tls, &source);
    Error::Backend {
        provider: NAME,
        source: Box::new(ConnectError { address: target.address.clone(), hint, source }),
    }
}

/// A backend error without interpretation.
pub(crate) fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend { provider: NAME, source: Box::new(error) }
}

/// Maps a PostgreSQL error: serialization failures, deadlocks and lock timeouts are conflicts
/// (retrying may succeed); the server's `53100 disk_full` is [`Error::DiskFull`]; anything else
/// is a backend failure. Unique violations are mapped by the caller, which knows what was being
/// inserted.
pub(crate) fn map_error(error: tokio_postgres::Error) -> Error {
    match error.code() {
        Some(code) if *code == SqlState::DISK_FULL => {
            Error::DiskFull { provider: NAME, source: Box::new(error) }
        }
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
