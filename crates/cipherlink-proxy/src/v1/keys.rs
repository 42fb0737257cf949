//! v1 key files (docs/v1-frame.md, "Key files"): a raw 32-byte X25519 key,
//! stored as 64 hex digits (what `cipherlink proxy keygen` writes), base64,
//! or the 32 raw bytes: the three forms PyNaCl users hold
//! (`key.encode(HexEncoder)`, `Base64Encoder`, `bytes(key)`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use crypto_box::{PublicKey, SecretKey};

/// Length of an X25519 key.
pub const KEY_LEN: usize = 32;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("v1 key file {}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The contents are not a 32-byte key in any accepted form.
    #[error("v1 key {origin}: {reason} (expected 32 bytes as 64 hex digits, base64, or raw)")]
    Format {
        /// The file, or `inline`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// Parses a key in any accepted form; `origin` names it in errors.
pub fn parse_key(bytes: &[u8], origin: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bad = |reason: String| KeyError::Format {
        origin: origin.to_string(),
        reason,
    };
    // 32 raw bytes cannot be the hex (64) or base64 (44) of a 32-byte key.
    if bytes.len() == KEY_LEN {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad(format!("{} bytes of binary data", bytes.len())))?;
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let decoded = if body.len() == 2 * KEY_LEN && body.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(&body).map_err(|e| bad(e.to_string()))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(&body)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&body))
            .map_err(|_| {
                bad(format!(
                    "{} characters that are neither hex nor base64",
                    body.len()
                ))
            })?
    };
    <[u8; KEY_LEN]>::try_from(decoded.as_slice())
        .map_err(|_| bad(format!("decodes to {} bytes, not 32", decoded.len())))
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = std::fs::read(path).map_err(|error| KeyError::File {
        path: path.to_path_buf(),
        error,
    })?;
    parse_key(&bytes, &path.display().to_string())
}

/// Reads our secret key.
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyError> {
    read_key_file(path).map(SecretKey::from)
}

/// Reads the peer's public key.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    read_key_file(path).map(PublicKey::from)
}

/// A fresh key pair.
pub fn generate_pair() -> (SecretKey, PublicKey) {
    let secret = SecretKey::from(rand::random::<[u8; KEY_LEN]>());
    let public = secret.public_key();
    (secret, public)
}

/// A fresh key pair's file contents: (secret hex, public hex), one line each.
pub fn generate() -> (String, String) {
    let (secret, public) = generate_pair();
    (
        format!("{}\n", hex::encode(secret.to_bytes())),
        format!("{}\n", hex::encode(public.as_bytes())),
    )
}

/// Writes `NAME.key` (secret, owner-only) and `NAME.pub` into `dir`;
/// refuses to overwrite either. Returns both paths.
pub fn write_key_pair(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), KeyError> {
    let (secret, public) = generate();
    let secret_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    write_new(&secret_path, &secret, true)?;
    write_new(&public_path, &public, false)?;
    Ok((secret_path, public_path))
}

fn write_new(path: &Path, text: &str, private: bool) -> Result<(), KeyError> {
    use std::io::Write;
    let file_error = |error| KeyError::File {
        path: path.to_path_buf(),
        error,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(file_error)?;
    file.write_all(text.as_bytes()).map_err(file_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_base64_and_raw_forms_agree() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let hex_text = format!("# comment\n{}\n", hex::encode(key));
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(parse_key(hex_text.as_bytes(), "t").unwrap(), key);
        assert_eq!(parse_key(b64.as_bytes(), "t").unwrap(), key);
        assert_eq!(parse_key(&key, "t").unwrap(), key);
    }

    #[test]
    fn wrong_lengths_are_named() {
        let err = parse_key(b"abcd\n", "k.pub").unwrap_err().to_string();
        assert!(
            err.contains("k.pub") && err.contains("decodes to 3 bytes"),
            "{err}"
        );
        let err = parse_key(&[0xff; 33], "k").unwrap_err().to_string();
        assert!(err.contains("binary"), "{err}");
    }

    #[test]
    fn keygen_writes_a_matching_pair_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = write_key_pair(dir.path(), "a").unwrap();
        let sk = read_secret_key(&secret).unwrap();
        let pk = read_public_key(&public).unwrap();
        assert_eq!(sk.public_key(), pk);
        assert!(write_key_pair(dir.path(), "a").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
