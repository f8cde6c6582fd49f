//! The RocksDB provider's deferred text index (see `src/rocks/text.rs`): records wait in a
//! pending list until a search indexes them; a search that cannot index them (a reader's)
//! scores them from their content; changes to pending and to indexed records leave no stale
//! term; and a store made before full text gains its index when a writer opens it.

// Helpers here are test code too: a failed setup step should stop the test where it happened.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use percolate::rocks::{RocksConfig, RocksProvider};
use percolate::{
    MemoryEngine, NewMoment, NewResource, Resource, TenantConfig, TenantHandle, TenantId,
    TextQuery, Timestamp,
};

fn tenant_id() -> TenantId {
    TenantId::new("notes").unwrap()
}

fn open(root: &Path, read_only: bool) -> MemoryEngine<RocksProvider> {
    let mut config = RocksConfig::new(root);
    config.read_only = read_only;
    MemoryEngine::new(RocksProvider::open(config).unwrap())
}

/// The ids of the `k` best text matches of `query` among resources.
async fn found(tenant: &TenantHandle<RocksProvider>, query: &str) -> Vec<uuid::Uuid> {
    let hits = tenant.text_search(&TextQuery::new(query, 10)).await.unwrap();
    hits.iter().map(|hit| hit.record.id()).collect()
}

async fn notes(tenant: &TenantHandle<RocksProvider>) -> Vec<Resource> {
    let contents = [
        "the contract with Acme was signed",
        "an apple pie with cinnamon",
        "Acme renewed the contract",
        "running before work",
    ];
    tenant
        .batch_create_resources(contents.iter().map(|c| NewResource::new(*c)).collect())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_pending_and_indexed_records_leave_no_stale_term() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), false);
    let tenant = engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
    let written = notes(&tenant).await;
    // Still pending: change one and delete another before any search indexes them.
    let mut pie = written[1].clone();
    pie.content = "a pear tart".into();
    tenant.update_resource(pie).await.unwrap();
    tenant.delete_resource(written[3].id).await.unwrap();
    assert_eq!(found(&tenant, "apple").await, Vec::<uuid::Uuid>::new());
    assert_eq!(found(&tenant, "tart").await, vec![written[1].id.as_uuid()]);
    assert_eq!(found(&tenant, "running").await, Vec::<uuid::Uuid>::new());
    // Now indexed (the searches above indexed them): change and delete again.
    let mut tart = tenant.get_resource(written[1].id).await.unwrap();
    tart.content = "plum jam".into();
    tenant.update_resource(tart).await.unwrap();
    tenant.delete_resource(written[0].id).await.unwrap();
    assert_eq!(found(&tenant, "tart").await, Vec::<uuid::Uuid>::new());
    assert_eq!(found(&tenant, "jam").await, vec![written[1].id.as_uuid()]);
    assert_eq!(found(&tenant, "contract").await, vec![written[2].id.as_uuid()]);
    // A metadata-only update leaves the postings as they are.
    let mut plum = tenant.get_resource(written[1].id).await.unwrap();
    plum.metadata.insert("tag".into(), "fruit".into());
    tenant.update_resource(plum).await.unwrap();
    assert_eq!(found(&tenant, "plum").await, vec![written[1].id.as_uuid()]);
    // And after a reopen the index still agrees with the records.
    drop(tenant);
    drop(engine);
    let engine = open(dir.path(), false);
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    assert_eq!(found(&tenant, "jam").await, vec![written[1].id.as_uuid()]);
    assert_eq!(found(&tenant, "acme").await, vec![written[2].id.as_uuid()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_scores_records_its_writer_has_not_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path(), false);
    let tenant = writer.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
    let written = notes(&tenant).await;
    let mut moment = NewMoment::new(Timestamp::from_micros(1), Timestamp::from_micros(2), "call");
    moment.content = "called Acme about the contract".into();
    let moment = tenant.create_moment(moment).await.unwrap();
    // The reader cannot index (it never writes): it reads every record as pending.
    let reader = open(dir.path(), true);
    let seen = reader.tenant(&tenant_id()).await.unwrap();
    let expected = vec![written[2].id.as_uuid(), written[0].id.as_uuid()];
    let hits = seen.text_search(&TextQuery::new("acme contract", 10)).await.unwrap();
    assert_eq!(hits.iter().map(|hit| hit.record.id()).collect::<Vec<_>>(), expected);
    let moments = seen.text_search(&TextQuery::new("acme", 5).moments()).await.unwrap();
    assert_eq!(
        moments.iter().map(|hit| hit.record.id()).collect::<Vec<_>>(),
        [moment.id.as_uuid()]
    );
    // The writer's search indexes them and ranks them the same, with the same scores.
    let indexed = tenant.text_search(&TextQuery::new("acme contract", 10)).await.unwrap();
    assert_eq!(indexed.iter().map(|hit| hit.record.id()).collect::<Vec<_>>(), expected);
    for (a, b) in hits.iter().zip(&indexed) {
        assert!((a.score - b.score).abs() < 1e-9, "{} vs {}", a.score, b.score);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_made_before_full_text_is_indexed_when_a_writer_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let engine = open(dir.path(), false);
        let tenant = engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
        notes(&tenant).await
    };
    // Make it what a store written before full text looks like: no `text` column family and
    // no marker saying every record is indexed or pending.
    let db_dir = dir.path().join(tenant_id().as_str());
    {
        let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &db_dir).unwrap();
        let mut db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), &db_dir, &families).unwrap();
        db.delete_cf(db.cf_handle("meta").unwrap(), b"text_index").unwrap();
        db.drop_cf("text").unwrap();
    }
    // A reader that opens it first cannot search its text, and says why.
    let reader = open(dir.path(), true);
    let old = reader.tenant(&tenant_id()).await.unwrap();
    assert_eq!(old.get_resource(written[0].id).await.unwrap().content, written[0].content);
    let refused = old.text_search(&TextQuery::new("acme", 5)).await.unwrap_err();
    assert!(refused.to_string().contains("open it once with a writer"), "{refused}");
    drop(old);
    drop(reader);
    // A writer opens it, and every record is found by its content.
    let engine = open(dir.path(), false);
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    assert_eq!(found(&tenant, "cinnamon").await, vec![written[1].id.as_uuid()]);
    let mut acme = found(&tenant, "acme").await;
    acme.sort();
    let mut expected = vec![written[0].id.as_uuid(), written[2].id.as_uuid()];
    expected.sort();
    assert_eq!(acme, expected);
    // Reopening does not mark the records again (the marker is written): still one hit each.
    drop(tenant);
    drop(engine);
    let engine = open(dir.path(), false);
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    assert_eq!(found(&tenant, "running").await, vec![written[3].id.as_uuid()]);
}

/// Searches fold pending records while another task keeps changing their content: whichever
/// commits first, the index ends up agreeing with the records (every record found by its
/// final content's term and by no earlier one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_racing_content_changes_leave_the_index_agreeing_with_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), false);
    let tenant = engine.create_tenant(&tenant_id(), TenantConfig::default()).await.unwrap();
    let written = tenant
        .batch_create_resources((0..20).map(|i| NewResource::new(format!("start{i}"))).collect())
        .await
        .unwrap();
    let writer = {
        let tenant = tenant.clone();
        let written = written.clone();
        tokio::spawn(async move {
            for round in 0..30 {
                for resource in &written {
                    let mut changed = tenant.get_resource(resource.id).await.unwrap();
                    changed.content = format!("round{round} word{}", round % 3);
                    tenant.update_resource(changed).await.unwrap();
                }
            }
        })
    };
    while !writer.is_finished() {
        tenant.text_search(&TextQuery::new("word0 word1 word2", 20)).await.unwrap();
    }
    writer.await.unwrap();
    assert_eq!(found(&tenant, "round29").await.len(), 10.min(written.len()));
    let hits = tenant.text_search(&TextQuery::new("round29", 50)).await.unwrap();
    assert_eq!(hits.len(), written.len());
    for stale in ["round28", "round0", "start0", "word0", "word1"] {
        assert_eq!(found(&tenant, stale).await, Vec::<uuid::Uuid>::new(), "{stale}");
    }
    // After a reopen (nothing pending: the searches folded it all), still the same.
    drop(tenant);
    drop(engine);
    let engine = open(dir.path(), false);
    let tenant = engine.tenant(&tenant_id()).await.unwrap();
    let hits = tenant.text_search(&TextQuery::new("word2", 50)).await.unwrap();
    assert_eq!(hits.len(), written.len());
}
