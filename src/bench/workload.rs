//! The REM workload a bench runs against: what is loaded, and one input per timed call.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::measure::{exact_neighbours, recall};
use super::{Operation, Sizes};
use crate::bench::dataset::{Dataset, XorShift};
use crate::error::{Error, Result};
use crate::model::{
    EntityId, Filter, NewEdge, NewEntity, NewMoment, NewResource, RecallQuery, ResourceId,
    SearchQuery, TenantId, TextQuery, TimeRange, Timestamp, TraverseQuery,
};
use crate::provider::Provider;
use crate::{MemoryEngine, TenantConfig, TenantHandle};

/// Results per kNN call.
pub const K: usize = 10;
/// Records per batch-write call.
pub const BATCH: usize = 1000;
/// Traversal depth.
pub const DEPTH: u32 = 3;
/// Entities, edges or moments per batch call while loading.
const LOAD_BATCH: usize = 1000;
/// Buckets of the `bucket` metadata field; the filtered search keeps one (10% of the rows).
const BUCKETS: usize = 10;
const FILTER_BUCKET: usize = 3;
const YEAR_MICROS: i64 = 365 * 24 * 3600 * 1_000_000;
const WEEK_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// Vectors, queries, ground truth and the dataset's own graph, prepared for `n` resources.
#[derive(Clone, Debug)]
pub struct BenchData {
    /// Where the vectors come from, for the output.
    pub source: String,
    /// Exactly the rows loaded as resources (real rows, then noisy copies if more are asked
    /// for), the queries, the dataset's edges among those rows and its texts.
    pub dataset: Dataset,
    /// The exact top-[`K`] rows of each query, best first.
    pub truth: Vec<Vec<u32>>,
    /// The same among the rows the filtered search admits.
    pub truth_filtered: Vec<Vec<u32>>,
    /// Where [`BenchData::truth`] comes from: `gt.ibin` or brute force.
    pub truth_source: &'static str,
}

/// Whether row `i` passes the filtered search's filter.
fn in_filter(i: usize) -> bool {
    i % BUCKETS == FILTER_BUCKET
}

impl BenchData {
    /// Prepares `n` rows and at most `queries` queries from `dataset`, or clustered synthetic
    /// 384-d data when it is `None`. Real rows are used first; rows beyond the dataset are
    /// noisy copies of real ones (each near its original, unit length). The dataset's ground
    /// truth is used when it covers exactly these rows, else it is computed by brute force.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the dataset has no rows or no queries.
    pub fn prepare(
        dataset: Option<(String, Dataset)>,
        n: usize,
        queries: usize,
        seed: u64,
    ) -> Result<Self> {
        let (source, mut data) = match dataset {
            Some((name, data)) => (name, data),
            None => (
                "clustered synthetic 384-d vectors".to_owned(),
                Dataset::synthetic(n, queries.min(200), 384, 0, seed),
            ),
        };
        if data.is_empty() || data.query_count() == 0 {
            return Err(Error::invalid("dataset", "it needs base rows and queries"));
        }
        let real = data.len();
        let queries = queries.clamp(1, data.query_count());
        data.queries.truncate(queries * data.dimension);
        let gt_usable = n == real
            && data.ground_truth.as_ref().is_some_and(|(k, ids)| {
                *k >= 1 && ids.len() >= queries * k && ids.iter().all(|&id| (id as usize) < n)
            });
        if n < real {
            data.base.truncate(n * data.dimension);
            data.edges.retain(|&(from, to)| (from as usize) < n && (to as usize) < n);
            data.texts.truncate(n);
        } else if n > real {
            pad_with_noisy_copies(&mut data, n, seed);
        }
        let (truth, truth_source) = match (&data.ground_truth, gt_usable) {
            (Some((k, ids)), true) => (
                (0..queries).map(|q| ids[q * k..q * k + (*k).min(K)].to_vec()).collect(),
                "gt.ibin",
            ),
            _ => (exact_neighbours(&data, &data.queries, K, &|_| true), "brute force"),
        };
        data.ground_truth = None;
        let truth_filtered = exact_neighbours(&data, &data.queries, K, &in_filter);
        Ok(Self { source, dataset: data, truth, truth_filtered, truth_source })
    }

    /// How many rows are loaded as resources.
    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }
}

/// Appends noisy copies of the existing rows until there are `n`: each is a row plus Gaussian
/// noise (0.02 per coordinate), normalised, so it is near its original and distinct from it.
pub fn pad_with_noisy_copies(data: &mut Dataset, n: usize, seed: u64) {
    let real = data.len();
    if real == 0 {
        return;
    }
    let mut rng = XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
    data.base.reserve((n.saturating_sub(real)) * data.dimension);
    for i in real..n {
        let mut v: Vec<f32> = data.row(i % real).iter().map(|x| x + 0.02 * rng.normal()).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= norm);
        data.base.extend(v);
    }
}

/// A small resource without an embedding: what a single put or a plain batch writes.
pub fn note(i: usize) -> NewResource {
    let mut resource =
        NewResource::new(format!("note {i}: the agent remembered something worth keeping"));
    resource.metadata.insert("source".into(), json!("bench"));
    resource.metadata.insert("i".into(), json!(i));
    resource
}

/// Row `i` as a resource: its text (when the dataset has texts), its embedding, and the
/// metadata the filtered search uses.
pub fn row_resource(data: &Dataset, i: usize) -> NewResource {
    let text = match data.texts.len() {
        0 => None,
        len => data.texts.get(i % len).filter(|t| !t.is_empty()).cloned(),
    };
    let mut resource = NewResource::new(text.unwrap_or_else(|| format!("resource {i}")))
        .with_embedding(data.row(i).to_vec());
    resource.metadata.insert("row".into(), json!(i));
    resource.metadata.insert("bucket".into(), json!(i % BUCKETS));
    resource
}

/// How many text queries a workload samples.
const TEXT_QUERIES: usize = 500;

/// The text queries of a workload: the lemma words (the text before `:`) of sampled rows, or
/// `resource N` where the dataset has no text for the row.
fn text_queries(data: &Dataset) -> Vec<String> {
    let rows = data.len();
    if rows == 0 {
        return Vec::new();
    }
    (0..TEXT_QUERIES)
        .map(|q| {
            let row = (q * 7919) % rows;
            let text = data.texts.get(row).and_then(|t| t.split(':').next());
            let lemma = text.filter(|t| !t.trim().is_empty()).map(str::to_owned);
            lemma.unwrap_or_else(|| format!("resource {row}"))
        })
        .collect()
}

/// Where a load has got to.
#[derive(Clone, Copy, Debug)]
pub struct LoadProgress {
    /// What is being written.
    pub phase: &'static str,
    /// Records written so far, over all phases.
    pub done: u64,
    /// Records the load writes in all.
    pub total: u64,
}

/// A loaded tenant and everything needed to build the input of any timed call.
pub struct Workload<P: Provider> {
    /// The bench tenant.
    pub tenant: TenantHandle<P>,
    /// The resource id of each row.
    pub resources: Vec<ResourceId>,
    row_of: HashMap<ResourceId, u32>,
    dimension: usize,
    queries: Vec<f32>,
    truth: Vec<Vec<u32>>,
    truth_filtered: Vec<Vec<u32>>,
    /// Rows that embedded batches write noisy copies of.
    batch_source: Vec<f32>,
    filter: Filter,
    /// Start entities on the dataset's graph (empty without one).
    pub dataset_starts: Vec<EntityId>,
    /// Start entities on the power-law graph (empty when no entities are asked for).
    pub powerlaw_starts: Vec<EntityId>,
    /// Average number of entities a depth-3 traversal reaches, per graph (dataset, power-law).
    pub reach: (f64, f64),
    /// Entities and edges of each graph: ((dataset nodes, edges), (power-law nodes, edges)).
    pub graphs: ((usize, usize), (usize, usize)),
    /// Moments loaded.
    pub moments: usize,
    year_start: i64,
    /// The text queries: sampled rows' lemma words.
    text_queries: Vec<String>,
}

/// The input of one timed call, built outside the timed region.
#[derive(Clone, Debug)]
pub enum Input {
    /// Read one resource.
    Get(ResourceId),
    /// Create one resource.
    Put(NewResource),
    /// Create resources in one atomic write.
    Batch(Vec<NewResource>),
    /// Search by vector.
    Search(SearchQuery),
    /// Traverse from an entity.
    Traverse(TraverseQuery),
    /// Scan moments in a time range.
    Moments(TimeRange),
    /// Search by full text.
    Text(TextQuery),
    /// Recall by fused signals.
    Recall(RecallQuery),
}

/// Entities, then edges, written in batches of [`LOAD_BATCH`]; returns the entities' ids.
async fn load_graph<P: Provider>(
    tenant: &TenantHandle<P>,
    names: impl Fn(usize) -> (String, &'static str),
    nodes: usize,
    edges: &[(u32, u32)],
    relation: impl Fn(usize) -> &'static str,
    progress: &mut impl FnMut(u64),
) -> Result<Vec<EntityId>> {
    let mut ids = Vec::with_capacity(nodes);
    let all: Vec<usize> = (0..nodes).collect();
    for chunk in all.chunks(LOAD_BATCH) {
        let batch = chunk
            .iter()
            .map(|&i| {
                let (name, kind) = names(i);
                NewEntity::new(name, kind)
            })
            .collect();
        ids.extend(tenant.batch_create_entities(batch).await?.iter().map(|entity| entity.id));
        progress(chunk.len() as u64);
    }
    for (number, chunk) in edges.chunks(LOAD_BATCH).enumerate() {
        let batch = (chunk.iter().enumerate())
            .map(|(k, &(from, to))| {
                let relation = relation(number * LOAD_BATCH + k);
                NewEdge::new(ids[from as usize], ids[to as usize], relation)
            })
            .collect();
        tenant.batch_create_edges(batch).await?;
        progress(chunk.len() as u64);
    }
    Ok(ids)
}

/// Up to 1000 start entities with out-edges, by a fixed stride (reproducible).
fn starts(ids: &[EntityId], edges: &[(u32, u32)]) -> Vec<EntityId> {
    edges.iter().step_by((edges.len() / 1000).max(1)).map(|&(from, _)| ids[from as usize]).collect()
}

impl<P: Provider> Workload<P> {
    /// Creates tenant `id` and loads it: every row of `data` as a resource (batches of
    /// [`BATCH`]), the dataset's graph when it has one, a power-law graph of
    /// `sizes.entities` entities with average out-degree `sizes.degree`, and `sizes.moments`
    /// moments spread over the past year, each involving up to three entities.
    ///
    /// # Errors
    /// Any error of the writes.
    pub async fn load(
        engine: &MemoryEngine<P>,
        id: &TenantId,
        data: &BenchData,
        sizes: &Sizes,
        mut progress: impl FnMut(LoadProgress),
    ) -> Result<Self> {
        let dataset = &data.dataset;
        let tenant = engine
            .create_tenant(
                id,
                TenantConfig { dimension: Some(dataset.dimension as u32), ..Default::default() },
            )
            .await?;
        let powerlaw = Dataset::synthetic(sizes.entities, 0, 1, sizes.degree, sizes.seed);
        let total = (dataset.len()
            + if dataset.edges.is_empty() { 0 } else { dataset.len() + dataset.edges.len() }
            + powerlaw.len()
            + powerlaw.edges.len()
            + sizes.moments) as u64;
        let mut done = 0u64;
        let mut report = |phase: &'static str, add: u64| {
            done += add;
            progress(LoadProgress { phase, done, total });
        };

        report("resources", 0);
        let mut resources = Vec::with_capacity(dataset.len());
        let rows: Vec<usize> = (0..dataset.len()).collect();
        for chunk in rows.chunks(BATCH) {
            let batch = chunk.iter().map(|&i| row_resource(dataset, i)).collect();
            resources.extend(tenant.batch_create_resources(batch).await?.into_iter().map(|r| r.id));
            report("resources", chunk.len() as u64);
        }
        let row_of = resources.iter().enumerate().map(|(i, id)| (*id, i as u32)).collect();

        let mut dataset_ids = Vec::new();
        if !dataset.edges.is_empty() {
            let name = |i: usize| {
                let text = dataset.texts.get(i).and_then(|t| t.split(':').next());
                let name = text.filter(|t| !t.trim().is_empty()).map(str::to_owned);
                (name.unwrap_or_else(|| format!("concept {i}")), "concept")
            };
            dataset_ids = load_graph(
                &tenant,
                name,
                dataset.len(),
                &dataset.edges,
                |_| "related",
                &mut |add| report("graph", add),
            )
            .await?;
        }
        const KINDS: [&str; 4] = ["person", "place", "topic", "project"];
        const RELATIONS: [&str; 3] = ["knows", "mentions", "part_of"];
        let powerlaw_ids = load_graph(
            &tenant,
            |i| (format!("entity {i}"), KINDS[i % KINDS.len()]),
            powerlaw.len(),
            &powerlaw.edges,
            |k| RELATIONS[k % RELATIONS.len()],
            &mut |add| report("entities", add),
        )
        .await?;

        let year_start = Timestamp::now().as_micros() - YEAR_MICROS;
        let mut rng = XorShift(sizes.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let people = if powerlaw_ids.is_empty() { &dataset_ids } else { &powerlaw_ids };
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        for i in 0..sizes.moments {
            let start = year_start + (rng.unit() * (YEAR_MICROS as f64)) as i64;
            let minutes = 5 + rng.below(115) as i64;
            let mut moment = NewMoment::new(
                Timestamp::from_micros(start),
                Timestamp::from_micros(start + minutes * 60_000_000),
                ["conversation", "meeting", "task"][i % 3],
            );
            moment.content = format!("moment {i}: {minutes} minutes of work with the agent");
            if !people.is_empty() {
                for _ in 0..=rng.below(3) {
                    moment.entities.push(people[rng.below(people.len())]);
                }
            }
            batch.push(moment);
            if batch.len() == LOAD_BATCH || i + 1 == sizes.moments {
                let written = batch.len() as u64;
                tenant.batch_create_moments(std::mem::take(&mut batch)).await?;
                report("moments", written);
            }
        }

        let batch_rows = dataset.len().min(BATCH);
        let mut workload = Self {
            tenant,
            resources,
            row_of,
            dimension: dataset.dimension,
            queries: dataset.queries.clone(),
            truth: data.truth.clone(),
            truth_filtered: data.truth_filtered.clone(),
            batch_source: dataset.base[..batch_rows * dataset.dimension].to_vec(),
            filter: Filter::parse(&json!({ "bucket": FILTER_BUCKET }))?,
            dataset_starts: starts(&dataset_ids, &dataset.edges),
            powerlaw_starts: starts(&powerlaw_ids, &powerlaw.edges),
            reach: (0.0, 0.0),
            graphs: (
                (dataset_ids.len(), dataset.edges.len()),
                (powerlaw_ids.len(), powerlaw.edges.len()),
            ),
            moments: sizes.moments,
            year_start,
            text_queries: text_queries(dataset),
        };
        workload.reach = (
            workload.average_reach(&workload.dataset_starts).await?,
            workload.average_reach(&workload.powerlaw_starts).await?,
        );
        Ok(workload)
    }

    async fn average_reach(&self, starts: &[EntityId]) -> Result<f64> {
        let mut reached = 0;
        for start in starts {
            reached += self.tenant.traverse(&TraverseQuery::new(*start, DEPTH)).await?.len();
        }
        Ok(reached as f64 / starts.len().max(1) as f64)
    }

    /// The operations this workload can run: traversal rows need a graph, and the power-law
    /// row is separate only when `traverse_depth3` runs on the dataset's graph.
    pub fn operations(&self) -> Vec<Operation> {
        Operation::ALL
            .into_iter()
            .filter(|op| match op {
                Operation::TraverseDepth3 => {
                    !self.dataset_starts.is_empty() || !self.powerlaw_starts.is_empty()
                }
                Operation::TraverseDepth3Powerlaw => {
                    !self.dataset_starts.is_empty() && !self.powerlaw_starts.is_empty()
                }
                _ => true,
            })
            .collect()
    }

    /// Whether `traverse_depth3` runs on the dataset's own graph.
    pub fn traverses_dataset_graph(&self) -> bool {
        !self.dataset_starts.is_empty()
    }

    /// The number of queries.
    pub fn query_count(&self) -> usize {
        self.queries.len() / self.dimension.max(1)
    }

    fn query(&self, q: usize) -> Vec<f32> {
        let q = q % self.query_count().max(1);
        self.queries[q * self.dimension..(q + 1) * self.dimension].to_vec()
    }

    /// The input of call `i` of `op` (deterministic in `i`).
    pub fn input(&self, op: Operation, i: usize) -> Input {
        match op {
            Operation::Get => Input::Get(self.resources[(i * 7919) % self.resources.len().max(1)]),
            Operation::Put => Input::Put(note(i)),
            Operation::Batch1000 => Input::Batch((i * BATCH..(i + 1) * BATCH).map(note).collect()),
            Operation::Batch1000Embeddings => Input::Batch(self.embedded_batch(i)),
            Operation::KnnK10 => Input::Search(SearchQuery::new(self.query(i), K)),
            Operation::KnnK10Filtered => {
                Input::Search(SearchQuery::new(self.query(i), K).with_filter(self.filter.clone()))
            }
            Operation::TraverseDepth3 => {
                let starts = if self.dataset_starts.is_empty() {
                    &self.powerlaw_starts
                } else {
                    &self.dataset_starts
                };
                Input::Traverse(TraverseQuery::new(starts[i % starts.len().max(1)], DEPTH))
            }
            Operation::TraverseDepth3Powerlaw => Input::Traverse(TraverseQuery::new(
                self.powerlaw_starts[i % self.powerlaw_starts.len().max(1)],
                DEPTH,
            )),
            Operation::MomentsWeek => {
                let mut rng = XorShift((i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let start =
                    self.year_start + (rng.unit() * (YEAR_MICROS - WEEK_MICROS) as f64) as i64;
                Input::Moments(TimeRange::new(
                    Timestamp::from_micros(start),
                    Timestamp::from_micros(start + WEEK_MICROS),
                ))
            }
            Operation::TextSearch => Input::Text(TextQuery::new(self.text_query(i), K)),
            Operation::Recall => Input::Recall(
                RecallQuery::new(K)
                    .with_text(self.text_query(i))
                    .with_vector(self.query(i))
                    .within(TimeRange::new(
                        Timestamp::from_micros(self.year_start),
                        Timestamp::from_micros(self.year_start + 2 * YEAR_MICROS),
                    )),
            ),
        }
    }

    fn text_query(&self, i: usize) -> String {
        self.text_queries.get(i % self.text_queries.len().max(1)).cloned().unwrap_or_default()
    }

    /// [`BATCH`] resources whose embeddings are noisy copies of loaded rows: new, but from the
    /// same distribution as the rest of the tenant.
    fn embedded_batch(&self, i: usize) -> Vec<NewResource> {
        let rows = self.batch_source.len() / self.dimension.max(1);
        let mut rng = XorShift((i as u64 + 7).wrapping_mul(0x2545_F491_4F6C_DD1D));
        (0..BATCH)
            .map(|j| {
                let row = (i * 31 + j) % rows.max(1);
                let source = &self.batch_source[row * self.dimension..(row + 1) * self.dimension];
                let embedding = source.iter().map(|x| x + 0.02 * rng.normal()).collect();
                note(i * BATCH + j).with_embedding(embedding)
            })
            .collect()
    }

    /// Runs one call; returns how many records it returned or wrote.
    ///
    /// # Errors
    /// Any error of the call.
    pub async fn call(&self, input: Input) -> Result<usize> {
        Ok(match input {
            Input::Get(id) => self.tenant.get_resource(id).await.map(|_| 1)?,
            Input::Put(new) => self.tenant.create_resource(new).await.map(|_| 1)?,
            Input::Batch(batch) => self.tenant.batch_create_resources(batch).await?.len(),
            Input::Search(query) => self.tenant.search_resources(&query).await?.len(),
            Input::Traverse(query) => self.tenant.traverse(&query).await?.len(),
            Input::Moments(range) => self.tenant.moments_in_range(&range).await?.len(),
            Input::Text(query) => self.tenant.text_search(&query).await?.len(),
            Input::Recall(query) => self.tenant.recall(&query).await?.len(),
        })
    }

    /// recall@[`K`] of `op` (a kNN operation) over every query, against the exact neighbours;
    /// `None` for other operations. Also warms the search path up.
    ///
    /// # Errors
    /// Any error of the searches.
    pub async fn recall(&self, op: Operation) -> Result<Option<f64>> {
        let truth = match op {
            Operation::KnnK10 => &self.truth,
            Operation::KnnK10Filtered => &self.truth_filtered,
            _ => return Ok(None),
        };
        let mut found = Vec::with_capacity(truth.len());
        for q in 0..truth.len() {
            let Input::Search(query) = self.input(op, q) else { return Ok(None) };
            let hits = self.tenant.search_resources(&query).await?;
            found.push(
                hits.iter().filter_map(|hit| self.row_of.get(&hit.resource.id).copied()).collect(),
            );
        }
        Ok(Some(recall(&found, truth)))
    }

    /// Writes one more embedded batch and, as soon as the write returns, searches for `probes`
    /// of its vectors: how many find their own resource first, and how long the write took.
    ///
    /// # Errors
    /// Any error of the write or the searches.
    pub async fn check_searchable(&self, probes: usize) -> Result<(usize, usize, Duration)> {
        // An index no timed call reaches, so the probe batch is new.
        let batch = self.embedded_batch(1 << 30);
        let started = std::time::Instant::now();
        let written = self.tenant.batch_create_resources(batch).await?;
        let took = started.elapsed();
        let step = (written.len() / probes.max(1)).max(1);
        let mut found = 0;
        let mut probed = 0;
        for resource in written.iter().step_by(step).take(probes) {
            let Some(embedding) = resource.embedding.clone() else { continue };
            let hits = self.tenant.search_resources(&SearchQuery::new(embedding, 1)).await?;
            probed += 1;
            found += usize::from(hits.first().is_some_and(|h| h.resource.id == resource.id));
        }
        Ok((found, probed, took))
    }
}
