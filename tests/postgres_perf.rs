//! Latency probes of the PostgreSQL provider, for tuning it; ignored by default (they measure,
//! they do not check anything a plain test run should fail on).
//!
//! ```text
//! export CARGO_TARGET_DIR=/root/.cache/percolate/target
//! # point calls only (a small tenant, seconds):
//! bash scripts/with-postgres.sh cargo test --release --features postgres --test postgres_perf \
//!     -- --ignored --nocapture point_calls
//! # where a single get's time goes (bare client pipelines with and without the session
//! # cleanup, statement by statement, interleaved with the provider's get):
//! bash scripts/with-postgres.sh cargo test --release --features postgres --test postgres_perf \
//!     -- --ignored --nocapture get_breakdown
//! # where a single put's time goes (bare client: the pipelined transaction against one
//! # statement that sets the tenant itself, interleaved with the provider's put):
//! bash scripts/with-postgres.sh cargo test --release --features postgres --test postgres_perf \
//!     -- --ignored --nocapture put_breakdown
//! # the design table's rows on the workload of `percolate bench` (the shared dataset when
//! # present, so traversal runs on the WordNet graph; PERCOLATE_PERF_N resources):
//! bash scripts/with-postgres.sh cargo test --release --features postgres --test postgres_perf \
//!     -- --ignored --nocapture table
//! ```
//!
//! The runtime is the benches': one worker thread for the connections' background tasks, calls
//! made one at a time from the main thread (`block_on`), as one client calling back to back.
#![cfg(feature = "postgres")]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use percolate::bench::dataset::Dataset;
use percolate::bench::{self, BenchData, Latencies, Sizes, Workload};
use percolate::postgres::{PgConfig, PgProvider};
use percolate::{MemoryEngine, NewResource, TenantConfig};

fn config() -> PgConfig {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL")
        .expect("PERCOLATE_TEST_POSTGRES_URL: run through scripts/with-postgres.sh");
    let mut config = PgConfig::new(url);
    // `PERCOLATE_PERF_EXACT_BELOW` overrides the provider's exact search threshold (0: every
    // search through the index), to compare the two on one tenant.
    if let Some(exact_below) = env_usize("PERCOLATE_PERF_EXACT_BELOW") {
        config = config.with_exact_below(exact_below);
    }
    match std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL") {
        Ok(admin) => config.with_admin_url(admin),
        Err(_) => config,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn report(name: &str, times: Vec<Duration>) {
    let latencies = Latencies::new(times);
    println!(
        "{name:<40} n={:<6} p50 {:>8.1} us  p10 {:>8.1} us  p99 {:>8.1} us",
        latencies.len(),
        latencies.quantile(0.5).as_secs_f64() * 1e6,
        latencies.quantile(0.1).as_secs_f64() * 1e6,
        latencies.quantile(0.99).as_secs_f64() * 1e6,
    );
}

/// Single get and put on a small tenant, `PERCOLATE_PERF_SAMPLES` each (default 5000), plus
/// batches of 1000 without embeddings.
#[test]
#[ignore = "a measurement: run with --ignored through scripts/with-postgres.sh"]
fn point_calls() {
    let rt = runtime();
    let engine = MemoryEngine::new(rt.block_on(PgProvider::connect(config())).expect("connect"));
    let samples = env_usize("PERCOLATE_PERF_SAMPLES").unwrap_or(5000);
    let id = bench::bench_tenant("perf-point").expect("tenant id");
    let tenant = rt.block_on(engine.create_tenant(&id, TenantConfig::default())).expect("tenant");
    let batch: Vec<NewResource> =
        (0..1000).map(|i| NewResource::new(format!("note {i}"))).collect();
    let ids: Vec<_> = rt
        .block_on(tenant.batch_create_resources(batch))
        .expect("load")
        .into_iter()
        .map(|r| r.id)
        .collect();
    // Every call is also made from a current-thread runtime, on an engine of its own, one
    // after the other with the worker-thread call (see `knn`): no hand-over to a worker
    // thread and back, as a synchronous client such as pgbench or psycopg has none.
    let local = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let local_engine =
        MemoryEngine::new(local.block_on(PgProvider::connect(config())).expect("connect"));
    let local_tenant = local.block_on(local_engine.tenant(&id)).expect("open");
    for round in 0..2 {
        for i in 0..500 {
            rt.block_on(tenant.get_resource(ids[i % ids.len()])).expect("warm up");
            local.block_on(local_tenant.get_resource(ids[i % ids.len()])).expect("warm up");
        }
        // `samples` calls of `op(i, on_local)` on each runtime, the two in turn (the one that
        // goes first alternates), timed one by one; reported as `name`.
        let paired = |name: &str, op: &mut dyn FnMut(usize, bool)| {
            let mut times = [Vec::with_capacity(samples), Vec::with_capacity(samples)];
            for i in 0..samples {
                for on_local in [i % 2 == 0, i % 2 == 1] {
                    let t = Instant::now();
                    op(i, on_local);
                    times[usize::from(on_local)].push(t.elapsed());
                }
            }
            let [worker, current] = times;
            report(&format!("{name} (round {round})"), worker);
            report(&format!("{name} (round {round}, current-thread)"), current);
        };
        paired("get", &mut |i, on_local| {
            let id = ids[(i * 7919) % ids.len()];
            if on_local {
                local.block_on(local_tenant.get_resource(id)).expect("get");
            } else {
                rt.block_on(tenant.get_resource(id)).expect("get");
            }
        });
        paired("put", &mut |i, on_local| {
            let new = NewResource::new(format!("put {round} {i} {on_local}"));
            if on_local {
                local.block_on(local_tenant.create_resource(new)).expect("put");
            } else {
                rt.block_on(tenant.create_resource(new)).expect("put");
            }
        });
    }
    let mut times = Vec::new();
    for b in 0..20 {
        let batch: Vec<NewResource> =
            (0..1000).map(|i| NewResource::new(format!("batch {b} {i}"))).collect();
        let t = Instant::now();
        rt.block_on(tenant.batch_create_resources(batch)).expect("batch");
        times.push(t.elapsed());
    }
    report("batch_1000", times);
    rt.block_on(bench::delete_tenant(&engine, &id)).expect("delete tenant");
}

/// The design table on the workload of `percolate bench`: `PERCOLATE_PERF_N` resources (default
/// the shared dataset's rows, or 20000 synthetic), `PERCOLATE_PERF_SAMPLES` calls per row.
#[test]
#[ignore = "a measurement: run with --ignored through scripts/with-postgres.sh"]
fn table() {
    let rt = runtime();
    let engine = MemoryEngine::new(rt.block_on(PgProvider::connect(config())).expect("connect"));
    let dir = std::env::var_os("PERCOLATE_DATASET").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wordnet-minilm-dev")
    });
    let source = dir
        .join("base.fbin")
        .exists()
        .then(|| Dataset::load(&dir).expect("dataset"))
        .map(|data| (dir.display().to_string(), data));
    let resources = env_usize("PERCOLATE_PERF_N")
        .unwrap_or_else(|| source.as_ref().map_or(20_000, |(_, data)| data.len()));
    let sizes = Sizes {
        resources,
        samples: env_usize("PERCOLATE_PERF_SAMPLES").unwrap_or(3000),
        seconds_per_row: 3.0,
        ..Sizes::default()
    };
    let data = BenchData::prepare(source, sizes.resources, sizes.queries, sizes.seed)
        .expect("prepare data");
    let id = bench::bench_tenant("perf-table").expect("tenant id");
    let started = Instant::now();
    let workload =
        rt.block_on(Workload::load(&engine, &id, &data, &sizes, |_| {})).expect("load workload");
    println!("loaded {} resources from {} in {:.1?}", data.len(), data.source, started.elapsed());
    let rows = rt.block_on(bench::measure_all(&workload, &sizes)).expect("measure");
    println!("{}", bench::table(&rows));
    rt.block_on(knn_breakdown(&id, &data.dataset));
    drop(workload);
    rt.block_on(bench::delete_tenant(&engine, &id)).expect("delete tenant");
}

/// The transaction-local tenant setting every provider transaction starts with.
const SET_TENANT: &str = "SELECT set_config('app.current_tenant', $1, true)";

/// A bare client as the application role (the test URL), its connection driven on `rt`.
fn app_client(rt: &tokio::runtime::Runtime) -> tokio_postgres::Client {
    let url = std::env::var("PERCOLATE_TEST_POSTGRES_URL").expect("url");
    rt.block_on(async {
        let (client, connection) =
            tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        rt.spawn(connection);
        client
    })
}

/// A bare client on the owner connection (when `PERCOLATE_TEST_POSTGRES_ADMIN_URL` is set)
/// and the schema of tenant `id`.
async fn owner_client(
    id: &percolate::TenantId,
) -> Option<(tokio_postgres::Client, percolate::postgres::tenant::SchemaName)> {
    let admin = std::env::var("PERCOLATE_TEST_POSTGRES_ADMIN_URL").ok()?;
    let (client, connection) =
        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("admin connect");
    tokio::spawn(connection);
    Some((client, percolate::postgres::tenant::SchemaName::of(id)))
}

/// Where a kNN call's time goes: the server's own execution time (`EXPLAIN ANALYZE`) of the
/// index search, and the same search from a bare client (ids only, and every column as the
/// provider fetches them), at `hnsw.ef_search` 40, on the owner connection (row-level security
/// applies to it too: the tenant is set per transaction).
async fn knn_breakdown(id: &percolate::TenantId, data: &Dataset) {
    let Some((client, schema)) = owner_client(id).await else { return };
    let indexdef: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = \
             'resources_embedding'",
            &[&schema.as_str()],
        )
        .await
        .expect("index")
        .get(0);
    println!("\nkNN breakdown, ef_search 40; index: {indexdef}");
    let d = data.dimension;
    let order = if indexdef.contains("l2_normalize") {
        format!("l2_normalize(embedding)::halfvec({d}) <#> l2_normalize($1::vector)::halfvec({d})")
    } else {
        format!("embedding::vector({d}) <=> ($1::vector)::vector({d})")
    };
    let ids_only = format!("SELECT id FROM {schema}.resources ORDER BY {order} LIMIT 10");
    let all = format!(
        "SELECT id, uri, content, metadata, embedding, created_at, updated_at \
         FROM {schema}.resources WHERE embedding IS NOT NULL ORDER BY {order}, id LIMIT 10"
    );
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .query("SELECT set_config('app.current_tenant', $1, true)", &[&id.as_str()])
        .await
        .expect("tenant");
    client.batch_execute("SET LOCAL hnsw.ef_search = 40").await.expect("ef");
    let queries = data.query_count().min(200);
    let mut server = Vec::new();
    let (mut ids_times, mut all_times) = (Vec::new(), Vec::new());
    let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {all}");
    for round in 0..2 {
        for q in 0..queries {
            let v = pgvector::Vector::from(data.queries[q * d..][..d].to_vec());
            let t = Instant::now();
            client.query(&ids_only, &[&v]).await.expect("ids");
            let ids_time = t.elapsed();
            let t = Instant::now();
            client.query(&all, &[&v]).await.expect("all");
            let all_time = t.elapsed();
            let plan: serde_json::Value =
                client.query_one(&explain, &[&v]).await.expect("explain").get(0);
            if round == 1 {
                ids_times.push(ids_time);
                all_times.push(all_time);
                let ms = plan[0]["Execution Time"].as_f64().unwrap_or(0.0);
                server.push(Duration::from_secs_f64(ms / 1000.0));
            }
            if round == 1 && q == 0 {
                println!("{}", serde_json::to_string(&plan[0]["Plan"]).unwrap_or_default());
            }
        }
    }
    client.batch_execute("COMMIT").await.expect("commit");
    report("server execution", server);
    report("bare client, ids", ids_times);
    report("bare client, all cols", all_times);
}

/// Where a single get's time goes, on bare tokio-postgres connections as the application role
/// (same runtime as the benches): a round trip alone, the select alone, the transaction the
/// provider pipelines around it, and the session cleanup; then the provider's own get.
#[test]
#[ignore = "a measurement: run with --ignored through scripts/with-postgres.sh"]
fn get_breakdown() {
    let rt = runtime();
    let engine = MemoryEngine::new(rt.block_on(PgProvider::connect(config())).expect("connect"));
    let samples = env_usize("PERCOLATE_PERF_SAMPLES").unwrap_or(5000);
    let id = bench::bench_tenant("perf-get").expect("tenant id");
    let tenant = rt.block_on(engine.create_tenant(&id, TenantConfig::default())).expect("tenant");
    let batch: Vec<NewResource> =
        (0..1000).map(|i| NewResource::new(format!("note {i}"))).collect();
    let ids: Vec<uuid::Uuid> = rt
        .block_on(tenant.batch_create_resources(batch))
        .expect("load")
        .into_iter()
        .map(|r| r.id.as_uuid())
        .collect();
    let client = app_client(&rt);
    let schema = percolate::postgres::tenant::SchemaName::of(&id);
    let select = format!(
        "SELECT id, uri, content, metadata, embedding, created_at, updated_at \
         FROM {schema}.resources WHERE id = $1"
    );
    let clean = deadpool_postgres::RecyclingMethod::Clean.query().expect("clean").to_owned();
    let (one, sel, set) = rt.block_on(async {
        (
            client.prepare("SELECT 1").await.expect("prepare"),
            client.prepare(&select).await.expect("prepare"),
            client.prepare(SET_TENANT).await.expect("prepare"),
        )
    });
    let tenant_id = id.as_str().to_owned();
    let c = &client;
    // Variants run interleaved (one call of each in turn), so a busy machine slows all alike.
    let mut variants: Vec<(String, Option<String>)> =
        vec![("no cleanup".to_owned(), None), ("full cleanup".to_owned(), Some(clean.clone()))];
    for statement in clean.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        variants.push((statement.to_owned(), Some(format!("{statement};"))));
    }
    let pipeline = |cleanup: Option<&str>, i: usize| {
        rt.block_on(async {
            let k = ids[(i * 7919) % ids.len()];
            let tp: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant_id];
            let kp: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&k];
            let (z, a, b, r, d) = tokio::join!(biased;
                async { match cleanup { Some(q) => c.batch_execute(q).await, None => Ok(()) } },
                c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                c.query(&set, &tp),
                c.query(&sel, &kp),
                c.batch_execute("COMMIT"));
            z.and(a).and(b.map(drop)).and(r.map(drop)).and(d).expect("pipeline");
        })
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len() + 2];
    for i in 0..samples + 500 {
        for (v, (_, cleanup)) in variants.iter().enumerate() {
            let t = Instant::now();
            pipeline(cleanup.as_deref(), i);
            if i >= 500 {
                times[v].push(t.elapsed());
            }
        }
        let t = Instant::now();
        rt.block_on(c.query(&one, &[])).expect("select 1");
        if i >= 500 {
            times[variants.len()].push(t.elapsed());
        }
        let k = ids[(i * 7919) % ids.len()];
        let t = Instant::now();
        rt.block_on(tenant.get_resource(percolate::ResourceId::from(k))).expect("get");
        if i >= 500 {
            times[variants.len() + 1].push(t.elapsed());
        }
    }
    let names = variants
        .iter()
        .map(|(name, _)| format!("pipeline, {name}"))
        .chain(["SELECT 1 (a round trip)".to_owned(), "provider get".to_owned()]);
    for (name, times) in names.zip(times) {
        report(&name, times);
    }
    rt.block_on(bench::delete_tenant(&engine, &id)).expect("delete tenant");
}

/// Where a single put's time goes: bare-client inserts of one resource row, one call of each
/// variant in turn (so a busy machine slows all alike), interleaved with the provider's put:
/// the pipelined transaction (`BEGIN`, tenant, `INSERT`, `COMMIT` in one round trip, what the
/// provider sent before) and the one statement that sets the tenant itself (what it sends now).
#[test]
#[ignore = "a measurement: run with --ignored through scripts/with-postgres.sh"]
fn put_breakdown() {
    let rt = runtime();
    let engine = MemoryEngine::new(rt.block_on(PgProvider::connect(config())).expect("connect"));
    let samples = env_usize("PERCOLATE_PERF_SAMPLES").unwrap_or(3000);
    let id = bench::bench_tenant("perf-put").expect("tenant id");
    let tenant = rt.block_on(engine.create_tenant(&id, TenantConfig::default())).expect("tenant");
    let client = app_client(&rt);
    let schema = percolate::postgres::tenant::SchemaName::of(&id);
    let columns = "id, uri, content, metadata, embedding, created_at, updated_at";
    let insert = format!(
        "INSERT INTO {schema}.resources ({columns}) VALUES ($1, NULL, $2, '{{}}', NULL, 0, 0)"
    );
    let one_statement = format!(
        "WITH tenant AS MATERIALIZED \
             (SELECT set_config('app.current_tenant', $3, true) AS id) \
         INSERT INTO {schema}.resources (tenant_id, {columns}) \
         SELECT tenant.id, $1::uuid, NULL, $2::text, '{{}}', NULL, 0, 0 FROM tenant"
    );
    let (insert, one_statement, set) = rt.block_on(async {
        (
            client.prepare(&insert).await.expect("prepare"),
            client.prepare(&one_statement).await.expect("prepare"),
            client.prepare(SET_TENANT).await.expect("prepare"),
        )
    });
    let tenant_id = id.as_str().to_owned();
    let c = &client;
    let content = "a note".to_owned();
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for i in 0..samples + 300 {
        let keep = i >= 300;
        let t = Instant::now();
        rt.block_on(async {
            let key = uuid::Uuid::now_v7();
            let tp: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&tenant_id];
            let ip: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&key, &content];
            let (a, b, r, d) = tokio::join!(biased;
                c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                c.query(&set, &tp),
                c.execute(&insert, &ip),
                c.batch_execute("COMMIT"));
            a.and(b.map(drop)).and(r.map(drop)).and(d).expect("pipeline");
        });
        if keep {
            times[0].push(t.elapsed());
        }
        let t = Instant::now();
        let key = uuid::Uuid::now_v7();
        rt.block_on(c.execute(&one_statement, &[&key, &content, &tenant_id]))
            .expect("one statement");
        if keep {
            times[1].push(t.elapsed());
        }
        let t = Instant::now();
        rt.block_on(tenant.create_resource(NewResource::new(format!("put {i}")))).expect("put");
        if keep {
            times[2].push(t.elapsed());
        }
    }
    let names = ["pipelined transaction (4 statements)", "one statement", "provider put"];
    for (name, times) in names.into_iter().zip(times) {
        report(name, times);
    }
    rt.block_on(bench::delete_tenant(&engine, &id)).expect("delete tenant");
}

/// kNN k=10 over `PERCOLATE_PERF_N` (default 100000) 384-d vectors built as `benches/pg_vector.rs`
/// builds them (the shared dataset plus noisy copies), recall@10 against brute force and
/// latency through the provider at each `hnsw.ef_search` of `PERCOLATE_PERF_EF` (default
/// `20,24,32,40,48,64,100`), then the plan of one search (`EXPLAIN ANALYZE, BUFFERS`) and the
/// server's execution time. The tenant `PERCOLATE_PERF_TENANT` is loaded once and kept when
/// that variable is set, so a long-running server (`scripts/with-postgres.sh sleep 9999`) can be
/// probed again without reloading.
#[test]
#[ignore = "a measurement: run with --ignored through scripts/with-postgres.sh"]
fn knn() {
    const K: usize = 10;
    let rt = runtime();
    let engine = MemoryEngine::new(rt.block_on(PgProvider::connect(config())).expect("connect"));
    let dir = std::env::var_os("PERCOLATE_DATASET").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wordnet-minilm-dev")
    });
    let rows = env_usize("PERCOLATE_PERF_N").unwrap_or(100_000);
    let mut data = Dataset::load(&dir).expect("dataset");
    let d = data.dimension;
    data.base.truncate(rows * d);
    bench::pad_with_noisy_copies(&mut data, rows, 0x5EED);
    let queries = data.query_count().min(200);
    data.queries.truncate(queries * d);
    let keep_tenant = std::env::var("PERCOLATE_PERF_TENANT").ok();
    let id = match &keep_tenant {
        Some(name) => percolate::TenantId::new(name.clone()).expect("tenant id"),
        None => bench::bench_tenant("perf-knn").expect("tenant id"),
    };
    let _tenant = match rt.block_on(engine.tenant(&id)) {
        Ok(tenant) => tenant,
        Err(_) => {
            let config =
                TenantConfig { dimension: Some(d as u32), metric: percolate::Metric::Cosine };
            let tenant = rt.block_on(engine.create_tenant(&id, config)).expect("tenant");
            let started = Instant::now();
            for (b, chunk) in data.base.chunks(1000 * d).enumerate() {
                let batch: Vec<NewResource> = chunk
                    .chunks_exact(d)
                    .enumerate()
                    .map(|(j, v)| {
                        NewResource::new(format!("row {}", b * 1000 + j)).with_embedding(v.to_vec())
                    })
                    .collect();
                rt.block_on(tenant.batch_create_resources(batch)).expect("ingest");
            }
            println!("loaded {rows} x {d} in {:.1?}", started.elapsed());
            tenant
        }
    };
    let truth = bench::exact_neighbours(&data, &data.queries, K, &|_| true);
    let efs: Vec<usize> = std::env::var("PERCOLATE_PERF_EF")
        .unwrap_or_else(|_| "20,24,32,40,48,64,100".to_owned())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let row_of = |content: &str| -> u32 {
        content.strip_prefix("row ").and_then(|n| n.parse().ok()).expect("row content")
    };
    // Each search is also made from a current-thread runtime, on an engine of its own: the
    // connections' tasks then run on the calling thread, so a call has no hand-over to the
    // worker thread and back, as a synchronous client (psql, psycopg) has none. The two run
    // one query after the other, so a busy machine slows both alike.
    let local = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    for round in 0..2 {
        for &ef in &efs {
            let provider =
                rt.block_on(PgProvider::connect(config().with_ef_search(ef))).expect("connect");
            let engine = MemoryEngine::new(provider);
            let handle = rt.block_on(engine.tenant(&id)).expect("open");
            let local_engine = MemoryEngine::new(
                local.block_on(PgProvider::connect(config().with_ef_search(ef))).expect("connect"),
            );
            let local_handle = local.block_on(local_engine.tenant(&id)).expect("open");
            let search = |q: usize, on_local: bool| {
                let query = percolate::SearchQuery::new(data.queries[q * d..][..d].to_vec(), K);
                if on_local {
                    local.block_on(local_handle.search_resources(&query)).expect("search")
                } else {
                    rt.block_on(handle.search_resources(&query)).expect("search")
                }
            };
            for q in 0..queries.min(30) {
                search(q, false);
                search(q, true);
            }
            let mut found = [0usize; 2];
            let mut times = [Vec::with_capacity(queries), Vec::with_capacity(queries)];
            for (q, truth) in truth.iter().enumerate() {
                for on_local in [q % 2 == 0, q % 2 == 1] {
                    let t = Instant::now();
                    let hits = search(q, on_local);
                    times[usize::from(on_local)].push(t.elapsed());
                    found[usize::from(on_local)] += hits
                        .iter()
                        .filter(|h| truth.contains(&row_of(&h.resource.content)))
                        .count();
                }
            }
            for (on_local, times) in times.into_iter().enumerate() {
                let recall = found[on_local] as f64 / (queries * K) as f64;
                let flavour = if on_local == 1 { "current-thread" } else { "worker" };
                report(&format!("round {round} ef {ef} recall {recall:.3} {flavour}"), times);
            }
        }
    }
    rt.block_on(knn_plan(&id, &data));
    if keep_tenant.is_none() {
        rt.block_on(bench::delete_tenant(&engine, &id)).expect("delete tenant");
    }
}

/// The plan and server time of the provider's unfiltered search statement, as the owner role
/// (row-level security applies to it too) with the provider's transaction-local settings, and
/// the same statement from a bare client: every column as the provider fetches them, and ids
/// only; with and without pgvector's iterative scan. The three run in turn on each query
/// vector, so the second and third find the index pages it visits in the CPU caches: compare
/// the first with the provider, the others with each other (ids only measured half the time
/// of every column for that reason alone).
async fn knn_plan(id: &percolate::TenantId, data: &Dataset) {
    let Some((client, schema)) = owner_client(id).await else { return };
    let d = data.dimension;
    let order = format!(
        "(l2_normalize(embedding)::halfvec({d}) <#> l2_normalize($1::vector)::halfvec({d})), id"
    );
    let all = format!(
        "SELECT id, uri, content, metadata, embedding, created_at, updated_at \
         FROM {schema}.resources WHERE embedding IS NOT NULL ORDER BY {order} LIMIT $2"
    );
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, SETTINGS) {all}");
    // The second bare query's columns: `PERCOLATE_PERF_COLUMNS`, ids by default.
    let some = std::env::var("PERCOLATE_PERF_COLUMNS").unwrap_or_else(|_| "id".to_owned());
    let ids = format!(
        "SELECT {some} FROM {schema}.resources WHERE embedding IS NOT NULL ORDER BY {order} LIMIT $2"
    );
    let (all_s, ids_s, explain_s) = (
        client.prepare(&all).await.expect("prepare"),
        client.prepare(&ids).await.expect("prepare"),
        client.prepare(&explain).await.expect("prepare"),
    );
    let queries = data.query_count().min(200);
    let efs: Vec<String> = std::env::var("PERCOLATE_PERF_PLAN_EF")
        .unwrap_or_else(|_| "32,40".to_owned())
        .split(',')
        .map(str::to_owned)
        .collect();
    for ef in &efs {
        for iterative in ["strict_order", "off"] {
            client.batch_execute("BEGIN").await.expect("begin");
            client
                .query(
                    "SELECT set_config('app.current_tenant', $1, true),
                     set_config('hnsw.ef_search', $2, true),
                     set_config('hnsw.iterative_scan', $3, true),
                     set_config('enable_seqscan', 'off', true),
                     set_config('enable_sort', 'off', true),
                     set_config('plan_cache_mode', 'force_generic_plan', true)",
                    &[&id.as_str(), ef, &iterative],
                )
                .await
                .expect("settings");
            let (mut server, mut all_t, mut ids_t) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..2 {
                for q in 0..queries {
                    let v = pgvector::Vector::from(data.queries[q * d..][..d].to_vec());
                    let t = Instant::now();
                    client.query(&all_s, &[&v, &10i64]).await.expect("all");
                    let all_time = t.elapsed();
                    let t = Instant::now();
                    client.query(&ids_s, &[&v, &10i64]).await.expect("ids");
                    let ids_time = t.elapsed();
                    let rows = client.query(&explain_s, &[&v, &10i64]).await.expect("explain");
                    let lines: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
                    if round == 1 && q == 0 && ef == &efs[0] && iterative == "strict_order" {
                        let shown: Vec<String> = lines
                            .iter()
                            .map(|l| match l.find("'[") {
                                Some(at) => format!("{}'[...]", &l[..at]),
                                None => l.clone(),
                            })
                            .collect();
                        println!("\n{}", shown.join("\n"));
                    }
                    let ms: f64 = lines
                        .iter()
                        .find_map(|l| l.strip_prefix("Execution Time: "))
                        .and_then(|l| l.trim_end_matches(" ms").parse().ok())
                        .unwrap_or(0.0);
                    if round == 1 {
                        server.push(Duration::from_secs_f64(ms / 1000.0));
                        all_t.push(all_time);
                        ids_t.push(ids_time);
                    }
                }
            }
            client.batch_execute("COMMIT").await.expect("commit");
            report(&format!("ef {ef} {iterative}: server (EXPLAIN ANALYZE)"), server);
            report(&format!("ef {ef} {iterative}: bare, all columns"), all_t);
            report(&format!("ef {ef} {iterative}: bare, {some}"), ids_t);
        }
    }
}

/// kNN with cold caches, variant by variant: every call uses a query vector no other call used
/// recently (variant `v` takes query `(q + 137 v) % n` at step `q`), so the index pages it walks
/// are not in the CPU caches from a previous call, as in the bench, which cycles through 200
/// queries. Runs on the kept tenant `PERCOLATE_PERF_TENANT` (load it with `knn`), as the
/// application role (row-level security applies), over the tables of `PERCOLATE_PERF_TABLES`
/// (default `resources`; other tables of the tenant's schema with the same columns, policy and
/// an HNSW index of other build parameters) at each `hnsw.ef_search` of `PERCOLATE_PERF_EF`
/// (default `24,32`). For each: the provider's pipeline from a bare client (`BEGIN`, settings,
/// search, `COMMIT` in one round trip) and its recall@10, and the server's time for the same
/// search (`EXPLAIN (ANALYZE, BUFFERS)`, also on a fresh vector) with the buffers it touched.
#[test]
#[ignore = "a measurement: run with --ignored through scripts/with-postgres.sh"]
fn knn_cold() {
    const K: usize = 10;
    let rt = runtime();
    let dir = std::env::var_os("PERCOLATE_DATASET").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/wordnet-minilm-dev")
    });
    let rows = env_usize("PERCOLATE_PERF_N").unwrap_or(100_000);
    let mut data = Dataset::load(&dir).expect("dataset");
    let d = data.dimension;
    data.base.truncate(rows * d);
    bench::pad_with_noisy_copies(&mut data, rows, 0x5EED);
    // `PERCOLATE_PERF_QUERIES` limits the query vectors (the bench uses the first 200).
    let n = data.query_count().min(env_usize("PERCOLATE_PERF_QUERIES").unwrap_or(usize::MAX));
    data.queries.truncate(n * d);
    let truth = bench::exact_neighbours(&data, &data.queries, K, &|_| true);
    let name = std::env::var("PERCOLATE_PERF_TENANT").expect("PERCOLATE_PERF_TENANT: see knn");
    let id = percolate::TenantId::new(name).expect("tenant id");
    let schema = percolate::postgres::tenant::SchemaName::of(&id);
    let client = app_client(&rt);
    let list = |name: &str, default: &str| -> Vec<String> {
        std::env::var(name)
            .unwrap_or_else(|_| default.to_owned())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let tables = list("PERCOLATE_PERF_TABLES", "resources");
    let efs = list("PERCOLATE_PERF_EF", "24,32");
    let order = format!(
        "(l2_normalize(embedding)::halfvec({d}) <#> l2_normalize($1::vector)::halfvec({d})), id"
    );
    let settings = rt
        .block_on(client.prepare(
            "SELECT set_config('app.current_tenant', $1, true),
                set_config('hnsw.ef_search', $2, true),
                set_config('hnsw.iterative_scan', $3, true),
                set_config('hnsw.max_scan_tuples', '20000', true),
                set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true),
                set_config('plan_cache_mode', 'force_generic_plan', true)",
        ))
        .expect("prepare");
    struct Variant {
        name: String,
        ef: String,
        search: tokio_postgres::Statement,
        explain: tokio_postgres::Statement,
        times: Vec<Duration>,
        server: Vec<Duration>,
        buffers: Vec<u64>,
        found: usize,
    }
    // Statement shapes (`PERCOLATE_PERF_SHAPES`, default `provider`): `provider`, the
    // provider's statement; `no-tiebreak`, ordered by distance alone; `ids`, ids only;
    // `inner`, ids and distances from the index, full rows joined for those alone.
    let shapes = list("PERCOLATE_PERF_SHAPES", "provider");
    let distance = format!(
        "(l2_normalize(embedding)::halfvec({d}) <#> l2_normalize($1::vector)::halfvec({d}))"
    );
    let columns = "id, uri, content, metadata, embedding, created_at, updated_at";
    let mut variants = Vec::new();
    for table in &tables {
        for ef in &efs {
            for shape in &shapes {
                let from = format!("FROM {schema}.{table} WHERE embedding IS NOT NULL");
                let search = match shape.as_str() {
                    "provider" => format!("SELECT {columns} {from} ORDER BY {order} LIMIT $2"),
                    "no-tiebreak" => {
                        format!("SELECT {columns} {from} ORDER BY {distance} LIMIT $2")
                    }
                    "ids" => format!("SELECT id, '', 'row 0' {from} ORDER BY {order} LIMIT $2"),
                    "inner" => format!(
                        "SELECT r.id, r.uri, r.content, r.metadata, r.embedding, r.created_at, \
                         r.updated_at FROM (SELECT id, {distance} AS distance {from} \
                         ORDER BY 2 LIMIT $2) n JOIN {schema}.{table} r ON r.id = n.id \
                         ORDER BY n.distance, n.id"
                    ),
                    // A function of the tenant's schema that sets the tenant and settings
                    // itself (created by hand for the probe): one statement, no BEGIN/COMMIT.
                    "function" => format!(
                        "SELECT id, uri, content, metadata, embedding, created_at, updated_at \
                         FROM {schema}.knn_{table}($3, $1, $2, $4)"
                    ),
                    other => panic!("unknown shape {other}"),
                };
                let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {search}");
                variants.push(Variant {
                    name: format!("{table} ef {ef} {shape}"),
                    ef: ef.clone(),
                    search: rt.block_on(client.prepare(&search)).expect("prepare"),
                    explain: rt.block_on(client.prepare(&explain)).expect("prepare"),
                    times: Vec::new(),
                    server: Vec::new(),
                    buffers: Vec::new(),
                    found: 0,
                });
            }
        }
    }
    let tenant = id.as_str().to_owned();
    // `hnsw.iterative_scan` (`PERCOLATE_PERF_ITERATIVE`, default the provider's `strict_order`).
    let iterative =
        std::env::var("PERCOLATE_PERF_ITERATIVE").unwrap_or_else(|_| "strict_order".to_owned());
    let c = &client;
    let limit = K as i64;
    let rounds = env_usize("PERCOLATE_PERF_ROUNDS").unwrap_or(2);
    let vector = |q: usize| pgvector::Vector::from(data.queries[q * d..][..d].to_vec());
    // How many of a search's rows are among query `q`'s true neighbours.
    let found = |rows: &[tokio_postgres::Row], q: usize| {
        rows.iter()
            .filter(|row| {
                let content: &str = row.get(2);
                content
                    .strip_prefix("row ")
                    .and_then(|r| r.parse::<u32>().ok())
                    .is_some_and(|r| truth[q].contains(&r))
            })
            .count()
    };
    for round in 0..=rounds {
        for step in 0..n {
            for (v, variant) in variants.iter_mut().enumerate() {
                // The provider's pipeline: one round trip.
                let q = (step + 137 * v) % n;
                let query = vector(q);
                let t = Instant::now();
                let settings_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&tenant, &variant.ef, &iterative];
                let search_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                    [&query, &limit];
                if variant.name.ends_with(" function") {
                    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                        [&query, &limit, &tenant, &variant.ef];
                    let t = Instant::now();
                    let rows = rt.block_on(c.query(&variant.search, &params)).expect("search");
                    let elapsed = t.elapsed();
                    if round > 0 {
                        variant.times.push(elapsed);
                        variant.found += found(&rows, q);
                    }
                    continue;
                }
                let alone = std::env::var("PERCOLATE_PERF_ALONE").is_ok();
                if alone {
                    // The search alone: its transaction and settings sent before the clock.
                    rt.block_on(async {
                        c.batch_execute("BEGIN").await.expect("begin");
                        c.query(&settings, &settings_params).await.expect("settings");
                    });
                    let t = Instant::now();
                    let rows = rt.block_on(c.query(&variant.search, &search_params));
                    let elapsed = t.elapsed();
                    rt.block_on(c.batch_execute("COMMIT")).expect("commit");
                    if round > 0 {
                        variant.times.push(elapsed);
                        variant.found += found(&rows.expect("search"), q);
                    }
                    continue;
                }
                let rows = rt.block_on(async {
                    let (b, s, r, e) = tokio::join!(biased;
                        c.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
                        c.query(&settings, &settings_params),
                        c.query(&variant.search, &search_params),
                        c.batch_execute("COMMIT"));
                    b.and(s.map(drop)).and(e).expect("pipeline");
                    r.expect("search")
                });
                let elapsed = t.elapsed();
                // The server's time on another fresh vector.
                let other = vector((step + 137 * v + 59) % n);
                let plan: serde_json::Value = rt.block_on(async {
                    c.batch_execute("BEGIN").await.expect("begin");
                    c.query(&settings, &settings_params).await.expect("settings");
                    let row = c.query_one(&variant.explain, &[&other, &limit]).await;
                    c.batch_execute("COMMIT").await.expect("commit");
                    row.expect("explain").get(0)
                });
                if round == 0 {
                    continue; // warm-up: connections, plans, shared buffers
                }
                variant.times.push(elapsed);
                let ms = plan[0]["Execution Time"].as_f64().unwrap_or(0.0);
                variant.server.push(Duration::from_secs_f64(ms / 1000.0));
                variant.buffers.push(plan[0]["Plan"]["Shared Hit Blocks"].as_u64().unwrap_or(0));
                variant.found += found(&rows, q);
            }
        }
    }
    for variant in variants {
        let recall = variant.found as f64 / (rounds * n * K) as f64;
        let mut buffers = variant.buffers;
        buffers.sort_unstable();
        report(&format!("{} pipeline, recall {recall:.3}", variant.name), variant.times);
        if buffers.is_empty() {
            continue;
        }
        report(
            &format!("{} server, {} buffers p50", variant.name, buffers[buffers.len() / 2]),
            variant.server,
        );
    }
}
