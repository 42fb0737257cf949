//! Finds the foreign peers that interoperability tests run against.
//!
//! `scripts/setup-peers` installs them and writes `.cache/peers.env`, one
//! `CIPHERLINK_PEER_<NAME>=<path>` line per peer, or
//! `CIPHERLINK_PEER_<NAME>=missing:<reason>` when it could not be installed.
//! The same variables in the process environment take precedence.
//!
//! A test asks [`find`] for its peer. A peer that could not be installed makes
//! the test print a loud `SKIPPED` line and return early; a peer that setup
//! reported as installed but that is not there fails the test, because a
//! silent skip would hide a broken CI.

use std::path::{Path, PathBuf};

/// The foreign programs the interoperability tests drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The system `openssl` program (Debian's 3.0: no ML-KEM).
    Openssl,
    /// An `openssl` 4.x program built from the `openssl-src` crate's source (has ML-KEM).
    Openssl4,
    /// `stunnel4`.
    Stunnel,
    /// A Python interpreter with `cryptography` and the standard `ssl` module.
    Python,
    /// A Python interpreter with `tno.mpc.communication` 5.x, numpy and gmpy2.
    PythonTno5,
    /// A Python interpreter with `tno.mpc.communication` 4.x and numpy.
    PythonTno4,
    /// A Python interpreter with `grpcio` and `grpcio-tools`.
    PythonGrpc,
}

impl Peer {
    /// The suffix of its environment variable, `CIPHERLINK_PEER_<NAME>`.
    pub fn env_name(self) -> &'static str {
        match self {
            Peer::Openssl => "OPENSSL",
            Peer::Openssl4 => "OPENSSL4",
            Peer::Stunnel => "STUNNEL",
            Peer::Python => "PYTHON",
            Peer::PythonTno5 => "PYTHON_TNO5",
            Peer::PythonTno4 => "PYTHON_TNO4",
            Peer::PythonGrpc => "PYTHON_GRPC",
        }
    }
}

/// The workspace root (the folder holding the top `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    // This crate sits at <root>/crates/cipherlink-test-support.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What is known about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Installed at this path.
    Found(PathBuf),
    /// Setup tried and failed, or nothing recorded it: the reason.
    Missing(String),
}

/// Looks a peer up without printing anything.
pub fn lookup(peer: Peer) -> Lookup {
    let var = format!("CIPHERLINK_PEER_{}", peer.env_name());
    let recorded = std::env::var(&var).ok().or_else(|| read_peers_file(&var));
    match recorded {
        Some(value) => match value.strip_prefix("missing:") {
            Some(reason) => Lookup::Missing(reason.trim().to_string()),
            None => {
                let path = PathBuf::from(&value);
                if path.exists() {
                    Lookup::Found(path)
                } else {
                    panic!(
                        "{var}={value} was recorded by scripts/setup-peers as installed, \
                         but that file does not exist: rerun scripts/setup-peers"
                    )
                }
            }
        },
        None => Lookup::Missing(format!(
            "{var} is not set and .cache/peers.env does not list it: run scripts/setup-peers \
             (scripts/test does this)"
        )),
    }
}

/// Returns the peer's path, or prints a loud skip line naming the test and the
/// reason and returns `None`. Call as `let Some(p) = find(Peer::X, "name") else { return };`.
pub fn find(peer: Peer, test_name: &str) -> Option<PathBuf> {
    match lookup(peer) {
        Lookup::Found(path) => Some(path),
        Lookup::Missing(reason) => {
            eprintln!(
                "\n!!!!!!!! SKIPPED {test_name}: peer {:?} is not installed: {reason}\n",
                peer
            );
            None
        }
    }
}

fn read_peers_file(var: &str) -> Option<String> {
    let path = std::env::var_os("CIPHERLINK_PEERS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/peers.env"));
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == var)
        .map(|(_, value)| value.trim().to_string())
}

/// Makes certificates as the gRPC latency suite's openssl commands do, in
/// `dir`: `ca.crt`/`ca.key` (self-signed, RSA-2048, subject
/// `/C=US/ST=CA/O=TestLab/CN={ca_cn}`), then for each `(name, cn)` a leaf
/// `{name}.crt`/`{name}.key` signed with `openssl x509 -req` and no extension
/// file: an X.509 v1 certificate naming `cn` only in its subject.
pub fn openssl_v1_pki(
    openssl: &Path,
    dir: &Path,
    ca_cn: &str,
    leaves: &[(&str, &str)],
) -> Result<(), String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("running {}: {e}", openssl.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(&["genrsa", "-out", "ca.key", "2048"])?;
    let ca_subject = format!("/C=US/ST=CA/O=TestLab/CN={ca_cn}");
    run(&[
        "req",
        "-new",
        "-x509",
        "-key",
        "ca.key",
        "-sha256",
        "-subj",
        &ca_subject,
        "-days",
        "365",
        "-out",
        "ca.crt",
    ])?;
    for (name, cn) in leaves {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/C=US/ST=CA/O=TestLab/CN={cn}");
        run(&["genrsa", "-out", &key, "2048"])?;
        run(&["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr])?;
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "365",
            "-sha256",
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_marker_is_a_skip_not_a_failure() {
        std::env::set_var("CIPHERLINK_PEER_STUNNEL", "missing:apt-get refused");
        assert_eq!(
            lookup(Peer::Stunnel),
            Lookup::Missing("apt-get refused".into())
        );
        assert_eq!(find(Peer::Stunnel, "demo"), None);
    }

    #[test]
    #[should_panic(expected = "does not exist")]
    fn recorded_but_absent_peer_fails_loudly() {
        std::env::set_var("CIPHERLINK_PEER_PYTHON_GRPC", "/nonexistent/python");
        let _ = lookup(Peer::PythonGrpc);
    }
}
