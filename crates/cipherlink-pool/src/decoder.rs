//! The msgpack decoder behind [`crate::codec`]'s `decode*` functions: one
//! pass over the input, containers as frames on an explicit stack, and
//! every heap block the value needs charged before it is made (see
//! `MEMORY_FACTOR` in [`crate::codec`] for the bound, and [`crate::heap`]
//! for what a block is charged).
//!
//! Numeric lists: before an array's frame is opened, the decoder looks
//! ahead over its elements without allocating. When all of them are ints
//! in the `i64` range, or all floats, and all present, the list is read
//! into one typed vector (ints in the narrowest of `i8` to `i64` that holds
//! their range, which the look-ahead finds too); otherwise (a `u64` above `i64::MAX`, a mixed or
//! truncated list) it is decoded the general way, one [`Value`] an
//! element, with the same result and errors as always. The look-ahead stops
//! at the first element of another kind, so each byte is looked at once
//! more at most.

use std::mem::size_of;

use rmp::Marker;

use crate::codec::{memory_bound, DecodeLimits};
use crate::error::DecodeError;
use crate::heap::{array_cost, block_cost};
use crate::int_list::{self, IntList};
use crate::tags;
use crate::value::Value;

/// Below this a `bytes` value is copied even from a shared input.
const SHARE_MIN: usize = 4096;

/// Maps up to this size are checked for duplicate keys by scanning; larger
/// ones through an index (see [`tags::dedup`]).
pub(crate) const SMALL_MAP: usize = 32;

pub(crate) struct Decoder<'a> {
    buf: &'a [u8],
    /// The same bytes as `buf`, when they may be shared.
    owner: Option<&'a bytes::Bytes>,
    pos: usize,
    max_depth: usize,
    /// Bytes of memory charged so far (the stack's included), and the
    /// most the value's part may be.
    used: usize,
    max_memory: usize,
    /// The part of `used` that is the decoder's own stack: it has a bound
    /// of its own (its depth), not the value's.
    stack_used: usize,
}

impl<'a> Decoder<'a> {
    pub(crate) fn new(
        buf: &'a [u8],
        owner: Option<&'a bytes::Bytes>,
        limits: DecodeLimits,
    ) -> Decoder<'a> {
        Decoder {
            buf,
            owner,
            pos: 0,
            max_depth: limits.max_depth,
            used: 0,
            max_memory: limits.max_memory.min(memory_bound(buf.len())),
            stack_used: 0,
        }
    }

    pub(crate) fn run(mut self) -> Result<(Value, usize), DecodeError> {
        self.charge(size_of::<Value>(), 0)?;
        let v = self.value()?;
        Ok((v, self.used))
    }

    /// Charges `bytes` of memory before they are allocated. Nothing is
    /// given back when a block is freed while decoding (the decoder's own
    /// stack included), so the charge bounds the peak too.
    fn charge(&mut self, bytes: usize, start: usize) -> Result<(), DecodeError> {
        self.used = self.used.saturating_add(bytes);
        if self.used - self.stack_used > self.max_memory {
            return Err(DecodeError::TooLarge {
                offset: start,
                limit: self.max_memory,
            });
        }
        Ok(())
    }

    fn bin(&mut self, n: usize, start: usize) -> Result<Value, DecodeError> {
        let slice = self.take(n, start)?;
        // A shared slice is charged as if copied: it keeps the input alive.
        self.charge(block_cost(n), start)?;
        Ok(Value::Bytes(match self.owner {
            Some(owner) if n >= SHARE_MIN && 2 * n >= owner.len() => owner.slice_ref(slice),
            _ => bytes::Bytes::copy_from_slice(slice),
        }))
    }

    fn str(&mut self, n: usize, start: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(n, start)?;
        self.charge(block_cost(n), start)?;
        std::str::from_utf8(bytes)
            .map(|s| Value::Str(s.to_string()))
            .map_err(|_| DecodeError::InvalidUtf8 { offset: start })
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

    /// Opens a container: pushes its frame, growing the stack as
    /// [`stack_cost`] says and charging each block it grows into (the old
    /// one is alive too while its frames are moved over). The depth bounds
    /// the stack (`check_container` keeps it below `max_depth`), so its
    /// charge is not held against the value's limit.
    fn push(&mut self, stack: &mut Vec<Frame>, frame: Frame) {
        if stack.len() == stack.capacity() {
            let cap = next_capacity(stack.capacity())
                .min(self.max_depth)
                .max(stack.len() + 1);
            let cost = array_cost(cap, FRAME_SIZE);
            self.used = self.used.saturating_add(cost);
            self.stack_used = self.stack_used.saturating_add(cost);
            stack.reserve_exact(cap - stack.len());
        }
        stack.push(frame);
    }

    /// Decodes one value without recursion: containers are frames on an
    /// explicit stack, so depth costs heap (bounded by `max_depth`), never
    /// thread stack, whatever the build profile. The stack's blocks are
    /// charged as it grows ([`Decoder::push`]), like the value's.
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
                    } else if let Some(v) = self.numeric_list(n, start, stack.last())? {
                        v
                    } else {
                        self.charge(array_cost(n, size_of::<Value>()), start)?;
                        let frame = Frame::List {
                            items: Vec::with_capacity(n),
                            left: n,
                            start,
                        };
                        self.push(&mut stack, frame);
                        continue;
                    }
                }
                Item::Map(n) => {
                    self.check_container("map", n, 2, start, stack.len())?;
                    self.charge(array_cost(n, size_of::<(String, Value)>()), start)?;
                    if n > SMALL_MAP {
                        // The duplicate-key pass's index, while it lasts.
                        let index = array_cost(n, size_of::<usize>()) + array_cost(n, 1);
                        self.charge(index, start)?;
                    }
                    if n == 0 {
                        Value::Dict(Vec::new())
                    } else {
                        self.push(&mut stack, Frame::Map(MapFrame::new(n, start)));
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
                        let pairs = tags::dedup(std::mem::take(&mut m.pairs));
                        stack.pop();
                        v = self.untag(pairs, v_start)?;
                    }
                }
            }
        }
    }

    /// The array of `n` elements starting at `self.pos` as one typed
    /// vector, when every element is an int in the `i64` range or every
    /// one a float; `None` (nothing read or charged) otherwise. The data
    /// of a tuple tag stays general, since `Value::Tuple` holds values.
    fn numeric_list(
        &mut self,
        n: usize,
        start: usize,
        parent: Option<&Frame>,
    ) -> Result<Option<Value>, DecodeError> {
        if let Some(Frame::Map(m)) = parent {
            if m.expects_tuple_data() {
                return Ok(None);
            }
        }
        let rest = &self.buf[self.pos..];
        let Some(scanned) = scan_numeric(rest, n) else {
            return Ok(None);
        };
        // Exactly `n` elements, into exactly the capacity charged.
        let (v, len) = match scanned {
            Numeric::Ints { len, min, max } => {
                self.charge(array_cost(n, int_list::width(min, max)), start)?;
                let ints = Elements(&rest[..len], int_at);
                (Value::Ints(IntList::with_range(n, min, max, ints)), len)
            }
            Numeric::Floats { len } => {
                self.charge(array_cost(n, size_of::<f64>()), start)?;
                let mut v = Vec::with_capacity(n);
                v.extend(Elements(&rest[..len], float_at));
                (Value::Floats(v), len)
            }
        };
        self.pos += len;
        Ok(Some(v))
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
    /// `data`, charging what the tag's value allocates anew before it does.
    fn untag(&mut self, pairs: Vec<(String, Value)>, start: usize) -> Result<Value, DecodeError> {
        self.charge(tags::cost(&pairs), start)?;
        tags::untag(pairs, start)
    }
}

/// What one open container takes on the decoder's stack.
const FRAME_SIZE: usize = size_of::<Frame>();

/// The stack's capacities as it grows: 4 frames, then doubling (and never
/// past `max_depth`, which [`Decoder::push`] applies).
fn next_capacity(cap: usize) -> usize {
    if cap == 0 {
        4
    } else {
        cap.saturating_mul(2)
    }
}

/// The most the decoder's stack is charged for `levels` open containers:
/// every block it grows into, each charged as it is made and none given
/// back. Each level takes a byte of input at least, so `levels` is at most
/// the input's length, and `max_depth`.
pub(crate) fn stack_cost(levels: usize) -> usize {
    let (mut cap, mut cost) = (0usize, 0usize);
    while cap < levels {
        cap = next_capacity(cap);
        cost = cost.saturating_add(array_cost(cap, FRAME_SIZE));
    }
    cost
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
    key: Option<String>,
    left: usize,
    start: usize,
    /// The last `type` pair so far was the str `tuple`: a `data` value
    /// that follows it is a tuple's items.
    type_is_tuple: bool,
}

impl MapFrame {
    fn new(n: usize, start: usize) -> MapFrame {
        MapFrame {
            pairs: Vec::with_capacity(n),
            key: None,
            left: n,
            start,
            type_is_tuple: false,
        }
    }

    /// Whether the value being decoded is the data of a tuple tag, as the
    /// package writes one (`type` first).
    fn expects_tuple_data(&self) -> bool {
        self.type_is_tuple && self.key.as_deref() == Some("data")
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
        if key == "type" {
            self.type_is_tuple = v.as_str() == Some("tuple");
        }
        self.pairs.push((key, v));
        self.left -= 1;
        Ok(self.left == 0)
    }
}

/// What [`scan_numeric`] found: how many bytes the elements take, and for
/// ints the range they span (which sets how narrowly they are stored).
enum Numeric {
    Ints { len: usize, min: i64, max: i64 },
    Floats { len: usize },
}

/// Whether the `n` elements at the start of `buf` are all ints in the
/// `i64` range or all floats, and what they take; `None` at the first
/// element that is neither of the first one's kind, or is cut off.
fn scan_numeric(buf: &[u8], n: usize) -> Option<Numeric> {
    let mut len = 0usize;
    if let Some((first, _)) = int_at(buf) {
        let (mut min, mut max) = (first, first);
        for _ in 0..n {
            let (v, size) = int_at(buf.get(len..)?)?;
            (min, max) = (min.min(v), max.max(v));
            len += size;
        }
        return Some(Numeric::Ints { len, min, max });
    }
    float_at(buf)?;
    for _ in 0..n {
        len += float_at(buf.get(len..)?)?.1;
    }
    Some(Numeric::Floats { len })
}

/// The bytes after a marker, as an array, if they are all there.
fn after_marker<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.get(1..1 + N)?.try_into().ok()
}

/// The int in the `i64` range at the start of `b`, and its encoded length.
fn int_at(b: &[u8]) -> Option<(i64, usize)> {
    Some(match Marker::from_u8(*b.first()?) {
        Marker::FixPos(v) => (i64::from(v), 1),
        Marker::FixNeg(v) => (i64::from(v), 1),
        Marker::U8 => (i64::from(u8::from_be_bytes(after_marker(b)?)), 2),
        Marker::U16 => (i64::from(u16::from_be_bytes(after_marker(b)?)), 3),
        Marker::U32 => (i64::from(u32::from_be_bytes(after_marker(b)?)), 5),
        Marker::U64 => (i64::try_from(u64::from_be_bytes(after_marker(b)?)).ok()?, 9),
        Marker::I8 => (i64::from(i8::from_be_bytes(after_marker(b)?)), 2),
        Marker::I16 => (i64::from(i16::from_be_bytes(after_marker(b)?)), 3),
        Marker::I32 => (i64::from(i32::from_be_bytes(after_marker(b)?)), 5),
        Marker::I64 => (i64::from_be_bytes(after_marker(b)?), 9),
        _ => return None,
    })
}

/// The float at the start of `b` (a float32 widened, as the general path
/// does), and its encoded length.
fn float_at(b: &[u8]) -> Option<(f64, usize)> {
    Some(match Marker::from_u8(*b.first()?) {
        Marker::F32 => (f64::from(f32::from_be_bytes(after_marker(b)?)), 5),
        Marker::F64 => (f64::from_be_bytes(after_marker(b)?), 9),
        _ => return None,
    })
}

/// The elements of bytes that [`scan_numeric`] accepted, read with the
/// same function it checked them with.
struct Elements<'a, T>(&'a [u8], fn(&[u8]) -> Option<(T, usize)>);

impl<T> Iterator for Elements<'_, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        let (v, len) = (self.1)(self.0)?;
        self.0 = self.0.get(len..)?;
        Some(v)
    }
}

#[cfg(test)]
#[path = "decoder_tests.rs"]
mod tests;
