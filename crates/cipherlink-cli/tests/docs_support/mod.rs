//! The docs test's parts (see `tests/docs_examples.rs` for the rules).

pub mod markdown;
pub mod procfs;
pub mod runner;
pub mod shell;
pub mod shell_block;
pub mod toml_check;
