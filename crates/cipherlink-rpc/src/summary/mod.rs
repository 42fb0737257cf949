//! `cipherlink summarize`: reading results files (both tests, this crate's
//! and the Python suite's), statistics, text, SVG and HTML reports.

pub mod html;
pub mod plot;
pub mod read;
pub mod report;

pub use read::{read, Kind, Row, RunFile};
pub use report::{render, render_comparison, summarize, FileSummary};
