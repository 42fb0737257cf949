//! The measured server in a process of its own: spawned and found by the
//! address it prints, or an external one named by its PIDs; and its
//! resident memory, read from /proc.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::LabError;

/// How long a spawned server may take to print its address (a debug
/// build's first run includes the dynamic loader and certificate parsing).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A spawned server, killed on drop.
pub struct ServerChild {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ServerChild {
    /// Its process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` and waits for a stderr line `serving ... on ADDR`. The
/// rest of its stderr is drained (and dropped) so a chatty server never
/// blocks on a full pipe.
pub fn spawn(mut command: Command) -> Result<ServerChild, LabError> {
    let shown = format!("{command:?}");
    let mut child = command
        // A pipe the child may watch: it closes when this process ends,
        // however it ends.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::Setup(format!("starting {shown}: {e}")))?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        return Err(LabError::Setup(format!("{shown}: no stderr pipe")));
    };
    let (found, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(addr) = listening_address(&line) {
                let _ = found.send(Ok(addr));
                break;
            }
            // Kept (bounded) to explain a server that never starts.
            if seen.len() < 20 {
                seen.push(line);
            }
        }
        let _ = found.send(Err(seen.join("\n")));
        for _ in lines.map_while(Result::ok) {}
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let outcome = wait.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    match outcome {
        Ok(Ok(addr)) => Ok(ServerChild { child, addr }),
        Ok(Err(said)) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            Err(LabError::Setup(format!(
                "{shown} ended ({status}) without saying where it listens; it said:\n{said}"
            )))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(LabError::Setup(format!(
                "{shown} did not say where it listens within {START_TIMEOUT:?}"
            )))
        }
    }
}

/// The address in a line like `... serving TLS on 127.0.0.1:4433 (groups ...)`.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let after = line.split_once("serving ")?.1;
    let addr = after.split_once(" on ")?.1.split_whitespace().next()?;
    addr.trim_end_matches([',', ';', ')']).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_address_in_serve_and_plain_lines() {
        let serve = "2026-11-30T06:00:00Z  INFO serving TLS on 127.0.0.1:40123 (groups X25519)";
        assert_eq!(
            listening_address(serve),
            Some("127.0.0.1:40123".parse().expect("valid"))
        );
        assert_eq!(
            listening_address("serving plain TCP on [::1]:9; holds 10"),
            Some("[::1]:9".parse().expect("valid"))
        );
        assert_eq!(listening_address("accepted: TLSv1.3"), None);
    }
}
