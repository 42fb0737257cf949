//! The values a party can send: what the Python package sends and receives.

use crate::int::Int;
use crate::int_list::IntList;

/// One message payload, modelled on what `tno.mpc.communication` puts on the
/// wire (see `docs/pool-wire.md`).
///
/// Numeric numpy arrays of one or more dimensions travel as plain nested
/// msgpack arrays (ormsgpack's `OPT_SERIALIZE_NUMPY`), so they are lists
/// here too; build them with [`Value::ndarray_i64`] or
/// [`Value::ndarray_f64`]. Only object-dtype and 0-d arrays use the `ndarray`
/// tag, which is [`Value::NdArray`].
///
/// A list has three forms: [`Value::List`], and the compact
/// [`Value::Ints`] and [`Value::Floats`] that the decoder makes of a
/// received list whose elements are all ints in the `i64` range, or all
/// floats: 8 bytes an element at most instead of a 40-byte `Value`, and an
/// [`IntList`] only as wide as its values need (a byte each for small
/// ones). The forms are one Python `list`: a list of equal elements is
/// equal in any form
/// (`Value::Ints(vec![1, 2].into()) == Value::List(vec![1.into(), 2.into()])`),
/// and encodes to the same bytes and the same JSON. Code that takes lists
/// apart must handle all three (or convert with [`Value::into_general`]).
/// A tuple's items are always a `Vec<Value>`.
///
/// Equality compares floats by their bits, so `NaN == NaN` and
/// `0.0 != -0.0`: "the same bytes would go on the wire".
#[derive(Clone, Debug)]
pub enum Value {
    /// `None` (`c0`).
    Nil,
    /// `bool`.
    Bool(bool),
    /// `int` of any size.
    Int(Int),
    /// `float`; always sent as float64 (`cb`). A float32 (`ca`) that arrives
    /// is widened, so it goes back out as float64.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`. Shared, not copied, when it arrives as most of a message
    /// (see [`crate::codec::decode_shared`]), and cheap to clone for a relay.
    Bytes(bytes::Bytes),
    /// `list` (and numeric numpy arrays, which arrive as nested lists).
    List(Vec<Value>),
    /// A `list` whose elements are all ints in the `i64` range; the same
    /// list as the [`Value::List`] of those ints.
    Ints(IntList),
    /// A `list` whose elements are all floats; the same list as the
    /// [`Value::List`] of those floats.
    Floats(Vec<f64>),
    /// `tuple`, the `{"type":"tuple","data":[...]}` tag.
    Tuple(Vec<Value>),
    /// `dict` with str keys, in insertion order.
    Dict(Vec<(String, Value)>),
    /// numpy object-dtype or 0-d array: the `ndarray` tag,
    /// `{"values": tolist(), "shape": tuple}`.
    NdArray {
        /// The array's shape (empty for 0-d).
        shape: Vec<u64>,
        /// `tolist()` of the array: nested lists, or a scalar when 0-d.
        values: Box<Value>,
    },
    /// gmpy2 `mpz`, the `mpz` tag holding `gmpy2.to_binary`.
    Mpz(Int),
    /// A tag this crate does not interpret (`{"type": type_name, "data": data}`),
    /// kept so that a Rust party can relay it unchanged.
    Foreign {
        /// The Python type name in the tag.
        type_name: String,
        /// The tag's data, decoded.
        data: Box<Value>,
    },
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Nil, Nil) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) | (Mpz(a), Mpz(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => a == b,
            (Ints(a), Ints(b)) => a == b,
            (Floats(a), Floats(b)) => same_floats(a, b),
            (List(a), Ints(b)) | (Ints(b), List(a)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(v, x)| v.as_i64() == Some(x))
            }
            (List(a), Floats(b)) | (Floats(b), List(a)) => list_eq(
                a,
                b,
                |v, x| matches!(v, Float(f) if f.to_bits() == x.to_bits()),
            ),
            // An int is never a float: only the empty lists are equal.
            (Ints(a), Floats(b)) | (Floats(b), Ints(a)) => a.is_empty() && b.is_empty(),
            (Dict(a), Dict(b)) => a == b,
            (
                NdArray {
                    shape: sa,
                    values: va,
                },
                NdArray {
                    shape: sb,
                    values: vb,
                },
            ) => sa == sb && va == vb,
            (
                Foreign {
                    type_name: ta,
                    data: da,
                },
                Foreign {
                    type_name: tb,
                    data: db,
                },
            ) => ta == tb && da == db,
            _ => false,
        }
    }
}

fn same_floats(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn list_eq<T>(a: &[Value], b: &[T], same: impl Fn(&Value, &T) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(v, x)| same(v, x))
}

impl Value {
    /// A str value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// An int value.
    pub fn int(v: impl Into<Int>) -> Value {
        Value::Int(v.into())
    }

    /// A dict from `(key, value)` pairs, keeping their order.
    pub fn dict<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Dict(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A numpy int64 array as it travels: nested lists, row-major.
    /// Returns `None` when `data.len()` is not the product of `shape`.
    pub fn ndarray_i64(shape: &[usize], data: &[i64]) -> Option<Value> {
        nest(shape, data, |v| Value::int(*v))
    }

    /// A numpy float64 array as it travels: nested lists, row-major.
    /// Returns `None` when `data.len()` is not the product of `shape`.
    pub fn ndarray_f64(shape: &[usize], data: &[f64]) -> Option<Value> {
        nest(shape, data, |v| Value::Float(*v))
    }

    /// The int inside as `i64`, if this is an int that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i.as_i64(),
            _ => None,
        }
    }

    /// The same value with every compact list ([`Value::Ints`],
    /// [`Value::Floats`]) at the top turned into a [`Value::List`], for code
    /// that matches on `List` only. Takes 40 bytes an element instead of 1
    /// to 8.
    pub fn into_general(self) -> Value {
        match self {
            Value::Ints(v) => Value::List(v.iter().map(Value::int).collect()),
            Value::Floats(v) => Value::List(v.into_iter().map(Value::Float).collect()),
            other => other,
        }
    }

    /// The number of elements, if this is a list in any form.
    pub fn list_len(&self) -> Option<usize> {
        match self {
            Value::List(v) => Some(v.len()),
            Value::Ints(v) => Some(v.len()),
            Value::Floats(v) => Some(v.len()),
            _ => None,
        }
    }

    /// The str inside, if this is a str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes inside, if this is bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A short name of the variant, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) | Value::Ints(_) | Value::Floats(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::NdArray { .. } => "ndarray",
            Value::Mpz(_) => "mpz",
            Value::Foreign { .. } => "foreign",
        }
    }
}

fn nest<T>(shape: &[usize], data: &[T], leaf: impl Fn(&T) -> Value + Copy) -> Option<Value> {
    let total = shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))?;
    if total != data.len() || shape.is_empty() {
        return None;
    }
    Some(nest_rec(shape, data, leaf))
}

fn nest_rec<T>(shape: &[usize], data: &[T], leaf: impl Fn(&T) -> Value + Copy) -> Value {
    match shape {
        [] | [_] => Value::List(data.iter().map(leaf).collect()),
        [first, rest @ ..] => {
            let step = if *first == 0 { 0 } else { data.len() / first };
            Value::List(
                (0..*first)
                    .map(|i| nest_rec(rest, &data[i * step..(i + 1) * step], leaf))
                    .collect(),
            )
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Value {
        Value::Bytes(b.into())
    }
}

impl From<bytes::Bytes> for Value {
    fn from(b: bytes::Bytes) -> Value {
        Value::Bytes(b)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_equals_itself_and_signed_zero_differs() {
        assert_eq!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert_ne!(Value::Float(0.0), Value::Float(-0.0));
    }

    #[test]
    fn the_forms_of_a_list_are_one_list() {
        let general = Value::List(vec![Value::int(1), Value::int(-2)]);
        assert_eq!(Value::Ints(vec![1, -2].into()), general);
        assert_eq!(general, Value::Ints(vec![1, -2].into()));
        assert_ne!(
            Value::Ints(vec![1, -2].into()),
            Value::List(vec![Value::int(1)])
        );
        assert_ne!(
            Value::Ints(vec![1].into()),
            Value::List(vec![Value::Float(1.0)])
        );
        let floats = Value::List(vec![Value::Float(f64::NAN), Value::Float(-0.0)]);
        assert_eq!(Value::Floats(vec![f64::NAN, -0.0]), floats);
        assert_ne!(Value::Floats(vec![f64::NAN, 0.0]), floats);
        assert_ne!(Value::Floats(vec![1.0]), Value::Ints(vec![1].into()));
        // Empty is empty in every form.
        assert_eq!(Value::Ints(vec![].into()), Value::Floats(vec![]));
        assert_eq!(Value::Floats(vec![]), Value::List(vec![]));
        // Never equal to a tuple, as a list never is.
        assert_ne!(
            Value::Ints(vec![1].into()),
            Value::Tuple(vec![Value::int(1)])
        );
        assert_eq!(Value::Ints(vec![1, -2].into()).into_general(), general);
        assert!(matches!(
            Value::Ints(vec![1, -2].into()).into_general(),
            Value::List(_)
        ));
        assert_eq!(Value::Floats(vec![0.5]).list_len(), Some(1));
        assert_eq!(Value::Ints(vec![1, -2].into()).kind(), "list");
    }

    #[test]
    fn ndarray_nests_row_major() {
        let v = Value::ndarray_i64(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let row = |a: i64, b: i64, c: i64| Value::List(vec![a.into(), b.into(), c.into()]);
        assert_eq!(v, Some(Value::List(vec![row(1, 2, 3), row(4, 5, 6)])));
        assert_eq!(Value::ndarray_i64(&[2, 2], &[1]), None);
    }
}
