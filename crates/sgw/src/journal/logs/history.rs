//! History read back at start: each child's newest lines from its log
//! files, about as many as its in-memory tail holds, so that `TailLogs`
//! and `sgw logs` serve what was captured before a restart.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::files::{current, rotated};
use super::format;
use super::store::cost;
use crate::journal::Record;
use crate::model::{ChildId, LogLine};

/// Rotated files looked at, at most (a config allows no more backups).
const MAX_FILES: u32 = 101;

#[derive(Debug, Default)]
pub struct History {
    /// In sequence order.
    pub records: Vec<Record<LogLine>>,
    /// The highest sequence found (0: none), so new lines continue after it.
    pub last_sequence: u64,
    /// Lines that did not parse (a torn write, a hand edit): skipped.
    pub skipped: u64,
}

/// Reads every child's files in `dir`, each child's newest lines up to
/// `budget(child)` bytes of memory.
pub fn load(dir: &Path, budget: impl Fn(&ChildId) -> usize) -> io::Result<History> {
    let mut history = History::default();
    let mut children = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = match name.rsplit_once(".log") {
            Some((stem, "")) => stem,
            Some((stem, n))
                if n.strip_prefix('.')
                    .is_some_and(|n| n.parse::<u32>().is_ok()) =>
            {
                stem
            }
            _ => continue,
        };
        if let Ok(child) = ChildId::new(stem) {
            children.insert(child);
        }
    }
    for child in children {
        load_child(dir, &child, budget(&child), &mut history)?;
    }
    history.records.sort_by_key(|r| r.sequence);
    history.records.dedup_by_key(|r| r.sequence);
    Ok(history)
}

fn load_child(dir: &Path, child: &ChildId, budget: usize, history: &mut History) -> io::Result<()> {
    let mut newest_first: Vec<Record<LogLine>> = Vec::new();
    let mut used = 0usize;
    for n in 0..MAX_FILES {
        let path = if n == 0 {
            current(dir, child)
        } else {
            rotated(dir, child, n)
        };
        let text = match read_tail(&path, budget.saturating_add(64 * 1024)) {
            Ok(text) => text,
            // Right after a rotation there is no current file yet.
            Err(error) if error.kind() == io::ErrorKind::NotFound && n == 0 => continue,
            Err(error) if error.kind() == io::ErrorKind::NotFound => break,
            Err(error) => return Err(error),
        };
        for line in text.rsplit('\n') {
            match format::decode(line, child) {
                Some(record) => {
                    history.last_sequence = history.last_sequence.max(record.sequence);
                    used = used.saturating_add(cost(&record));
                    newest_first.push(record);
                }
                None => history.skipped += u64::from(!line.is_empty()),
            }
            if used > budget {
                break;
            }
        }
        if used > budget {
            break;
        }
    }
    newest_first.reverse();
    history.records.append(&mut newest_first);
    Ok(())
}

/// The complete lines among the last `want` bytes of a file: a torn last
/// line (no newline yet) and the partial first one are left out.
fn read_tail(path: &Path, want: usize) -> io::Result<String> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(want as u64);
    let mut bytes = vec![0u8; usize::try_from(len - start).unwrap_or(0)];
    file.read_exact_at(&mut bytes, start)?;
    let begin = if start > 0 {
        bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| i + 1)
    } else {
        0
    };
    let end = bytes.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let complete = bytes.get(begin..end.max(begin)).unwrap_or_default();
    Ok(String::from_utf8_lossy(complete).into_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::model::LogStream;

    fn line(child: &str, sequence: u64, text: &str) -> Vec<u8> {
        let record = Record {
            sequence,
            time: SystemTime::now(),
            body: LogLine {
                child_id: ChildId::new(child).expect("id"),
                generation: 1,
                stream: LogStream::Stdout,
                text: text.to_owned(),
                truncated: false,
                suppressed: 0,
            },
        };
        let mut out = Vec::new();
        format::encode(&Arc::new(record), &mut out);
        out
    }

    /// Lines come back from the current and rotated files in sequence
    /// order across children; a torn tail is skipped, and the highest
    /// sequence is found wherever it is.
    #[test]
    fn reloads_newest_lines_of_every_child() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a_old = line("a", 1, "a1");
        a_old.extend(line("a", 3, "a3"));
        std::fs::write(dir.path().join("a.log.1"), a_old).expect("write");
        let mut a_new = line("a", 5, "a5");
        a_new.extend(b"2026-12-03T04:05:06.1234");
        std::fs::write(dir.path().join("a.log"), a_new).expect("write");
        let mut b = line("b", 2, "b2");
        b.extend(line("b", 7, "b7"));
        std::fs::write(dir.path().join("b.log.1"), b).expect("write");
        std::fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        let history = load(dir.path(), |_| 1 << 20).expect("load");
        let seen: Vec<(u64, &str)> = history
            .records
            .iter()
            .map(|r| (r.sequence, r.body.text.as_str()))
            .collect();
        assert_eq!(
            seen,
            [(1, "a1"), (2, "b2"), (3, "a3"), (5, "a5"), (7, "b7")]
        );
        assert_eq!(history.last_sequence, 7);
        assert_eq!(history.skipped, 0, "a torn tail is not a line yet");
    }

    /// Only about `budget` bytes of each child come back: the newest.
    #[test]
    fn reload_is_bounded_by_the_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = Vec::new();
        for sequence in 1..=1000 {
            text.extend(line("a", sequence, &"x".repeat(100)));
        }
        std::fs::write(dir.path().join("a.log"), text).expect("write");
        let budget = 10 * (super::super::store::LINE_OVERHEAD + 100);
        let history = load(dir.path(), |_| budget).expect("load");
        assert!(history.records.len() <= 11, "{}", history.records.len());
        assert_eq!(history.records.last().map(|r| r.sequence), Some(1000));
        assert_eq!(history.last_sequence, 1000);
    }
}
