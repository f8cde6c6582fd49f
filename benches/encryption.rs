//! The cost of encryption at rest: get, put and batch creates on the RocksDB provider with and
//! without a master key, measured in the same run on the same data.
//!
//! `cargo bench --bench encryption` runs criterion on both, then prints p50/p99 of single calls
//! side by side with the overhead. Goal: at most 25% over plaintext on get, put and batch.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use percolate::rocks::{MasterKey, RocksConfig, RocksProvider};
use percolate::{MemoryEngine, NewResource, ResourceId, TenantConfig, TenantHandle, TenantId};

fn note(i: usize, dimension: usize) -> NewResource {
    let mut resource = NewResource::new(format!("note {i}: what the agent saw, sealed at rest"));
    resource.metadata.insert("n".into(), serde_json::json!(i));
    if dimension > 0 {
        let mut rng = percolate::dataset::XorShift(i as u64 * 0x9E37_79B9 + 1);
        resource = resource.with_embedding((0..dimension).map(|_| rng.unit() as f32).collect());
    }
    resource
}

struct Store {
    name: &'static str,
    _dir: tempfile::TempDir,
    _engine: &'static MemoryEngine<RocksProvider>,
    tenant: TenantHandle<RocksProvider>,
    ids: Vec<ResourceId>,
}

fn store(name: &'static str, key: Option<MasterKey>, rt: &tokio::runtime::Runtime) -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = RocksConfig::new(dir.path());
    config.master_key = key;
    // Leaked: the tenant handle borrows nothing, but the engine must outlive the bench.
    let engine: &'static _ =
        Box::leak(Box::new(MemoryEngine::new(RocksProvider::open(config).expect("open"))));
    let tenant = rt
        .block_on(
            engine.create_tenant(&TenantId::new("bench").expect("id"), TenantConfig::default()),
        )
        .expect("tenant");
    let ids = rt
        .block_on(tenant.batch_create_resources((0..10_000).map(|i| note(i, 0)).collect()))
        .expect("seed")
        .into_iter()
        .map(|r| r.id)
        .collect();
    Store { name, _dir: dir, _engine: engine, tenant, ids }
}

fn criterion_rows(c: &mut Criterion) {
    let rt = common::runtime();
    for store in
        [store("plain", None, &rt), store("sealed", Some(MasterKey::from_bytes([7; 32])), &rt)]
    {
        let mut group = c.benchmark_group(format!("encryption/{}", store.name));
        let mut i = 0usize;
        group.bench_function("get", |b| {
            b.iter(|| {
                i = (i + 7919) % store.ids.len();
                rt.block_on(store.tenant.get_resource(store.ids[i])).expect("get")
            })
        });
        group.bench_function("put", |b| {
            b.iter(|| rt.block_on(store.tenant.create_resource(note(i, 0))).expect("put"))
        });
        group.sample_size(20);
        group.bench_function("batch_1000", |b| {
            b.iter_batched(
                || (0..1000).map(|i| note(i, 0)).collect::<Vec<_>>(),
                |batch| rt.block_on(store.tenant.batch_create_resources(batch)).expect("batch"),
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

/// p50 and p99 of `op`, interleaving plaintext and sealed calls so both see the same machine.
/// `input` makes each call's argument before its timer starts, and what `op` returns is
/// dropped after it stops: building a batch of 1000 notes (384k random floats for the
/// embedded batch) and dropping the records it returns are the caller's work, not the store's.
fn side_by_side<I, O>(
    name: &str,
    samples: usize,
    stores: &[Store; 2],
    mut input: impl FnMut(usize) -> I,
    mut op: impl FnMut(&Store, I) -> O,
) {
    let mut times = [Vec::with_capacity(samples), Vec::with_capacity(samples)];
    for k in 0..samples + samples / 10 {
        for (store, times) in stores.iter().zip(&mut times) {
            let argument = input(k);
            let start = Instant::now();
            let out = op(store, argument);
            let elapsed = start.elapsed();
            drop(out);
            if k >= samples / 10 {
                times.push(elapsed);
            }
        }
    }
    let [plain, sealed] = times.map(|mut t: Vec<Duration>| {
        (common::percentile(&mut t, 0.50), common::percentile(&mut t, 0.99))
    });
    println!(
        "{name:<28} plain p50 {:>9.2?} p99 {:>9.2?} | sealed p50 {:>9.2?} p99 {:>9.2?} | p50 {:+.0}%",
        plain.0,
        plain.1,
        sealed.0,
        sealed.1,
        (sealed.0.as_secs_f64() / plain.0.as_secs_f64() - 1.0) * 100.0
    );
}

fn profile(_: &mut Criterion) {
    let rt = common::runtime();
    let stores =
        [store("plain", None, &rt), store("sealed", Some(MasterKey::from_bytes([7; 32])), &rt)];
    println!("\nencryption cost (RocksDB, single calls, interleaved):");
    side_by_side(
        "get",
        100_000,
        &stores,
        |k| k,
        |s, k| rt.block_on(s.tenant.get_resource(s.ids[(k * 7919) % s.ids.len()])).expect("get"),
    );
    side_by_side(
        "put",
        50_000,
        &stores,
        |k| note(k, 0),
        |s, note| rt.block_on(s.tenant.create_resource(note)).expect("put"),
    );
    let batch = |dimension| move |_| (0..1000).map(|i| note(i, dimension)).collect::<Vec<_>>();
    side_by_side("batch_1000", 200, &stores, batch(0), |s, batch| {
        rt.block_on(s.tenant.batch_create_resources(batch)).expect("batch")
    });
    side_by_side("batch_1000_embeddings_384", 100, &stores, batch(384), |s, batch| {
        rt.block_on(s.tenant.batch_create_resources(batch)).expect("batch")
    });
}

criterion_group!(benches, criterion_rows, profile);
criterion_main!(benches);
