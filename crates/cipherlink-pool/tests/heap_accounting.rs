//! The decoder's charge covers what it really allocates (issue 22): for a
//! value of every shape, dhat (this binary's global allocator) counts the
//! blocks made while decoding, and the charge is at least their bytes plus
//! glibc's 8-byte header each, both for what the value holds after and for
//! the peak while it was made, the decoder's own stack of open containers
//! included. A block the decoder forgets to charge, or a vector that grows
//! past the capacity it charged, fails here.
//!
//! One test, so that nothing else allocates while dhat counts.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use cipherlink_pool::codec::{self, decode_accounted, decode_shared, DEFAULT_MAX_DEPTH};
use cipherlink_pool::{DecodeLimits, Int, Value};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// What glibc adds to every block, at least (its size field).
const HEADER: usize = 8;

fn enc(v: &Value) -> Vec<u8> {
    codec::encode(v).unwrap()
}

/// `{"type": name, "data": data}`, in the package's key order.
fn tag(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    codec::encode_str_into("type", &mut out).unwrap();
    codec::encode_str_into(name, &mut out).unwrap();
    codec::encode_str_into("data", &mut out).unwrap();
    out.extend_from_slice(data);
    out
}

/// `count` copies of `element` in one array32.
fn list(count: usize, element: &[u8]) -> Vec<u8> {
    let mut out = vec![0xdd];
    out.extend_from_slice(&u32::try_from(count).unwrap().to_be_bytes());
    for _ in 0..count {
        out.extend_from_slice(element);
    }
    out
}

fn shapes() -> Vec<(&'static str, Vec<u8>)> {
    let chain: Vec<u8> = std::iter::repeat_n(0x91, 200).chain([0xc0]).collect();
    // As deep as allowed, and alone: the decoder's stack is most of it.
    let deepest: Vec<u8> = std::iter::repeat_n(0x91, DEFAULT_MAX_DEPTH - 1)
        .chain([0xc0])
        .collect();
    // Empty keys (no block of their own): the index is all there is
    // besides the entries.
    let dup_keys = {
        let n: usize = 50_000;
        let mut out = vec![0xdf];
        out.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        for _ in 0..n {
            out.extend_from_slice(&[0xa0, 0xc0]);
        }
        out
    };
    // One int of 1 MiB whose digits are nearly all zero, and a negative
    // one: alone, so that their transient blocks are the peak.
    let lone_zero_digits = {
        let mut b = vec![0xc6, 0x00, 0x10, 0x00, 0x00, 0x01];
        b.resize(5 + (1 << 20), 0x00);
        tag("int", &b)
    };
    let lone_negative = {
        let mut b = vec![0xc6, 0x00, 0x10, 0x00, 0x00, 0x01];
        b.resize(5 + (1 << 20), 0xff);
        tag("int", &b)
    };
    let zero_digits = {
        let mut b = vec![0xc4, 200, 0x00, 0x01];
        b.resize(202, 0x00);
        tag("int", &b)
    };
    let negative = {
        let mut b = vec![0xc4, 100, 0x00];
        b.resize(102, 0xff);
        tag("int", &b)
    };
    let big_positive = enc(&Value::Int(Int::from_sign_magnitude(false, &[0x5a; 300])));
    let ndarray = |dims: usize| {
        let shape = tag("tuple", &enc(&Value::List(vec![Value::int(1); dims])));
        let mut inner = vec![0x82];
        codec::encode_str_into("values", &mut inner).unwrap();
        inner.push(0xc0);
        codec::encode_str_into("shape", &mut inner).unwrap();
        inner.extend_from_slice(&shape);
        tag("ndarray", &inner)
    };
    let data_first_tuple = {
        let mut out = vec![0x82];
        codec::encode_str_into("data", &mut out).unwrap();
        out.extend_from_slice(&enc(&Value::Ints((0..40).collect())));
        codec::encode_str_into("type", &mut out).unwrap();
        codec::encode_str_into("tuple", &mut out).unwrap();
        out
    };
    vec![
        ("Nones", list(65_536, &[0xc0])),
        ("small ints", list(1 << 20, &[0x01])),
        (
            "ints of every size",
            enc(&Value::Ints((-5000..5000).map(|i| i * i * i).collect())),
        ),
        ("floats", list(100_000, &[0xca, 0x3f, 0xc0, 0, 0])),
        ("ints, then a None", {
            let mut l = list(100_000, &[0x01]);
            l[4] += 1;
            l.push(0xc0);
            l
        }),
        (
            "a u64 above i64 in ints",
            list(1000, &[0xcf, 0x80, 0, 0, 0, 0, 0, 0, 1]),
        ),
        ("one-element chains", list(300, &chain)),
        ("255 nested lists", deepest),
        ("255 nested maps", {
            let mut out: Vec<u8> = std::iter::repeat_n([0x81, 0xa0], DEFAULT_MAX_DEPTH - 1)
                .flatten()
                .collect();
            out.push(0xc0);
            out
        }),
        ("lists of one int", list(30_000, &[0x91, 0x01])),
        ("one-byte strs", list(30_000, &[0xa1, b'x'])),
        ("long strs", list(100, &enc(&Value::str("y".repeat(3000))))),
        ("one-byte bins", list(30_000, &[0xc4, 0x01, 0x07])),
        ("a map with repeated keys", dup_keys),
        ("maps of one pair", list(20_000, &[0x81, 0xa1, b'k', 0x01])),
        ("big ints of zero digits", list(1000, &zero_digits)),
        ("negative big ints", list(1000, &negative)),
        ("positive big ints", list(1000, &big_positive)),
        (
            "mpzs",
            list(1000, &tag("mpz", &[0xc4, 4, 1, 2, 0xff, 0x7f])),
        ),
        ("ndarrays of 64 dims", list(200, &ndarray(64))),
        ("an ndarray of 1000 dims", ndarray(1000)),
        ("a lone int of zero digits", lone_zero_digits),
        ("a lone negative int", lone_negative),
        ("foreign tags", list(5000, &tag("bitarray", &[0xc4, 1, 1]))),
        ("tuples", list(5000, &tag("tuple", &[0x93, 1, 2, 3]))),
        ("a tuple with its data first", data_first_tuple),
        (
            "a dict of lists",
            enc(&Value::dict(
                (0..500).map(|k| (format!("{k}"), Value::Ints(vec![k; 20].into()))),
            )),
        ),
    ]
}

/// Decodes with dhat counting; returns (charge, bytes and blocks held
/// after, at the peak).
fn measure(decode: impl FnOnce() -> (Value, usize)) -> (usize, usize, usize) {
    let profiler = dhat::Profiler::builder().testing().build();
    let (value, charged) = decode();
    let s = dhat::HeapStats::get();
    drop(value);
    drop(profiler);
    let held = s.curr_bytes + HEADER * s.curr_blocks;
    let peak = s.max_bytes + HEADER * s.max_blocks;
    (charged, held, peak)
}

#[test]
fn the_charge_covers_every_block_of_every_shape() {
    let mut failures = Vec::new();
    for (name, input) in shapes() {
        let (charged, held, peak) =
            measure(|| decode_accounted(&input, DecodeLimits::default()).unwrap());
        eprintln!("{name}: charged {charged}, held {held}, peak {peak}");
        if charged < held || charged < peak {
            failures.push(format!(
                "{name}: charged {charged}, held {held}, peak {peak}"
            ));
        }
    }
    // A large payload shared with the body instead of copied.
    let body = bytes::Bytes::from(enc(&Value::from(vec![9u8; 1 << 20])));
    let (charged, held, peak) = measure(|| decode_shared(&body, DecodeLimits::default()).unwrap());
    if charged < held || charged < peak {
        failures.push(format!(
            "shared bytes: charged {charged}, held {held}, peak {peak}"
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
