//! The engine's retrieval by text: [`TenantHandle::text_search`] validates a full-text query
//! and hands it to the provider. It owns only the checks of text queries; ranking is in
//! [`crate::text`] and storage in the providers.

#[allow(unused_imports)]
use super::*;
use crate::model::{Filter, MAX_TEXT_QUERY_BYTES, MAX_TEXT_QUERY_TERMS, TextHit, TextQuery};

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
