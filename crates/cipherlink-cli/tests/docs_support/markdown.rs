//! Fenced code blocks of a Markdown file and the `<!-- example: ... -->`
//! marker that says what the docs test does with each (the grammar is in
//! `tests/docs_examples.rs`).

/// One fenced code block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The file, relative to the repository root (`docs/proxy.md`).
    pub file: String,
    /// The 1-based line of the opening fence.
    pub line: usize,
    /// The info string's first word (`sh`, `toml`, `text`; empty if untagged).
    pub lang: String,
    /// The marker on the line before the fence, if any.
    pub marker: Option<Marker>,
    /// The block's lines with their 1-based line numbers, the fence's
    /// indentation removed.
    pub body: Vec<(usize, String)>,
}

impl Block {
    /// `file:line` of the opening fence.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// The body as text (TOML).
    pub fn text(&self) -> String {
        self.body.iter().map(|(_, l)| format!("{l}\n")).collect()
    }
}

/// A parsed `<!-- example: ... -->` marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The line of the marker.
    pub line: usize,
    /// `run`, `parse-only`, `skip`, `toml`, with its argument (`toml proxy`).
    pub kind: String,
    /// Words whose commands a `run` block only parses (`parse-only sudo`).
    pub parse_only_words: Vec<String>,
    /// The text in parentheses.
    pub reason: Option<String>,
}

/// Which schema a TOML block is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// The core `Config`, built into a server `Context`.
    CoreServer,
    /// The core `Config`, built into a client `Context`.
    CoreClient,
    /// `cipherlink proxy run --config`.
    Proxy,
}

/// What the docs test does with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run its commands; those starting with one of these words are only parsed.
    Run { parse_only_words: Vec<String> },
    /// Only parse its `cipherlink` command lines (`CIPHERLINK_PARSE_ONLY=1`).
    ParseOnly { reason: String },
    /// Not run at all.
    Skip { reason: String },
    /// Output, grammar, diagrams, test vectors (a `text` block).
    Text,
    /// A configuration file, checked as the tool checks it.
    Toml(Schema),
}

/// Languages whose blocks are shell commands.
pub const SHELL: [&str; 3] = ["sh", "bash", "console"];

const MARKER_OPEN: &str = "<!-- example:";

/// The fenced blocks of `text`; an error names a fence left open or a
/// marker that is not right before a fence (it would silently do nothing).
pub fn scan(file: &str, text: &str) -> Result<Vec<Block>, Vec<String>> {
    let mut blocks = Vec::new();
    let mut errors = Vec::new();
    let mut open: Option<(Block, usize)> = None;
    let mut pending: Option<Marker> = None;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        if let Some((block, fence_indent)) = open.as_mut() {
            if trimmed.starts_with("```") && trimmed.trim_end() == "```" {
                blocks.extend(open.take().map(|(b, _)| b));
            } else {
                let cut = raw.len() - raw.trim_start().len();
                let line = &raw[cut.min(*fence_indent)..];
                block.body.push((number, line.to_string()));
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            open = Some((
                Block {
                    file: file.to_string(),
                    line: number,
                    lang: info.split_whitespace().next().unwrap_or("").to_string(),
                    marker: pending.take(),
                    body: Vec::new(),
                },
                indent,
            ));
            continue;
        }
        if let Some(stray) = pending.take() {
            errors.push(format!(
                "{file}:{}: example marker not on the line right before a fence",
                stray.line
            ));
        }
        if trimmed.starts_with(MARKER_OPEN) {
            match parse_marker(trimmed, number) {
                Ok(marker) => pending = Some(marker),
                Err(why) => errors.push(format!("{file}:{number}: {why}")),
            }
        }
    }
    if let Some((block, _)) = open {
        errors.push(format!("{}: fence never closed", block.at()));
    }
    if let Some(stray) = pending {
        errors.push(format!(
            "{file}:{}: example marker after the last fence",
            stray.line
        ));
    }
    if errors.is_empty() {
        Ok(blocks)
    } else {
        Err(errors)
    }
}

/// Parses `<!-- example: KIND[, parse-only WORD]... [(REASON)] -->`.
pub fn parse_marker(line: &str, number: usize) -> Result<Marker, String> {
    let body = line
        .strip_prefix(MARKER_OPEN)
        .and_then(|rest| rest.trim_end().strip_suffix("-->"))
        .ok_or("an example marker is one line: <!-- example: KIND (reason) -->")?
        .trim();
    let (head, reason) = match body.find('(') {
        Some(open) => {
            let reason = body[open + 1..]
                .strip_suffix(')')
                .ok_or("the reason in an example marker ends with ')' before '-->'")?;
            (&body[..open], Some(reason.trim().to_string()))
        }
        None => (body, None),
    };
    let mut parts = head.split(',').map(str::trim);
    let kind = parts.next().unwrap_or("").to_string();
    let mut parse_only_words = Vec::new();
    for part in parts {
        match part.split_whitespace().collect::<Vec<_>>()[..] {
            ["parse-only", word] => parse_only_words.push(word.to_string()),
            _ => return Err(format!("unknown clause {part:?} (only `parse-only WORD`)")),
        }
    }
    Ok(Marker {
        line: number,
        kind,
        parse_only_words,
        reason: reason.filter(|r| !r.is_empty()),
    })
}

/// What to do with `block`, or why its marker or tag is not enough.
pub fn plan(block: &Block) -> Result<Plan, String> {
    let shell = SHELL.contains(&block.lang.as_str());
    let Some(marker) = &block.marker else {
        return match block.lang.as_str() {
            _ if shell => Ok(Plan::Run {
                parse_only_words: Vec::new(),
            }),
            "text" => Ok(Plan::Text),
            "toml" => Err("a toml block names its schema: \
                <!-- example: toml core-server|core-client|proxy -->"
                .into()),
            "" => Err(
                "untagged block: tag it sh or console (commands, run by the docs test), \
                toml, or text (output, grammar, vectors)"
                    .into(),
            ),
            lang => Err(format!(
                "a ```{lang} block is not run: say why with <!-- example: skip (reason) -->"
            )),
        };
    };
    let reason = || {
        marker.reason.clone().ok_or(format!(
            "marker `{}` needs a reason in parentheses",
            marker.kind
        ))
    };
    let need_shell = |plan: Plan| {
        if shell {
            Ok(plan)
        } else {
            Err(format!(
                "marker `{}` is for sh/console blocks, not ```{}",
                marker.kind, block.lang
            ))
        }
    };
    if !marker.parse_only_words.is_empty() {
        if marker.kind != "run" {
            return Err("`parse-only WORD` clauses belong to a `run` marker".into());
        }
        reason()?;
    }
    match marker.kind.split_whitespace().collect::<Vec<_>>()[..] {
        ["run"] => need_shell(Plan::Run {
            parse_only_words: marker.parse_only_words.clone(),
        }),
        ["parse-only"] => need_shell(Plan::ParseOnly { reason: reason()? }),
        ["skip"] => Ok(Plan::Skip { reason: reason()? }),
        ["toml", schema] if block.lang == "toml" => match schema {
            "core-server" => Ok(Plan::Toml(Schema::CoreServer)),
            "core-client" => Ok(Plan::Toml(Schema::CoreClient)),
            "proxy" => Ok(Plan::Toml(Schema::Proxy)),
            other => Err(format!(
                "unknown TOML schema {other:?} (core-server, core-client, proxy)"
            )),
        },
        _ => Err(format!(
            "unknown example marker `{}` for a ```{} block (run, parse-only, skip, toml SCHEMA)",
            marker.kind, block.lang
        )),
    }
}
