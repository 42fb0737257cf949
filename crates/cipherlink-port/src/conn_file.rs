//! What a PORT client needs, as a file: the listener's address, the
//! server's 40-byte public key and the token bytes to present.
//!
//! ```text
//! cipherlink-port 1
//! name alice
//! server 203.0.113.5:8587
//! server-key <80 hex digits: X25519 public key || seed>
//! token <hex: the bytes the client presents>
//! ```

use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys::{PublicKey, MAX_KEY_FILE};
use crate::wire::MAX_TOKEN;

const HEADER: &str = "cipherlink-port 1";
const F: &str = "PORT connection file";

/// A PORT connection file.
#[derive(Debug, Clone)]
pub struct ConnectionFile {
    /// The client's name (for messages only: PORT does not send it).
    pub name: String,
    /// `host:port` of the listener.
    pub server: String,
    /// The server's public key.
    pub server_key: PublicKey,
    /// The token bytes (wiped when dropped).
    pub token: Zeroizing<Vec<u8>>,
}

fn err(reason: impl Into<String>) -> Error {
    Error::File {
        file: F,
        reason: reason.into(),
    }
}

impl ConnectionFile {
    /// The file text (wiped when dropped: it holds the token).
    pub fn to_text(&self) -> Zeroizing<String> {
        let token = Zeroizing::new(hex::encode(&self.token[..]));
        let mut s = Zeroizing::new(String::with_capacity(256 + token.len()));
        for part in [
            HEADER,
            "\nname ",
            &self.name,
            "\nserver ",
            &self.server,
            "\nserver-key ",
            &self.server_key.to_hex(),
            "\ntoken ",
            &token,
            "\n",
        ] {
            s.push_str(part);
        }
        s
    }

    /// Parses a connection file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_KEY_FILE + 2 * MAX_TOKEN {
            return Err(err("file too large"));
        }
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        if lines.next() != Some(HEADER) {
            return Err(err(format!("expected the header {HEADER:?}")));
        }
        let (mut name, mut server, mut key, mut token) = (None, None, None, None);
        for line in lines {
            let (k, v) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| err("expected: KEY VALUE"))?;
            let slot = match k {
                "name" => &mut name,
                "server" => &mut server,
                "server-key" => &mut key,
                "token" => &mut token,
                _ => {
                    return Err(err(
                        "unknown key (expected name, server, server-key, token)",
                    ))
                }
            };
            if slot.replace(v.trim()).is_some() {
                return Err(err(format!("{k} given twice")));
            }
        }
        let token = token.ok_or_else(|| err("missing token"))?;
        if token.len() > 2 * MAX_TOKEN {
            return Err(err(format!("token longer than {MAX_TOKEN} bytes")));
        }
        let token =
            Zeroizing::new(hex::decode(token).map_err(|_| err("token: expected hex digits"))?);
        Ok(Self {
            name: name.unwrap_or("client").to_owned(),
            server: server.ok_or_else(|| err("missing server"))?.to_owned(),
            server_key: PublicKey::parse(key.ok_or_else(|| err("missing server-key"))?)?,
            token,
        })
    }
}
