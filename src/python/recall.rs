//! Full-text and fused retrieval results as Python objects: `TextHit` (a resource or moment
//! and its BM25 score) and `RecallHit` (a resource, its fused score and its rank in each
//! signal), and the argument conversions of `text_search` and `recall`. The queries run in
//! the engine; this module only converts.

use pyo3::prelude::*;

use super::records::{PyResource, into_py_list, optional_timestamp, record_object};
use crate::model::{RecallHit, TextHit, TimeRange};

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTextHit>()?;
    m.add_class::<PyRecallHit>()?;
    Ok(())
}

/// The time window of `since` and `until` (``datetime``s, ``None`` open); `None` when both are.
pub(crate) fn window_arg(
    since: Option<&Bound<'_, PyAny>>,
    until: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<TimeRange>> {
    let range = TimeRange {
        start: optional_timestamp(since, "since")?,
        end: optional_timestamp(until, "until")?,
    };
    Ok((range.start.is_some() || range.end.is_some()).then_some(range))
}

/// A full-text hit: a resource or a moment and its BM25 score (larger is better).
#[pyclass(name = "TextHit", module = "percolate_core", frozen)]
pub(crate) struct PyTextHit {
    /// The record: a ``Resource`` or a ``Moment``.
    #[pyo3(get)]
    record: Py<PyAny>,
    /// Its BM25 score.
    #[pyo3(get)]
    score: f64,
}

#[pymethods]
impl PyTextHit {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let id = self.record.bind(py).getattr("id")?;
        Ok(format!("TextHit(id='{id}', score={})", self.score))
    }
}

/// A recall hit: a resource, its reciprocal rank fusion score (larger is better) and its rank
/// (from 1) in each signal that found it, ``None`` in one that did not.
#[pyclass(name = "RecallHit", module = "percolate_core", frozen)]
pub(crate) struct PyRecallHit {
    /// The resource, embedding included.
    #[pyo3(get)]
    resource: Py<PyResource>,
    /// Its fused score.
    #[pyo3(get)]
    score: f64,
    /// Its rank in the full-text list.
    #[pyo3(get)]
    text_rank: Option<usize>,
    /// Its rank in the vector list.
    #[pyo3(get)]
    vector_rank: Option<usize>,
}

#[pymethods]
impl PyRecallHit {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let id = self.resource.bind(py).getattr("id")?;
        Ok(format!(
            "RecallHit(id='{id}', score={}, text_rank={:?}, vector_rank={:?})",
            self.score, self.text_rank, self.vector_rank
        ))
    }
}

/// Text hits, built into `TextHit` objects once the GIL is held.
pub(crate) struct TextHits(pub(crate) Vec<TextHit>);

into_py_list!(TextHits, |py, hit| {
    let record = record_object(py, hit.record)?.unbind();
    PyResult::Ok(Some(PyTextHit { record, score: hit.score }))
});

/// Recall hits, built into `RecallHit` objects once the GIL is held.
pub(crate) struct RecallHits(pub(crate) Vec<RecallHit>);

into_py_list!(RecallHits, |py, hit| {
    PyResult::Ok(Some(PyRecallHit {
        resource: Py::new(py, PyResource::from(hit.resource))?,
        score: hit.score,
        text_rank: hit.ranks.text,
        vector_rank: hit.ranks.vector,
    }))
});
