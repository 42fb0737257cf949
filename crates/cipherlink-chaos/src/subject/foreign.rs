//! Any other program as a subject: a server command run in namespace B and
//! a client command run in namespace A, each through `sh -c`, whose
//! standard input and output carry the session. The contract (also in
//! docs/chaos.md):
//!
//! - The commands get the server's address as `{host}`, `{port}` and
//!   `{addr}` (replaced in the command) and as `CIPHERLINK_CHAOS_HOST`,
//!   `CIPHERLINK_CHAOS_PORT` and `CIPHERLINK_CHAOS_ADDR`.
//! - The server listens there for one client, writes every byte the client
//!   sends to its standard output and sends every byte of its standard
//!   input to the client; it closes its output when the client has gone.
//!   The lab runs its checking echo on that output and input, so order,
//!   duplicates and alterations are caught on both ends.
//! - The client connects, sends its standard input and writes what comes
//!   back to its standard output; when its input ends it closes the
//!   session and exits, and when the session fails it exits (its output
//!   ends: the lab counts that as the peer declared gone).
//! - Neither writes anything else to standard output (logs go to standard
//!   error, whose last 4 KiB the lab quotes when a session fails).
//!
//! `openssl s_server -naccept 1 -quiet` and `openssl s_client -quiet
//! -no_ign_eof` keep this contract as they are; scripts/chaos/ has a
//! bridge for SeasideVPN's own PortListener and PortClient.
//!
//! The lab sees neither end's set-up; it is read from the capture. A
//! foreign client relies on TCP to notice a silent peer, so for the stale
//! scenario the lab makes namespace A's TCP give up as `TCP_USER_TIMEOUT`
//! would ([`super::tcp_gives_up_within`]).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cipherlink_port::ServerKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{tcp_gives_up_within, Dial, LabSubject, PacketClass, Session, Subject, SubjectError};
use crate::tls_records::{self, RecordMap};

/// How much of each command's standard error is kept for error messages.
const STDERR_KEPT: usize = 4096;
/// How often the lab looks whether the server listens yet.
const LISTEN_POLL: Duration = Duration::from_millis(25);
/// How long the server may take to listen.
const LISTEN_LIMIT: Duration = Duration::from_secs(15);

/// How the timeline reads a foreign program's packets.
#[derive(Clone, Default)]
pub enum ForeignClassifier {
    /// Nothing is known of its bytes: every payload is `unknown`.
    #[default]
    Opaque,
    /// TLS: each record's header (without the secrets, TLS 1.3 shows
    /// everything after the ServerHello as application data).
    Tls,
    /// SeasideVPN's PORT, read with the server's key (the same key the
    /// server command was given).
    Port(ServerKey),
}

/// A foreign program pair.
#[derive(Clone)]
pub struct Foreign {
    name: String,
    server: String,
    client: String,
    classifier: ForeignClassifier,
    run_as: Option<cipherlink_files::Owner>,
}

impl Foreign {
    /// `name` for reports and file names (letters, digits, `-`, `_`);
    /// `server` and `client` are `sh -c` commands.
    pub fn new(
        name: &str,
        server: &str,
        client: &str,
        classifier: ForeignClassifier,
    ) -> Result<Self, SubjectError> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(SubjectError::new(
                name,
                "connect",
                "a subject's name is 1 to 32 letters, digits, '-' or '_' (it names files)",
            ));
        }
        for (what, cmd) in [("server", server), ("client", client)] {
            if cmd.trim().is_empty() {
                return Err(SubjectError::new(
                    name,
                    "connect",
                    format!("the {what} command is empty"),
                ));
            }
        }
        Ok(Foreign {
            name: name.into(),
            server: server.into(),
            client: client.into(),
            classifier,
            run_as: None,
        })
    }

    /// Runs both commands as `owner` (the user who ran `sudo`), not as
    /// the root the lab needs: they are still in the lab's namespaces,
    /// which a process joins by descriptor, not by privilege.
    pub fn run_as(mut self, owner: Option<cipherlink_files::Owner>) -> Self {
        self.run_as = owner;
        self
    }

    fn err(&self, stage: &'static str, reason: impl std::fmt::Display) -> SubjectError {
        SubjectError::new(&self.name, stage, reason)
    }
}

/// `cmd` with the address placeholders replaced.
pub fn expand(cmd: &str, addr: SocketAddr) -> String {
    cmd.replace("{host}", &addr.ip().to_string())
        .replace("{port}", &addr.port().to_string())
        .replace("{addr}", &addr.to_string())
}

/// A command of the pair, in its own process group (the shell's children
/// too are killed when it is dropped), its standard error's end kept.
struct Program {
    /// Held for its drop (`kill_on_drop`, then reaped by tokio).
    #[allow(dead_code)]
    child: Child,
    /// The shell's pid, which is its process group's id (`process_group(0)`).
    /// The shell is never reaped before the group is killed (see
    /// [`Program::ended`]): its zombie keeps the id from going to another
    /// group, and its children stay in the group after it exits.
    group: Option<nix::unistd::Pid>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl Program {
    fn spawn(
        cmd: &str,
        addr: SocketAddr,
        run_as: Option<&cipherlink_files::Owner>,
    ) -> std::io::Result<(Program, ChildStdin, ChildStdout)> {
        let mut command = Command::new("sh");
        if let Some(owner) = run_as {
            // std drops the supplementary groups when it sets the user.
            command.uid(owner.uid).gid(owner.gid);
        }
        let mut child = command
            .arg("-c")
            .arg(expand(cmd, addr))
            .env("CIPHERLINK_CHAOS_HOST", addr.ip().to_string())
            .env("CIPHERLINK_CHAOS_PORT", addr.port().to_string())
            .env("CIPHERLINK_CHAOS_ADDR", addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("no pipes to the command"));
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(keep_tail(pipe, Arc::clone(&stderr))));
        let group = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .map(nix::unistd::Pid::from_raw);
        let program = Program {
            child,
            group,
            stderr,
            stderr_reader,
        };
        Ok((program, stdin, stdout))
    }

    /// How the shell ended, if it has, without reaping it: reaped, it
    /// would leave children in its group that the drop no longer finds
    /// (`child.id()` is gone) and free the group's id for reuse.
    fn ended(&self) -> Option<String> {
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        let pid = self.group?;
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(pid), flags) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Exited(_, code)) => Some(format!("exit status: {code}")),
            Ok(WaitStatus::Signaled(_, signal, _)) => Some(format!("signal: {signal}")),
            Ok(other) => Some(format!("{other:?}")),
            Err(e) => Some(format!("not waitable: {e}")),
        }
    }

    /// The end of its standard error once it has ended: what it wrote
    /// last is read first (for at most a second: a child of the shell may
    /// still hold the pipe).
    async fn stderr_at_exit(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        stderr_tail(&self.stderr)
    }

    fn stderr_tail(&self) -> String {
        stderr_tail(&self.stderr)
    }
}

/// The last of a program's standard error, for an error message.
fn stderr_tail(kept: &Mutex<Vec<u8>>) -> String {
    let kept = kept.lock().map(|b| b.clone()).unwrap_or_default();
    let text = String::from_utf8_lossy(&kept);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!("; its standard error ends: {text}")
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        // Never reaped before this, the shell's zombie still holds the id.
        if let Some(group) = self.group {
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

async fn keep_tail(mut pipe: impl AsyncRead + Unpin, kept: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            return;
        }
        if let Ok(mut k) = kept.lock() {
            k.extend_from_slice(&buf[..n]);
            let over = k.len().saturating_sub(STDERR_KEPT);
            k.drain(..over);
        }
    }
}

/// Whether something in the calling thread's network namespace listens on
/// TCP `port` (`/proc/thread-self/net/tcp` and `tcp6`, state 0A). Asking
/// the kernel, not connecting: a probe would be a session to the server.
fn listening_on(port: u16) -> bool {
    let wanted = format!(":{port:04X} ");
    ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .any(|table| {
            table.lines().skip(1).any(|line| {
                let mut fields = line.split_whitespace();
                let local = fields.nth(1).unwrap_or("");
                let state = fields.nth(1).unwrap_or("");
                state == "0A" && format!("{local} ").ends_with(&wanted)
            })
        })
}

/// The server end while it listens: the program and its pipes, until the
/// lab takes the session.
pub struct ForeignListening {
    program: Program,
    pipes: Option<(ChildStdin, ChildStdout)>,
}

impl Subject for Foreign {
    type Session = ForeignSession;

    fn name(&self) -> &str {
        &self.name
    }

    fn classify(&self, payload: &[u8]) -> PacketClass {
        match self.classifier {
            ForeignClassifier::Tls => tls_records::classify_header(payload),
            ForeignClassifier::Port(_) => PacketClass::Data,
            ForeignClassifier::Opaque => PacketClass::Unknown,
        }
    }

    fn decode_records(&self, pcap: &[u8]) -> Option<RecordMap> {
        match &self.classifier {
            ForeignClassifier::Port(key) => Some(super::port_records(pcap, key)),
            _ => None,
        }
    }
}

impl LabSubject for Foreign {
    type Listening = ForeignListening;

    async fn listen(
        &self,
        addr: SocketAddr,
    ) -> Result<(ForeignListening, SocketAddr), SubjectError> {
        let (mut program, stdin, stdout) = Program::spawn(&self.server, addr, self.run_as.as_ref())
            .map_err(|e| self.err("accept", format!("starting the server command: {e}")))?;
        let started = Instant::now();
        while !listening_on(addr.port()) {
            if let Some(status) = program.ended() {
                let stderr = program.stderr_at_exit().await;
                return Err(self.err(
                    "accept",
                    format!(
                        "the server command ended ({status}) before listening on port {}{stderr}",
                        addr.port(),
                    ),
                ));
            }
            if started.elapsed() > LISTEN_LIMIT {
                return Err(self.err(
                    "accept",
                    format!(
                        "the server command did not listen on port {} within {LISTEN_LIMIT:?}{}",
                        addr.port(),
                        program.stderr_tail()
                    ),
                ));
            }
            tokio::time::sleep(LISTEN_POLL).await;
        }
        Ok((
            ForeignListening {
                program,
                pipes: Some((stdin, stdout)),
            },
            addr,
        ))
    }

    /// The server's pipes; the program itself stays with the listening
    /// end, which the lab drops when the scenario is over.
    async fn take(&self, listening: &mut ForeignListening) -> Result<ForeignSession, SubjectError> {
        let (stdin, stdout) = listening
            .pipes
            .take()
            .ok_or_else(|| self.err("accept", "the server's session was already taken"))?;
        Ok(ForeignSession {
            name: self.name.clone(),
            program: None,
            stderr: Arc::clone(&listening.program.stderr),
            stdin: Some(stdin),
            stdout,
        })
    }

    async fn dial(&self, dial: &Dial) -> Result<ForeignSession, SubjectError> {
        let (program, stdin, stdout) =
            Program::spawn(&self.client, dial.server, self.run_as.as_ref())
                .map_err(|e| self.err("connect", format!("starting the client command: {e}")))?;
        Ok(ForeignSession {
            name: self.name.clone(),
            stderr: Arc::clone(&program.stderr),
            program: Some(program),
            stdin: Some(stdin),
            stdout,
        })
    }

    fn observes_setup(&self) -> bool {
        false
    }

    fn needs_lab(&self) -> Option<String> {
        Some(
            "a foreign program connects to the address it is given, which must be namespace \
             B's; run as root for the TUN lab"
                .into(),
        )
    }

    fn prepare_client_namespace(&self, user_timeout: Option<Duration>) -> Result<(), SubjectError> {
        match user_timeout {
            Some(t) => tcp_gives_up_within(t)
                .map_err(|e| self.err("connect", format!("setting tcp_retries2: {e}"))),
            None => Ok(()),
        }
    }
}

/// One end's pipes (and, for the client, the program itself, killed with
/// its process group when the session is dropped).
pub struct ForeignSession {
    name: String,
    #[allow(dead_code)] // held for its drop
    program: Option<Program>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl ForeignSession {
    fn err(&self, stage: &'static str, e: impl std::fmt::Display) -> SubjectError {
        SubjectError::new(
            &self.name,
            stage,
            format!("{e}{}", stderr_tail(&self.stderr)),
        )
    }
}

impl Session for ForeignSession {
    async fn send(&mut self, data: &[u8]) -> Result<(), SubjectError> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.err("send", "the session was closed"));
        };
        let sent = async {
            stdin.write_all(data).await?;
            stdin.flush().await
        };
        match sent.await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.err("send", format!("the program's input: {e}"))),
        }
    }

    async fn recv(&mut self, max: usize) -> Result<Vec<u8>, SubjectError> {
        let mut buf = vec![0u8; max];
        match self.stdout.read(&mut buf).await {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(self.err("recv", format!("the program's output: {e}"))),
        }
    }

    /// Ends the program's input: it closes its session.
    async fn close(&mut self) -> Result<(), SubjectError> {
        self.stdin = None;
        Ok(())
    }
}

#[cfg(test)]
#[path = "foreign_tests.rs"]
mod tests;
