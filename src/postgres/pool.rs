//! The connection pools of the two roles. Owns pool construction and checkout; what a
//! connection does is in `conn`.

#[allow(unused_imports)]
use super::*;

#[derive(Clone)]
pub(super) struct Pooled {
    pool: Pool,
    /// `host:port`, for error messages (never the password).
    address: String,
    /// Its connections that may carry session state ([`conn`]).
    tainted: conn::Tainted,
}

impl Pooled {
    pub(super) fn new(url: &str, size: usize) -> Result<Self> {
        let config: tokio_postgres::Config =
            url.parse().map_err(|e| Error::invalid("postgres url", e))?;
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
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .build()
            .map_err(|e| Error::invalid("postgres pool", e))?;
        Ok(Self { pool, address, tainted: conn::Tainted::default() })
    }

    pub(super) async fn get(&self) -> Result<PgConn> {
        PgConn::get(&self.pool, &self.address, &self.tainted).await
    }
}
