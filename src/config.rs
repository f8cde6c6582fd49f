//! Settings: which provider to use and where its data lives, from the environment and an
//! optional TOML file.
//!
//! Design decisions:
//! - **Layers, env last.** Defaults, then the TOML file (when given), then `PERCOLATE_*`
//!   environment variables: a deployment can ship a file and override one value per process.
//!   [`figment`] does the layering and the typed extraction; nothing is parsed by hand.
//! - **Only the keys below are read from the environment** (`PERCOLATE_DATASET`,
//!   `PERCOLATE_TEST_*` and the like belong to other tools and are ignored).
//! - **Choosing a provider that was not compiled in is an error that names the Cargo feature**,
//!   raised by [`Settings::check`], so a binary built without `postgres` never silently falls
//!   back to RocksDB.
//! - **No dynamic dispatch.** A binary that chooses the provider at run time matches on
//!   [`Settings::storage_provider`] and calls one generic function per provider.
//!
//! | environment variable | TOML key | default |
//! |---|---|---|
//! | `PERCOLATE_STORAGE_PROVIDER` | `storage_provider` | `rocksdb` (`rocksdb` or `postgres`) |
//! | `PERCOLATE_ROCKSDB_PATH` | `rocksdb_path` | `./data/percolate.db` |
//! | `PERCOLATE_ROCKSDB_PROFILE` | `rocksdb_profile` | `desktop` (or `mobile`: the defaults of the three below) |
//! | `PERCOLATE_ROCKSDB_CACHE_MB` | `rocksdb_cache_mb` | the profile's: `64` (desktop), `8` (mobile) |
//! | `PERCOLATE_ROCKSDB_WRITE_BUFFER_MB` | `rocksdb_write_buffer_mb` | the profile's: `64` (desktop), `8` (mobile) |
//! | `PERCOLATE_ROCKSDB_OPEN_TENANTS` | `rocksdb_open_tenants` | the profile's: `64` (desktop), `4` (mobile) |
//! | `PERCOLATE_ROCKSDB_LOWER_INDEXER_PRIORITY` | `rocksdb_lower_indexer_priority` | `false` (the indexer thread at nice 10, Linux) |
//! | `PERCOLATE_ROCKSDB_READ_ONLY` | `rocksdb_read_only` | `false` (read beside the process that writes the store) |
//! | `PERCOLATE_ROCKSDB_VECTOR_PRECISION` | `rocksdb_vector_precision` | `f32` (`f16` or `int8`: the vector index's in-memory vectors) |
//! | `PERCOLATE_POSTGRES_URL` | `postgres_url` | none (required for `postgres`) |
//! | `PERCOLATE_POSTGRES_ADMIN_URL` | `postgres_admin_url` | the `postgres_url` |
//! | `PERCOLATE_POSTGRES_POOL_SIZE` | `postgres_pool_size` | `10` |
//! | `PERCOLATE_POSTGRES_SSLMODE` | `postgres_sslmode` | the URL's `sslmode`, else `verify-full` (`prefer` on loopback) |
//! | `PERCOLATE_POSTGRES_SSLROOTCERT` | `postgres_sslrootcert` | the URL's `sslrootcert`, else the system's store |
//! | `PERCOLATE_POSTGRES_ALLOW_PRIVILEGED_APP_ROLE` | `postgres_allow_privileged_app_role` | `false` (single-role development only) |
//! | `PERCOLATE_MASTER_KEY_FILE` | `master_key_file` | none |
//! | `PERCOLATE_MASTER_KEY` | `master_key` | none |
//! | `PERCOLATE_ALLOW_PLAINTEXT_TENANTS` | `allow_plaintext_tenants` | `false` (with a master key, tenants without a key file are refused) |
//!
//! ```
//! use percolate::config::{ProviderKind, Settings};
//!
//! let settings = Settings::from_toml_str(
//!     "storage_provider = \"rocksdb\"\nrocksdb_path = \"/tmp/memory\"\n",
//! )?;
//! assert_eq!(settings.storage_provider, ProviderKind::Rocksdb);
//! assert_eq!(settings.postgres_pool_size, 10);
//! # Ok::<(), percolate::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variables [`Settings::load`] reads, without their `PERCOLATE_` prefix.
pub const ENV_KEYS: [&str; 18] = [
    "storage_provider",
    "rocksdb_path",
    "rocksdb_profile",
    "rocksdb_cache_mb",
    "rocksdb_write_buffer_mb",
    "rocksdb_open_tenants",
    "rocksdb_lower_indexer_priority",
    "rocksdb_read_only",
    "rocksdb_vector_precision",
    "postgres_url",
    "postgres_admin_url",
    "postgres_pool_size",
    "postgres_sslmode",
    "postgres_sslrootcert",
    "postgres_allow_privileged_app_role",
    "master_key_file",
    "master_key",
    "allow_plaintext_tenants",
];

/// The prefix of every environment variable [`Settings::load`] reads.
pub const ENV_PREFIX: &str = "PERCOLATE_";

/// Which storage provider to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The embedded RocksDB provider (Cargo feature `rocksdb`).
    #[default]
    Rocksdb,
    /// The PostgreSQL + pgvector provider (Cargo feature `postgres`).
    Postgres,
}

impl ProviderKind {
    /// Its name in settings: `rocksdb` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Rocksdb => "rocksdb",
            ProviderKind::Postgres => "postgres",
        }
    }

    /// The Cargo feature that compiles it in (the same word).
    pub fn feature(self) -> &'static str {
        self.as_str()
    }

    /// Whether this build includes it.
    pub fn is_compiled_in(self) -> bool {
        match self {
            ProviderKind::Rocksdb => cfg!(feature = "rocksdb"),
            ProviderKind::Postgres => cfg!(feature = "postgres"),
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The memory defaults of the RocksDB provider (`RocksConfig::new` or `RocksConfig::mobile`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RocksProfile {
    /// A desktop app or a server: a 64 MiB block cache, 64 MiB of memtables, 64 open tenants.
    #[default]
    Desktop,
    /// A phone or an app extension: 8 MiB, 8 MiB, 4 open tenants.
    Mobile,
}

/// Everything percolate reads from its settings.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Which provider stores the data.
    pub storage_provider: ProviderKind,
    /// The RocksDB root directory (a database per tenant below it).
    pub rocksdb_path: PathBuf,
    /// The RocksDB memory defaults the three settings below override.
    pub rocksdb_profile: RocksProfile,
    /// The block cache all RocksDB tenants share, in MiB (`RocksConfig::block_cache_bytes`);
    /// unset, the profile's.
    pub rocksdb_cache_mb: Option<usize>,
    /// What the memtables of all RocksDB tenants may hold together, in MiB
    /// (`RocksConfig::write_buffer_budget_bytes`); unset, the profile's.
    pub rocksdb_write_buffer_mb: Option<usize>,
    /// How many idle RocksDB tenant databases stay open (`RocksConfig::open_tenants`; 0 closes
    /// each as soon as no handle holds it); unset, the profile's. Each open tenant costs
    /// about 41 MB before any data (see the README), so a process that serves a few tenants
    /// at a time should keep this small.
    pub rocksdb_open_tenants: Option<usize>,
    /// Run the vector indexer's thread at a lower priority
    /// (`RocksConfig::lower_indexer_priority`): for a process that owns its machine, such as
    /// the CLI or a server, where writes and searches should come before indexing.
    pub rocksdb_lower_indexer_priority: bool,
    /// Open the RocksDB store read-only, beside the process that writes it
    /// (`RocksConfig::read_only`).
    pub rocksdb_read_only: bool,
    /// How the RocksDB vector index keeps its vectors in memory: `f32`, `f16` or `int8`
    /// (`RocksConfig::vector_precision`).
    pub rocksdb_vector_precision: String,
    /// The PostgreSQL connection URL of the application role.
    pub postgres_url: Option<String>,
    /// The PostgreSQL connection URL of the schema owner role, when it differs.
    pub postgres_admin_url: Option<String>,
    /// The PostgreSQL connection pool size.
    pub postgres_pool_size: usize,
    /// How PostgreSQL connections use TLS (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`); unset, the URL's `sslmode` or the provider's default. A mode in both
    /// must agree.
    pub postgres_sslmode: Option<String>,
    /// The CA certificates (a PEM file, or `system`) PostgreSQL connections trust; unset, the
    /// URL's `sslrootcert` or the system's store.
    pub postgres_sslrootcert: Option<String>,
    /// Lets the application role be privileged (a superuser, `BYPASSRLS`, the owner role):
    /// single-role development only, row-level security then binds nothing.
    pub postgres_allow_privileged_app_role: bool,
    /// A file holding the master key or a passphrase: with a key configured, RocksDB tenants
    /// are encrypted at rest.
    pub master_key_file: Option<PathBuf>,
    /// The master key or a passphrase itself (prefer [`Settings::master_key_file`]). Wiped
    /// from memory when the settings are dropped.
    pub master_key: Option<SecretText>,
    /// With a master key, open tenants created without one too
    /// (`RocksConfig::allow_plaintext_tenants`).
    pub allow_plaintext_tenants: bool,
}

/// Text that holds a secret: wiped from memory when dropped, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretText(redacted)")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            storage_provider: ProviderKind::default(),
            rocksdb_path: PathBuf::from("./data/percolate.db"),
            rocksdb_profile: RocksProfile::default(),
            rocksdb_cache_mb: None,
            rocksdb_write_buffer_mb: None,
            rocksdb_open_tenants: None,
            rocksdb_lower_indexer_priority: false,
            rocksdb_read_only: false,
            rocksdb_vector_precision: "f32".to_owned(),
            postgres_url: None,
            postgres_admin_url: None,
            postgres_pool_size: 10,
            postgres_sslmode: None,
            postgres_sslrootcert: None,
            postgres_allow_privileged_app_role: false,
            master_key_file: None,
            master_key: None,
            allow_plaintext_tenants: false,
        }
    }
}

// Connection URLs and keys carry secrets: never print them.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |set: bool| if set { "<set>" } else { "<unset>" };
        f.debug_struct("Settings")
            .field("storage_provider", &self.storage_provider)
            .field("rocksdb_path", &self.rocksdb_path)
            .field("rocksdb_profile", &self.rocksdb_profile)
            .field("rocksdb_cache_mb", &self.rocksdb_cache_mb)
            .field("rocksdb_write_buffer_mb", &self.rocksdb_write_buffer_mb)
            .field("rocksdb_open_tenants", &self.rocksdb_open_tenants)
            .field("rocksdb_lower_indexer_priority", &self.rocksdb_lower_indexer_priority)
            .field("rocksdb_read_only", &self.rocksdb_read_only)
            .field("rocksdb_vector_precision", &self.rocksdb_vector_precision)
            .field("postgres_url", &redacted(self.postgres_url.is_some()))
            .field("postgres_admin_url", &redacted(self.postgres_admin_url.is_some()))
            .field("postgres_pool_size", &self.postgres_pool_size)
            .field("postgres_sslmode", &self.postgres_sslmode)
            .field("postgres_sslrootcert", &self.postgres_sslrootcert)
            .field("postgres_allow_privileged_app_role", &self.postgres_allow_privileged_app_role)
            .field("master_key_file", &self.master_key_file)
            .field("master_key", &redacted(self.master_key.is_some()))
            .finish()
    }
}

impl Settings {
    /// Defaults, then the TOML file `file` (when given; it must exist), then the `PERCOLATE_*`
    /// environment variables; checked with [`Settings::check`].
    ///
    /// # Errors
    /// [`Error::Invalid`] (`what` = `"settings"`) for a missing or malformed file, a value of
    /// the wrong type, or a provider that is not compiled in or lacks its URL.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            // Toml::file skips a missing file silently; a file named on purpose must exist.
            if !file.is_file() {
                return Err(Error::invalid(
                    "settings",
                    format!("config file {} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        let env = Env::prefixed(ENV_PREFIX).only(&ENV_KEYS);
        Self::extract(figment.merge(env))
    }

    /// Defaults overlaid with TOML text only (no environment); checked.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn from_toml_str(toml: &str) -> Result<Self> {
        Self::extract(
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(toml)),
        )
    }

    fn extract(figment: Figment) -> Result<Self> {
        let settings: Settings = figment.extract().map_err(|e| Error::invalid("settings", e))?;
        settings.check()?;
        Ok(settings)
    }

    /// Checks that the chosen provider is compiled in and has what it needs.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the Cargo feature to enable, or the missing setting.
    pub fn check(&self) -> Result<()> {
        let kind = self.storage_provider;
        if !kind.is_compiled_in() {
            return Err(Error::invalid(
                "settings",
                format!(
                    "storage provider {kind} is not compiled into this build: rebuild with \
                     `--features {}`",
                    kind.feature()
                ),
            ));
        }
        match kind {
            ProviderKind::Rocksdb if self.rocksdb_path.as_os_str().is_empty() => {
                Err(Error::invalid("settings", "rocksdb_path (PERCOLATE_ROCKSDB_PATH) is empty"))
            }
            ProviderKind::Rocksdb if self.rocksdb_write_buffer_mb == Some(0) => {
                Err(Error::invalid(
                    "settings",
                    "rocksdb_write_buffer_mb (PERCOLATE_ROCKSDB_WRITE_BUFFER_MB) must be at least 1",
                ))
            }
            ProviderKind::Postgres if self.postgres_url.as_deref().is_none_or(str::is_empty) => {
                Err(Error::invalid(
                    "settings",
                    "storage provider postgres needs postgres_url (PERCOLATE_POSTGRES_URL)",
                ))
            }
            ProviderKind::Postgres if self.postgres_pool_size == 0 => {
                Err(Error::invalid("settings", "postgres_pool_size must be at least 1"))
            }
            _ => Ok(()),
        }
    }

    /// The RocksDB provider's configuration, with the master key when one is configured.
    ///
    /// # Errors
    /// As [`Settings::master_key`].
    #[cfg(feature = "rocksdb")]
    pub fn rocks_config(&self) -> Result<crate::rocks::RocksConfig> {
        self.rocks_config_at(&self.rocksdb_path)
    }

    /// [`Settings::rocks_config`] for a store at another root.
    ///
    /// # Errors
    /// As [`Settings::master_key`].
    #[cfg(feature = "rocksdb")]
    pub fn rocks_config_at(&self, root: &Path) -> Result<crate::rocks::RocksConfig> {
        let mut config = match self.rocksdb_profile {
            RocksProfile::Desktop => crate::rocks::RocksConfig::new(root),
            RocksProfile::Mobile => crate::rocks::RocksConfig::mobile(root),
        };
        if let Some(open) = self.rocksdb_open_tenants {
            config.open_tenants = open;
        }
        if let Some(mb) = self.rocksdb_cache_mb {
            config.block_cache_bytes = mb << 20;
        }
        if let Some(mb) = self.rocksdb_write_buffer_mb {
            config.write_buffer_budget_bytes = mb << 20;
            // One memtable never exceeds the budget (a quarter of it, as in the profiles).
            config.write_buffer_bytes = config.write_buffer_bytes.min((mb << 20) / 4).max(1 << 20);
        }
        config.read_only = self.rocksdb_read_only;
        config.vector_precision = self.rocksdb_vector_precision.parse().map_err(|_| {
            Error::invalid(
                "settings",
                format!(
                    "rocksdb_vector_precision (PERCOLATE_ROCKSDB_VECTOR_PRECISION) {:?} is not \
                     f32, f16 or int8",
                    self.rocksdb_vector_precision
                ),
            )
        })?;
        config.master_key = self.master_key()?;
        config.allow_plaintext_tenants = self.allow_plaintext_tenants;
        config.lower_indexer_priority = self.rocksdb_lower_indexer_priority;
        Ok(config)
    }

    /// The PostgreSQL provider's configuration.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `postgres_url` is not set or `postgres_sslmode` is not a mode.
    #[cfg(feature = "postgres")]
    pub fn pg_config(&self) -> Result<crate::postgres::PgConfig> {
        let url = self.postgres_url.as_deref().filter(|url| !url.is_empty()).ok_or_else(|| {
            Error::invalid("settings", "postgres_url (PERCOLATE_POSTGRES_URL) is not set")
        })?;
        let mut config = crate::postgres::PgConfig::new(url)
            .with_pool_size(self.postgres_pool_size.max(1))
            .with_allow_privileged_app_role(self.postgres_allow_privileged_app_role);
        if let Some(mode) = self.postgres_sslmode.as_deref().filter(|mode| !mode.is_empty()) {
            config = config.with_ssl_mode(mode.parse()?);
        }
        if let Some(root) = self.postgres_sslrootcert.as_deref().filter(|root| !root.is_empty()) {
            config = config.with_ssl_root_cert(root);
        }
        Ok(match self.postgres_admin_url.as_deref().filter(|url| !url.is_empty()) {
            Some(admin) => config.with_admin_url(admin),
            None => config,
        })
    }

    /// The master key: from `master_key_file` when set (32 raw bytes, 64 hex digits, or a
    /// passphrase), else from `master_key` (64 hex digits or a passphrase), else `None`.
    ///
    /// # Errors
    /// [`Error::Crypto`] if the key file cannot be read; [`Error::Invalid`] if it is empty.
    #[cfg(feature = "rocksdb")]
    pub fn master_key(&self) -> Result<Option<crate::rocks::MasterKey>> {
        if let Some(path) = &self.master_key_file {
            return crate::rocks::MasterKey::from_file(path).map(Some);
        }
        match self.master_key.as_ref().map(SecretText::expose).filter(|key| !key.trim().is_empty())
        {
            Some(text) => crate::rocks::MasterKey::from_text(text).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design_document() {
        let settings = Settings::default();
        assert_eq!(settings.storage_provider, ProviderKind::Rocksdb);
        assert_eq!(settings.rocksdb_path, PathBuf::from("./data/percolate.db"));
        assert_eq!(settings.postgres_pool_size, 10);
        assert_eq!(settings.rocksdb_profile, RocksProfile::Desktop);
        assert_eq!(settings.rocksdb_open_tenants, None);
        assert!(settings.postgres_url.is_none());
    }

    #[test]
    fn open_tenants_reach_the_rocksdb_config() {
        // 0 is allowed: every tenant is closed as soon as no handle holds it.
        for open in [0, 3] {
            let toml = format!("rocksdb_open_tenants = {open}");
            let settings = Settings::from_toml_str(&toml).expect("settings");
            assert_eq!(settings.rocksdb_open_tenants, Some(open));
            settings.check().expect("valid");
            #[cfg(feature = "rocksdb")]
            assert_eq!(settings.rocks_config().expect("config").open_tenants, open);
        }
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn the_memory_profile_and_its_overrides_reach_the_rocksdb_config() {
        let desktop = Settings::default().rocks_config().expect("config");
        assert_eq!(
            (desktop.block_cache_bytes, desktop.write_buffer_budget_bytes, desktop.open_tenants),
            (64 << 20, 64 << 20, 64)
        );
        let mobile = Settings::from_toml_str("rocksdb_profile = \"mobile\"")
            .expect("settings")
            .rocks_config()
            .expect("config");
        assert_eq!(
            (mobile.block_cache_bytes, mobile.write_buffer_budget_bytes, mobile.open_tenants),
            (8 << 20, 8 << 20, 4)
        );
        let tuned = Settings::from_toml_str(
            "rocksdb_profile = \"mobile\"\nrocksdb_cache_mb = 16\nrocksdb_write_buffer_mb = 4\n\
             rocksdb_open_tenants = 1\n",
        )
        .expect("settings")
        .rocks_config()
        .expect("config");
        assert_eq!(
            (tuned.block_cache_bytes, tuned.write_buffer_budget_bytes, tuned.open_tenants),
            (16 << 20, 4 << 20, 1)
        );
        assert_eq!(tuned.write_buffer_bytes, 1 << 20, "a memtable is at most a quarter");
        let error = Settings::from_toml_str("rocksdb_profile = \"tiny\"").expect_err("tiny");
        assert!(error.to_string().contains("tiny"), "{error}");
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn the_vector_precision_reaches_the_rocksdb_config() {
        use crate::rocks::VectorPrecision;
        assert_eq!(
            Settings::default().rocks_config().expect("config").vector_precision,
            VectorPrecision::F32
        );
        let settings =
            Settings::from_toml_str("rocksdb_vector_precision = \"int8\"").expect("settings");
        assert_eq!(
            settings.rocks_config().expect("config").vector_precision,
            VectorPrecision::Int8
        );
        let wrong =
            Settings::from_toml_str("rocksdb_vector_precision = \"int4\"").expect("settings");
        assert!(matches!(wrong.rocks_config(), Err(Error::Invalid { what: "settings", .. })));
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let error = Settings::load(Some(Path::new("/nonexistent/percolate.toml")))
            .expect_err("missing file");
        assert!(matches!(error, Error::Invalid { what: "settings", .. }), "{error}");
    }

    #[test]
    fn an_unknown_provider_is_rejected() {
        let error = Settings::from_toml_str("storage_provider = \"mysql\"").expect_err("mysql");
        assert!(error.to_string().contains("mysql"), "{error}");
    }

    #[test]
    fn postgres_needs_a_url_or_its_feature() {
        let error = Settings::from_toml_str("storage_provider = \"postgres\"").expect_err("no url");
        let message = error.to_string();
        if cfg!(feature = "postgres") {
            assert!(message.contains("PERCOLATE_POSTGRES_URL"), "{message}");
        } else {
            assert!(message.contains("--features postgres"), "{message}");
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn tls_and_role_settings_reach_the_postgres_config() {
        let settings = Settings::from_toml_str(
            "storage_provider = \"postgres\"\npostgres_url = \"postgres://u@db.example.com/p\"\n\
             postgres_sslmode = \"verify-ca\"\npostgres_sslrootcert = \"/etc/ca.pem\"\n\
             postgres_allow_privileged_app_role = true\n",
        )
        .expect("settings");
        let config = settings.pg_config().expect("config");
        assert_eq!(config.ssl_mode, Some(crate::postgres::PgSslMode::VerifyCa));
        assert_eq!(config.ssl_root_cert.as_deref(), Some("/etc/ca.pem"));
        assert!(config.allow_privileged_app_role);
        let defaults =
            Settings { postgres_url: Some("postgres://h/p".into()), ..Settings::default() };
        let config = defaults.pg_config().expect("config");
        assert_eq!(config.ssl_mode, None);
        assert!(!config.allow_privileged_app_role);
        let bad = Settings { postgres_sslmode: Some("sometimes".into()), ..defaults };
        assert!(matches!(bad.pg_config(), Err(Error::Invalid { .. })));
    }

    #[test]
    fn debug_output_hides_secrets() {
        let settings = Settings {
            postgres_url: Some("postgres://user:hunter2@host/db".into()),
            master_key: Some(SecretText::new("hunter2")),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
