//! Shared helpers for the integration tests: the round-trip catalog, Python
//! party processes (killed on drop), bound loopback listeners, TLS from the
//! shared test PKI (cipherlink-test-support).
#![allow(dead_code, missing_docs, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cipherlink_pool::{
    tls, Int, Limits, PeerConfig, Pool, PoolConfig, RetryPolicy, Value, WireVersion,
};
use cipherlink_test_support::Peer;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_test_writer()
        .try_init();
}

fn big(s: &str) -> Value {
    Value::Int(s.parse::<Int>().unwrap_or_else(|e| panic!("{e}")))
}

/// The catalog of tests/py/cases.py, as a receiver should see each value.
pub fn cases() -> Vec<(&'static str, Value)> {
    let i = |v: i64| Value::int(v);
    let f = Value::Float;
    vec![
        ("str", Value::str("Hello Bob! This is Alice speaking.")),
        ("str_unicode", Value::str("héllo ☃ 𝄞")),
        ("bytes", Value::from(vec![0, 1, 0xfe, 0xff])),
        ("zero", i(0)),
        ("minus_one", i(-1)),
        ("u64_max", Value::int(u64::MAX)),
        ("i64_min", i(i64::MIN)),
        ("big_2_64_p1", big("18446744073709551617")),
        ("big_m2_100", big("-1267650600228229401496703205376")),
        ("float", f(3.25)),
        ("nan", f(f64::NAN)),
        ("inf", f(f64::INFINITY)),
        ("neg_inf", f(f64::NEG_INFINITY)),
        ("neg_zero", f(-0.0)),
        ("none", Value::Nil),
        ("true", Value::Bool(true)),
        ("false", Value::Bool(false)),
        (
            "list_nested",
            Value::List(vec![
                i(1),
                Value::List(vec![f(2.5), Value::List(vec![Value::str("x"), Value::Nil])]),
                Value::List(vec![]),
            ]),
        ),
        (
            "tuple",
            Value::Tuple(vec![
                i(1),
                Value::str("a"),
                Value::Tuple(vec![i(2), Value::from(b"b".to_vec())]),
            ]),
        ),
        (
            "dict",
            Value::dict([
                ("b", i(1)),
                (
                    "a",
                    Value::dict([
                        ("t", Value::Tuple(vec![i(1), i(2)])),
                        ("l", Value::List(vec![Value::Bool(true)])),
                    ]),
                ),
            ]),
        ),
        (
            "np_int64_2d",
            Value::ndarray_i64(&[2, 3], &[1, -2, 3, 1 << 62, 5, -6]).unwrap_or(Value::Nil),
        ),
        (
            "np_float64_2d",
            Value::ndarray_f64(&[2, 2], &[1.5, -2.0, f64::INFINITY, 0.25]).unwrap_or(Value::Nil),
        ),
        (
            "big_bytes",
            Value::Bytes((0..400).flat_map(|_| 0..=255u8).collect()),
        ),
        // Compared in the general form: a compact one must equal it.
        (
            "ints",
            Value::List(
                [1, -2, 300, 70_000, 1 << 40, i64::MIN, i64::MAX]
                    .map(i)
                    .to_vec(),
            ),
        ),
        ("ints_long", Value::Ints((-500..500).collect())),
        (
            "floats",
            Value::List(
                [0.5, -1.0, f64::INFINITY, f64::NAN, -0.0, 1e300]
                    .map(f)
                    .to_vec(),
            ),
        ),
        (
            "mixed_list",
            Value::List(vec![i(1), i(2), i(3), Value::Nil, f(4.5), Value::str("x")]),
        ),
        ("ints_then_float", Value::List(vec![i(1), i(2), f(2.5)])),
        ("u64_list", Value::List(vec![i(1), Value::int(u64::MAX)])),
        ("tuple_ints", Value::Tuple(vec![i(1), i(2), i(3)])),
        ("np_int64_1d", Value::Ints((-100..100).collect())),
    ]
}

pub fn custom_id(name: &str) -> String {
    format!("c-{name}")
}

/// A listener on a free loopback port, bound now: its port is known before
/// the party that will serve on it starts, and nothing else can take it.
/// Also used to hold a port for a party that never listens.
pub fn bind() -> std::net::TcpListener {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:0: {e}"))
}

/// The port a listener from [`bind`] is on.
pub fn port_of(l: &std::net::TcpListener) -> u16 {
    l.local_addr()
        .unwrap_or_else(|e| panic!("listener address: {e}"))
        .port()
}

/// A port for a Python party (see the test-support docs for why it cannot
/// be given a listener).
pub use cipherlink_test_support::port_for_python;

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn test_limits() -> Limits {
    Limits {
        recv_timeout: Some(WAIT),
        request_timeout: Duration::from_secs(20),
        ..Limits::default()
    }
}

/// A Rust party on a free loopback port.
pub async fn rust_party(
    name: &str,
    wire: WireVersion,
    peers: Vec<PeerConfig>,
    tls: Option<&Leaf>,
) -> Pool {
    rust_party_on(bind(), name, wire, peers, tls).await
}

/// A Rust party serving on `listener` (from [`bind`]).
pub async fn rust_party_on(
    listener: std::net::TcpListener,
    name: &str,
    wire: WireVersion,
    peers: Vec<PeerConfig>,
    tls: Option<&Leaf>,
) -> Pool {
    let mut cfg = PoolConfig::new(name, loopback(0)).wire(wire);
    cfg.peers = peers;
    cfg.limits = test_limits();
    cfg.retry = RetryPolicy {
        attempts: 40,
        wait: Duration::from_millis(250),
    };
    if let Some(p) = tls {
        cfg = cfg.tls(p.server_config(), p.client_config());
    }
    Pool::with_listener(cfg, listener)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A running Python party; killed when dropped.
pub struct PyParty {
    pub child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    pub output: Vec<String>,
}

pub fn py_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

impl PyParty {
    pub fn spawn(python: &Path, args: &[String]) -> PyParty {
        let mut cmd = Command::new(python);
        cmd.arg(py_dir().join("party.py"))
            .args(args)
            .current_dir(py_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", python.display()));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("no stdout pipe"));
        PyParty {
            child,
            lines: BufReader::new(stdout).lines(),
            output: Vec::new(),
        }
    }

    /// Reads lines until one starts with `prefix`; panics after [`WAIT`].
    pub async fn wait_for(&mut self, prefix: &str) -> String {
        let fut = async {
            while let Ok(Some(line)) = self.lines.next_line().await {
                eprintln!("[python] {line}");
                self.output.push(line.clone());
                if line.starts_with(prefix) {
                    return Some(line);
                }
            }
            None
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!(
                "python exited before printing {prefix:?}: {:?}",
                self.output
            ),
            Err(_) => panic!(
                "python did not print {prefix:?} within {WAIT:?}: {:?}",
                self.output
            ),
        }
    }

    /// Waits for the final RESULT line and the exit; asserts success.
    pub async fn expect_success(mut self) -> String {
        let result = self.wait_for("RESULT").await;
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("python did not exit within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("waiting for python: {e}"));
        assert!(
            status.success() && result.contains("failed=0"),
            "python party failed ({status}): {result}\n{:?}",
            self.output
        );
        result
    }
}

pub fn peer_arg(name: &str, port: u16, cert: Option<&Path>) -> String {
    match cert {
        Some(c) => format!("--peer={name}=127.0.0.1:{port}@{}", c.display()),
        None => format!("--peer={name}=127.0.0.1:{port}"),
    }
}

pub fn python(peer: Peer, test: &str) -> Option<PathBuf> {
    cipherlink_test_support::find(peer, test)
}

pub use cipherlink_test_support::pki::{Leaf, TestCa};

/// What a Pool party does with its test certificate.
pub trait LeafTls {
    fn server_config(&self) -> Arc<rustls::ServerConfig>;
    fn client_config(&self) -> Arc<rustls::ClientConfig>;
    /// `party.py`'s `--tls CERT KEY CA`.
    fn tls_args(&self) -> Vec<String>;
}

impl LeafTls for Leaf {
    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        tls::server_config(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            self.ca_pem.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        tls::client_config(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            self.ca_pem.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn tls_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            self.cert_path.display().to_string(),
            self.key_path.display().to_string(),
            self.ca_path.display().to_string(),
        ]
    }
}

/// A raw HTTP answer: status, head and body as text.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` on a new connection and reads the whole answer (the
/// party closes after answering); panics after [`WAIT`] or without a
/// status line.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        s.write_all(request)
            .await
            .unwrap_or_else(|e| panic!("writing to {addr}: {e}"));
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    };
    let buf = tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("no answer within {WAIT:?}"));
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {:?}", &text[..text.len().min(200)]));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}
