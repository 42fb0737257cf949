//! Protocol parameters: PORT's keepalive settings (same names and meaning) and limits.

use std::time::Duration;

use crate::error::Error;

/// Largest padding (tail) any peer may send; bounds every allocation.
pub const MAX_TAIL: usize = 8192;

/// Longest timer any setting may ask for (one day): every deadline is
/// `now + setting`, and a setting near `Duration::MAX` would overflow it.
pub const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

fn check_timer(name: &str, d: Duration) -> Result<(), Error> {
    if d > MAX_TIMER {
        return Err(Error::Config(format!(
            "{name} {d:?} exceeds {} s",
            MAX_TIMER.as_secs()
        )));
    }
    Ok(())
}

/// Keepalive parameters, as PORT names them (`PORT_*` environment variables).
#[derive(Debug, Clone, PartialEq)]
pub struct KeepaliveConfig {
    /// `PORT_MIN_NEXT_IN`: shortest idle time before a ping.
    pub min_next_in: Duration,
    /// `PORT_MAX_NEXT_IN`: longest idle time before a ping.
    pub max_next_in: Duration,
    /// `PORT_MIN_TIMEOUT`: lower bound of the reply timeout.
    pub min_timeout: Duration,
    /// `PORT_MAX_TIMEOUT`: upper bound of the reply timeout.
    pub max_timeout: Duration,
    /// `PORT_DEFAULT_TIMEOUT`: reply timeout before any round-trip sample.
    pub default_timeout: Duration,
    /// `PORT_MAX_RETRIES`: unanswered pings before the peer is declared gone.
    pub max_retries: u32,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        Self {
            min_next_in: Duration::from_secs(64),
            max_next_in: Duration::from_secs(256),
            min_timeout: Duration::from_secs(4),
            max_timeout: Duration::from_secs(32),
            default_timeout: Duration::from_secs(30),
            max_retries: 12,
        }
    }
}

impl KeepaliveConfig {
    /// Checks the orderings the timers rely on.
    pub fn validate(&self) -> Result<(), Error> {
        for (name, d) in [
            ("PORT_MIN_NEXT_IN", self.min_next_in),
            ("PORT_MAX_NEXT_IN", self.max_next_in),
            ("PORT_MIN_TIMEOUT", self.min_timeout),
            ("PORT_MAX_TIMEOUT", self.max_timeout),
            ("PORT_DEFAULT_TIMEOUT", self.default_timeout),
        ] {
            check_timer(name, d)?;
        }
        if self.min_next_in.is_zero() || self.min_next_in > self.max_next_in {
            return Err(Error::Config(
                "need 0 < PORT_MIN_NEXT_IN <= PORT_MAX_NEXT_IN".into(),
            ));
        }
        if self.min_timeout.is_zero()
            || self.min_timeout > self.max_timeout
            || self.default_timeout.is_zero()
        {
            return Err(Error::Config(
                "need 0 < PORT_MIN_TIMEOUT <= PORT_MAX_TIMEOUT and PORT_DEFAULT_TIMEOUT > 0".into(),
            ));
        }
        Ok(())
    }
}

/// Everything a link endpoint needs besides keys.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// Keepalive timers.
    pub keepalive: KeepaliveConfig,
    /// `PORT_TAIL_LENGTH`: padding of every message is uniform in `[0, tail_length]`.
    pub tail_length: usize,
    /// Records under one key, the rekey record that ends it included (at
    /// least 2, at most [`crate::proto::MAX_RECORDS_PER_KEY`]).
    pub rekey_after_records: u64,
    /// Send a rekey record after this many plaintext bytes under one key.
    pub rekey_after_bytes: u64,
    /// A client gives up if msg2 has not arrived by then.
    pub handshake_timeout: Duration,
    /// A server connection draws one close time from this range when it is
    /// accepted; unless its handshake is accepted first, it closes then (or
    /// when the peer closes), whatever it was sent (docs §6).
    pub server_close_window: (Duration, Duration),
    /// Received data held for the application before the core stops asking for input.
    pub max_buffered_recv: usize,
    /// Wire bytes queued for sending before `send` accepts no more.
    pub max_buffered_send: usize,
}

impl Default for LinkParams {
    fn default() -> Self {
        Self {
            keepalive: KeepaliveConfig::default(),
            tail_length: 512,
            rekey_after_records: 1 << 20,
            rekey_after_bytes: 1 << 34,
            handshake_timeout: Duration::from_secs(30),
            server_close_window: (Duration::from_secs(15), Duration::from_secs(45)),
            max_buffered_recv: 256 * 1024,
            max_buffered_send: 256 * 1024,
        }
    }
}

impl LinkParams {
    /// Checks every bound.
    pub fn validate(&self) -> Result<(), Error> {
        self.keepalive.validate()?;
        if self.tail_length > MAX_TAIL {
            return Err(Error::Config(format!(
                "PORT_TAIL_LENGTH {} exceeds {MAX_TAIL}",
                self.tail_length
            )));
        }
        // Two at least: the rekey record itself is the last record of a key.
        if self.rekey_after_records < 2
            || self.rekey_after_records > crate::proto::MAX_RECORDS_PER_KEY
        {
            return Err(Error::Config(format!(
                "rekey_after_records must be in 2..={}",
                crate::proto::MAX_RECORDS_PER_KEY
            )));
        }
        check_timer("handshake_timeout", self.handshake_timeout)?;
        let (lo, hi) = self.server_close_window;
        check_timer("server_close_window", hi)?;
        if lo > hi {
            return Err(Error::Config(
                "server_close_window: the start is after the end".into(),
            ));
        }
        if self.rekey_after_bytes == 0 || self.handshake_timeout.is_zero() {
            return Err(Error::Config(
                "rekey_after_bytes and handshake_timeout must be positive".into(),
            ));
        }
        if self.max_buffered_recv < 1024 || self.max_buffered_send < 64 * 1024 {
            return Err(Error::Config(
                "buffers too small (recv >= 1 KiB, send >= 64 KiB)".into(),
            ));
        }
        Ok(())
    }

    /// Defaults overridden by the `PORT_*` variables `lookup` returns (e.g. `std::env::var`).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::from_names(lookup, "PORT_", "PORT_TAIL_LENGTH")
    }

    /// The datagram mode's parameters (docs §11.5): defaults overridden by
    /// the `TYPHOON_*` variables of the same meaning (`TYPHOON_MIN_NEXT_IN`,
    /// ..., `TYPHOON_MAX_RETRIES`, and `TYPHOON_MAX_TAIL_LENGTH` for the tail).
    pub fn from_typhoon_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        Self::from_names(lookup, "TYPHOON_", "TYPHOON_MAX_TAIL_LENGTH")
    }

    fn from_names(
        lookup: impl Fn(&str) -> Option<String>,
        prefix: &str,
        tail: &str,
    ) -> Result<Self, Error> {
        let mut p = Self::default();
        let secs = |name: &str, slot: &mut Duration| -> Result<(), Error> {
            let name = format!("{prefix}{name}");
            if let Some(v) = lookup(&name) {
                let f: f64 = v
                    .trim()
                    .parse()
                    .map_err(|_| Error::Config(format!("{name}={v:?}: not a number of seconds")))?;
                *slot = Duration::try_from_secs_f64(f)
                    .map_err(|_| Error::Config(format!("{name}={v:?}: out of range")))?;
            }
            Ok(())
        };
        let k = &mut p.keepalive;
        secs("MIN_NEXT_IN", &mut k.min_next_in)?;
        secs("MAX_NEXT_IN", &mut k.max_next_in)?;
        secs("MIN_TIMEOUT", &mut k.min_timeout)?;
        secs("MAX_TIMEOUT", &mut k.max_timeout)?;
        secs("DEFAULT_TIMEOUT", &mut k.default_timeout)?;
        let retries = format!("{prefix}MAX_RETRIES");
        if let Some(v) = lookup(&retries) {
            k.max_retries = v
                .trim()
                .parse()
                .map_err(|_| Error::Config(format!("{retries}={v:?}: not a count")))?;
        }
        if let Some(v) = lookup(tail) {
            p.tail_length = v
                .trim()
                .parse()
                .map_err(|_| Error::Config(format!("{tail}={v:?}: not a byte count")))?;
        }
        p.validate()?;
        Ok(p)
    }
}
