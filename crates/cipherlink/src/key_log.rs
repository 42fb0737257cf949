//! `dangerous.key_log_file`: every session's TLS secrets appended to a file
//! in the NSS key log format that Wireshark and tshark read
//! (`LABEL <client random hex> <secret hex>`), from either implementation.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::Error;

/// An open key log file, shared by a Context's connections.
#[derive(Debug)]
pub(crate) struct KeyLogFile {
    file: Mutex<File>,
}

impl KeyLogFile {
    /// Opens `path` for appending: created 0600 (the file unlocks traffic),
    /// never through a symlink, and an existing file that others can read is
    /// refused rather than filled with secrets.
    pub(crate) fn open(path: &Path) -> Result<Arc<KeyLogFile>, Error> {
        let file =
            cipherlink_files::open_private_append(path).map_err(|source| Error::OutputFile {
                field: "dangerous.key_log_file",
                source,
            })?;
        tracing::warn!(
            "writing TLS secrets to {} (dangerous.key_log_file): anyone with that file can decrypt these sessions",
            path.display()
        );
        Ok(Arc::new(KeyLogFile {
            file: Mutex::new(file),
        }))
    }

    /// Appends one line (without its newline). A failed write loses that
    /// line only: the key log must never fail a handshake.
    pub(crate) fn write_line(&self, line: &str) {
        if let Ok(mut file) = self.file.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.write_line(&format!(
            "{label} {} {}",
            hex::encode(client_random),
            hex::encode(secret)
        ));
    }
}
