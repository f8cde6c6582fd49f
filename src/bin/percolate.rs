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
//! 5 conflict (a retry may succeed), 6 `bench --baseline` found a regression.
//!
//! Dispatch is generic: the settings pick the provider, and one monomorphised
//! `run::<P>(engine, command)` serves each; there is no `dyn Provider`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use percolate::config::{ProviderKind, Settings};
use percolate::dataset::Dataset;
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

// In a directory of its own: a file directly in src/bin/ would be taken for another binary.
#[path = "percolate/bench.rs"]
mod bench;

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
                  4 already exists, 5 conflict (retry may succeed), 6 bench regression."
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
    /// HNSW search beam width for both providers (default: RocksDB 64, PostgreSQL 40, the
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
                    eprintln!("error: {}", chain(&e));
                    ExitCode::from(exit_code(&e))
                }
            };
        }
        command => runtime.block_on(dispatch(cli.config.as_deref(), command, output)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
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
        _ => 1,
    }
}

/// `percolate rotate-key`: the configured master key's tenants move to the key in `new_key`.
#[cfg(feature = "rocksdb")]
fn rotate_key(settings: &Settings, new_key: &Path, output: Output) -> percolate::Result<()> {
    if settings.storage_provider != ProviderKind::Rocksdb {
        return Err(bad("rotate-key", "master keys belong to the RocksDB provider"));
    }
    let provider = RocksProvider::open(settings.rocks_config()?)?;
    let rotated = provider.rotate_master_key(&MasterKey::from_file(new_key)?)?;
    match output {
        Output::Json => print_json(&serde_json::json!({ "rotated_tenants": rotated })),
        Output::Table => print_table(&["rotated tenants"], &[vec![rotated.to_string()]]),
    }
}

#[cfg(not(feature = "rocksdb"))]
fn rotate_key(_: &Settings, _: &Path, _: Output) -> percolate::Result<()> {
    Err(not_compiled(ProviderKind::Rocksdb))
}

/// The error and its sources, one after another.
fn chain(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
            let engine = MemoryEngine::new(RocksProvider::open(settings.rocks_config()?)?);
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
    Error::Backend { provider: "output", source: Box::new(e) }
}

/// Prints `value` as one line of JSON.
fn print_json(value: &impl Serialize) -> percolate::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(|e| bad("output", e))?;
    writeln!(out).map_err(output_error)
}

/// Prints rows under headers, columns padded, long cells cut.
fn print_table(headers: &[&str], rows: &[Vec<String>]) -> percolate::Result<()> {
    const MAX_CELL: usize = 60;
    let cut = |cell: &str| -> String {
        let flat = cell.replace(['\n', '\t'], " ");
        if flat.chars().count() > MAX_CELL {
            let mut short: String = flat.chars().take(MAX_CELL - 1).collect();
            short.push('…');
            short
        } else {
            flat
        }
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| cut(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}", width = *width))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied())).map_err(output_error)?;
    for row in &rows {
        writeln!(out, "{}", line(&mut row.iter().map(String::as_str))).map_err(output_error)?;
    }
    Ok(())
}

fn record_headers(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Resource => &["id", "uri", "content", "metadata", "dimension", "updated_at"],
        Kind::Entity => &["id", "name", "kind", "properties", "updated_at"],
        Kind::Edge => &["id", "from", "to", "relation", "weight", "properties"],
        Kind::Moment => &["id", "start", "end", "kind", "content", "entities"],
    }
}

fn record_row(record: &Record) -> Vec<String> {
    let json = |map: &percolate::Metadata| Value::Object(map.clone()).to_string();
    match record {
        Record::Resource(r) => vec![
            r.id.to_string(),
            r.uri.clone().unwrap_or_default(),
            r.content.clone(),
            json(&r.metadata),
            r.embedding.as_ref().map(|e| e.len().to_string()).unwrap_or_default(),
            r.updated_at.to_string(),
        ],
        Record::Entity(e) => vec![
            e.id.to_string(),
            e.name.clone(),
            e.kind.clone(),
            json(&e.properties),
            e.updated_at.to_string(),
        ],
        Record::Edge(e) => vec![
            e.id.to_string(),
            e.from.to_string(),
            e.to.to_string(),
            e.relation.clone(),
            e.weight.to_string(),
            json(&e.properties),
        ],
        Record::Moment(m) => vec![
            m.id.to_string(),
            m.start.to_string(),
            m.end.to_string(),
            m.kind.clone(),
            m.content.clone(),
            m.entities.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
        ],
    }
}

/// Prints records: one object (or an array when `many`) in JSON, or a table.
fn print_records(
    kind: Kind,
    records: &[Record],
    many: bool,
    output: Output,
) -> percolate::Result<()> {
    match output {
        Output::Json if many => print_json(&records.iter().map(Plain).collect::<Vec<_>>()),
        Output::Json => match records.first() {
            Some(record) => print_json(&Plain(record)),
            None => print_json(&Value::Null),
        },
        Output::Table => {
            print_table(record_headers(kind), &records.iter().map(record_row).collect::<Vec<_>>())
        }
    }
}

/// A record's own JSON, without the `type` tag the portable format adds; fields in
/// declaration order, as in exports.
struct Plain<'a>(&'a Record);

impl Serialize for Plain<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Record::Resource(r) => r.serialize(s),
            Record::Entity(e) => e.serialize(s),
            Record::Edge(e) => e.serialize(s),
            Record::Moment(m) => m.serialize(s),
        }
    }
}

/// A progress bar on stderr when it is a terminal; hidden otherwise.
fn progress_bar(message: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>9} [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

fn on_progress(bar: &ProgressBar) -> impl FnMut(Progress) + '_ {
    move |p: Progress| {
        // While an export scans, the total is not known yet (0): the bar tracks what is done.
        bar.set_length(p.total.max(p.done));
        bar.set_position(p.done);
    }
}

/// Runs every command but `demo` and `migrate` on one provider.
async fn run<P: Provider>(
    engine: &MemoryEngine<P>,
    command: Command,
    output: Output,
) -> percolate::Result<()> {
    match command {
        Command::Demo { .. }
        | Command::Migrate { .. }
        | Command::Bench(_)
        | Command::RotateKey { .. } => {
            Err(bad("command", "demo, bench and migrate do not run on the configured provider"))
        }
        Command::Tenant { command } => tenant_command(engine, command, output).await,
        Command::Put { kind, tenant, input } => {
            let handle = open_tenant(engine, &tenant).await?;
            let text = match input {
                Some(path) => read_file(&path)?,
                None => read_stdin()?,
            };
            put(&handle, kind, &text, output).await
        }
        Command::Get { kind, tenant, id } => {
            let handle = open_tenant(engine, &tenant).await?;
            let record = match kind {
                Kind::Resource => Record::Resource(handle.get_resource(id.parse()?).await?),
                Kind::Entity => Record::Entity(handle.get_entity(id.parse()?).await?),
                Kind::Edge => Record::Edge(handle.get_edge(id.parse()?).await?),
                Kind::Moment => Record::Moment(handle.get_moment(id.parse()?).await?),
            };
            print_records(kind, &[record], false, output)
        }
        Command::Delete { kind, tenant, id } => {
            let handle = open_tenant(engine, &tenant).await?;
            match kind {
                Kind::Resource => handle.delete_resource(id.parse::<ResourceId>()?).await?,
                Kind::Entity => handle.delete_entity(id.parse::<EntityId>()?).await?,
                Kind::Edge => handle.delete_edge(id.parse::<EdgeId>()?).await?,
                Kind::Moment => handle.delete_moment(id.parse::<MomentId>()?).await?,
            }
            let kind_name = kind_name(kind);
            match output {
                Output::Json => print_json(&serde_json::json!({ "deleted": kind_name, "id": id })),
                Output::Table => print_table(&["deleted", "id"], &[vec![kind_name.into(), id]]),
            }
        }
        Command::Search { tenant, vector, vector_file, k, filter, embeddings } => {
            let text = match (vector, vector_file) {
                (Some(text), _) => text,
                (None, Some(path)) => read_file(&path)?,
                (None, None) => return Err(bad("vector", "give --vector or --vector-file")),
            };
            let vector: Vec<f32> = serde_json::from_str(&text)
                .map_err(|e| bad("vector", format!("not a JSON array of numbers: {e}")))?;
            let mut query = SearchQuery::new(vector, k);
            if let Some(filter) = filter {
                query = query.with_filter(Filter::parse_str(&filter)?);
            }
            let handle = open_tenant(engine, &tenant).await?;
            let mut hits = handle.search_resources(&query).await?;
            if !embeddings {
                for hit in &mut hits {
                    hit.resource.embedding = None;
                }
            }
            match output {
                Output::Json => print_json(&hits),
                Output::Table => print_table(
                    &["distance", "id", "content", "metadata"],
                    &hits
                        .iter()
                        .map(|h| {
                            vec![
                                format!("{:.4}", h.distance),
                                h.resource.id.to_string(),
                                h.resource.content.clone(),
                                Value::Object(h.resource.metadata.clone()).to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
        }
        Command::Traverse { tenant, entity, depth, direction, relations } => {
            let start: EntityId = entity.parse()?;
            let direction: Direction = direction.parse()?;
            let handle = open_tenant(engine, &tenant).await?;
            let query = TraverseQuery::new(start, depth)
                .with_direction(direction)
                .with_relations(relations);
            let reached = handle.traverse(&query).await?;
            match output {
                Output::Json => print_json(&reached),
                Output::Table => {
                    let mut rows = Vec::with_capacity(reached.len());
                    for r in &reached {
                        let entity = handle.get_entity(r.entity).await?;
                        rows.push(vec![
                            r.depth.to_string(),
                            r.entity.to_string(),
                            entity.name,
                            entity.kind,
                        ]);
                    }
                    print_table(&["depth", "id", "name", "kind"], &rows)
                }
            }
        }
        Command::Moments { tenant, from, to } => {
            let range = TimeRange {
                start: from.as_deref().map(Timestamp::parse).transpose()?,
                end: to.as_deref().map(Timestamp::parse).transpose()?,
            };
            let handle = open_tenant(engine, &tenant).await?;
            let moments = handle.moments_in_range(&range).await?;
            let records: Vec<Record> = moments.into_iter().map(Record::Moment).collect();
            print_records(Kind::Moment, &records, true, output)
        }
        Command::Export { tenant, out } => {
            let handle = open_tenant(engine, &tenant).await?;
            export(&handle, out.as_deref(), output).await
        }
        Command::Import { tenant, input, check } => {
            let tenant = tenant.map(TenantId::new).transpose()?;
            // Import reads its input twice (verify, then write): stdin goes to a file first.
            let spooled;
            let path = match input {
                Some(path) => path,
                None => {
                    spooled = spool_stdin()?;
                    spooled.path().to_owned()
                }
            };
            if check {
                let header =
                    tokio::task::spawn_blocking(move || portable::verify(&path)).await.map_err(
                        |e| Error::Backend { provider: "verify", source: Box::new(e) },
                    )??;
                return print_summary(
                    &serde_json::json!({ "valid": true, "header": header }),
                    output,
                );
            }
            import(engine, &path, tenant.as_ref(), output).await
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Resource => "resource",
        Kind::Entity => "entity",
        Kind::Edge => "edge",
        Kind::Moment => "moment",
    }
}

async fn open_tenant<P: Provider>(
    engine: &MemoryEngine<P>,
    tenant: &str,
) -> percolate::Result<TenantHandle<P>> {
    engine.tenant(&TenantId::new(tenant)?).await
}

async fn tenant_command<P: Provider>(
    engine: &MemoryEngine<P>,
    command: TenantCommand,
    output: Output,
) -> percolate::Result<()> {
    match command {
        TenantCommand::Create { tenant, dimension, metric } => {
            let id = TenantId::new(tenant)?;
            let config = TenantConfig { dimension, metric: metric.parse::<Metric>()? };
            let handle = engine.create_tenant(&id, config).await?;
            let config = handle.config().await?;
            let summary = serde_json::json!({
                "tenant": id,
                "dimension": config.dimension,
                "metric": config.metric,
            });
            print_summary(&summary, output)
        }
        TenantCommand::List => {
            let tenants = engine.list_tenants().await?;
            match output {
                Output::Json => print_json(&tenants),
                Output::Table => print_table(
                    &["tenant"],
                    &tenants.iter().map(|t| vec![t.to_string()]).collect::<Vec<_>>(),
                ),
            }
        }
        TenantCommand::Delete { tenant } => {
            let id = TenantId::new(tenant)?;
            engine.delete_tenant(&id).await?;
            print_summary(&serde_json::json!({ "deleted": "tenant", "id": id }), output)
        }
    }
}

/// Prints a JSON object, or its top-level fields as a two-column table.
fn print_summary(summary: &Value, output: Output) -> percolate::Result<()> {
    match output {
        Output::Json => print_json(summary),
        Output::Table => {
            let rows: Vec<Vec<String>> = summary
                .as_object()
                .map(|map| {
                    map.iter()
                        .map(|(key, value)| {
                            let text = match value {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            vec![key.clone(), text]
                        })
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["field", "value"], &rows)
        }
    }
}

fn read_file(path: &Path) -> percolate::Result<String> {
    std::fs::read_to_string(path).map_err(|e| bad("input file", format!("{}: {e}", path.display())))
}

fn read_stdin() -> percolate::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| bad("stdin", e))?;
    Ok(text)
}

fn spool_stdin() -> percolate::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()
        .map_err(|e| Error::Backend { provider: "temporary file", source: Box::new(e) })?;
    std::io::copy(&mut std::io::stdin().lock(), &mut file)
        .map_err(|e| Error::Backend { provider: "temporary file", source: Box::new(e) })?;
    Ok(file)
}

/// The fields `put` accepts for each kind: a typo must not vanish silently, and ids and
/// timestamps are assigned (records with their ids go through `import`).
fn allowed_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Resource => &["uri", "content", "metadata", "embedding"],
        Kind::Entity => &["name", "kind", "properties"],
        Kind::Edge => &["from", "to", "relation", "weight", "properties"],
        Kind::Moment => &["start", "end", "kind", "content", "entities", "metadata"],
    }
}

fn parse_new<T: serde::de::DeserializeOwned>(
    kind: Kind,
    index: Option<usize>,
    value: Value,
) -> percolate::Result<T> {
    let at = index.map(|i| format!(" (at index {i})")).unwrap_or_default();
    let Value::Object(map) = &value else {
        return Err(bad("input", format!("expected a JSON object{at}")));
    };
    let allowed = allowed_fields(kind);
    if let Some(key) = map.keys().find(|key| !allowed.contains(&key.as_str())) {
        let hint = if key == "id" {
            " (put assigns ids; use import to store records with their ids)".to_owned()
        } else {
            format!(" (a {} has {})", kind_name(kind), allowed.join(", "))
        };
        return Err(bad("input", format!("unknown field {key:?}{at}{hint}")));
    }
    serde_json::from_value(value).map_err(|e| bad("input", format!("{e}{at}")))
}

/// Parses every record of a `put`; `many` says whether they came as an array (errors then
/// name the index).
fn parse_all<T: serde::de::DeserializeOwned>(
    kind: Kind,
    many: bool,
    values: Vec<Value>,
) -> percolate::Result<Vec<T>> {
    values.into_iter().enumerate().map(|(i, v)| parse_new(kind, many.then_some(i), v)).collect()
}

/// Creates the records in `text` (an object or an array, the array atomically).
async fn put<P: Provider>(
    handle: &TenantHandle<P>,
    kind: Kind,
    text: &str,
    output: Output,
) -> percolate::Result<()> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad("input", format!("not JSON: {e}")))?;
    let (many, values) = match value {
        Value::Array(values) if values.is_empty() => {
            return Err(bad("input", "an empty array"));
        }
        Value::Array(values) => (true, values),
        other => (false, vec![other]),
    };
    // Every record is parsed and checked before anything is written.
    let records: Vec<Record> = match kind {
        Kind::Resource => {
            let new: Vec<NewResource> = parse_all(kind, many, values)?;
            let stored = if many {
                handle.batch_create_resources(new).await?
            } else {
                let mut stored = Vec::with_capacity(1);
                for new in new {
                    stored.push(handle.create_resource(new).await?);
                }
                stored
            };
            stored.into_iter().map(Record::Resource).collect()
        }
        // Entities, edges and moments of one array are written in one transaction.
        Kind::Entity => {
            let new: Vec<NewEntity> = parse_all(kind, many, values)?;
            let mut txn = handle.begin().await?;
            let mut stored = Vec::with_capacity(new.len());
            for new in new {
                stored.push(Record::Entity(txn.create_entity(new).await?));
            }
            txn.commit().await?;
            stored
        }
        Kind::Edge => {
            let new: Vec<NewEdge> = parse_all(kind, many, values)?;
            let mut txn = handle.begin().await?;
            let mut stored = Vec::with_capacity(new.len());
            for new in new {
                stored.push(Record::Edge(txn.create_edge(new).await?));
            }
            txn.commit().await?;
            stored
        }
        Kind::Moment => {
            let new: Vec<NewMoment> = parse_all(kind, many, values)?;
            let mut txn = handle.begin().await?;
            let mut stored = Vec::with_capacity(new.len());
            for new in new {
                stored.push(Record::Moment(txn.create_moment(new).await?));
            }
            txn.commit().await?;
            stored
        }
    };
    print_records(kind, &records, many, output)
}

async fn export<P: Provider>(
    handle: &TenantHandle<P>,
    out: Option<&Path>,
    output: Output,
) -> percolate::Result<()> {
    let bar = progress_bar("export");
    let file_error =
        |e: std::io::Error| Error::Backend { provider: "export file", source: Box::new(e) };
    let summary = match out {
        None => {
            let stdout = std::io::stdout().lock();
            let writer = std::io::BufWriter::with_capacity(1 << 20, stdout);
            portable::export(handle, writer, on_progress(&bar)).await?
        }
        Some(path) => {
            // Write beside the target and rename at the end: a failed export leaves no file
            // that looks finished.
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            let mut temp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| bad("--out", format!("{}: {e}", path.display())))?;
            let summary = {
                let writer = std::io::BufWriter::with_capacity(1 << 20, temp.as_file_mut());
                portable::export_with_spool(handle, writer, Some(dir), on_progress(&bar)).await?
            };
            temp.as_file().sync_all().map_err(file_error)?;
            temp.persist(path).map_err(|e| file_error(e.error))?;
            summary
        }
    };
    bar.finish_and_clear();
    if out.is_some() {
        print_summary(&serde_json::to_value(&summary).unwrap_or(Value::Null), output)?;
    }
    Ok(())
}

async fn import<P: Provider>(
    engine: &MemoryEngine<P>,
    path: &Path,
    tenant: Option<&TenantId>,
    output: Output,
) -> percolate::Result<()> {
    let bar = progress_bar("import");
    let started = Instant::now();
    let summary = portable::import(engine, path, tenant, on_progress(&bar)).await?;
    bar.finish_and_clear();
    let mut value = serde_json::to_value(&summary).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("seconds".into(), serde_json::json!(started.elapsed().as_secs_f64()));
    }
    print_summary(&value, output)
}

/// Where a tenant lives, for `migrate`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Spec {
    Rocks(PathBuf),
    Postgres { url: String, admin_url: Option<String>, pool_size: usize },
}

impl Spec {
    /// `rocksdb:PATH`, `postgres://…` / `postgresql://…` / `postgres:URL`, or a bare provider
    /// name for the location in the settings.
    fn parse(text: &str, settings: &Settings) -> percolate::Result<Spec> {
        let admin_url = settings.postgres_admin_url.clone();
        let pool_size = settings.postgres_pool_size.max(1);
        let spec = if text == "rocksdb" {
            Spec::Rocks(settings.rocksdb_path.clone())
        } else if let Some(path) = text.strip_prefix("rocksdb:") {
            if path.is_empty() {
                return Err(bad("provider spec", "rocksdb: needs a path (rocksdb:PATH)"));
            }
            Spec::Rocks(PathBuf::from(path))
        } else if text == "postgres" {
            let url = settings.postgres_url.clone().ok_or_else(|| {
                bad("provider spec", "postgres needs PERCOLATE_POSTGRES_URL or postgres://URL")
            })?;
            Spec::Postgres { url, admin_url, pool_size }
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Spec::Postgres { url: text.to_owned(), admin_url, pool_size }
        } else if let Some(url) = text.strip_prefix("postgres:") {
            Spec::Postgres { url: url.to_owned(), admin_url, pool_size }
        } else {
            return Err(bad(
                "provider spec",
                format!("{text:?} (expected rocksdb:PATH, postgres://URL, rocksdb or postgres)"),
            ));
        };
        let kind = match spec {
            Spec::Rocks(_) => ProviderKind::Rocksdb,
            Spec::Postgres { .. } => ProviderKind::Postgres,
        };
        if !kind.is_compiled_in() {
            return Err(not_compiled(kind));
        }
        Ok(spec)
    }
}

#[cfg(feature = "rocksdb")]
fn open_rocks(
    path: &Path,
    key: &Option<MasterKey>,
) -> percolate::Result<MemoryEngine<RocksProvider>> {
    let mut config = RocksConfig::new(path);
    config.master_key = key.clone();
    Ok(MemoryEngine::new(RocksProvider::open(config)?))
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    url: &str,
    admin_url: Option<&str>,
    pool_size: usize,
) -> percolate::Result<MemoryEngine<PgProvider>> {
    let mut config = PgConfig::new(url).with_pool_size(pool_size);
    if let Some(admin) = admin_url {
        config = config.with_admin_url(admin);
    }
    Ok(MemoryEngine::new(PgProvider::connect(config).await?))
}

/// Opens the source, then hands it to [`migrate_into`] for the destination: one
/// monomorphised path per pair of providers.
async fn migrate(
    from: Spec,
    to: Spec,
    tenant: &TenantId,
    rename: &TenantId,
    key: Option<MasterKey>,
    output: Output,
) -> percolate::Result<()> {
    match from {
        #[cfg(feature = "rocksdb")]
        Spec::Rocks(path) => {
            let source = open_rocks(&path, &key)?;
            // Two providers on one RocksDB root would fight over its tenants: share one.
            if to == Spec::Rocks(path) {
                return migrate_between(&source, &source, tenant, rename, output).await;
            }
            migrate_into(&source, to, tenant, rename, &key, output).await
        }
        #[cfg(feature = "postgres")]
        Spec::Postgres { url, admin_url, pool_size } => {
            let source = open_postgres(&url, admin_url.as_deref(), pool_size).await?;
            migrate_into(&source, to, tenant, rename, &key, output).await
        }
        #[allow(unreachable_patterns)]
        _ => Err(bad("provider spec", "provider not compiled in")),
    }
}

async fn migrate_into<S: Provider>(
    source: &MemoryEngine<S>,
    to: Spec,
    tenant: &TenantId,
    rename: &TenantId,
    key: &Option<MasterKey>,
    output: Output,
) -> percolate::Result<()> {
    match to {
        #[cfg(feature = "rocksdb")]
        Spec::Rocks(path) => {
            migrate_between(source, &open_rocks(&path, key)?, tenant, rename, output).await
        }
        #[cfg(feature = "postgres")]
        Spec::Postgres { url, admin_url, pool_size } => {
            let destination = open_postgres(&url, admin_url.as_deref(), pool_size).await?;
            migrate_between(source, &destination, tenant, rename, output).await
        }
        #[allow(unreachable_patterns)]
        _ => Err(bad("provider spec", "provider not compiled in")),
    }
}

/// Exports the tenant to a temporary file, then imports that file (verified first) into the
/// destination: an interrupted migration is completed by running it again.
async fn migrate_between<S: Provider, D: Provider>(
    source: &MemoryEngine<S>,
    destination: &MemoryEngine<D>,
    tenant: &TenantId,
    rename: &TenantId,
    output: Output,
) -> percolate::Result<()> {
    let started = Instant::now();
    let handle = source.tenant(tenant).await?;
    let mut spool = tempfile::NamedTempFile::new()
        .map_err(|e| Error::Backend { provider: "temporary file", source: Box::new(e) })?;
    let bar = progress_bar("export");
    let exported = {
        let writer = std::io::BufWriter::with_capacity(1 << 20, spool.as_file_mut());
        portable::export(&handle, writer, on_progress(&bar)).await?
    };
    bar.finish_and_clear();
    drop(handle);
    let bar = progress_bar("import");
    let imported =
        portable::import(destination, spool.path(), Some(rename), on_progress(&bar)).await?;
    bar.finish_and_clear();
    let summary = serde_json::json!({
        "from": S::NAME,
        "to": D::NAME,
        "tenant": tenant,
        "as": rename,
        "records": exported.trailer.records,
        "sha256": exported.trailer.sha256,
        "inserted": imported.inserted,
        "skipped": imported.skipped,
        "seconds": started.elapsed().as_secs_f64(),
    });
    print_summary(&summary, output)
}

/// The shared dataset beside the working directory or beside the source tree, if present.
fn default_dataset() -> Option<PathBuf> {
    let beside_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    [PathBuf::from("../shared/data"), PathBuf::from("shared/data"), beside_source]
        .iter()
        .map(|dir| dir.join("wordnet-minilm-dev"))
        .find(|p| p.join("base.fbin").exists())
}

fn millis(start: Instant) -> String {
    format!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3)
}

#[cfg(not(feature = "rocksdb"))]
async fn demo(
    _path: Option<PathBuf>,
    _dataset: Option<PathBuf>,
    _resources: usize,
) -> percolate::Result<()> {
    Err(not_compiled(ProviderKind::Rocksdb))
}

#[cfg(feature = "rocksdb")]
async fn demo(
    path: Option<PathBuf>,
    dataset: Option<PathBuf>,
    resources: usize,
) -> percolate::Result<()> {
    let temp_root = path.is_none();
    let root = match path {
        Some(path) => path,
        None => tempfile_dir()?,
    };
    let started = Instant::now();
    let data = match dataset.or_else(default_dataset) {
        Some(dir) => {
            println!("dataset: {}", dir.display());
            Dataset::load(&dir)?
        }
        None => {
            println!("dataset: clustered synthetic (no dataset directory found)");
            Dataset::synthetic(resources, 100, 384, 10, 7)
        }
    };
    let n = resources.min(data.len());
    println!(
        "loaded {n} x {}-d vectors, {} edges in {}",
        data.dimension,
        data.edges.len(),
        millis(started)
    );

    let engine = MemoryEngine::new(RocksProvider::open(RocksConfig::new(&root))?);
    let id = TenantId::new("demo")?;
    if engine.list_tenants().await?.contains(&id) {
        engine.delete_tenant(&id).await?;
    }
    let tenant = engine.create_tenant(&id, TenantConfig::default()).await?;
    println!("store: {} (tenant {id})", root.display());

    let started = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let text = data.texts.get(i).cloned().unwrap_or_else(|| format!("resource {i}"));
                NewResource::new(text).with_embedding(data.row(i).to_vec()).with_metadata(
                    serde_json::json!({"row": i, "bucket": i % 10})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        tenant.batch_create_resources(batch).await?;
    }
    println!("wrote {n} resources with embeddings in batches of 1000: {}", millis(started));

    let started = Instant::now();
    let mut entity_ids = Vec::with_capacity(n);
    let mut txn = tenant.begin().await?;
    for i in 0..n {
        let name = data
            .texts
            .get(i)
            .and_then(|t| t.split(':').next())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("node {i}"));
        entity_ids.push(txn.create_entity(NewEntity::new(name, "concept")).await?.id);
        if i % 1000 == 999 {
            txn.commit().await?;
            txn = tenant.begin().await?;
        }
    }
    let mut edges = 0;
    for (k, &(from, to)) in
        data.edges.iter().filter(|(f, t)| (*f as usize) < n && (*t as usize) < n).enumerate()
    {
        txn.create_edge(NewEdge::new(
            entity_ids[from as usize],
            entity_ids[to as usize],
            "related",
        ))
        .await?;
        edges += 1;
        if k % 1000 == 999 {
            txn.commit().await?;
            txn = tenant.begin().await?;
        }
    }
    txn.commit().await?;
    println!("wrote {n} entities and {edges} edges in transactions of 1000: {}", millis(started));

    let started = Instant::now();
    let year = 365 * 24 * 3600 * 1_000_000i64;
    let base = Timestamp::now().as_micros() - year;
    for i in 0..1000i64 {
        let start = Timestamp::from_micros(base + i * (year / 1000));
        let end = Timestamp::from_micros(start.as_micros() + 3_600_000_000);
        let mut moment = NewMoment::new(start, end, "session");
        moment.content = format!("session {i}");
        moment.entities.push(entity_ids[i as usize % n.max(1)]);
        tenant.create_moment(moment).await?;
    }
    println!("wrote 1000 moments over a year: {}", millis(started));

    let started = Instant::now();
    let hits = tenant.search_resources(&SearchQuery::new(data.query(0).to_vec(), 3)).await?;
    println!("vector search k=3 over {n} (exact scan): {}", millis(started));
    for hit in &hits {
        let text: String = hit.resource.content.chars().take(70).collect();
        println!("  {:.3}  {text}", hit.distance);
    }

    // Start from the best-connected entity, so the traversal has something to show.
    let mut degree = vec![0u32; n];
    for &(from, to) in &data.edges {
        if (from as usize) < n && (to as usize) < n {
            degree[from as usize] += 1;
        }
    }
    let start = (0..n).max_by_key(|&i| degree[i]).unwrap_or(0);
    let started = Instant::now();
    let reached = tenant
        .traverse(&TraverseQuery::new(entity_ids[start], 3).with_direction(Direction::Both))
        .await?;
    println!(
        "traversal depth 3 (both directions) from entity {start}: {} entities in {}",
        reached.len(),
        millis(started)
    );

    let started = Instant::now();
    let week = TimeRange::new(
        Timestamp::from_micros(base + year / 2),
        Timestamp::from_micros(base + year / 2 + year / 52),
    );
    let moments = tenant.moments_in_range(&week).await?;
    println!("moments in one week mid-year: {} in {}", moments.len(), millis(started));
    drop(tenant);
    drop(engine);
    if temp_root {
        std::fs::remove_dir_all(&root)
            .map_err(|e| Error::invalid("path", format!("{}: {e}", root.display())))?;
    }
    Ok(())
}

#[cfg(feature = "rocksdb")]
fn tempfile_dir() -> percolate::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("percolate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::invalid("path", format!("{}: {e}", dir.display())))?;
    Ok(dir)
}
