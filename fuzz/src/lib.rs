//! The bodies of the fuzz targets in `fuzz_targets/`, kept here so the same
//! code also runs as plain tests on pseudo-random inputs (`cargo test` in
//! this directory, no libFuzzer or nightly flags needed).
//!
//! Each body panics on a broken invariant, which is what libFuzzer reports
//! as a crash; a panic in the code under test is reported the same way.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use h2_authority::{AuthorityRewrite, Deadlines};
use supervisor_gateway::transport::legacy::{FrameError, LineCodec, Request};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::codec::Decoder;

/// `Request::parse` on one line of arbitrary text: never panics, and a
/// request it accepts has params that serialize back to JSON.
pub fn legacy_request(text: &str) {
    match Request::parse(text) {
        Ok(parsed) => {
            if let Ok(params) = parsed.params {
                serde_json::to_string(&params).expect("parsed params serialize");
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// `LineCodec` as a connection reader drives it.
///
/// Input: byte 0 is the frame bound (`max`, 0..=255), byte 1 seeds the read
/// sizes (1..=`byte 1 + 1`), the rest is the stream. Checks that every frame
/// is the next line of the stream, at most `max` bytes, and that the error
/// that stops the reader is the right one for what follows.
pub fn legacy_codec(data: &[u8]) {
    let (max, seed, stream) = match data {
        [max, seed, rest @ ..] => (usize::from(*max), *seed, rest),
        _ => return,
    };
    let chunks = chunks(stream, usize::from(seed) + 1, u64::from(seed));
    let mut codec = LineCodec::new(max);
    let (mut buf, mut frames, mut error) = (BytesMut::new(), Vec::new(), None);
    'read: for chunk in &chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break 'read;
                }
            }
        }
    }
    if error.is_none() {
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
    }
    let mut rest = stream;
    for frame in &frames {
        assert!(frame.len() <= max, "frame over the bound");
        assert!(
            rest.starts_with(frame.as_bytes()),
            "frame is not the next line"
        );
        assert_eq!(
            rest.get(frame.len()),
            Some(&b'\n'),
            "frame without its newline"
        );
        rest = &rest[frame.len() + 1..];
    }
    let line_end = rest.iter().position(|&b| b == b'\n');
    match error {
        None => assert!(rest.is_empty(), "bytes left without an error"),
        Some(FrameError::Truncated { pending }) => {
            assert_eq!(pending, rest.len());
            assert!(line_end.is_none() && rest.len() <= max);
        }
        Some(FrameError::InvalidUtf8 { valid_up_to }) => {
            let end = line_end.expect("invalid UTF-8 only in a complete line");
            assert!(end <= max && valid_up_to < end);
            assert!(std::str::from_utf8(&rest[..end]).is_err());
        }
        Some(FrameError::TooLarge { max: m }) => {
            assert_eq!(m, max);
            assert!(
                line_end.unwrap_or(rest.len()) > max,
                "refused a line within the bound"
            );
        }
        Some(FrameError::Io(e)) => panic!("no I/O here: {e}"),
    }
}

/// What an in-memory connection does on one read.
enum Step {
    Data(Vec<u8>),
    /// Not ready yet; ready on the next poll.
    Pending,
}

/// An in-memory connection: scripted reads, then EOF.
struct Script(VecDeque<Step>);

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.pop_front() {
            Some(Step::Pending) => Poll::Pending,
            Some(Step::Data(mut chunk)) => {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(Step::Data(chunk.split_off(n)));
                }
                Poll::Ready(Ok(()))
            }
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The client preface and an empty SETTINGS frame: gets random bytes past
/// the handshake to the frame and HPACK parsers.
const HANDSHAKE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// A runtime for the deadline timers (entered, never blocked on).
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
});

/// `AuthorityRewrite` over an in-memory connection, read by a sync driver
/// with a no-op waker.
///
/// Input: byte 0 flags (bit 0: zero deadlines, bit 1: reads that are not
/// ready yet, bit 2: prepend a valid preface + SETTINGS), bytes 1-2 the
/// reader's buffer size, byte 3 seeds the read sizes, the rest is what the
/// client sends. Checks: no panic; the only errors are the documented ones
/// and every read after an error fails; a connection that needed no repair
/// comes out byte for byte as it went in.
pub fn h2_authority(data: &[u8]) {
    let (flags, read_size, seed, body) = match data {
        [flags, a, b, seed, rest @ ..] => (
            *flags,
            usize::from(u16::from_le_bytes([*a, *b])).max(1),
            *seed,
            rest,
        ),
        _ => return,
    };
    let mut input = Vec::with_capacity(HANDSHAKE.len() + body.len());
    if flags & 4 != 0 {
        input.extend_from_slice(HANDSHAKE);
    }
    input.extend_from_slice(body);
    let mut rng = u64::from(seed) | 1 << 32;
    let mut script = VecDeque::new();
    for chunk in chunks(&input, usize::from(seed).max(1) * 64, u64::from(seed)) {
        if flags & 2 != 0 && next(&mut rng).is_multiple_of(4) {
            script.push_back(Step::Pending);
        }
        script.push_back(Step::Data(chunk));
    }
    let deadlines = if flags & 1 != 0 {
        Deadlines {
            handshake: Duration::ZERO,
            header_block: Duration::ZERO,
        }
    } else {
        Deadlines::default()
    };

    let _runtime = RUNTIME.enter();
    let steps = script.len();
    let mut rw = AuthorityRewrite::with_deadlines(Script(script), deadlines);
    let mut cx = Context::from_waker(Waker::noop());
    let (mut out, mut buf) = (Vec::new(), vec![0; read_size]);
    // Every poll either consumes a step, returns bytes, or ends; a few
    // more for the timer's first poll.
    let mut polls_left = 4 * (steps + input.len()) + 16;
    let result = loop {
        assert!(polls_left > 0, "the reader does not make progress");
        polls_left -= 1;
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut rw).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if rb.filled().is_empty() => break Ok(()),
            Poll::Ready(Ok(())) => out.extend_from_slice(rb.filled()),
            Poll::Ready(Err(e)) => break Err(e),
            Poll::Pending => {}
        }
    };
    match result {
        Ok(()) if !rw.is_rewriting() => assert!(out == input, "untouched connection changed"),
        Ok(()) => {}
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::UnexpectedEof
                ),
                "undocumented error {e:?}"
            );
            if !rw.is_rewriting() {
                assert!(input.starts_with(&out), "untouched connection changed");
            }
            let mut rb = ReadBuf::new(&mut buf);
            let again = Pin::new(&mut rw).poll_read(&mut cx, &mut rb);
            assert!(
                matches!(again, Poll::Ready(Err(_))),
                "a read after an error did not fail"
            );
        }
    }
}

/// Splits `data` into reads of 1..=`max` bytes chosen by `seed`.
fn chunks(data: &[u8], max: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = seed | 1 << 40;
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let n = 1 + (next(&mut rng) as usize) % max.min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        out.push(chunk.to_vec());
        rest = tail;
    }
    out
}

/// xorshift64*: deterministic and dependency-free.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod tests {
    //! The fuzz bodies on pseudo-random inputs: a smoke run where cargo-fuzz
    //! is not available. `SGW_FUZZ_CASES` sets the inputs per target.

    use super::*;

    fn cases() -> usize {
        std::env::var("SGW_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000)
    }

    /// Random bytes, biased towards the given alphabet so that inputs hit
    /// the interesting paths rather than failing at the first byte.
    fn input(rng: &mut u64, alphabet: &[u8], len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                let r = next(rng);
                if r.is_multiple_of(4) {
                    (r >> 8) as u8
                } else {
                    alphabet[(r >> 8) as usize % alphabet.len()]
                }
            })
            .collect()
    }

    #[test]
    fn legacy_request_on_random_lines() {
        let mut rng = 0x5eed_0001;
        let valid = r#"{"request_id":"r-1","method":"command.pause_child","params":{"command_id":"c","requested_at_unix_nanos":1e400,"target":{"child_path":"/a"}}}"#;
        for i in 0..cases() {
            let mut bytes = if i % 2 == 0 {
                valid.as_bytes().to_vec()
            } else {
                let len = (next(&mut rng) % 200) as usize;
                input(&mut rng, br#"{}[]":,0123456789e.-tfnul\ "#, len)
            };
            // A few random edits of the valid line.
            for _ in 0..next(&mut rng) % 4 {
                let at = next(&mut rng) as usize % bytes.len().max(1);
                if let Some(b) = bytes.get_mut(at) {
                    *b = input(&mut rng, br#"{}[]":,09e"#, 1)[0];
                }
            }
            legacy_request(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn legacy_codec_on_random_streams() {
        let mut rng = 0x5eed_0002;
        for _ in 0..cases() {
            let len = (next(&mut rng) % 300) as usize;
            let mut data = vec![(next(&mut rng) % 64) as u8, next(&mut rng) as u8];
            data.extend(input(&mut rng, b"ab\n\n\xff\xc3\xa9", len));
            legacy_codec(&data);
        }
    }

    #[test]
    fn h2_authority_on_random_connections() {
        let mut rng = 0x5eed_0003;
        for _ in 0..cases() {
            let len = (next(&mut rng) % 400) as usize;
            let mut data = vec![next(&mut rng) as u8 | 4];
            data.extend((next(&mut rng) as u16 % 512 + 1).to_le_bytes());
            data.push(next(&mut rng) as u8);
            // Frame headers: lengths, HEADERS/CONTINUATION/SETTINGS types,
            // END_HEADERS flags, stream 1; then HPACK-ish bytes.
            data.extend(input(
                &mut rng,
                b"\0\0\x01\x04\x09\x05\x41\x01\x82\x84\x86/",
                len,
            ));
            h2_authority(&data);
        }
    }
}
