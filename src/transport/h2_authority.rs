//! Lets HTTP/2 clients that put the Unix socket path in `:authority` reach the server.
//!
//! grpcio (`unix:` targets send the percent-encoded path), grpcurl before 1.9 (the raw
//! path) and grpc-java (the raw path) all do this. h2 validates `:authority` as a URI
//! authority and answers `RST_STREAM(PROTOCOL_ERROR)` before tonic sees the request, and
//! neither h2 nor tonic has a switch for it. [`AuthorityRewrite`] therefore repairs the
//! client's header blocks on the wire, in front of h2.
//!
//! Cost model: only the first request header block of a connection is inspected. If it is
//! acceptable to h2, the connection is forwarded untouched from then on. Only connections
//! whose first block carries an invalid authority pay for decoding every header block.
//!
//! Limits, chosen so that we never refuse what h2 (as configured by hyper/tonic defaults)
//! would accept, while never buffering or expanding more than h2 would tolerate:
//! - HPACK dynamic table: 4096 bytes, h2's `SETTINGS_HEADER_TABLE_SIZE` (h2 never
//!   advertises another value, so a bigger size update is a client error anyway).
//! - Decoded header list: 64 KiB (RFC 7541 size, `name + value + 32` per field). That is
//!   hyper's default `SETTINGS_MAX_HEADER_LIST_SIZE` (16 KiB) times h2's abuse multiplier
//!   (4), the point where h2 itself drops the connection; smaller oversize lists are left
//!   for h2 to refuse with its usual stream-level error.
//! - CONTINUATION frames without END_HEADERS: 5 per block, h2's flood limit for hyper's
//!   16 KiB header list and frame size.
//! - Encoded block: 7 * 16 KiB (HEADERS + 5 + final CONTINUATION at hyper's frame size),
//!   checked against each frame's declared length before any of it is buffered.
//!
//! Because every re-encoded field costs at most 9 bytes of framing against the 32 bytes it
//! counts for in the list size, a rewritten block never exceeds 64 KiB, i.e. at most four
//! 16 KiB frames, well inside h2's own limits.
//!
//! Known cost: loona-hpack rebuilds its Huffman table for every Huffman-coded string
//! (about 20 µs each in release builds), so a hostile local client can make the decoder
//! burn CPU out of proportion to the bytes it sends. The socket is local and
//! permission-checked, so this is accepted rather than worked around with a second HPACK
//! parser.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

const HEADER_TABLE_SIZE: usize = 4096;
/// Every HTTP/2 peer must accept frames this large, whatever it advertised.
const OUT_FRAME_MAX: usize = 16_384;
const MAX_HEADER_LIST_SIZE: usize = 4 * 16 * 1024;
const MAX_CONTINUATIONS: usize = 5;
const MAX_BLOCK_BYTES: usize = (MAX_CONTINUATIONS + 2) * OUT_FRAME_MAX;
const READ_CHUNK: usize = 8 * 1024;
const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

/// Static-table names worth indexing on output; anything else goes out as a literal name.
const STATIC_NAMES: &[(&[u8], usize)] = &[
    (b":authority", 1),
    (b":method", 2),
    (b":path", 4),
    (b":scheme", 6),
    (b"accept-encoding", 16),
    (b"content-type", 31),
    (b"user-agent", 58),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching the client preface; anything else is not ours to touch.
    Preface,
    /// Forwarding frames until the first header block tells us which client this is.
    Deciding,
    Rewrite,
    Passthrough,
    /// An error was returned; h2 must not see any further bytes of this connection.
    Failed,
}

/// A header block being assembled from HEADERS + CONTINUATION frames.
struct Block {
    stream_id: u32,
    /// END_STREAM and PRIORITY of the HEADERS frame, the only flags we re-emit.
    flags: u8,
    priority: [u8; 5],
    fragment: BytesMut,
    /// The original frames, kept while deciding so a good block can go out untouched.
    raw: BytesMut,
    wire_len: usize,
    continuations: usize,
}

/// Connection wrapper that replaces an invalid HTTP/2 `:authority` by `localhost` before
/// h2 reads it; see the module docs for when it rewrites and what it refuses.
pub struct AuthorityRewrite<T> {
    io: T,
    mode: Mode,
    /// Bytes read from `io` that have not been parsed yet.
    inbuf: BytesMut,
    /// Bytes ready to be handed to the reader (h2).
    out: BytesMut,
    /// Payload bytes of a non-header frame still to be forwarded as they arrive, so DATA
    /// frames are never buffered whole.
    forward: usize,
    block: Option<Block>,
    decoder: Decoder<'static>,
    eof: bool,
}

impl<T> AuthorityRewrite<T> {
    pub fn new(io: T) -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            io,
            mode: Mode::Preface,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            forward: 0,
            block: None,
            decoder,
            eof: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Whether this connection's client sends an authority h2 would reject (useful for
    /// logging which clients need the workaround).
    pub fn is_rewriting(&self) -> bool {
        self.mode == Mode::Rewrite
    }

    /// Parses as much of `inbuf` as possible, moving the result to `out`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Preface => {
                    let n = self.inbuf.len().min(PREFACE.len());
                    if self.inbuf[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                        return Ok(());
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    self.out.unsplit(self.inbuf.split_to(n));
                    self.mode = Mode::Deciding;
                }
                Mode::Deciding | Mode::Rewrite => {
                    if !self.step()? {
                        return Ok(());
                    }
                }
                Mode::Passthrough | Mode::Failed => return Ok(()),
            }
        }
    }

    /// Handles one frame or payload slice; `false` means more input is needed.
    fn step(&mut self) -> io::Result<bool> {
        if self.forward > 0 {
            if self.inbuf.is_empty() {
                return Ok(false);
            }
            let n = self.forward.min(self.inbuf.len());
            self.out.unsplit(self.inbuf.split_to(n));
            self.forward -= n;
            return Ok(true);
        }
        let Some(head) = self.inbuf.get(..FRAME_HEADER_LEN) else {
            return Ok(false);
        };
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if let Some(block) = &self.block {
            // RFC 9113 6.10: nothing may interleave with an open header block.
            if kind != CONTINUATION || stream_id != block.stream_id {
                return Err(invalid(format_args!(
                    "frame type {kind:#x} on stream {stream_id} inside the header block of stream {}",
                    block.stream_id
                )));
            }
        }
        match kind {
            HEADERS | CONTINUATION => {
                let buffered = self.block.as_ref().map_or(0, |b| b.wire_len);
                if buffered + len > MAX_BLOCK_BYTES {
                    return Err(invalid(format_args!(
                        "header block larger than {MAX_BLOCK_BYTES} bytes"
                    )));
                }
                if self.inbuf.len() < FRAME_HEADER_LEN + len {
                    return Ok(false);
                }
                let frame = self.inbuf.split_to(FRAME_HEADER_LEN + len);
                if kind == HEADERS {
                    self.start_block(frame, flags, stream_id)?;
                } else {
                    self.continue_block(frame, flags)?;
                }
            }
            // Its header block would advance the HPACK state; h2 refuses it from clients.
            PUSH_PROMISE => return Err(invalid("PUSH_PROMISE from a client")),
            _ => {
                self.out.unsplit(self.inbuf.split_to(FRAME_HEADER_LEN));
                self.forward = len;
            }
        }
        Ok(true)
    }

    fn start_block(&mut self, frame: BytesMut, flags: u8, stream_id: u32) -> io::Result<()> {
        if stream_id == 0 {
            return Err(invalid("HEADERS frame on stream 0"));
        }
        let mut payload = &frame[FRAME_HEADER_LEN..];
        let mut pad = 0;
        if flags & PADDED != 0 {
            let (&len, rest) = payload
                .split_first()
                .ok_or_else(|| invalid("PADDED HEADERS frame without pad length"))?;
            pad = usize::from(len);
            payload = rest;
        }
        let mut priority = [0; 5];
        if flags & PRIORITY != 0 {
            let (prio, rest) = payload
                .split_at_checked(5)
                .ok_or_else(|| invalid("HEADERS frame too short for its PRIORITY fields"))?;
            priority.copy_from_slice(prio);
            payload = rest;
        }
        let fragment = payload
            .len()
            .checked_sub(pad)
            .and_then(|end| payload.get(..end))
            .ok_or_else(|| invalid("HEADERS padding longer than the frame"))?;
        let mut block = Block {
            stream_id,
            flags: flags & (END_STREAM | PRIORITY),
            priority,
            fragment: BytesMut::from(fragment),
            raw: BytesMut::new(),
            wire_len: frame.len() - FRAME_HEADER_LEN,
            continuations: 0,
        };
        if self.mode == Mode::Deciding {
            block.raw = frame;
        }
        if flags & END_HEADERS != 0 {
            self.finish_block(block)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    fn continue_block(&mut self, frame: BytesMut, flags: u8) -> io::Result<()> {
        let mut block = self
            .block
            .take()
            .ok_or_else(|| invalid("CONTINUATION without an open header block"))?;
        if flags & END_HEADERS == 0 {
            block.continuations += 1;
            if block.continuations > MAX_CONTINUATIONS {
                return Err(invalid(format_args!(
                    "more than {MAX_CONTINUATIONS} CONTINUATION frames in one header block"
                )));
            }
        }
        block.wire_len += frame.len() - FRAME_HEADER_LEN;
        block.fragment.extend_from_slice(&frame[FRAME_HEADER_LEN..]);
        if self.mode == Mode::Deciding {
            block.raw.unsplit(frame);
        }
        if flags & END_HEADERS != 0 {
            self.finish_block(block)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    fn finish_block(&mut self, block: Block) -> io::Result<()> {
        let mut encoded = BytesMut::with_capacity(block.fragment.len() + 64);
        let mut list_size = 0usize;
        let mut replaced = false;
        // The callback cannot abort decoding, so past the limit it only counts: the work
        // left is bounded by the (capped) encoded size, not by the expansion.
        let decoded = self.decoder.decode_with_cb(&block.fragment, |name, value| {
            list_size = list_size.saturating_add(name.len() + value.len() + 32);
            if list_size > MAX_HEADER_LIST_SIZE {
                return;
            }
            let mut value: &[u8] = &value;
            if *name == *b":authority" && http::uri::Authority::try_from(value).is_err() {
                replaced = true;
                value = REPLACEMENT_AUTHORITY;
            }
            encode_literal(&mut encoded, &name, value);
        });
        decoded.map_err(|e| invalid(format_args!("malformed HPACK header block: {e}")))?;
        if list_size > MAX_HEADER_LIST_SIZE {
            return Err(invalid(format_args!(
                "decoded header list larger than {MAX_HEADER_LIST_SIZE} bytes"
            )));
        }
        if self.mode == Mode::Deciding && !replaced {
            self.out.unsplit(block.raw);
            self.mode = Mode::Passthrough;
            // The table will never be consulted again; free it.
            self.decoder = Decoder::new();
            return Ok(());
        }
        self.mode = Mode::Rewrite;
        self.emit(&block, &encoded);
        Ok(())
    }

    /// Writes a header block as HEADERS + CONTINUATION frames no larger than any peer
    /// must accept.
    fn emit(&mut self, block: &Block, mut rest: &[u8]) {
        self.out
            .reserve(rest.len() + (rest.len() / OUT_FRAME_MAX + 1) * FRAME_HEADER_LEN + 5);
        let mut first = true;
        loop {
            let prio_len = if first && block.flags & PRIORITY != 0 {
                5
            } else {
                0
            };
            let (chunk, tail) = rest.split_at(rest.len().min(OUT_FRAME_MAX - prio_len));
            let mut flags = if tail.is_empty() { END_HEADERS } else { 0 };
            let kind = if first {
                flags |= block.flags;
                HEADERS
            } else {
                CONTINUATION
            };
            let len = (prio_len + chunk.len()) as u32;
            self.out.put_slice(&len.to_be_bytes()[1..]);
            self.out.put_slice(&[kind, flags]);
            self.out.put_u32(block.stream_id);
            if prio_len > 0 {
                self.out.put_slice(&block.priority);
            }
            self.out.put_slice(chunk);
            rest = tail;
            first = false;
            if rest.is_empty() {
                return;
            }
        }
    }

    fn fail(&mut self) {
        self.mode = Mode::Failed;
        self.inbuf = BytesMut::new();
        self.out = BytesMut::new();
        self.block = None;
    }
}

impl<T: AsyncRead + Unpin> AuthorityRewrite<T> {
    /// Reads straight into `inbuf`'s tail; zeroing it first keeps this free of `unsafe`.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let start = self.inbuf.len();
        self.inbuf.resize(start + READ_CHUNK, 0);
        let mut dst = ReadBuf::new(&mut self.inbuf[start..]);
        let res = Pin::new(&mut self.io).poll_read(cx, &mut dst);
        let n = dst.filled().len();
        self.inbuf.truncate(start + n);
        if matches!(res, Poll::Ready(Ok(()))) && n == 0 {
            self.eof = true;
        }
        res
    }
}

/// HPACK "literal header field without indexing" (RFC 7541 6.2.2), so h2's dynamic table
/// never depends on entries the client's encoder created.
fn encode_literal(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    match STATIC_NAMES.iter().find(|(n, _)| *n == name) {
        Some(&(_, index)) => put_int(dst, 4, index),
        None => {
            dst.put_u8(0);
            put_int(dst, 7, name.len());
            dst.put_slice(name);
        }
    }
    put_int(dst, 7, value.len());
    dst.put_slice(value);
}

/// HPACK integer (RFC 7541 5.1) with all flag bits clear: both literal-without-indexing
/// and non-Huffman string lengths have zero bits above the prefix.
fn put_int(dst: &mut BytesMut, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        dst.put_u8(value as u8);
        return;
    }
    dst.put_u8(max as u8);
    value -= max;
    while value >= 0x80 {
        dst.put_u8((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

fn invalid(msg: impl fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 :authority rewrite: {msg}"),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for AuthorityRewrite<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = this.out.len().min(buf.remaining());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                if this.out.is_empty() {
                    // Drop our share of the read buffer so `inbuf` can reuse it.
                    this.out = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            match this.mode {
                Mode::Failed => return Poll::Ready(Err(invalid("connection already rejected"))),
                Mode::Passthrough if this.inbuf.is_empty() => {
                    return Pin::new(&mut this.io).poll_read(cx, buf);
                }
                Mode::Passthrough => {
                    std::mem::swap(&mut this.out, &mut this.inbuf);
                    continue;
                }
                _ => {}
            }
            if let Err(e) = this.process() {
                this.fail();
                return Poll::Ready(Err(e));
            }
            if !this.out.is_empty() || this.mode == Mode::Passthrough {
                continue;
            }
            if this.eof {
                if this.mode == Mode::Preface && !this.inbuf.is_empty() {
                    // A short non-preface: not ours, let h2 judge it.
                    this.mode = Mode::Passthrough;
                    continue;
                }
                if !this.inbuf.is_empty() || this.block.is_some() || this.forward > 0 {
                    this.fail();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "HTTP/2 :authority rewrite: connection closed inside a frame",
                    )));
                }
                return Poll::Ready(Ok(()));
            }
            ready!(this.fill(cx))?;
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for AuthorityRewrite<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<T: fmt::Debug> fmt::Debug for AuthorityRewrite<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityRewrite")
            .field("io", &self.io)
            .field("mode", &self.mode)
            .field("buffered_in", &self.inbuf.len())
            .field("buffered_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::Encoder;
    use std::{collections::VecDeque, task::Waker, time::Duration};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;
    /// kind, flags, stream, payload
    type Frame = (u8, u8, u32, Vec<u8>);

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        [&len[1..], &[kind, flags], &stream.to_be_bytes(), payload].concat()
    }

    fn conn(frames: &[Vec<u8>]) -> Vec<u8> {
        let settings = frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]);
        [PREFACE.to_vec(), settings, frames.concat()].concat()
    }

    fn request(authority: Option<&str>) -> Headers {
        let pseudo = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/sgw.v1.S/List"),
        ];
        let regular = [("content-type", "application/grpc"), ("te", "trailers")];
        let pseudo = pseudo
            .into_iter()
            .chain(authority.map(|a| (":authority", a)));
        pseudo
            .chain(regular)
            .map(|(n, v)| (n.into(), v.into()))
            .collect()
    }

    fn encode(enc: &mut Encoder<'_>, h: &Headers) -> Vec<u8> {
        enc.encode(h.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    fn with_authority(mut h: Headers, authority: &str) -> Headers {
        let auth = h.iter_mut().filter(|(n, _)| n == b":authority");
        auth.for_each(|(_, v)| *v = authority.into());
        h
    }

    /// Two requests, the second encoded purely as references into the dynamic table.
    fn two_requests(authority: Option<&str>) -> Vec<u8> {
        let (mut enc, h) = (Encoder::new(), request(authority));
        conn(&[
            frame(HEADERS, END_HEADERS, 1, &encode(&mut enc, &h)),
            frame(0x0, END_STREAM, 1, b"\0\0\0\0\x02\x08\x01"),
            frame(0x8, 0, 0, &[0, 0, 0x10, 0]),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &encode(&mut enc, &h)),
        ])
    }

    /// Splits a client byte stream into frames; `None` if it ends inside one.
    fn parse(bytes: &[u8]) -> Option<Vec<Frame>> {
        let mut rest = bytes.strip_prefix(PREFACE)?;
        let mut frames = Vec::new();
        while let [a, b, c, kind, flags, s0, s1, s2, s3, tail @ ..] = rest {
            let len = usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c);
            let stream = u32::from_be_bytes([*s0, *s1, *s2, *s3]);
            frames.push((*kind, *flags, stream, tail.get(..len)?.to_vec()));
            rest = &tail[len..];
        }
        rest.is_empty().then_some(frames)
    }

    fn non_header(frames: &[Frame]) -> Vec<&Frame> {
        let keep = |f: &&Frame| f.0 != HEADERS && f.0 != CONTINUATION;
        frames.iter().filter(keep).collect()
    }

    /// Decodes each block with a fresh decoder, proving the output never relies on the
    /// dynamic table, and checks the framing promised to h2.
    fn blocks(frames: &[Frame]) -> Vec<(u32, u8, Headers)> {
        let (mut out, mut open) = (Vec::new(), None::<(u32, u8, Vec<u8>)>);
        for (kind, flags, stream, payload) in frames
            .iter()
            .filter(|f| f.0 == HEADERS || f.0 == CONTINUATION)
        {
            assert!(payload.len() <= OUT_FRAME_MAX && flags & PADDED == 0);
            let first = open.is_none();
            assert_eq!(*kind, if first { HEADERS } else { CONTINUATION });
            let (id, head_flags, mut buf) = open.take().unwrap_or((*stream, *flags, Vec::new()));
            assert_eq!(*stream, id);
            let skip = if first && flags & PRIORITY != 0 { 5 } else { 0 };
            buf.extend_from_slice(&payload[skip..]);
            if flags & END_HEADERS == 0 {
                open = Some((id, head_flags, buf));
                continue;
            }
            assert_ne!(
                buf.first().map(|b| b & 0xe0),
                Some(0x20),
                "size update forwarded"
            );
            out.push((
                id,
                head_flags,
                Decoder::new().decode(&buf).expect("decodes"),
            ));
        }
        assert!(open.is_none(), "unterminated block");
        out
    }

    /// Hands out one scripted chunk per read, so split points are exact.
    struct Script(VecDeque<Vec<u8>>);

    impl AsyncRead for Script {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut chunk) = self.0.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if n < chunk.len() {
                    self.0.push_front(chunk.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    /// Reads everything through the wrapper in reads of `read_size` bytes.
    fn drive(chunks: Vec<Vec<u8>>, read_size: usize) -> (io::Result<Vec<u8>>, bool) {
        let chunks = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let mut rw = AuthorityRewrite::new(Script(chunks));
        let mut cx = Context::from_waker(Waker::noop());
        let (mut out, mut buf) = (Vec::new(), vec![0; read_size]);
        loop {
            let mut rb = ReadBuf::new(&mut buf);
            let res = match Pin::new(&mut rw).poll_read(&mut cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    out.extend_from_slice(rb.filled());
                    continue;
                }
                Poll::Ready(res) => res.map(|()| out),
                Poll::Pending => panic!("scripted input never blocks"),
            };
            return (res, rw.is_rewriting());
        }
    }

    fn run(input: &[u8]) -> io::Result<Vec<u8>> {
        drive(vec![input.to_vec()], 64 * 1024).0
    }

    /// xorshift64*: deterministic, dependency-free randomness.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        fn bytes(&mut self, min: usize, spread: usize) -> Vec<u8> {
            let n = min + self.below(spread);
            (0..n).map(|_| self.next() as u8).collect()
        }
        fn chunks(&mut self, data: &[u8], max: usize) -> Vec<Vec<u8>> {
            let mut rest = data;
            let mut out = Vec::new();
            while !rest.is_empty() {
                let (a, b) = rest.split_at(1 + self.below(max.min(rest.len())));
                out.push(a.to_vec());
                rest = b;
            }
            out
        }
    }

    #[tokio::test]
    async fn rewrites_socket_path_authority_over_duplex() {
        let input = two_requests(Some("/tmp/sgw.sock"));
        let (mut client, server) = duplex(256);
        let (mut rw, mut out) = (AuthorityRewrite::new(server), Vec::new());
        let write = async {
            client.write_all(&input).await.expect("write");
            client.shutdown().await.expect("shutdown");
        };
        tokio::join!(write, rw.read_to_end(&mut out))
            .1
            .expect("read");
        assert!(rw.is_rewriting());
        let (frames, orig) = (parse(&out).expect("frames"), parse(&input).expect("frames"));
        assert_eq!(
            non_header(&frames),
            non_header(&orig),
            "other frames untouched"
        );
        let expected = with_authority(request(Some("/x")), "localhost");
        let want = [
            (1, END_HEADERS, expected.clone()),
            (3, END_HEADERS | END_STREAM, expected),
        ];
        assert_eq!(blocks(&frames), want);
    }

    #[test]
    fn huffman_strings_and_dynamic_table_references() {
        // RFC 7541 C.4 (Huffman) blocks after a first block that indexes a socket path.
        let first = [b"\x41\x0d/tmp/sgw.sock".as_slice(), &[0x83, 0x86, 0x84]].concat();
        let c41 = b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff";
        // Starts with a table size update to 4096, which must not be forwarded.
        let c42 = b"\x3f\xe1\x1f\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf";
        let back_ref = [0x83, 0x86, 0x84, 0xc0]; // index 64: the socket path, two blocks ago
        let input = conn(&[
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &first),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, c41),
            frame(HEADERS, END_HEADERS | END_STREAM, 5, c42),
            frame(HEADERS, END_HEADERS | END_STREAM, 7, &back_ref),
        ]);
        let got = blocks(&parse(&run(&input).expect("valid")).expect("frames"));
        let auth = |i: usize| {
            got[i]
                .2
                .iter()
                .find(|h| h.0 == b":authority")
                .map(|h| &h.1[..])
        };
        let auths: Vec<_> = (0..4).map(auth).collect();
        let (local, example) = (Some(&b"localhost"[..]), Some(&b"www.example.com"[..]));
        assert_eq!(auths, [local, example, example, local]);
        assert_eq!(got[0].2[0].0, b":authority", "order kept");
        assert!(
            got[2]
                .2
                .contains(&(b"cache-control".to_vec(), b"no-cache".to_vec()))
        );
    }

    #[test]
    fn big_block_is_split_into_continuations() {
        let mut h = request(Some("%2Ftmp%2Fsgw.sock"));
        h.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
        let block = encode(&mut Encoder::new(), &h);
        // Pad length 3, exclusive dependency on stream 0 with weight 42, 3 bytes of padding.
        let first = [&[3, 0x80, 0, 0, 0, 42], &block[..10_000], &[0; 3]].concat();
        let input = conn(&[
            frame(HEADERS, PADDED | PRIORITY, 1, &first),
            frame(CONTINUATION, 0, 1, &block[10_000..25_000]),
            frame(CONTINUATION, END_HEADERS, 1, &block[25_000..]),
        ]);
        let (out, rewriting) = drive(vec![input], 4096);
        let frames = parse(&out.expect("valid")).expect("frames");
        assert!(rewriting);
        assert_eq!(frames.len(), 4, "SETTINGS, HEADERS, 2 CONTINUATION");
        assert_eq!(
            (frames[1].1, &frames[1].3[..5]),
            (PRIORITY, &[0x80, 0, 0, 0, 42][..])
        );
        assert_eq!(frames.iter().filter(|f| f.1 & END_HEADERS != 0).count(), 1);
        let want = (1, PRIORITY, with_authority(h, "localhost"));
        assert!(blocks(&frames) == [want], "block content differs");
    }

    #[test]
    fn acceptable_connections_pass_through_untouched() {
        let mut big = request(Some("localhost"));
        big.push((b"x-big".to_vec(), vec![b'v'; 30_000]));
        let block = encode(&mut Encoder::new(), &big);
        let padded = [&[7], &block[..16_000], &[0; 7]].concat();
        let inputs = [
            two_requests(Some("localhost")),
            two_requests(Some("127.0.0.1:50051")),
            two_requests(None),
            conn(&[
                frame(HEADERS, PADDED, 1, &padded),
                frame(CONTINUATION, END_HEADERS, 1, &block[16_000..]),
                frame(HEADERS, END_HEADERS, 3, &[0xff, 0xff]), // no longer decoded
            ]),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            PREFACE[..10].to_vec(),
            conn(&[]),
        ];
        for input in inputs {
            let (out, rewriting) = drive(vec![input.clone()], 1000);
            assert!(out.expect("passthrough") == input && !rewriting);
        }
    }

    #[test]
    fn split_reads_give_identical_output() {
        let mut h = request(Some("/tmp/sgw.sock"));
        h.push((b"x-big".to_vec(), vec![b'q'; 20_000]));
        let mut input = two_requests(Some("/tmp/sgw.sock"));
        let block = encode(&mut Encoder::new(), &h);
        input.extend(frame(HEADERS, END_HEADERS, 5, &block));
        let mut rng = Rng(0x5eed);
        for input in [input, two_requests(Some("localhost"))] {
            let whole = run(&input).expect("valid");
            let bytewise = input.iter().map(|b| vec![*b]).collect();
            assert!(drive(bytewise, 1).0.expect("bytewise") == whole);
            for _ in 0..50 {
                let max = [2, 9, 100, 5000][rng.below(4)];
                let (chunks, read_size) = (rng.chunks(&input, max), 1 + rng.below(20_000));
                assert!(drive(chunks, read_size).0.expect("chunked") == whole);
            }
        }
    }

    /// Runs a real h2 server, answering 200 to everything; returns the authorities seen.
    async fn serve<I: AsyncRead + AsyncWrite + Unpin>(io: I) -> Vec<String> {
        let mut seen = Vec::new();
        let Ok(mut conn) = h2::server::handshake(io).await else {
            return seen;
        };
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            let authority = req.uri().authority().map(ToString::to_string);
            seen.push(authority.unwrap_or_default());
            let _ = respond.send_response(http::Response::new(()), true);
        }
        seen
    }

    /// Hand-written, because h2's own client cannot send a malformed authority. Returns
    /// the `:status` or the RST_STREAM error code the server answered stream 1 with.
    async fn raw_client(mut io: DuplexStream, authority: &str) -> Result<Vec<u8>, u32> {
        let block = encode(&mut Encoder::new(), &request(Some(authority)));
        let request = conn(&[frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)]);
        io.write_all(&request).await.expect("send");
        let (mut buf, mut chunk) = (PREFACE.to_vec(), [0; 4096]);
        loop {
            let n = io.read(&mut chunk).await.expect("read");
            assert_ne!(n, 0, "server closed without answering");
            buf.extend_from_slice(&chunk[..n]);
            for (kind, _, stream, payload) in parse(&buf).unwrap_or_default() {
                match (kind, stream, &payload[..]) {
                    (0x3, 1, &[a, b, c, d]) => return Err(u32::from_be_bytes([a, b, c, d])),
                    (HEADERS, 1, _) => {
                        let headers = Decoder::new().decode(&payload).expect("response");
                        return Ok(headers[0].1.clone());
                    }
                    _ => {}
                }
            }
        }
    }

    async fn timeout<F: Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .expect("no hang")
    }

    #[tokio::test]
    async fn real_h2_server_accepts_rewritten_requests() {
        for authority in ["/tmp/sgw.sock", "%2Ftmp%2Fsgw.sock"] {
            let (client, server) = duplex(64 * 1024);
            let wrapped = serve(AuthorityRewrite::new(server));
            let (status, seen) =
                timeout(async { tokio::join!(raw_client(client, authority), wrapped) }).await;
            assert_eq!(
                (status, &seen[..]),
                (Ok(b"200".to_vec()), &["localhost".to_owned()][..])
            );

            // Regression guard: without the wrapper h2 refuses the same bytes.
            let (client, server) = duplex(64 * 1024);
            let (status, seen) =
                timeout(async { tokio::join!(raw_client(client, authority), serve(server)) }).await;
            assert_eq!(
                (status, seen.len()),
                (Err(1), 0),
                "{authority}: PROTOCOL_ERROR"
            );
        }
    }

    #[tokio::test]
    async fn real_h2_client_passes_through() {
        let (client, server) = duplex(64 * 1024);
        let client = async move {
            let (mut send, conn) = h2::client::handshake(client).await.expect("handshake");
            let driver = tokio::spawn(conn);
            for _ in 0..2 {
                let req = http::Request::post("http://localhost/sgw.v1.S/List").body(());
                send = send.ready().await.expect("ready");
                let (resp, _) = send.send_request(req.expect("req"), true).expect("send");
                assert_eq!(resp.await.expect("response").status(), 200);
            }
            driver.abort();
        };
        let (_, seen) =
            timeout(async { tokio::join!(client, serve(AuthorityRewrite::new(server))) }).await;
        assert_eq!(seen, ["localhost", "localhost"]);
    }

    #[test]
    fn protocol_violations_close_the_connection() {
        let block = encode(&mut Encoder::new(), &request(Some("/tmp/sgw.sock")));
        let start = frame(HEADERS, 0, 1, &block[..5]);
        let cont = |flags, stream| frame(CONTINUATION, flags, stream, &[]);
        let one = |flags, stream, payload: &[u8]| vec![frame(HEADERS, flags, stream, payload)];
        // Indexes a 3000-byte value, then refers to it 30 times: ~91 KB decoded.
        let bomb_entry = b"\x40\x06x-bomb\x7f\xb9\x16".as_slice();
        let bomb = [bomb_entry, &[b'a'; 3000], &[0xbe; 30]].concat();
        let mut too_big = one(END_HEADERS, 1, &[]);
        too_big[0][..3].copy_from_slice(&[0x03, 0x0d, 0x40]); // announces 200_000 bytes
        let (table_update, push) = ([0x3f, 0xe1, 0x3f, 0x82], [0, 0, 0, 2]);
        let rewritten_then_bad = [one(END_HEADERS, 1, &block), one(END_HEADERS, 3, &[0xff])];
        let cases = [
            ("index out of bounds", one(END_HEADERS, 1, &[0x80])),
            ("larger than 65536", one(END_HEADERS, 1, &bomb)),
            (
                "exceeds the maximum size",
                one(END_HEADERS, 1, &table_update),
            ),
            (
                "more than 5",
                [vec![start.clone()], vec![cont(0, 1); 6]].concat(),
            ),
            (
                "type 0x9 on stream 3",
                vec![start.clone(), cont(END_HEADERS, 3)],
            ),
            (
                "type 0x0 on stream 1",
                vec![start.clone(), frame(0, 0, 1, b"x")],
            ),
            ("without an open header block", vec![cont(END_HEADERS, 1)]),
            ("HEADERS frame on stream 0", one(END_HEADERS, 0, &block)),
            ("padding longer", one(END_HEADERS | PADDED, 1, &[9, 0x82])),
            (
                "PUSH_PROMISE",
                vec![frame(PUSH_PROMISE, END_HEADERS, 1, &push)],
            ),
            ("larger than 114688", too_big),
            ("malformed HPACK", rewritten_then_bad.concat()),
        ];
        for (needle, frames) in cases {
            let err = run(&conn(&frames)).expect_err(needle);
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        // A rejected connection stays dead rather than resuming mid-stream.
        let input = conn(&[start.clone(), cont(END_HEADERS, 3), frame(6, 0, 0, &[0; 8])]);
        let mut rw = AuthorityRewrite::new(Script(VecDeque::from([input])));
        let (mut cx, mut buf) = (Context::from_waker(Waker::noop()), [0; 1024]);
        for _ in 0..3 {
            let res = Pin::new(&mut rw).poll_read(&mut cx, &mut ReadBuf::new(&mut buf));
            assert!(matches!(res, Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::InvalidData));
        }
        // h2's limit is inclusive: 5 CONTINUATIONs plus the final one are fine.
        let last = frame(CONTINUATION, END_HEADERS, 1, &block[5..]);
        let at_limit = [vec![start], vec![cont(0, 1); 5], vec![last]].concat();
        assert!(run(&conn(&at_limit)).is_ok());
        let input = two_requests(Some("/tmp/sgw.sock"));
        let truncated = run(&input[..input.len() - 3]).expect_err("truncated");
        assert_eq!(truncated.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn fuzzed_input_never_panics() {
        let mut big = request(Some("/tmp/sgw.sock"));
        big.push((b"x-big".to_vec(), vec![b'z'; 20_000]));
        let big = frame(HEADERS, END_HEADERS, 1, &encode(&mut Encoder::new(), &big));
        let seeds = [two_requests(Some("/a b")), two_requests(None), conn(&[big])];
        let first = encode(&mut Encoder::new(), &request(Some("/x")));
        let first = frame(HEADERS, END_HEADERS, 1, &first);
        let (mut rng, mut rewritten) = (Rng(0x00c0_ffee), 0);
        for i in 0..6000 {
            let input = match i % 3 {
                0 => {
                    let mut m = seeds[rng.below(seeds.len())].clone();
                    for _ in 0..1 + rng.below(4) {
                        let (at, n, byte) = (rng.below(m.len()), rng.below(32), rng.next());
                        match rng.below(4) {
                            0 => m.get_mut(at).into_iter().for_each(|b| *b = byte as u8),
                            1 => drop(m.splice(at..at, rng.bytes(1, 16))),
                            2 => drop(m.drain(at..(at + n).min(m.len()))),
                            _ => m.truncate(at),
                        }
                    }
                    m
                }
                1 => {
                    let random_frame = |rng: &mut Rng| {
                        let (kind, flags, stream) = (rng.below(11), rng.next(), rng.below(4));
                        frame(kind as u8, flags as u8, stream as u32, &rng.bytes(0, 48))
                    };
                    let count = 1 + rng.below(6);
                    let frames: Vec<_> = (0..count).map(|_| random_frame(&mut rng)).collect();
                    conn(&frames)
                }
                _ => {
                    // HPACK-shaped junk decoded in rewrite mode: table refs, literals, noise.
                    let mut hpack = Vec::new();
                    for _ in 0..1 + rng.below(8) {
                        match rng.below(3) {
                            0 => hpack.push(0x80 | (1 + rng.below(70)) as u8),
                            1 => hpack.extend([0x40 | rng.below(8) as u8, 2, b'a', b'b']),
                            _ => hpack.extend(rng.bytes(1, 3)),
                        }
                    }
                    conn(&[first.clone(), frame(HEADERS, END_HEADERS, 3, &hpack)])
                }
            };
            let max_chunk = 1 + rng.below(64);
            let chunks = rng.chunks(&input, max_chunk);
            match drive(chunks, 1 + rng.below(512)) {
                (Ok(out), false) => assert!(out == input, "passthrough must be exact"),
                (Ok(out), true) => {
                    // Every header frame in the output is ours: it must be well-formed.
                    blocks(&parse(&out).expect("whole frames"));
                    rewritten += 1;
                }
                (Err(e), _) => assert!(matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                )),
            }
        }
        assert!(
            rewritten > 300,
            "the rewrite path must be exercised, not just errors"
        );
    }
}
