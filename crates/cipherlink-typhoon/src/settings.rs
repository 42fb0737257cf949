//! `TYPHOON_*` settings, read as SeasideVPN reads them: the same names and
//! defaults; times are seconds as decimals (`float()`), kept as whole
//! milliseconds (`int(seconds * 1000)`), as SeasideVPN keeps them.

use crate::error::Error;

/// TYPHOON's settings (times in milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct TyphoonSettings {
    /// `TYPHOON_ALPHA` (0.125): weight of a new RTT sample in the smoothed RTT.
    pub alpha: f64,
    /// `TYPHOON_BETA` (0.25): weight of a new deviation in the RTT variance.
    pub beta: f64,
    /// `TYPHOON_DEFAULT_RTT` (5 s): the RTT before any sample.
    pub default_rtt: u64,
    /// `TYPHOON_MIN_RTT` (1 s).
    pub min_rtt: u64,
    /// `TYPHOON_MAX_RTT` (8 s).
    pub max_rtt: u64,
    /// `TYPHOON_RTT_MULT` (4): timeout = SRTT + mult × RTTVAR.
    pub rtt_mult: f64,
    /// `TYPHOON_MIN_TIMEOUT` (4 s).
    pub min_timeout: u64,
    /// `TYPHOON_MAX_TIMEOUT` (32 s).
    pub max_timeout: u64,
    /// `TYPHOON_DEFAULT_TIMEOUT` (30 s): the timeout before any sample.
    pub default_timeout: u64,
    /// `TYPHOON_MIN_NEXT_IN` (64 s): least time until the next handshake.
    pub min_next_in: u64,
    /// `TYPHOON_MAX_NEXT_IN` (256 s): most time until the next handshake.
    pub max_next_in: u64,
    /// `TYPHOON_INITIAL_NEXT_IN` (0.05): the INIT's `next_in` range is
    /// `[MIN_NEXT_IN, MAX_NEXT_IN]` times this (a factor, not a time).
    pub initial_next_in: f64,
    /// `TYPHOON_MAX_RETRIES` (12): INITs and handshakes sent unanswered
    /// before the session is given up.
    pub max_retries: u32,
    /// `TYPHOON_MAX_TAIL_LENGTH` (1024): every message's zero tail is at
    /// most this long.
    pub max_tail_length: usize,
}

impl Default for TyphoonSettings {
    fn default() -> Self {
        Self {
            alpha: 0.125,
            beta: 0.25,
            default_rtt: 5_000,
            min_rtt: 1_000,
            max_rtt: 8_000,
            rtt_mult: 4.0,
            min_timeout: 4_000,
            max_timeout: 32_000,
            default_timeout: 30_000,
            min_next_in: 64_000,
            max_next_in: 256_000,
            initial_next_in: 0.05,
            max_retries: 12,
            max_tail_length: 1024,
        }
    }
}

/// Longest time any setting may ask for (one day, in ms); keeps every
/// sum of times far from overflowing and `next_in` within its u32.
const MAX_MS: u64 = 24 * 3600 * 1000;

fn err(name: &'static str, v: &str, reason: &'static str) -> Error {
    Error::Setting {
        name,
        value: v.to_owned(),
        reason,
    }
}

/// Python's `float()` of a decimal: blanks around, digits with single
/// underscores, an optional exponent; no infinities or NaN.
fn decimal(name: &'static str, v: &str) -> Result<f64, Error> {
    let t = v.trim();
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") || t.len() > 64 {
        return Err(err(name, v, "not a number"));
    }
    let x: f64 = t
        .replace('_', "")
        .parse()
        .map_err(|_| err(name, v, "not a number"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(err(name, v, "not a finite number of at least 0"));
    }
    Ok(x)
}

fn whole(name: &'static str, v: &str, min: u64, max: u64) -> Result<u64, Error> {
    let t = v.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return Err(err(name, v, "not a whole number"));
    }
    let n: u64 = t
        .replace('_', "")
        .parse()
        .map_err(|_| err(name, v, "not a whole number"))?;
    if n < min || n > max {
        return Err(err(name, v, "out of range"));
    }
    Ok(n)
}

impl TyphoonSettings {
    /// Defaults overridden by the `TYPHOON_*` variables `lookup` returns
    /// (e.g. `std::env::var`); refuses values SeasideVPN would choke on
    /// and ranges whose minimum exceeds their maximum.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut s = Self::default();
        let factor = |name: &'static str, slot: &mut f64, max: f64| -> Result<(), Error> {
            if let Some(v) = lookup(name) {
                let x = decimal(name, &v)?;
                if x > max {
                    return Err(err(name, &v, "out of range"));
                }
                *slot = x;
            }
            Ok(())
        };
        factor("TYPHOON_ALPHA", &mut s.alpha, 1.0)?;
        factor("TYPHOON_BETA", &mut s.beta, 1.0)?;
        factor("TYPHOON_RTT_MULT", &mut s.rtt_mult, 1000.0)?;
        factor("TYPHOON_INITIAL_NEXT_IN", &mut s.initial_next_in, 1.0)?;
        let ms = |name: &'static str, slot: &mut u64| -> Result<(), Error> {
            if let Some(v) = lookup(name) {
                let x = decimal(name, &v)? * 1000.0;
                if x > MAX_MS as f64 {
                    return Err(err(name, &v, "more than a day"));
                }
                // int(): toward zero, as SeasideVPN truncates.
                *slot = x as u64;
            }
            Ok(())
        };
        ms("TYPHOON_DEFAULT_RTT", &mut s.default_rtt)?;
        ms("TYPHOON_MIN_RTT", &mut s.min_rtt)?;
        ms("TYPHOON_MAX_RTT", &mut s.max_rtt)?;
        ms("TYPHOON_MIN_TIMEOUT", &mut s.min_timeout)?;
        ms("TYPHOON_MAX_TIMEOUT", &mut s.max_timeout)?;
        ms("TYPHOON_DEFAULT_TIMEOUT", &mut s.default_timeout)?;
        ms("TYPHOON_MIN_NEXT_IN", &mut s.min_next_in)?;
        ms("TYPHOON_MAX_NEXT_IN", &mut s.max_next_in)?;
        if let Some(v) = lookup("TYPHOON_MAX_RETRIES") {
            s.max_retries = whole("TYPHOON_MAX_RETRIES", &v, 1, 1000)? as u32;
        }
        if let Some(v) = lookup("TYPHOON_MAX_TAIL_LENGTH") {
            // The tail length travels as a u16.
            s.max_tail_length =
                whole("TYPHOON_MAX_TAIL_LENGTH", &v, 0, u64::from(u16::MAX))? as usize;
        }
        s.check()?;
        Ok(s)
    }

    /// Refuses ranges whose minimum exceeds their maximum: the fields are
    /// public, and the timers' clamps and random draws need `min <= max`.
    pub fn check(&self) -> Result<(), Error> {
        let pairs = [
            ("TYPHOON_MIN_RTT", self.min_rtt, self.max_rtt),
            ("TYPHOON_MIN_TIMEOUT", self.min_timeout, self.max_timeout),
            ("TYPHOON_MIN_NEXT_IN", self.min_next_in, self.max_next_in),
        ];
        for (name, min, max) in pairs {
            if min > max {
                return Err(err(name, &min.to_string(), "above its maximum"));
            }
        }
        let (lo, hi) = self.initial_range();
        if lo > hi {
            return Err(err(
                "TYPHOON_INITIAL_NEXT_IN",
                &self.initial_next_in.to_string(),
                "leaves no whole millisecond in the INIT's next_in range",
            ));
        }
        Ok(())
    }

    /// The INIT's `next_in` range in whole ms: SeasideVPN's server accepts
    /// `MIN_NEXT_IN × INITIAL_NEXT_IN ≤ next_in ≤ MAX_NEXT_IN × INITIAL_NEXT_IN`.
    pub fn initial_range(&self) -> (u64, u64) {
        let lo = (self.min_next_in as f64 * self.initial_next_in).ceil() as u64;
        let hi = (self.max_next_in as f64 * self.initial_next_in).floor() as u64;
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<TyphoonSettings, Error> {
        TyphoonSettings::from_env(|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_are_seasides() {
        let s = with(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s, TyphoonSettings::default());
        assert_eq!(s.initial_range(), (3_200, 12_800));
    }

    #[test]
    fn seconds_become_truncated_milliseconds() {
        let s = with(&[
            ("TYPHOON_MIN_RTT", " 0.0015 "),
            ("TYPHOON_MAX_NEXT_IN", "1_000"),
        ]);
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.min_rtt, 1);
        assert_eq!(s.max_next_in, 1_000_000);
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        for (k, v) in [
            ("TYPHOON_MIN_RTT", "nan"),
            ("TYPHOON_MAX_RTT", "inf"),
            ("TYPHOON_ALPHA", "2"),
            ("TYPHOON_MAX_RETRIES", "0"),
            ("TYPHOON_MAX_TAIL_LENGTH", "-1"),
            ("TYPHOON_MIN_NEXT_IN", "300"),
            ("TYPHOON_DEFAULT_TIMEOUT", "1e9"),
        ] {
            let e = with(&[(k, v)]).expect_err(k).to_string();
            assert!(e.contains(k), "{e}");
        }
    }
}
