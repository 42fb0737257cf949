//! The end of a `connect` session that pipes stdin to a server and its
//! replies to stdout, shared by `connect`, `link connect` and `link connect
//! --wire port`.

use std::future::Future;

use anyhow::Result;

/// Runs `upload` (stdin to the server, ending with the close) and
/// `download` (the server to stdout) together. Done when the server has
/// closed, even while stdin (a terminal) stays open; or, once stdin ended,
/// when the rest of the server's reply has arrived.
pub async fn until_server_done<U, D, T>(upload: U, download: D) -> Result<()>
where
    U: Future<Output = Result<()>>,
    D: Future<Output = Result<T>>,
{
    tokio::pin!(upload, download);
    tokio::select! {
        down = &mut download => down.map(drop),
        up = &mut upload => {
            up?;
            (&mut download).await.map(drop)
        }
    }
}

/// How long a datagram `connect` waits for more after stdin ended.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// The receiving half of a datagram session, as [`datagrams`] drives it.
pub trait DatagramSource {
    /// The next datagram; `None` once the server ended the session.
    fn next(&mut self) -> impl Future<Output = Result<Option<Vec<u8>>>>;
}

/// The sending half of a datagram session, as [`datagrams`] drives it.
pub trait DatagramSink: Sized {
    /// Sends one datagram.
    fn put(&mut self, datagram: &[u8]) -> impl Future<Output = Result<()>>;
    /// Ends the session the transport's way.
    fn finish(self) -> impl Future<Output = Result<()>>;
}

/// `link connect --udp` and `--wire typhoon`: each read of stdin (at most
/// `max` bytes) is one datagram to the server, each datagram from it is
/// written to stdout as it comes. After stdin's end it reads until the
/// server ends the session or stays quiet for [`LINGER`], then ends it.
pub async fn datagrams<S: DatagramSource, W: DatagramSink>(
    mut source: S,
    sink: W,
    max: usize,
) -> Result<()> {
    use anyhow::Context as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upload = async move {
        let mut sink = sink;
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; max];
        loop {
            let n = stdin.read(&mut buf).await.context("reading stdin")?;
            if n == 0 {
                break;
            }
            sink.put(&buf[..n]).await?;
        }
        anyhow::Ok(sink)
    };
    tokio::pin!(upload);
    let mut stdout = tokio::io::stdout();
    let mut done = None;
    loop {
        let lingering = done.is_some();
        let next = async {
            if !lingering {
                return source.next().await;
            }
            tokio::time::timeout(LINGER, source.next())
                .await
                .unwrap_or(Ok(None))
        };
        tokio::select! {
            w = &mut upload, if !lingering => done = Some(w?),
            d = next => {
                let Some(d) = d.context("receiving")? else { break };
                stdout.write_all(&d).await?;
                stdout.flush().await?;
            }
        }
    }
    if let Some(w) = done {
        w.finish().await.context("ending the session")?;
    }
    Ok(())
}
