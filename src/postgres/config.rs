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
    /// HNSW `ef_search` of unfiltered searches (default 44; pgvector's is 40): the candidate
    /// list size, trading latency for recall. A search for `k` results uses at least `k`.
    pub ef_search: usize,
    /// Tenants with fewer embeddings than this are searched exactly, by a scan in true distance
    /// order (recall 1), not through the HNSW index (default 500; 0 always uses the index).
    /// Below it a scan costs about what an index search does at 384 dimensions, and the index
    /// can then be built for large tenants alone (`sql::HNSW_M`).
    pub exact_below: usize,
    /// How connections use TLS; `None` takes `sslmode` from the URL, else `verify-full` for a
    /// server that is not on loopback and `prefer` for one that is (see [`PgSslMode`]). A mode
    /// in the URL and here must agree.
    pub ssl_mode: Option<PgSslMode>,
    /// The certificate authorities trusted for `verify-ca` and `verify-full`: a PEM file, or
    /// `system` for the operating system's store (the default); `None` takes `sslrootcert`
    /// from the URL. Given with `require`, it makes `require` check the authority, as libpq
    /// does.
    pub ssl_root_cert: Option<String>,
    /// Connect even when the application role is a superuser, has `BYPASSRLS`, or owns the
    /// registry or a tenant schema (also through a role it is a member of), or is the owner
    /// role itself: row-level security then binds nothing. For a single-role development
    /// setup only (default `false`: [`super::PgProvider::connect`] refuses such a role).
    pub allow_privileged_app_role: bool,
    /// The most candidate rows a filtered search reads when the filter is checked in Rust
    /// (default 100 000): an exact scan streams `id` and metadata in distance order and stops
    /// at `k` matches or at this many rows; entity search with a properties filter likewise.
    /// A tenant larger than this with a filter matching fewer than `k` of its nearest rows
    /// may get fewer than `k` results.
    pub filter_scan_limit: usize,
    /// Whether embeddings written to the vector tail are merged into the HNSW index by a
    /// background task (default `true`). Without it they stay in the tail, searchable by an
    /// exact scan of it, until [`crate::Provider::flush_vector_index`] merges them: for bulk
    /// loads that end with one index build, and for tests and benches that need a tail.
    pub background_merge: bool,
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
            ssl_mode: None,
            ssl_root_cert: None,
            allow_privileged_app_role: false,
            filter_scan_limit: DEFAULT_FILTER_SCAN_LIMIT,
            background_merge: true,
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

    /// Connections use TLS as `mode` says (see [`PgConfig::ssl_mode`]).
    pub fn with_ssl_mode(mut self, mode: PgSslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// Trusts the certificate authorities of the PEM file `path` (`system`: the operating
    /// system's store) for `verify-ca` and `verify-full`.
    pub fn with_ssl_root_cert(mut self, path: impl Into<String>) -> Self {
        self.ssl_root_cert = Some(path.into());
        self
    }

    /// Whether to connect with an application role that row-level security does not bind
    /// (see [`PgConfig::allow_privileged_app_role`]): for single-role development only.
    pub fn with_allow_privileged_app_role(mut self, allow: bool) -> Self {
        self.allow_privileged_app_role = allow;
        self
    }

    /// Whether the vector tail is merged in the background (see
    /// [`PgConfig::background_merge`]).
    pub fn with_background_merge(mut self, merge: bool) -> Self {
        self.background_merge = merge;
        self
    }

    /// A filtered search reads at most `rows` candidate rows (at least 1).
    pub fn with_filter_scan_limit(mut self, rows: usize) -> Self {
        self.filter_scan_limit = rows;
        self
    }
}

/// The default `hnsw.ef_search`: the smallest that keeps recall@10 at or above 0.95 on the
/// bench's 50k 384-d MiniLM embeddings in the graph of [`super::sql::HNSW_M`] (0.954-0.957 over
/// three index builds; 40 gives 0.946-0.950), for about 5% more time per search than 40.
pub(super) const DEFAULT_EF_SEARCH: usize = 44;
/// pgvector's largest `hnsw.ef_search`.
pub(super) const MAX_EF_SEARCH: usize = 1000;
/// The default [`PgConfig::exact_below`]: about where an exact scan of 384-d embeddings costs
/// what the index does (lower dimensions scan faster).
pub(super) const DEFAULT_EXACT_BELOW: usize = 500;
/// The default [`PgConfig::filter_scan_limit`].
pub(super) const DEFAULT_FILTER_SCAN_LIMIT: usize = 100_000;
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
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("allow_privileged_app_role", &self.allow_privileged_app_role)
            .field("filter_scan_limit", &self.filter_scan_limit)
            .field("background_merge", &self.background_merge)
            .finish_non_exhaustive()
    }
}
