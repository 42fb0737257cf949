//! Python `int`: any size, as the package puts it on the wire.
//!
//! Values in `[-2^63, 2^64-1]` travel as native msgpack ints; anything outside
//! is the `{"type":"int","data":bin}` tag, whose bin is little-endian two's
//! complement of exactly `(bit_length + 8) // 8` bytes (Python's
//! `int.to_bytes(..., signed=True)` sizing, which is one byte longer than the
//! minimum for some negative powers of two, e.g. `-(2**71)`).
//!
//! The type is canonical: a value that fits the native range is always stored
//! natively, so two equal numbers compare equal however they arrived.

use std::fmt;
use std::str::FromStr;

/// The smallest value sent as a native msgpack int (`-2^63`).
const NATIVE_MIN: i128 = i64::MIN as i128;
/// The largest value sent as a native msgpack int (`2^64 - 1`).
const NATIVE_MAX: i128 = u64::MAX as i128;

/// An integer of any size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Int(Repr);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Repr {
    /// Invariant: within `[NATIVE_MIN, NATIVE_MAX]`.
    Native(i128),
    /// Invariant: outside the native range; `magnitude` is little-endian with
    /// no trailing zero bytes.
    Big { negative: bool, magnitude: Vec<u8> },
}

/// A decimal string that is not an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal integer: {0:?}")]
pub struct ParseIntError(String);

impl Int {
    /// Builds from a sign and a little-endian magnitude (any length, zeros allowed).
    pub fn from_sign_magnitude(negative: bool, magnitude_le: &[u8]) -> Int {
        let len = magnitude_le
            .iter()
            .rposition(|b| *b != 0)
            .map_or(0, |i| i + 1);
        let mag = &magnitude_le[..len];
        if mag.len() <= 16 {
            let mut buf = [0u8; 16];
            buf[..mag.len()].copy_from_slice(mag);
            let m = u128::from_le_bytes(buf);
            // u64::MAX + 1 = 2^64 still fits i128, so the range test below is exact.
            if m <= 1u128 << 64 {
                let m = m as i128;
                let v = if negative { -m } else { m };
                if (NATIVE_MIN..=NATIVE_MAX).contains(&v) {
                    return Int(Repr::Native(v));
                }
            }
        }
        Int(Repr::Big {
            negative: negative && !mag.is_empty(),
            magnitude: mag.to_vec(),
        })
    }

    /// Decodes little-endian two's complement of any length, as Python's
    /// `int.from_bytes(data, "little", signed=True)` does (empty is 0).
    pub fn from_le_signed(bytes: &[u8]) -> Int {
        let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
        if negative {
            let mut mag: Vec<u8> = bytes.iter().map(|b| !b).collect();
            add_one(&mut mag);
            Int::from_sign_magnitude(true, &mag)
        } else {
            Int::from_sign_magnitude(false, bytes)
        }
    }

    /// Encodes as Python's `int_serialize` does: little-endian two's complement
    /// of `(bit_length + 8) // 8` bytes.
    pub fn to_le_signed_python(&self) -> Vec<u8> {
        let (negative, mag) = self.sign_magnitude();
        let bits = bit_length(&mag);
        let len = (bits + 8) / 8;
        let mut out = mag;
        out.resize(len, 0);
        if negative {
            for b in out.iter_mut() {
                *b = !*b;
            }
            add_one(&mut out);
        }
        out
    }

    /// The sign and the minimal little-endian magnitude.
    pub fn sign_magnitude(&self) -> (bool, Vec<u8>) {
        match &self.0 {
            Repr::Native(v) => {
                let m = v.unsigned_abs().to_le_bytes();
                let len = m.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                (*v < 0, m[..len].to_vec())
            }
            Repr::Big {
                negative,
                magnitude,
            } => (*negative, magnitude.clone()),
        }
    }

    /// The value when it is in the native msgpack range `[-2^63, 2^64-1]`.
    pub fn as_native(&self) -> Option<i128> {
        match self.0 {
            Repr::Native(v) => Some(v),
            Repr::Big { .. } => None,
        }
    }

    /// The value as `i64`, when it fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_native().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as `u64`, when it fits.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_native().and_then(|v| u64::try_from(v).ok())
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        match &self.0 {
            Repr::Native(v) => *v < 0,
            Repr::Big { negative, .. } => *negative,
        }
    }
}

macro_rules! from_small {
    ($($t:ty),*) => {$(
        impl From<$t> for Int {
            fn from(v: $t) -> Int {
                Int(Repr::Native(i128::from(v)))
            }
        }
    )*};
}
from_small!(i8, i16, i32, i64, u8, u16, u32, u64);

impl From<i128> for Int {
    fn from(v: i128) -> Int {
        Int::from_sign_magnitude(v < 0, &v.unsigned_abs().to_le_bytes())
    }
}

impl From<u128> for Int {
    fn from(v: u128) -> Int {
        Int::from_sign_magnitude(false, &v.to_le_bytes())
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Native(v) => write!(f, "{v}"),
            Repr::Big {
                negative,
                magnitude,
            } => {
                if *negative {
                    f.write_str("-")?;
                }
                f.write_str(&magnitude_to_decimal(magnitude))
            }
        }
    }
}

impl FromStr for Int {
    type Err = ParseIntError;

    fn from_str(s: &str) -> Result<Int, ParseIntError> {
        let err = || ParseIntError(s.chars().take(40).collect());
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        // Little-endian base-2^32 limbs; multiply-add nine digits at a time.
        let mut limbs: Vec<u32> = Vec::new();
        for chunk in digits.as_bytes().chunks(9) {
            let mut chunk_val: u64 = 0;
            for b in chunk {
                chunk_val = chunk_val * 10 + u64::from(b - b'0');
            }
            let scale = 10u64.pow(chunk.len() as u32);
            let mut carry = chunk_val;
            for limb in limbs.iter_mut() {
                let t = u64::from(*limb) * scale + carry;
                *limb = t as u32;
                carry = t >> 32;
            }
            while carry != 0 {
                limbs.push(carry as u32);
                carry >>= 32;
            }
        }
        let bytes: Vec<u8> = limbs.iter().flat_map(|l| l.to_le_bytes()).collect();
        Ok(Int::from_sign_magnitude(negative, &bytes))
    }
}

/// Python's `int.bit_length()` of a little-endian magnitude.
fn bit_length(mag: &[u8]) -> usize {
    match mag.iter().rposition(|b| *b != 0) {
        Some(i) => i * 8 + (8 - mag[i].leading_zeros() as usize),
        None => 0,
    }
}

/// Adds one to a little-endian number in place, dropping a final carry (as
/// two's complement negation wants).
fn add_one(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        let (v, overflow) = b.overflowing_add(1);
        *b = v;
        if !overflow {
            return;
        }
    }
}

fn magnitude_to_decimal(mag: &[u8]) -> String {
    let mut limbs: Vec<u32> = mag
        .chunks(4)
        .map(|c| {
            let mut buf = [0u8; 4];
            buf[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(buf)
        })
        .collect();
    let mut chunks: Vec<u32> = Vec::new();
    while limbs.iter().any(|l| *l != 0) {
        let mut rem: u64 = 0;
        for limb in limbs.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / 1_000_000_000) as u32;
            rem = cur % 1_000_000_000;
        }
        chunks.push(rem as u32);
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
    }
    let mut out = String::new();
    for (i, c) in chunks.iter().rev().enumerate() {
        if i == 0 {
            out.push_str(&c.to_string());
        } else {
            out.push_str(&format!("{c:09}"));
        }
    }
    if out.is_empty() {
        out.push('0');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn big(s: &str) -> Int {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn python_sizing_of_twos_complement() {
        // Vectors from Python: n.to_bytes((n.bit_length()+8)//8, "little", signed=True).
        let two_100 = big("1267650600228229401496703205376");
        assert_eq!(
            hex(&two_100.to_le_signed_python()),
            "00000000000000000000000010"
        );
        let m = big("-1267650600228229401496703205376");
        assert_eq!(hex(&m.to_le_signed_python()), "000000000000000000000000f0");
        assert_eq!(
            hex(&big("18446744073709551617").to_le_signed_python()),
            "010000000000000001"
        );
        assert_eq!(
            hex(&big("-18446744073709551616").to_le_signed_python()),
            "0000000000000000ff"
        );
        // -(2**71): one byte longer than minimal two's complement.
        assert_eq!(
            hex(&big("-2361183241434822606848").to_le_signed_python()),
            "000000000000000080ff"
        );
    }

    #[test]
    fn decimal_round_trip_and_canonical_form() {
        for s in [
            "0",
            "-1",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1606938044258990275541962092341162602522202993782792835301375",
        ] {
            assert_eq!(big(s).to_string(), s);
            let back = Int::from_le_signed(&big(s).to_le_signed_python());
            assert_eq!(back, big(s), "{s}");
        }
        assert_eq!(big("18446744073709551615").as_u64(), Some(u64::MAX));
        assert_eq!(big("18446744073709551616").as_native(), None);
        assert_eq!(Int::from_le_signed(&[]), Int::from(0));
        assert_eq!(Int::from_le_signed(&[0xff, 0xff, 0xff]), Int::from(-1));
        assert!("12a".parse::<Int>().is_err());
        assert!("-".parse::<Int>().is_err());
    }
}
