//! Flag values every command reads the same way: durations (`30s`,
//! `250ms`, `2m`; the grammar is the core's, which TOML files share) and
//! listen addresses (`8443`, `localhost:8443`, `[::1]:8443`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use cipherlink::duration::{parse, BareUnit};

/// A duration with its unit (`30s`, `250ms`, `2m`, `1h`, `500us`, `1.5s`);
/// a bare number is milliseconds (flags and environment
/// variables that used to take milliseconds: `DELAY_MS=5`).
pub fn duration_or_ms(text: &str) -> Result<Duration, String> {
    parse(text, BareUnit::Millis).map_err(|e| e.to_string())
}

/// A duration; a bare number is seconds (flags that used to take seconds).
pub fn duration_or_secs(text: &str) -> Result<Duration, String> {
    parse(text, BareUnit::Secs).map_err(|e| e.to_string())
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

    #[test]
    fn bare_numbers_keep_the_old_unit() {
        assert_eq!(duration_or_ms("0.5"), Ok(Duration::from_micros(500)));
        assert_eq!(duration_or_ms("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(duration_or_secs("10"), Ok(Duration::from_secs(10)));
        assert!(duration_or_secs("3 parsecs")
            .unwrap_err()
            .contains("not a unit"));
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
