//! A shell block's commands: continuation lines joined, `$ ` prompts and
//! their output told apart, the documented rewrites applied, and a light
//! quote-aware reading of each command (its segments and their command
//! words). It does not interpret the shell: bash runs what it returns.

use super::markdown::Block;

/// One command of a block, as the docs test runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The 1-based line it starts on.
    pub line: usize,
    /// As written in the doc (continuations joined), for messages.
    pub shown: String,
    /// What bash runs: rewritten, without its trailing comment and `&`.
    pub command: String,
    /// Ended with `&`: started in the background.
    pub background: bool,
    /// A console block shows `Error: ...` after it: it must fail, and its
    /// stderr must contain this (the shown line up to its last `: `).
    pub expect_error: Option<String>,
}

/// What became of a line of the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// To run.
    Step(Step),
    /// Left out, with the reason (a `cargo build` line).
    Dropped {
        line: usize,
        shown: String,
        why: &'static str,
    },
}

/// The block's commands. In a `console` block only `$ ` lines are commands;
/// in `sh`/`bash` every line that is not blank or a comment is one.
pub fn lines(block: &Block) -> Vec<Line> {
    let console = block.lang == "console";
    let mut out: Vec<Line> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (number, raw) in &block.body {
        if let Some((start, mut text)) = pending.take() {
            text.push(' ');
            text.push_str(raw.trim());
            finish_or_continue(&mut out, &mut pending, start, text);
            continue;
        }
        let trimmed = raw.trim();
        let command = if console {
            match trimmed.strip_prefix("$ ") {
                Some(command) => Some(command),
                None => {
                    expect_error(&mut out, trimmed);
                    None
                }
            }
        } else if trimmed.is_empty() || trimmed.starts_with('#') {
            None
        } else {
            Some(trimmed)
        };
        if let Some(command) = command {
            finish_or_continue(&mut out, &mut pending, *number, command.to_string());
        }
    }
    if let Some((start, text)) = pending {
        out.push(to_line(start, text));
    }
    out
}

fn finish_or_continue(
    out: &mut Vec<Line>,
    pending: &mut Option<(usize, String)>,
    start: usize,
    text: String,
) {
    match text.strip_suffix('\\') {
        Some(head) => *pending = Some((start, head.trim_end().to_string())),
        None => out.push(to_line(start, text)),
    }
}

/// The first output line a console block shows under a command: `Error:`
/// there means the command fails.
fn expect_error(out: &mut [Line], output: &str) {
    let Some(Line::Step(step)) = out.last_mut() else {
        return;
    };
    if step.expect_error.is_none() && output.starts_with("Error:") {
        let stable = output.rfind(": ").map_or(output, |cut| &output[..cut]);
        step.expect_error = Some(stable.to_string());
    }
}

fn to_line(line: usize, shown: String) -> Line {
    let code = strip_comment(&shown).trim_end().to_string();
    if segments(&code).first().is_some_and(|s| {
        let words = words(s);
        words.first().map(String::as_str) == Some("cargo")
            && words.get(1).map(String::as_str) == Some("build")
    }) {
        return Line::Dropped {
            line,
            shown,
            why: "cargo build: the test runs the binary cargo built for it",
        };
    }
    let (code, background) = match code.strip_suffix('&') {
        Some(head) if !head.ends_with('&') && !head.ends_with('>') => {
            (head.trim_end().to_string(), true)
        }
        _ => (code, false),
    };
    Line::Step(Step {
        line,
        shown,
        command: rewrite(&code),
        background,
        expect_error: None,
    })
}

/// The documented ways of running the binary, each of which becomes
/// `cipherlink` (the freshly built one on PATH).
pub const REWRITES: [&str; 5] = [
    "cargo run --release -p cipherlink-cli --",
    "cargo run --release --",
    "./target/release/cipherlink",
    "target/release/cipherlink",
    "target/debug/cipherlink",
];

/// Applies [`REWRITES`] where one starts a word.
pub fn rewrite(command: &str) -> String {
    let mut out = command.to_string();
    for from in REWRITES {
        let mut at = 0;
        while let Some(found) = out[at..].find(from).map(|i| i + at) {
            let starts_word = out[..found]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || "|;&(".contains(c));
            let ends_word = out[found + from.len()..]
                .chars()
                .next()
                .is_none_or(char::is_whitespace);
            if starts_word && ends_word {
                out.replace_range(found..found + from.len(), "cipherlink");
                at = found + "cipherlink".len();
            } else {
                at = found + from.len();
            }
        }
    }
    out
}

/// Each character with where it stands: `quoted` (inside quotes, or
/// escaped by a backslash) and `syntax` (a quote or escaping backslash
/// itself, which is not part of the word).
fn quoting(text: &str) -> Vec<(usize, char, bool, bool)> {
    let mut out = Vec::new();
    let (mut single, mut double, mut escaped) = (false, false, false);
    for (i, c) in text.char_indices() {
        let quoted = single || double || escaped;
        let mut syntax = true;
        if escaped {
            escaped = false;
            syntax = false;
        } else if c == '\\' && !single {
            escaped = true;
        } else if c == '\'' && !double {
            single = !single;
        } else if c == '"' && !single {
            double = !double;
        } else {
            syntax = false;
        }
        out.push((i, c, quoted && !syntax, syntax));
    }
    out
}

/// The command without a trailing `# comment` (a `#` that starts a word,
/// outside quotes).
pub fn strip_comment(text: &str) -> &str {
    let mut previous = ' ';
    for (i, c, quoted, _) in quoting(text) {
        if c == '#' && !quoted && previous.is_whitespace() {
            return &text[..i];
        }
        previous = c;
    }
    text
}

/// The simple commands of a command line: split at unquoted `|`, `||`,
/// `&&`, `;` and `&` (not the `&` of a redirection such as `2>&1`).
pub fn segments(text: &str) -> Vec<&str> {
    let chars = quoting(text);
    let mut out = Vec::new();
    let mut start = 0;
    for (k, &(i, c, quoted, syntax)) in chars.iter().enumerate() {
        let before = k.checked_sub(1).map(|k| chars[k].1);
        let after = chars.get(k + 1).map(|x| x.1);
        let redirection = c == '&' && (before == Some('>') || after == Some('>'));
        if !quoted && !syntax && matches!(c, '|' | ';' | '&') && !redirection {
            if start < i {
                out.push(text[start..i].trim());
            }
            start = i + 1;
        }
    }
    if start < text.len() {
        out.push(text[start..].trim());
    }
    out.retain(|s| !s.is_empty());
    out
}

/// The words of a simple command, quotes removed (for recognising the
/// program, not for running it).
pub fn words(segment: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for (_, c, quoted, syntax) in quoting(segment) {
        if !quoted && c.is_whitespace() {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        } else if !syntax {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out.retain(|w| !w.is_empty());
    out
}

/// Words that run the next word as the program.
const WRAPPERS: [&str; 3] = ["sudo", "time", "/usr/bin/time"];

/// Where the program of a simple command is: after `NAME=value` words and
/// the [`WRAPPERS`] (with their `-options`). Returns (its index in
/// [`words`], the wrappers seen).
pub fn program(words: &[String]) -> (usize, Vec<String>) {
    let mut i = 0;
    let mut wrappers = Vec::new();
    while let Some(word) = words.get(i) {
        let assignment = word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if assignment {
            i += 1;
        } else if WRAPPERS.contains(&word.as_str()) {
            wrappers.push(word.clone());
            i += 1;
            while words.get(i).is_some_and(|w| w.starts_with('-')) {
                i += 1;
            }
        } else {
            break;
        }
    }
    (i, wrappers)
}

/// The programs a command line runs (one per simple command).
pub fn programs(command: &str) -> Vec<String> {
    segments(command)
        .into_iter()
        .filter_map(|segment| {
            let words = words(segment);
            let (at, _) = program(&words);
            words.get(at).cloned()
        })
        .collect()
}

/// The wrappers in front of any simple command of the line (`sudo`).
pub fn wrappers(command: &str) -> Vec<String> {
    segments(command)
        .into_iter()
        .flat_map(|segment| program(&words(segment)).1)
        .collect()
}

/// For parse-only runs: the command with the [`WRAPPERS`] in front of its
/// `cipherlink` removed (no root, no timing needed to parse flags).
pub fn unwrap_cipherlink(command: &str) -> String {
    let mut out = command.to_string();
    for segment in segments(command) {
        let words = words(segment);
        let (at, wrappers) = program(&words);
        if wrappers.is_empty() || words.get(at).map(String::as_str) != Some("cipherlink") {
            continue;
        }
        if let Some(from) = segment.find(wrappers[0].as_str()) {
            if let Some(to) = segment[from..].find("cipherlink") {
                let unwrapped = format!("{}{}", &segment[..from], &segment[from + to..]);
                out = out.replacen(segment, &unwrapped, 1);
            }
        }
    }
    out
}

/// The ports a background command listens on, as its `--listen` says
/// (`HOST:PORT` or a bare port).
pub fn listen_ports(command: &str) -> Vec<u16> {
    let words: Vec<String> = segments(command).into_iter().flat_map(words).collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--listen")
        .filter_map(|w| w[1].rsplit(':').next()?.parse().ok())
        .collect()
}

/// The `/tmp/NAME` paths a block writes (each first component once).
pub fn tmp_paths(block: &Block) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for (_, line) in &block.body {
        for (at, _) in line.match_indices("/tmp/") {
            let name: String = line[at + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect();
            let path = std::path::Path::new("/tmp").join(&name);
            if !name.is_empty() && !name.starts_with('.') && !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}
