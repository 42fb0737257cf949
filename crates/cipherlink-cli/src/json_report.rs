//! `--json FILE` of the bench commands: the report, pretty-printed, and a
//! "wrote FILE" line on stdout.

use std::path::Path;

use anyhow::{Context as _, Result};

/// Writes `report` to `path` when one was given.
pub fn write(path: Option<&Path>, report: &impl serde::Serialize) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let json = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
