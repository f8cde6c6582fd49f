//! The conformance suite: the contract of [`crate::provider`] as executable cases that every
//! provider must pass. It owns the cases and the macro that runs them; it must not know any
//! provider (it reaches storage only through [`MemoryEngine`]).
//!
//! Compiled with the `testing` feature. A provider (ours, or one in another crate) implements
//! [`Harness`] and expands every case into a plain `#[test]` with one macro call:
//!
//! ```
//! use percolate::MemoryEngine;
//! use percolate::mem::MemProvider;
//!
//! struct MemHarness {
//!     provider: MemProvider,
//!     engine: MemoryEngine<MemProvider>,
//! }
//!
//! impl percolate::testing::Harness for MemHarness {
//!     type P = MemProvider;
//!
//!     async fn new() -> Self {
//!         let provider = MemProvider::new();
//!         Self { engine: MemoryEngine::new(provider.clone()), provider }
//!     }
//!
//!     fn engine(&self) -> &MemoryEngine<MemProvider> {
//!         &self.engine
//!     }
//!
//!     async fn reopen(&mut self) {
//!         // Clones share one store: a new engine on a clone sees everything committed.
//!         self.engine = MemoryEngine::new(self.provider.clone());
//!     }
//! }
//!
//! percolate::conformance_suite!(MemHarness);
//! # fn main() {}
//! ```
//!
//! Design decisions:
//! - **Every case is an `async fn case<H: Harness>(h: &mut H) -> Result<()>`** that makes its own
//!   tenant, so no case depends on another and all can share one server.
//! - **A failed check is an `Err`**, not a panic, so a case reads as a sequence of `?`s and the
//!   test names the case and the check that failed.
//! - **The generated tests are plain `#[test]` functions**: each builds its own multi-thread
//!   tokio runtime, so a crate that runs the suite needs no async test runtime of its own.

use std::future::Future;

use crate::{
    EntityId, Error, MemoryEngine, Metadata, Metric, MomentId, Provider, Reached, Resource,
    ResourceId, Result, SearchQuery, TenantConfig, TenantHandle, TenantId, TimeRange, Timestamp,
};

mod batches;
mod graph;
mod moments;
mod recall;
mod records;
mod search;
mod tenants;
mod text;
mod transactions;

pub use batches::*;
pub use graph::*;
pub use moments::*;
pub use recall::*;
pub use records::*;
pub use search::*;
pub use tenants::*;
pub use text::*;
pub use transactions::*;

/// How the suite gets an engine for a provider.
pub trait Harness: Sized + Send + 'static {
    /// The provider under test.
    type P: Provider;
    /// A fresh engine. Cases make their own tenants, so a harness may share storage (one server,
    /// one directory) between them.
    fn new() -> impl Future<Output = Self> + Send;
    /// The engine.
    fn engine(&self) -> &MemoryEngine<Self::P>;
    /// Drops the engine and opens a new one on the same storage: what was committed must still
    /// be there.
    fn reopen(&mut self) -> impl Future<Output = ()> + Send;
}

/// Expands every case of the suite into a `#[test]` function for the [`Harness`] `$harness`.
///
/// The tests are named after the cases (`tenants_are_isolated`, ...); to run the suite for two
/// harnesses in one crate, call the macro in two modules. Each test builds a multi-thread tokio
/// runtime of its own, so the calling crate needs neither tokio nor an async test attribute.
#[macro_export]
macro_rules! conformance_suite {
    ($harness:ty) => {
        $crate::conformance_suite!(@cases $harness;
            tenant_lifecycle_create_open_list_delete,
            creating_an_existing_tenant_fails,
            opening_a_missing_tenant_is_not_found,
            deleted_tenant_comes_back_empty,
            resource_round_trips,
            resource_update_keeps_created_at_and_replaces_fields,
            resource_delete_removes_it_from_get_and_search,
            missing_resource_is_not_found_everywhere,
            non_finite_embeddings_are_rejected,
            text_with_nul_is_rejected_everywhere,
            first_embedding_while_a_transaction_is_open_does_not_block,
            first_embedding_fixes_the_dimension,
            configured_dimension_is_enforced,
            empty_and_oversized_embeddings_are_rejected,
            batch_with_one_bad_resource_writes_nothing,
            batch_resources_are_readable_and_searchable_on_return,
            inserting_an_existing_id_fails,
            entity_round_trips_and_updates,
            entity_name_and_kind_must_not_be_empty,
            missing_entity_is_not_found_everywhere,
            edge_is_visible_from_both_ends,
            edge_to_a_missing_entity_is_rejected_and_not_written,
            edges_filter_by_relation,
            self_loop_is_listed_once,
            deleting_an_edge_removes_it_from_both_ends,
            deleting_an_entity_deletes_its_edges,
            edge_weight_and_relation_are_validated,
            traversal_on_a_cyclic_graph_reaches_each_entity_once,
            traversal_stops_at_its_depth,
            traversal_follows_its_direction,
            traversal_follows_only_its_relations,
            traversal_rejects_bad_input,
            moment_round_trips_updates_and_deletes,
            moment_ending_before_it_starts_is_rejected,
            moments_touching_the_range_are_included,
            moments_with_open_range_ends,
            long_moment_overlapping_a_later_range_is_found,
            moment_update_moves_it_in_time,
            exact_search_matches_brute_force,
            filter_is_applied_before_the_top_k_cut,
            search_rejects_bad_k_and_bad_vectors,
            search_uses_the_tenant_metric,
            search_sees_updates_and_deletes,
            search_without_embeddings_is_empty,
            entity_search_matches_word_prefixes,
            entity_search_filters_kind_and_properties,
            filters_past_their_size_limits_are_rejected,
            tenants_are_isolated,
            transaction_writes_are_invisible_until_commit,
            transaction_rollback_discards_writes,
            dropped_transaction_rolls_back,
            transaction_reads_its_own_writes,
            transaction_reads_one_snapshot,
            get_never_pairs_a_record_with_another_writes_embedding,
            concurrent_conflicting_commit_fails_with_conflict,
            edge_insert_racing_entity_delete_cannot_both_commit,
            reopen_keeps_everything,
            release_memory_keeps_every_write_and_handle,
            scan_pages_through_every_record,
            oversized_fields_are_rejected,
            batch_records_are_readable_on_return,
            batch_with_one_bad_record_writes_nothing,
            batch_edges_are_visible_from_both_ends_and_traversable,
            batch_moments_are_found_by_time_range,
            empty_batches_succeed_and_write_nothing,
            text_search_matches_brute_force_bm25,
            text_search_sees_updates_and_deletes,
            text_filter_is_applied_before_the_cut,
            text_search_is_per_tenant_and_survives_reopen,
            text_search_rejects_bad_queries,
            recall_fuses_text_and_vector_by_reciprocal_rank,
            recall_with_one_signal_keeps_its_order,
            recall_window_and_filter_apply_to_every_signal,
            recall_rejects_bad_queries,
        );
    };
    (@cases $harness:ty; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run(stringify!($case), async {
                    let mut harness = <$harness as $crate::testing::Harness>::new().await;
                    $crate::testing::$case(&mut harness).await
                });
            }
        )*
    };
}

/// Runs one case to completion on a fresh multi-thread runtime and panics, naming the case, if
/// it fails: the body of every test [`conformance_suite!`] generates.
#[doc(hidden)]
pub fn run(case: &str, body: impl Future<Output = Result<()>>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{case}: cannot start a tokio runtime: {e}"));
    if let Err(e) = runtime.block_on(body) {
        panic!("{case}: {e} ({e:?})");
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the cases

pub(crate) fn fresh_id() -> TenantId {
    let uuid = uuid::Uuid::now_v7().simple().to_string();
    // The random tail of a v7 uuid keeps concurrent cases apart.
    TenantId::new(format!("t{}", &uuid[uuid.len() - 20..])).expect("valid tenant id")
}

pub(crate) async fn tenant<H: Harness>(h: &H) -> Result<TenantHandle<H::P>> {
    h.engine().create_tenant(&fresh_id(), TenantConfig::default()).await
}

pub(crate) async fn tenant_with<H: Harness>(
    h: &H,
    config: TenantConfig,
) -> Result<TenantHandle<H::P>> {
    h.engine().create_tenant(&fresh_id(), config).await
}

pub(crate) fn meta(value: serde_json::Value) -> Metadata {
    value.as_object().cloned().expect("an object")
}

pub(crate) fn ensure(condition: bool, message: impl std::fmt::Display) -> Result<()> {
    if condition { Ok(()) } else { Err(Error::invalid("assertion", message.to_string())) }
}

pub(crate) fn ensure_eq<T: PartialEq + std::fmt::Debug>(
    left: T,
    right: T,
    message: &str,
) -> Result<()> {
    ensure(left == right, format!("{message}: {left:?} != {right:?}"))
}

pub(crate) fn expect_err<T: std::fmt::Debug>(result: Result<T>, kind: &str) -> Result<()> {
    let matched = matches!(
        (&result, kind),
        (Err(Error::Invalid { .. }), "invalid")
            | (Err(Error::NotFound { .. }), "not_found")
            | (Err(Error::AlreadyExists { .. }), "already_exists")
            | (Err(Error::Conflict(_)), "conflict")
    );
    ensure(matched, format!("expected {kind}, got {result:?}"))
}

pub(crate) fn ts(seconds: i64) -> Timestamp {
    Timestamp::from_micros(seconds * 1_000_000)
}

/// A deterministic pseudo-random vector with values in `[-1, 1)`: the same `seed` and
/// `dimension` give the same vector on every platform, so cases need no RNG.
pub fn vector(seed: u64, dimension: usize) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..dimension)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The distance between `a` and `b` under `metric`, computed in `f64` independently of
/// [`Metric::distance`]: the reference the suite checks search results against.
pub fn brute_distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    match metric {
        Metric::Cosine => {
            let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum(),
        Metric::Dot => -dot,
    }
}

pub(crate) fn brute_top_k(
    metric: Metric,
    items: &[Resource],
    query: &[f32],
    k: usize,
) -> Vec<ResourceId> {
    let mut scored: Vec<(f64, ResourceId)> = items
        .iter()
        .filter_map(|r| r.embedding.as_ref().map(|e| (brute_distance(metric, e, query), r.id)))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, id)| id).collect()
}

pub(crate) async fn search_ids<P: Provider>(
    t: &TenantHandle<P>,
    query: &SearchQuery,
) -> Result<Vec<ResourceId>> {
    Ok(t.search_resources(query).await?.into_iter().map(|hit| hit.resource.id).collect())
}

pub(crate) fn reached_ids(reached: &[Reached]) -> Vec<(EntityId, u32)> {
    reached.iter().map(|r| (r.entity, r.depth)).collect()
}

pub(crate) async fn moments_ids<P: Provider>(
    t: &TenantHandle<P>,
    range: TimeRange,
) -> Result<Vec<MomentId>> {
    Ok(t.moments_in_range(&range).await?.into_iter().map(|m| m.id).collect())
}
