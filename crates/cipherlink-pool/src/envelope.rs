//! The request body: `{"object": ..., "id": ...}`, in the 4.x or 5.x layout.
//! Pure functions over bytes.
//!
//! An int id may be at most [`MAX_INT_ID_BYTES`] long: ids are hashed,
//! compared, formatted into replies and logs, and kept while buffered, and a
//! peer chooses them (4.x numbers ids with ints; 5.x stores whatever type
//! arrives). Str ids are not limited beyond the body (Python users build
//! them from names), but are shortened wherever they are shown.

use std::fmt;

use crate::codec::{self, DecodeLimits};
use crate::error::{EncodeError, EnvelopeError};
use crate::int::Int;
use crate::value::Value;

/// Which `tno.mpc.communication` major version's wire to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WireVersion {
    /// 4.x: the value inline, ids are msgpack ints (counter) or strs.
    V4,
    /// 5.x (default): the value double-encoded as bin, ids are strs.
    #[default]
    V5,
}

impl WireVersion {
    /// "4.x" or "5.x", for messages.
    pub fn label(self) -> &'static str {
        match self {
            WireVersion::V4 => "4.x",
            WireVersion::V5 => "5.x",
        }
    }
}

impl fmt::Display for WireVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for WireVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "4" | "4.x" | "v4" => Ok(WireVersion::V4),
            "5" | "5.x" | "v5" => Ok(WireVersion::V5),
            other => Err(format!("wire version {other:?}: expected 4 or 5")),
        }
    }
}

/// A message id. Python compares ids by value and type, so `Int(14)` and
/// `Str("14")` are different ids, as they are in the package.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// A str id (5.x always; 4.x when given by the user).
    Str(String),
    /// An int id (4.x's default counter ids).
    Int(Int),
}

impl MessageId {
    /// The id as the value it is on the wire (a str, or a 4.x int).
    pub fn to_value(&self) -> Value {
        match self {
            MessageId::Str(s) => Value::Str(s.clone()),
            MessageId::Int(i) => Value::Int(i.clone()),
        }
    }
}

/// Shown in logs and replies: a str quoted and cut to
/// 64 characters and its length, an int in full up to 77 digits
/// (ids longer than [`MAX_INT_ID_BYTES`] are refused anyway).
impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageId::Str(s) => f.write_str(&crate::text::quoted(s)),
            MessageId::Int(i) => f.write_str(&i.short()),
        }
    }
}

/// The longest int id accepted, in bytes of its tag's two's complement
/// (`(bit_length + 8) // 8`): about 150 decimal digits.
pub const MAX_INT_ID_BYTES: u64 = 64;

impl MessageId {
    /// Heap bytes the id holds, for the mailbox's accounting.
    pub(crate) fn heap_size(&self) -> usize {
        match self {
            MessageId::Str(s) => crate::heap::block_cost(s.len()),
            MessageId::Int(i) => i.heap_size(),
        }
    }
}

impl From<&str> for MessageId {
    fn from(s: &str) -> MessageId {
        MessageId::Str(s.to_string())
    }
}

impl From<String> for MessageId {
    fn from(s: String) -> MessageId {
        MessageId::Str(s)
    }
}

impl From<i64> for MessageId {
    fn from(v: i64) -> MessageId {
        MessageId::Int(v.into())
    }
}

fn bin_header(len: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    codec::bin_header(out, len)
}

/// Builds the request body for one message.
pub fn encode(version: WireVersion, id: &MessageId, value: &Value) -> Result<Vec<u8>, EncodeError> {
    let parts = encode_object(version, value, codec::DEFAULT_MAX_DEPTH)?.finish(id)?;
    Ok(parts.concat())
}

/// Where the 5.x bin header starts: after `fixmap(2), "object"`.
const OBJECT_AT: usize = 8;
/// The longest bin header (bin32: marker and 4 length bytes).
const BIN32_HEADER: usize = 5;
/// A top-level `bytes` value this long or longer is sent from where it is
/// instead of being copied into the body.
const SHARE_FROM: usize = 16 * 1024;

/// The start of a request body, `{"object": <value>`, before the id is
/// known: encoding first lets a send fail on an unencodable value without
/// spending an id. A large top-level `bytes` value (the common bulk
/// payload) stays a shared chunk of its own, so the body is sent without
/// copying it; anything else is encoded straight into one buffer (5.x
/// double-encodes the value as a bin, which a naive build copies again).
/// Cloning is cheap for the shared case, as a broadcast needs.
#[derive(Debug, Clone)]
pub struct EncodedObject {
    head: Vec<u8>,
    shared: Option<bytes::Bytes>,
}

impl EncodedObject {
    /// Appends `"id": <id>` and returns the body's parts, in order.
    pub fn finish(self, id: &MessageId) -> Result<Vec<bytes::Bytes>, EncodeError> {
        let EncodedObject { mut head, shared } = self;
        match shared {
            None => {
                finish_body(&mut head, id)?;
                Ok(vec![head.into()])
            }
            Some(payload) => {
                let mut tail = Vec::with_capacity(16);
                finish_body(&mut tail, id)?;
                Ok(vec![head.into(), payload, tail.into()])
            }
        }
    }
}

/// Encodes `{"object": <value>` for `version`; [`EncodedObject::finish`]
/// adds the id. Nesting deeper than `max_depth` is refused, as the
/// receiving side does.
pub fn encode_object(
    version: WireVersion,
    value: &Value,
    max_depth: usize,
) -> Result<EncodedObject, EncodeError> {
    if let Value::Bytes(payload) = value {
        if payload.len() >= SHARE_FROM {
            return shared_bytes_object(version, payload);
        }
    }
    let mut out = Vec::with_capacity(OBJECT_AT + BIN32_HEADER + size_hint(value) + 16);
    out.extend_from_slice(b"\x82\xa6object");
    match version {
        WireVersion::V4 => codec::encode_into(value, &mut out, max_depth)?,
        WireVersion::V5 => {
            // Reserve room for the longest bin header, encode, then write the
            // header the length needs; a shorter header means the value is
            // under 64 KiB, so moving it back is cheap.
            out.extend_from_slice(&[0; BIN32_HEADER]);
            codec::encode_into(value, &mut out, max_depth)?;
            let inner_len = out.len() - OBJECT_AT - BIN32_HEADER;
            let mut header = Vec::with_capacity(BIN32_HEADER);
            bin_header(inner_len, &mut header)?;
            let gap = BIN32_HEADER - header.len();
            if gap > 0 {
                out.copy_within(OBJECT_AT + BIN32_HEADER.., OBJECT_AT + header.len());
                out.truncate(out.len() - gap);
            }
            out[OBJECT_AT..OBJECT_AT + header.len()].copy_from_slice(&header);
        }
    }
    Ok(EncodedObject {
        head: out,
        shared: None,
    })
}

/// `{"object": <bytes>` with the bytes left where they are: only the
/// headers are written (4.x: the bin header; 5.x: the outer bin header of
/// the inner document, then the inner document's own bin header).
fn shared_bytes_object(
    version: WireVersion,
    payload: &bytes::Bytes,
) -> Result<EncodedObject, EncodeError> {
    let mut inner_header = Vec::with_capacity(BIN32_HEADER);
    bin_header(payload.len(), &mut inner_header)?;
    let mut head = Vec::with_capacity(OBJECT_AT + 2 * BIN32_HEADER);
    head.extend_from_slice(b"\x82\xa6object");
    if version == WireVersion::V5 {
        bin_header(inner_header.len() + payload.len(), &mut head)?;
    }
    head.extend_from_slice(&inner_header);
    Ok(EncodedObject {
        head,
        shared: Some(payload.clone()),
    })
}

/// Appends `"id": <id>` to a body begun by [`encode_object`].
fn finish_body(body: &mut Vec<u8>, id: &MessageId) -> Result<(), EncodeError> {
    body.extend_from_slice(b"\xa2id");
    match id {
        // The common case, without building a Value (and cloning the str).
        MessageId::Str(s) => codec::encode_str_into(s, body),
        MessageId::Int(_) => codec::encode_into(&id.to_value(), body, 1),
    }
}

/// Roughly how many bytes `value` encodes to, so the body is allocated once
/// for the large values (bytes, str, numpy data) that matter. Exact for a
/// compact list, so that echoing a large one does not double its buffer.
fn size_hint(value: &Value) -> usize {
    match value {
        Value::Bytes(b) => b.len() + 5,
        Value::Str(s) => s.len() + 5,
        Value::Ints(v) => v.iter().map(int_len).sum::<usize>() + 5,
        Value::Floats(v) => 9 * v.len() + 5,
        Value::List(items) | Value::Tuple(items) if items.len() <= 16 => {
            items.iter().map(size_hint).sum::<usize>() + 32
        }
        _ => 64,
    }
}

/// The length of an int's smallest msgpack form (rmp's `write_sint`).
fn int_len(i: i64) -> usize {
    match i {
        -32..=127 => 1,
        -128..=255 => 2,
        -32_768..=65_535 => 3,
        -2_147_483_648..=4_294_967_295 => 5,
        _ => 9,
    }
}

/// Decodes a request body of the given version into (id, value).
pub fn decode(
    version: WireVersion,
    body: &[u8],
    max_depth: usize,
) -> Result<(MessageId, Value), EnvelopeError> {
    let limits = DecodeLimits::depth(max_depth);
    decode_with(version, body, limits, |inner| {
        codec::decode_accounted(inner, limits)
    })
    .map(|d| (d.id, d.value))
}

/// A decoded message and the bytes of memory its value was charged.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The message id.
    pub id: MessageId,
    /// The message.
    pub value: Value,
    /// Memory the decoder charged for the value (see
    /// [`codec::decode_accounted`]); at most [`codec::memory_bound`] of the
    /// body's length, plus [`codec::stack_bound`] for the decoder's stack.
    pub memory: usize,
}

/// [`decode`] of a received body within `limits`, where a large `bytes`
/// payload may share the body instead of copying it (see
/// [`codec::decode_shared`]); same answers.
pub fn decode_received(
    version: WireVersion,
    body: &bytes::Bytes,
    limits: DecodeLimits,
) -> Result<Decoded, EnvelopeError> {
    decode_with(version, body, limits, |inner| {
        codec::decode_shared(&body.slice_ref(inner), limits)
    })
}

/// The well-formed 5.x body through `decode_inner`, anything else through
/// [`decode_general`].
fn decode_with(
    version: WireVersion,
    body: &[u8],
    limits: DecodeLimits,
    decode_inner: impl FnOnce(&[u8]) -> Result<(Value, usize), crate::error::DecodeError>,
) -> Result<Decoded, EnvelopeError> {
    if version == WireVersion::V5 {
        if let Some((id, inner)) = split_v5(body) {
            let (value, memory) = decode_inner(inner).map_err(EnvelopeError::Inner)?;
            return Ok(Decoded { id, value, memory });
        }
    }
    decode_general(version, body, limits)
}

/// The well-formed 5.x body, `{"object": bin, "id": str}` in either order,
/// read in place with rmp: the inner document is borrowed from the body
/// instead of copied out as a bytes value first (a second copy of every
/// payload). Anything else returns `None`, and [`decode_general`] gives the
/// same answer, and error, as it always did.
pub(crate) fn split_v5(body: &[u8]) -> Option<(MessageId, &[u8])> {
    use rmp::decode::{read_bin_len, read_map_len, read_str_len, Bytes};
    fn take<'a>(rd: &mut Bytes<'a>, n: u32) -> Option<&'a [u8]> {
        let rest = rd.remaining_slice();
        let n = usize::try_from(n).ok()?;
        let (head, tail) = (rest.get(..n)?, rest.get(n..)?);
        *rd = Bytes::new(tail);
        Some(head)
    }
    fn str<'a>(rd: &mut Bytes<'a>) -> Option<&'a str> {
        let n = read_str_len(rd).ok()?;
        std::str::from_utf8(take(rd, n)?).ok()
    }
    let mut rd = Bytes::new(body);
    if read_map_len(&mut rd).ok()? != 2 {
        return None;
    }
    let mut id = None;
    let mut object = None;
    for _ in 0..2 {
        match str(&mut rd)? {
            "object" if object.is_none() => {
                let n = read_bin_len(&mut rd).ok()?;
                object = Some(take(&mut rd, n)?);
            }
            "id" if id.is_none() => id = Some(MessageId::Str(str(&mut rd)?.to_string())),
            _ => return None,
        }
    }
    Some((id?, object?))
}

/// Decodes any body the generic way: the outer document as a value, then
/// the checks, in the package's order.
fn decode_general(
    version: WireVersion,
    body: &[u8],
    limits: DecodeLimits,
) -> Result<Decoded, EnvelopeError> {
    let (outer, outer_memory) =
        codec::decode_accounted(body, limits).map_err(EnvelopeError::Outer)?;
    let pairs = match outer {
        Value::Dict(pairs) => pairs,
        other => {
            return Err(EnvelopeError::NotAMap {
                found: other.kind(),
            })
        }
    };
    let keys_ok = match version {
        // 5.x: `msg.keys() == {"id", "object"}`.
        WireVersion::V5 => {
            pairs.len() == 2 && pairs.iter().all(|(k, _)| k == "id" || k == "object")
        }
        // 4.x reads the two keys and ignores the rest.
        WireVersion::V4 => ["id", "object"]
            .iter()
            .all(|want| pairs.iter().any(|(k, _)| k == want)),
    };
    if !keys_ok {
        return Err(EnvelopeError::Keys {
            found: crate::text::key_list(pairs.iter().map(|(k, _)| k.as_str())),
        });
    }
    let mut id = None;
    let mut object = None;
    for (k, v) in pairs {
        match k.as_str() {
            "id" => id = Some(v),
            "object" => object = Some(v),
            _ => {}
        }
    }
    let id = match id {
        Some(Value::Str(s)) => MessageId::Str(s),
        Some(Value::Int(i)) if i.python_byte_len() > MAX_INT_ID_BYTES => {
            return Err(EnvelopeError::IdTooLarge {
                bytes: i.python_byte_len(),
                limit: MAX_INT_ID_BYTES,
            })
        }
        Some(Value::Int(i)) => MessageId::Int(i),
        Some(other) => {
            return Err(EnvelopeError::BadId {
                found: other.kind(),
            })
        }
        None => {
            return Err(EnvelopeError::Keys {
                found: "object".into(),
            })
        }
    };
    let object = object.unwrap_or(Value::Nil);
    let (value, memory) = match version {
        // The outer document's charge covers the value (and a little more).
        WireVersion::V4 => (object, outer_memory),
        WireVersion::V5 => match object {
            Value::Bytes(inner) => {
                codec::decode_accounted(&inner, limits).map_err(EnvelopeError::Inner)?
            }
            other => {
                return Err(EnvelopeError::ObjectNotBytes {
                    found: other.kind(),
                })
            }
        },
    };
    Ok(Decoded { id, value, memory })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::vectors::{hex, unhex};

    /// A large `bytes` payload sent from where it is gives exactly the
    /// bytes of encoding the whole envelope as one msgpack document.
    #[test]
    fn shared_payload_bodies_are_byte_identical() {
        for len in [SHARE_FROM - 1, SHARE_FROM, 70_000, 1 << 20] {
            let value = Value::from(vec![0x5a; len]);
            let id = MessageId::from("m7");
            for version in [WireVersion::V4, WireVersion::V5] {
                let object = match version {
                    WireVersion::V4 => value.clone(),
                    WireVersion::V5 => Value::from(codec::encode(&value).unwrap_or_default()),
                };
                let whole = Value::Dict(vec![
                    ("object".to_string(), object),
                    ("id".to_string(), Value::str("m7")),
                ]);
                let expected = codec::encode(&whole).unwrap_or_default();
                let parts = encode_object(version, &value, codec::DEFAULT_MAX_DEPTH)
                    .and_then(|o| o.finish(&id))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(parts.len(), if len >= SHARE_FROM { 3 } else { 1 });
                assert!(parts.concat() == expected, "{version:?} {len}");
            }
        }
    }

    fn big_2_100() -> Value {
        Value::Int(
            "1267650600228229401496703205376"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// The captured bodies in tno-wire.md section 3a.
    fn captured() -> Vec<(WireVersion, MessageId, Value, &'static str)> {
        vec![
            (WireVersion::V4, MessageId::from(0), "hi".into(), "82a66f626a656374a26869a2696400"),
            (WireVersion::V4, "m0".into(), "hi".into(), "82a66f626a656374a26869a26964a26d30"),
            (
                WireVersion::V4,
                "m1".into(),
                big_2_100(),
                "82a66f626a65637482a474797065a3696e74a464617461c40d00000000000000000000000010a26964a26d31",
            ),
            (WireVersion::V5, "0".into(), "hi".into(), "82a66f626a656374c403a26869a26964a130"),
            (WireVersion::V5, "m0".into(), "hi".into(), "82a66f626a656374c403a26869a26964a26d30"),
            (
                WireVersion::V5,
                "m1".into(),
                big_2_100(),
                "82a66f626a656374c41e82a474797065a3696e74a464617461c40d00000000000000000000000010a26964a26d31",
            ),
        ]
    }

    #[test]
    fn encodes_captured_bodies() {
        for (v, id, value, want) in captured() {
            let got = encode(v, &id, &value).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(hex(&got), want, "{v} {id}");
        }
    }

    #[test]
    fn decodes_captured_bodies() {
        for (v, id, value, body) in captured() {
            let got = decode(v, &unhex(body), 64).unwrap_or_else(|e| panic!("{v} {id}: {e}"));
            assert_eq!(got, (id, value));
        }
    }

    #[test]
    fn v4_body_to_v5_party_names_both_versions() {
        let err = decode(
            WireVersion::V5,
            &unhex("82a66f626a656374a26869a26964a26d30"),
            64,
        );
        let msg = match err {
            Err(e @ EnvelopeError::ObjectNotBytes { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        };
        assert!(msg.contains("4.x") && msg.contains("5.x"), "{msg}");
    }

    #[test]
    fn v5_keys_must_be_exact() {
        // {"object": b"\xc0"} only.
        let e = decode(WireVersion::V5, &unhex("81a66f626a656374c401c0"), 64);
        assert!(
            matches!(e, Err(EnvelopeError::Keys { ref found }) if found == "object"),
            "{e:?}"
        );
        // 4.x ignores extra keys.
        let body = unhex("83a66f626a656374c0a26964a161a178c0");
        assert_eq!(
            decode(WireVersion::V4, &body, 64).ok(),
            Some((MessageId::from("a"), Value::Nil))
        );
        assert!(decode(WireVersion::V5, &body, 64).is_err());
    }

    #[test]
    fn the_size_of_a_compact_list_is_exact() {
        let ints = vec![0, 127, 128, 255, 256, 65_535, 65_536, -32, -33, -128, -129];
        let more = [
            -32_768,
            -32_769,
            i64::from(i32::MIN),
            i64::from(i32::MIN) - 1,
        ];
        let ints: Vec<i64> = ints
            .into_iter()
            .chain(more)
            .chain([i64::MIN, i64::MAX])
            .collect();
        for v in [Value::Ints(ints.into()), Value::Floats(vec![0.5; 20])] {
            let encoded = codec::encode(&v).unwrap_or_else(|e| panic!("{e}"));
            // Room for the longest array header (5) where the encoding
            // has an array16 header (3) for these 17 and 20 elements.
            assert_eq!(size_hint(&v) - 5, encoded.len() - 3, "{v:?}");
        }
    }

    #[test]
    fn large_inner_uses_bin32() {
        let body = encode(WireVersion::V5, &"x".into(), &Value::from(vec![7; 70_000]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&body[8..13], &[0xc6, 0x00, 0x01, 0x11, 0x75]);
        let (_, v) = decode(WireVersion::V5, &body, 64).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(v.as_bytes().map(<[u8]>::len), Some(70_000));
    }
}
