//! Python `int`: any size, as the package puts it on the wire.
//!
//! Values in `[-2^63, 2^64-1]` travel as native msgpack ints; anything outside
//! is the `{"type":"int","data":bin}` tag, whose bin is little-endian two's
//! complement of exactly `(bit_length + 8) // 8` bytes (Python's
//! `int.to_bytes(..., signed=True)` sizing, which is one byte longer than the
//! minimum for some negative powers of two, e.g. `-(2**71)`).
//!
//! Arithmetic and decimal conversion are num-bigint's: its `to_str_radix`
//! is divide and conquer over Burnikel-Ziegler division, so printing an
//! integer a peer chose is not quadratic in its size. This type adds only
//! what the wire needs: the native range stored natively, so the type is
//! canonical (two equal numbers compare equal however they arrived) and a
//! native value costs no allocation; and Python's byte sizing. (Parsing
//! decimal, [`FromStr`], is num-bigint's quadratic one; it only reads what
//! a local user typed, never what a peer sent.)

use std::fmt;
use std::mem::size_of;
use std::str::FromStr;

use num_bigint::{BigInt, Sign};

use crate::heap::{array_cost, block_cost};

/// An integer of any size.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Int(Repr);

/// Kept to 16 bytes (no `i128`, the big case boxed), because a decoded
/// list holds one [`crate::Value`] per element and this is its largest
/// scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Repr {
    /// Any value in `[-2^63, 2^63-1]`.
    Small(i64),
    /// Invariant: in `[2^63, 2^64-1]`.
    Large(u64),
    /// Invariant: outside `[-2^63, 2^64-1]`.
    Big(Box<BigInt>),
}

/// A decimal string that is not an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a decimal integer: {0:?}")]
pub struct ParseIntError(String);

/// Integers up to this many bits are shown in full by [`Int::short`].
const SHORT_FULL_BITS: u64 = 256;
/// Integers up to this many bits are shown by [`Int::short`] with their
/// leading digits and digit count; beyond, by their size in bits (the
/// digits would cost more than a log line is worth).
const SHORT_DIGITS_BITS: u64 = 64 * 1024;
/// Leading digits [`Int::short`] keeps.
const SHORT_DIGITS: usize = 20;

impl Int {
    fn from_big(b: BigInt) -> Int {
        if let Ok(v) = i64::try_from(&b) {
            Int(Repr::Small(v))
        } else if let Ok(v) = u64::try_from(&b) {
            Int(Repr::Large(v))
        } else {
            Int(Repr::Big(Box::new(b)))
        }
    }

    fn to_big(&self) -> BigInt {
        match &self.0 {
            Repr::Small(v) => BigInt::from(*v),
            Repr::Large(v) => BigInt::from(*v),
            Repr::Big(b) => (**b).clone(),
        }
    }

    /// Builds from a sign and a little-endian magnitude (any length, zeros allowed).
    pub fn from_sign_magnitude(negative: bool, magnitude_le: &[u8]) -> Int {
        let sign = if negative { Sign::Minus } else { Sign::Plus };
        Int::from_big(BigInt::from_bytes_le(sign, magnitude_le))
    }

    /// Decodes little-endian two's complement of any length, as Python's
    /// `int.from_bytes(data, "little", signed=True)` does (empty is 0).
    pub fn from_le_signed(bytes: &[u8]) -> Int {
        Int::from_big(BigInt::from_signed_bytes_le(bytes))
    }

    /// Python's `int.bit_length()`: bits of the magnitude.
    pub fn bits(&self) -> u64 {
        match &self.0 {
            Repr::Small(v) => u64::from(64 - v.unsigned_abs().leading_zeros()),
            Repr::Large(v) => u64::from(64 - v.leading_zeros()),
            Repr::Big(b) => b.bits(),
        }
    }

    /// How many bytes [`Int::to_le_signed_python`] gives: `(bit_length + 8) // 8`.
    pub fn python_byte_len(&self) -> u64 {
        (self.bits() + 8) / 8
    }

    /// Encodes as Python's `int_serialize` does: little-endian two's complement
    /// of `(bit_length + 8) // 8` bytes.
    pub fn to_le_signed_python(&self) -> Vec<u8> {
        let len = usize::try_from(self.python_byte_len()).unwrap_or(usize::MAX);
        let mut out = self.to_big().to_signed_bytes_le();
        // The minimal form is never longer than Python's; it is one byte
        // shorter for some negative powers of two, extended by the sign.
        let fill = if self.is_negative() { 0xff } else { 0x00 };
        if out.len() < len {
            out.resize(len, fill);
        }
        out
    }

    /// The sign and the minimal little-endian magnitude (empty for zero).
    pub fn sign_magnitude(&self) -> (bool, Vec<u8>) {
        let (sign, mag) = self.to_big().to_bytes_le();
        match sign {
            Sign::NoSign => (false, Vec::new()),
            Sign::Minus => (true, mag),
            Sign::Plus => (false, mag),
        }
    }

    /// The value when it is in the native msgpack range `[-2^63, 2^64-1]`.
    pub fn as_native(&self) -> Option<i128> {
        match self.0 {
            Repr::Small(v) => Some(i128::from(v)),
            Repr::Large(v) => Some(i128::from(v)),
            Repr::Big(_) => None,
        }
    }

    /// The value as `i64`, when it fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self.0 {
            Repr::Small(v) => Some(v),
            _ => None,
        }
    }

    /// The value as `u64`, when it fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self.0 {
            Repr::Small(v) => u64::try_from(v).ok(),
            Repr::Large(v) => Some(v),
            Repr::Big(_) => None,
        }
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        match &self.0 {
            Repr::Small(v) => *v < 0,
            Repr::Large(_) => false,
            Repr::Big(b) => b.sign() == Sign::Minus,
        }
    }

    /// Heap bytes this value may hold (0 in the native range): the box and
    /// the digits, whose capacity num-bigint keeps within twice their
    /// count (plus one), each block as the allocator takes it.
    pub(crate) fn heap_size(&self) -> usize {
        match &self.0 {
            Repr::Big(b) => {
                let words = usize::try_from(b.bits().div_ceil(64)).unwrap_or(usize::MAX);
                block_cost(size_of::<BigInt>())
                    .saturating_add(array_cost(words.saturating_mul(2).saturating_add(1), 8))
            }
            _ => 0,
        }
    }

    /// The most heap that making an `Int` of `len` bytes (two's complement,
    /// or an mpz magnitude) takes, while it is made and after: a copy of
    /// the bytes (a negative number is negated in one), one digit per 8
    /// bytes however many are zero, the smaller block num-bigint may move
    /// them to, and the box of a big one.
    pub(crate) fn decode_cost(len: usize) -> usize {
        let words = len.div_ceil(8);
        block_cost(len)
            .saturating_add(array_cost(words, 8))
            .saturating_add(array_cost(words / 2 + 1, 8))
            .saturating_add(block_cost(size_of::<BigInt>()))
    }

    /// The value for a log line or an error reply: in full up to 256 bits
    /// (77 digits); up to 64 Kibit, its first digits and its digit count;
    /// beyond, its size. Bounded in length and in the time it takes.
    pub fn short(&self) -> String {
        let bits = self.bits();
        if bits <= SHORT_FULL_BITS {
            return self.to_string();
        }
        if bits > SHORT_DIGITS_BITS {
            let sign = if self.is_negative() { "-" } else { "" };
            return format!("{sign}<an int of {bits} bits>");
        }
        let full = self.to_string();
        let (sign, digits) = match full.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", full.as_str()),
        };
        let head = digits.get(..SHORT_DIGITS).unwrap_or(digits);
        format!("{sign}{head}...({} digits)", digits.len())
    }
}

macro_rules! from_small {
    ($($t:ty),*) => {$(
        impl From<$t> for Int {
            fn from(v: $t) -> Int {
                Int(Repr::Small(i64::from(v)))
            }
        }
    )*};
}
from_small!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Int {
    fn from(v: u64) -> Int {
        match i64::try_from(v) {
            Ok(s) => Int(Repr::Small(s)),
            Err(_) => Int(Repr::Large(v)),
        }
    }
}

impl From<i128> for Int {
    fn from(v: i128) -> Int {
        Int::from_big(BigInt::from(v))
    }
}

impl From<u128> for Int {
    fn from(v: u128) -> Int {
        Int::from_big(BigInt::from(v))
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Small(v) => write!(f, "{v}"),
            Repr::Large(v) => write!(f, "{v}"),
            Repr::Big(b) => write!(f, "{b}"),
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
        // num-bigint also takes `_` separators; Python's int() of a str and
        // JSON do not, so only plain digits are accepted.
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let magnitude = BigInt::parse_bytes(digits.as_bytes(), 10).ok_or_else(err)?;
        Ok(Int::from_big(if negative { -magnitude } else { magnitude }))
    }
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
