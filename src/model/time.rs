//! Timestamps and time ranges.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A point in time: microseconds since the Unix epoch, UTC.
///
/// Microseconds are what PostgreSQL's `timestamptz` stores, so a timestamp survives a round trip
/// through either provider unchanged. In human-readable formats (JSON) it is an RFC 3339 string;
/// in binary formats, an `i64`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest representable time.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable time.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// Now, truncated to microseconds.
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_micros())
    }

    /// The timestamp `micros` microseconds after the epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Parses an RFC 3339 timestamp such as `2026-11-26T13:46:00Z`.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `s` is not RFC 3339.
    pub fn parse(s: &str) -> Result<Self> {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| Self(t.timestamp_micros()))
            .map_err(|e| Error::invalid("timestamp", format!("{s:?}: {e}")))
    }

    fn to_rfc3339(self) -> Option<String> {
        chrono::DateTime::from_timestamp_micros(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Some(s) => f.write_str(&s),
            None => write!(f, "{}us", self.0),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match self.to_rfc3339() {
                Some(text) => s.serialize_str(&text),
                None => s.serialize_i64(self.0),
            }
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct TimestampVisitor;
        impl Visitor<'_> for TimestampVisitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp or microseconds since the epoch")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Timestamp, E> {
                Timestamp::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Timestamp, E> {
                i64::try_from(v).map(Timestamp).map_err(E::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(TimestampVisitor)
        } else {
            d.deserialize_i64(TimestampVisitor)
        }
    }
}

/// A closed time range `[start, end]`; a missing bound is open.
///
/// A moment `[s, e]` overlaps the range when `s <= end` and `e >= start`: ranges that only touch
/// still overlap, so an instant moment at exactly `end` is included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// The earliest time of interest, or unbounded.
    pub start: Option<Timestamp>,
    /// The latest time of interest, or unbounded.
    pub end: Option<Timestamp>,
}

impl TimeRange {
    /// The range `[start, end]`.
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        Self { start: Some(start), end: Some(end) }
    }

    /// Every moment.
    pub fn all() -> Self {
        Self::default()
    }

    /// The lower bound, `Timestamp::MIN` when open.
    pub fn start_or_min(&self) -> Timestamp {
        self.start.unwrap_or(Timestamp::MIN)
    }

    /// The upper bound, `Timestamp::MAX` when open.
    pub fn end_or_max(&self) -> Timestamp {
        self.end.unwrap_or(Timestamp::MAX)
    }

    /// Whether the closed interval `[start, end]` overlaps this range.
    pub fn overlaps(&self, start: Timestamp, end: Timestamp) -> bool {
        start <= self.end_or_max() && end >= self.start_or_min()
    }
}
