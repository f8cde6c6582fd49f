//! Retrieval quality of full text, vectors and their fusion (`recall`), on a known-item task
//! built from the shared WordNet dataset; a measurement, not a test: it asserts nothing.
//!
//! The task: find one WordNet synset (the *target*) from two partial clues an agent might
//! have, neither enough alone.
//! - The text clue is the target's lemma words (its text before `:`, e.g. `bank` or
//!   `dress uniform`). Lemmas are ambiguous: a word names several synsets (`bank` the river
//!   side, the institution, the building, ...), and BM25 cannot tell which is meant.
//! - The vector clue is the embedding of a synset next to the target in the WordNet graph (a
//!   hypernym, hyponym, part or derivation: a related concept, not a paraphrase), so the
//!   target is near it but not necessarily among its ten nearest.
//! - Relevance: the target alone. A run reports, over every target, recall@10 (whether it is
//!   in the ten hits) and the mean reciprocal rank (0 when it is not among them), for text
//!   only, vector only and both fused by reciprocal rank.
//!
//! Targets are the base rows with at least one graph neighbour, drawn with a fixed seed
//! (`PERCOLATE_QUALITY_TARGETS`, default 500); the neighbour is the first listed. All 50,000
//! rows are loaded into a RocksDB tenant (content = the row's text, embedding = its vector),
//! so the vector clue's own synset is in the corpus and usually takes the first vector hit.
//! Run: `cargo bench --locked --features cli --bench recall_quality` (add
//! `PERCOLATE_QUALITY_FIRST_WORD=1` for the harder text clue, below).

mod common;

use std::collections::HashMap;
use std::time::Instant;

use percolate::bench::dataset::XorShift;
use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{
    MemoryEngine, NewResource, RecallQuery, ResourceId, SearchQuery, TenantConfig, TenantId,
    TextQuery,
};

const K: usize = 10;

/// Where each mode found the target: its rank from 1, or `None` outside the top `K`.
#[derive(Default)]
struct Found {
    ranks: Vec<Option<usize>>,
}

impl Found {
    fn push(&mut self, hits: &[ResourceId], target: ResourceId) {
        self.ranks.push(hits.iter().position(|id| *id == target).map(|at| at + 1));
    }

    fn recall(&self) -> f64 {
        let found = self.ranks.iter().filter(|rank| rank.is_some()).count();
        found as f64 / self.ranks.len().max(1) as f64
    }

    fn mrr(&self) -> f64 {
        let sum: f64 = self.ranks.iter().flatten().map(|rank| 1.0 / *rank as f64).sum();
        sum / self.ranks.len().max(1) as f64
    }
}

fn main() {
    let Some(data) = common::real_dataset() else {
        eprintln!("recall_quality needs the shared WordNet dataset (texts and graph): skipped");
        return;
    };
    if data.texts.len() != data.len() || data.edges.is_empty() {
        eprintln!("recall_quality needs texts.jsonl and edges.bin beside the vectors: skipped");
        return;
    }
    let targets: usize =
        std::env::var("PERCOLATE_QUALITY_TARGETS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    // With `PERCOLATE_QUALITY_FIRST_WORD` set, the text clue is only the lemma's first word
    // (`dress` for `dress uniform`): more ambiguous, closer to what an agent half remembers.
    let first_word = std::env::var_os("PERCOLATE_QUALITY_FIRST_WORD").is_some();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let engine = MemoryEngine::new(
            RocksProvider::open(RocksConfig::new(dir.path())).expect("open the store"),
        );
        let tenant_id = TenantId::new("quality").expect("tenant id");
        let tenant =
            engine.create_tenant(&tenant_id, TenantConfig::default()).await.expect("tenant");
        let started = Instant::now();
        let mut ids = Vec::with_capacity(data.len());
        for start in (0..data.len()).step_by(1000) {
            let rows = start..(start + 1000).min(data.len());
            let batch = rows
                .map(|i| {
                    NewResource::new(data.texts[i].clone()).with_embedding(data.row(i).to_vec())
                })
                .collect();
            let created = tenant.batch_create_resources(batch).await.expect("load");
            ids.extend(created.into_iter().map(|r| r.id));
        }
        println!("loaded {} rows in {:.1} s", data.len(), started.elapsed().as_secs_f64());

        let mut neighbour: HashMap<u32, u32> = HashMap::new();
        for &(from, to) in &data.edges {
            neighbour.entry(from).or_insert(to);
            neighbour.entry(to).or_insert(from);
        }
        let mut candidates: Vec<u32> = neighbour.keys().copied().collect();
        candidates.sort_unstable();
        let mut rng = XorShift(0x5eed_1234);
        let (mut text, mut vector, mut fused) =
            (Found::default(), Found::default(), Found::default());
        let started = Instant::now();
        for _ in 0..targets.min(candidates.len()) {
            let row = candidates[rng.below(candidates.len())];
            let target = ids[row as usize];
            let lemma = data.texts[row as usize].split(':').next().unwrap_or_default();
            let lemma = match first_word {
                true => lemma.split([' ', ',', '_']).find(|w| !w.is_empty()).unwrap_or(lemma),
                false => lemma,
            }
            .to_owned();
            let clue = data.row(neighbour[&row] as usize).to_vec();

            let hits = tenant.text_search(&TextQuery::new(lemma.clone(), K)).await.expect("text");
            let hits: Vec<ResourceId> =
                hits.iter().map(|hit| ResourceId::from(hit.record.id())).collect();
            text.push(&hits, target);

            let hits = tenant.search_resources(&SearchQuery::new(clue.clone(), K)).await;
            let hits: Vec<ResourceId> =
                hits.expect("vector").iter().map(|hit| hit.resource.id).collect();
            vector.push(&hits, target);

            let query = RecallQuery::new(K).with_text(lemma).with_vector(clue);
            let hits = tenant.recall(&query).await.expect("recall");
            let hits: Vec<ResourceId> = hits.iter().map(|hit| hit.resource.id).collect();
            fused.push(&hits, target);
        }
        println!(
            "{} targets, 3 queries each, in {:.1} s (the first text search indexes every row)",
            text.ranks.len(),
            started.elapsed().as_secs_f64()
        );
        println!("| signal | recall@{K} | MRR@{K} |");
        println!("|---|---|---|");
        for (name, found) in [("text only", &text), ("vector only", &vector), ("fused", &fused)] {
            println!("| {name} | {:.3} | {:.3} |", found.recall(), found.mrr());
        }
    });
}
