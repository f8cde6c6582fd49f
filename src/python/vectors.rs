//! Embeddings in and out: numpy arrays or sequences of numbers in, numpy `float32` arrays out.
//!
//! - A C-contiguous `float32` array is read straight from its buffer (one `memcpy` into the
//!   `Vec` the engine takes ownership of); any other array (another dtype, a strided view) is
//!   converted by numpy first; a list or tuple is read number by number.
//! - A batch is a 2-D array (one row per record) or a sequence of vectors.
//! - Arrays handed back own the engine's `Vec`: no copy.

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

use super::errors::invalid;

/// `numpy.ascontiguousarray`, looked up once.
fn ascontiguousarray(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static FUNCTION: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    FUNCTION
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("numpy")?.getattr("ascontiguousarray")?.unbind())
        })
        .map(|f| f.bind(py))
}

/// `value` as a C-contiguous float32 numpy array, converting only when it is not one already.
fn as_float32_array<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = value.py();
    ascontiguousarray(py)?
        .call1((value, "float32"))
        .map_err(|e| invalid("embedding", format!("not convertible to float32: {e}")))
}

/// One vector from a 1-D array or a sequence of numbers.
pub(crate) fn vector(value: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    if let Ok(array) = value.cast::<PyArray1<f32>>() {
        let array = array.readonly();
        return Ok(match array.as_slice() {
            Ok(slice) => slice.to_vec(),
            Err(_) => array.as_array().iter().copied().collect(),
        });
    }
    if let Ok(array) = value.cast::<PyUntypedArray>() {
        if array.ndim() != 1 {
            return Err(invalid(
                "embedding",
                format!("a {}-D array where a 1-D array was expected", array.ndim()),
            ));
        }
        return vector(&as_float32_array(value)?);
    }
    if value.is_instance_of::<PyString>() {
        return Err(invalid("embedding", "a string where numbers were expected"));
    }
    value.extract::<Vec<f32>>().map_err(|e| invalid("embedding", e))
}

/// An optional vector (`None` for no embedding).
pub(crate) fn optional_vector(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<f32>>> {
    match value {
        Some(value) if !value.is_none() => vector(value).map(Some),
        _ => Ok(None),
    }
}

/// The rows of a batch: a 2-D array, or a sequence of 1-D arrays or sequences.
pub(crate) fn rows(value: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<f32>>> {
    if let Ok(array) = value.cast::<PyArray2<f32>>() {
        let array = array.readonly();
        let width = array.shape()[1];
        return Ok(match array.as_slice() {
            Ok(flat) if width > 0 => flat.chunks_exact(width).map(<[f32]>::to_vec).collect(),
            _ => array.as_array().rows().into_iter().map(|row| row.to_vec()).collect(),
        });
    }
    if let Ok(array) = value.cast::<PyUntypedArray>() {
        if array.ndim() != 2 {
            return Err(invalid(
                "embeddings",
                format!("a {}-D array where a 2-D array was expected", array.ndim()),
            ));
        }
        return rows(&as_float32_array(value)?);
    }
    if value.is_instance_of::<PyString>() {
        return Err(invalid("embeddings", "a string where vectors were expected"));
    }
    value.try_iter()?.map(|row| vector(&row?)).collect()
}

/// A numpy array that owns `vector`.
pub(crate) fn to_array(py: Python<'_>, vector: Vec<f32>) -> Bound<'_, PyArray1<f32>> {
    PyArray1::from_vec(py, vector)
}
