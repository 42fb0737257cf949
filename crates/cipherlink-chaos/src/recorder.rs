//! Records what the stream proxy delivered as a pcap file: each proxied
//! connection becomes a synthetic IPv4/TCP flow (client address to upstream
//! address) carrying the bytes as the receiving side got them, after
//! impairment, with the times they were written.
//!
//! The proxy never waits on the disk: events go through a bounded channel
//! to one writer thread, and an event that finds the channel full is
//! counted as dropped (and reported) rather than slowing the connection.
//! The file is an [`OutFile`]: written under a temporary name and renamed
//! into place when the recording ends ([`RecorderWriter::finish`]), so a
//! symlink planted at its name is replaced, never written through.

use std::collections::HashMap;
use std::io::BufWriter;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::capture::{Capture, CaptureError, Side, TcpFlow};
use crate::output::OutFile;

/// Events held for the writer before new ones are dropped.
pub const RECORDER_QUEUE: usize = 4096;
/// Flows tracked at once; events of further connections are dropped.
pub const MAX_FLOWS: usize = 65_536;

#[derive(Debug)]
enum Event {
    Open {
        conn: u64,
        client: SocketAddrV4,
        server: SocketAddrV4,
        at: Duration,
    },
    Data {
        conn: u64,
        from: Side,
        at: Duration,
        bytes: Vec<u8>,
    },
    Fin {
        conn: u64,
        from: Side,
        at: Duration,
    },
    Reset {
        conn: u64,
        at: Duration,
    },
    Close {
        conn: u64,
    },
    /// Stop now (the proxy is shutting down while connections still hold handles).
    Stop,
}

/// A handle to the recording; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

/// The writer thread's result: packets written and the file's path, or
/// why it stopped.
pub type RecorderResult = Result<(u64, PathBuf), CaptureError>;

/// The writer thread, which commits the file when it ends.
#[derive(Debug)]
pub struct RecorderWriter {
    thread: std::thread::JoinHandle<RecorderResult>,
    stop: mpsc::WeakSender<Event>,
    dropped: Arc<AtomicU64>,
}

impl RecorderWriter {
    /// Ends the recording and commits the file: waits up to `grace` for
    /// every [`Recorder`] handle to go (so that the last events are in),
    /// then stops the writer with what it has. Bounded: the writer gets 10
    /// more seconds to write and commit.
    pub async fn finish(self, grace: Duration) -> RecorderResult {
        let RecorderWriter { thread, stop, .. } = self;
        let deadline = tokio::time::Instant::now() + grace;
        while !thread.is_finished() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(tx) = stop.upgrade() {
            let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Event::Stop)).await;
        }
        let joined = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await;
        match joined {
            Ok(Ok(Ok(result))) => result,
            Ok(Ok(Err(_))) => Err(CaptureError::Io(std::io::Error::other(
                "the pcap writer thread panicked",
            ))),
            _ => Err(CaptureError::Io(std::io::Error::other(
                "the pcap writer did not finish within 10 s",
            ))),
        }
    }

    /// Events that could not be recorded because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Recorder {
    /// Starts recording into `file` on a writer thread; see [`RecorderWriter::finish`].
    pub fn create(file: OutFile) -> Result<(Self, RecorderWriter), CaptureError> {
        let capture = Capture::new(BufWriter::new(file))?;
        let (tx, rx) = mpsc::channel(RECORDER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("chaos-pcap".into())
            .spawn(move || write_events(capture, rx))?;
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = RecorderWriter {
            thread,
            stop: tx.downgrade(),
            dropped: Arc::clone(&dropped),
        };
        Ok((Recorder { tx, dropped }, writer))
    }

    /// Events that could not be recorded because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection from `client` to `server` opened (IPv4 only; other
    /// connections are not recorded).
    pub fn open(&self, conn: u64, client: SocketAddr, server: SocketAddr) {
        if let (SocketAddr::V4(client), SocketAddr::V4(server)) = (client, server) {
            self.send(Event::Open {
                conn,
                client,
                server,
                at: wall_clock(),
            });
        }
    }

    /// `bytes` were delivered from `from`'s side.
    pub fn data(&self, conn: u64, from: Side, bytes: Vec<u8>) {
        self.send(Event::Data {
            conn,
            from,
            at: wall_clock(),
            bytes,
        });
    }

    /// `from`'s side finished sending.
    pub fn fin(&self, conn: u64, from: Side) {
        self.send(Event::Fin {
            conn,
            from,
            at: wall_clock(),
        });
    }

    /// The proxy reset the connection.
    pub fn reset(&self, conn: u64) {
        self.send(Event::Reset {
            conn,
            at: wall_clock(),
        });
    }

    /// The connection is over; its flow state can go. Waits for room
    /// (briefly) so that flows are not leaked.
    pub async fn close(&self, conn: u64) {
        let sent =
            tokio::time::timeout(Duration::from_secs(1), self.tx.send(Event::Close { conn }));
        if !matches!(sent.await, Ok(Ok(()))) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn write_events(
    mut capture: Capture<BufWriter<OutFile>>,
    mut rx: mpsc::Receiver<Event>,
) -> RecorderResult {
    let mut flows: HashMap<u64, TcpFlow> = HashMap::new();
    let mut written = 0u64;
    while let Some(event) = rx.blocking_recv() {
        let (at, packets) = match event {
            Event::Open {
                conn,
                client,
                server,
                at,
            } => {
                if flows.len() >= MAX_FLOWS {
                    continue;
                }
                // Fixed initial sequence numbers: the capture is synthetic.
                let mut flow = TcpFlow::new(client, server, [1, 1]);
                let packets = flow.handshake()?.to_vec();
                flows.insert(conn, flow);
                (at, packets)
            }
            Event::Data {
                conn,
                from,
                at,
                bytes,
            } => match flows.get_mut(&conn) {
                Some(flow) => (at, flow.data(from, &bytes)?),
                None => continue,
            },
            Event::Fin { conn, from, at } => match flows.get_mut(&conn) {
                Some(flow) => (at, vec![flow.fin(from)?]),
                None => continue,
            },
            Event::Reset { conn, at } => match flows.get_mut(&conn) {
                Some(flow) => (
                    at,
                    vec![flow.reset(Side::Server)?, flow.reset(Side::Client)?],
                ),
                None => continue,
            },
            Event::Close { conn } => {
                flows.remove(&conn);
                continue;
            }
            Event::Stop => break,
        };
        for packet in packets {
            capture.write(at, &packet)?;
            written += 1;
        }
    }
    let file = capture
        .into_inner()
        .into_inner()
        .map_err(|e| CaptureError::Io(e.into_error()))?;
    Ok((written, file.commit()?))
}
