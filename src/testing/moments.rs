//! Cases on moments and time-range queries. It reaches storage only through the engine and
//! must not name a provider.

use serde_json::json;

use super::{Harness, ensure, ensure_eq, expect_err, meta, moments_ids, tenant, ts};
use crate::{NewEntity, NewMoment, RecordKind, Result, TimeRange};

/// A moment reads back, updates and deletes; once deleted it is gone from range queries.
pub async fn moment_round_trips_updates_and_deletes<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let e = t.create_entity(NewEntity::new("ada", "person")).await?;
    let mut new = NewMoment::new(ts(100), ts(200), "meeting");
    new.content = "standup".into();
    new.entities.push(e.id);
    new.metadata = meta(json!({"room": 4}));
    let m = t.create_moment(new).await?;
    ensure_eq(&t.get_moment(m.id).await?, &m, "stored")?;
    let mut changed = m.clone();
    changed.content = "retro".into();
    ensure_eq(&t.update_moment(changed.clone()).await?, &changed, "updated")?;
    ensure_eq(&t.get_moment(m.id).await?, &changed, "stored update")?;
    t.delete_moment(m.id).await?;
    expect_err(t.get_moment(m.id).await, "not_found")?;
    expect_err(t.update_moment(changed).await, "not_found")?;
    expect_err(t.delete_moment(m.id).await, "not_found")?;
    ensure(t.moments_in_range(&TimeRange::all()).await?.is_empty(), "time index cleaned")
}

/// Moments that end before they start or have an empty kind, and ranges that end before they
/// start, are invalid.
pub async fn moment_ending_before_it_starts_is_rejected<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    expect_err(t.create_moment(NewMoment::new(ts(10), ts(9), "m")).await, "invalid")?;
    expect_err(t.create_moment(NewMoment::new(ts(1), ts(2), "")).await, "invalid")?;
    expect_err(t.moments_in_range(&TimeRange::new(ts(5), ts(4))).await, "invalid")?;
    ensure(t.scan(RecordKind::Moment, None, 10).await?.is_empty(), "nothing written")
}

/// Moments that only touch a range overlap it; results are ordered by start then id.
pub async fn moments_touching_the_range_are_included<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let before = t.create_moment(NewMoment::new(ts(0), ts(10), "m")).await?;
    let instant = t.create_moment(NewMoment::new(ts(20), ts(20), "m")).await?;
    let after = t.create_moment(NewMoment::new(ts(20), ts(30), "m")).await?;
    let outside = t.create_moment(NewMoment::new(ts(31), ts(40), "m")).await?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(10), ts(20))).await?,
        vec![before.id, instant.id, after.id],
        "touching",
    )?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(11), ts(19))).await?, vec![], "gap")?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(20), ts(20))).await?,
        vec![instant.id, after.id],
        "instant range",
    )?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(35), ts(35))).await?, vec![outside.id], "inside")
}

/// An open range end reaches every moment on its side.
pub async fn moments_with_open_range_ends<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let early = t.create_moment(NewMoment::new(ts(-50), ts(-40), "m")).await?;
    let late = t.create_moment(NewMoment::new(ts(40), ts(50), "m")).await?;
    let until_zero = TimeRange { start: None, end: Some(ts(0)) };
    let from_zero = TimeRange { start: Some(ts(0)), end: None };
    ensure_eq(moments_ids(&t, until_zero).await?, vec![early.id], "open start")?;
    ensure_eq(moments_ids(&t, from_zero).await?, vec![late.id], "open end")?;
    ensure_eq(moments_ids(&t, TimeRange::all()).await?, vec![early.id, late.id], "all, by start")
}

/// A long moment is found by a range far after its start.
pub async fn long_moment_overlapping_a_later_range_is_found<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let long = t.create_moment(NewMoment::new(ts(0), ts(1_000_000), "m")).await?;
    let mut short = Vec::new();
    for i in 0..20 {
        short
            .push(t.create_moment(NewMoment::new(ts(500_000 + i), ts(500_000 + i), "m")).await?.id);
    }
    let found = moments_ids(&t, TimeRange::new(ts(999_999), ts(2_000_000))).await?;
    ensure_eq(found, vec![long.id], "long moment found far from its start")?;
    let found = moments_ids(&t, TimeRange::new(ts(500_005), ts(500_006))).await?;
    ensure_eq(found, vec![long.id, short[5], short[6]], "ordered by start")
}

/// An updated moment is found at its new time only; an update that ends before its start is
/// invalid.
pub async fn moment_update_moves_it_in_time<H: Harness>(h: &mut H) -> Result<()> {
    let t = tenant(h).await?;
    let m = t.create_moment(NewMoment::new(ts(10), ts(20), "m")).await?;
    let mut moved = m.clone();
    moved.start = ts(100);
    moved.end = ts(110);
    t.update_moment(moved).await?;
    ensure_eq(moments_ids(&t, TimeRange::new(ts(0), ts(50))).await?, vec![], "gone from old time")?;
    ensure_eq(
        moments_ids(&t, TimeRange::new(ts(105), ts(105))).await?,
        vec![m.id],
        "found at new time",
    )?;
    let mut backwards = m.clone();
    backwards.end = ts(0);
    expect_err(t.update_moment(backwards).await, "invalid")
}
