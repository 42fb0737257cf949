//! [`Value`] to and from JSON, for the command line and logs.
//!
//! JSON has no bytes, tuples, big ints or NaN, so those are one-key objects:
//! `{"$bytes": "hex"}`, `{"$tuple": [...]}`, `{"$int": "decimal"}`,
//! `{"$float": "nan" | "inf" | "-inf"}`, `{"$mpz": "decimal"}`,
//! `{"$ndarray": {"shape": [...], "values": ...}}`, and
//! `{"$type": name, "data": ...}` for foreign tags. Other objects are dicts;
//! their key order is the JSON library's (sorted), not the input's.

use serde_json::{json, Map, Number, Value as Json};

use crate::int::Int;
use crate::value::Value;

/// A JSON value that does not describe a [`Value`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON does not describe a value: {0}")]
pub struct JsonError(String);

/// Converts to JSON.
pub fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => int_json(i, "$int"),
        Value::Float(f) if f.is_finite() => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Float(f) => {
            let s = if f.is_nan() {
                "nan"
            } else if *f > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            json!({ "$float": s })
        }
        Value::Str(s) => Json::String(s.clone()),
        Value::Bytes(b) => {
            json!({ "$bytes": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Tuple(items) => json!({ "$tuple": items.iter().map(to_json).collect::<Vec<_>>() }),
        Value::Dict(pairs) => Json::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::NdArray { shape, values } => {
            json!({ "$ndarray": { "shape": shape, "values": to_json(values) } })
        }
        Value::Mpz(i) => json!({ "$mpz": i.to_string() }),
        Value::Foreign { type_name, data } => json!({ "$type": type_name, "data": to_json(data) }),
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

fn object(map: &Map<String, Json>) -> Result<Value, JsonError> {
    let err = |m: &str| JsonError(m.to_string());
    let one = if map.len() == 1 {
        map.iter().next()
    } else {
        None
    };
    match one {
        Some((k, Json::String(s))) if k == "$int" || k == "$mpz" => {
            let i: Int = s
                .parse()
                .map_err(|e: crate::int::ParseIntError| err(&e.to_string()))?;
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
            other => Err(err(&format!("$float {other:?}: expected nan, inf or -inf"))),
        },
        Some((k, Json::String(s))) if k == "$bytes" => {
            if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err("$bytes must be an even number of hex digits"));
            }
            Ok(Value::Bytes(
                (0..s.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
                    .collect(),
            ))
        }
        Some((k, Json::Array(items))) if k == "$tuple" => Ok(Value::Tuple(
            items.iter().map(from_json).collect::<Result<_, _>>()?,
        )),
        Some((k, Json::Object(inner))) if k == "$ndarray" => {
            let shape = inner
                .get("shape")
                .and_then(Json::as_array)
                .and_then(|a| a.iter().map(Json::as_u64).collect::<Option<Vec<_>>>())
                .ok_or_else(|| err("$ndarray needs a shape of non-negative ints"))?;
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
        assert_eq!(from_json(&to_json(&v)), Ok(v));
    }
}
