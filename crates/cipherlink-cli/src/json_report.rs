//! `--json FILE` of the commands that report: the report, pretty-printed,
//! ending with a newline; `-` is stdout (see `output`), otherwise the file is
//! written whole (never half a report, never through a symlink) and a
//! "wrote FILE" line goes to stderr.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::output::is_stdout;

/// Writes `report` to `path` when one was given.
pub fn write(path: Option<&Path>, report: &impl serde::Serialize) -> Result<()> {
    let Some(path) = path else {
        return Ok(());
    };
    let mut json = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
    json.push('\n');
    if is_stdout(path) {
        print!("{json}");
        return Ok(());
    }
    cipherlink_files::write(
        path,
        json.as_bytes(),
        cipherlink_files::Access::Public,
        cipherlink_files::Existing::Replace,
    )
    .context("--json")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
