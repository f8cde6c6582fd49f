//! The `percolate` command line.
//!
//! The provider and its location come from the settings ([`percolate::config`]: `PERCOLATE_*`
//! environment variables over an optional `--config FILE`), so
//! `PERCOLATE_ROCKSDB_PATH=./scratch percolate tenant create acme` needs no other setup.
//!
//! ```text
//! percolate tenant create|list|delete [T]
//! percolate put resource|entity|edge|moment --tenant T        < record.json | [records]
//! percolate get|delete resource|entity|edge|moment --tenant T ID
//! percolate search --tenant T --vector '[0.1, ...]' | --vector-file F [--k 10] [--filter JSON]
//! percolate recall --tenant T [--text Q] [--vector V | --vector-file F] [--since TIME]
//!                  [--until TIME] [--filter JSON] [--k 10]  (full text and vector, fused)
//! percolate traverse --tenant T ENTITY_ID [--depth 3] [--direction out|in|both]
//! percolate moments --tenant T [--from TIME] [--to TIME]
//! percolate export --tenant T [--out FILE]          (stdout by default)
//! percolate import [--tenant T] [--in FILE]         (stdin by default)
//! percolate migrate --tenant T --from SPEC --to SPEC (rocksdb:PATH, postgres://…, or the
//!                                                     bare provider name for the settings')
//! percolate demo                                     (the demo on the embedded provider)
//! percolate bench [--resources N] [--dataset DIR] [--scale [N,N,..]] [--json FILE]
//!                 [--baseline FILE [--threshold PCT]]   (the design document's table)
//! ```
//!
//! Output is JSON (one document on stdout) unless `--output table`. Progress bars appear on
//! stderr only when it is a terminal. Exit codes: 0 success, 1 storage failure, 2 bad input
//! (usage, settings, malformed JSON or file, invalid record), 3 not found, 4 already exists,
//! 5 conflict (a retry may succeed), 6 `bench --baseline` found a regression, 7 a key is
//! missing or wrong, 8 another process writes the RocksDB store (its lock is held), 9 a write
//! to a store opened read-only, 10 the disk is full (free space and run it again: nothing was
//! half written).
//!
//! Commands that only read (get, search, recall, traverse, moments, export, tenant list) open the
//! RocksDB store read-only, so they run beside an app that holds it; commands that write take
//! the store's writer lock and fail with exit code 8 while another process holds it.
//!
//! Dispatch is generic: the settings pick the provider, and one monomorphised
//! `run::<P>(engine, command)` serves each; there is no `dyn Provider`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use percolate::bench::dataset::Dataset;
use percolate::config::{ProviderKind, Settings};
use percolate::portable::{self, Progress};
#[cfg(feature = "postgres")]
use percolate::postgres::{PgConfig, PgProvider};
#[cfg(feature = "rocksdb")]
use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};
/// Without the RocksDB provider there is nothing to encrypt with a master key.
#[cfg(not(feature = "rocksdb"))]
type MasterKey = ();
use percolate::{
    Direction, EdgeId, EntityId, Error, Filter, MemoryEngine, Metric, MomentId, NewEdge, NewEntity,
    NewMoment, NewResource, Provider, Record, ResourceId, SearchQuery, TenantConfig, TenantHandle,
    TenantId, TimeRange, Timestamp, TraverseQuery,
};
use serde::Serialize;
use serde_json::Value;

mod bench;
mod demo;
mod output;
#[cfg(feature = "rocksdb")]
mod precision;
mod recall;
mod records;
mod transfer;

use demo::*;
use output::*;
use records::*;
use transfer::*;

#[derive(Parser)]
#[command(
    name = "percolate",
    version,
    about = "A storage engine for agent memory",
    after_help = "Settings: PERCOLATE_STORAGE_PROVIDER (rocksdb|postgres), PERCOLATE_ROCKSDB_PATH \
                  (default ./data/percolate.db), PERCOLATE_ROCKSDB_OPEN_TENANTS (default 64), \
                  PERCOLATE_POSTGRES_URL, \
                  PERCOLATE_POSTGRES_ADMIN_URL, PERCOLATE_POSTGRES_POOL_SIZE (default 10); \
                  they override --config FILE.\n\
                  Exit codes: 0 ok, 1 storage failure, 2 bad input, 3 not found, \
                  4 already exists, 5 conflict (retry may succeed), 6 bench regression, \
                  7 key missing or wrong, 8 store locked by another writer, 9 store read-only."
)]
struct Cli {
    /// A TOML settings file; PERCOLATE_* environment variables override its values.
    #[arg(long, global = true, env = "PERCOLATE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// How to print results: JSON for scripts, or a table for people.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Json)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
    Table,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Resource,
    Entity,
    Edge,
    Moment,
}

#[derive(Subcommand)]
enum Command {
    /// Write a demo tenant on the embedded provider, then search, traverse and scan it.
    Demo {
        /// Where to store it (a temporary directory when not given).
        #[arg(long)]
        path: Option<PathBuf>,
        /// A dataset directory (base.fbin, query.fbin, optional edges.bin and texts.jsonl).
        #[arg(long, env = "PERCOLATE_DATASET")]
        dataset: Option<PathBuf>,
        /// How many resources to write.
        #[arg(long, default_value_t = 10_000)]
        resources: usize,
    },
    /// Measure the design document's performance table on RocksDB (and on PostgreSQL too
    /// when PERCOLATE_POSTGRES_URL is set), with recall and regression tracking.
    Bench(Box<BenchArgs>),
    /// Create, list or delete tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Create records from JSON on stdin: one object, or an array of them (stored atomically).
    Put {
        /// The kind of record.
        #[arg(value_enum)]
        kind: Kind,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Read the JSON from this file instead of stdin.
        #[arg(long = "in", value_name = "FILE")]
        input: Option<PathBuf>,
    },
    /// Print one record.
    Get {
        /// The kind of record.
        #[arg(value_enum)]
        kind: Kind,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Its id.
        id: String,
    },
    /// Delete one record (deleting an entity deletes its edges).
    Delete {
        /// The kind of record.
        #[arg(value_enum)]
        kind: Kind,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Its id.
        id: String,
    },
    /// The k nearest resources to a vector, optionally filtered by metadata.
    Search {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The query vector as a JSON array.
        #[arg(long, conflicts_with = "vector_file", required_unless_present = "vector_file")]
        vector: Option<String>,
        /// A file holding the query vector as a JSON array.
        #[arg(long, value_name = "FILE")]
        vector_file: Option<PathBuf>,
        /// How many results.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// A metadata filter, e.g. '{"lang": "en"}'.
        #[arg(long, value_name = "JSON")]
        filter: Option<String>,
        /// Include the resources' embeddings in the output.
        #[arg(long)]
        embeddings: bool,
    },
    /// Resources by full text and a vector at once, fused by reciprocal rank, with each hit's
    /// rank in each signal.
    Recall(recall::RecallArgs),
    /// Entities reachable from one entity, breadth first, with their depth.
    Traverse {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The start entity's id.
        entity: String,
        /// How many hops.
        #[arg(long, default_value_t = 3)]
        depth: u32,
        /// Which edges to follow: out, in or both.
        #[arg(long, default_value = "out")]
        direction: String,
        /// Follow only edges with this relation (repeatable).
        #[arg(long = "relation")]
        relations: Vec<String>,
    },
    /// Moments overlapping a closed time range (RFC 3339 bounds; a missing bound is open).
    Moments {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The earliest time of interest.
        #[arg(long)]
        from: Option<String>,
        /// The latest time of interest.
        #[arg(long)]
        to: Option<String>,
    },
    /// Write a tenant in the portable format (JSON Lines with a checksum trailer).
    Export {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Write here (atomically, via a temporary file) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Load a portable export into a tenant; verifies the whole file before writing anything
    /// and skips records already present, so re-running an interrupted import completes it.
    Import {
        /// The tenant to write (created if missing); the file's tenant by default.
        #[arg(long)]
        tenant: Option<String>,
        /// Read this file instead of stdin.
        #[arg(long = "in", value_name = "FILE")]
        input: Option<PathBuf>,
        /// Only verify the file; write nothing.
        #[arg(long)]
        check: bool,
    },
    /// Move a tenant between providers (export, verify, import) in one command.
    Migrate {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Where it is: rocksdb:PATH, postgres://URL (or postgres:URL), or rocksdb / postgres
        /// for the location in the settings.
        #[arg(long, value_name = "SPEC")]
        from: String,
        /// Where it goes, in the same syntax.
        #[arg(long, value_name = "SPEC")]
        to: String,
        /// The tenant's name at the destination (the same by default).
        #[arg(long = "as", value_name = "TENANT")]
        rename: Option<String>,
    },
    /// Re-wrap every encrypted RocksDB tenant's data key from the configured master key to a
    /// new one, without rewriting data; then configure the new key. Safe to run again after
    /// an interruption.
    RotateKey {
        /// A file holding the new key: 32 raw bytes, 64 hex digits or a passphrase.
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

impl Command {
    /// Whether the command only reads the store: it then opens a RocksDB store read-only, and
    /// runs beside the process that writes it.
    fn only_reads(&self) -> bool {
        match self {
            Command::Get { .. }
            | Command::Search { .. }
            | Command::Recall(_)
            | Command::Traverse { .. }
            | Command::Moments { .. }
            | Command::Export { .. } => true,
            Command::Import { check, .. } => *check,
            Command::Tenant { command } => matches!(command, TenantCommand::List),
            _ => false,
        }
    }
}

/// The flags of `percolate bench`.
#[derive(clap::Args)]
struct BenchArgs {
    /// Where the RocksDB store goes (a temporary directory, removed afterwards, by default).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A dataset directory: base.fbin, query.fbin and gt.ibin (edges.bin and texts.jsonl are
    /// used when present). Default: ../shared/data/wordnet-minilm-dev when it exists, else
    /// clustered synthetic data.
    #[arg(long, env = "PERCOLATE_DATASET", value_name = "DIR")]
    dataset: Option<PathBuf>,
    /// Use clustered synthetic data even when a dataset is found.
    #[arg(long)]
    synthetic: bool,
    /// Resources with embeddings (default: every row of the dataset, or 50000 synthetic).
    #[arg(long)]
    resources: Option<usize>,
    /// Entities of the power-law graph.
    #[arg(long, default_value_t = 20_000)]
    entities: usize,
    /// Average out-degree of the power-law graph.
    #[arg(long, default_value_t = 10)]
    degree: usize,
    /// Moments spread over the past year.
    #[arg(long, default_value_t = 10_000)]
    moments: usize,
    /// At most this many kNN queries (recall is computed over all of them).
    #[arg(long, default_value_t = 500)]
    queries: usize,
    /// At most this many timed calls per row (batch rows take at most 50 and 30).
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// A row stops taking samples after this many seconds.
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    seconds_per_row: f64,
    /// HNSW search beam width for both providers (default: RocksDB 64, PostgreSQL 44, the
    /// provider's default).
    #[arg(long, value_name = "EF")]
    ef_search: Option<usize>,
    /// Also run knn_k10 and traverse_depth3 on fresh tenants of these sizes (comma-separated;
    /// `--scale` alone: 10000,100000; add 1000000 to go further) and print how p50 grows.
    #[arg(long, value_name = "N,N,..", num_args = 0..=1, default_missing_value = "10000,100000")]
    scale: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Compare with the JSON of an earlier run; exit 6 if any p50 regressed.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// How much slower a p50 may get before it counts as a regression, in percent.
    #[arg(long, default_value = "10%", value_name = "PCT")]
    threshold: String,
    /// Run only this provider.
    #[arg(long, value_name = "PROVIDER")]
    only: Option<String>,
    /// Instead of the table: compare RocksDB vector index precisions (comma-separated: f32,
    /// f16, int8), each in a process of its own, on recall@10, search latency, index bytes and
    /// resident memory.
    #[arg(long, value_name = "P,P,..")]
    vector_precision: Option<String>,
    /// Measure one precision in this process and print its row as JSON (how
    /// `--vector-precision` runs each one).
    #[arg(long, hide = true)]
    precision_child: bool,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its id: 1-48 bytes of a-z 0-9 - _.
        tenant: String,
        /// Fix the embedding dimension now (else the first embedding fixes it).
        #[arg(long)]
        dimension: Option<u32>,
        /// The vector metric: cosine, l2 or dot.
        #[arg(long, default_value = "cosine")]
        metric: String,
    },
    /// List tenants.
    List,
    /// Delete a tenant and all its records.
    Delete {
        /// Its id.
        tenant: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let output = cli.output;
    let result = match cli.command {
        Command::Demo { path, dataset, resources } => {
            runtime.block_on(demo(path, dataset, resources))
        }
        Command::Bench(args) => {
            return match runtime.block_on(bench::run(cli.config.as_deref(), *args)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(6),
                Err(e) => {
                    eprintln!("error: {}", e.with_causes());
                    ExitCode::from(exit_code(&e))
                }
            };
        }
        command => runtime.block_on(dispatch(cli.config.as_deref(), command, output)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.with_causes());
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Bad input and storage failures exit differently, so scripts can tell them apart.
fn exit_code(error: &Error) -> u8 {
    match error {
        Error::Invalid { .. } => 2,
        Error::NotFound { .. } => 3,
        Error::AlreadyExists { .. } => 4,
        Error::Conflict(_) => 5,
        Error::Crypto(_) => 7,
        Error::Locked { .. } => 8,
        Error::ReadOnly { .. } => 9,
        Error::DiskFull { .. } => 10,
        _ => 1,
    }
}

/// Opens the provider the settings name and runs the command on it.
async fn dispatch(
    config: Option<&Path>,
    command: Command,
    output: Output,
) -> percolate::Result<()> {
    let settings = Settings::load(config)?;
    if let Command::Migrate { tenant, from, to, rename } = command {
        let tenant = TenantId::new(tenant)?;
        let rename = rename.map(TenantId::new).transpose()?.unwrap_or_else(|| tenant.clone());
        let from = Spec::parse(&from, &settings)?;
        let to = Spec::parse(&to, &settings)?;
        if from == to && tenant == rename {
            return Err(Error::invalid("migrate", "--from and --to name the same tenant"));
        }
        #[cfg(feature = "rocksdb")]
        let key = settings.master_key()?;
        #[cfg(not(feature = "rocksdb"))]
        let key = None;
        return migrate(from, to, &tenant, &rename, key, output).await;
    }
    if let Command::RotateKey { new_key_file } = command {
        return rotate_key(&settings, &new_key_file, output);
    }
    match settings.storage_provider {
        #[cfg(feature = "rocksdb")]
        ProviderKind::Rocksdb => {
            let mut config = settings.rocks_config()?;
            config.read_only |= command.only_reads();
            let engine = MemoryEngine::new(RocksProvider::open(config)?);
            run(&engine, command, output).await
        }
        #[cfg(feature = "postgres")]
        ProviderKind::Postgres => {
            let engine = MemoryEngine::new(PgProvider::connect(settings.pg_config()?).await?);
            run(&engine, command, output).await
        }
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(other)),
    }
}

fn not_compiled(kind: ProviderKind) -> Error {
    Error::invalid(
        "settings",
        format!(
            "storage provider {kind} is not compiled into this build: rebuild with `--features {}`",
            kind.feature()
        ),
    )
}

fn bad(what: &'static str, reason: impl std::fmt::Display) -> Error {
    Error::invalid(what, reason)
}

fn output_error(e: std::io::Error) -> Error {
    Error::io("output", e)
}
