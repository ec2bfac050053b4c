//! One record per line in a child's log file, greppable and readable with
//! `tail -f`, carrying what the next start needs to reload it:
//!
//! ```text
//! 2026-12-03T04:05:06.123456Z 1234 g3 stdout listening on :8080
//! 2026-12-03T04:05:06.123501Z 1235 g3 stderr+ the first 16 KiB of a longer line
//! 2026-12-03T04:05:36.000012Z 1240 g3 stdout! 120345 lines suppressed (rate limit: 10000 lines per 30s)
//! ```
//!
//! Time (UTC, microseconds), log sequence, process generation, stream, then
//! the text as captured. A `+` after the stream: the line continues in the
//! next record; a `!`: a rate-limit notice whose first word is the count.
//! The child is the file's name. Text never holds a newline (capture splits
//! there), so a line is a record.

use std::time::SystemTime;

use crate::journal::Record;
use crate::model::{ChildId, LogLine, LogStream};

/// Appends `record` as one line (with its newline) to `out`.
pub fn encode(record: &Record<LogLine>, out: &mut Vec<u8>) {
    use std::io::Write;
    let line = &record.body;
    let mark = if line.suppressed > 0 {
        "!"
    } else if line.truncated {
        "+"
    } else {
        ""
    };
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{} {} g{} {}{mark} ",
        humantime::format_rfc3339_micros(record.time),
        record.sequence,
        line.generation,
        line.stream.as_str(),
    );
    out.extend_from_slice(line.text.as_bytes());
    out.push(b'\n');
}

/// The record of one line (without its newline) of `child`'s file; `None`
/// for anything that is not one (a torn write, a hand edit).
pub fn decode(line: &str, child: &ChildId) -> Option<Record<LogLine>> {
    let mut fields = line.splitn(5, ' ');
    let time: SystemTime = humantime::parse_rfc3339(fields.next()?).ok()?;
    let sequence: u64 = fields.next()?.parse().ok()?;
    let generation: u64 = fields.next()?.strip_prefix('g')?.parse().ok()?;
    let stream_field = fields.next()?;
    let text = fields.next()?;
    let (stream_name, mark) = match stream_field.as_bytes().last() {
        Some(b'+' | b'!') => stream_field.split_at(stream_field.len() - 1),
        _ => (stream_field, ""),
    };
    let stream = match stream_name {
        "stdout" => LogStream::Stdout,
        "stderr" => LogStream::Stderr,
        _ => return None,
    };
    let suppressed = if mark == "!" {
        text.split(' ').next()?.parse().ok().filter(|&n| n > 0)?
    } else {
        0
    };
    (sequence > 0).then(|| Record {
        sequence,
        time,
        body: LogLine {
            child_id: child.clone(),
            generation,
            stream,
            text: text.to_owned(),
            truncated: mark == "+",
            suppressed,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(sequence: u64, text: &str, truncated: bool, suppressed: u64) -> Record<LogLine> {
        Record {
            sequence,
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_270_706_123_456),
            body: LogLine {
                child_id: ChildId::new("web").expect("id"),
                generation: 3,
                stream: if truncated {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                },
                text: text.to_owned(),
                truncated,
                suppressed,
            },
        }
    }

    #[test]
    fn records_round_trip_through_a_line() {
        let child = ChildId::new("web").expect("id");
        for original in [
            record(1234, "listening on :8080", false, 0),
            record(1235, "  spaces  kept \t and tabs ", true, 0),
            record(1236, "", false, 0),
            record(1237, "héllo €", false, 0),
            record(1240, "120345 lines suppressed (rate limit)", false, 120_345),
        ] {
            let mut out = Vec::new();
            encode(&original, &mut out);
            let text = std::str::from_utf8(&out).expect("utf-8");
            assert_eq!(text.matches('\n').count(), 1, "{text:?}");
            let line = text.strip_suffix('\n').expect("newline");
            assert_eq!(decode(line, &child), Some(original), "{line:?}");
        }
    }

    #[test]
    fn the_prefix_is_plain_and_greppable() {
        let mut out = Vec::new();
        encode(&record(7, "hello", false, 0), &mut out);
        assert_eq!(out, b"2026-12-03T04:05:06.123456Z 7 g3 stdout hello\n");
        let mut out = Vec::new();
        encode(&record(8, "part", true, 0), &mut out);
        assert_eq!(out, b"2026-12-03T04:05:06.123456Z 8 g3 stderr+ part\n");
    }

    #[test]
    fn torn_or_foreign_lines_are_not_records() {
        let child = ChildId::new("web").expect("id");
        for line in [
            "",
            "2026-12-03T04:05:06.123456Z 7 g3",
            "2026-12-03T04:05:06.12",
            "yesterday 7 g3 stdout x",
            "2026-12-03T04:05:06.123456Z x g3 stdout x",
            "2026-12-03T04:05:06.123456Z 7 3 stdout x",
            "2026-12-03T04:05:06.123456Z 7 g3 stdin x",
            "2026-12-03T04:05:06.123456Z 0 g3 stdout x",
            "2026-12-03T04:05:06.123456Z 7 g3 stdout! many lines",
        ] {
            assert_eq!(decode(line, &child), None, "{line:?}");
        }
    }
}
