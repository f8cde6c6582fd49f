//! [`PgConfig`]: the settings of the PostgreSQL provider and their defaults. Owns no
//! connection.

#[allow(unused_imports)]
use super::*;

/// Settings of the PostgreSQL provider.
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// The application role's connection URL (`postgres://user:password@host:port/db`).
    pub url: String,
    /// The owner role's connection URL, for schema setup; `None` uses `url` for both.
    pub admin_url: Option<String>,
    /// Connections in the application pool.
    pub pool_size: usize,
    /// Connections in the owner pool.
    pub admin_pool_size: usize,
    /// HNSW `ef_search` of unfiltered searches (default 32; pgvector's is 40): the candidate
    /// list size, trading latency for recall. A search for `k` results uses at least `k`.
    pub ef_search: usize,
    /// Tenants with fewer embeddings than this are searched exactly, by a scan in true distance
    /// order (recall 1), not through the HNSW index (default 500; 0 always uses the index).
    /// Below it a scan costs about what an index search does at 384 dimensions, and the index
    /// can then be built for large tenants alone (`sql::HNSW_M`).
    pub exact_below: usize,
}

impl PgConfig {
    /// Defaults for a server at `url`: a pool of 10, the same role for setup.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            admin_url: None,
            pool_size: 10,
            admin_pool_size: 2,
            ef_search: DEFAULT_EF_SEARCH,
            exact_below: DEFAULT_EXACT_BELOW,
        }
    }

    /// Schema setup runs as the role of `admin_url`.
    pub fn with_admin_url(mut self, admin_url: impl Into<String>) -> Self {
        self.admin_url = Some(admin_url.into());
        self
    }

    /// An application pool of `size` connections.
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// HNSW `ef_search` for unfiltered searches (clamped to pgvector's 1..=1000).
    pub fn with_ef_search(mut self, ef_search: usize) -> Self {
        self.ef_search = ef_search;
        self
    }

    /// Tenants with fewer than `exact_below` embeddings are searched exactly (0: never).
    pub fn with_exact_below(mut self, exact_below: usize) -> Self {
        self.exact_below = exact_below;
        self
    }
}

/// The default `hnsw.ef_search`: the smallest that keeps recall@10 above 0.95 with a margin on
/// 100k 384-d MiniLM embeddings in the graph of [`super::sql::HNSW_M`].
pub(super) const DEFAULT_EF_SEARCH: usize = 40;
/// pgvector's largest `hnsw.ef_search`.
pub(super) const MAX_EF_SEARCH: usize = 1000;
/// The default [`PgConfig::exact_below`]: about where an exact scan of 384-d embeddings costs
/// what the index does (lower dimensions scan faster).
pub(super) const DEFAULT_EXACT_BELOW: usize = 500;
/// How long a tenant's count of embeddings is trusted before the next search counts again.
pub(super) const RECOUNT_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl std::fmt::Debug for PgConfig {
    /// Never prints the URLs: they may hold passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("pool_size", &self.pool_size)
            .field("admin_pool_size", &self.admin_pool_size)
            .field("ef_search", &self.ef_search)
            .field("exact_below", &self.exact_below)
            .finish_non_exhaustive()
    }
}
