//! The NaCl-frame ("v1") side of one tunnel: its session (our nonce prefix, the peer's
//! nonce checks, the decoder) and, on a server, the first frame read and
//! authenticated before anything is connected onward (docs/v1-frame.md,
//! "What a server does before connecting onward").

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::error::TunnelError;
use crate::nacl_frame::{
    self, Decoder, Keys, Mode, Opener, Sealer, Side, V1Error, MAX_FIRST_DATA_SIZE,
};

/// Bytes read at once while the first frame arrives.
const FIRST_READ: usize = 16 * 1024;

/// What every v1 tunnel of a service shares.
#[derive(Debug)]
pub(crate) struct V1Engine {
    pub(crate) keys: Keys,
    pub(crate) max_frame: u32,
    pub(crate) mode: Mode,
    pub(crate) auth_timeout: Duration,
}

/// One tunnel's encrypted side.
pub(crate) struct V1Stream {
    pub(crate) stream: TcpStream,
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
    pub(crate) decoder: Decoder,
    /// Server: the first frame's plaintext, opened before connecting onward.
    pub(crate) first: Vec<u8>,
    /// Client: send an empty frame at once, so that the server can
    /// authenticate the tunnel and connect onward before our user speaks
    /// (a service that speaks first, such as SSH or SMTP, would wait).
    pub(crate) announce: bool,
}

impl V1Engine {
    /// A fresh session over `stream`, as `side`.
    pub(crate) fn stream(&self, stream: TcpStream, side: Side) -> V1Stream {
        let (sealer, opener) =
            nacl_frame::session(self.keys.clone(), self.max_frame, side, self.mode);
        V1Stream {
            stream,
            sealer,
            opener,
            decoder: Decoder::with_first_frame_limit(MAX_FIRST_DATA_SIZE, self.max_frame),
            first: Vec::new(),
            announce: side == Side::Client,
        }
    }
}

/// Why the first frame did not come.
pub(crate) enum NoFirstFrame {
    /// The peer closed before sending a byte: nothing to relay.
    Closed,
    /// It timed out, or was refused.
    Failed(TunnelError),
}

/// Server: reads the peer's first frame, at most [`MAX_FIRST_DATA_SIZE`]
/// of data and never a byte past it, and opens it, all within `timeout`.
/// Its plaintext is kept in `v1.first` for the service.
pub(crate) async fn authenticate(v1: &mut V1Stream, timeout: Duration) -> Result<(), NoFirstFrame> {
    match tokio::time::timeout(timeout, first_frame(v1)).await {
        Ok(result) => result,
        Err(_) => Err(NoFirstFrame::Failed(TunnelError::AuthTimeout(timeout))),
    }
}

async fn first_frame(v1: &mut V1Stream) -> Result<(), NoFirstFrame> {
    let refused = |error| {
        NoFirstFrame::Failed(TunnelError::V1 {
            side: "client",
            error,
        })
    };
    let mut buf = Vec::new();
    loop {
        // Exactly what the frame still needs: nothing of a later frame is
        // read here, so the relay starts on a frame boundary.
        let want = v1.decoder.needed().min(FIRST_READ);
        buf.resize(want, 0);
        let n = v1.stream.read(&mut buf).await.map_err(|error| {
            NoFirstFrame::Failed(TunnelError::Io {
                during: "reading",
                side: "client",
                error,
            })
        })?;
        if n == 0 {
            return Err(match v1.decoder.finish() {
                Ok(()) => NoFirstFrame::Closed,
                Err(cut) => refused(V1Error::Frame(cut)),
            });
        }
        let mut input = &buf[..n];
        let frame = v1
            .decoder
            .decode(&mut input)
            .map_err(|e| refused(V1Error::Frame(e)))?;
        if let Some(frame) = frame {
            v1.first = v1.opener.open(frame).map_err(refused)?.to_vec();
            return Ok(());
        }
    }
}
