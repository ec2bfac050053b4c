//! Newline-delimited frames with a size bound. Used under a `FramedRead`,
//! so the socket is read in buffered chunks and every pipelined frame in a
//! chunk is decoded without another syscall.

use std::io;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// Why no frame could be decoded. Each variant is a different answer on
/// the wire, so they are kept apart rather than folded into `io::Error`.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame exceeds the maximum of {max} bytes")]
    TooLarge { max: usize },
    #[error("frame is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("connection closed in the middle of a frame ({pending} bytes without a newline)")]
    Truncated { pending: usize },
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// One frame per `\n`; the frame is the text before it. A frame longer than
/// `max` is refused as soon as `max + 1` bytes arrived without a newline,
/// so a client can never make the buffer grow beyond the bound.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max: usize,
    /// How far the current buffer has already been searched for `\n`, so a
    /// frame arriving in many small reads is scanned once, not quadratically.
    scanned: usize,
}

impl LineCodec {
    pub fn new(max: usize) -> Self {
        Self { max, scanned: 0 }
    }
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, FrameError> {
        // A newline at index `max` still ends a frame of exactly `max` bytes.
        let window = buf.len().min(self.max.saturating_add(1));
        let start = self.scanned.min(window);
        match buf[start..window].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                let end = start + offset;
                let line = buf.split_to(end + 1);
                self.scanned = 0;
                match std::str::from_utf8(&line[..end]) {
                    Ok(text) => Ok(Some(text.to_owned())),
                    Err(error) => Err(FrameError::InvalidUtf8 {
                        valid_up_to: error.valid_up_to(),
                    }),
                }
            }
            None if buf.len() > self.max => Err(FrameError::TooLarge { max: self.max }),
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }

    /// A partial frame at end of stream is an error, never a request: the
    /// client may have died half-way through writing it.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<String>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            None => Err(FrameError::Truncated { pending: buf.len() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, buf: &mut BytesMut) -> Vec<String> {
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(buf).expect("valid frames") {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn splits_pipelined_frames_and_keeps_the_partial_one() {
        let mut codec = LineCodec::new(16);
        let mut buf = BytesMut::from(&b"one\ntwo\nthr"[..]);
        assert_eq!(decode_all(&mut codec, &mut buf), ["one", "two"]);
        buf.extend_from_slice(b"ee\n\n");
        assert_eq!(decode_all(&mut codec, &mut buf), ["three", ""]);
        assert!(buf.is_empty());
    }

    #[test]
    fn the_bound_is_inclusive_and_checked_before_the_newline_arrives() {
        let mut codec = LineCodec::new(4);
        let mut exact = BytesMut::from(&b"abcd\n"[..]);
        assert_eq!(decode_all(&mut codec, &mut exact), ["abcd"]);
        let mut over = BytesMut::from(&b"abcde"[..]);
        assert!(matches!(
            codec.decode(&mut over),
            Err(FrameError::TooLarge { max: 4 })
        ));
    }

    #[test]
    fn invalid_utf8_and_truncation_are_distinct_errors() {
        let mut codec = LineCodec::new(64);
        let mut bad = BytesMut::from(&b"ok\xff\n"[..]);
        assert!(matches!(
            codec.decode(&mut bad),
            Err(FrameError::InvalidUtf8 { valid_up_to: 2 })
        ));
        let mut partial = BytesMut::from(&b"{\"method\":"[..]);
        assert!(matches!(
            codec.decode_eof(&mut partial),
            Err(FrameError::Truncated { pending: 10 })
        ));
        assert!(matches!(codec.decode_eof(&mut BytesMut::new()), Ok(None)));
    }
}
