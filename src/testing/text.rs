//! Cases on full-text search: BM25 ranking checked against a brute-force ranking of the
//! contents, stemming and case, updates and deletes, filters, moments, isolation, reopening and
//! bad input. It reaches storage only through the engine and must not name a provider.

use serde_json::json;

use super::{Harness, ensure, ensure_eq, expect_err, meta, tenant, ts};
use crate::text::{Posting, analyze, query_terms, rank};
use crate::{
    Filter, MAX_TEXT_QUERY_BYTES, NewMoment, NewResource, Provider, Record, Result, TenantHandle,
    TextQuery,
};

/// The ids and scores a search over `documents` must return: every content analysed, ranked by
/// [`rank`], cut at `k`.
fn brute_text(documents: &[(uuid::Uuid, &str)], query: &str, k: usize) -> Vec<(uuid::Uuid, f64)> {
    let terms = query_terms(query);
    let mut postings: Vec<Vec<(uuid::Uuid, Posting)>> = vec![Vec::new(); terms.len()];
    for (id, content) in documents {
        let analyzed = analyze(content);
        for (list, term) in postings.iter_mut().zip(&terms) {
            if let Some((_, frequency)) = analyzed.terms.iter().find(|(t, _)| t == term) {
                list.push((*id, Posting { frequency: *frequency, length: analyzed.length }));
            }
        }
    }
    rank(&postings).into_iter().take(k).collect()
}

async fn text_ids<P: Provider>(t: &TenantHandle<P>, query: &TextQuery) -> Result<Vec<uuid::Uuid>> {
    Ok(t.text_search(query).await?.into_iter().map(|hit| hit.record.id()).collect())
}

const CONTENTS: [&str; 8] = [
    "The contract with Acme was signed on Monday",
    "Contracts, contracted, contracting: the contract again",
    "An apple pie recipe with cinnamon",
    "Meeting notes: Acme wants the contract renewed next year",
    "Running is good for the heart",
    "She runs every morning before work",
    "acme ACME Acme",
    "Nothing relevant here at all",
];

/// Text search returns the brute-force BM25 ranking with its scores, best first; stemming and
/// case make `contracts` and `Contract` one term.
pub async fn text_search_matches_brute_force_bm25<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let created =
        t.batch_create_resources(CONTENTS.iter().map(|c| NewResource::new(*c)).collect()).await?;
    let documents: Vec<(uuid::Uuid, &str)> =
        created.iter().map(|r| (r.id.as_uuid(), r.content.as_str())).collect();
    for query in ["contract", "CONTRACTS acme", "run", "cinnamon apple", "acme renewed contract"] {
        let expected = brute_text(&documents, query, 10);
        let hits = t.text_search(&TextQuery::new(query, 10)).await?;
        let ids: Vec<uuid::Uuid> = hits.iter().map(|hit| hit.record.id()).collect();
        ensure_eq(ids, expected.iter().map(|(id, _)| *id).collect(), query)?;
        for (hit, (_, score)) in hits.iter().zip(&expected) {
            ensure((hit.score - score).abs() < 1e-9, format!("{query}: {} vs {score}", hit.score))?;
            ensure(matches!(hit.record, Record::Resource(_)), "a resource comes back")?;
        }
    }
    let stemmed = text_ids(&t, &TextQuery::new("running", 10)).await?;
    ensure_eq(stemmed.len(), 2, "running finds running and runs")?;
    ensure(text_ids(&t, &TextQuery::new("zebra", 10)).await?.is_empty(), "no match is empty")?;
    ensure(text_ids(&t, &TextQuery::new(" ,.; ", 10)).await?.is_empty(), "no term is empty")?;
    ensure_eq(text_ids(&t, &TextQuery::new("contract", 2)).await?.len(), 2, "k cuts")
}

/// An update replaces a record's terms and a delete removes them, for resources and moments,
/// and what was written is searchable when the call returns.
pub async fn text_search_sees_updates_and_deletes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let resource = t.create_resource(NewResource::new("quarterly budget review")).await?;
    let other = t.create_resource(NewResource::new("budget for the offsite")).await?;
    ensure_eq(text_ids(&t, &TextQuery::new("budget", 10)).await?.len(), 2, "both found")?;
    let mut changed = resource.clone();
    changed.content = "annual hiring plan".into();
    t.update_resource(changed).await?;
    ensure_eq(
        text_ids(&t, &TextQuery::new("budget", 10)).await?,
        vec![other.id.as_uuid()],
        "old terms no longer match",
    )?;
    ensure_eq(
        text_ids(&t, &TextQuery::new("hiring", 10)).await?,
        vec![resource.id.as_uuid()],
        "new terms match",
    )?;
    t.delete_resource(other.id).await?;
    ensure(text_ids(&t, &TextQuery::new("budget", 10)).await?.is_empty(), "deleted is gone")?;

    let mut new = NewMoment::new(ts(10), ts(20), "meeting");
    new.content = "Standup about the migration".into();
    let moment = t.create_moment(new).await?;
    let hits = t.text_search(&TextQuery::new("migrations", 10).moments()).await?;
    ensure_eq(hits.len(), 1, "moment found by stem")?;
    ensure(matches!(&hits[0].record, Record::Moment(m) if m.id == moment.id), "the moment")?;
    ensure(
        text_ids(&t, &TextQuery::new("hiring", 10).moments()).await?.is_empty(),
        "moments and resources are searched apart",
    )?;
    let mut changed = moment.clone();
    changed.content = "Retrospective".into();
    t.update_moment(changed).await?;
    ensure(
        text_ids(&t, &TextQuery::new("migration", 10).moments()).await?.is_empty(),
        "moment's old terms no longer match",
    )?;
    ensure_eq(
        text_ids(&t, &TextQuery::new("retrospective", 10).moments()).await?.len(),
        1,
        "moment's new terms match",
    )?;
    t.delete_moment(moment.id).await?;
    ensure(
        text_ids(&t, &TextQuery::new("retrospective", 10).moments()).await?.is_empty(),
        "deleted moment is gone",
    )
}

/// The metadata filter applies before the cut: `k` hits whenever `k` matching records have a
/// query term, in the unfiltered ranking's order.
pub async fn text_filter_is_applied_before_the_cut<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let batch: Vec<NewResource> = (0..60)
        .map(|i| {
            NewResource::new(format!("report number {i} {}", "report ".repeat(i % 7)))
                .with_metadata(meta(json!({"bucket": i % 10})))
        })
        .collect();
    let created = t.batch_create_resources(batch).await?;
    let filter = Filter::parse(&json!({"bucket": 3}))?;
    let hits = t.text_search(&TextQuery::new("report", 5).with_filter(filter.clone())).await?;
    let ids: Vec<uuid::Uuid> = hits.iter().map(|hit| hit.record.id()).collect();
    let documents: Vec<(uuid::Uuid, &str)> =
        created.iter().map(|r| (r.id.as_uuid(), r.content.as_str())).collect();
    let expected: Vec<uuid::Uuid> = brute_text(&documents, "report", 60)
        .into_iter()
        .filter(|(id, _)| {
            created.iter().any(|r| r.id.as_uuid() == *id && filter.matches(&r.metadata))
        })
        .map(|(id, _)| id)
        .take(5)
        .collect();
    ensure_eq(ids, expected, "filtered hits in ranking order")
}

/// What a tenant indexed is found only through that tenant, and still after reopening.
pub async fn text_search_is_per_tenant_and_survives_reopen<H: Harness>(h: &mut H) -> Result<()> {
    let a = tenant(h).await?;
    let b = tenant(h).await?;
    let written = a.create_resource(NewResource::new("the secret password is swordfish")).await?;
    ensure(
        text_ids(&b, &TextQuery::new("swordfish", 10)).await?.is_empty(),
        "another tenant finds nothing",
    )?;
    let (a_id, b_id) = (a.id().clone(), b.id().clone());
    drop((a, b));
    h.reopen().await;
    let a = h.engine().tenant(&a_id).await?;
    ensure_eq(
        text_ids(&a, &TextQuery::new("swordfish", 10)).await?,
        vec![written.id.as_uuid()],
        "found after reopening",
    )?;
    let b = h.engine().tenant(&b_id).await?;
    ensure(text_ids(&b, &TextQuery::new("swordfish", 10)).await?.is_empty(), "still apart")
}

/// A text search with a bad `k`, a NUL, too long a query or too many terms is rejected.
pub async fn text_search_rejects_bad_queries<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.text_search(&TextQuery::new("a", 0)).await, "invalid")?;
    expect_err(t.text_search(&TextQuery::new("a", 10_000_000)).await, "invalid")?;
    expect_err(t.text_search(&TextQuery::new("a\0b", 1)).await, "invalid")?;
    let long = "x".repeat(MAX_TEXT_QUERY_BYTES + 1);
    expect_err(t.text_search(&TextQuery::new(long, 1)).await, "invalid")?;
    let many: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
    expect_err(t.text_search(&TextQuery::new(many.join(" "), 1)).await, "invalid")
}
