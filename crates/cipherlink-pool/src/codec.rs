//! The msgpack codec for [`Value`], sans-IO: bytes in, bytes out.
//!
//! Encoding matches ormsgpack with the package's options byte for byte: the
//! smallest form of every int, str, bin, array and map header (rmp's
//! `write_*` functions pick the same forms); floats always float64;
//! non-native values as `{"type": name, "data": ...}` tags with the key
//! order `type`, `data`.
//!
//! Decoding follows ormsgpack + the package's tag pass: str keys only, no ext
//! types, trailing bytes ignored, and any map holding both `type` and `data`
//! is a tag (extra keys in it are dropped, as the package drops them).
//!
//! The decoder is hand-written rather than rmp's or rmpv's, because what a
//! peer sends must not cost more than it sent, and neither gives that:
//! containers are frames on an explicit stack (depth costs heap bounded by
//! `max_depth`, never thread stack); a large `bytes` value can be a slice
//! of the received body instead of a copy; and every allocation is charged
//! before it is made against [`memory_bound`] of the input, so a decoded
//! value never takes more than [`MEMORY_FACTOR`] times its wire size (plus
//! one [`Value`]), however its element counts lie. The charge is returned
//! ([`decode_accounted`]) for the mailbox's per-sender budget.

use std::mem::size_of;

use rmp::Marker;

use crate::error::{DecodeError, EncodeError};
use crate::int::Int;
use crate::value::Value;

/// How deep values may nest, by default (arrays, maps and tags each count).
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// The largest `max_depth` a configuration may set: dropping, cloning,
/// comparing, encoding and converting a [`Value`] to JSON recurse once per
/// level, and at this depth they stay well inside a 2 MiB thread stack
/// (tested in a debug build).
pub const MAX_DEPTH_LIMIT: usize = 512;

/// The decoder's promise: a decoded value takes at most this many bytes of
/// memory per byte of its msgpack input, plus one [`Value`]. The worst case
/// a peer can send is a chain of one-element arrays (`0x91` per level):
/// one byte for a one-element allocation of a `Value` plus the allocator's
/// overhead (see [`ALLOC_OVERHEAD`]); everything else costs less per byte.
pub const MEMORY_FACTOR: usize = 64;

/// What each heap allocation is charged beyond its size (malloc's header
/// and rounding on 64-bit glibc, for the small blocks that dominate).
pub const ALLOC_OVERHEAD: usize = 16;

/// The most memory a value decoded from `wire_len` bytes may take.
pub fn memory_bound(wire_len: usize) -> usize {
    MEMORY_FACTOR
        .saturating_mul(wire_len)
        .saturating_add(size_of::<Value>())
}

/// What the decoder may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Deepest nesting (arrays, maps and tags each count).
    pub max_depth: usize,
    /// Most bytes of memory the decoded value may take; the decoder stops
    /// at `min(max_memory, memory_bound(input length))`.
    pub max_memory: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_memory: usize::MAX,
        }
    }
}

impl DecodeLimits {
    /// The default memory limit with this nesting limit.
    pub fn depth(max_depth: usize) -> DecodeLimits {
        DecodeLimits {
            max_depth,
            ..DecodeLimits::default()
        }
    }
}

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
    decode_accounted(input, DecodeLimits::depth(max_depth)).map(|(v, _)| v)
}

/// [`decode`] with limits, returning the value and the bytes of memory it
/// was charged (at most `memory_bound(input.len())`).
pub fn decode_accounted(input: &[u8], limits: DecodeLimits) -> Result<(Value, usize), DecodeError> {
    Decoder::new(input, None, limits).run()
}

/// [`decode_accounted`] where a `bytes` value that is most of `input` is
/// returned as a slice of it instead of a copy (a large payload is the
/// common case, and the copy was a fifth of the cost of receiving one).
/// Smaller ones are copied, so a small value never keeps a large message
/// alive. A shared slice is charged as if copied: it keeps the input alive.
pub fn decode_shared(
    input: &bytes::Bytes,
    limits: DecodeLimits,
) -> Result<(Value, usize), DecodeError> {
    Decoder::new(input, Some(input), limits).run()
}

/// Below this a `bytes` value is copied even from a shared input.
const SHARE_MIN: usize = 4096;

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    max_depth: usize,
}

/// The u32 length msgpack can carry, or the error naming what was too long.
fn len32(len: usize, kind: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong { kind, len })
}

/// Writes a msgpack bin header (the smallest form), as ormsgpack does.
pub(crate) fn bin_header(out: &mut Vec<u8>, len: usize) -> Result<(), EncodeError> {
    // Writing into a Vec cannot fail; rmp's io::Write plumbing returns a
    // Result all the same.
    let _ = rmp::encode::write_bin_len(out, len32(len, "bytes")?);
    Ok(())
}

impl Encoder<'_> {
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), EncodeError> {
        if depth > self.max_depth {
            return Err(EncodeError::TooDeep {
                limit: self.max_depth,
            });
        }
        // Writes into a Vec cannot fail (see `bin_header`).
        match v {
            Value::Nil => self.out.push(Marker::Null.to_u8()),
            Value::Bool(b) => self
                .out
                .push(if *b { Marker::True } else { Marker::False }.to_u8()),
            Value::Int(i) => self.int(i)?,
            Value::Float(f) => self.float(*f),
            Value::Str(s) => self.str(s)?,
            Value::Bytes(b) => self.bin(b)?,
            Value::List(items) => self.array(items, depth)?,
            Value::Tuple(items) => {
                self.tag_header("tuple")?;
                self.array(items, depth + 1)?;
            }
            Value::Dict(pairs) => self.dict(pairs, depth)?,
            Value::NdArray { shape, values } => self.ndarray(shape, values, depth)?,
            Value::Mpz(i) => self.mpz(i)?,
            Value::Foreign { type_name, data } => {
                self.tag_header(type_name)?;
                self.value(data, depth + 1)?;
            }
        }
        Ok(())
    }

    // The rarer arms live in their own functions, so that the frame of
    // `value`, which recurses, stays small.
    #[inline(never)]
    fn ndarray(&mut self, shape: &[u64], values: &Value, depth: usize) -> Result<(), EncodeError> {
        self.tag_header("ndarray")?;
        let _ = rmp::encode::write_map_len(self.out, 2);
        self.str("values")?;
        self.value(values, depth + 2)?;
        self.str("shape")?;
        self.tag_header("tuple")?;
        let _ = rmp::encode::write_array_len(self.out, len32(shape.len(), "shape")?);
        for d in shape {
            let _ = rmp::encode::write_uint(self.out, *d);
        }
        Ok(())
    }

    #[inline(never)]
    fn float(&mut self, f: f64) {
        let _ = rmp::encode::write_f64(self.out, f);
    }

    #[inline(never)]
    fn map_header(&mut self, len: usize) -> Result<(), EncodeError> {
        let _ = rmp::encode::write_map_len(self.out, len32(len, "dict")?);
        Ok(())
    }

    fn dict(&mut self, pairs: &[(String, Value)], depth: usize) -> Result<(), EncodeError> {
        self.map_header(pairs.len())?;
        for (k, v) in pairs {
            self.str(k)?;
            self.value(v, depth + 1)?;
        }
        Ok(())
    }

    #[inline(never)]
    fn mpz(&mut self, i: &Int) -> Result<(), EncodeError> {
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
        self.bin(&data)
    }

    #[inline(never)]
    fn int(&mut self, i: &Int) -> Result<(), EncodeError> {
        // ormsgpack: unsigned forms for non-negative values, signed for
        // negative ones, the smallest that holds the value (rmp's choice too).
        if let Some(v) = i.as_i64() {
            let _ = rmp::encode::write_sint(self.out, v);
        } else if let Some(v) = i.as_u64() {
            let _ = rmp::encode::write_uint(self.out, v);
        } else {
            self.tag_header("int")?;
            self.bin(&i.to_le_signed_python())?;
        }
        Ok(())
    }

    #[inline(never)]
    fn str(&mut self, s: &str) -> Result<(), EncodeError> {
        let _ = rmp::encode::write_str_len(self.out, len32(s.len(), "str")?);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    #[inline(never)]
    fn bin(&mut self, b: &[u8]) -> Result<(), EncodeError> {
        bin_header(self.out, b.len())?;
        self.out.extend_from_slice(b);
        Ok(())
    }

    #[inline(never)]
    fn array_header(&mut self, len: usize) -> Result<(), EncodeError> {
        let _ = rmp::encode::write_array_len(self.out, len32(len, "list")?);
        Ok(())
    }

    fn array(&mut self, items: &[Value], depth: usize) -> Result<(), EncodeError> {
        self.array_header(items.len())?;
        for item in items {
            self.value(item, depth + 1)?;
        }
        Ok(())
    }

    /// `{"type": name, "data": ` — the caller writes the data next.
    #[inline(never)]
    fn tag_header(&mut self, name: &str) -> Result<(), EncodeError> {
        let _ = rmp::encode::write_map_len(self.out, 2);
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
    /// Bytes of memory charged so far, and the most that may be.
    used: usize,
    max_memory: usize,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], owner: Option<&'a bytes::Bytes>, limits: DecodeLimits) -> Decoder<'a> {
        Decoder {
            buf,
            owner,
            pos: 0,
            max_depth: limits.max_depth,
            used: 0,
            max_memory: limits.max_memory.min(memory_bound(buf.len())),
        }
    }

    fn run(mut self) -> Result<(Value, usize), DecodeError> {
        self.charge(size_of::<Value>(), 0)?;
        let v = self.value()?;
        Ok((v, self.used))
    }

    /// Charges `bytes` of memory before they are allocated.
    fn charge(&mut self, bytes: usize, start: usize) -> Result<(), DecodeError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max_memory {
            return Err(DecodeError::TooLarge {
                offset: start,
                limit: self.max_memory,
            });
        }
        Ok(())
    }

    /// Charges one heap block of `bytes` (nothing when empty: no allocation).
    fn charge_alloc(&mut self, bytes: usize, start: usize) -> Result<(), DecodeError> {
        if bytes == 0 {
            return Ok(());
        }
        self.charge(bytes.saturating_add(ALLOC_OVERHEAD), start)
    }

    fn bin(&mut self, n: usize, start: usize) -> Result<Value, DecodeError> {
        let slice = self.take(n, start)?;
        self.charge_alloc(n, start)?;
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
                    self.charge_alloc(n.saturating_mul(size_of::<Value>()), start)?;
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
                    self.charge_alloc(n.saturating_mul(size_of::<(String, Value)>()), start)?;
                    if n > SMALL_MAP {
                        // The duplicate-key pass's index, while it lasts.
                        self.charge_alloc(n.saturating_mul(size_of::<usize>() + 1), start)?;
                    }
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
                        let pairs = dedup(std::mem::take(&mut m.pairs));
                        stack.pop();
                        v = self.untag(pairs, v_start)?;
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
        self.charge_alloc(n, start)?;
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

    /// Turns a decoded map into a tag value when it has both `type` and
    /// `data`, charging what the tag's value allocates anew.
    fn untag(&mut self, pairs: Vec<(String, Value)>, start: usize) -> Result<Value, DecodeError> {
        let v = untag(pairs, start)?;
        let extra = match &v {
            Value::Int(i) | Value::Mpz(i) => i.heap_size(),
            Value::NdArray { shape, .. } => shape.len() * size_of::<u64>() + size_of::<Value>(),
            Value::Foreign { .. } => size_of::<Value>(),
            _ => 0,
        };
        self.charge_alloc(extra, start)?;
        Ok(v)
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

/// Maps up to this size are checked for duplicate keys by scanning.
const SMALL_MAP: usize = 32;

struct MapFrame {
    pairs: Vec<(String, Value)>,
    key: Option<String>,
    left: usize,
    start: usize,
}

impl MapFrame {
    fn new(n: usize, start: usize) -> MapFrame {
        MapFrame {
            pairs: Vec::with_capacity(n),
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
        self.pairs.push((key, v));
        self.left -= 1;
        Ok(self.left == 0)
    }
}

/// A repeated key keeps its first position and its last value, as a Python
/// dict built from the map would. Small maps are scanned; large ones sorted
/// by key through an index (n log n, and no second copy of the keys, which
/// a hash index would hold).
fn dedup(mut pairs: Vec<(String, Value)>) -> Vec<(String, Value)> {
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
    // Stable: equal keys stay in arrival order.
    order.sort_by(|a, b| pairs[*a].0.cmp(&pairs[*b].0));
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
        let decoded = decode_shared(&input, DecodeLimits::default()).unwrap().0;
        assert_eq!(decoded, value);
        assert!(within(bytes_of(&decoded), &input), "payload was copied");
        assert_eq!(decoded, decode(&input).unwrap());
    }

    #[test]
    fn small_or_minor_payloads_are_copied() {
        // Too small to be worth sharing.
        let small = bytes::Bytes::from(encode(&Value::from(vec![1u8; 100])).unwrap());
        let decoded = decode_shared(&small, DecodeLimits::default()).unwrap().0;
        assert!(!within(bytes_of(&decoded), &small));
        // Large, but a small part of the message: must not pin the rest.
        let mixed = Value::List(vec![
            Value::from(vec![2u8; 5_000]),
            Value::Str("x".repeat(50_000)),
        ]);
        let input = bytes::Bytes::from(encode(&mixed).unwrap());
        let decoded = decode_shared(&input, DecodeLimits::default()).unwrap().0;
        assert_eq!(decoded, mixed);
        let Value::List(items) = &decoded else {
            panic!("expected a list")
        };
        assert!(!within(bytes_of(&items[0]), &input));
    }
}

#[cfg(test)]
mod memory_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn array32(n: usize) -> Vec<u8> {
        let mut out = vec![0xdd];
        out.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        out
    }

    fn within_bound(input: &[u8]) -> usize {
        let (v, memory) =
            decode_accounted(input, DecodeLimits::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            memory <= memory_bound(input.len()),
            "{memory} > {} for {} bytes",
            memory_bound(input.len()),
            input.len()
        );
        drop(v);
        memory
    }

    /// 16 MiB of one-byte ints: one `Value` each, counted.
    #[test]
    fn a_flat_16_mib_list_of_small_ints_stays_under_the_bound() {
        let n = 16 << 20;
        let mut input = array32(n);
        input.resize(5 + n, 0x01);
        let memory = within_bound(&input);
        assert!(memory >= n * size_of::<Value>(), "{memory}");
        eprintln!(
            "flat: {} MiB in, {} MiB accounted ({}x)",
            input.len() >> 20,
            memory >> 20,
            memory / input.len()
        );
    }

    /// 16 MiB of one-element arrays nested as deep as allowed, side by
    /// side: the worst case per byte (one allocation per byte).
    #[test]
    fn a_deeply_nested_16_mib_value_stays_under_the_bound() {
        let depth = DEFAULT_MAX_DEPTH - 1;
        let chain: Vec<u8> = std::iter::repeat_n(0x91, depth - 1).chain([0x00]).collect();
        let chains = (16 << 20) / chain.len();
        let mut input = array32(chains);
        for _ in 0..chains {
            input.extend_from_slice(&chain);
        }
        let memory = within_bound(&input);
        assert!(
            memory >= chains * (depth - 1) * size_of::<Value>(),
            "{memory}"
        );
        eprintln!(
            "nested: {} MiB in, {} MiB accounted ({}x)",
            input.len() >> 20,
            memory >> 20,
            memory / input.len()
        );
    }

    /// Containers nested inside each other, each announcing as many
    /// elements as the bytes left could hold: before, each was checked
    /// against the whole remaining input and allocated for it (here
    /// 200 x 1 Mi x 40 bytes); now the second is refused.
    #[test]
    fn nested_counts_the_input_does_not_back_are_refused_early() {
        let pad = 1 << 20;
        let mut input = Vec::new();
        for level in 0..200 {
            input.extend_from_slice(&array32(pad - level));
        }
        input.resize(input.len() + pad, 0xc0);
        assert!(matches!(
            decode_accounted(&input, DecodeLimits::default()),
            Err(DecodeError::TooLarge { offset: 5, .. })
        ));
    }

    #[test]
    fn the_configured_limit_applies_too() {
        let mut input = array32(100);
        input.resize(105, 0x01);
        let limits = DecodeLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_memory: 1000,
        };
        assert!(matches!(
            decode_accounted(&input, limits),
            Err(DecodeError::TooLarge { limit: 1000, .. })
        ));
    }

    #[test]
    fn duplicate_keys_keep_the_first_place_and_the_last_value() {
        for n in [3usize, 100] {
            let mut pairs: Vec<(String, Value)> = (0..n)
                .map(|k| (format!("k{k}"), Value::int(k as i64)))
                .collect();
            pairs.push(("k1".into(), Value::str("last")));
            pairs.push(("k0".into(), Value::str("zero")));
            pairs.push(("k1".into(), Value::str("really last")));
            let mut input = vec![0xde];
            input.extend_from_slice(&u16::try_from(pairs.len()).unwrap().to_be_bytes());
            for (k, v) in &pairs {
                encode_str_into(k, &mut input).unwrap();
                encode_into(v, &mut input, 4).unwrap();
            }
            let Value::Dict(got) = decode(&input).unwrap() else {
                panic!("expected a dict")
            };
            assert_eq!(got.len(), n);
            assert_eq!(got[0], ("k0".to_string(), Value::str("zero")));
            assert_eq!(got[1], ("k1".to_string(), Value::str("really last")));
            assert_eq!(
                got[n - 1],
                (format!("k{}", n - 1), Value::int(n as i64 - 1))
            );
        }
    }

    #[test]
    fn a_value_is_forty_bytes() {
        // MEMORY_FACTOR's worst case (one allocation of one Value per byte)
        // depends on it.
        assert!(size_of::<Value>() + ALLOC_OVERHEAD <= MEMORY_FACTOR);
        assert_eq!(size_of::<Value>(), 40);
    }
}
