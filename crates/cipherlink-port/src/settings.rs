//! `PORT_*` settings, read as SeasideVPN reads them: the same names, the
//! same defaults, whole numbers (seconds for times).

use std::time::Duration;

use crate::error::Error;

/// PORT's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSettings {
    /// `PORT_TAIL_LENGTH` (512): every message's tail is uniform in `[0, tail_length]`.
    pub tail_length: usize,
    /// `PORT_TIMEOUT` (32 s): connecting, and waiting for an INIT or for the
    /// client's second connection. We also bound the rest of a message
    /// that has started arriving by it.
    pub timeout: Duration,
    /// `PORT_KEEPIDLE` (5 s): idle time before TCP's first keepalive probe.
    pub keepidle: Duration,
    /// `PORT_KEEPINTVL` (10 s): time between keepalive probes.
    pub keepintvl: Duration,
    /// `PORT_KEEPCNT` (5): unanswered probes before TCP drops the connection.
    pub keepcnt: u32,
}

impl Default for PortSettings {
    fn default() -> Self {
        Self {
            tail_length: 512,
            timeout: Duration::from_secs(32),
            keepidle: Duration::from_secs(5),
            keepintvl: Duration::from_secs(10),
            keepcnt: 5,
        }
    }
}

/// Longest time any setting may ask for (one day).
const MAX_SECS: u64 = 24 * 3600;

fn number(name: &'static str, v: &str, min: u64, max: u64) -> Result<u64, Error> {
    let err = |reason| Error::Setting {
        name,
        value: v.to_owned(),
        reason,
    };
    // Python's int(): surrounding blanks, an optional +, digits with single underscores.
    let t = v.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return Err(err("not a whole number"));
    }
    let n: u64 = t
        .replace('_', "")
        .parse()
        .map_err(|_| err("not a whole number"))?;
    if n < min || n > max {
        return Err(err("out of range"));
    }
    Ok(n)
}

impl PortSettings {
    /// Defaults overridden by the `PORT_*` variables `lookup` returns (e.g. `std::env::var`).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut s = Self::default();
        if let Some(v) = lookup("PORT_TAIL_LENGTH") {
            // The tail length travels as a u16.
            s.tail_length = number("PORT_TAIL_LENGTH", &v, 0, u64::from(u16::MAX))? as usize;
        }
        let secs = |name: &'static str, slot: &mut Duration| -> Result<(), Error> {
            if let Some(v) = lookup(name) {
                *slot = Duration::from_secs(number(name, &v, 1, MAX_SECS)?);
            }
            Ok(())
        };
        secs("PORT_TIMEOUT", &mut s.timeout)?;
        secs("PORT_KEEPIDLE", &mut s.keepidle)?;
        secs("PORT_KEEPINTVL", &mut s.keepintvl)?;
        if let Some(v) = lookup("PORT_KEEPCNT") {
            s.keepcnt = number("PORT_KEEPCNT", &v, 1, 127)? as u32;
        }
        Ok(s)
    }
}
