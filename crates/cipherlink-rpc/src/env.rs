//! The seed's `.env` file: `KEY=value` lines that fill in environment
//! variables not already set, so flags > environment > `.env` > defaults.
//!
//! Only `./.env` is read, never one in a parent folder (dotenvy's own
//! `dotenv()` searches upwards, so a file left anywhere above the working
//! folder would configure the program). And a setting that weakens
//! certificate verification is reported with where it came from, so that
//! the caller can say so at start: such a setting should never be in force
//! without anyone having seen it.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variables that weaken verification, and what each does.
pub const WEAKENING_VARIABLES: [(&str, &str); 1] = [(
    "TLS_LEGACY_CN",
    "accepts X.509 v1 and CN-only certificates (the dangerous legacy-certificate option)",
)];

/// Where a setting came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The process environment.
    Environment,
    /// The `.env` file at this path.
    DotEnv(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Environment => f.write_str("the environment"),
            Source::DotEnv(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A verification-weakening setting in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weakening {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// Where it came from.
    pub source: Source,
    /// What it does.
    pub effect: &'static str,
}

impl std::fmt::Display for Weakening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} from {} {}",
            self.variable, self.value, self.source, self.effect
        )
    }
}

/// What loading `.env` did.
#[derive(Debug, Clone, Default)]
pub struct DotEnv {
    /// The file read, if there was one.
    pub path: Option<PathBuf>,
    /// Settings that weaken verification, from the file or the environment.
    pub weakening: Vec<Weakening>,
}

/// Loads `./.env` if present (not one in a parent folder). Call before
/// parsing the command line, which reads the environment.
pub fn load_dotenv() -> DotEnv {
    let before: Vec<Option<OsString>> = WEAKENING_VARIABLES
        .iter()
        .map(|(name, _)| std::env::var_os(name))
        .collect();
    let path = std::env::current_dir()
        .map(|dir| dir.join(".env"))
        .ok()
        .filter(|path| path.is_file());
    let loaded = path
        .as_ref()
        .and_then(|path| match dotenvy::from_path(path) {
            Ok(()) => Some(path.clone()),
            Err(e) => {
                // A malformed .env should not stop the program, but must be visible.
                eprintln!("warning: ignoring {}: {e}", path.display());
                None
            }
        });
    let weakening = WEAKENING_VARIABLES
        .iter()
        .zip(before)
        .filter_map(|(&(variable, effect), before)| {
            let value = std::env::var(variable).ok().filter(|v| is_true(v))?;
            let source = match (before, &loaded) {
                (None, Some(path)) => Source::DotEnv(path.clone()),
                _ => Source::Environment,
            };
            Some(Weakening {
                variable,
                value,
                source,
                effect,
            })
        })
        .collect();
    DotEnv {
        path: loaded,
        weakening,
    }
}

/// What a boolean flag read from the environment takes as true (clap's
/// `BoolishValueParser`, which the command line uses for these).
fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "y" | "yes" | "t" | "true" | "on" | "1"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_clap_reads_them() {
        for yes in ["1", "true", "yes", "on", "TRUE"] {
            assert!(is_true(yes), "{yes}");
        }
        for no in ["", "0", "false", "no", "off", "Off"] {
            assert!(!is_true(no), "{no}");
        }
    }
}
