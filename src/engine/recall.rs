//! The engine's retrieval by text and by fused signals: [`TenantHandle::text_search`]
//! validates a full-text query and hands it to the provider; [`TenantHandle::recall`] gathers
//! each signal's candidates through the provider's own searches and fuses them by reciprocal
//! rank. It owns those checks and the fusion; ranking within a signal is the providers' (and
//! [`crate::text`]'s).

#[allow(unused_imports)]
use super::*;
use crate::model::{
    Filter, MAX_TEXT_QUERY_BYTES, MAX_TEXT_QUERY_TERMS, RRF_K, RecallHit, RecallQuery, SignalRanks,
    TextHit, TextQuery, TextTarget,
};

/// Rejects a filter past its size limits or holding a NUL.
fn check_filter(filter: Option<&Filter>) -> Result<()> {
    if let Some(filter) = filter {
        // First: the size check walks without recursion, `to_json` does not.
        filter.check_limits()?;
        if json_has_nul(&filter.to_json()) {
            return Err(Error::invalid("filter", "a NUL character in a key or string"));
        }
    }
    Ok(())
}

/// Rejects a `k` outside `1..=MAX_K`.
fn check_k(k: usize) -> Result<()> {
    if k == 0 || k > MAX_K {
        return Err(Error::invalid("k", format!("{k} (must be 1..={MAX_K})")));
    }
    Ok(())
}

/// Rejects query text that is too long, holds a NUL or has too many distinct terms.
fn check_text_query(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_QUERY_BYTES {
        return Err(Error::invalid(
            "query text",
            format!("longer than {MAX_TEXT_QUERY_BYTES} bytes"),
        ));
    }
    check_no_nul("query text", text)?;
    let terms = crate::text::query_terms(text).len();
    if terms > MAX_TEXT_QUERY_TERMS {
        return Err(Error::invalid(
            "query text",
            format!("{terms} distinct terms, at most {MAX_TEXT_QUERY_TERMS}"),
        ));
    }
    Ok(())
}

impl<P: Provider> TenantHandle<P> {
    /// The `k` resources (or moments) whose content best matches the query text by BM25.
    ///
    /// # Errors
    /// [`Error::Invalid`] for `k` outside `1..=MAX_K`, query text over
    /// [`MAX_TEXT_QUERY_BYTES`] or [`MAX_TEXT_QUERY_TERMS`] or holding a NUL, or a filter past
    /// its size limits.
    pub async fn text_search(&self, query: &TextQuery) -> Result<Vec<TextHit>> {
        check_k(query.k)?;
        check_text_query(&query.text)?;
        check_filter(query.filter.as_ref())?;
        if crate::text::query_terms(&query.text).is_empty() {
            return Ok(Vec::new());
        }
        self.provider.text_search(&self.tenant, query).await
    }
}

/// The signals a recall fuses, in the order their ranks are reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Text,
    Vector,
}

/// One signal's candidates, best first, and its weight.
struct Ranked {
    signal: Signal,
    weight: f64,
    resources: Vec<Resource>,
}

/// Fuses the signals' lists by reciprocal rank fusion: a resource at rank `r` (from 1) of a
/// list of weight `w` gains `w / (RRF_K + r)`. Best first, ties broken by id, cut at `k`.
fn fuse(lists: Vec<Ranked>, k: usize) -> Vec<RecallHit> {
    let mut hits: std::collections::HashMap<ResourceId, RecallHit> =
        std::collections::HashMap::new();
    for list in lists {
        for (at, resource) in list.resources.into_iter().enumerate() {
            let rank = at + 1;
            let hit = hits.entry(resource.id).or_insert_with(|| RecallHit {
                resource,
                score: 0.0,
                ranks: SignalRanks::default(),
            });
            hit.score += list.weight / (RRF_K + rank as f64);
            match list.signal {
                Signal::Text => hit.ranks.text = Some(rank),
                Signal::Vector => hit.ranks.vector = Some(rank),
            }
        }
    }
    let mut fused: Vec<RecallHit> = hits.into_values().collect();
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.resource.id.cmp(&b.resource.id)));
    fused.truncate(k);
    fused
}

impl<P: Provider> TenantHandle<P> {
    /// The `k` resources that best fuse the query's signals (see [`RecallQuery`]).
    ///
    /// The metadata filter applies inside every signal's candidate generation, and the time
    /// window inside the text signal's. The vector signal applies the window to its nearest
    /// `candidates`, then to 4 times as many while too few fall in the window, up to `MAX_K`;
    /// under a window that excludes nearly all of the nearest resources it may contribute
    /// fewer than `candidates`.
    ///
    /// # Errors
    /// [`Error::Invalid`] when no signal is set, for `k` outside `1..=MAX_K`, a candidate count
    /// outside `k..=MAX_K`, a negative or non-finite weight, a window that ends before it
    /// starts, and whatever [`TenantHandle::text_search`] and
    /// [`TenantHandle::search_resources`] reject in the text and the vector.
    pub async fn recall(&self, query: &RecallQuery) -> Result<Vec<RecallHit>> {
        check_k(query.k)?;
        let candidates = query.candidate_count();
        if candidates < query.k || candidates > MAX_K {
            return Err(Error::invalid(
                "candidates",
                format!("{candidates} (must be {}..={MAX_K})", query.k),
            ));
        }
        if query.text.is_none() && query.vector.is_none() {
            return Err(Error::invalid("recall", "no signal: give a text or a vector"));
        }
        for (what, weight) in
            [("text weight", query.weights.text), ("vector weight", query.weights.vector)]
        {
            if !weight.is_finite() || weight < 0.0 {
                return Err(Error::invalid(what, format!("{weight} (must be finite, >= 0)")));
            }
        }
        if let Some(window) = &query.window
            && let (Some(start), Some(end)) = (window.start, window.end)
            && end < start
        {
            return Err(Error::invalid(
                "window",
                format!("ends ({end}) before it starts ({start})"),
            ));
        }
        check_filter(query.filter.as_ref())?;
        let mut lists = Vec::new();
        if let Some(text) = &query.text {
            let text_query = TextQuery {
                text: text.clone(),
                target: TextTarget::Resources,
                k: candidates,
                filter: query.filter.clone(),
                window: query.window,
            };
            let resources = self
                .text_search(&text_query)
                .await?
                .into_iter()
                .filter_map(|hit| match hit.record {
                    Record::Resource(resource) => Some(resource),
                    _ => None,
                })
                .collect();
            lists.push(Ranked { signal: Signal::Text, weight: query.weights.text, resources });
        }
        if let Some(vector) = &query.vector {
            let resources = self.vector_candidates(vector, query, candidates).await?;
            lists.push(Ranked { signal: Signal::Vector, weight: query.weights.vector, resources });
        }
        Ok(fuse(lists, query.k))
    }

    /// The vector signal's candidates: the nearest resources matching the filter and created
    /// within the window, at most `candidates`. Vector search has no time predicate, so the
    /// window is applied to its results; the search is widened (4 times, up to `MAX_K`) only
    /// while the window leaves too few and the tenant may hold more.
    async fn vector_candidates(
        &self,
        vector: &[f32],
        query: &RecallQuery,
        candidates: usize,
    ) -> Result<Vec<Resource>> {
        let mut fetch = candidates;
        loop {
            let search =
                SearchQuery { vector: vector.to_vec(), k: fetch, filter: query.filter.clone() };
            let hits = self.search_resources(&search).await?;
            let exhausted = hits.len() < fetch || fetch == MAX_K;
            let mut resources: Vec<Resource> = hits
                .into_iter()
                .map(|hit| hit.resource)
                .filter(|resource| {
                    query
                        .window
                        .is_none_or(|w| w.overlaps(resource.created_at, resource.created_at))
                })
                .collect();
            if resources.len() >= candidates || exhausted {
                resources.truncate(candidates);
                return Ok(resources);
            }
            fetch = fetch.saturating_mul(4).min(MAX_K);
        }
    }
}
