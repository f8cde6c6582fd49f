//! Records as Python objects, and the conversions between Python values and the model's: JSON
//! metadata as `dict`, ids as `str` (a `uuid.UUID` is accepted too), timestamps as aware
//! `datetime`s in UTC (a naive `datetime` is local time, as everywhere in Python).
//!
//! A record object holds the Rust record and converts a field when it is first read
//! ([`Lazy`]): `metadata` becomes a `dict` and `embedding` a numpy array once, and are kept,
//! so `record.metadata["k"] = v` followed by `update_*(record)` stores the change.

use std::str::FromStr;

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

use super::errors::invalid;
use super::vectors;
use crate::error::Error;
use crate::model::{
    Edge, EdgeId, Entity, EntityId, Metadata, Moment, MomentId, NewEdge, NewEntity, NewMoment,
    NewResource, Reached, Record, Resource, ResourceId, ScoredResource, Timestamp,
};

/// The deepest JSON nesting accepted from Python (the filter parser allows 32; metadata gets
/// more room, but a self-referencing dict must not overflow the stack).
const MAX_JSON_DEPTH: usize = 128;

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyResource>()?;
    m.add_class::<PyEntity>()?;
    m.add_class::<PyEdge>()?;
    m.add_class::<PyMoment>()?;
    m.add_class::<PyScoredResource>()?;
    m.add_class::<PyReached>()?;
    Ok(())
}

// ---- JSON ----------------------------------------------------------------------------------

/// A JSON value as the Python value `json.loads` would give.
pub(crate) fn json_to_py<'py>(py: Python<'py>, value: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_bound_py_any(py)?,
            (None, Some(u)) => u.into_bound_py_any(py)?,
            _ => n.as_f64().unwrap_or(f64::NAN).into_bound_py_any(py)?,
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => metadata_to_py(py, map)?.into_any(),
    })
}

/// A JSON object as a `dict`.
pub(crate) fn metadata_to_py<'py>(py: Python<'py>, map: &Metadata) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in map {
        dict.set_item(key, json_to_py(py, value)?)?;
    }
    Ok(dict)
}

/// A Python value (dicts with `str` keys, lists, tuples, `str`, `int`, finite `float`, `bool`,
/// `None`, and numbers that convert to `int` or `float`, such as numpy scalars) as JSON.
pub(crate) fn py_to_json(value: &Bound<'_, PyAny>, what: &'static str) -> PyResult<Value> {
    to_json(value, what, 0)
}

fn to_json(value: &Bound<'_, PyAny>, what: &'static str, depth: usize) -> PyResult<Value> {
    if depth > MAX_JSON_DEPTH {
        return Err(invalid(what, format!("nested deeper than {MAX_JSON_DEPTH}")));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if value.is_instance_of::<PyInt>() {
        if let Ok(i) = value.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = value.extract::<u64>() {
            return Ok(Value::from(u));
        }
        return Err(invalid(what, "an integer beyond 64 bits"));
    }
    if value.is_instance_of::<PyFloat>() {
        return float(value.extract::<f64>()?, what);
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = Metadata::new();
        for (key, item) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Err(invalid(what, format!("a key that is not a str: {key}")));
            };
            map.insert(key.to_cow()?.into_owned(), to_json(&item, what, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items: PyResult<Vec<Value>> =
            value.try_iter()?.map(|item| to_json(&item?, what, depth + 1)).collect();
        return Ok(Value::Array(items?));
    }
    // numpy scalars and arrays: their Python equivalents (`np.bool_` becomes `bool`, not 1.0).
    if value.hasattr("tolist")? {
        let native = value.call_method0("tolist")?;
        if !native.is(value) {
            return to_json(&native, what, depth + 1);
        }
    }
    // Numbers of other types (decimals, fractions): integers first, so 3 stays 3.
    if value.hasattr("__index__")?
        && let Ok(i) = value.extract::<i64>()
    {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.extract::<f64>() {
        return float(f, what);
    }
    Err(invalid(what, format!("a value JSON cannot hold: {}", value.get_type().name()?)))
}

fn float(f: f64, what: &'static str) -> PyResult<Value> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| invalid(what, format!("{f} is not a finite number")))
}

/// Metadata from an optional `dict` (`None` is empty).
pub(crate) fn metadata_arg(
    value: Option<&Bound<'_, PyAny>>,
    what: &'static str,
) -> PyResult<Metadata> {
    match value {
        None => Ok(Metadata::new()),
        Some(value) if value.is_none() => Ok(Metadata::new()),
        Some(value) => match py_to_json(value, what)? {
            Value::Object(map) => Ok(map),
            _ => Err(invalid(what, "a dict was expected")),
        },
    }
}

// ---- ids and times -------------------------------------------------------------------------

/// A record id from a `str` or anything whose `str()` is a UUID (such as `uuid.UUID`).
pub(crate) fn id_arg<T: FromStr<Err = Error>>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    let parsed = match value.cast::<PyString>() {
        Ok(text) => text.to_cow()?.parse::<T>(),
        Err(_) => value.str()?.to_cow()?.parse::<T>(),
    };
    Ok(parsed?)
}

struct Clock {
    datetime: Py<PyAny>,
    epoch: Py<PyAny>,
    timedelta: Py<PyAny>,
    one_microsecond: Py<PyAny>,
}

fn clock(py: Python<'_>) -> PyResult<&Clock> {
    static CLOCK: PyOnceLock<Clock> = PyOnceLock::new();
    CLOCK.get_or_try_init(py, || {
        let module = py.import("datetime")?;
        let datetime = module.getattr("datetime")?;
        let timedelta = module.getattr("timedelta")?;
        let utc = module.getattr("timezone")?.getattr("utc")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", utc)?;
        let epoch = datetime.call((1970, 1, 1), Some(&kwargs))?;
        let one = PyDict::new(py);
        one.set_item("microseconds", 1)?;
        let one_microsecond = timedelta.call((), Some(&one))?;
        Ok::<_, PyErr>(Clock {
            datetime: datetime.unbind(),
            epoch: epoch.unbind(),
            timedelta: timedelta.unbind(),
            one_microsecond: one_microsecond.unbind(),
        })
    })
}

/// A timestamp as an aware `datetime` in UTC.
pub(crate) fn to_datetime(py: Python<'_>, at: Timestamp) -> PyResult<Bound<'_, PyAny>> {
    let clock = clock(py)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("microseconds", at.as_micros())?;
    let delta = clock.timedelta.bind(py).call((), Some(&kwargs))?;
    clock.epoch.bind(py).add(delta)
}

/// A `datetime` as a timestamp, to the microsecond; a naive one is taken as local time.
pub(crate) fn timestamp_arg(value: &Bound<'_, PyAny>, what: &'static str) -> PyResult<Timestamp> {
    let py = value.py();
    let clock = clock(py)?;
    if !value.is_instance(clock.datetime.bind(py))? {
        return Err(invalid(
            what,
            format!("a datetime.datetime was expected, not {}", value.get_type().name()?),
        ));
    }
    let aware = if value.getattr("tzinfo")?.is_none() {
        value.call_method0("astimezone")?
    } else {
        value.clone()
    };
    let micros = aware.sub(clock.epoch.bind(py))?.floor_div(clock.one_microsecond.bind(py))?;
    Ok(Timestamp::from_micros(micros.extract::<i64>()?))
}

/// An optional `datetime` (`None` is an open bound).
pub(crate) fn optional_timestamp(
    value: Option<&Bound<'_, PyAny>>,
    what: &'static str,
) -> PyResult<Option<Timestamp>> {
    match value {
        Some(value) if !value.is_none() => timestamp_arg(value, what).map(Some),
        _ => Ok(None),
    }
}

// ---- lazily converted fields ---------------------------------------------------------------

/// A field kept as Rust until Python reads it, then kept as the Python object it became.
enum Lazy<R> {
    Rust(R),
    Python(Py<PyAny>),
}

impl Lazy<Metadata> {
    fn get(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Lazy::Rust(map) = self {
            *self = Lazy::Python(metadata_to_py(py, map)?.into_any().unbind());
        }
        match self {
            Lazy::Python(object) => Ok(object.clone_ref(py)),
            Lazy::Rust(_) => Err(invalid("metadata", "unreachable state")),
        }
    }

    fn set(&mut self, value: Bound<'_, PyAny>, what: &'static str) -> PyResult<()> {
        metadata_arg(Some(&value), what)?;
        *self = Lazy::Python(value.unbind());
        Ok(())
    }

    fn to_rust(&self, py: Python<'_>, what: &'static str) -> PyResult<Metadata> {
        match self {
            Lazy::Rust(map) => Ok(map.clone()),
            Lazy::Python(object) => metadata_arg(Some(object.bind(py)), what),
        }
    }
}

impl Lazy<Option<Vec<f32>>> {
    fn get(&mut self, py: Python<'_>) -> Py<PyAny> {
        if let Lazy::Rust(vector) = self {
            let object = match vector.take() {
                Some(vector) => vectors::to_array(py, vector).into_any().unbind(),
                None => py.None(),
            };
            *self = Lazy::Python(object);
        }
        match self {
            Lazy::Python(object) => object.clone_ref(py),
            Lazy::Rust(_) => py.None(),
        }
    }

    fn to_rust(&self, py: Python<'_>) -> PyResult<Option<Vec<f32>>> {
        match self {
            Lazy::Rust(vector) => Ok(vector.clone()),
            Lazy::Python(object) => vectors::optional_vector(Some(object.bind(py))),
        }
    }
}

// ---- record classes ------------------------------------------------------------------------

/// The `#[pymethods]` of a record class: its `id`, its JSON field `$json` (read as a `dict`,
/// set from one, checked when set), the timestamp getters in `stamps`, then `$extra`, the
/// methods only that class has. pyo3 takes one `#[pymethods]` block per class (without its
/// `multiple-pymethods` feature), so the getters every record has come from here.
macro_rules! record_class_methods {
    (
        $class:ident,
        json: $json:ident, $set_json:ident, $json_doc:literal,
        stamps: [$($stamp:ident: $stamp_doc:literal),* $(,)?],
        { $($extra:tt)* }
    ) => {
        #[pymethods]
        impl $class {
            /// Its id.
            #[getter]
            fn id(&self) -> String {
                self.id.to_string()
            }

            #[doc = $json_doc]
            #[getter]
            fn $json(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
                self.$json.get(py)
            }

            #[setter]
            fn $set_json(&mut self, value: Bound<'_, PyAny>) -> PyResult<()> {
                self.$json.set(value, stringify!($json))
            }

            $(
                #[doc = $stamp_doc]
                #[getter]
                fn $stamp<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                    to_datetime(py, self.$stamp)
                }
            )*

            $($extra)*
        }
    };
}

/// A piece of content an agent remembers, with metadata and an optional embedding.
#[pyclass(name = "Resource", module = "percolate_core")]
pub(crate) struct PyResource {
    id: ResourceId,
    /// Where it came from, if anywhere.
    #[pyo3(get, set)]
    uri: Option<String>,
    /// Its text.
    #[pyo3(get, set)]
    content: String,
    metadata: Lazy<Metadata>,
    embedding: Lazy<Option<Vec<f32>>>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<Resource> for PyResource {
    fn from(r: Resource) -> Self {
        Self {
            id: r.id,
            uri: r.uri,
            content: r.content,
            metadata: Lazy::Rust(r.metadata),
            embedding: Lazy::Rust(r.embedding),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl PyResource {
    /// The record as the engine takes it.
    pub(crate) fn to_rust(&self, py: Python<'_>) -> PyResult<Resource> {
        Ok(Resource {
            id: self.id,
            uri: self.uri.clone(),
            content: self.content.clone(),
            metadata: self.metadata.to_rust(py, "metadata")?,
            embedding: self.embedding.to_rust(py)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

record_class_methods!(
    PyResource,
    json: metadata, set_metadata,
        "Arbitrary JSON fields, as a dict; vector search can filter on them.",
    stamps: [
        created_at: "When it was created (UTC).",
        updated_at: "When it was last changed (UTC).",
    ],
    {
        /// Its embedding as a float32 numpy array, or None.
        #[getter]
        fn embedding(&mut self, py: Python<'_>) -> Py<PyAny> {
            self.embedding.get(py)
        }

        #[setter]
        fn set_embedding(&mut self, value: Bound<'_, PyAny>) -> PyResult<()> {
            // Checked now, so a bad value fails where it was set.
            vectors::optional_vector(Some(&value))?;
            self.embedding = Lazy::Python(value.unbind());
            Ok(())
        }

        fn __repr__(&self) -> String {
            format!("Resource(id='{}', content={:?})", self.id, shorten(&self.content))
        }
    }
);

/// A typed node of the memory graph.
#[pyclass(name = "Entity", module = "percolate_core")]
pub(crate) struct PyEntity {
    id: EntityId,
    /// Its name; `search_entities` searches it.
    #[pyo3(get, set)]
    name: String,
    /// Its type, e.g. "person".
    #[pyo3(get, set)]
    kind: String,
    properties: Lazy<Metadata>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl From<Entity> for PyEntity {
    fn from(e: Entity) -> Self {
        Self {
            id: e.id,
            name: e.name,
            kind: e.kind,
            properties: Lazy::Rust(e.properties),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

impl PyEntity {
    /// The record as the engine takes it.
    pub(crate) fn to_rust(&self, py: Python<'_>) -> PyResult<Entity> {
        Ok(Entity {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind.clone(),
            properties: self.properties.to_rust(py, "properties")?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

record_class_methods!(
    PyEntity,
    json: properties, set_properties, "Arbitrary JSON fields, as a dict.",
    stamps: [
        created_at: "When it was created (UTC).",
        updated_at: "When it was last changed (UTC).",
    ],
    {
        fn __repr__(&self) -> String {
            format!("Entity(id='{}', name={:?}, kind={:?})", self.id, self.name, self.kind)
        }
    }
);

/// A directed, typed edge between two entities of the same tenant.
#[pyclass(name = "Edge", module = "percolate_core")]
pub(crate) struct PyEdge {
    id: EdgeId,
    from: EntityId,
    to: EntityId,
    /// Its type, e.g. "works_at".
    #[pyo3(get)]
    relation: String,
    /// Its weight.
    #[pyo3(get)]
    weight: f32,
    properties: Lazy<Metadata>,
    created_at: Timestamp,
}

impl From<Edge> for PyEdge {
    fn from(e: Edge) -> Self {
        Self {
            id: e.id,
            from: e.from,
            to: e.to,
            relation: e.relation,
            weight: e.weight,
            properties: Lazy::Rust(e.properties),
            created_at: e.created_at,
        }
    }
}

#[pymethods]
impl PyEdge {
    /// Its id.
    #[getter]
    fn id(&self) -> String {
        self.id.to_string()
    }

    /// The id of the entity it leaves.
    #[getter]
    #[allow(clippy::wrong_self_convention)] // a field named as the Rust record's `from`
    fn from_id(&self) -> String {
        self.from.to_string()
    }

    /// The id of the entity it reaches.
    #[getter]
    fn to_id(&self) -> String {
        self.to.to_string()
    }

    /// Arbitrary JSON fields, as a dict.
    #[getter]
    fn properties(&mut self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.properties.get(py)
    }

    /// When it was created (UTC).
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_datetime(py, self.created_at)
    }

    fn __repr__(&self) -> String {
        format!("Edge(id='{}', {} -{}-> {})", self.id, self.from, self.relation, self.to)
    }
}

/// A time-ranged event that involves entities.
#[pyclass(name = "Moment", module = "percolate_core")]
pub(crate) struct PyMoment {
    id: MomentId,
    start: Timestamp,
    end: Timestamp,
    /// Its type, e.g. "meeting".
    #[pyo3(get, set)]
    kind: String,
    /// Its text.
    #[pyo3(get, set)]
    content: String,
    entities: Vec<EntityId>,
    metadata: Lazy<Metadata>,
}

impl From<Moment> for PyMoment {
    fn from(m: Moment) -> Self {
        Self {
            id: m.id,
            start: m.start,
            end: m.end,
            kind: m.kind,
            content: m.content,
            entities: m.entities.into_vec(),
            metadata: Lazy::Rust(m.metadata),
        }
    }
}

impl PyMoment {
    /// The record as the engine takes it.
    pub(crate) fn to_rust(&self, py: Python<'_>) -> PyResult<Moment> {
        Ok(Moment {
            id: self.id,
            start: self.start,
            end: self.end,
            kind: self.kind.clone(),
            content: self.content.clone(),
            entities: self.entities.iter().copied().collect(),
            metadata: self.metadata.to_rust(py, "metadata")?,
        })
    }
}

record_class_methods!(
    PyMoment,
    json: metadata, set_metadata, "Arbitrary JSON fields, as a dict.",
    stamps: [],
    {
        /// When it started (UTC).
        #[getter]
        fn start<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            to_datetime(py, self.start)
        }

        #[setter]
        fn set_start(&mut self, value: Bound<'_, PyAny>) -> PyResult<()> {
            self.start = timestamp_arg(&value, "start")?;
            Ok(())
        }

        /// When it ended (UTC).
        #[getter]
        fn end<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            to_datetime(py, self.end)
        }

        #[setter]
        fn set_end(&mut self, value: Bound<'_, PyAny>) -> PyResult<()> {
            self.end = timestamp_arg(&value, "end")?;
            Ok(())
        }

        /// The ids of the entities it involves.
        #[getter]
        fn entities(&self) -> Vec<String> {
            self.entities.iter().map(ToString::to_string).collect()
        }

        #[setter]
        fn set_entities(&mut self, value: Bound<'_, PyAny>) -> PyResult<()> {
            self.entities = entity_ids(&value)?;
            Ok(())
        }

        fn __repr__(&self) -> String {
            format!(
                "Moment(id='{}', kind={:?}, start={}, end={})",
                self.id, self.kind, self.start, self.end
            )
        }
    }
);

/// Entity ids from an iterable of ids.
pub(crate) fn entity_ids(value: &Bound<'_, PyAny>) -> PyResult<Vec<EntityId>> {
    if value.is_instance_of::<PyString>() {
        return Err(invalid("entities", "a str where a list of ids was expected"));
    }
    value.try_iter()?.map(|item| id_arg::<EntityId>(&item?)).collect()
}

// ---- new records from call arguments -------------------------------------------------------
// The `create_*` methods of tenants and transactions take the same arguments; these build the
// engine's new record from them, so both check them the same way.

/// The resource `create_resource(content, embedding=, metadata=, uri=)` asks for.
pub(crate) fn new_resource(
    content: String,
    embedding: Option<&Bound<'_, PyAny>>,
    metadata: Option<&Bound<'_, PyAny>>,
    uri: Option<String>,
) -> PyResult<NewResource> {
    Ok(NewResource {
        uri,
        content,
        metadata: metadata_arg(metadata, "metadata")?,
        embedding: vectors::optional_vector(embedding)?,
    })
}

/// The entity `create_entity(name, kind, properties=)` asks for.
pub(crate) fn new_entity(
    name: String,
    kind: String,
    properties: Option<&Bound<'_, PyAny>>,
) -> PyResult<NewEntity> {
    Ok(NewEntity { name, kind, properties: metadata_arg(properties, "properties")? })
}

/// The edge `create_edge(from_id, to_id, relation, weight=, properties=)` asks for.
pub(crate) fn new_edge(
    from_id: &Bound<'_, PyAny>,
    to_id: &Bound<'_, PyAny>,
    relation: String,
    weight: f32,
    properties: Option<&Bound<'_, PyAny>>,
) -> PyResult<NewEdge> {
    Ok(NewEdge {
        from: id_arg(from_id)?,
        to: id_arg(to_id)?,
        relation,
        weight,
        properties: metadata_arg(properties, "properties")?,
    })
}

/// The moment `create_moment(start, end, kind, content=, entities=, metadata=)` asks for.
pub(crate) fn new_moment(
    start: &Bound<'_, PyAny>,
    end: &Bound<'_, PyAny>,
    kind: String,
    content: String,
    entities: Option<&Bound<'_, PyAny>>,
    metadata: Option<&Bound<'_, PyAny>>,
) -> PyResult<NewMoment> {
    Ok(NewMoment {
        start: timestamp_arg(start, "start")?,
        end: timestamp_arg(end, "end")?,
        kind,
        content,
        entities: match entities {
            Some(value) if !value.is_none() => entity_ids(value)?.into_iter().collect(),
            _ => Default::default(),
        },
        metadata: metadata_arg(metadata, "metadata")?,
    })
}

/// A vector search hit: a resource and its distance to the query (smaller is nearer).
#[pyclass(name = "ScoredResource", module = "percolate_core", frozen)]
pub(crate) struct PyScoredResource {
    /// The resource, embedding included.
    #[pyo3(get)]
    resource: Py<PyResource>,
    /// Its distance under the tenant's metric.
    #[pyo3(get)]
    distance: f32,
}

#[pymethods]
impl PyScoredResource {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!("ScoredResource(id='{}', distance={})", self.resource.borrow(py).id, self.distance)
    }
}

/// An entity reached by a traversal, with the fewest hops it took.
#[pyclass(name = "Reached", module = "percolate_core", frozen)]
pub(crate) struct PyReached {
    entity: EntityId,
    /// Hops from the start.
    #[pyo3(get)]
    depth: u32,
}

#[pymethods]
impl PyReached {
    /// The id of the entity reached.
    #[getter]
    fn entity_id(&self) -> String {
        self.entity.to_string()
    }

    fn __repr__(&self) -> String {
        format!("Reached(entity_id='{}', depth={})", self.entity, self.depth)
    }
}

impl From<Reached> for PyReached {
    fn from(r: Reached) -> Self {
        Self { entity: r.entity, depth: r.depth }
    }
}

fn shorten(text: &str) -> &str {
    match text.char_indices().nth(40) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

// ---- results that need the GIL to build ----------------------------------------------------

/// Implements `IntoPyObject` for `$wrapper`, a tuple struct around a `Vec`: a Python list
/// with one object per item, built by `$convert` (a `PyResult<Option<_>>`; `None` leaves the
/// item out) once the GIL is held.
macro_rules! into_py_list {
    ($wrapper:ty, |$py:ident, $item:ident| $convert:expr) => {
        impl<'py> pyo3::IntoPyObject<'py> for $wrapper {
            type Target = pyo3::types::PyList;
            type Output = pyo3::Bound<'py, pyo3::types::PyList>;
            type Error = pyo3::PyErr;

            fn into_pyobject(self, $py: pyo3::Python<'py>) -> pyo3::PyResult<Self::Output> {
                let list = pyo3::types::PyList::empty($py);
                for $item in self.0 {
                    if let Some(object) = $convert? {
                        list.append(object)?;
                    }
                }
                Ok(list)
            }
        }
    };
}
pub(crate) use into_py_list;

/// Search hits, built into `ScoredResource` objects once the GIL is held.
pub(crate) struct Hits(pub(crate) Vec<ScoredResource>);

into_py_list!(Hits, |py, hit| {
    let resource = Py::new(py, PyResource::from(hit.resource))?;
    PyResult::Ok(Some(PyScoredResource { resource, distance: hit.distance }))
});

/// Records of any kind (a scan page), each as its own class.
pub(crate) struct Records(pub(crate) Vec<Record>);

into_py_list!(Records, |py, record| PyResult::Ok(Some(record_object(py, record)?)));

/// A record as the object of its own class.
pub(crate) fn record_object(py: Python<'_>, record: Record) -> PyResult<Bound<'_, PyAny>> {
    Ok(match record {
        Record::Resource(r) => Bound::new(py, PyResource::from(r))?.into_any(),
        Record::Entity(e) => Bound::new(py, PyEntity::from(e))?.into_any(),
        Record::Edge(e) => Bound::new(py, PyEdge::from(e))?.into_any(),
        Record::Moment(m) => Bound::new(py, PyMoment::from(m))?.into_any(),
    })
}

/// A JSON value (an export or import summary), as `json.loads` would give it.
pub(crate) struct Json(pub(crate) Value);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, &self.0)
    }
}

/// `None`, for operations that return nothing (`()` would become an empty tuple).
pub(crate) struct Nothing;

impl<'py> IntoPyObject<'py> for Nothing {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        Ok(py.None().into_bound(py))
    }
}
