#![allow(clippy::unwrap_used)]

use super::*;
use crate::codec::{
    decode, decode_accounted, decode_shared, encode, encode_into, encode_str_into,
    DEFAULT_MAX_DEPTH, MEMORY_FACTOR, NUMERIC_LIST_FACTOR,
};

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

fn array32(n: usize) -> Vec<u8> {
    let mut out = vec![0xdd];
    out.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
    out
}

/// Decodes, checks the charge against the bound, and returns it.
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

/// 16 MiB of one-byte ints: one typed vector, a byte an element; with one
/// large int among them, 8 bytes an element, still within the factor.
#[test]
fn a_flat_16_mib_list_of_small_ints_is_one_typed_vector() {
    let n = 16 << 20;
    let mut input = array32(n);
    input.resize(5 + n, 0x01);
    let (v, memory) = decode_accounted(&input, DecodeLimits::default()).unwrap();
    assert!(matches!(&v, Value::Ints(items) if items.len() == n && items.element_size() == 1));
    assert!(memory >= n, "{memory}");
    assert!(memory <= 2 * input.len(), "{memory}");
    // The first element 2^62 (9 bytes) instead of two ones.
    input[5..14].copy_from_slice(&[0xcf, 0x40, 0, 0, 0, 0, 0, 0, 0]);
    input[1..5].copy_from_slice(&u32::try_from(n - 8).unwrap().to_be_bytes());
    let (v, memory) = decode_accounted(&input, DecodeLimits::default()).unwrap();
    assert!(matches!(&v, Value::Ints(items) if items.len() == n - 8 && items.element_size() == 8));
    assert!(memory >= 8 * (n - 8), "{memory}");
    assert!(memory <= NUMERIC_LIST_FACTOR * input.len(), "{memory}");
}

/// The costliest list per byte: one-byte elements that are not all ints
/// (here `None`), one `Value` each.
#[test]
fn a_flat_16_mib_list_of_nones_stays_under_the_bound() {
    let n = 16 << 20;
    let mut input = array32(n);
    input.resize(5 + n, 0xc0);
    let memory = within_bound(&input);
    assert!(memory >= n * size_of::<Value>(), "{memory}");
}

/// 16 MiB of one-element arrays nested as deep as allowed, side by
/// side: one 48-byte block per byte.
#[test]
fn a_deeply_nested_16_mib_value_stays_under_the_bound() {
    let depth = DEFAULT_MAX_DEPTH - 1;
    let chain: Vec<u8> = std::iter::repeat_n(0x91, depth - 1).chain([0xc0]).collect();
    let chains = (16 << 20) / chain.len();
    let mut input = array32(chains);
    for _ in 0..chains {
        input.extend_from_slice(&chain);
    }
    let memory = within_bound(&input);
    assert!(
        memory >= chains * (depth - 1) * block_cost(size_of::<Value>()),
        "{memory}"
    );
}

/// Containers nested inside each other, each announcing as many elements
/// as the bytes left could hold: the second is refused.
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
    input.resize(105, 0xc0);
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
    // MEMORY_FACTOR's worst cases (a 40-byte Value per byte, in a block
    // the allocator may round up by 25%) depend on it.
    assert_eq!(size_of::<Value>(), 40);
    assert!(block_cost(size_of::<Value>()) <= MEMORY_FACTOR);
}

/// Every int form msgpack has, in the `i64` range, as one list.
fn every_int_form() -> (Vec<u8>, Vec<i64>) {
    let hex = "9e00 7f e0 ff cc80 ccff cd0100 ce00010000 cf7fffffffffffffff \
               d080 d18000 d280000000 d38000000000000000 cf0000000000000001";
    let bytes = hex::decode(hex.replace(' ', "")).unwrap();
    let want = vec![
        0,
        127,
        -32,
        -1,
        128,
        255,
        256,
        65_536,
        i64::MAX,
        -128,
        -32_768,
        i64::from(i32::MIN),
        i64::MIN,
        1,
    ];
    (bytes, want)
}

#[test]
fn lists_of_ints_or_floats_decode_to_typed_vectors() {
    let (input, want) = every_int_form();
    assert_eq!(decode(&input).unwrap(), Value::Ints(want.clone().into()));
    assert!(matches!(decode(&input).unwrap(), Value::Ints(v) if v.to_vec() == want));
    // float32 widened, float64 as it is.
    let floats = hex::decode("93ca3fc00000cb7ff8000000000000cb8000000000000000").unwrap();
    match decode(&floats).unwrap() {
        Value::Floats(v) => {
            assert_eq!(v.len(), 3);
            assert_eq!(v[0], 1.5);
            assert!(v[1].is_nan());
            assert_eq!(v[2].to_bits(), (-0.0f64).to_bits());
        }
        other => panic!("expected floats, got {other:?}"),
    }
}

/// A list that is not all ints (or not all floats) is decoded the general
/// way, element by element, whatever position breaks it.
#[test]
fn mixed_lists_decode_the_general_way() {
    let cases: &[(&str, Value)] = &[
        // A u64 above i64::MAX does not fit the typed vector.
        (
            "9201cf8000000000000000",
            Value::List(vec![Value::int(1), Value::int(1u64 << 63)]),
        ),
        ("93010203", Value::Ints(vec![1, 2, 3].into())),
        (
            "930102c0",
            Value::List(vec![Value::int(1), Value::int(2), Value::Nil]),
        ),
        (
            "9301cb3ff0000000000000a178",
            Value::List(vec![Value::int(1), Value::Float(1.0), Value::str("x")]),
        ),
        (
            "92cb3ff000000000000001",
            Value::List(vec![Value::Float(1.0), Value::int(1)]),
        ),
        (
            "9291019201c0",
            Value::List(vec![
                Value::Ints(vec![1].into()),
                Value::List(vec![Value::int(1), Value::Nil]),
            ]),
        ),
    ];
    for (h, want) in cases {
        let got = decode(&hex::decode(h).unwrap()).unwrap();
        assert_eq!(&got, want, "{h}");
        assert_eq!(
            matches!(got, Value::Ints(_)),
            matches!(want, Value::Ints(_)),
            "{h}: {got:?}"
        );
    }
}

/// Cut-off numeric lists give the error they always gave.
#[test]
fn truncated_numeric_lists_fail_as_before() {
    for (h, offset, needed) in [("930101cd", 3, 2), ("9201cd00", 2, 1), ("92cb3ff0", 1, 6)] {
        let got = decode(&hex::decode(h).unwrap());
        assert_eq!(got, Err(DecodeError::Truncated { offset, needed }), "{h}");
    }
    // Announcing more elements than there are bytes is refused up front.
    assert!(matches!(
        decode(&hex::decode("dc00050102").unwrap()),
        Err(DecodeError::LengthExceedsInput { .. })
    ));
    // A typed list where a map key should be is a non-str key, as before.
    assert_eq!(
        decode(&hex::decode("8192010201").unwrap()),
        Err(DecodeError::NonStrKey {
            offset: 1,
            found: "list"
        })
    );
}

/// What goes back out is byte for byte what the general form gave, and
/// what came in (for canonical input).
#[test]
fn typed_lists_encode_as_the_general_form() {
    let (input, want) = every_int_form();
    let general = Value::List(want.iter().map(|i| Value::int(*i)).collect());
    let typed = decode(&input).unwrap();
    assert_eq!(encode(&typed).unwrap(), encode(&general).unwrap());
    let floats = vec![1.5, f64::NAN, -0.0, f64::INFINITY, 1e300];
    let general_f = Value::List(floats.iter().map(|f| Value::Float(*f)).collect());
    assert_eq!(
        encode(&Value::Floats(floats)).unwrap(),
        encode(&general_f).unwrap()
    );
    let canonical = [
        "93010203",
        "dc0010000102030405060708090a0b0c0d0e0f",
        "92cb3ff8000000000000cbc000000000000000",
        "930102c0",
        "9291019201c0",
        "920178",
        "9201cf8000000000000000",
    ];
    for h in canonical {
        let bytes = hex::decode(h).unwrap();
        assert_eq!(hex::encode(encode(&decode(&bytes).unwrap()).unwrap()), h);
    }
    // The depth limit applies to the elements as it does in a general list.
    let mut deep = Value::Ints(vec![1].into());
    let mut deep_general = Value::List(vec![Value::int(1)]);
    for _ in 0..DEFAULT_MAX_DEPTH - 1 {
        deep = Value::List(vec![deep]);
        deep_general = Value::List(vec![deep_general]);
    }
    assert_eq!(encode(&deep).unwrap(), encode(&deep_general).unwrap());
    assert!(encode(&Value::List(vec![deep_general])).is_err());
    assert!(encode(&Value::List(vec![deep])).is_err());
}

/// A tuple's items are values: its data stays general in the package's key
/// order, and is converted (and charged) when `data` comes first.
#[test]
fn tuple_data_stays_general() {
    // {"type": "tuple", "data": [1, 2]}
    let tagged = hex::decode("82a474797065a57475706c65a464617461920102").unwrap();
    let items = vec![Value::int(1), Value::int(2)];
    assert!(matches!(decode(&tagged).unwrap(), Value::Tuple(v) if v == items));
    // {"data": [1, 2], "type": "tuple"}
    let data_first = hex::decode("82a464617461920102a474797065a57475706c65").unwrap();
    assert!(matches!(decode(&data_first).unwrap(), Value::Tuple(v) if v == items));
    // {"data": [1, 2], "x": "tuple"}: a plain dict keeps the typed list.
    let plain = hex::decode("82a464617461920102a178a57475706c65").unwrap();
    let Value::Dict(pairs) = decode(&plain).unwrap() else {
        panic!("expected a dict")
    };
    assert!(matches!(pairs[0].1, Value::Ints(_)));
}

/// One element of each shape that costs the most per byte, repeated to
/// fill `size` bytes in one list.
fn repeated(element: &[u8], size: usize) -> Vec<u8> {
    let count = size / element.len();
    let mut input = array32(count);
    for _ in 0..count {
        input.extend_from_slice(element);
    }
    input
}

/// A list of `n` ints of which the first needs `width` bytes in memory
/// and the others are ones: the most an int list costs per byte.
fn wide_ints(n: usize, width: usize) -> Vec<u8> {
    let first: &[u8] = match width {
        8 => &[0xcf, 0x40, 0, 0, 0, 0, 0, 0, 0],
        4 => &[0xce, 0x40, 0, 0, 0],
        2 => &[0xcd, 0x40, 0],
        _ => &[0x01],
    };
    let mut out = list_of(n, &[0x01]);
    let header = out.len() - n;
    out.splice(header..header + 1, first.iter().copied());
    out
}

/// `n` of `element` in one list with the smallest header.
fn list_of(n: usize, element: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match n {
        0..=15 => out.push(0x90 | n as u8),
        16..=65_535 => {
            out.push(0xdc);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => out = array32(n),
    }
    for _ in 0..n {
        out.extend_from_slice(element);
    }
    out
}

/// A binary tree of two-element lists, `levels` deep, with `None` leaves.
fn tree(levels: u32) -> Vec<u8> {
    if levels == 0 {
        return vec![0xc0];
    }
    let child = tree(levels - 1);
    let mut out = vec![0x92];
    out.extend_from_slice(&child);
    out.extend_from_slice(&child);
    out
}

/// A map of `n` pairs under the empty key (`{"": None}` repeated), which
/// takes the duplicate-key index when `n` is large.
fn map_of_empty_keys(n: usize) -> Vec<u8> {
    let mut out = vec![0xdf];
    out.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
    for _ in 0..n {
        out.extend_from_slice(&[0xa0, 0xc0]);
    }
    out
}

/// `{"type": name, "data": data}` as the package writes a tag.
fn tag(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    encode_str_into("type", &mut out).unwrap();
    encode_str_into(name, &mut out).unwrap();
    encode_str_into("data", &mut out).unwrap();
    out.extend_from_slice(data);
    out
}

/// An ndarray tag with a shape of `dims` ones and `None` as its values.
fn ndarray(dims: usize) -> Vec<u8> {
    let mut inner = vec![0x82];
    encode_str_into("values", &mut inner).unwrap();
    inner.push(0xc0);
    encode_str_into("shape", &mut inner).unwrap();
    inner.extend_from_slice(&tag("tuple", &list_of(dims, &[0x01])));
    tag("ndarray", &inner)
}

/// The shapes that cost the most per byte of what the package can send,
/// each filling about 1 MiB: every one fits the bound. (The reasoning is
/// in docs/pool-wire.md; these are its worst cases.)
#[test]
fn the_costliest_shapes_fit_the_factor() {
    let size = 1 << 20;
    let leaf_list_205 = list_of(205, &[0xc0]);
    let big_int_zeros = tag("int", &{
        // 2^8 written in 200 bytes: digits for all of them.
        let mut b = vec![0xc4, 200, 0x00, 0x01];
        b.resize(202, 0x00);
        b
    });
    let negative_big_int = tag("int", &{
        let mut b = vec![0xc4, 100];
        b.resize(102, 0xff);
        b[2] = 0x00;
        b
    });
    let mpz = tag("mpz", &[0xc4, 0x0a, 0x01, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]);
    let shapes: Vec<(&str, Vec<u8>)> = vec![
        ("one-element chains", {
            let chain: Vec<u8> = std::iter::repeat_n(0x91, 200).chain([0xc0]).collect();
            repeated(&chain, size)
        }),
        ("binary trees", repeated(&tree(12), size)),
        ("lists of 205 Nones", repeated(&leaf_list_205, size)),
        (
            "lists of 6554 Nones",
            repeated(&list_of(6554, &[0xc0]), size),
        ),
        (
            "lists of lists of 15 Nones",
            repeated(&list_of(15, &list_of(15, &[0xc0])), size),
        ),
        (
            "a list of 1-element int lists",
            repeated(&[0x91, 0x01], size),
        ),
        (
            "a list of 2-element int lists",
            repeated(&[0x92, 0x01, 0x01], size),
        ),
        ("a map with repeated keys", map_of_empty_keys(size / 2)),
        ("maps of one pair", repeated(&[0x81, 0xa0, 0xc0], size)),
        ("one-byte strs", repeated(&[0xa1, b'x'], size)),
        ("empty bins", repeated(&[0xc4, 0x00], size)),
        ("one-byte bins", repeated(&[0xc4, 0x01, 0x00], size)),
        ("big ints with zero digits", repeated(&big_int_zeros, size)),
        ("negative big ints", repeated(&negative_big_int, size)),
        ("mpzs", repeated(&mpz, size)),
        ("foreign tags", repeated(&tag("x", &[0xc0]), size)),
        ("tuples", repeated(&tag("tuple", &[0x91, 0x01]), size)),
        ("ndarrays of 64 dims", repeated(&ndarray(64), size)),
        ("ndarrays of 205 dims", repeated(&ndarray(205), size)),
        (
            "lists of 32769 ints, one of them large",
            repeated(&wide_ints(32_769, 8), size),
        ),
    ];
    for (name, input) in shapes {
        let (_, memory) = decode_accounted(&input, DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let per_byte = memory as f64 / input.len() as f64;
        eprintln!("{name}: {per_byte:.1} bytes per byte");
        assert!(memory <= memory_bound(input.len()), "{name}: {per_byte}");
    }
}

/// What the package never sends may cost more per byte than the factor:
/// it is refused, never allowed past it.
#[test]
fn shapes_beyond_the_factor_are_refused() {
    let data_first_tuple = {
        let mut out = vec![0x82];
        encode_str_into("data", &mut out).unwrap();
        // 1639 elements: a general list's block just over a size class.
        out.extend_from_slice(&list_of(1639, &[0x01]));
        encode_str_into("type", &mut out).unwrap();
        encode_str_into("tuple", &mut out).unwrap();
        out
    };
    for (name, input) in [
        ("a tuple with its data first", data_first_tuple),
        ("an ndarray of 1639 dims", ndarray(1639)),
    ] {
        match decode_accounted(&input, DecodeLimits::default()) {
            Err(DecodeError::TooLarge { limit, .. }) => {
                assert_eq!(limit, memory_bound(input.len()), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A list of ints costs at most `NUMERIC_LIST_FACTOR` per byte of its
/// encoding (or one 32-byte block), whatever its length.
#[test]
fn numeric_lists_cost_at_most_their_factor() {
    let mut n = 1usize;
    while n < 1 << 22 {
        for (k, width) in [(n, 8), (n + 1, 4), (n + n / 3, 2), (n + 2, 1)] {
            let input = wide_ints(k, width);
            let (v, memory) = decode_accounted(&input, DecodeLimits::default()).unwrap();
            assert!(matches!(&v, Value::Ints(ints) if ints.element_size() == width));
            // Less the root `Value`, which the caller holds wherever it is.
            let list = memory - size_of::<Value>();
            assert!(
                list <= (NUMERIC_LIST_FACTOR * input.len()).max(32),
                "{k}: {list} for {} bytes",
                input.len()
            );
        }
        n *= 2;
    }
}

/// The decoder's stack is charged as it grows, within its own bound: the
/// deepest value allowed, alone, decodes (its stack costs more than the
/// 50 bytes per byte its value is held to), and is charged its stack.
#[test]
fn the_stack_is_charged_within_its_own_bound() {
    use crate::codec::stack_bound;
    let depth = DEFAULT_MAX_DEPTH;
    let deepest: Vec<u8> = std::iter::repeat_n(0x91, depth - 1).chain([0xc0]).collect();
    let (_, memory) = decode_accounted(&deepest, DecodeLimits::default()).unwrap();
    let stack = stack_bound(deepest.len(), depth);
    eprintln!("frame {FRAME_SIZE} bytes; stack for {depth} levels {stack}; charged {memory}");
    assert!(memory > memory_bound(deepest.len()), "{memory}");
    assert!(memory <= memory_bound(deepest.len()) + stack, "{memory}");
    assert!(stack <= 40 * 1024, "{stack}");
    // A flat list: one block of four frames.
    assert_eq!(stack_bound(1, depth), block_cost(4 * FRAME_SIZE));
    assert_eq!(stack_bound(0, depth), 0);
}
