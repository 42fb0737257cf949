//! An echo through the TUN lab with a [`StreamSubject`]: a block at a time,
//! server in namespace B, client in namespace A, every wait bounded. The
//! lab's own tests use it; the scenarios of `chaos run` exchange numbered
//! messages instead ([`crate::scenario_run`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

use crate::lab::{Lab, TunLabError};
use crate::subject::{Session, StreamSubject, SubjectError};

/// Bytes sent before waiting for their echo, so that neither side's
/// buffers can fill up and stall the other.
pub const BLOCK: usize = 8 * 1024;

/// How an echo went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoOutcome {
    /// Time to connect and set the session up, if it was.
    pub connected: Option<Duration>,
    /// Time from the first byte sent to the last echoed, if all came back.
    pub echoed: Option<Duration>,
    /// Bytes that came back.
    pub received: usize,
    /// Whether what came back is a prefix of what was sent.
    pub intact: bool,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

/// Echoes `payload` from A to B and back with `subject` on `port`, within `limit`.
pub async fn echo<S: StreamSubject + Clone>(
    lab: &Lab,
    subject: S,
    payload: Vec<u8>,
    port: u16,
    limit: Duration,
) -> Result<EchoOutcome, TunLabError> {
    let server_addr = SocketAddr::from((lab.b.addr, port));
    let server_subject = subject.clone();
    // The server ends by itself (client gone, or its own time limit); the
    // client's result is the scenario's.
    let _server = lab
        .serve_in(&lab.b, server_addr, move |listener| async move {
            let _ = timeout(limit, serve_echo(&listener, &server_subject)).await;
        })
        .map_err(|source| TunLabError::Io {
            what: format!("echo server on {server_addr}"),
            source,
        })?;
    let client = lab.spawn_in(&lab.a, move || async move {
        let mut outcome = EchoOutcome {
            connected: None,
            echoed: None,
            received: 0,
            intact: true,
            error: None,
        };
        let run = client_echo(&subject, server_addr, &payload, &mut outcome);
        match timeout(limit, run).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => outcome.error = Some(err.to_string()),
            Err(_) => outcome.error = Some(format!("no end within {limit:?}")),
        }
        outcome
    });
    let joined = tokio::task::spawn_blocking(move || client.join())
        .await
        .map_err(|e| TunLabError::Io {
            what: "waiting for the client".into(),
            source: std::io::Error::other(e),
        })?;
    joined.map_err(|_| TunLabError::ThreadPanicked(lab.a.name.clone()))?
}

async fn serve_echo<S: StreamSubject>(
    listener: &TcpListener,
    subject: &S,
) -> Result<(), SubjectError> {
    let (tcp, _) = listener.accept().await.map_err(|e| SubjectError {
        subject: subject.name().into(),
        stage: "accept",
        reason: e.to_string(),
    })?;
    let mut session = subject.accept(tcp).await?;
    loop {
        let data = session.recv(BLOCK).await?;
        if data.is_empty() {
            return session.close().await;
        }
        session.send(&data).await?;
    }
}

async fn client_echo<S: StreamSubject>(
    subject: &S,
    server: SocketAddr,
    payload: &[u8],
    outcome: &mut EchoOutcome,
) -> Result<(), SubjectError> {
    let err = |stage, e: std::io::Error| SubjectError {
        subject: subject.name().into(),
        stage,
        reason: e.to_string(),
    };
    let t0 = Instant::now();
    let tcp = TcpStream::connect(server)
        .await
        .map_err(|e| err("connect", e))?;
    let mut session = subject.connect(tcp).await?;
    outcome.connected = Some(t0.elapsed());
    let t1 = Instant::now();
    for block in payload.chunks(BLOCK) {
        session.send(block).await?;
        let mut got = 0;
        while got < block.len() {
            let data = session.recv(BLOCK).await?;
            if data.is_empty() {
                return Err(err("recv", std::io::ErrorKind::UnexpectedEof.into()));
            }
            let start = outcome.received;
            let expected = payload.get(start..start + data.len());
            outcome.intact &= expected == Some(data.as_slice());
            outcome.received += data.len();
            got += data.len();
        }
    }
    outcome.echoed = Some(t1.elapsed());
    session.close().await
}
