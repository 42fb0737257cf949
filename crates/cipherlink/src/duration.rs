//! Durations as every command and configuration file writes them: `30s`,
//! `250ms`, `2m`, `1h`, `500us`, `1.5s`. A bare number is accepted only
//! where a flag or field used to take a number in one unit, and means that
//! unit. Hand-written rather than `humantime`: the gRPC lab's environment
//! variables carry fractional milliseconds (`DELAY_MS=0.5`), which
//! humantime does not take.
//!
//! The proxy's TOML fields and the binary's flags both parse here, so a
//! duration is spelled the same on the command line and in a file.

use std::time::Duration;

/// What a bare number (no unit) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BareUnit {
    /// A bare number is milliseconds (fields and flags once named `*_ms`).
    Millis,
    /// A bare number is seconds (fields and flags once named `*_secs`).
    Secs,
    /// A bare number is refused, except 0.
    Refused,
}

/// Why text is not a duration; each message shows how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// No number at the start.
    #[error("`{text}` is not a duration; write e.g. 30s, 250ms or 2m")]
    NotADuration {
        /// The text given.
        text: String,
    },
    /// A bare number where a unit is required.
    #[error("`{text}` needs a unit: {text}s or {text}ms")]
    NeedsUnit {
        /// The text given.
        text: String,
    },
    /// A suffix that is no unit.
    #[error("`{unit}` in `{text}` is not a unit; use ns, us, ms, s, m or h")]
    UnknownUnit {
        /// The suffix.
        unit: String,
        /// The text given.
        text: String,
    },
    /// Too large for a `Duration`.
    #[error("`{text}` is out of range")]
    OutOfRange {
        /// The text given.
        text: String,
    },
}

/// Parses `text`; `bare` says what a number without a unit means.
pub fn parse(text: &str, bare: BareUnit) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| DurationError::NotADuration {
        text: text.to_string(),
    })?;
    let seconds_per_unit = match (unit.trim().to_ascii_lowercase().as_str(), bare) {
        ("ns", _) => 1e-9,
        ("us" | "µs", _) => 1e-6,
        ("ms", _) => 1e-3,
        ("s" | "sec" | "secs", _) => 1.0,
        ("m" | "min" | "mins", _) => 60.0,
        ("h", _) => 3600.0,
        ("", BareUnit::Millis) => 1e-3,
        ("", BareUnit::Secs) => 1.0,
        ("", BareUnit::Refused) if value == 0.0 => 0.0,
        ("", BareUnit::Refused) => {
            return Err(DurationError::NeedsUnit {
                text: number.to_string(),
            })
        }
        (other, _) => {
            return Err(DurationError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            })
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| DurationError::OutOfRange {
        text: text.to_string(),
    })
}

/// `duration` the way a user writes it: whole hours, minutes or seconds
/// when it is one, else milliseconds (or microseconds below one).
pub fn display(duration: Duration) -> String {
    let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
    match (secs, nanos) {
        (0, 0) => "0s".into(),
        (s, 0) if s % 3600 == 0 => format!("{}h", s / 3600),
        (s, 0) if s % 60 == 0 => format!("{}m", s / 60),
        (s, 0) => format!("{s}s"),
        _ if nanos % 1_000_000 == 0 => format!("{}ms", duration.as_millis()),
        _ => format!("{}us", duration.as_micros()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(text: &str) -> Result<Duration, DurationError> {
        parse(text, BareUnit::Refused)
    }

    #[test]
    fn durations_take_a_unit_and_bare_numbers_only_where_legacy() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("500US"), Ok(Duration::from_micros(500)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("30").unwrap_err().to_string().contains("30s"));
        let unit = duration("3 parsecs").unwrap_err().to_string();
        assert!(unit.contains("not a unit"), "{unit}");
        assert!(duration("-1s").is_err());
        assert_eq!(
            parse("0.5", BareUnit::Millis),
            Ok(Duration::from_micros(500))
        );
        assert_eq!(parse("2s", BareUnit::Millis), Ok(Duration::from_secs(2)));
        assert_eq!(parse("10", BareUnit::Secs), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn display_is_what_parse_reads() {
        for (d, text) in [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "1500us"),
        ] {
            assert_eq!(display(d), text);
            assert_eq!(duration(text), Ok(d));
        }
    }
}
