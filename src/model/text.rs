//! The one tokenizer behind entity name search, shared by every provider so they agree.

/// The longest word kept, in bytes; longer words are cut at a character boundary.
pub const MAX_WORD_LEN: usize = 64;

/// Splits `text` into lowercase words of letters and digits, each at most [`MAX_WORD_LEN`]
/// bytes, without duplicates, in order of first appearance.
pub fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut word = String::with_capacity(raw.len());
        for c in raw.chars().flat_map(char::to_lowercase) {
            if word.len() + c.len_utf8() > MAX_WORD_LEN {
                break;
            }
            word.push(c);
        }
        if !word.is_empty() && !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// Whether every query word is a prefix of some word of `name_words`.
pub fn words_match(name_words: &[String], query_words: &[String]) -> bool {
    query_words.iter().all(|q| name_words.iter().any(|w| w.starts_with(q.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lowercase_alphanumeric_and_unique() {
        assert_eq!(words("Ada Lovelace, ada!"), vec!["ada", "lovelace"]);
        assert_eq!(words("  --  "), Vec::<String>::new());
        assert!(words_match(&words("Ada Lovelace"), &words("love ad")));
        assert!(!words_match(&words("Ada Lovelace"), &words("lovelaces")));
    }
}
