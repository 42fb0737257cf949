//! The link transport's files: the server key and token store a proxy
//! server reads, the connection file a proxy client reads (the same files
//! `cipherlink link keygen/invite/revoke` write). The link crate parses them;
//! this module finds them, bounds them, and says which file went where when
//! one is missing or of the wrong kind.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cipherlink_link::{
    ClientConfig, ConnectionFile, LinkParams, ServerEndpoint, ServerKey, TokenStore,
};

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

/// Reads a link file of `kind` (its header line) for `field`.
fn read(field: &str, path: &Path, kind: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > cipherlink_link::keys::MAX_FILE_LEN as u64 {
        return Err(format!(
            "{}: larger than {} bytes; not a link file",
            path.display(),
            cipherlink_link::keys::MAX_FILE_LEN
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let first = text.lines().next().unwrap_or("").trim();
    if first != kind {
        let what = KINDS
            .iter()
            .find(|(header, _)| *header == first)
            .map_or("not a link file", |(_, what)| what);
        let wanted = KINDS
            .iter()
            .find(|(header, _)| *header == kind)
            .map_or(kind, |(_, what)| what);
        return Err(format!(
            "{} is {what}; `{field}` needs {wanted}",
            path.display()
        ));
    }
    Ok(text)
}

/// Reads a token store (also when it is re-read while running).
pub(crate) fn read_tokens(path: &Path) -> Result<TokenStore, String> {
    let text = read("link.token_store", path, KINDS[1].0)?;
    TokenStore::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The modification time, to notice a changed token store.
pub(crate) fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
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
            let endpoint =
                ServerEndpoint::new(key, tokens, params).map_err(|e| ("link", e.to_string()))?;
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
