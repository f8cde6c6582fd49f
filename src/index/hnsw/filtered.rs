//! The filtered walk: a beam search on level 0 that scores only the points a filter admits,
//! reaching them through rejected points two hops at a time (ACORN-1, Patel et al., SIGMOD
//! 2024, on an ordinary HNSW graph).
//!
//! Why not the plain walk with an `accept` predicate: that walk scores every neighbour it
//! meets, admitted or not, and keeps expanding until it holds `ef` admitted points, so under a
//! filter that admits a fraction `s` of the graph it scores about `1/s` times the points of an
//! unfiltered search, nearly all of them only to throw them away. Here a rejected neighbour
//! costs a predicate call instead of a distance: its own neighbours are looked at (the second
//! hop) and the admitted ones among them scored, so the walk moves over the admitted points
//! as if they formed a graph of their own, whose links are the graph's one- and two-hop paths.
//!
//! Invariants:
//! - only admitted points are scored, enter the beam or are returned; the caller's predicate
//!   is the whole admission test (tombstones included);
//! - each expansion scores at most `m0` new points (one-hop admitted first), like an expansion
//!   of the plain walk;
//! - a rejected neighbour is marked visited only once its own neighbours were all looked at,
//!   so a second-hop scan cut short by that bound is finished from a later expansion.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use smallvec::SmallVec;

use super::{Hnsw, Scored, VISITED};
use crate::index::distance;
use crate::index::quant::Query;

impl Hnsw {
    /// The `k` nearest points that `accept` admits, nearest first: [`Hnsw::search_prepared`]
    /// for a filter that rejects many points. `accept` must reject tombstones; it is called
    /// once or more per point the walk meets, so it should be cheap (or remember its answers).
    pub(crate) fn search_filtered(
        &self,
        prepared: &Query<'_>,
        k: usize,
        ef: usize,
        mut accept: impl FnMut(u32) -> bool,
    ) -> Vec<Scored> {
        let Some(current) = self.descend(prepared) else { return Vec::new() };
        let mut found = self.walk_admitted(prepared, current, ef.max(k), &mut accept);
        found.truncate(k);
        found
    }

    /// The level-0 beam search of [`Hnsw::search_filtered`] from `entry` (admitted or not: it
    /// only starts the walk): up to `ef` admitted points, nearest first.
    fn walk_admitted(
        &self,
        query: &Query<'_>,
        entry: Scored,
        ef: usize,
        accept: &mut impl FnMut(u32) -> bool,
    ) -> Vec<Scored> {
        VISITED.with(|visited| {
            let mut visited = visited.borrow_mut();
            visited.reset(self.len());
            let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
            let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
            visited.insert(entry.point);
            candidates.push(Reverse(entry));
            if accept(entry.point) {
                results.push(entry);
            }
            while let Some(Reverse(candidate)) = candidates.pop() {
                if results.len() >= ef
                    && results.peek().is_some_and(|worst| candidate.distance > worst.distance)
                {
                    break;
                }
                let mut fresh: SmallVec<[u32; 64]> = SmallVec::new();
                let mut rejected: SmallVec<[u32; 64]> = SmallVec::new();
                for &n in self.neighbours(candidate.point, 0) {
                    if visited.contains(n) {
                        continue;
                    }
                    if accept(n) {
                        visited.insert(n);
                        fresh.push(n);
                    } else {
                        rejected.push(n);
                    }
                }
                for &r in &rejected {
                    distance::prefetch(self.links0.row(r as usize));
                }
                for &r in &rejected {
                    if fresh.len() >= self.m0 {
                        break;
                    }
                    let mut finished = true;
                    for &n in self.neighbours(r, 0) {
                        if fresh.len() >= self.m0 {
                            finished = false;
                            break;
                        }
                        if !visited.contains(n) && accept(n) {
                            visited.insert(n);
                            fresh.push(n);
                        }
                    }
                    if finished {
                        visited.insert(r);
                    }
                }
                for &n in &fresh {
                    self.vectors.prefetch(n as usize);
                }
                for &n in &fresh {
                    let distance = self.distance(query, n);
                    let bound = results.peek().map_or(f32::INFINITY, |w| w.distance);
                    if results.len() < ef || distance < bound {
                        let scored = Scored { distance, point: n };
                        distance::prefetch(self.links0.row(n as usize));
                        candidates.push(Reverse(scored));
                        results.push(scored);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
            results.into_sorted_vec()
        })
    }
}
