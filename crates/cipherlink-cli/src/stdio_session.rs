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
