//! `_native._rust_latencies`: the same engine calls the Python methods make, timed in Rust in
//! the same process on the same tenant, so `scripts/bench-python.py` can report what the
//! binding adds (argument conversion, the GIL hand-off, building Python objects). Not part of
//! the public API (no stub, underscore name).
//!
//! Each call is timed alone with `Instant`, driven by `block_on` on the engine's runtime from
//! the calling thread, as the blocking Python methods drive theirs.

use std::time::Instant;

use numpy::{PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use super::dispatch;
use super::errors::invalid;
use super::records::id_arg;
use super::tenant::PyTenant;
use crate::model::{NewResource, ResourceId, SearchQuery};
use crate::rocks::RocksProvider;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rust_latencies, m)?)?;
    m.add_function(wrap_pyfunction!(wait_for_index, m)?)
}

/// Blocks until every embedding of a RocksDB tenant is in its HNSW graph, so what is timed
/// next does not overlap the background indexer (searches never need this). A no-op for
/// PostgreSQL, whose index is maintained by each write.
#[pyfunction]
#[pyo3(name = "_wait_for_index")]
fn wait_for_index(py: Python<'_>, tenant: PyRef<'_, PyTenant>) -> PyResult<()> {
    if let super::AnyTenant::Rocks(handle) = tenant.core.handle()? {
        py.detach(|| RocksProvider::wait_for_index(handle.provider_tenant()));
    }
    Ok(())
}

/// Nanoseconds of each call of `operation` ("get", "search" or "batch") run from Rust:
/// `get` reads each id of `ids`; `search` runs one k-NN search per row of `vectors`; `batch`
/// creates the rows of `vectors` as one batch, `rounds` times.
#[pyfunction]
#[pyo3(name = "_rust_latencies", signature = (tenant, operation, *, ids = None, vectors = None, k = 10, rounds = 1))]
fn rust_latencies(
    py: Python<'_>,
    tenant: PyRef<'_, PyTenant>,
    operation: &str,
    ids: Option<Vec<Bound<'_, PyAny>>>,
    vectors: Option<Bound<'_, PyArray2<f32>>>,
    k: usize,
    rounds: usize,
) -> PyResult<Vec<u64>> {
    let handle = tenant.core.handle()?;
    let runtime = tenant.core.session.runtime()?;
    let rows: Vec<Vec<f32>> = match &vectors {
        Some(array) => array.readonly().as_array().rows().into_iter().map(|r| r.to_vec()).collect(),
        None => Vec::new(),
    };
    let ids: Vec<ResourceId> = match ids {
        Some(ids) => ids.iter().map(id_arg).collect::<PyResult<_>>()?,
        None => Vec::new(),
    };
    let operation = operation.to_owned();
    py.detach(move || {
        let mut latencies = Vec::new();
        let mut time = |result: crate::Result<()>, start: Instant| -> PyResult<()> {
            result?;
            latencies.push(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
            Ok(())
        };
        match operation.as_str() {
            "get" => {
                for id in ids {
                    let start = Instant::now();
                    let result = dispatch!(&handle, AnyTenant, |h| {
                        runtime.block_on(h.get_resource(id)).map(drop)
                    });
                    time(result, start)?;
                }
            }
            "search" => {
                for row in rows {
                    let query = SearchQuery::new(row, k);
                    let start = Instant::now();
                    let result = dispatch!(&handle, AnyTenant, |h| {
                        runtime.block_on(h.search_resources(&query)).map(drop)
                    });
                    time(result, start)?;
                }
            }
            "batch" => {
                for round in 0..rounds {
                    let batch: Vec<NewResource> = rows
                        .iter()
                        .enumerate()
                        .map(|(i, row)| {
                            NewResource::new(format!("rust batch {round} row {i}"))
                                .with_embedding(row.clone())
                        })
                        .collect();
                    let start = Instant::now();
                    let result = dispatch!(&handle, AnyTenant, |h| {
                        runtime.block_on(h.batch_create_resources(batch)).map(drop)
                    });
                    time(result, start)?;
                }
            }
            other => return Err(invalid("operation", format!("{other:?} (get, search or batch)"))),
        }
        Ok(latencies)
    })
}
