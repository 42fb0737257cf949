//! Finds the foreign peers that interoperability tests run against; with
//! the `pki` feature, also makes their test certificates (`pki`).
//!
//! `scripts/setup-peers` installs them and writes `.cache/peers.env`, one
//! `CIPHERLINK_PEER_<NAME>=<path>` line per peer, or
//! `CIPHERLINK_PEER_<NAME>=missing:<reason>` when it could not be installed.
//! The same variables in the process environment take precedence.
//!
//! A test asks for its peer with [`peer!`] (or [`find`]). A peer that could
//! not be installed makes the test print a loud `SKIPPED` line and return
//! early, and the skip is counted in `.cache/peer-tests.log`, which
//! `scripts/test` sums up at the end. With `CIPHERLINK_REQUIRE_PEERS=1` (CI
//! sets it) a missing peer fails the test instead: CI cannot pass without its
//! peers. A peer that setup reported as installed but that is not there always
//! fails the test, because a silent skip would hide a broken CI.
//!
//! [`process`] runs the programs under test (the `cipherlink` binary, the
//! peers) and waits for their readiness lines.

use std::path::{Path, PathBuf};

#[cfg(feature = "pki")]
pub mod pki;
pub mod process;

/// A loopback port that was free a moment ago, for a Python
/// tno.mpc.communication party only: the package binds the port number it
/// is given and announces it to its peers, so it cannot be handed a bound
/// socket, and its peers must know that number before it starts. Another
/// program can take the port between this call and the party's bind (the
/// party then fails to start, loudly). Rust parties never need this: bind
/// `127.0.0.1:0` and pass the listener (`Pool::with_listener`).
pub fn port_for_python() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

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
    /// A Python interpreter with PyNaCl (`nacl.public.Box`).
    PythonNacl,
    /// Debian's `chromium`, run headless to render reports to PNG.
    Chromium,
    /// Debian's `tshark`, to read captures back.
    Tshark,
    /// Debian's `haproxy` (a TLS tunnel in `mode tcp`, for `bench proxy`).
    Haproxy,
    /// Debian's shadowsocks-libev: the path of `ss-server`, with `ss-tunnel` beside it.
    Shadowsocks,
    /// Debian's `spiped`.
    Spiped,
    /// Debian's `obfs4proxy` (a pluggable transport, run managed).
    Obfs4proxy,
    /// A Python interpreter with pymonocypher 4.0.x, cryptography and
    /// semver: what SeasideVPN's Python PORT code imports.
    PythonSeaside,
    /// The folder holding SeasideVPN's Python `sources/` (put it on
    /// `PYTHONPATH` for [`Peer::PythonSeaside`]).
    SeasideSrc,
    /// Debian's `dnsmasq` (from dnsmasq-base): a DNS server behind `proxy --udp`.
    Dnsmasq,
    /// Debian's `iperf3`: UDP rate and loss through `proxy --udp`.
    Iperf3,
    /// Debian's `wireguard-go`, with `wg` (wireguard-tools) beside it.
    WireguardGo,
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
            Peer::PythonNacl => "PYTHON_NACL",
            Peer::Chromium => "CHROMIUM",
            Peer::Tshark => "TSHARK",
            Peer::Haproxy => "HAPROXY",
            Peer::Shadowsocks => "SHADOWSOCKS",
            Peer::Spiped => "SPIPED",
            Peer::Obfs4proxy => "OBFS4PROXY",
            Peer::PythonSeaside => "PYTHON_SEASIDE",
            Peer::SeasideSrc => "SEASIDE_SRC",
            Peer::Dnsmasq => "DNSMASQ",
            Peer::Iperf3 => "IPERF3",
            Peer::WireguardGo => "WIREGUARD_GO",
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

/// The environment variable that turns a missing peer into a test failure.
pub const REQUIRE_PEERS_VAR: &str = "CIPHERLINK_REQUIRE_PEERS";

/// Returns the peer's path for the named test, or prints a loud skip line
/// naming the test and the reason and returns `None`. Under
/// `CIPHERLINK_REQUIRE_PEERS=1` a missing peer panics instead. Every answer is
/// counted in `.cache/peer-tests.log` for `scripts/test`'s summary.
/// Prefer [`peer!`], which fills in the test's name.
pub fn find(peer: Peer, test_name: &str) -> Option<PathBuf> {
    match lookup(peer) {
        Lookup::Found(path) => {
            count("ran", peer, test_name);
            Some(path)
        }
        Lookup::Missing(reason) => {
            if peers_required() {
                count("FAILED", peer, test_name);
                panic!(
                    "{test_name}: peer {peer:?} is not installed ({reason}), and \
                     {REQUIRE_PEERS_VAR}=1 says every peer must be"
                );
            }
            count("skipped", peer, test_name);
            eprintln!("\n!!!!!!!! SKIPPED {test_name}: peer {peer:?} is not installed: {reason}\n");
            None
        }
    }
}

/// A test whose environment lacks something it needs that is not a program
/// (root, `/dev/net/tun`, network namespaces): under
/// `CIPHERLINK_REQUIRE_PEERS=1` this panics, as a missing peer does;
/// otherwise it prints a loud skip line and counts the skip for
/// `scripts/test`'s summary. The test then returns.
pub fn unavailable(capability: &str, test_name: &str, why: &str) {
    let outcome = if peers_required() {
        "FAILED"
    } else {
        "skipped"
    };
    log_outcome(&format!("{outcome} {capability} {test_name}"));
    if peers_required() {
        panic!("{test_name}: needs {capability}, which is not available ({why}), and {REQUIRE_PEERS_VAR}=1");
    }
    eprintln!("\n!!!!!!!! SKIPPED {test_name}: needs {capability}: {why}\n");
}

/// Looks up a peer for the test it is written in (the test's name comes from
/// the enclosing function): `let Some(python) = peer!(Peer::Python) else { return };`
#[macro_export]
macro_rules! peer {
    ($peer:expr) => {{
        fn here() {}
        let name = ::std::any::type_name_of_val(&here);
        let name = name.strip_suffix("::here").unwrap_or(name);
        // async tests add `::{{closure}}` segments; they name nothing.
        let name = name.replace("::{{closure}}", "");
        $crate::find($peer, &name)
    }};
}

/// Tests that each need one peer, without the let-else of [`peer!`] in
/// every one: each `fn` becomes a `#[test]` that binds the peer's path to
/// the name given and runs its body, or skips (counted) when the peer is
/// not installed.
///
/// ```ignore
/// peer_tests! {
///     /// Docs and attributes are kept.
///     fn s_client_x25519(openssl = Peer::Openssl) {
///         s_client_case(&openssl, "X25519");
///     }
/// }
/// ```
#[macro_export]
macro_rules! peer_tests {
    ($( $(#[$meta:meta])* fn $name:ident($var:ident = $peer:expr) $body:block )*) => {$(
        $(#[$meta])*
        #[test]
        fn $name() {
            let Some($var) = $crate::peer!($peer) else {
                return;
            };
            $body
        }
    )*};
}

fn peers_required() -> bool {
    std::env::var(REQUIRE_PEERS_VAR).is_ok_and(|v| v == "1")
}

/// Appends `outcome peer test` to `.cache/peer-tests.log`.
fn count(outcome: &str, peer: Peer, test_name: &str) {
    log_outcome(&format!("{outcome} {} {test_name}", peer.env_name()));
}

/// Appends one line to `.cache/peer-tests.log` (or `$CIPHERLINK_PEER_LOG`).
/// Best effort: a read-only checkout still runs its tests, it only loses
/// the count.
fn log_outcome(line: &str) {
    use std::io::Write;
    let path = std::env::var_os("CIPHERLINK_PEER_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/peer-tests.log"));
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line, so lines from parallel tests do not interleave.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

/// A TCP service for relays to forward to: echoes each connection until
/// its end of input, then closes its own side (so half-close is visible).
/// Listens on 127.0.0.1 at a port of the kernel's choosing.
pub async fn echo_server() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("binding the echo server: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("the echo server's address: {e}"));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
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

    /// The tests below set process-wide variables; under `cargo test` they
    /// share one process.
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn missing_marker_is_a_skip_unless_peers_are_required() {
        let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
        // Its own skip or failure must not count in scripts/test's summary.
        let log = std::env::temp_dir().join(format!("peer-log-skip-{}", std::process::id()));
        std::env::set_var("CIPHERLINK_PEER_LOG", &log);
        std::env::set_var("CIPHERLINK_PEER_STUNNEL", "missing:apt-get refused");
        assert_eq!(
            lookup(Peer::Stunnel),
            Lookup::Missing("apt-get refused".into())
        );
        if peers_required() {
            let outcome = std::panic::catch_unwind(|| find(Peer::Stunnel, "demo"));
            assert!(
                outcome.is_err(),
                "a required peer that is missing must fail"
            );
        } else {
            assert_eq!(find(Peer::Stunnel, "demo"), None);
        }
    }

    #[test]
    fn peer_macro_names_the_enclosing_test() {
        let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
        std::env::set_var("CIPHERLINK_PEER_PYTHON_NACL", "/");
        let log = std::env::temp_dir().join(format!("peer-log-{}", std::process::id()));
        std::env::set_var("CIPHERLINK_PEER_LOG", &log);
        let found = peer!(Peer::PythonNacl);
        assert_eq!(found, Some(PathBuf::from("/")));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        assert!(
            text.contains("ran PYTHON_NACL cipherlink_test_support::tests::peer_macro_names_the_enclosing_test"),
            "log: {text}"
        );
    }

    #[test]
    #[should_panic(expected = "does not exist")]
    fn recorded_but_absent_peer_fails_loudly() {
        std::env::set_var("CIPHERLINK_PEER_PYTHON_GRPC", "/nonexistent/python");
        let _ = lookup(Peer::PythonGrpc);
    }
}
