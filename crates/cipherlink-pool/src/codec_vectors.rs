//! Exact-byte vectors produced by the real package (tno.mpc.communication
//! 5.0.4, ormsgpack 1.13.1): `tests/py/gen_vectors.py` prints them.

use super::*;
use crate::int::Int;

fn i(v: i64) -> Value {
    Value::int(v)
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn big_int(v: &str) -> Int {
    v.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn big(v: &str) -> Value {
    Value::Int(big_int(v))
}

pub(crate) fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("test vector {s:?}: {e}"))
}

/// (name, value, hex from Python, whether encoding must give the same hex).
fn vectors() -> Vec<(&'static str, Value, &'static str, bool)> {
    vec![
    ("nil", Value::Nil, "c0", true),
    ("false", Value::Bool(false), "c2", true),
    ("true", Value::Bool(true), "c3", true),
    ("zero", i(0), "00", true),
    ("minus_one", i(-1), "ff", true),
    ("pfix_max", i(127), "7f", true),
    ("u8_128", i(128), "cc80", true),
    ("u8_255", i(255), "ccff", true),
    ("u16_256", i(256), "cd0100", true),
    ("u16_max", i(65535), "cdffff", true),
    ("u32_65536", i(65536), "ce00010000", true),
    ("u32_max", i(4294967295), "ceffffffff", true),
    ("u64_2_32", i(4294967296), "cf0000000100000000", true),
    ("i64_max", i(i64::MAX), "cf7fffffffffffffff", true),
    ("u64_2_63", big("9223372036854775808"), "cf8000000000000000", true),
    ("u64_max", big("18446744073709551615"), "cfffffffffffffffff", true),
    ("nfix_min", i(-32), "e0", true),
    ("i8_m33", i(-33), "d0df", true),
    ("i8_min", i(-128), "d080", true),
    ("i16_m129", i(-129), "d1ff7f", true),
    ("i16_min", i(-32768), "d18000", true),
    ("i32_m32769", i(-32769), "d2ffff7fff", true),
    ("i32_min", i(-2147483648), "d280000000", true),
    ("i64_m2_31_1", i(-2147483649), "d3ffffffff7fffffff", true),
    ("i64_min", i(i64::MIN), "d38000000000000000", true),
    ("big_2_64", big("18446744073709551616"), "82a474797065a3696e74a464617461c409000000000000000001", true),
    ("big_2_64_p1", big("18446744073709551617"), "82a474797065a3696e74a464617461c409010000000000000001", true),
    ("big_2_100", big("1267650600228229401496703205376"), "82a474797065a3696e74a464617461c40d00000000000000000000000010", true),
    ("big_m2_100", big("-1267650600228229401496703205376"), "82a474797065a3696e74a464617461c40d000000000000000000000000f0", true),
    ("big_m2_64", big("-18446744073709551616"), "82a474797065a3696e74a464617461c4090000000000000000ff", true),
    ("big_m2_63_m1", big("-9223372036854775809"), "82a474797065a3696e74a464617461c409ffffffffffffff7fff", true),
    ("big_m2_71", big("-2361183241434822606848"), "82a474797065a3696e74a464617461c40a000000000000000080ff", true),
    ("big_2_200_m1", big("1606938044258990275541962092341162602522202993782792835301375"), "82a474797065a3696e74a464617461c41affffffffffffffffffffffffffffffffffffffffffffffffff00", true),
    ("f_3_25", Value::Float(3.25), "cb400a000000000000", true),
    ("f_zero", Value::Float(0.0), "cb0000000000000000", true),
    ("f_negzero", Value::Float(-0.0), "cb8000000000000000", true),
    ("f_inf", Value::Float(f64::INFINITY), "cb7ff0000000000000", true),
    ("f_neginf", Value::Float(f64::NEG_INFINITY), "cbfff0000000000000", true),
    ("f_nan", Value::Float(f64::NAN), "cb7ff8000000000000", true),
    ("f_tiny", Value::Float(5e-324), "cb0000000000000001", true),
    ("str_empty", s(""), "a0", true),
    ("str_hi", s("hi"), "a26869", true),
    ("str_31", s(&"a".repeat(31)), "bf61616161616161616161616161616161616161616161616161616161616161", true),
    ("str_32", s(&"a".repeat(32)), "d9206161616161616161616161616161616161616161616161616161616161616161", true),
    ("str_255", s(&"b".repeat(255)), "d9ff626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262", true),
    ("str_256", s(&"c".repeat(256)), "da010063636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363636363", true),
    ("str_utf8", s("héllo ☃"), "aa68c3a96c6c6f20e29883", true),
    ("bytes_empty", Value::from(vec![]), "c400", true),
    ("bytes_ab", Value::from(b"ab".to_vec()), "c4026162", true),
    ("bytes_256", Value::Bytes((0..=255u8).collect()), "c50100000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", true),
    ("list_empty", Value::List(vec![]), "90", true),
    ("list_nested", Value::List(vec![i(1), Value::List(vec![i(2), Value::List(vec![i(3), Value::Nil])]), s("x")]), "930192029203c0a178", true),
    ("list_16", Value::List((0..16).map(i).collect()), "dc0010000102030405060708090a0b0c0d0e0f", true),
    ("tuple_1a", Value::Tuple(vec![i(1), s("a")]), "82a474797065a57475706c65a4646174619201a161", true),
    ("tuple_empty", Value::Tuple(vec![]), "82a474797065a57475706c65a46461746190", true),
    ("dict_empty", Value::Dict(vec![]), "80", true),
    ("dict_order", Value::dict([("b", i(1)), ("a", Value::List(vec![Value::Bool(true), Value::Float(2.5)]))]), "82a16201a16192c3cb4004000000000000", true),
    ("dict_16", Value::dict((0..16).map(|k| (format!("k{k:02}"), i(k)))), "de0010a36b303000a36b303101a36b303202a36b303303a36b303404a36b303505a36b303606a36b303707a36b303808a36b303909a36b31300aa36b31310ba36b31320ca36b31330da36b31340ea36b31350f", true),
    ("nested_mix", Value::dict([("t", Value::Tuple(vec![i(1), Value::Tuple(vec![i(2), i(3)])])), ("l", Value::List(vec![Value::dict([("x", Value::from(vec![0]))])])), ("n", Value::Nil)]), "83a17482a474797065a57475706c65a464617461920182a474797065a57475706c65a464617461920203a16c9181a178c40100a16ec0", true),
    ("np_i64_2d", Value::ndarray_i64(&[2, 3], &[1, 2, 3, 4, 5, 6]).unwrap_or(Value::Nil), "929301020393040506", true),
    ("np_f64_2d", Value::ndarray_f64(&[2, 2], &[1.5, -2.0, f64::INFINITY, 0.0]).unwrap_or(Value::Nil), "9292cb3ff8000000000000cbc00000000000000092cb7ff0000000000000cb0000000000000000", true),
    ("np_f32_1d", Value::List(vec![Value::Float(1.5), Value::Float(2.0)]), "92ca3fc00000ca40000000", false),
    ("np_bool_1d", Value::List(vec![Value::Bool(true), Value::Bool(false)]), "92c3c2", true),
    ("np_i64_scalar", i(7), "07", true),
    ("np_obj_1d", Value::NdArray { shape: vec![2], values: Box::new(Value::List(vec![i(1), s("a")])) }, "82a474797065a76e646172726179a46461746182a676616c7565739201a161a5736861706582a474797065a57475706c65a4646174619102", true),
    ("np_0d", Value::NdArray { shape: vec![], values: Box::new(i(5)) }, "82a474797065a76e646172726179a46461746182a676616c75657305a5736861706582a474797065a57475706c65a46461746190", true),
    ("user_dict_type_data", Value::Tuple(vec![i(1)]), "82a474797065a57475706c65a4646174619101", false),
    ("mpz_0", Value::Mpz(0.into()), "82a474797065a36d707aa464617461c4020100", true),
    ("mpz_5", Value::Mpz(5.into()), "82a474797065a36d707aa464617461c403010105", true),
    ("mpz_m5", Value::Mpz((-5).into()), "82a474797065a36d707aa464617461c403010205", true),
    ("mpz_2_100", Value::Mpz(big_int("1267650600228229401496703205376")), "82a474797065a36d707aa464617461c40f010100000000000000000000000010", true),
    ]
}

#[test]
fn encode_matches_python_bytes() {
    for (name, value, want, check_encode) in vectors() {
        if check_encode {
            let got = encode(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hex(&got), want, "{name}");
        }
    }
}

#[test]
fn decode_matches_python_values() {
    for (name, value, bytes, _) in vectors() {
        let got = decode(&unhex(bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, value, "{name}");
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    assert!(matches!(
        decode(&[]),
        Err(DecodeError::Truncated {
            offset: 0,
            needed: 1
        })
    ));
    assert!(matches!(
        decode(&[0xc1]),
        Err(DecodeError::Reserved { offset: 0 })
    ));
    assert!(matches!(
        decode(&[0xd4, 0, 0]),
        Err(DecodeError::Ext { offset: 0 })
    ));
    assert!(matches!(
        decode(&[0x81, 0x01, 0x02]),
        Err(DecodeError::NonStrKey {
            offset: 1,
            found: "int"
        })
    ));
    assert!(matches!(
        decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
        Err(DecodeError::LengthExceedsInput {
            len: 0xffff_ffff,
            ..
        })
    ));
    assert!(matches!(
        decode(&[0xdf, 0x00, 0x00, 0x00, 0x02, 0xa1, 0x61]),
        Err(DecodeError::LengthExceedsInput { kind: "map", .. })
    ));
    assert!(matches!(
        decode(&[0xa3, 0x61]),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        decode(&[0xa1, 0xff]),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
    assert!(matches!(
        decode(&[0x91; 100_000]),
        Err(DecodeError::TooDeep { .. })
    ));
    // {"type": 1, "data": 2}
    assert!(matches!(
        decode(&unhex("82a47479706501a46461746102")),
        Err(DecodeError::BadTagType { .. })
    ));
    // Trailing bytes are ignored, as ormsgpack does.
    assert_eq!(decode(&[0xc0, 0xff, 0xc1]), Ok(Value::Nil));
}

#[test]
fn unknown_tags_are_foreign_and_relay_unchanged() {
    // {"type": "bitarray", "data": b"\x01"} and a malformed ndarray tag.
    for h in [
        "82a474797065a86269746172726179a464617461c40101",
        "82a474797065a76e646172726179a46461746181a676616c75657301",
        "82a474797065a3696e74a464617461a178",
    ] {
        let v = decode(&unhex(h)).unwrap_or_else(|e| panic!("{h}: {e}"));
        assert!(matches!(v, Value::Foreign { .. }), "{h}: {v:?}");
        assert_eq!(hex(&encode(&v).unwrap_or_else(|e| panic!("{e}"))), h);
    }
}

#[test]
fn never_panics_on_mutated_or_random_input() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (_, _, h, _) in vectors() {
        let good = unhex(h);
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
        for _ in 0..50 {
            let mut m = good.clone();
            let at = (next() as usize) % m.len();
            m[at] = next() as u8;
            let _ = decode(&m);
        }
    }
    for _ in 0..20_000 {
        let len = (next() % 48) as usize;
        let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = decode(&input);
    }
}

#[test]
fn encode_refuses_too_deep() {
    let mut v = Value::Nil;
    for _ in 0..(DEFAULT_MAX_DEPTH + 5) {
        v = Value::List(vec![v]);
    }
    assert!(matches!(encode(&v), Err(EncodeError::TooDeep { .. })));
}
