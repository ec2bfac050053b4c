//! Golden transcripts of the legacy adapter, kept as files under
//! `tests/golden/legacy/NAME.txt` instead of inline in the tests.
//!
//! # Format
//! One entry per marked line; a JSON value may continue on the following
//! lines (pretty-printed) until a blank line or the next marker.
//! - `> {...}` a request, sent as one line (`LegacyClient::call`).
//! - `< {...}` the response expected to the request before it, normalized
//!   with [`normalize`] (volatile clocks and pids as `"<volatile>"`, `pid N`
//!   in outcome strings) and compared as JSON values, exactly as the inline
//!   `golden()` comparison does.
//! - `@ label` a pause: the test does checks of its own there
//!   ([`Transcript::play_until`]).
//! - `# ...` comments, and blank lines.
//!
//! `${NAME}` inside a JSON string stands for a per-run value the test
//! supplies with [`Transcript::var`] (a socket path, say).
//!
//! # Blessing
//! With `SGW_BLESS=1` no response is asserted: each `<` entry is replaced by
//! the normalized actual response (per-run values put back as `${NAME}`)
//! and [`Transcript::finish`] rewrites the file. Requests, pauses and
//! comments are kept (a request on one line): they are the transcript's
//! input, written by hand.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

// Through `crate::` so the file works both as `support::golden` and as a
// test crate's `#[path]` module beside `mod support`.
use crate::support::legacy::{LegacyClient, normalize};

/// Where the transcripts live.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/legacy");

/// The environment variable that turns comparison into rewriting.
pub const BLESS_VAR: &str = "SGW_BLESS";

enum Entry {
    /// A comment, blank line or pause, kept verbatim.
    Text(String),
    Pause(String),
    Request {
        text: String,
        line: usize,
    },
    Response {
        value: Value,
        line: usize,
    },
}

/// A transcript being played against a connection, entry by entry.
pub struct Transcript {
    path: PathBuf,
    entries: Vec<Entry>,
    /// Index of the next entry to play.
    cursor: usize,
    vars: Vec<(String, String)>,
    bless: bool,
}

impl Transcript {
    /// Loads `tests/golden/legacy/{name}.txt`. Panics on a malformed file:
    /// a response without a request, or a request without a response.
    pub fn load(name: &str) -> Self {
        let path = PathBuf::from(DIR).join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read golden transcript {}: {e}", path.display()));
        let entries = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self {
            path,
            entries,
            cursor: 0,
            vars: Vec::new(),
            bless: std::env::var(BLESS_VAR).is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }

    /// `${name}` in the file's strings stands for `value` in this run.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.push((format!("${{{name}}}"), value.into()));
        self
    }

    /// Plays every exchange up to the pause `@ label`, which must be next
    /// after them.
    pub async fn play_until(&mut self, client: &mut LegacyClient, label: &str) {
        self.play_exchanges(client).await;
        match self.entries.get(self.cursor) {
            Some(Entry::Pause(found)) if found == label => self.cursor += 1,
            _ => panic!(
                "{}: expected the pause `@ {label}` here",
                self.path.display()
            ),
        }
        self.skip_text();
    }

    /// Plays every remaining exchange; the file must have no pause left.
    pub async fn play_to_end(&mut self, client: &mut LegacyClient) {
        self.play_exchanges(client).await;
        assert!(
            self.cursor == self.entries.len(),
            "{}: a pause is left unplayed",
            self.path.display()
        );
    }

    /// The next request, for a test that sends it and prepares the
    /// response itself before [`Transcript::check`].
    pub fn next_request(&mut self) -> Value {
        self.skip_text();
        let Some(Entry::Request { text, line }) = self.entries.get(self.cursor) else {
            panic!("{}: no request next", self.path.display());
        };
        let request: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{}:{line}: request: {e}", self.path.display()));
        self.cursor += 1;
        self.expand(request)
    }

    /// Compares `actual` with the expected response of the request just
    /// taken, both normalized; under `SGW_BLESS` records it instead.
    pub fn check(&mut self, request: &Value, actual: Value) {
        self.skip_text();
        let path = self.path.display().to_string();
        let Some(Entry::Response { value, line }) = self.entries.get_mut(self.cursor) else {
            panic!("{path}: no response next");
        };
        self.cursor += 1;
        let actual = normalize(actual);
        if self.bless {
            *value = contract(actual, &self.vars);
            return;
        }
        let expected = normalize(expand(value.clone(), &self.vars));
        assert_eq!(
            actual,
            expected,
            "\ngolden:   {path}:{line} (SGW_BLESS=1 rewrites it)\nrequest:  {request}\nactual:   {}\nexpected: {}",
            serde_json::to_string_pretty(&actual).unwrap_or_default(),
            serde_json::to_string_pretty(&expected).unwrap_or_default(),
        );
    }

    /// Checks that the whole transcript was played; under `SGW_BLESS`
    /// rewrites the file with the responses recorded.
    pub fn finish(mut self) {
        self.skip_text();
        assert!(
            self.cursor == self.entries.len(),
            "{}: entries left unplayed",
            self.path.display()
        );
        if self.bless {
            std::fs::write(&self.path, render(&self.entries))
                .unwrap_or_else(|e| panic!("bless {}: {e}", self.path.display()));
            eprintln!("blessed {}", self.path.display());
        }
    }

    async fn play_exchanges(&mut self, client: &mut LegacyClient) {
        loop {
            self.skip_text();
            if !matches!(self.entries.get(self.cursor), Some(Entry::Request { .. })) {
                return;
            }
            let request = self.next_request();
            let response = client.call(request.clone()).await;
            self.check(&request, response);
        }
    }

    fn skip_text(&mut self) {
        while matches!(self.entries.get(self.cursor), Some(Entry::Text(_))) {
            self.cursor += 1;
        }
    }

    fn expand(&self, value: Value) -> Value {
        expand(value, &self.vars)
    }
}

fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    // Whether the last exchange entry was a request awaiting its response.
    let mut open_request = false;
    while i < lines.len() {
        let line = lines[i];
        let number = i + 1;
        i += 1;
        let marker = line.get(..2).unwrap_or(line);
        match marker {
            "> " | "< " => {
                let mut json = line[2..].to_owned();
                while i < lines.len() && !starts_entry(lines[i]) {
                    json.push('\n');
                    json.push_str(lines[i]);
                    i += 1;
                }
                let request = marker == "> ";
                if request == open_request {
                    return Err(format!(
                        "line {number}: a {} must follow a {}",
                        if request { "request" } else { "response" },
                        if request { "response" } else { "request" },
                    ));
                }
                open_request = request;
                let value: Value = serde_json::from_str(&json)
                    .map_err(|e| format!("line {number}: not JSON: {e}"))?;
                entries.push(if request {
                    // Sent as one line, whatever the file's layout.
                    Entry::Request {
                        text: value.to_string(),
                        line: number,
                    }
                } else {
                    Entry::Response {
                        value,
                        line: number,
                    }
                });
            }
            _ if line.starts_with("@ ") => {
                if open_request {
                    return Err(format!("line {number}: pause inside an exchange"));
                }
                entries.push(Entry::Pause(line[2..].trim().to_owned()));
            }
            _ if line.is_empty() || line.starts_with('#') => {
                entries.push(Entry::Text(line.to_owned()));
            }
            _ => return Err(format!("line {number}: unknown entry {line:?}")),
        }
    }
    if open_request {
        return Err("the last request has no response".to_owned());
    }
    Ok(entries)
}

/// A line that ends a JSON value continued over several lines.
fn starts_entry(line: &str) -> bool {
    line.is_empty() || line.starts_with(['>', '<', '@', '#'])
}

fn render(entries: &[Entry]) -> String {
    let mut out = String::new();
    for entry in entries {
        let _ = match entry {
            Entry::Text(text) => writeln!(out, "{text}"),
            Entry::Pause(label) => writeln!(out, "@ {label}"),
            Entry::Request { text, .. } => writeln!(out, "> {text}"),
            Entry::Response { value, .. } => writeln!(
                out,
                "< {}",
                serde_json::to_string_pretty(value).expect("a JSON value serializes")
            ),
        };
    }
    out
}

/// Replaces `${NAME}` by its value in every string.
fn expand(value: Value, vars: &[(String, String)]) -> Value {
    map_strings(value, &|s| {
        vars.iter()
            .fold(s.to_owned(), |s, (name, value)| s.replace(name, value))
    })
}

/// Puts `${NAME}` back in place of its value, for blessing.
fn contract(value: Value, vars: &[(String, String)]) -> Value {
    map_strings(value, &|s| {
        vars.iter()
            .filter(|(_, value)| !value.is_empty())
            .fold(s.to_owned(), |s, (name, value)| s.replace(value, name))
    })
}

fn map_strings(value: Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(f(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, map_strings(v, f)))
                .collect(),
        ),
        other => other,
    }
}
