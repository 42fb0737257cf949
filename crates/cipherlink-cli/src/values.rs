//! Flag values every command reads the same way: durations (`30s`,
//! `250ms`, `2m`) and listen addresses (`8443`, `localhost:8443`,
//! `[::1]:8443`). Hand-written rather than `humantime`: the gRPC lab's
//! environment variables carry fractional milliseconds (`DELAY_MS=0.5`),
//! which humantime does not take.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A duration with its unit (`30s`, `250ms`, `2m`, `1h`, `500us`, `1.5s`);
/// a bare number is milliseconds (flags and environment
/// variables that used to take milliseconds: `DELAY_MS=5`).
pub fn duration_or_ms(text: &str) -> Result<Duration, String> {
    parse_duration(text, Some(Unit::Millis))
}

/// A duration; a bare number is seconds (flags that used to take seconds).
pub fn duration_or_secs(text: &str) -> Result<Duration, String> {
    parse_duration(text, Some(Unit::Secs))
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Millis,
    Secs,
}

fn parse_duration(text: &str, bare: Option<Unit>) -> Result<Duration, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 30s, 250ms or 2m"))?;
    let seconds_per_unit = match (unit.trim().to_ascii_lowercase().as_str(), bare) {
        ("ns", _) => 1e-9,
        ("us" | "µs", _) => 1e-6,
        ("ms", _) => 1e-3,
        ("s" | "sec" | "secs", _) => 1.0,
        ("m" | "min" | "mins", _) => 60.0,
        ("h", _) => 3600.0,
        ("", Some(Unit::Millis)) => 1e-3,
        ("", Some(Unit::Secs)) => 1.0,
        ("", None) if value == 0.0 => 0.0,
        ("", None) => return Err(format!("`{text}` needs a unit: {number}s or {number}ms")),
        (other, _) => {
            return Err(format!(
                "`{other}` in `{text}` is not a unit; use ns, us, ms, s, m or h"
            ))
        }
    };
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("`{text}` is out of range"))
}

/// Where to listen: `PORT` alone (every interface), `HOST:PORT` with a host
/// name or address, `[IPv6]:PORT`.
pub fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    let trimmed = text.trim();
    if let Ok(port) = trimmed.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    let mut found = trimmed
        .to_socket_addrs()
        .map_err(|e| format!("`{text}`: {e} (write PORT, HOST:PORT or [IPv6]:PORT)"))?;
    found
        .next()
        .ok_or_else(|| format!("`{text}` resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(text: &str) -> Result<Duration, String> {
        parse_duration(text, None)
    }

    #[test]
    fn durations_take_a_unit_and_bare_numbers_only_where_legacy() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("500US"), Ok(Duration::from_micros(500)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("30").unwrap_err().contains("30s"));
        assert!(duration("3 parsecs").unwrap_err().contains("not a unit"));
        assert!(duration("-1s").is_err());
        assert_eq!(duration_or_ms("0.5"), Ok(Duration::from_micros(500)));
        assert_eq!(duration_or_ms("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration_or_secs("10"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn listen_takes_a_port_a_name_or_an_address() {
        assert_eq!(listen_addr("8443"), Ok("0.0.0.0:8443".parse().unwrap()));
        assert_eq!(
            listen_addr("127.0.0.1:1"),
            Ok("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(listen_addr("[::1]:2"), Ok("[::1]:2".parse().unwrap()));
        assert!(listen_addr("localhost:3").unwrap().ip().is_loopback());
        assert!(listen_addr("nowhere").is_err());
    }
}
