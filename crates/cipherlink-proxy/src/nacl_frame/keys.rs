//! v1 key files (docs/v1-frame.md, "Key files"): a raw 32-byte X25519 key,
//! stored as 64 hex digits (what `cipherlink proxy keygen` writes), base64,
//! or the 32 raw bytes: the three forms PyNaCl users hold
//! (`key.encode(HexEncoder)`, `Base64Encoder`, `bytes(key)`).
//!
//! Secret keys are read and written through `cipherlink-files`: written
//! 0600 through an exclusive temporary file, read only when group and
//! others cannot read them (as ssh does), into memory wiped when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
pub use cipherlink_files::Existing;
use cipherlink_files::{Access, FileError, NewFile};
use crypto_box::{PublicKey, SecretKey};
use curve25519_dalek::MontgomeryPoint;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of an X25519 key.
pub const KEY_LEN: usize = 32;

/// The largest key file read: one key with a few comment lines.
pub const MAX_KEY_FILE: u64 = 4096;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A public key file could not be read.
    #[error("v1 key file {}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A secret key file could not be read or written, or others can read it.
    #[error("v1 key file {0}")]
    Secret(#[from] FileError),
    /// The contents are not a 32-byte key in any accepted form.
    #[error("v1 key {origin}: {reason} (expected 32 bytes as 64 hex digits, base64, or raw)")]
    Format {
        /// The file, or `inline`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// The peer's public key gives an all-zero shared secret.
    #[error(
        "v1 peer public key {}: a low-order point, not a real public key (the X25519 shared \
         secret with it is all zeros, so anyone could compute the box key); get the peer's \
         real public key",
        public.display()
    )]
    LowOrder {
        /// The public key file.
        public: PathBuf,
    },
}

/// Parses a key in any accepted form; `origin` names it in errors.
pub fn parse_key(bytes: &[u8], origin: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let bad = |reason: String| KeyError::Format {
        origin: origin.to_string(),
        reason,
    };
    // 32 raw bytes cannot be the hex (64) or base64 (44) of a 32-byte key;
    // 32 bytes that are all text are a cut or mistyped text key instead (a
    // random key is all printable ASCII with probability ~2^-45).
    let text_like = |b: &u8| b.is_ascii_graphic() || b.is_ascii_whitespace();
    if bytes.len() == KEY_LEN && !bytes.iter().all(text_like) {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| bad(format!("{} bytes of binary data", bytes.len())))?;
    let body: Zeroizing<String> = Zeroizing::new(
        text.lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect(),
    );
    let decoded = Zeroizing::new(if body.bytes().all(|b| b.is_ascii_hexdigit()) {
        if body.len() != 2 * KEY_LEN {
            return Err(bad(format!(
                "{} hex digits, not 64 (a truncated or damaged hex key?)",
                body.len()
            )));
        }
        hex::decode(body.as_bytes()).map_err(|e| bad(e.to_string()))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(body.as_bytes()))
            .map_err(|_| {
                bad(format!(
                    "{} characters that are neither hex nor base64",
                    body.len()
                ))
            })?
    });
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if decoded.len() != KEY_LEN {
        return Err(bad(format!("decodes to {} bytes, not 32", decoded.len())));
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

/// Reads our secret key: refused when group or others can read the file
/// (the error says `chmod 600 FILE`).
pub fn read_secret_key(path: &Path) -> Result<SecretKey, KeyError> {
    let bytes = cipherlink_files::read_secret(path, MAX_KEY_FILE)?;
    let key = parse_key(&bytes, &path.display().to_string())?;
    Ok(SecretKey::from(*key))
}

/// Reads the peer's public key (not a secret: any mode is fine).
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyError> {
    let file_error = |error| KeyError::File {
        path: path.to_path_buf(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes))
        .map_err(file_error)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(file_error(std::io::Error::other(format!(
            "larger than {MAX_KEY_FILE} bytes; not a key file"
        ))));
    }
    parse_key(&bytes, &path.display().to_string()).map(|key| PublicKey::from(*key))
}

/// Refuses a pair whose X25519 shared secret is all zeros, as libsodium's
/// `crypto_box_beforenm` does: the peer "key" is then a low-order point
/// (all zeros, the order-8 points, p and p+1 ...), and the box key one
/// that anyone can compute. The product is the clamped one libsodium and
/// PyNaCl compute; the comparison runs in constant time.
pub fn check_pair(
    secret: &SecretKey,
    public: &PublicKey,
    public_path: &Path,
) -> Result<(), KeyError> {
    let shared = Zeroizing::new(
        MontgomeryPoint(*public.as_bytes())
            .mul_clamped(secret.to_bytes())
            .to_bytes(),
    );
    if bool::from(shared.ct_eq(&[0u8; KEY_LEN])) {
        return Err(KeyError::LowOrder {
            public: public_path.to_path_buf(),
        });
    }
    Ok(())
}

/// A fresh key pair.
pub fn generate_pair() -> (SecretKey, PublicKey) {
    let secret = SecretKey::from(rand::random::<[u8; KEY_LEN]>());
    let public = secret.public_key();
    (secret, public)
}

/// A fresh key pair's file contents: (secret hex, public hex), one line each.
pub fn generate() -> (Zeroizing<String>, String) {
    let (secret, public) = generate_pair();
    (
        Zeroizing::new(format!("{}\n", hex::encode(secret.to_bytes()))),
        format!("{}\n", hex::encode(public.as_bytes())),
    )
}

/// Writes `NAME.key` (secret, 0600) and `NAME.pub` (0644) into `dir`, which
/// is created if missing. With [`Existing::Refuse`], nothing is written if
/// either file exists. Returns both paths.
pub fn write_key_pair(
    dir: &Path,
    name: &str,
    existing: Existing,
) -> Result<(PathBuf, PathBuf), KeyError> {
    use std::io::Write;
    let (secret, public) = generate();
    let secret_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    // Both started before either is committed: a refused pair writes nothing.
    let mut secret_file = NewFile::create(&secret_path, Access::Private, existing)?;
    let mut public_file = NewFile::create(&public_path, Access::Public, existing)?;
    let written = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FileError::Io { path, source }
    };
    secret_file
        .write_all(secret.as_bytes())
        .map_err(written(&secret_path))?;
    public_file
        .write_all(public.as_bytes())
        .map_err(written(&public_path))?;
    secret_file.commit()?;
    public_file.commit()?;
    Ok((secret_path, public_path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_base64_and_raw_forms_agree() {
        // Raw bytes as a random key has them: not all text.
        let key: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        let hex_text = format!("# comment\n{}\n", hex::encode(key));
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(*parse_key(hex_text.as_bytes(), "t").unwrap(), key);
        assert_eq!(*parse_key(b64.as_bytes(), "t").unwrap(), key);
        assert_eq!(*parse_key(&key, "t").unwrap(), key);
    }

    #[test]
    fn wrong_lengths_are_named() {
        let err = parse_key(b"abcd\n", "k.pub").unwrap_err().to_string();
        assert!(
            err.contains("k.pub") && err.contains("4 hex digits"),
            "{err}"
        );
        let err = parse_key(b"abcdefgh\n", "k.pub").unwrap_err().to_string();
        assert!(err.contains("decodes to 6 bytes"), "{err}");
        let err = parse_key(&[0xff; 33], "k").unwrap_err().to_string();
        assert!(err.contains("binary"), "{err}");
    }

    #[test]
    fn thirty_two_bytes_of_text_are_not_taken_for_a_raw_key() {
        let hex_key = hex::encode([0x5a; 32]);
        // The first 32 hex digits (half a key), and 31 digits + newline.
        let cut = &hex_key.as_bytes()[..32];
        let err = parse_key(cut, "k.key").unwrap_err().to_string();
        assert!(err.contains("32 hex digits, not 64"), "{err}");
        let short = format!("{}\n", &hex_key[..31]);
        assert_eq!(short.len(), 32);
        let err = parse_key(short.as_bytes(), "k.key")
            .unwrap_err()
            .to_string();
        assert!(err.contains("31 hex digits, not 64"), "{err}");
        // 32 characters of base64 text: decodes to 24 bytes, refused.
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 24]);
        assert_eq!(b64.len(), 32);
        let err = parse_key(b64.as_bytes(), "k.key").unwrap_err().to_string();
        assert!(err.contains("decodes to 24 bytes"), "{err}");
    }

    /// A symlink planted where a key goes is replaced, never written
    /// through, and the secret is 0600 whatever was there.
    #[test]
    fn keygen_never_writes_through_a_planted_symlink() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        symlink(&victim, dir.path().join("a.key")).unwrap();
        symlink(&victim, dir.path().join("a.pub")).unwrap();
        assert!(write_key_pair(dir.path(), "a", Existing::Refuse).is_err());
        let (secret, _) = write_key_pair(dir.path(), "a", Existing::Replace).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = std::fs::symlink_metadata(&secret).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn keygen_writes_a_matching_pair_and_never_overwrites_unless_asked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = write_key_pair(dir.path(), "a", Existing::Refuse).unwrap();
        let sk = read_secret_key(&secret).unwrap();
        let pk = read_public_key(&public).unwrap();
        assert_eq!(sk.public_key(), pk);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&secret), mode(&public)), (0o600, 0o644));
        let before = std::fs::read(&secret).unwrap();
        let err = write_key_pair(dir.path(), "a", Existing::Refuse).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&secret).unwrap(), before);
        // Only the public key there: still refused, and no secret written.
        std::fs::remove_file(&secret).unwrap();
        assert!(write_key_pair(dir.path(), "a", Existing::Refuse).is_err());
        assert!(!secret.exists());
        write_key_pair(dir.path(), "a", Existing::Replace).unwrap();
        assert_eq!(
            read_secret_key(&secret).unwrap().public_key(),
            read_public_key(&public).unwrap()
        );
    }

    #[test]
    fn a_secret_key_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (secret, _) = write_key_pair(dir.path(), "a", Existing::Refuse).unwrap();
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_secret_key(&secret).unwrap_err().to_string();
            assert!(
                err.contains(&format!("chmod 600 {}", secret.display())),
                "{mode:o}: {err}"
            );
        }
    }

    /// Low-order points of Curve25519 (and their non-canonical twins): the
    /// list libsodium's and others' tests refuse.
    const LOW_ORDER: [&str; 7] = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    ];

    #[test]
    fn low_order_public_keys_are_refused_naming_the_file() {
        let (secret, public) = generate_pair();
        assert!(check_pair(&secret, &public, Path::new("ok.pub")).is_ok());
        for point in LOW_ORDER {
            let bytes: [u8; 32] = hex::decode(point).unwrap().try_into().unwrap();
            let err = check_pair(&secret, &PublicKey::from(bytes), Path::new("/k/peer.pub"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("/k/peer.pub") && err.contains("low-order"),
                "{point}: {err}"
            );
        }
    }
}
