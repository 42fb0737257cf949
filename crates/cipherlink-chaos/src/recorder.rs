//! Records what the stream proxy delivered as a pcap file: each proxied
//! connection becomes a synthetic IPv4/TCP flow (client address to upstream
//! address) carrying the bytes as the receiving side got them, after
//! impairment, with the times they were written.
//!
//! The proxy never waits on the disk: events go through a bounded channel
//! to one writer thread, and an event that finds the channel full is
//! counted as dropped (and reported) rather than slowing the connection.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use crate::capture::{Capture, CaptureError, Side, TcpFlow};

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
}

/// A handle to the recording; cheap to clone.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

/// The writer thread's result: packets written, or why it stopped.
pub type RecorderResult = Result<u64, CaptureError>;

impl Recorder {
    /// Creates `path` and starts the writer thread, which ends (flushing
    /// the file) when every clone of the handle is dropped.
    pub fn create(
        path: &Path,
    ) -> Result<(Self, std::thread::JoinHandle<RecorderResult>), CaptureError> {
        let file = SharedFile(Arc::new(Mutex::new(BufWriter::new(File::create(path)?))));
        let capture = Capture::new(file.clone())?;
        let (tx, rx) = mpsc::channel(RECORDER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("chaos-pcap".into())
            .spawn(move || write_events(capture, file, rx))?;
        Ok((
            Recorder {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            thread,
        ))
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
    mut capture: Capture<SharedFile>,
    mut file: SharedFile,
    mut rx: mpsc::Receiver<Event>,
) -> RecorderResult {
    let mut flows: HashMap<u64, TcpFlow> = HashMap::new();
    let mut written = 0u64;
    loop {
        let event = match rx.try_recv() {
            Ok(event) => event,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Idle: make what we have readable now, not at exit.
                file.flush()?;
                match rx.blocking_recv() {
                    Some(event) => event,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
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
        };
        for packet in packets {
            capture.write(at, &packet)?;
            written += 1;
        }
    }
    file.flush()?;
    Ok(written)
}

/// The file behind the pcap writer, shared so that the writer thread can
/// flush it while idle (`PcapWriter` does not lend its writer out).
#[derive(Debug, Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl SharedFile {
    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, BufWriter<File>>> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("pcap file lock poisoned"))
    }
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock()?.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.lock()?.flush()
    }
}
