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
//! The decoder (the `decoder` module) is hand-written rather than rmp's or
//! rmpv's, because what a peer sends must not cost more than a small
//! multiple of what it sent, and neither gives that: containers are frames
//! on an explicit stack (depth costs heap bounded by `max_depth`, never
//! thread stack); a list of ints or of floats becomes one typed vector
//! ([`Value::Ints`], [`Value::Floats`]: 8 bytes an element at most, an int
//! only as many as the largest in its list needs, not a 40-byte [`Value`]); a large `bytes` value can be a slice of the received body
//! instead of a copy; and every heap block the value needs is charged,
//! before it is made, by what the allocator really takes for it
//! (the `heap` module), against [`memory_bound`] of the input: a decoded value
//! never takes more than [`MEMORY_FACTOR`] times its wire size (plus one
//! [`Value`]), however its element counts lie. The charge is returned
//! ([`decode_accounted`]) for the mailbox's per-sender budget.

use std::mem::size_of;

use rmp::Marker;

use crate::decoder::Decoder;
use crate::error::{DecodeError, EncodeError};
use crate::int::Int;
use crate::int_list::IntList;
use crate::value::Value;

/// How deep values may nest, by default (arrays, maps and tags each count).
pub const DEFAULT_MAX_DEPTH: usize = 256;

/// The largest `max_depth` a configuration may set: dropping, cloning,
/// comparing, encoding and converting a [`Value`] to JSON recurse once per
/// level, and at this depth they stay well inside a 2 MiB thread stack
/// (tested in a debug build).
pub const MAX_DEPTH_LIMIT: usize = 512;

/// The decoder's promise: a decoded value takes at most this many bytes of
/// memory per byte of its msgpack input, plus one [`Value`]; anything that
/// would take more is refused ([`DecodeError::TooLarge`]).
///
/// What the package sends fits, whatever its shape (`docs/pool-wire.md`
/// has the proof): the costliest is a list of elements of one byte each
/// (`None`, `True`, a mixed list of small ints), one 40-byte `Value` per
/// byte, whose block the allocator's size classes round up by at most 25%,
/// so 50 bytes per byte at most. Lists of ints or floats cost 8 bytes an
/// element at most (10 with the rounding); maps, strs, bytes and tags less per byte
/// than a list of `None`s. Only what the package never sends may be refused
/// within the bound: a tuple tag whose `data` comes before its `type`
/// (decoded compact first, then copied), or an ndarray tag whose shape has
/// hundreds of dimensions (numpy allows 64).
pub const MEMORY_FACTOR: usize = 50;

/// What a list of ints or floats costs, as the decoder makes it: at most
/// this many bytes per byte of its encoding, or one 32-byte block,
/// whichever is more. A float takes 8 bytes for at least 5 on the wire; an
/// int 1, 2, 4 or 8, as the largest magnitude in its list needs, for at
/// least 1 (so `[2**40, 1, 1, ...]` costs 8 per byte, plus the size-class
/// rounding). The 8 MiB list of 8 Mi ones is charged its size, once.
pub const NUMERIC_LIST_FACTOR: usize = 10;

/// The most memory a value decoded from `wire_len` bytes may take.
pub fn memory_bound(wire_len: usize) -> usize {
    MEMORY_FACTOR
        .saturating_mul(wire_len)
        .saturating_add(size_of::<Value>())
}

/// The most the decoder's own stack of open containers is charged when
/// decoding `wire_len` bytes with nesting limit `max_depth` (each level
/// takes a byte of input at least). The charge [`decode_accounted`]
/// returns is at most [`memory_bound`] plus this: the stack's blocks are
/// charged with the value, as the stack grows, so the charge bounds the
/// decoder's peak, but the stack is bounded by the depth, not by the
/// value's limit. 40 KiB at most for the default depth of 256.
pub fn stack_bound(wire_len: usize, max_depth: usize) -> usize {
    crate::decoder::stack_cost(wire_len.min(max_depth))
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
/// was charged: the value's blocks (at most `memory_bound(input.len())`)
/// and the decoder's stack (at most [`stack_bound`]), everything it
/// allocated while decoding, so the charge bounds the peak too.
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
            Value::Ints(v) => self.ints(v, depth)?,
            Value::Floats(v) => self.floats(v, depth)?,
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

    /// The bytes [`Value::List`] of these ints gives: each in its smallest
    /// form, and the same depth check on the elements.
    #[inline(never)]
    fn ints(&mut self, v: &IntList, depth: usize) -> Result<(), EncodeError> {
        self.elements_depth(v.len(), depth)?;
        self.array_header(v.len())?;
        for i in v {
            let _ = rmp::encode::write_sint(self.out, i);
        }
        Ok(())
    }

    /// The bytes [`Value::List`] of these floats gives: each float64.
    #[inline(never)]
    fn floats(&mut self, v: &[f64], depth: usize) -> Result<(), EncodeError> {
        self.elements_depth(v.len(), depth)?;
        self.array_header(v.len())?;
        for f in v {
            self.float(*f);
        }
        Ok(())
    }

    /// The elements of a list at `depth` are one deeper, and a general list
    /// refuses them there (see `value`).
    fn elements_depth(&self, len: usize, depth: usize) -> Result<(), EncodeError> {
        if len > 0 && depth + 1 > self.max_depth {
            return Err(EncodeError::TooDeep {
                limit: self.max_depth,
            });
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

#[cfg(test)]
#[path = "codec_vectors.rs"]
pub(crate) mod vectors;
