//! Full-text analysis and ranking shared by every provider: the tokenizer that turns content
//! into terms ([`analyze`], [`query_terms`]) and BM25 ([`rank`]). It owns how text becomes
//! terms and how postings become scores; it must not touch storage (providers store and fetch
//! the postings, in their own layouts, and hand them here).
//!
//! # The language story
//! - **Words** are Unicode word boundaries (UAX #29, `unicode-segmentation`): any script splits
//!   into words, punctuation and spaces are dropped, an apostrophe or a decimal point inside a
//!   word keeps it whole (`can't`, `3.14`). Scripts written without spaces (Chinese, Japanese,
//!   Thai) come out one ideograph or one run at a time, so search in them is by character, not
//!   by word.
//! - **Case**: every word is lowercased by Unicode's full mapping (`Straße` → `straße`).
//! - **Stemming**: the Snowball English stemmer (Porter 2, `rust-stemmers`) on every word, so
//!   `contracts`, `contracted` and `contracting` are one term. Other languages are not stemmed
//!   by their own rules: English suffix rules rarely fire on them, and when they do they fire
//!   the same on content and on queries, so matching stays consistent; only conflation is
//!   coarser or finer than a native stemmer would make it.
//! - **No stop words**: BM25's inverse document frequency gives terms found in most documents
//!   almost no weight, so `the` costs postings but does not skew ranking.
//! - A term is at most [`MAX_TERM_BYTES`] bytes (cut at a character boundary), never empty,
//!   and never contains NUL (words are letters, digits and in-word punctuation).
//!
//! # Ranking
//! [`rank`] is Okapi BM25 (k1 = 1.2, b = 0.75). Its collection statistics (the number of
//! documents and their average length) are taken over the documents that contain at least one
//! query term, not over the whole tenant: every provider then scores from the postings of the
//! query terms alone, with no tenant-wide counter that every write would have to update (in
//! RocksDB's optimistic transactions such a counter would make every pair of concurrent writes
//! conflict). Terms keep their order of weight (a rarer term weighs more), and a term present
//! in every matching document weighs almost nothing.

mod bm25;

pub use bm25::{BM25_B, BM25_K1, Posting, rank};

use unicode_segmentation::UnicodeSegmentation;

/// The longest term kept, in bytes; longer words are cut at a character boundary.
pub const MAX_TERM_BYTES: usize = 64;
/// The most occurrences of one term counted in one document (PostgreSQL's `tsvector` keeps at
/// most 256 positions of a lexeme; BM25's saturation makes the rest worth almost nothing).
pub const MAX_TERM_FREQUENCY: u32 = 256;

/// The terms of one document: each distinct term with its frequency (at most
/// [`MAX_TERM_FREQUENCY`]), sorted by term, and the document's length (its number of words,
/// repeats counted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analyzed {
    /// Each distinct term and how many times it occurs, sorted by term.
    pub terms: Vec<(String, u32)>,
    /// The number of words in the document.
    pub length: u32,
}

/// Splits, lowercases and stems `text` (see the module docs).
pub fn analyze(text: &str) -> Analyzed {
    let mut terms: Vec<String> = words(text).collect();
    let length = u32::try_from(terms.len()).unwrap_or(u32::MAX);
    terms.sort_unstable();
    let mut counted: Vec<(String, u32)> = Vec::new();
    for term in terms {
        match counted.last_mut() {
            Some((last, count)) if *last == term => {
                *count = (*count + 1).min(MAX_TERM_FREQUENCY);
            }
            _ => counted.push((term, 1)),
        }
    }
    Analyzed { terms: counted, length }
}

/// The distinct terms of a query, in order of first appearance.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for term in words(text) {
        if !out.contains(&term) {
            out.push(term);
        }
    }
    out
}

/// Every term of `text`, repeats included, in order.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    let stemmer = rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English);
    text.unicode_words().filter_map(move |word| {
        let lower = word.to_lowercase();
        let stemmed = stemmer.stem(&lower);
        let term = truncate(&stemmed);
        (!term.is_empty() && !term.contains('\0')).then(|| term.to_owned())
    })
}

/// `term` cut to at most [`MAX_TERM_BYTES`] at a character boundary.
fn truncate(term: &str) -> &str {
    if term.len() <= MAX_TERM_BYTES {
        return term;
    }
    let mut end = MAX_TERM_BYTES;
    while !term.is_char_boundary(end) {
        end -= 1;
    }
    &term[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercased_stemmed_and_counted() {
        let analyzed = analyze("Contracts, contracted; the CONTRACT!");
        assert_eq!(analyzed.length, 4);
        assert_eq!(analyzed.terms, vec![("contract".to_owned(), 3), ("the".to_owned(), 1)]);
    }

    #[test]
    fn punctuation_and_spaces_make_no_terms() {
        assert_eq!(analyze(" -- ... !? ").length, 0);
        assert!(query_terms("").is_empty());
    }

    #[test]
    fn other_scripts_split_into_words() {
        let terms = query_terms("Straße in München, Ελλάδα");
        assert!(terms.contains(&"straße".to_owned()), "{terms:?}");
        assert!(terms.contains(&"münchen".to_owned()), "{terms:?}");
        assert!(terms.contains(&"ελλάδα".to_owned()), "{terms:?}");
    }

    #[test]
    fn query_terms_are_distinct_in_order() {
        assert_eq!(query_terms("running runs ran"), vec!["run".to_owned(), "ran".to_owned()]);
    }

    #[test]
    fn long_words_are_cut_at_a_character_boundary() {
        let word = "é".repeat(100);
        let terms = query_terms(&word);
        assert_eq!(terms.len(), 1);
        assert!(terms[0].len() <= MAX_TERM_BYTES && terms[0].len() >= MAX_TERM_BYTES - 1);
    }
}
