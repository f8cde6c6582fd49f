//! Okapi BM25 over the postings of a query's terms. Owns the scoring formula and the order of
//! results; knows nothing of where postings are stored.

use std::collections::HashMap;
use std::hash::Hash;

/// BM25's term-frequency saturation.
pub const BM25_K1: f64 = 1.2;
/// BM25's length normalisation.
pub const BM25_B: f64 = 0.75;

/// One document's entry in a term's postings: how often the term occurs in it and the
/// document's length in words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    /// Occurrences of the term in the document (at least 1).
    pub frequency: u32,
    /// The document's length in words.
    pub length: u32,
}

/// Scores every document found in `postings` (one list per distinct query term, each listing a
/// document at most once) and returns them best first, ties broken by ascending document id.
///
/// The number of documents and the average length are those of the documents listed (see the
/// module docs of [`crate::text`]); the inverse document frequency is
/// `ln(1 + (n - df + 0.5) / (df + 0.5))`, never negative.
pub fn rank<D: Copy + Ord + Hash>(postings: &[Vec<(D, Posting)>]) -> Vec<(D, f64)> {
    let mut lengths: HashMap<D, u32> = HashMap::new();
    for list in postings {
        for (doc, posting) in list {
            lengths.insert(*doc, posting.length);
        }
    }
    if lengths.is_empty() {
        return Vec::new();
    }
    let documents = lengths.len() as f64;
    let average = (lengths.values().map(|&l| f64::from(l)).sum::<f64>() / documents).max(1.0);
    let mut scores: HashMap<D, f64> = HashMap::with_capacity(lengths.len());
    for list in postings {
        let df = list.len() as f64;
        let idf = (1.0 + (documents - df + 0.5) / (df + 0.5)).ln();
        for (doc, posting) in list {
            let tf = f64::from(posting.frequency);
            let norm = BM25_K1 * (1.0 - BM25_B + BM25_B * f64::from(posting.length) / average);
            *scores.entry(*doc).or_default() += idf * tf * (BM25_K1 + 1.0) / (tf + norm);
        }
    }
    let mut ranked: Vec<(D, f64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posting(frequency: u32, length: u32) -> Posting {
        Posting { frequency, length }
    }

    #[test]
    fn more_occurrences_in_a_shorter_document_rank_first() {
        let ranked = rank(&[vec![(1, posting(1, 100)), (2, posting(3, 10)), (3, posting(1, 10))]]);
        let order: Vec<i32> = ranked.iter().map(|(d, _)| *d).collect();
        assert_eq!(order, vec![2, 3, 1]);
        assert!(ranked.iter().all(|(_, s)| *s > 0.0));
    }

    #[test]
    fn a_rare_term_outweighs_a_common_one() {
        // Term a is in documents 1..=4, term b only in document 4; document 5 has a twice.
        let a: Vec<_> = (1..=5).map(|d| (d, posting(if d == 5 { 2 } else { 1 }, 10))).collect();
        let b = vec![(4, posting(1, 10))];
        let ranked = rank(&[a, b]);
        assert_eq!(ranked[0].0, 4);
    }

    #[test]
    fn ties_break_by_id_and_nothing_matches_nothing() {
        let ranked = rank(&[vec![(9, posting(1, 5)), (3, posting(1, 5))]]);
        assert_eq!(ranked.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![3, 9]);
        assert!(rank::<u8>(&[]).is_empty());
        assert!(rank::<u8>(&[Vec::new()]).is_empty());
    }
}
