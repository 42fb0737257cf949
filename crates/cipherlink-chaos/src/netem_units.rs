//! netem's numbers, read as iproute2 reads them. `tc/q_netem.c` hands its
//! words to helpers of iproute2's library, mirrored here one by one:
//!
//! - times: `get_time64` (lib/utils.c): `s`, `sec`, `secs`, `ms`, `msec`,
//!   `msecs`, `us`, `usec`, `usecs`, `ns`, `nsec`, `nsecs`, in any case
//!   (`strcasecmp`); a bare number is in **nanoseconds**;
//! - rates: `get_rate64` (lib/utils_math.c): `bit`, `kbit`, `mbit`, `gbit`,
//!   `tbit`, `kibit`, ..., `bps` (bytes), `kbps`, ..., `kibps`, ..., in any
//!   case; a bare number is in bits per second;
//! - percentages: `parse_percent` (tc/tc_util.c): a number, then `%` or
//!   nothing, from 0 to 100;
//! - `limit`: `get_size` (lib/utils_math.c): a number, optionally `b`, `k`
//!   or `kb` (×1024), `m`/`mb`, `g`/`gb`, `kbit` (×128), `mbit`, `gbit`;
//! - `gap` and the cell size: `get_u32(.., 0)`, the packet and cell
//!   overheads: `get_s32(.., 0)` (lib/utils.c): C integers, so `0x10` is
//!   hexadecimal and `010` octal.
//!
//! Numbers are `strtod`'s decimal form (`1.5`, `.5`, `2e3`); its other
//! forms (hexadecimal floats, `inf`, `nan`) and signs are refused: tc
//! would turn `inf` into an undefined conversion, and a sign into an error.

use std::time::Duration;

use crate::netem::MAX_TIME;

/// The number `text` starts with, as `strtod` reads a decimal, and the rest.
pub(crate) fn leading_number(text: &str) -> Option<(f64, &str)> {
    let b = text.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    let mut end = int;
    let mut frac = 0;
    if b.get(end) == Some(&b'.') {
        frac = digits(end + 1);
        end += 1 + frac;
    }
    if int + frac == 0 {
        return None;
    }
    if matches!(b.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(b.get(end + 1), Some(b'+' | b'-')));
        let exp = digits(end + 1 + sign);
        if exp > 0 {
            end += 1 + sign + exp;
        }
    }
    let value: f64 = text[..end].parse().ok()?;
    value.is_finite().then_some((value, &text[end..]))
}

/// A time (`get_time64`); `None` if malformed or above [`MAX_TIME`].
pub(crate) fn time(text: &str) -> Option<Duration> {
    let (value, unit) = leading_number(text)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "ns" | "nsec" | "nsecs" => 1e-9,
        "us" | "usec" | "usecs" => 1e-6,
        "ms" | "msec" | "msecs" => 1e-3,
        "s" | "sec" | "secs" => 1.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * scale)
        .ok()
        .filter(|d| *d <= MAX_TIME)
}

/// A rate in bits per second (`get_rate64`).
pub(crate) fn rate_bits(text: &str) -> Option<f64> {
    let (value, unit) = leading_number(text)?;
    let unit = unit.to_ascii_lowercase();
    // `*bit` are bits per second, `*bps` bytes per second.
    let (prefix, bytes) = if let Some(p) = unit.strip_suffix("bps") {
        (p, true)
    } else if let Some(p) = unit.strip_suffix("bit") {
        (p, false)
    } else if unit.is_empty() {
        ("", false)
    } else {
        return None;
    };
    let multiplier: f64 = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * multiplier * if bytes { 8.0 } else { 1.0 })
}

/// A percentage as a fraction (`parse_percent`).
pub(crate) fn percent(text: &str) -> Option<f64> {
    let (value, rest) = leading_number(text)?;
    (rest.is_empty() || rest == "%")
        .then_some(value / 100.0)
        .filter(|f| (0.0..=1.0).contains(f))
}

/// A size (`get_size`), which `limit` is read with; must come out whole.
pub(crate) fn size(text: &str) -> Option<u64> {
    let (value, unit) = leading_number(text)?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1024.0,
        "m" | "mb" => 1024.0 * 1024.0,
        "g" | "gb" => 1024.0 * 1024.0 * 1024.0,
        "kbit" => 1024.0 / 8.0,
        "mbit" => 1024.0 * 1024.0 / 8.0,
        "gbit" => 1024.0 * 1024.0 * 1024.0 / 8.0,
        _ => return None,
    };
    let bytes = value * scale;
    (bytes.fract() == 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A C integer (`strtol` with base 0): `0x` hexadecimal, a leading `0`
/// octal, else decimal; a `-` only if `signed`.
pub(crate) fn c_integer(text: &str, signed: bool) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) if signed => (true, rest),
        _ => (false, text),
    };
    let (radix, body) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value = i64::from_str_radix(body, radix).ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_decimals_only() {
        assert_eq!(leading_number("1.5ms"), Some((1.5, "ms")));
        assert_eq!(leading_number(".5s"), Some((0.5, "s")));
        assert_eq!(leading_number("5."), Some((5.0, "")));
        assert_eq!(leading_number("2e3us"), Some((2000.0, "us")));
        // An `e` without digits is not an exponent (`1e` leaves `e`).
        assert_eq!(leading_number("1esec"), Some((1.0, "esec")));
        for bad in ["", ".", "-1ms", "+1ms", "inf", "nan", "ms", "1e999"] {
            assert_eq!(leading_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn c_integers_as_strtol_base_0() {
        assert_eq!(c_integer("10", false), Some(10));
        assert_eq!(c_integer("0x10", false), Some(16));
        assert_eq!(c_integer("010", false), Some(8));
        assert_eq!(c_integer("0", false), Some(0));
        assert_eq!(c_integer("-4", true), Some(-4));
        assert_eq!(c_integer("-4", false), None);
        assert_eq!(c_integer("08", false), None);
        assert_eq!(c_integer("12ab", false), None);
    }
}
