//! The lab's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::bench_conn::floor::FloorError;

/// Errors that stop a benchmark (a failed connection or message does not:
/// it is counted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Preparing certificates, contexts, listeners, threads or runtimes failed.
    #[error("benchmark setup: {0}")]
    Setup(String),
    /// The core library refused a configuration.
    #[error(transparent)]
    Core(#[from] cipherlink::Error),
    /// Measuring the floor failed.
    #[error(transparent)]
    Floor(#[from] FloorError),
    /// A Pool operation failed.
    #[error("{phase}: {source}")]
    Pool {
        /// Which phase.
        phase: String,
        /// The cause.
        source: Box<cipherlink_pool::PoolError>,
    },
    /// A Python party (tno.mpc.communication) failed: its case is left out
    /// and the other cases run.
    #[error("Python {role} ({python}) failed: {detail}")]
    PythonParty {
        /// "Alice" or "Bob".
        role: &'static str,
        /// The interpreter.
        python: String,
        /// What it printed on stderr, and what it needs.
        detail: String,
    },
    /// A program the benchmark runs (a proxy end, a foreign peer, the
    /// backend helper) could not be started.
    #[error("starting {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The benchmark could not listen where it must.
    #[error("{who}: cannot listen on {addr}: {source}")]
    Listen {
        /// What was to listen.
        who: &'static str,
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A process the benchmark started stopped, or never got ready.
    #[error("{who} {what}{}", said_suffix(said))]
    NotReady {
        /// Which process, e.g. "haproxy server end".
        who: String,
        /// What went wrong, e.g. "exited (exit status: 1) before listening on 127.0.0.1:4000".
        what: String,
        /// The last lines it printed on stderr (may be empty).
        said: String,
    },
    /// A process did not listen within the time it is given.
    #[error(
        "{who} did not listen on {addr} within {waited:?}{}",
        said_suffix(said)
    )]
    NotListening {
        /// Which process.
        who: String,
        /// Where it should listen.
        addr: SocketAddr,
        /// How long the benchmark waited.
        waited: Duration,
        /// The last lines it printed on stderr.
        said: String,
    },
    /// A file of the benchmark's own (key material, a peer's configuration).
    #[error(transparent)]
    File(#[from] cipherlink_files::FileError),
    /// A folder of the benchmark's own could not be made.
    #[error("making the folder {}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A v1 key pair for the proxy's v1 transport.
    #[error(transparent)]
    V1Key(#[from] cipherlink_proxy::nacl_frame::keys::KeyError),
    /// Reading another process's figures from /proc.
    #[error("reading {path} (is PID {pid} still running?): {source}")]
    Proc {
        /// The process.
        pid: u32,
        /// The file read.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A /proc file without the field the benchmark reads.
    #[error("{path}: no {field} in it")]
    ProcFormat {
        /// The file.
        path: String,
        /// The field looked for.
        field: &'static str,
    },
    /// The open-file limit could not be read or raised.
    #[error("reading the open-file limit: {0}")]
    FdLimit(#[source] std::io::Error),
    /// The system's random source failed.
    #[error("the system random source failed while making {what}")]
    Random {
        /// What the bytes were for.
        what: &'static str,
    },
    /// A foreign program asked for (`--peers`) cannot be run.
    #[error("peer {peer}: {reason}")]
    PeerNotFound {
        /// The peer's name (stunnel, haproxy, ss-libev, spiped, obfs4).
        peer: &'static str,
        /// What was looked for, and where.
        reason: String,
    },
    /// A peer answered its start-up protocol wrongly (obfs4's managed
    /// pluggable-transport lines, its bridge line).
    #[error("{peer}: {detail}")]
    PeerProtocol {
        /// The peer.
        peer: &'static str,
        /// What it said or failed to say.
        detail: String,
    },
    /// A helper command (e.g. `cipherlink link invite`) failed.
    #[error("`{command}` failed ({status}){}", said_suffix(said))]
    Helper {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed on stderr.
        said: String,
    },
    /// The bulk case through one pair failed.
    #[error("bulk transfer through {pair}: {reason}")]
    Bulk {
        /// The pair.
        pair: String,
        /// Why.
        reason: BulkFailure,
    },
    /// The link protocol refused a key, token or configuration.
    #[error("link protocol: {0}")]
    Link(#[from] cipherlink_link::Error),
    /// A link could not be opened or carried its bytes.
    #[error("link: {0}")]
    LinkDriver(#[from] cipherlink_link::driver::DriverError),
    /// Two link cores in memory did not finish their handshake.
    #[error("the in-memory link handshake did not complete")]
    InMemoryHandshake,
    /// A task of the benchmark panicked or was cancelled.
    #[error("{what} stopped: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
    /// A socket of the benchmark's own failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// No room for a single idle tunnel under the open-file limit.
    #[error("the open-file limit ({soft}) leaves no room for idle tunnels")]
    NoRoom {
        /// The soft limit after raising it.
        soft: u64,
    },
}

/// Why one pair's bulk transfer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkFailure {
    /// A socket error (connect, write, read).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A SOCKS5 step (obfs4's client end) failed.
    #[error("{0}")]
    Socks(#[from] crate::bench_proxy::Socks5Error),
    /// The backend counted a different number of bytes than were sent.
    #[error("the backend received {got} of {sent} bytes")]
    Short {
        /// Bytes the backend counted.
        got: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// The transfer did not finish in time.
    #[error("not done within {0:?}")]
    TimedOut(Duration),
}

/// "; it said:" and what it said, or nothing when it said nothing.
fn said_suffix(said: &str) -> String {
    if said.trim().is_empty() {
        String::new()
    } else {
        format!("; it said:\n{}", said.trim_end())
    }
}
