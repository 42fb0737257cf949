//! [`Value`] to and from JSON, for the command line and logs.
//!
//! JSON has no bytes, tuples, big ints or NaN, so those are one-key objects:
//! `{"$bytes": "hex"}`, `{"$tuple": [...]}`, `{"$int": "decimal"}`,
//! `{"$float": "nan" | "inf" | "-inf"}`, `{"$mpz": "decimal"}`,
//! `{"$ndarray": {"shape": [...], "values": ...}}`, and
//! `{"$type": name, "data": ...}` for foreign tags. Other objects are dicts;
//! their key order is the JSON library's (sorted), not the input's.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Number, Value as Json};

use crate::int::Int;
use crate::value::Value;

/// A JSON value that does not describe a [`Value`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// `{"$int": ...}` or `{"$mpz": ...}` around a string that is no integer.
    #[error("JSON does not describe a value: {0}")]
    Int(#[from] crate::int::ParseIntError),
    /// `{"$float": ...}` with a word other than nan, inf or -inf.
    #[error("JSON does not describe a value: $float {0:?}: expected nan, inf or -inf")]
    Float(String),
    /// `{"$bytes": ...}` that is not hex.
    #[error("JSON does not describe a value: $bytes must be an even number of hex digits ({0})")]
    Bytes(#[from] hex::FromHexError),
    /// `{"$ndarray": ...}` without a shape of non-negative integers.
    #[error("JSON does not describe a value: $ndarray needs a shape of non-negative ints")]
    NdArrayShape,
}

/// Converts to JSON.
pub fn to_json(v: &Value) -> Json {
    // Recurses once per level: the arms that build objects with `json!`
    // live in their own functions, so that this frame stays small.
    match v {
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Ints(v) => Json::Array(v.iter().map(Json::from).collect()),
        Value::Floats(v) => Json::Array(v.iter().map(|f| float_json(*f)).collect()),
        Value::Dict(pairs) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Tuple(items) => tuple_json(items),
        Value::NdArray { shape, values } => ndarray_json(shape, values),
        Value::Foreign { type_name, data } => foreign_json(type_name, data),
        scalar => scalar_json(scalar),
    }
}

#[inline(never)]
fn tuple_json(items: &[Value]) -> Json {
    json!({ "$tuple": items.iter().map(to_json).collect::<Vec<_>>() })
}

#[inline(never)]
fn ndarray_json(shape: &[u64], values: &Value) -> Json {
    json!({ "$ndarray": { "shape": shape, "values": to_json(values) } })
}

#[inline(never)]
fn foreign_json(type_name: &str, data: &Value) -> Json {
    json!({ "$type": type_name, "data": to_json(data) })
}

#[inline(never)]
fn scalar_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => int_json(i, "$int"),
        Value::Float(f) => float_json(*f),
        Value::Str(s) => Json::String(s.clone()),
        Value::Bytes(b) => {
            json!({ "$bytes": hex::encode(b) })
        }
        Value::Mpz(i) => json!({ "$mpz": i.to_string() }),
        // Containers are handled by `to_json`.
        Value::List(_)
        | Value::Ints(_)
        | Value::Floats(_)
        | Value::Dict(_)
        | Value::Tuple(_)
        | Value::NdArray { .. }
        | Value::Foreign { .. } => Json::Null,
    }
}

fn float_json(f: f64) -> Json {
    match non_finite(f) {
        None => Number::from_f64(f).map_or(Json::Null, Json::Number),
        Some(name) => json!({ "$float": name }),
    }
}

/// The `$float` name of a NaN or an infinity; `None` for a finite float.
fn non_finite(f: f64) -> Option<&'static str> {
    if f.is_finite() {
        None
    } else if f.is_nan() {
        Some("nan")
    } else if f > 0.0 {
        Some("inf")
    } else {
        Some("-inf")
    }
}

fn int_json(i: &Int, tag: &str) -> Json {
    if let Some(v) = i.as_i64() {
        Json::from(v)
    } else if let Some(v) = i.as_u64() {
        Json::from(v)
    } else {
        json!({ tag: i.to_string() })
    }
}

/// Writes the JSON of [`to_json`] straight to `out`, without building a
/// JSON tree first (which for a list of small ints took more memory than
/// the decoded value itself). The one difference: dict keys come in the
/// value's order, not sorted.
pub fn to_writer<W: std::io::Write>(out: W, v: &Value) -> serde_json::Result<()> {
    serde_json::to_writer(out, &View(v))
}

/// [`to_writer`] into a string.
pub fn to_string(v: &Value) -> String {
    // Serializing a Value into a Vec cannot fail: no map key is a non-str.
    serde_json::to_string(&View(v)).unwrap_or_default()
}

/// A [`Value`] seen as the JSON [`to_json`] describes.
struct View<'a>(&'a Value);

/// `{key: value}`.
fn one<S: Serializer>(s: S, key: &str, value: &impl Serialize) -> Result<S::Ok, S::Error> {
    let mut m = s.serialize_map(Some(1))?;
    m.serialize_entry(key, value)?;
    m.end()
}

/// Bytes per [`Hex`] write.
const HEX_CHUNK: usize = 512;

/// Bytes as lowercase hex, written as they are formatted.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In chunks through a stack buffer: a large bytes value is never
        // copied whole into a hex string.
        let mut buf = [0u8; 2 * HEX_CHUNK];
        for chunk in self.0.chunks(HEX_CHUNK) {
            let out = &mut buf[..2 * chunk.len()];
            hex::encode_to_slice(chunk, out).map_err(|_| fmt::Error)?;
            f.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A float as [`to_json`] shows it.
struct FloatView(f64);

impl Serialize for FloatView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match non_finite(self.0) {
            None => s.serialize_f64(self.0),
            Some(name) => one(s, "$float", &name),
        }
    }
}

struct Seq<'a>(&'a [Value]);

impl Serialize for Seq<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(View))
    }
}

impl Serialize for View<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => match (i.as_i64(), i.as_u64()) {
                (Some(v), _) => s.serialize_i64(v),
                (None, Some(v)) => s.serialize_u64(v),
                // num-bigint's conversion: subquadratic in the digits.
                (None, None) => one(s, "$int", &i.to_string()),
            },
            Value::Float(f) => FloatView(*f).serialize(s),
            Value::Str(x) => s.serialize_str(x),
            Value::Bytes(b) => one(s, "$bytes", &Hex(b)),
            Value::List(items) => Seq(items).serialize(s),
            Value::Ints(v) => s.collect_seq(v.iter()),
            Value::Floats(v) => s.collect_seq(v.iter().map(|f| FloatView(*f))),
            Value::Tuple(items) => one(s, "$tuple", &Seq(items)),
            Value::Dict(pairs) => s.collect_map(pairs.iter().map(|(k, v)| (k, View(v)))),
            Value::NdArray { shape, values } => {
                struct Nd<'a>(&'a [u64], &'a Value);
                impl Serialize for Nd<'_> {
                    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                        let mut m = s.serialize_map(Some(2))?;
                        m.serialize_entry("shape", self.0)?;
                        m.serialize_entry("values", &View(self.1))?;
                        m.end()
                    }
                }
                one(s, "$ndarray", &Nd(shape, values))
            }
            Value::Mpz(i) => one(s, "$mpz", &i.to_string()),
            Value::Foreign { type_name, data } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("$type", type_name)?;
                m.serialize_entry("data", &View(data))?;
                m.end()
            }
        }
    }
}

/// Converts from JSON.
pub fn from_json(j: &Json) -> Result<Value, JsonError> {
    Ok(match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(v) = n.as_i64() {
                Value::int(v)
            } else if let Some(v) = n.as_u64() {
                Value::int(v)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(from_json).collect::<Result<_, _>>()?),
        Json::Object(map) => object(map)?,
    })
}

// Out of line, so that the frame of `from_json`, which recurses, stays small.
#[inline(never)]
fn object(map: &Map<String, Json>) -> Result<Value, JsonError> {
    let one = if map.len() == 1 {
        map.iter().next()
    } else {
        None
    };
    match one {
        Some((k, Json::String(s))) if k == "$int" || k == "$mpz" => {
            let i: Int = s.parse()?;
            Ok(if k == "$int" {
                Value::Int(i)
            } else {
                Value::Mpz(i)
            })
        }
        Some((k, Json::String(s))) if k == "$float" => match s.as_str() {
            "nan" => Ok(Value::Float(f64::NAN)),
            "inf" => Ok(Value::Float(f64::INFINITY)),
            "-inf" => Ok(Value::Float(f64::NEG_INFINITY)),
            other => Err(JsonError::Float(other.to_string())),
        },
        Some((k, Json::String(s))) if k == "$bytes" => {
            let bytes = hex::decode(s)?;
            Ok(Value::Bytes(bytes.into()))
        }
        Some((k, Json::Array(items))) if k == "$tuple" => Ok(Value::Tuple(
            items.iter().map(from_json).collect::<Result<_, _>>()?,
        )),
        Some((k, Json::Object(inner))) if k == "$ndarray" => {
            let shape = inner
                .get("shape")
                .and_then(Json::as_array)
                .and_then(|a| a.iter().map(Json::as_u64).collect::<Option<Vec<_>>>())
                .ok_or(JsonError::NdArrayShape)?;
            let values = from_json(inner.get("values").unwrap_or(&Json::Null))?;
            Ok(Value::NdArray {
                shape,
                values: Box::new(values),
            })
        }
        _ => {
            if let (Some(Json::String(t)), Some(d), 2) =
                (map.get("$type"), map.get("data"), map.len())
            {
                return Ok(Value::Foreign {
                    type_name: t.clone(),
                    data: Box::new(from_json(d)?),
                });
            }
            Ok(Value::Dict(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), from_json(v)?)))
                    .collect::<Result<_, JsonError>>()?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_special_forms() {
        let v = Value::List(vec![
            Value::Float(f64::NAN),
            Value::from(vec![0, 255]),
            Value::Tuple(vec![Value::Nil]),
            Value::Int(
                "-1267650600228229401496703205376"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
            Value::dict([("a", Value::Bool(true))]),
        ]);
        assert_eq!(from_json(&to_json(&v)), Ok(v.clone()));
        // The streamed form describes the same JSON.
        let streamed: Json = serde_json::from_str(&to_string(&v)).unwrap_or(Json::Null);
        assert_eq!(streamed, to_json(&v));
    }

    #[test]
    fn compact_lists_give_the_json_of_the_general_form() {
        let floats = vec![1.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0];
        let ints = vec![i64::MIN, -1, 0, 7, i64::MAX].into();
        let general = |v: &Value| v.clone().into_general();
        for v in [
            Value::Ints(ints),
            Value::Floats(floats),
            Value::Ints(vec![].into()),
        ] {
            assert_eq!(to_json(&v), to_json(&general(&v)));
            assert_eq!(to_string(&v), to_string(&general(&v)));
        }
        assert_eq!(
            to_string(&Value::Floats(vec![0.5, f64::NAN])),
            r#"[0.5,{"$float":"nan"}]"#
        );
    }

    #[test]
    fn streamed_json_matches_the_tree_for_every_form() {
        let v = Value::List(vec![
            Value::Nil,
            Value::Bool(false),
            Value::int(-5),
            Value::int(u64::MAX),
            Value::Float(2.5),
            Value::Float(f64::NEG_INFINITY),
            Value::str("s\"q"),
            Value::NdArray {
                shape: vec![2],
                values: Box::new(Value::List(vec![Value::int(1), Value::int(2)])),
            },
            Value::Mpz(Int::from(7)),
            Value::Foreign {
                type_name: "bitarray".into(),
                data: Box::new(Value::from(vec![1u8])),
            },
            Value::dict([("z", Value::Nil), ("a", Value::int(1))]),
        ]);
        let streamed = to_string(&v);
        let parsed: Json = serde_json::from_str(&streamed).unwrap_or(Json::Null);
        assert_eq!(parsed, to_json(&v));
        // Dict keys in the value's order.
        assert!(streamed.ends_with(r#"{"z":null,"a":1}]"#), "{streamed}");
    }
}
