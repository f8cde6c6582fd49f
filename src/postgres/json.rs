//! JSON documents as percolate writes them to `jsonb` columns.
//!
//! `jsonb` stores a number as `numeric`. That keeps the digits and the decimal scale, but not
//! the notation the number came in. `serde_json` writes a float of 10^16 or more in exponent
//! form (`1.8643341586470144e18`), and `jsonb` hands it back as the integer
//! `1864334158647014400`, which `serde_json` reads as an integer. A float with an integral
//! value is therefore written here with a fraction (`1864334158647014400.0`): `jsonb` keeps that
//! scale, and the value reads back as the float stored. The PostgreSQL model test found this
//! (`tests/model_postgres.proptest-regressions`).

use std::error::Error as StdError;
use std::io;

use bytes::BytesMut;
use serde::Serialize;
use tokio_postgres::types::{IsNull, ToSql, Type, accepts, to_sql_checked};

/// A document written to a `json` or `jsonb` parameter, floats kept floats (see the module
/// documentation). Reads use `tokio_postgres`'s own `Json`.
#[derive(Debug)]
pub(super) struct StoredJson<'a, T>(pub(super) &'a T);

impl<T: Serialize + std::fmt::Debug> ToSql for StoredJson<'_, T> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        if *ty == Type::JSONB {
            // The version of `jsonb`'s binary input format.
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(&to_text(self.0)?);
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}

/// `value` as JSON text, each float with an integral value written with a fraction.
fn to_text<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut text = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(&mut text, FloatsWithFraction))?;
    Ok(text)
}

/// `serde_json`'s compact format, except for floats with an integral value.
struct FloatsWithFraction;

impl serde_json::ser::Formatter for FloatsWithFraction {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if value.is_finite() && value.fract() == 0.0 {
            // Every digit of the float's exact value, then `.0`: it reads back as this float.
            write!(writer, "{value:.1}")
        } else {
            serde_json::ser::CompactFormatter.write_f64(writer, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn integral_floats_keep_a_fraction_and_read_back_as_the_same_floats() {
        let document = json!({
            "large": 1.864_334_158_647_014_4e18,
            "huge": -1e300,
            "two": 2.0,
            "half": 2.5,
            "tiny": 1.5e-7,
            "int": 7,
            "big_int": u64::MAX,
            "nested": [1e16, {"x": -0.0}],
        });
        let text = String::from_utf8(to_text(&document).unwrap()).unwrap();
        assert!(text.contains("\"large\":1864334158647014400.0"), "{text}");
        assert!(text.contains("\"two\":2.0"), "{text}");
        assert!(text.contains("\"half\":2.5"), "{text}");
        assert!(text.contains("\"int\":7,"), "{text}");
        assert!(text.contains("[10000000000000000.0,"), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, document);
        for key in ["large", "huge", "two", "half", "tiny"] {
            assert!(back[key].is_f64(), "{key}: {}", back[key]);
        }
        assert!(back["int"].is_u64() && back["big_int"].is_u64());
    }
}
