//! Cases on transactions (visibility, rollback, snapshots, conflicts) and on reads racing
//! writes. It reaches storage only through the engine and must not name a provider.

use super::{Harness, ensure, ensure_eq, expect_err, search_ids, tenant, ts};
use crate::{
    Direction, EntityQuery, Error, NewEdge, NewEntity, NewMoment, NewResource, Result, SearchQuery,
};

/// A transaction's writes are invisible to others until it commits, then all visible.
pub async fn transaction_writes_are_invisible_until_commit<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut txn = t.begin().await?;
    let r = txn.create_resource(NewResource::new("pending").with_embedding(vec![1.0, 0.0])).await?;
    let e = txn.create_entity(NewEntity::new("pending", "k")).await?;
    expect_err(t.get_resource(r.id).await, "not_found")?;
    expect_err(t.get_entity(e.id).await, "not_found")?;
    ensure(
        t.search_entities(&EntityQuery::new("pending")).await?.is_empty(),
        "not searchable yet",
    )?;
    txn.commit().await?;
    ensure_eq(t.get_resource(r.id).await?, r, "visible after commit")?;
    ensure_eq(t.get_entity(e.id).await?, e, "entity visible after commit")?;
    ensure_eq(
        search_ids(&t, &SearchQuery::new(vec![1.0, 0.0], 1)).await?.len(),
        1,
        "searchable after commit",
    )
}

/// Rollback discards a transaction's inserts and deletes.
pub async fn transaction_rollback_discards_writes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let keep = t.create_entity(NewEntity::new("keep", "k")).await?;
    let mut txn = t.begin().await?;
    let r = txn.create_resource(NewResource::new("gone")).await?;
    txn.delete_entity(keep.id).await?;
    txn.rollback().await?;
    expect_err(t.get_resource(r.id).await, "not_found")?;
    ensure_eq(t.get_entity(keep.id).await?, keep, "delete rolled back")
}

/// A transaction dropped without commit rolls back and leaves the engine usable.
pub async fn dropped_transaction_rolls_back<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let id = {
        let mut txn = t.begin().await?;
        txn.create_entity(NewEntity::new("dropped", "k")).await?.id
    };
    expect_err(t.get_entity(id).await, "not_found")?;
    // The engine stays usable after a dropped transaction.
    let e = t.create_entity(NewEntity::new("after", "k")).await?;
    ensure_eq(t.get_entity(e.id).await?, e, "usable")
}

/// A transaction reads its own inserts, updates and deletes of every kind of record.
pub async fn transaction_reads_its_own_writes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let mut txn = t.begin().await?;
    let a = txn.create_entity(NewEntity::new("a", "k")).await?;
    let b = txn.create_entity(NewEntity::new("b", "k")).await?;
    let edge = txn.create_edge(NewEdge::new(a.id, b.id, "r")).await?;
    ensure_eq(txn.get_entity(a.id).await?, a.clone(), "own entity")?;
    ensure_eq(txn.get_edges(a.id, Direction::Out, None).await?, vec![edge.clone()], "own edge")?;
    let r = txn.create_resource(NewResource::new("r")).await?;
    let mut changed = r.clone();
    changed.content = "r2".into();
    txn.update_resource(changed).await?;
    ensure_eq(txn.get_resource(r.id).await?.content, "r2".to_owned(), "own update")?;
    let m = txn.create_moment(NewMoment::new(ts(1), ts(2), "m")).await?;
    ensure_eq(txn.get_moment(m.id).await?, m.clone(), "own moment")?;
    txn.delete_edge(edge.id).await?;
    expect_err(txn.get_edge(edge.id).await, "not_found")?;
    txn.commit().await?;
    ensure(
        t.get_edges(a.id, Direction::Out, None).await?.is_empty(),
        "deleted edge stays deleted",
    )?;
    ensure_eq(t.get_moment(m.id).await?, m, "moment committed")
}

/// A transaction's reads see one state: what commits elsewhere after its first read stays
/// invisible to it (PostgreSQL's `REPEATABLE READ`, a RocksDB snapshot).
pub async fn transaction_reads_one_snapshot<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("before", "k")).await?;
    let r = t.create_resource(NewResource::new("before").with_embedding(vec![1.0, 0.0])).await?;
    let mut txn = t.begin().await?;
    ensure_eq(txn.get_entity(e.id).await?, e.clone(), "first read")?;
    let mut renamed = e.clone();
    renamed.name = "after".into();
    t.update_entity(renamed).await?;
    let mut changed = r.clone();
    changed.content = "after".into();
    changed.embedding = Some(vec![0.0, 1.0]);
    t.update_resource(changed).await?;
    let other = t.create_entity(NewEntity::new("later", "k")).await?;
    ensure_eq(txn.get_entity(e.id).await?, e, "entity as of the snapshot")?;
    ensure_eq(txn.get_resource(r.id).await?, r.clone(), "resource as of the snapshot")?;
    expect_err(txn.get_entity(other.id).await, "not_found")?;
    txn.commit().await?;
    ensure_eq(t.get_resource(r.id).await?.content, "after".to_owned(), "visible after")
}

/// A resource's record and embedding are written together and read together: a get racing
/// updates returns one update's content with that update's embedding, never a mix.
pub async fn get_never_pairs_a_record_with_another_writes_embedding<H: Harness>(
    h: &mut H,
) -> Result<()> {
    const UPDATES: u32 = 2000;
    let t = tenant(h).await?;
    let r = t.create_resource(NewResource::new("0").with_embedding(vec![0.0, 1.0])).await?;
    let writer = {
        let t = t.clone();
        let r = r.clone();
        tokio::spawn(async move {
            for n in 1..=UPDATES {
                let mut next = r.clone();
                next.content = n.to_string();
                next.embedding = Some(vec![n as f32, 1.0]);
                t.update_resource(next).await?;
            }
            Ok::<_, Error>(())
        })
    };
    let mut reads = 0u64;
    while !writer.is_finished() {
        let got = t.get_resource(r.id).await?;
        let embedding = got.embedding.as_deref().unwrap_or_default();
        ensure(
            embedding.first().map(|&x| x.to_string()) == Some(got.content.clone()),
            format!("content {:?} read with embedding {embedding:?}", got.content),
        )?;
        reads += 1;
    }
    writer.await.map_err(|e| Error::invalid("writer", e.to_string()))??;
    ensure(reads > 0, "the reader ran while the writer did")
}

/// Of two transactions that update one entity, the second to commit fails with `Conflict`.
pub async fn concurrent_conflicting_commit_fails_with_conflict<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("contended", "k")).await?;
    let mut first = t.begin().await?;
    let mut second = t.begin().await?;
    let mut one = first.get_entity(e.id).await?;
    one.name = "first".into();
    first.update_entity(one).await?;
    let mut two = second.get_entity(e.id).await?;
    two.name = "second".into();
    let second_write = second.update_entity(two).await;
    first.commit().await?;
    let outcome = match second_write {
        Ok(_) => second.commit().await,
        Err(e) => Err(e),
    };
    expect_err(outcome, "conflict")?;
    ensure_eq(t.get_entity(e.id).await?.name, "first".to_owned(), "first writer wins")
}

/// An edge insert and a delete of one of its ends, in concurrent transactions, cannot both
/// commit.
pub async fn edge_insert_racing_entity_delete_cannot_both_commit<H: Harness>(
    h: &mut H,
) -> Result<()> {
    let t = tenant(h).await?;
    let a = t.create_entity(NewEntity::new("a", "k")).await?;
    let x = t.create_entity(NewEntity::new("x", "k")).await?;
    let mut linker = t.begin().await?;
    let mut deleter = t.begin().await?;
    let linked = linker.create_edge(NewEdge::new(a.id, x.id, "r")).await;
    let deleted = deleter.delete_entity(x.id).await;
    let first = match linked {
        Ok(_) => linker.commit().await,
        Err(e) => Err(e),
    };
    let second = match deleted {
        Ok(()) => deleter.commit().await,
        Err(e) => Err(e),
    };
    ensure(
        first.is_ok() != second.is_ok(),
        format!("exactly one commits: {first:?} / {second:?}"),
    )?;
    // Whatever won, no edge dangles.
    for edge in t.get_edges(a.id, Direction::Out, None).await? {
        t.get_entity(edge.to).await?;
    }
    Ok(())
}
