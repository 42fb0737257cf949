//! The package's tag pass over a decoded map: duplicate keys resolved as a
//! Python dict would, and `{"type": name, "data": ...}` turned into the
//! value it stands for (big int, tuple, mpz, ndarray, or a foreign tag kept
//! as it is). [`cost`] says what that allocates anew, for the decoder to
//! charge first.

use std::mem::size_of;

use crate::decoder::SMALL_MAP;
use crate::error::DecodeError;
use crate::heap::{array_cost, block_cost};
use crate::int::Int;
use crate::value::Value;

/// A repeated key keeps its first position and its last value, as a Python
/// dict built from the map would. Small maps are scanned; large ones sorted
/// by key through an index (n log n, and no second copy of the keys, which
/// a hash index would hold). The sort is in place (unstable, with the
/// position as the tie-break), so the index is all it allocates, and the
/// decoder charges the index.
pub(crate) fn dedup(mut pairs: Vec<(String, Value)>) -> Vec<(String, Value)> {
    if pairs.len() <= SMALL_MAP {
        let mut i = 1;
        while i < pairs.len() {
            match pairs[..i].iter().position(|(k, _)| *k == pairs[i].0) {
                Some(first) => {
                    let (_, v) = pairs.remove(i);
                    pairs[first].1 = v;
                }
                None => i += 1,
            }
        }
        return pairs;
    }
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    // Equal keys stay in arrival order.
    order.sort_unstable_by(|a, b| pairs[*a].0.cmp(&pairs[*b].0).then(a.cmp(b)));
    let mut drop_at = vec![false; 0];
    let mut group = 0;
    while group < order.len() {
        let mut end = group + 1;
        while end < order.len() && pairs[order[end]].0 == pairs[order[group]].0 {
            end += 1;
        }
        if end - group > 1 {
            if drop_at.is_empty() {
                drop_at = vec![false; pairs.len()];
            }
            let first = order[group];
            let last = order[end - 1];
            let v = std::mem::replace(&mut pairs[last].1, Value::Nil);
            pairs[first].1 = v;
            for &k in &order[group + 1..end] {
                drop_at[k] = true;
            }
        }
        group = end;
    }
    if !drop_at.is_empty() {
        let mut k = 0;
        pairs.retain(|_| {
            let keep = !drop_at[k];
            k += 1;
            keep
        });
    }
    pairs
}

/// The `type` and `data` of a tag, if the map is one.
fn parts(pairs: &[(String, Value)]) -> Option<(&Value, &Value)> {
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    Some((get("type")?, get("data")?))
}

/// The heap [`untag`] allocates for the value it makes of `pairs` (an upper
/// bound; 0 for a plain dict).
pub(crate) fn cost(pairs: &[(String, Value)]) -> usize {
    let Some((Value::Str(type_name), data)) = parts(pairs) else {
        return 0;
    };
    let boxed = block_cost(size_of::<Value>());
    match (type_name.as_str(), data) {
        ("int" | "mpz", Value::Bytes(b)) => Int::decode_cost(b.len()).saturating_add(boxed),
        ("tuple", Value::List(_)) => 0,
        // Package order never gets here: the decoder keeps a tuple's data
        // general when `type` came first.
        ("tuple", Value::Ints(v)) => array_cost(v.len(), size_of::<Value>()),
        ("tuple", Value::Floats(v)) => array_cost(v.len(), size_of::<Value>()),
        ("ndarray", Value::Dict(inner)) => {
            let dims = inner
                .iter()
                .find_map(|(k, v)| match (k.as_str(), v) {
                    ("shape", Value::Tuple(dims)) => Some(dims.len()),
                    _ => None,
                })
                .unwrap_or(0);
            boxed.saturating_add(array_cost(dims, size_of::<u64>()))
        }
        _ => boxed,
    }
}

/// Turns a decoded map into a tag value when it has both `type` and `data`.
pub(crate) fn untag(pairs: Vec<(String, Value)>, start: usize) -> Result<Value, DecodeError> {
    let has = |name: &str| pairs.iter().any(|(k, _)| k == name);
    if !(has("type") && has("data")) {
        return Ok(Value::Dict(pairs));
    }
    let mut type_v = Value::Nil;
    let mut data = Value::Nil;
    for (k, v) in pairs {
        match k.as_str() {
            "type" => type_v = v,
            "data" => data = v,
            _ => {}
        }
    }
    let type_name = match type_v {
        Value::Str(s) => s,
        other => {
            return Err(DecodeError::BadTagType {
                offset: start,
                found: other.kind(),
            })
        }
    };
    Ok(from_tag(type_name, data))
}

fn from_tag(type_name: String, data: Value) -> Value {
    match (type_name.as_str(), data) {
        ("int", Value::Bytes(b)) => Value::Int(Int::from_le_signed(&b)),
        ("tuple", Value::List(items)) => Value::Tuple(items),
        ("tuple", Value::Ints(v)) => Value::Tuple(v.iter().map(Value::int).collect()),
        ("tuple", Value::Floats(v)) => Value::Tuple(v.into_iter().map(Value::Float).collect()),
        ("mpz", Value::Bytes(b)) => match mpz_from_binary(&b) {
            Some(i) => Value::Mpz(i),
            None => foreign(type_name, Value::Bytes(b)),
        },
        ("ndarray", Value::Dict(pairs)) => ndarray_from_pairs(pairs),
        (_, data) => foreign(type_name, data),
    }
}

fn foreign(type_name: String, data: Value) -> Value {
    Value::Foreign {
        type_name,
        data: Box::new(data),
    }
}

/// gmpy2 `to_binary` of an mpz: `01`, a sign byte (0 zero, 1 positive,
/// 2 negative), then the little-endian magnitude.
fn mpz_from_binary(b: &[u8]) -> Option<Int> {
    match b {
        [0x01, 0x00, rest @ ..] if rest.iter().all(|x| *x == 0) => Some(Int::from(0)),
        [0x01, 0x01, mag @ ..] => Some(Int::from_sign_magnitude(false, mag)),
        [0x01, 0x02, mag @ ..] => Some(Int::from_sign_magnitude(true, mag)),
        _ => None,
    }
}

fn ndarray_from_pairs(pairs: Vec<(String, Value)>) -> Value {
    let shape = pairs.iter().find_map(|(k, v)| match (k.as_str(), v) {
        ("shape", Value::Tuple(dims)) => {
            // Exactly the capacity [`cost`] charged (collecting into an
            // `Option<Vec>` would grow it by doubling).
            let mut shape = Vec::with_capacity(dims.len());
            for d in dims {
                match d {
                    Value::Int(i) => shape.push(i.as_u64()?),
                    _ => return None,
                }
            }
            Some(shape)
        }
        _ => None,
    });
    let well_formed = pairs.len() == 2 && pairs.iter().any(|(k, _)| k == "values");
    match shape {
        Some(shape) if well_formed => {
            let values = pairs
                .into_iter()
                .find_map(|(k, v)| (k == "values").then_some(v))
                .unwrap_or(Value::Nil);
            Value::NdArray {
                shape,
                values: Box::new(values),
            }
        }
        _ => foreign("ndarray".to_string(), Value::Dict(pairs)),
    }
}
