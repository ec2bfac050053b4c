//! Splitting a pipe's bytes into lines, and long lines into chunks.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// Longest line kept whole; longer lines are split into chunks of at most
/// this size, each but the last flagged `truncated`.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// A piece of output: one line without its newline, or one chunk of a line
/// longer than the limit (`continues` = more of the same line follows).
#[derive(Debug, PartialEq, Eq)]
pub struct Chunk {
    pub bytes: Bytes,
    pub continues: bool,
}

/// Splits output at `\n` and at `max` bytes, never inside a UTF-8
/// character when one straddles the limit.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    /// How far the buffer has been searched for a newline already.
    scanned: usize,
}

impl LineSplitter {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(4),
            scanned: 0,
        }
    }

    /// Forgets how far the buffer was searched (its bytes were dropped).
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

impl Decoder for LineSplitter {
    type Item = Chunk;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Chunk>> {
        let window = buf.len().min(self.max + 1);
        if let Some(offset) = buf[self.scanned.min(window)..window]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = self.scanned.min(window) + offset;
            self.scanned = 0;
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            return Ok(Some(Chunk {
                bytes: line.freeze(),
                continues: false,
            }));
        }
        if buf.len() > self.max {
            self.scanned = 0;
            let cut = char_boundary(buf, self.max);
            return Ok(Some(Chunk {
                bytes: buf.split_to(cut).freeze(),
                continues: true,
            }));
        }
        self.scanned = buf.len();
        Ok(None)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Chunk>> {
        if let Some(chunk) = self.decode(buf)? {
            return Ok(Some(chunk));
        }
        self.scanned = 0;
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(Chunk {
            bytes: buf.split().freeze(),
            continues: false,
        }))
    }
}

/// The largest cut `<= max` that does not split a UTF-8 sequence, given
/// that `bytes.len() > max`. Falls back to `max` for bytes that are not
/// UTF-8 anyway.
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let mut cut = max;
    while cut > max.saturating_sub(3) && cut > 0 && bytes[cut] & 0xC0 == 0x80 {
        cut -= 1;
    }
    if cut == 0 || bytes[cut] & 0xC0 == 0x80 {
        max
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut codec = LineSplitter::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: the worst case for the incremental scan.
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(chunk) = codec.decode(&mut buf).expect("decode") {
                out.push((chunk.bytes.to_vec(), chunk.continues));
            }
        }
        while let Some(chunk) = codec.decode_eof(&mut buf).expect("eof") {
            out.push((chunk.bytes.to_vec(), chunk.continues));
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_unterminated_tail() {
        let out = split_all(b"a\n\nbc\nlast", 16);
        let lines: Vec<_> = out.iter().map(|(b, _)| b.as_slice()).collect();
        assert_eq!(lines, [&b"a"[..], b"", b"bc", b"last"]);
        assert!(out.iter().all(|(_, c)| !c));
    }

    #[test]
    fn long_lines_are_chunked_and_flagged() {
        let out = split_all(b"0123456789\nxy\n", 4);
        assert_eq!(
            out,
            vec![
                (b"0123".to_vec(), true),
                (b"4567".to_vec(), true),
                (b"89".to_vec(), false),
                (b"xy".to_vec(), false)
            ]
        );
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_whole() {
        assert_eq!(split_all(b"abcd\n", 4), vec![(b"abcd".to_vec(), false)]);
    }

    #[test]
    fn chunks_do_not_split_utf8_characters() {
        // "aé€" = 61 c3a9 e282ac; cutting at 4 would split the euro sign.
        let text = "aé€€".as_bytes();
        let out = split_all(text, 4);
        for (bytes, _) in &out {
            assert!(std::str::from_utf8(bytes).is_ok(), "{bytes:?}");
        }
        let joined: Vec<u8> = out.into_iter().flat_map(|(b, _)| b).collect();
        assert_eq!(joined, text);
    }
}
