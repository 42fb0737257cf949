//! Server keys, invitation tokens and connection files, and their text formats
//! (docs/link-protocol.md §8). Parsing and formatting only: the caller reads
//! and writes the files.

use std::collections::HashMap;

use zeroize::Zeroizing;

use crate::error::Error;
use crate::proto::{crypto, Entropy};

/// Longest accepted file (all three formats); bounds parsing.
pub const MAX_FILE_LEN: usize = 16 << 20;

/// The server's static X25519 key pair.
#[derive(Clone)]
pub struct ServerKey {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKey({})", hex::encode(self.public))
    }
}

impl ServerKey {
    /// A fresh key from 32 random bytes.
    pub fn generate(rng: &mut dyn Entropy) -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        rng.fill(&mut s[..]);
        Self::from_secret(*s)
    }

    /// The key pair of a given secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let public = crypto::public_key(&secret);
        Self {
            secret: Zeroizing::new(secret),
            public,
        }
    }

    /// The public key `S`.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The key file text (wiped when dropped: it holds the secret).
    pub fn to_text(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(hex::encode(&self.secret[..]));
        let public = hex::encode(self.public);
        exact_text(&[
            "cipherlink-link-server-key 1\nsecret ",
            &secret,
            "\npublic ",
            &public,
            "\n",
        ])
    }

    /// Parses a key file; the public key must match the secret.
    pub fn parse(text: &str) -> Result<Self, Error> {
        const F: &str = "server key file";
        let fields = parse_fields(
            F,
            text,
            "cipherlink-link-server-key 1",
            &["secret", "public"],
        )?;
        let secret = Zeroizing::new(hex_field::<32>(F, &fields, "secret")?);
        let public: [u8; 32] = hex_field(F, &fields, "public")?;
        let key = Self::from_secret(*secret);
        if key.public != public {
            return Err(file_err(F, 0, "public key does not match the secret"));
        }
        Ok(key)
    }
}

impl zeroize::ZeroizeOnDrop for ServerKey {}
impl zeroize::ZeroizeOnDrop for Token {}
impl zeroize::ZeroizeOnDrop for ClientKey {}

/// A client's invitation token: an id to look it up and a secret to prove.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Sent in msg1 (encrypted) so the server can find the entry.
    pub id: [u8; 16],
    /// Never sent; proven by a MAC and mixed into the keys as a PSK.
    pub secret: Zeroizing<[u8; 32]>,
    /// The optional client static key bound to this token (docs §2): with
    /// one, a client must hold its secret as well as the token's.
    pub client_key: Option<ClientKey>,
}

/// A client static X25519 key bound to a token. The client's copy (from its
/// connection file) has the secret `c`; the server's (from its token store)
/// only the public key `C`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// `C = X25519(c, 9)`.
    pub public: [u8; 32],
    secret: Option<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({})", hex::encode(self.public))
    }
}

impl ClientKey {
    /// A fresh key pair from 32 random bytes.
    pub fn generate(rng: &mut dyn Entropy) -> Self {
        let mut c = Zeroizing::new([0u8; 32]);
        rng.fill(&mut c[..]);
        Self::from_secret(*c)
    }

    /// The key pair of a given secret (the client's side).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self {
            public: crypto::public_key(&secret),
            secret: Some(Zeroizing::new(secret)),
        }
    }

    /// Only the public key (the server's side).
    pub fn from_public(public: [u8; 32]) -> Self {
        Self {
            public,
            secret: None,
        }
    }

    /// The secret `c`, on the client's side.
    pub fn secret(&self) -> Option<&[u8; 32]> {
        self.secret.as_deref()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({})", hex::encode(self.id))
    }
}

impl Token {
    /// A fresh random token.
    pub fn generate(rng: &mut dyn Entropy) -> Self {
        let mut id = [0u8; 16];
        rng.fill(&mut id);
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(&mut secret[..]);
        Self {
            id,
            secret,
            client_key: None,
        }
    }

    /// The server's copy: the client key, if any, without its secret.
    pub fn server_copy(&self) -> Self {
        Self {
            id: self.id,
            secret: self.secret.clone(),
            client_key: self
                .client_key
                .as_ref()
                .map(|k| ClientKey::from_public(k.public)),
        }
    }
}

/// One token store line.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// The client's name (what the server reports as the peer).
    pub name: String,
    /// The token.
    pub token: Token,
    /// Revoked tokens are refused.
    pub revoked: bool,
}

/// The server's tokens, by id.
#[derive(Debug, Clone, Default)]
pub struct TokenStore {
    entries: Vec<TokenEntry>,
    by_id: HashMap<[u8; 16], usize>,
}

/// Checks a client name: 1-64 characters from `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "name {name:?}: use 1-64 characters from A-Z a-z 0-9 . _ -"
        )))
    }
}

impl TokenStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Issues a token for `name`; a name with an active token is refused.
    pub fn issue(&mut self, name: &str, rng: &mut dyn Entropy) -> Result<Token, Error> {
        self.issue_with(name, false, rng)
    }

    /// Issues a token for `name`, bound to a fresh client static key when
    /// `client_key` (randomness: the token, then the key's 32 bytes). The
    /// returned token carries the key's secret (for the connection file);
    /// the store keeps only its public key.
    pub fn issue_with(
        &mut self,
        name: &str,
        client_key: bool,
        rng: &mut dyn Entropy,
    ) -> Result<Token, Error> {
        check_name(name)?;
        if self.entries.iter().any(|e| e.name == name && !e.revoked) {
            return Err(Error::Config(format!(
                "{name:?} already has an active token (revoke it first)"
            )));
        }
        let mut token = Token::generate(rng);
        if client_key {
            token.client_key = Some(ClientKey::generate(rng));
        }
        self.insert(TokenEntry {
            name: name.to_owned(),
            token: token.server_copy(),
            revoked: false,
        })?;
        Ok(token)
    }

    /// Adds an existing token for `name` (e.g. restored from elsewhere).
    pub fn add(&mut self, name: &str, token: Token) -> Result<(), Error> {
        check_name(name)?;
        self.insert(TokenEntry {
            name: name.to_owned(),
            token: token.server_copy(),
            revoked: false,
        })
    }

    fn insert(&mut self, e: TokenEntry) -> Result<(), Error> {
        if self.by_id.contains_key(&e.token.id) {
            return Err(Error::Config("duplicate token id".into()));
        }
        self.by_id.insert(e.token.id, self.entries.len());
        self.entries.push(e);
        Ok(())
    }

    /// Revokes every active token of `name`; returns how many.
    pub fn revoke(&mut self, name: &str) -> usize {
        let mut n = 0;
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.name == name && !e.revoked)
        {
            e.revoked = true;
            n += 1;
        }
        n
    }

    /// The entry with this id, revoked or not.
    pub fn lookup(&self, id: &[u8; 16]) -> Option<&TokenEntry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    /// All entries.
    pub fn entries(&self) -> &[TokenEntry] {
        &self.entries
    }

    /// The store file text (wiped when dropped: it holds the secrets).
    pub fn to_text(&self) -> Zeroizing<String> {
        // Sized up front, so that growing never leaves a copy behind.
        let mut s = Zeroizing::new(String::with_capacity(32 + 256 * self.entries.len()));
        s.push_str("cipherlink-link-tokens 1\n");
        for e in &self.entries {
            let secret = Zeroizing::new(hex::encode(&e.token.secret[..]));
            for part in [
                "token ",
                &e.name,
                " ",
                &hex::encode(e.token.id),
                " ",
                &secret,
                " ",
                if e.revoked { "revoked" } else { "active" },
            ] {
                s.push_str(part);
            }
            if let Some(k) = &e.token.client_key {
                s.push(' ');
                s.push_str(&hex::encode(k.public));
            }
            s.push('\n');
        }
        s
    }

    /// Room for the entries (tests of §7: parsing never grows it).
    #[doc(hidden)]
    pub fn entries_capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Parses a store file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        const F: &str = "token store";
        let mut store = Self::new();
        // Room up front for every line long enough to be a token, and the
        // one `invite` adds: a growing vector would leave copies of the
        // secrets behind in freed memory (§7).
        let room = text.lines().filter(|l| l.len() >= MIN_TOKEN_LINE).count();
        store.entries.reserve_exact(room + 1);
        let mut lines = numbered_lines(F, text)?;
        expect_header(F, &mut lines, "cipherlink-link-tokens 1")?;
        for (no, line) in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let (kw, name, id, secret, state, client) = match parts[..] {
                [kw, name, id, secret, state] => (kw, name, id, secret, state, None),
                [kw, name, id, secret, state, client] => {
                    (kw, name, id, secret, state, Some(client))
                }
                _ => {
                    return Err(file_err(
                        F,
                        no,
                        "expected: token NAME ID SECRET active|revoked [CLIENT-KEY]",
                    ))
                }
            };
            if kw != "token" {
                return Err(file_err(F, no, format!("unknown key {}", shown(kw))));
            }
            check_name(name).map_err(|_| {
                file_err(
                    F,
                    no,
                    format!(
                        "name {}: use 1-64 characters from A-Z a-z 0-9 . _ -",
                        shown(name)
                    ),
                )
            })?;
            let revoked = match state {
                "active" => false,
                "revoked" => true,
                other => {
                    return Err(file_err(
                        F,
                        no,
                        format!("state {}: expected active or revoked", shown(other)),
                    ))
                }
            };
            let id: [u8; 16] = parse_hex(id).ok_or_else(|| file_err(F, no, "token id: 32 hex"))?;
            let secret: Zeroizing<[u8; 32]> = Zeroizing::new(
                parse_hex(secret).ok_or_else(|| file_err(F, no, "token secret: 64 hex"))?,
            );
            let client_key = match client {
                None => None,
                Some(c) => Some(ClientKey::from_public(
                    parse_hex(c).ok_or_else(|| file_err(F, no, "client key: 64 hex"))?,
                )),
            };
            store
                .insert(TokenEntry {
                    name: name.to_owned(),
                    token: Token {
                        id,
                        secret,
                        client_key,
                    },
                    revoked,
                })
                .map_err(|e| file_err(F, no, e.to_string()))?;
        }
        Ok(store)
    }
}

/// The shortest line that can be a token: `token`, a 1-character name,
/// the 32 + 64 hex digits, `active`, and the spaces between.
const MIN_TOKEN_LINE: usize = 5 + 1 + 32 + 64 + 6 + 4;

/// The concatenation of `parts` in a buffer of exactly its length, wiped
/// when dropped (no growth, so no copy of a secret left behind).
fn exact_text(parts: &[&str]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
    for p in parts {
        s.push_str(p);
    }
    s
}

/// What a client needs to connect (docs/link-protocol.md §8).
#[derive(Debug, Clone)]
pub struct ConnectionFile {
    /// The client's name on the server.
    pub name: String,
    /// `host:port` of the server.
    pub server: String,
    /// The server's pinned static public key.
    pub server_key: [u8; 32],
    /// The client's token.
    pub token: Token,
    /// The padding bound the server suggests.
    pub tail_length: usize,
}

impl ConnectionFile {
    /// The file text (wiped when dropped: it holds the secrets).
    pub fn to_text(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(hex::encode(&self.token.secret[..]));
        let client = Zeroizing::new(
            self.token
                .client_key
                .as_ref()
                .and_then(ClientKey::secret)
                .map(hex::encode)
                .unwrap_or_default(),
        );
        let (server_key, id, tail) = (
            hex::encode(self.server_key),
            hex::encode(self.token.id),
            self.tail_length.to_string(),
        );
        let mut parts = vec![
            "cipherlink-link 1\nname ",
            &self.name,
            "\nserver ",
            &self.server,
            "\nserver-key ",
            &server_key,
            "\ntoken-id ",
            &id,
            "\ntoken-secret ",
            &secret,
            "\ntail-length ",
            &tail,
            "\n",
        ];
        if !client.is_empty() {
            parts.extend(["client-key ", &client, "\n"]);
        }
        exact_text(&parts)
    }

    /// Parses a connection file.
    pub fn parse(text: &str) -> Result<Self, Error> {
        const F: &str = "connection file";
        let fields = parse_fields(
            F,
            text,
            "cipherlink-link 1",
            &[
                "name",
                "server",
                "server-key",
                "token-id",
                "token-secret",
                "tail-length",
                "client-key",
            ],
        )?;
        let get = |k: &str| {
            fields
                .get(k)
                .map(|(_, v)| (*v).to_owned())
                .ok_or_else(|| file_err(F, 0, format!("missing {k}")))
        };
        let name = get("name")?;
        check_name(&name).map_err(|e| file_err(F, 0, e.to_string()))?;
        let tail: usize = get("tail-length")?
            .parse()
            .map_err(|_| file_err(F, 0, "tail-length: not a number"))?;
        if tail > crate::config::MAX_TAIL {
            return Err(file_err(F, 0, "tail-length too large"));
        }
        Ok(Self {
            name,
            server: get("server")?,
            server_key: hex_field(F, &fields, "server-key")?,
            token: Token {
                id: hex_field(F, &fields, "token-id")?,
                secret: Zeroizing::new(hex_field(F, &fields, "token-secret")?),
                client_key: if fields.contains_key("client-key") {
                    let c = Zeroizing::new(hex_field::<32>(F, &fields, "client-key")?);
                    Some(ClientKey::from_secret(*c))
                } else {
                    None
                },
            },
            tail_length: tail,
        })
    }
}

/// A word from a file, quoted in an error only when it cannot be a secret:
/// short and made of letters and dashes (a key name or a state), never hex
/// digits of a key or token.
fn shown(word: &str) -> String {
    let harmless = word.len() <= 24
        && word
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_')
        && !word.bytes().all(|b| b.is_ascii_hexdigit());
    if harmless {
        format!("{word:?}")
    } else {
        format!("a {}-character word (not shown)", word.chars().count())
    }
}

fn file_err(file: &'static str, line: usize, reason: impl Into<String>) -> Error {
    Error::File {
        file,
        line,
        reason: reason.into(),
    }
}

fn numbered_lines<'a>(
    file: &'static str,
    text: &'a str,
) -> Result<impl Iterator<Item = (usize, &'a str)>, Error> {
    if text.len() > MAX_FILE_LEN {
        return Err(file_err(file, 0, "file too large"));
    }
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#')))
}

fn expect_header<'a>(
    file: &'static str,
    lines: &mut impl Iterator<Item = (usize, &'a str)>,
    header: &str,
) -> Result<(), Error> {
    match lines.next() {
        Some((_, l)) if l == header => Ok(()),
        // Never the line itself: a store or key file without its header
        // starts with a secret.
        Some((no, l)) => Err(file_err(
            file,
            no,
            format!(
                "expected the header {header:?}, found {}",
                shown(l.split_whitespace().next().unwrap_or(""))
            ),
        )),
        None => Err(file_err(file, 0, "empty file")),
    }
}

/// Values borrowed from the file text: no copy of a secret to wipe.
type Fields<'a> = HashMap<&'a str, (usize, &'a str)>;

fn parse_fields<'a>(
    file: &'static str,
    text: &'a str,
    header: &str,
    keys: &[&str],
) -> Result<Fields<'a>, Error> {
    let mut lines = numbered_lines(file, text)?;
    expect_header(file, &mut lines, header)?;
    let mut out = Fields::new();
    for (no, line) in lines {
        let (k, v) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| file_err(file, no, "expected: KEY VALUE"))?;
        if !keys.contains(&k) {
            return Err(file_err(file, no, format!("unknown key {}", shown(k))));
        }
        if out.insert(k, (no, v.trim())).is_some() {
            return Err(file_err(file, no, format!("{k} given twice")));
        }
    }
    Ok(out)
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

fn hex_field<const N: usize>(
    file: &'static str,
    f: &Fields<'_>,
    key: &str,
) -> Result<[u8; N], Error> {
    let (no, v) = f
        .get(key)
        .ok_or_else(|| file_err(file, 0, format!("missing {key}")))?;
    parse_hex(v).ok_or_else(|| file_err(file, *no, format!("{key}: expected {} hex digits", 2 * N)))
}
