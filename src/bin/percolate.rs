//! The `percolate` command line.
//!
//! `percolate demo` writes a tenant on the embedded RocksDB provider (real embeddings, texts
//! and a graph from a dataset directory when one is found, clustered synthetic data
//! otherwise), then searches, traverses and scans it, printing what it did and how long each
//! step took.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use percolate::dataset::Dataset;
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{
    Direction, Error, MemoryEngine, NewEdge, NewEntity, NewMoment, NewResource, SearchQuery,
    TenantConfig, TenantId, TimeRange, Timestamp, TraverseQuery,
};

#[derive(Parser)]
#[command(name = "percolate", version, about = "A storage engine for agent memory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    let result = match cli.command {
        Command::Demo { path, dataset, resources } => {
            runtime.block_on(demo(path, dataset, resources))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // Bad input and storage failures exit differently, so scripts can tell them apart.
            ExitCode::from(if matches!(e, Error::Invalid { .. }) { 2 } else { 1 })
        }
    }
}

fn default_dataset() -> Option<PathBuf> {
    ["../shared/data/wordnet-minilm-dev", "shared/data/wordnet-minilm-dev"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("base.fbin").exists())
}

fn millis(start: Instant) -> String {
    format!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3)
}

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

fn tempfile_dir() -> percolate::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("percolate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::invalid("path", format!("{}: {e}", dir.display())))?;
    Ok(dir)
}
