//! The link transport's files: the server key and token store a proxy
//! server reads, the connection file a proxy client reads (the same files
//! `cipherlink link keygen/invite/revoke` write). The link crate parses them;
//! this module finds them, bounds them, and says which file went where when
//! one is missing or of the wrong kind.

use std::path::Path;
use std::sync::Arc;

use cipherlink_link::{
    ClientConfig, ConnectionFile, EndpointOptions, LinkParams, ServerEndpoint, ServerKey,
    TokenStore,
};
use zeroize::Zeroizing;

use crate::config::{LinkConfig, Role};

/// What a link service needs, built once per service.
pub(crate) enum LinkEngine {
    /// Accepts links; the token store can be replaced while running.
    Server {
        endpoint: Arc<ServerEndpoint>,
        token_store: std::path::PathBuf,
    },
    /// Connects with the connection file's token, pinned to its server key.
    Client(Box<ClientConfig>),
}

impl std::fmt::Debug for LinkEngine {
    // Never the keys or the token: only which files and whom.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkEngine::Server { token_store, .. } => f
                .debug_struct("LinkServer")
                .field("token_store", token_store)
                .finish_non_exhaustive(),
            LinkEngine::Client(config) => f
                .debug_struct("LinkClient")
                .field("name", &config.name)
                .finish_non_exhaustive(),
        }
    }
}

/// Each file's first line, to tell a file given in the wrong place.
const KINDS: [(&str, &str); 3] = [
    (
        "cipherlink-link-server-key 1",
        "a server key file (`link keygen`)",
    ),
    (
        "cipherlink-link-tokens 1",
        "a token store (`link invite --tokens`)",
    ),
    ("cipherlink-link 1", "a connection file (`link invite`)"),
];

/// Reads a link file of `kind` (its header line) for `field`: bounded,
/// refused when group or others may read it (each of the three holds a
/// secret), and wiped from memory when dropped.
fn read(field: &str, path: &Path, kind: &str) -> Result<Zeroizing<String>, String> {
    let max = cipherlink_link::keys::MAX_FILE_LEN as u64;
    let text = match cipherlink_files::read_secret_text(path, max) {
        Ok(text) => text,
        Err(exposed @ cipherlink_files::FileError::Exposed { .. }) => {
            // A readable file given in the wrong place (a public key, say)
            // is better named as such than told to be chmod-ed.
            let first = first_line(path, max).unwrap_or_default();
            if first == kind {
                return Err(exposed.to_string());
            }
            return Err(wrong_kind(field, path, &first, kind));
        }
        Err(other) => return Err(other.to_string()),
    };
    let first = text.lines().next().unwrap_or("").trim();
    if first != kind {
        return Err(wrong_kind(field, path, first, kind));
    }
    Ok(text)
}

/// The first line of a file others may read anyway: opened as any trusted
/// file is (never blocking on a FIFO, regular files only, bounded).
fn first_line(path: &Path, max: u64) -> Option<String> {
    let text = cipherlink_files::read_trusted_text(path, max).ok()?;
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

fn wrong_kind(field: &str, path: &Path, first: &str, kind: &str) -> String {
    let what = KINDS
        .iter()
        .find(|(header, _)| *header == first)
        .map_or("not a link file", |(_, what)| what);
    let wanted = KINDS
        .iter()
        .find(|(header, _)| *header == kind)
        .map_or(kind, |(_, what)| what);
    format!("{} is {what}; `{field}` needs {wanted}", path.display())
}

/// Reads a token store when the service starts (afterwards `TokenFile`
/// re-reads it when its content changes, failing closed).
fn read_tokens(path: &Path) -> Result<TokenStore, String> {
    let text = read("link.token_store", path, KINDS[1].0)?;
    TokenStore::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds a service's link engine; errors name the field and the file.
/// A client's connect address, when empty, is taken from its connection
/// file (returned as the second value).
pub(crate) fn engine(
    role: Role,
    config: &LinkConfig,
) -> Result<(LinkEngine, Option<String>), (&'static str, String)> {
    // The same PORT_* environment names as `cipherlink link serve|connect`
    // (docs/link-protocol.md §5), so one deployment's settings apply to both.
    let params = LinkParams::from_env(|k| std::env::var(k).ok())
        .map_err(|e| ("link", format!("PORT_* environment: {e}")))?;
    engine_with(role, config, params)
}

/// [`engine`] with `params` (the datagram mode reads `TYPHOON_*` names).
pub(crate) fn engine_with(
    role: Role,
    config: &LinkConfig,
    params: LinkParams,
) -> Result<(LinkEngine, Option<String>), (&'static str, String)> {
    match role {
        Role::Server => {
            if config.connection_file.is_some() {
                return Err((
                    "link.connection_file",
                    "is for a client; a server needs `server_key` and `token_store`".into(),
                ));
            }
            let Some(key_path) = &config.server_key else {
                return Err((
                    "link.server_key",
                    "is missing (make it with `cipherlink link keygen --key FILE`)".into(),
                ));
            };
            let Some(tokens_path) = &config.token_store else {
                return Err((
                    "link.token_store",
                    "is missing (`cipherlink link invite --tokens FILE` writes it)".into(),
                ));
            };
            let field = "link.server_key";
            let text = read(field, key_path, KINDS[0].0).map_err(|e| (field, e))?;
            let key = ServerKey::parse(&text)
                .map_err(|e| (field, format!("{}: {e}", key_path.display())))?;
            let tokens = read_tokens(tokens_path).map_err(|e| ("link.token_store", e))?;
            // The replay store beside the token store, as `link serve` keeps
            // it: a restart does not answer a recorded first message again,
            // and services sharing a key share one filter.
            let replay = cipherlink_link::proto::default_replay_file(tokens_path);
            let options = EndpointOptions {
                replay_file: Some(replay.clone()),
                ..EndpointOptions::default()
            };
            let endpoint =
                ServerEndpoint::with_options(key, tokens, params, options).map_err(|e| {
                    (
                        "link.token_store",
                        format!("replay store {}: {e}", replay.display()),
                    )
                })?;
            Ok((
                LinkEngine::Server {
                    endpoint: Arc::new(endpoint),
                    token_store: tokens_path.clone(),
                },
                None,
            ))
        }
        Role::Client => {
            for (set, field) in [
                (config.server_key.is_some(), "link.server_key"),
                (config.token_store.is_some(), "link.token_store"),
            ] {
                if set {
                    return Err((
                        field,
                        "is for a server; a client needs `connection_file`".into(),
                    ));
                }
            }
            let field = "link.connection_file";
            let Some(path) = &config.connection_file else {
                return Err((
                    field,
                    "is missing (`cipherlink link invite` issues one per client)".into(),
                ));
            };
            let text = read(field, path, KINDS[2].0).map_err(|e| (field, e))?;
            let file = ConnectionFile::parse(&text)
                .map_err(|e| (field, format!("{}: {e}", path.display())))?;
            let client = ClientConfig::from_file(&file, params, |k| std::env::var(k).ok());
            Ok((LinkEngine::Client(Box::new(client)), Some(file.server)))
        }
    }
}

#[cfg(test)]
mod first_line_tests {
    use super::first_line;

    #[test]
    fn a_fifo_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let fifo = dir.path().join("tokens");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo failed");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(first_line(&fifo, 4096));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("first_line blocked on a FIFO");
        assert_eq!(got, None);
    }
}
