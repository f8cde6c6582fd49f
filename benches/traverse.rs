//! Depth-3 traversal on the WordNet graph (from `../shared/data`, or `PERCOLATE_DATASET`) and
//! on a synthetic power-law graph of average out-degree 10.
//!
//! Goals on a 2-core machine (p50): ≤ 100 µs on WordNet, ≤ 1 ms on the power-law graph.

#![allow(missing_docs)] // criterion_group! generates undocumented items.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use percolate::dataset::Dataset;
use percolate::{
    Direction, EntityId, MemoryEngine, NewEdge, NewEntity, Provider, TenantConfig, TenantHandle,
    TraverseQuery,
};

/// Loads `n` entities and the edges among them, in transactions of 1000 writes.
fn load_graph<P: Provider>(
    rt: &tokio::runtime::Runtime,
    tenant: &TenantHandle<P>,
    n: usize,
    edges: &[(u32, u32)],
) -> Vec<EntityId> {
    rt.block_on(async {
        let mut ids = Vec::with_capacity(n);
        let mut txn = tenant.begin().await.expect("begin");
        for i in 0..n {
            ids.push(
                txn.create_entity(NewEntity::new(format!("node {i}"), "node"))
                    .await
                    .expect("entity")
                    .id,
            );
            if i % 1000 == 999 {
                txn.commit().await.expect("commit");
                txn = tenant.begin().await.expect("begin");
            }
        }
        for (k, &(from, to)) in edges.iter().enumerate() {
            txn.create_edge(NewEdge::new(ids[from as usize], ids[to as usize], "related"))
                .await
                .expect("edge");
            if k % 1000 == 999 {
                txn.commit().await.expect("commit");
                txn = tenant.begin().await.expect("begin");
            }
        }
        txn.commit().await.expect("commit");
        ids
    })
}

fn traverse_benches<P: Provider>(
    c: &mut Criterion,
    label: &str,
    engine: &MemoryEngine<P>,
    n: usize,
    edges: &[(u32, u32)],
    rt: &tokio::runtime::Runtime,
) {
    let tenant = rt
        .block_on(engine.create_tenant(&common::bench_tenant(label), TenantConfig::default()))
        .expect("tenant");
    let ids = load_graph(rt, &tenant, n, edges);
    // Start from nodes that have out-edges, chosen by a fixed stride for reproducibility.
    let starts: Vec<EntityId> =
        edges.iter().step_by((edges.len() / 1000).max(1)).map(|(f, _)| ids[*f as usize]).collect();
    let mut reached_total = 0usize;
    for start in &starts {
        reached_total +=
            rt.block_on(tenant.traverse(&TraverseQuery::new(*start, 3))).expect("traverse").len();
    }
    println!(
        "{label}: {n} entities, {} edges, depth-3 reaches {:.1} entities on average",
        edges.len(),
        reached_total as f64 / starts.len() as f64
    );
    let mut i = 0;
    c.bench_function(&format!("{label}/traverse_depth3_out"), |b| {
        b.iter(|| {
            i = (i + 1) % starts.len();
            rt.block_on(tenant.traverse(&TraverseQuery::new(starts[i], 3))).expect("traverse")
        })
    });
    let mut j = 0;
    c.bench_function(&format!("{label}/traverse_depth3_both"), |b| {
        b.iter(|| {
            j = (j + 1) % starts.len();
            rt.block_on(
                tenant.traverse(&TraverseQuery::new(starts[j], 3).with_direction(Direction::Both)),
            )
            .expect("traverse")
        })
    });
    common::latency_profile(&format!("{label} traverse depth 3 out"), 5_000, |k| {
        rt.block_on(tenant.traverse(&TraverseQuery::new(starts[k % starts.len()], 3)))
            .expect("traverse");
    });
}

fn rocks(c: &mut Criterion) {
    let (_dir, engine) = common::rocks_engine();
    let rt = common::runtime();
    match common::real_dataset() {
        Some(data) if !data.edges.is_empty() => {
            traverse_benches(c, "rocksdb/wordnet", &engine, data.len(), &data.edges, &rt)
        }
        _ => println!(
            "no dataset with a graph found: skipping the WordNet bench (set PERCOLATE_DATASET)"
        ),
    }
    let synthetic = Dataset::synthetic(20_000, 0, 1, 10, 42);
    traverse_benches(c, "rocksdb/powerlaw", &engine, synthetic.len(), &synthetic.edges, &rt);
}

#[cfg(feature = "postgres")]
fn postgres(c: &mut Criterion) {
    let Some((rt, engine)) = common::postgres_engine() else { return };
    match common::real_dataset() {
        Some(data) if !data.edges.is_empty() => {
            traverse_benches(c, "postgres/wordnet", &engine, data.len(), &data.edges, &rt)
        }
        _ => println!(
            "no dataset with a graph found: skipping the WordNet bench (set PERCOLATE_DATASET)"
        ),
    }
}

#[cfg(not(feature = "postgres"))]
fn postgres(_: &mut Criterion) {}

criterion_group!(benches, rocks, postgres);
criterion_main!(benches);
