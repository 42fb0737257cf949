//! SeasideVPN's 40-byte server keys (an X25519 key followed by an 8-byte
//! seed) and their text forms. Parsing and formatting only: the caller reads
//! and writes the files.

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::crypto::x25519_public;
use crate::error::Error;

/// Bytes of the seed that follows the X25519 key.
pub const SEED_LEN: usize = 8;
/// Bytes of a PORT key as SeasideVPN writes it: key (32) and seed (8).
pub const KEY_LEN: usize = 32 + SEED_LEN;
/// Longest key file accepted; bounds parsing.
pub const MAX_KEY_FILE: usize = 64 * 1024;

const HEADER: &str = "cipherlink-port-server-key 1";
/// SeasideVPN's own variable for the server's private key (base64 of 40
/// bytes, in its `conf.env`).
pub const SEASIDE_VAR: &str = "SEASIDE_PRIVATE_KEY";

/// The 40-byte public key clients are given: `X25519 public (32) || seed (8)`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    /// The X25519 public key.
    pub key: [u8; 32],
    /// The seed that masks the client's ephemeral key.
    pub seed: [u8; SEED_LEN],
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl PublicKey {
    /// From SeasideVPN's 40 bytes.
    pub fn from_bytes(b: &[u8; KEY_LEN]) -> Self {
        let (key, seed) = split(b);
        Self { key, seed }
    }

    /// SeasideVPN's 40 bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        join(&self.key, &self.seed)
    }

    /// 80 hex digits, the form `link keygen --wire port` prints.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Parses 80 hex digits, or the base64 of 40 bytes (SeasideVPN's form).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bytes = decode_key(text.trim(), "server public key")?;
        Ok(Self::from_bytes(&bytes))
    }
}

/// The server's key pair: X25519 secret and public key, and the seed.
#[derive(Clone)]
pub struct ServerKey {
    secret: Zeroizing<[u8; 32]>,
    public: PublicKey,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", self.public.to_hex())
    }
}

impl zeroize::ZeroizeOnDrop for ServerKey {}

impl ServerKey {
    /// A fresh key: 32 random bytes of secret and 8 of seed.
    pub fn generate(rng: &mut dyn crate::Entropy) -> Self {
        let mut b = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(&mut b[..]);
        Self::from_private(&b)
    }

    /// From SeasideVPN's 40-byte private key: `X25519 secret || seed`.
    pub fn from_private(b: &[u8; KEY_LEN]) -> Self {
        let (secret, seed) = split(b);
        let secret = Zeroizing::new(secret);
        let key = x25519_public(&secret);
        Self {
            public: PublicKey { key, seed },
            secret,
        }
    }

    /// The public key clients are given.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// SeasideVPN's 40-byte private key (wiped when dropped).
    pub fn private_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(join(&self.secret, &self.public.seed))
    }

    /// The key file text (wiped when dropped).
    pub fn to_text(&self) -> Zeroizing<String> {
        let private = Zeroizing::new(hex::encode(&self.private_bytes()[..]));
        let mut s = Zeroizing::new(String::with_capacity(HEADER.len() + 200));
        for part in [
            HEADER,
            "\nprivate ",
            &private,
            "\npublic ",
            &self.public.to_hex(),
            "\n",
        ] {
            s.push_str(part);
        }
        s
    }

    /// Parses a key file: ours (`cipherlink-port-server-key 1`, `private`
    /// and `public` as 80 hex digits; the public key must match), or
    /// SeasideVPN's line `SEASIDE_PRIVATE_KEY=<base64 of 40 bytes>` (as in
    /// its `conf.env`; other lines and `#` comments are ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        const F: &str = "PORT server key file";
        if text.len() > MAX_KEY_FILE {
            return Err(file_err(F, "file too large"));
        }
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let first = lines.next().ok_or_else(|| file_err(F, "empty file"))?;
        if first != HEADER {
            return parse_seaside(text);
        }
        let (mut private, mut public) = (None, None);
        for line in lines {
            let (k, v) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| file_err(F, "expected: KEY VALUE"))?;
            let slot = match k {
                "private" => &mut private,
                "public" => &mut public,
                _ => return Err(file_err(F, "unknown key (expected private, public)")),
            };
            if slot.replace(v.trim()).is_some() {
                return Err(file_err(F, format!("{k} given twice")));
            }
        }
        let private = private.ok_or_else(|| file_err(F, "missing private"))?;
        let b = Zeroizing::new(
            hex_key(private).ok_or_else(|| file_err(F, "private: expected 80 hex digits"))?,
        );
        let key = Self::from_private(&b);
        let public = public.ok_or_else(|| file_err(F, "missing public"))?;
        let public =
            hex_key(public).ok_or_else(|| file_err(F, "public: expected 80 hex digits"))?;
        if key.public.to_bytes() != public {
            return Err(file_err(F, "public key does not match the private key"));
        }
        Ok(key)
    }
}

fn parse_seaside(text: &str) -> Result<ServerKey, Error> {
    const F: &str = "PORT server key file";
    let prefix = format!("{SEASIDE_VAR}=");
    let value = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(&prefix))
        .ok_or_else(|| {
            file_err(
                F,
                format!(
                    "expected the header {HEADER:?} or a line {SEASIDE_VAR}=<base64 of 40 bytes>"
                ),
            )
        })?;
    // SeasideVPN's env files put a comment after the value.
    let value = value
        .split('#')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let b = Zeroizing::new(decode_key(value, F)?);
    Ok(ServerKey::from_private(&b))
}

fn split(b: &[u8; KEY_LEN]) -> ([u8; 32], [u8; SEED_LEN]) {
    let mut key = [0u8; 32];
    let mut seed = [0u8; SEED_LEN];
    key.copy_from_slice(&b[..32]);
    seed.copy_from_slice(&b[32..]);
    (key, seed)
}

fn join(key: &[u8; 32], seed: &[u8; SEED_LEN]) -> [u8; KEY_LEN] {
    let mut b = [0u8; KEY_LEN];
    b[..32].copy_from_slice(key);
    b[32..].copy_from_slice(seed);
    b
}

fn hex_key(s: &str) -> Option<[u8; KEY_LEN]> {
    let mut out = [0u8; KEY_LEN];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// 80 hex digits or standard base64 of exactly 40 bytes.
fn decode_key(s: &str, what: &'static str) -> Result<[u8; KEY_LEN], Error> {
    if let Some(k) = hex_key(s) {
        return Ok(k);
    }
    if s.len() <= 64 {
        if let Ok(v) = base64::engine::general_purpose::STANDARD.decode(s) {
            let v = Zeroizing::new(v);
            if let Ok(k) = <[u8; KEY_LEN]>::try_from(&v[..]) {
                return Ok(k);
            }
        }
    }
    Err(file_err(
        what,
        "expected 40 bytes as 80 hex digits or base64",
    ))
}

fn file_err(file: &'static str, reason: impl Into<String>) -> Error {
    Error::File {
        file,
        reason: reason.into(),
    }
}
