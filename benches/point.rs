//! Point operations: single get, single put, and batch creates of 1000 resources.
//!
//! `cargo bench --bench point` runs the criterion benches, then prints a latency profile (p50,
//! p99, throughput) of single calls. Goals on a 2-core machine: get ≤ 5 µs, put ≤ 15 µs,
//! batch of 1000 small resources ≤ 1 ms, batch of 1000 with 384-d embeddings ≤ 5 ms.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use percolate::{NewResource, Provider, ResourceId, TenantConfig, TenantHandle, TenantId};

fn small(i: usize) -> NewResource {
    let mut resource =
        NewResource::new(format!("note {i}: the agent remembered something worth keeping"));
    resource.metadata.insert("source".into(), serde_json::json!("bench"));
    resource.metadata.insert("i".into(), serde_json::json!(i));
    resource
}

fn embedded(i: usize, dimension: usize) -> NewResource {
    let mut rng = percolate::dataset::XorShift((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    small(i).with_embedding((0..dimension).map(|_| rng.unit() as f32 - 0.5).collect())
}

/// `samples` scales the single-call latency profile: network round trips make a PostgreSQL
/// call ~50x slower than an embedded one.
fn point_benches<P: Provider>(
    c: &mut Criterion,
    provider: &str,
    tenant: &TenantHandle<P>,
    samples: usize,
    rt: &tokio::runtime::Runtime,
) {
    let ids: Vec<ResourceId> = rt
        .block_on(tenant.batch_create_resources((0..10_000).map(small).collect()))
        .expect("seed")
        .into_iter()
        .map(|r| r.id)
        .collect();

    let mut group = c.benchmark_group(format!("{provider}/point"));
    let mut i = 0usize;
    group.bench_function("get", |b| {
        b.iter(|| {
            i = (i + 7919) % ids.len();
            rt.block_on(tenant.get_resource(ids[i])).expect("get")
        })
    });
    let mut n = 0usize;
    group.bench_function("put", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(tenant.create_resource(small(n))).expect("put")
        })
    });
    group.sample_size(20);
    group.bench_function("batch_1000", |b| {
        b.iter_batched(
            || (0..1000).map(small).collect::<Vec<_>>(),
            |batch| rt.block_on(tenant.batch_create_resources(batch)).expect("batch"),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    let mut group = c.benchmark_group(format!("{provider}/point"));
    group.sample_size(20);
    group.bench_function("batch_1000_embeddings_384", |b| {
        b.iter_batched(
            || (0..1000).map(|i| embedded(i, 384)).collect::<Vec<_>>(),
            |batch| rt.block_on(tenant.batch_create_resources(batch)).expect("batch"),
            BatchSize::PerIteration,
        )
    });
    group.finish();

    println!("\nlatency profile ({provider}, single calls):");
    common::latency_profile(&format!("{provider} get"), samples, |k| {
        rt.block_on(tenant.get_resource(ids[(k * 7919) % ids.len()])).expect("get");
    });
    common::latency_profile(&format!("{provider} put"), samples / 2, |k| {
        rt.block_on(tenant.create_resource(small(k))).expect("put");
    });
    let batches: Vec<Vec<NewResource>> = (0..60).map(|_| (0..1000).map(small).collect()).collect();
    let mut batches = batches.into_iter();
    common::latency_profile(&format!("{provider} batch_1000"), 50, |_| {
        rt.block_on(tenant.batch_create_resources(batches.next().unwrap_or_default()))
            .expect("batch");
    });
    let batches: Vec<Vec<NewResource>> =
        (0..40).map(|_| (0..1000).map(|i| embedded(i, 384)).collect()).collect();
    let mut batches = batches.into_iter();
    common::latency_profile(&format!("{provider} batch_1000_embeddings_384"), 30, |_| {
        rt.block_on(tenant.batch_create_resources(batches.next().unwrap_or_default()))
            .expect("batch");
    });
}

fn rocks(c: &mut Criterion) {
    let (_dir, engine) = common::rocks_engine();
    let rt = common::runtime();
    let tenant = rt
        .block_on(
            engine.create_tenant(&TenantId::new("bench").expect("id"), TenantConfig::default()),
        )
        .expect("tenant");
    point_benches(c, "rocksdb", &tenant, 100_000, &rt);
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    let Some((rt, engine)) = common::postgres_engine() else { return };
    let tenant = rt
        .block_on(engine.create_tenant(&common::bench_tenant("point"), TenantConfig::default()))
        .expect("tenant");
    point_benches(c, "postgres", &tenant, 5_000, &rt);
}

#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut Criterion) {}

criterion_group!(benches, rocks, postgres);
criterion_main!(benches);
