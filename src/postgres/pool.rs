//! The connection pools of the two roles. Owns pool construction and checkout; what a
//! connection does is in `conn`, how it is encrypted in `tls`.

#[allow(unused_imports)]
use super::*;

#[derive(Clone)]
pub(super) struct Pooled {
    pool: Pool,
    /// The server and the TLS in force, for error messages (never the password).
    target: Arc<conn::Target>,
    /// Its connections that may carry session state ([`conn`]).
    tainted: conn::Tainted,
}

impl Pooled {
    /// A pool of `size` connections to `url`, encrypted as `url` and `settings` say
    /// ([`tls::resolve`]).
    pub(super) fn new(url: &str, settings: &PgConfig, size: usize) -> Result<Self> {
        let tls::Resolved { config, summary, connector } = tls::resolve(url, settings)?;
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports = config.get_ports();
        let address = format!(
            "{}:{}",
            hosts.first().map_or("localhost", String::as_str),
            ports.first().copied().unwrap_or(5432)
        );
        // `Fast` only checks that the connection is open: the cleanup of `Clean` runs at the
        // checkout of a connection that may carry session state, pipelined with the checkout's
        // first statement ([`conn`]).
        let manager = Manager::from_config(
            config,
            connector,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        // Last in, first out: a checkout takes the connection most recently returned, so calls
        // that come one after another keep running on one server process, whose caches (and
        // the CPU's) are warm, and idle connections stay idle. First in, first out (deadpool's
        // default) would rotate through every pooled connection, each call waking a process
        // that ran least recently.
        let pool = Pool::builder(manager)
            .queue_mode(QueueMode::Lifo)
            .max_size(size.max(1))
            .build()
            .map_err(|e| Error::invalid("postgres pool", e))?;
        let target = Arc::new(conn::Target { address, tls: summary });
        Ok(Self { pool, target, tainted: conn::Tainted::default() })
    }

    /// Closes every idle connection (those checked out stay); the pool opens new ones as it
    /// needs them.
    pub(super) fn close_idle(&self) {
        self.pool.retain(|_, _| false);
    }

    pub(super) async fn get(&self) -> Result<PgConn> {
        PgConn::get(&self.pool, &self.target, &self.tainted).await
    }
}
