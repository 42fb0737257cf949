//! The msgpack codec for [`Value`], sans-IO: bytes in, bytes out.
//!
//! Encoding matches ormsgpack with the package's options byte for byte: the
//! smallest form of every int, str, bin, array and map header; floats always
//! float64; non-native values as `{"type": name, "data": ...}` tags with the
//! key order `type`, `data`.
//!
//! Decoding follows ormsgpack + the package's tag pass: str keys only, no ext
//! types, trailing bytes ignored, and any map holding both `type` and `data`
//! is a tag (extra keys in it are dropped, as the package drops them).
//! Nothing a peer sends can make it panic or allocate more than the input's
//! size: depth is limited and element counts are checked against the bytes
//! left before anything is allocated.

use std::collections::HashMap;

use rmp::Marker;

use crate::error::{DecodeError, EncodeError};
use crate::int::Int;
use crate::value::Value;

/// How deep values may nest, by default (arrays, maps and tags each count).
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// Encodes a value as the package would (`Serializer.serialize`).
pub fn encode(value: &Value) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out, DEFAULT_MAX_DEPTH)?;
    Ok(out)
}

/// Appends the encoding of `value` to `out`, refusing nesting deeper than `max_depth`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>, max_depth: usize) -> Result<(), EncodeError> {
    Encoder { out, max_depth }.value(value, 0)
}

/// Appends a str, as [`encode_into`] would encode `Value::Str`.
pub fn encode_str_into(s: &str, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    Encoder {
        out,
        max_depth: DEFAULT_MAX_DEPTH,
    }
    .str(s)
}

/// Decodes the first msgpack document in `input`, ignoring trailing bytes.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    decode_with_depth(input, DEFAULT_MAX_DEPTH)
}

/// [`decode`] with a nesting limit.
pub fn decode_with_depth(input: &[u8], max_depth: usize) -> Result<Value, DecodeError> {
    Decoder {
        buf: input,
        owner: None,
        pos: 0,
        max_depth,
    }
    .value()
}

/// [`decode_with_depth`] where a `bytes` value that is most of `input` is
/// returned as a slice of it instead of a copy (a large payload is the
/// common case, and the copy was a fifth of the cost of receiving one).
/// Smaller ones are copied, so a small value never keeps a large message
/// alive.
pub fn decode_shared(input: &bytes::Bytes, max_depth: usize) -> Result<Value, DecodeError> {
    Decoder {
        buf: input,
        owner: Some(input),
        pos: 0,
        max_depth,
    }
    .value()
}

/// Below this a `bytes` value is copied even from a shared input.
const SHARE_MIN: usize = 4096;

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    max_depth: usize,
}

/// Writes the msgpack 8/16/32-bit length header of the family starting at
/// `marker8` (bin 0xc4, str 0xd9, ext 0xc7).
pub(crate) fn sized_header(
    out: &mut Vec<u8>,
    marker8: u8,
    len: usize,
    kind: &'static str,
) -> Result<(), EncodeError> {
    if len <= usize::from(u8::MAX) {
        out.extend_from_slice(&[marker8, len as u8]);
    } else if len <= usize::from(u16::MAX) {
        out.push(marker8 + 1);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        let len32 = u32::try_from(len).map_err(|_| EncodeError::TooLong { kind, len })?;
        out.push(marker8 + 2);
        out.extend_from_slice(&len32.to_be_bytes());
    }
    Ok(())
}

impl Encoder<'_> {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        if depth > self.max_depth {
            return Err(EncodeError::TooDeep {
                limit: self.max_depth,
            });
        }
        match v {
            Value::Nil => self.out.push(0xc0),
            Value::Bool(b) => self.out.push(if *b { 0xc3 } else { 0xc2 }),
            Value::Int(i) => self.int(i, depth)?,
            Value::Float(f) => {
                self.out.push(0xcb);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Str(s) => self.str(s)?,
            Value::Bytes(b) => self.bin(b)?,
            Value::List(items) => self.array(items, depth)?,
            Value::Tuple(items) => {
                self.tag_header("tuple")?;
                self.array(items, depth + 1)?;
            }
            Value::Dict(pairs) => {
                self.header(0x80, 0xde, pairs.len(), "dict")?;
                for (k, v) in pairs {
                    self.str(k)?;
                    self.value(v, depth + 1)?;
                }
            }
            Value::NdArray { shape, values } => {
                self.tag_header("ndarray")?;
                self.out.push(0x82);
                self.str("values")?;
                self.value(values, depth + 2)?;
                self.str("shape")?;
                self.tag_header("tuple")?;
                self.header(0x90, 0xdc, shape.len(), "shape")?;
                for d in shape {
                    self.uint(*d);
                }
            }
            Value::Mpz(i) => {
                let (negative, mag) = i.sign_magnitude();
                let sign = match (negative, mag.is_empty()) {
                    (_, true) => 0,
                    (false, false) => 1,
                    (true, false) => 2,
                };
                let mut data = Vec::with_capacity(mag.len() + 2);
                data.extend_from_slice(&[0x01, sign]);
                data.extend_from_slice(&mag);
                self.tag_header("mpz")?;
                self.bin(&data)?;
            }
            Value::Foreign { type_name, data } => {
                self.tag_header(type_name)?;
                self.value(data, depth + 1)?;
            }
        }
        Ok(())
    }

    fn int(&mut self, i: &Int, _depth: usize) -> Result<(), EncodeError> {
        match i.as_native() {
            Some(v) if v >= 0 => self.uint(v as u64),
            Some(v) => self.sint(v as i64),
            None => {
                self.tag_header("int")?;
                self.bin(&i.to_le_signed_python())?;
            }
        }
        Ok(())
    }

    fn uint(&mut self, v: u64) {
        let out = &mut *self.out;
        if v < 0x80 {
            out.push(v as u8);
        } else if v <= u64::from(u8::MAX) {
            out.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= u64::from(u16::MAX) {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= u64::from(u32::MAX) {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Negative values only (non-negative ones take the unsigned forms).
    fn sint(&mut self, v: i64) {
        let out = &mut *self.out;
        if v >= -32 {
            out.push(v as u8);
        } else if v >= i64::from(i8::MIN) {
            out.extend_from_slice(&[0xd0, v as u8]);
        } else if v >= i64::from(i16::MIN) {
            out.push(0xd1);
            out.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            out.push(0xd2);
            out.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            out.push(0xd3);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    fn str(&mut self, s: &str) -> Result<(), EncodeError> {
        let len = s.len();
        if len < 32 {
            self.out.push(0xa0 | len as u8);
        } else {
            self.sized(0xd9, len, "str")?;
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn bin(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        self.sized(0xc4, b.len(), "bytes")?;
        self.out.extend_from_slice(b);
        Ok(())
    }

    fn sized(&mut self, marker8: u8, len: usize, kind: &'static str) -> Result<(), EncodeError> {
        sized_header(self.out, marker8, len, kind)
    }

    /// Array or map header: fix form below 16, else the 16/32-bit form.
    fn header(
        &mut self,
        fix: u8,
        marker16: u8,
        len: usize,
        kind: &'static str,
    ) -> Result<(), EncodeError> {
        if len < 16 {
            self.out.push(fix | len as u8);
        } else if len <= usize::from(u16::MAX) {
            self.out.push(marker16);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            let len32 = u32::try_from(len).map_err(|_| EncodeError::TooLong { kind, len })?;
            self.out.push(marker16 + 1);
            self.out.extend_from_slice(&len32.to_be_bytes());
        }
        Ok(())
    }

    fn array(&mut self, items: &[Value], depth: usize) -> Result<(), EncodeError> {
        self.header(0x90, 0xdc, items.len(), "list")?;
        for item in items {
            self.value(item, depth + 1)?;
        }
        Ok(())
    }

    /// `{"type": name, "data": ` — the caller writes the data next.
    fn tag_header(&mut self, name: &str) -> Result<(), EncodeError> {
        self.out.push(0x82);
        self.str("type")?;
        self.str(name)?;
        self.str("data")
    }
}

struct Decoder<'a> {
    buf: &'a [u8],
    /// The same bytes as `buf`, when they may be shared.
    owner: Option<&'a bytes::Bytes>,
    pos: usize,
    max_depth: usize,
}

impl<'a> Decoder<'a> {
    fn bin(&mut self, n: usize, start: usize) -> Result<Value, DecodeError> {
        let slice = self.take(n, start)?;
        Ok(Value::Bytes(match self.owner {
            Some(owner) if n >= SHARE_MIN && 2 * n >= owner.len() => owner.slice_ref(slice),
            _ => bytes::Bytes::copy_from_slice(slice),
        }))
    }

    fn take(&mut self, n: usize, start: usize) -> Result<&'a [u8], DecodeError> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(DecodeError::Truncated {
                offset: start,
                needed: n - remaining,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array_n<const N: usize>(&mut self, start: usize) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, start)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len8(&mut self, start: usize) -> Result<usize, DecodeError> {
        Ok(usize::from(self.array_n::<1>(start)?[0]))
    }

    fn len16(&mut self, start: usize) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.array_n(start)?)))
    }

    fn len32(&mut self, start: usize) -> Result<usize, DecodeError> {
        // u32 always fits usize on the 32/64-bit targets Rust std supports here.
        Ok(u32::from_be_bytes(self.array_n(start)?) as usize)
    }

    /// Decodes one value without recursion: containers are frames on an
    /// explicit stack, so depth costs heap (bounded by `max_depth`), never
    /// thread stack, whatever the build profile.
    fn value(&mut self) -> Result<Value, DecodeError> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let start = self.pos;
            let mut v = match self.item(start)? {
                Item::Value(v) => v,
                Item::Array(n) => {
                    self.check_container("array", n, 1, start, stack.len())?;
                    if n == 0 {
                        Value::List(Vec::new())
                    } else {
                        stack.push(Frame::List {
                            items: Vec::with_capacity(n),
                            left: n,
                            start,
                        });
                        continue;
                    }
                }
                Item::Map(n) => {
                    self.check_container("map", n, 2, start, stack.len())?;
                    if n == 0 {
                        Value::Dict(Vec::new())
                    } else {
                        stack.push(Frame::Map(MapFrame::new(n, start)));
                        continue;
                    }
                }
            };
            let mut v_start = start;
            // Hand the finished value to its parent; finishing a parent
            // hands that one up in turn.
            loop {
                match stack.last_mut() {
                    None => return Ok(v),
                    Some(Frame::List { items, left, start }) => {
                        items.push(v);
                        *left -= 1;
                        if *left > 0 {
                            break;
                        }
                        v_start = *start;
                        v = Value::List(std::mem::take(items));
                        stack.pop();
                    }
                    Some(Frame::Map(m)) => {
                        if !m.add(v, v_start)? {
                            break;
                        }
                        v_start = m.start;
                        let pairs = std::mem::take(&mut m.pairs);
                        v = untag(pairs, m.start)?;
                        stack.pop();
                    }
                }
            }
        }
    }

    /// Reads a scalar, or the header of a container.
    fn item(&mut self, start: usize) -> Result<Item, DecodeError> {
        let byte = self.array_n::<1>(start)?[0];
        let v = match Marker::from_u8(byte) {
            Marker::FixPos(v) => Value::int(v),
            Marker::FixNeg(v) => Value::int(v),
            Marker::Null => Value::Nil,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::U8 => Value::int(u8::from_be_bytes(self.array_n(start)?)),
            Marker::U16 => Value::int(u16::from_be_bytes(self.array_n(start)?)),
            Marker::U32 => Value::int(u32::from_be_bytes(self.array_n(start)?)),
            Marker::U64 => Value::int(u64::from_be_bytes(self.array_n(start)?)),
            Marker::I8 => Value::int(i8::from_be_bytes(self.array_n(start)?)),
            Marker::I16 => Value::int(i16::from_be_bytes(self.array_n(start)?)),
            Marker::I32 => Value::int(i32::from_be_bytes(self.array_n(start)?)),
            Marker::I64 => Value::int(i64::from_be_bytes(self.array_n(start)?)),
            Marker::F32 => Value::Float(f64::from(f32::from_be_bytes(self.array_n(start)?))),
            Marker::F64 => Value::Float(f64::from_be_bytes(self.array_n(start)?)),
            Marker::FixStr(n) => self.str(usize::from(n), start)?,
            Marker::Str8 => {
                let n = self.len8(start)?;
                self.str(n, start)?
            }
            Marker::Str16 => {
                let n = self.len16(start)?;
                self.str(n, start)?
            }
            Marker::Str32 => {
                let n = self.len32(start)?;
                self.str(n, start)?
            }
            Marker::Bin8 => {
                let n = self.len8(start)?;
                self.bin(n, start)?
            }
            Marker::Bin16 => {
                let n = self.len16(start)?;
                self.bin(n, start)?
            }
            Marker::Bin32 => {
                let n = self.len32(start)?;
                self.bin(n, start)?
            }
            Marker::FixArray(n) => return Ok(Item::Array(usize::from(n))),
            Marker::Array16 => return Ok(Item::Array(self.len16(start)?)),
            Marker::Array32 => return Ok(Item::Array(self.len32(start)?)),
            Marker::FixMap(n) => return Ok(Item::Map(usize::from(n))),
            Marker::Map16 => return Ok(Item::Map(self.len16(start)?)),
            Marker::Map32 => return Ok(Item::Map(self.len32(start)?)),
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => return Err(DecodeError::Ext { offset: start }),
            Marker::Reserved => return Err(DecodeError::Reserved { offset: start }),
        };
        Ok(Item::Value(v))
    }

    fn str(&mut self, n: usize, start: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(n, start)?;
        std::str::from_utf8(bytes)
            .map(|s| Value::Str(s.to_string()))
            .map_err(|_| DecodeError::InvalidUtf8 { offset: start })
    }

    fn check_container(
        &self,
        kind: &'static str,
        len: usize,
        min_bytes_each: usize,
        start: usize,
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth >= self.max_depth {
            return Err(DecodeError::TooDeep {
                offset: start,
                limit: self.max_depth,
            });
        }
        let remaining = self.buf.len() - self.pos;
        if len.saturating_mul(min_bytes_each) > remaining {
            return Err(DecodeError::LengthExceedsInput {
                offset: start,
                kind,
                len,
                remaining,
            });
        }
        Ok(())
    }
}

enum Item {
    Value(Value),
    Array(usize),
    Map(usize),
}

enum Frame {
    List {
        items: Vec<Value>,
        left: usize,
        start: usize,
    },
    Map(MapFrame),
}

struct MapFrame {
    pairs: Vec<(String, Value)>,
    /// Large maps get a hash index so duplicate-key checks stay linear overall.
    index: Option<HashMap<String, usize>>,
    key: Option<String>,
    left: usize,
    start: usize,
}

impl MapFrame {
    fn new(n: usize, start: usize) -> MapFrame {
        MapFrame {
            pairs: Vec::with_capacity(n),
            index: (n > 32).then(HashMap::new),
            key: None,
            left: n,
            start,
        }
    }

    /// Takes the next key or value; true when the map is complete.
    fn add(&mut self, v: Value, v_start: usize) -> Result<bool, DecodeError> {
        let Some(key) = self.key.take() else {
            match v {
                Value::Str(s) => self.key = Some(s),
                other => {
                    return Err(DecodeError::NonStrKey {
                        offset: v_start,
                        found: other.kind(),
                    })
                }
            }
            return Ok(false);
        };
        let existing = match &self.index {
            Some(ix) => ix.get(&key).copied(),
            None => self.pairs.iter().position(|(k, _)| *k == key),
        };
        // A repeated key keeps its first position and its last value, as a
        // Python dict built from the map would.
        match existing {
            Some(i) => self.pairs[i].1 = v,
            None => {
                if let Some(ix) = self.index.as_mut() {
                    ix.insert(key.clone(), self.pairs.len());
                }
                self.pairs.push((key, v));
            }
        }
        self.left -= 1;
        Ok(self.left == 0)
    }
}

/// Turns a decoded map into a tag value when it has both `type` and `data`.
fn untag(pairs: Vec<(String, Value)>, start: usize) -> Result<Value, DecodeError> {
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
        ("shape", Value::Tuple(dims)) => dims
            .iter()
            .map(|d| match d {
                Value::Int(i) => i.as_u64(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>(),
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

#[cfg(test)]
#[path = "codec_vectors.rs"]
pub(crate) mod vectors;

#[cfg(test)]
mod shared_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn bytes_of(v: &Value) -> &bytes::Bytes {
        match v {
            Value::Bytes(b) => b,
            other => panic!("expected bytes, got {}", other.kind()),
        }
    }

    fn within(inner: &[u8], outer: &[u8]) -> bool {
        let range = outer.as_ptr_range();
        range.contains(&inner.as_ptr()) && inner.len() <= outer.len()
    }

    #[test]
    fn a_large_payload_is_shared_and_equal() {
        let value = Value::from(vec![0xa5u8; 100_000]);
        let input = bytes::Bytes::from(encode(&value).unwrap());
        let decoded = decode_shared(&input, DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(decoded, value);
        assert!(within(bytes_of(&decoded), &input), "payload was copied");
        assert_eq!(decoded, decode(&input).unwrap());
    }

    #[test]
    fn small_or_minor_payloads_are_copied() {
        // Too small to be worth sharing.
        let small = bytes::Bytes::from(encode(&Value::from(vec![1u8; 100])).unwrap());
        let decoded = decode_shared(&small, DEFAULT_MAX_DEPTH).unwrap();
        assert!(!within(bytes_of(&decoded), &small));
        // Large, but a small part of the message: must not pin the rest.
        let mixed = Value::List(vec![
            Value::from(vec![2u8; 5_000]),
            Value::Str("x".repeat(50_000)),
        ]);
        let input = bytes::Bytes::from(encode(&mixed).unwrap());
        let decoded = decode_shared(&input, DEFAULT_MAX_DEPTH).unwrap();
        assert_eq!(decoded, mixed);
        let Value::List(items) = &decoded else {
            panic!("expected a list")
        };
        assert!(!within(bytes_of(&items[0]), &input));
    }
}
