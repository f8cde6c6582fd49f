//! `percolate demo`: a walk-through of every operation on the embedded provider, timed.

#[allow(unused_imports)]
use super::*;

/// The shared dataset beside the working directory or beside the source tree, if present.
pub(crate) fn default_dataset() -> Option<PathBuf> {
    let beside_source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    [PathBuf::from("../shared/data"), PathBuf::from("shared/data"), beside_source]
        .iter()
        .map(|dir| dir.join("wordnet-minilm-dev"))
        .find(|p| p.join("base.fbin").exists())
}

pub(crate) fn millis(start: Instant) -> String {
    format!("{:.1} ms", start.elapsed().as_secs_f64() * 1e3)
}

#[cfg(not(feature = "rocksdb"))]
pub(crate) async fn demo(
    _path: Option<PathBuf>,
    _dataset: Option<PathBuf>,
    _resources: usize,
) -> percolate::Result<()> {
    Err(not_compiled(ProviderKind::Rocksdb))
}

#[cfg(feature = "rocksdb")]
pub(crate) async fn demo(
    path: Option<PathBuf>,
    dataset: Option<PathBuf>,
    resources: usize,
) -> percolate::Result<()> {
    if resources == 0 {
        return Err(bad("--resources", "must be at least 1"));
    }
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
pub(crate) fn tempfile_dir() -> percolate::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("percolate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::invalid("path", format!("{}: {e}", dir.display())))?;
    Ok(dir)
}
