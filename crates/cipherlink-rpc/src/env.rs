//! The seed's `.env` file: `KEY=value` lines that fill in environment
//! variables not already set, so flags > environment > `.env` > defaults.

use std::path::PathBuf;

/// Loads `./.env` (or the nearest one above) if present; returns its path.
/// Call before parsing the command line, which reads the environment.
pub fn load_dotenv() -> Option<PathBuf> {
    match dotenvy::dotenv() {
        Ok(path) => Some(path),
        Err(e) if e.not_found() => None,
        Err(e) => {
            // A malformed .env should not stop the program, but must be visible.
            eprintln!("warning: ignoring .env: {e}");
            None
        }
    }
}
