//! Lets HTTP/2 clients that put the Unix socket path in `:authority` reach the server.
//!
//! grpcio (`unix:` targets send the percent-encoded path), grpcurl before 1.9 (the raw
//! path) and grpc-java (the raw path) all do this. h2 validates `:authority` as a URI
//! authority and answers `RST_STREAM(PROTOCOL_ERROR)` before tonic sees the request, and
//! neither h2 nor tonic has a switch for it. [`AuthorityRewrite`] therefore repairs the
//! client's header blocks on the wire, in front of h2.
//!
//! # How
//!
//! Header blocks are never decoded. A structural HPACK scanner (RFC 7541) walks the
//! representations reading only integers, Huffman flags and string lengths, and finds the
//! literal `:authority` fields: name index 1 (the static `:authority`), or a literal name
//! equal to `:authority`, raw or Huffman-coded (a Huffman encoding is unique once its
//! padding is valid, so the encoded bytes are compared; the name is not decoded). Only the
//! value of such a field is decoded and checked with [`http::uri::Authority`], as h2
//! checks it. An invalid value is replaced by a raw string of the same decoded length made
//! of valid authority bytes (`localhost`, truncated or padded with `x`; plain `localhost`
//! when the field is not indexed). Everything else in the block stays as it was, so the
//! client's HPACK dynamic table and h2's hold entries of the same sizes, evict them at the
//! same moments and stay aligned: a later block that refers to a repaired entry by index
//! gets the repaired value from h2's own table and needs no change.
//!
//! - The first header block of a connection decides. If it needs no repair, the connection
//!   is forwarded untouched from then on, at no further cost.
//! - Once a block was repaired, every later header block is scanned the same way (the
//!   client may send the literal again after its entry was evicted) and re-framed only if
//!   it needed a repair. Other frames are forwarded as they arrive, never buffered whole.
//!
//! # Cost
//!
//! The scan costs O(1) per representation (each is at least one byte) plus a comparison of
//! at most ten bytes per literal name, and stops where h2's decoder stops with an error
//! (see below); per block at most one string is Huffman-decoded, by a table-driven decoder,
//! and only if its encoded length is at most 1 KiB. `benches/h2_authority.rs` measures it
//! against h2's own cost per KiB received. A block is examined only within the limits h2
//! itself enforces (with the settings hyper and tonic leave at their defaults), so the
//! wrapper never buffers what h2 would refuse:
//! - frames: at most 16 KiB (`SETTINGS_MAX_FRAME_SIZE`); a longer HEADERS or CONTINUATION
//!   frame goes to h2 as it is, which refuses it from its 9-byte header;
//! - CONTINUATION: at most 5 without END_HEADERS per block, h2's flood limit for hyper's
//!   16 KiB header list size, so a block is at most 7 frames, 112 KiB.
//!
//! A repaired block goes out as HEADERS + CONTINUATION frames of at most 16 KiB (padding
//! dropped, PRIORITY fields and END_STREAM kept). If it would take more than 7 frames (a
//! block at the limit whose value grew from Huffman to raw), it goes out unchanged.
//!
//! # Left to h2
//!
//! Whatever the scanner does not understand, or h2 would refuse, reaches h2 as the client
//! sent it, so h2 gives its usual answer:
//! - HPACK that cannot be walked (an integer over 5 bytes, a string past the block's end)
//!   or that h2 refuses at once (index 0, an index beyond the entries inserted so far or
//!   beyond what a 4096-byte table holds, an empty literal name), an oversized frame or
//!   block, frames interleaved with a header block, CONTINUATION without a block,
//!   PUSH_PROMISE, HEADERS on stream 0 or with bad padding: the connection is then
//!   forwarded untouched (h2 closes it). On a connection already being repaired, a block
//!   the scanner rejects is forwarded unchanged and scanning goes on: every repair kept
//!   the entry sizes, so the tables are in step whatever h2 makes of the block.
//! - not repaired: a field whose name refers to the dynamic table (index 62 and up; h2
//!   judges such a field itself, and clients use the shorter static index), an indexed
//!   field naming the static `:authority` (its value is empty), a block with more than one
//!   `:authority` (h2 refuses duplicate pseudo-headers), an empty value to be indexed (no
//!   valid authority has length 0), a value over 1 KiB encoded, a Huffman value whose
//!   padding is not canonical.
//!
//! # Deadlines
//!
//! The listener hands over a connection once it has seen `P`; h2 would then wait forever
//! for the rest of the preface. [`Deadlines`] bounds the handshake (preface and the
//! client's first frame, which must be SETTINGS) and each header block the wrapper
//! inspects (from the HEADERS frame header to END_HEADERS). On expiry `poll_read` fails
//! with [`io::ErrorKind::TimedOut`] and hyper closes the connection. A connection idle
//! between frames is not cut (keepalive deals with dead peers), nor are the header blocks
//! of a connection forwarded untouched.
//!
//! The only other error is [`io::ErrorKind::UnexpectedEof`], for a connection that ends
//! inside a frame the wrapper holds. After an error every read fails.

use std::borrow::Cow;
use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use httlib_huffman::DecoderSpeed;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// h2's `SETTINGS_MAX_FRAME_SIZE` as hyper and tonic leave it, and the size every peer
/// must accept: the largest frame examined, and the largest one written.
const MAX_FRAME: usize = 16_384;
/// CONTINUATION frames without END_HEADERS that h2 accepts in one block: its flood limit
/// for hyper's 16 KiB `max_header_list_size` and 16 KiB frames.
const MAX_CONTINUATIONS: usize = 5;
/// HEADERS, the CONTINUATIONs above and the final one.
const MAX_BLOCK_FRAMES: usize = MAX_CONTINUATIONS + 2;
/// Entries of the HPACK static table.
const STATIC_ENTRIES: usize = 61;
/// Most entries h2's dynamic table (4096 bytes, the most h2 allows) can hold: each
/// counts at least 32 bytes.
const MAX_ENTRIES: usize = 4096 / 32;
/// Longest encoded `:authority` value decoded and checked; longer is not ours to fix.
const MAX_AUTHORITY_LEN: usize = 1024;
const READ_CHUNK: usize = 8 * 1024;
/// The replacement authority, truncated or padded with [`PAD`] to the original length.
const REPLACEMENT: &[u8] = b"localhost";
const PAD: u8 = b'x';

/// The Huffman encoding of `:authority` (RFC 7541 Appendix B, padded with EOS bits).
static HUFFMAN_AUTHORITY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut encoded = Vec::new();
    httlib_huffman::encode(b":authority", &mut encoded).expect("ASCII is encodable");
    encoded
});

/// How long a client may take over what [`AuthorityRewrite`] waits for.
///
/// A duration too large to add to the current instant means no deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// From the wrapper's creation to the end of the client preface and of its first
    /// frame (SETTINGS).
    pub handshake: Duration,
    /// From a HEADERS frame's header to the end of its header block, for the blocks the
    /// wrapper inspects: the first one, and all of them on a connection being repaired.
    pub header_block: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            header_block: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching the client preface; anything else is not ours to touch.
    Preface,
    /// Waiting for the client's first frame, which must be SETTINGS.
    Settings,
    /// Forwarding frames until the first header block tells us which client this is.
    Deciding,
    /// The client needed a repair: every header block is scanned.
    Rewriting,
    Passthrough,
    /// An error was returned; h2 must not see any further bytes of this connection.
    Failed,
}

/// What a deadline is running for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Handshake,
    HeaderBlock { stream_id: u32 },
}

/// A header block being assembled from HEADERS + CONTINUATION frames.
struct Block {
    stream_id: u32,
    /// END_STREAM and PRIORITY of the HEADERS frame, the only flags we re-emit.
    flags: u8,
    priority: [u8; 5],
    /// The HPACK fragments, padding and priority fields removed.
    fragment: Vec<u8>,
    /// The original frames, forwarded as they are unless the block is repaired.
    raw: BytesMut,
    continuations: usize,
}

/// Connection wrapper that repairs an invalid HTTP/2 `:authority` before h2 reads it; see
/// the module docs for when it rewrites, what it leaves to h2, and its deadlines.
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
    deadlines: Deadlines,
    /// What the connection is waiting for, and until when.
    waiting: Option<(Wait, Instant)>,
    /// Created the first time a wait actually blocks, then reset as needed.
    timer: Option<Pin<Box<Sleep>>>,
    eof: bool,
    /// A block of this connection was repaired.
    repaired: bool,
    /// Dynamic table insertions in the blocks scanned: bounds the valid table indices.
    inserted: usize,
    /// Huffman strings decoded so far, to prove how little the scanner decodes.
    #[cfg(test)]
    huffman_decodes: usize,
}

impl<T> AuthorityRewrite<T> {
    /// Wraps `io` with the default [`Deadlines`] (10 s each).
    pub fn new(io: T) -> Self {
        Self::with_deadlines(io, Deadlines::default())
    }

    /// Wraps `io`; the handshake deadline starts now.
    pub fn with_deadlines(io: T, deadlines: Deadlines) -> Self {
        let mut this = Self {
            io,
            mode: Mode::Preface,
            inbuf: BytesMut::new(),
            out: BytesMut::new(),
            forward: 0,
            block: None,
            deadlines,
            waiting: None,
            timer: None,
            eof: false,
            repaired: false,
            inserted: 0,
            #[cfg(test)]
            huffman_decodes: 0,
        };
        this.wait_for(Wait::Handshake);
        this
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Whether this connection's client sent an authority h2 would reject and that was
    /// repaired (useful for logging which clients need the workaround).
    pub fn is_rewriting(&self) -> bool {
        self.repaired
    }

    /// Starts the deadline for `wait` unless one is already running.
    fn wait_for(&mut self, wait: Wait) {
        if self.waiting.is_some() {
            return;
        }
        let limit = match wait {
            Wait::Handshake => self.deadlines.handshake,
            Wait::HeaderBlock { .. } => self.deadlines.header_block,
        };
        self.waiting = Instant::now().checked_add(limit).map(|at| (wait, at));
    }

    /// Parses as much of `inbuf` as possible, moving the result to `out`.
    fn process(&mut self) {
        loop {
            let progressed = match self.mode {
                Mode::Preface => self.preface(),
                Mode::Settings => self.settings(),
                Mode::Deciding | Mode::Rewriting => self.step(),
                Mode::Passthrough | Mode::Failed => return,
            };
            if !progressed {
                return;
            }
        }
    }

    /// Hands everything not yet forwarded to h2 as the client sent it, and stops looking.
    fn pass_through(&mut self) {
        if let Some(block) = self.block.take() {
            self.out.unsplit(block.raw);
        }
        self.out.unsplit(std::mem::take(&mut self.inbuf));
        self.mode = Mode::Passthrough;
        self.waiting = None;
        self.timer = None;
    }

    /// `false` means more input is needed; so for all the steps below.
    fn preface(&mut self) -> bool {
        let n = self.inbuf.len().min(PREFACE.len());
        if self.inbuf[..n] != PREFACE[..n] {
            self.pass_through();
        } else if n < PREFACE.len() {
            return false;
        } else {
            self.out.unsplit(self.inbuf.split_to(n));
            self.mode = Mode::Settings;
        }
        true
    }

    fn settings(&mut self) -> bool {
        let Some(head) = FrameHead::parse(&self.inbuf) else {
            return false;
        };
        if head.kind != SETTINGS || head.len > MAX_FRAME {
            // h2 refuses the connection; nothing to wait for.
            self.pass_through();
            return true;
        }
        if self.inbuf.len() < FRAME_HEADER_LEN + head.len {
            return false;
        }
        let frame = self.inbuf.split_to(FRAME_HEADER_LEN + head.len);
        self.out.unsplit(frame);
        self.mode = Mode::Deciding;
        self.waiting = None;
        true
    }

    /// Handles one frame or payload slice.
    fn step(&mut self) -> bool {
        if self.forward > 0 {
            if self.inbuf.is_empty() {
                return false;
            }
            let n = self.forward.min(self.inbuf.len());
            self.out.unsplit(self.inbuf.split_to(n));
            self.forward -= n;
            return true;
        }
        let Some(head) = FrameHead::parse(&self.inbuf) else {
            return false;
        };
        let examine = match self.block.as_ref() {
            // RFC 9113 6.10: nothing may interleave with an open header block.
            Some(block) => {
                head.kind == CONTINUATION
                    && head.stream_id == block.stream_id
                    && (head.flags & END_HEADERS != 0 || block.continuations < MAX_CONTINUATIONS)
            }
            None => match head.kind {
                HEADERS => head.stream_id != 0,
                // A header block of its own (advancing the HPACK state) that h2 refuses
                // from a client, or a CONTINUATION without a block.
                PUSH_PROMISE | CONTINUATION => false,
                _ => {
                    self.out.unsplit(self.inbuf.split_to(FRAME_HEADER_LEN));
                    self.forward = head.len;
                    return true;
                }
            },
        };
        if !examine || head.len > MAX_FRAME {
            self.pass_through();
            return true;
        }
        self.wait_for(Wait::HeaderBlock {
            stream_id: head.stream_id,
        });
        if self.inbuf.len() < FRAME_HEADER_LEN + head.len {
            return false;
        }
        let payload = &self.inbuf[FRAME_HEADER_LEN..][..head.len];
        let mut block = match self.block.take() {
            Some(mut block) => {
                if head.flags & END_HEADERS == 0 {
                    block.continuations += 1;
                }
                block.fragment.extend_from_slice(payload);
                block
            }
            None => match Block::start(&head, payload) {
                Some(block) => block,
                None => {
                    // Bad padding or priority fields: h2 refuses the connection.
                    self.pass_through();
                    return true;
                }
            },
        };
        block
            .raw
            .unsplit(self.inbuf.split_to(FRAME_HEADER_LEN + head.len));
        if head.flags & END_HEADERS == 0 {
            self.block = Some(block);
        } else {
            self.finish_block(block);
        }
        true
    }

    fn finish_block(&mut self, block: Block) {
        self.waiting = None;
        match self.repair(&block.fragment) {
            Some(fragment) if frames_needed(&block, fragment.len()) <= MAX_BLOCK_FRAMES => {
                self.mode = Mode::Rewriting;
                self.repaired = true;
                self.emit(&block, &fragment);
            }
            _ if self.mode == Mode::Deciding => {
                self.out.unsplit(block.raw);
                self.pass_through();
            }
            _ => self.out.unsplit(block.raw),
        }
    }

    /// The block with its `:authority` repaired, or `None` if it needs no repair or is
    /// not ours to repair (see the module docs).
    fn repair(&mut self, fragment: &[u8]) -> Option<Vec<u8>> {
        let Ok(Authorities::One(field)) = scan(fragment, &mut self.inserted) else {
            return None;
        };
        let encoded = &fragment[field.data.clone()];
        if encoded.len() > MAX_AUTHORITY_LEN {
            return None;
        }
        let value = if field.huffman {
            #[cfg(test)]
            {
                self.huffman_decodes += 1;
            }
            Cow::Owned(huffman_decode(encoded)?)
        } else {
            Cow::Borrowed(encoded)
        };
        if http::uri::Authority::try_from(&value[..]).is_ok() {
            return None;
        }
        // Only an indexed field's size matters (RFC 7541 4.1: name + value + 32).
        let len = match (field.indexing, value.len()) {
            (true, 0) => return None,
            (true, len) => len,
            (false, _) => REPLACEMENT.len(),
        };
        let mut repaired = Vec::with_capacity(fragment.len() + len + 5);
        repaired.extend_from_slice(&fragment[..field.repr.start]);
        put_int(&mut repaired, 7, len);
        let pad = std::iter::repeat(PAD);
        repaired.extend(REPLACEMENT.iter().copied().chain(pad).take(len));
        repaired.extend_from_slice(&fragment[field.repr.end..]);
        Some(repaired)
    }

    /// Writes a header block as HEADERS + CONTINUATION frames no larger than any peer
    /// must accept.
    fn emit(&mut self, block: &Block, mut rest: &[u8]) {
        self.out
            .reserve(rest.len() + (rest.len() / MAX_FRAME + 1) * FRAME_HEADER_LEN + 5);
        let mut first = true;
        loop {
            let prio_len = if first && block.flags & PRIORITY != 0 {
                5
            } else {
                0
            };
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME - prio_len));
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
        self.waiting = None;
        self.timer = None;
    }

    /// Ready with the error to return once the running deadline, if any, has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some((wait, at)) = self.waiting else {
            return Poll::Pending;
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if timer.deadline() != at {
                    timer.as_mut().reset(at);
                }
                timer
            }
            None => self.timer.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        ready!(timer.as_mut().poll(cx));
        let msg = match wait {
            Wait::Handshake => format!(
                "no client preface and SETTINGS within {:?}",
                self.deadlines.handshake
            ),
            Wait::HeaderBlock { stream_id } => format!(
                "header block of stream {stream_id} not complete within {:?}",
                self.deadlines.header_block
            ),
        };
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("HTTP/2 :authority rewrite: {msg}"),
        ))
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

/// A frame's 9-byte header.
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
    stream_id: u32,
}

impl FrameHead {
    fn parse(buf: &[u8]) -> Option<Self> {
        let &[a, b, c, kind, flags, s0, s1, s2, s3, ..] = buf else {
            return None;
        };
        Some(Self {
            len: usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c),
            kind,
            flags,
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
        })
    }
}

impl Block {
    /// Starts a block from a HEADERS frame's payload; `None` if its padding or priority
    /// fields do not fit.
    fn start(head: &FrameHead, mut payload: &[u8]) -> Option<Self> {
        let mut pad = 0;
        if head.flags & PADDED != 0 {
            let (&len, rest) = payload.split_first()?;
            pad = usize::from(len);
            payload = rest;
        }
        let mut priority = [0; 5];
        if head.flags & PRIORITY != 0 {
            let (prio, rest) = payload.split_at_checked(5)?;
            priority.copy_from_slice(prio);
            payload = rest;
        }
        let fragment = payload.get(..payload.len().checked_sub(pad)?)?;
        Some(Self {
            stream_id: head.stream_id,
            flags: head.flags & (END_STREAM | PRIORITY),
            priority,
            fragment: fragment.to_vec(),
            raw: BytesMut::new(),
            continuations: 0,
        })
    }
}

/// How many frames [`AuthorityRewrite::emit`] writes for a fragment of `len` bytes.
fn frames_needed(block: &Block, len: usize) -> usize {
    let prio_len = if block.flags & PRIORITY != 0 { 5 } else { 0 };
    (prio_len + len).div_ceil(MAX_FRAME).max(1)
}

/// A literal `:authority` field found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthorityField {
    /// The value's string representation: length prefix and data.
    repr: Range<usize>,
    /// The value's data.
    data: Range<usize>,
    huffman: bool,
    /// Literal with incremental indexing: the field enters the dynamic table.
    indexing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Authorities {
    None,
    One(AuthorityField),
    Several,
}

/// The block cannot be walked: an integer or a string runs past its end or is too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Malformed;

/// Walks an HPACK block (RFC 7541 6) without decoding it, looking for literal
/// `:authority` fields.
///
/// `inserted` counts the entries the connection's blocks inserted into the dynamic table
/// so far (as scanned), and is updated: a table index above 61 + that count, or above
/// what a table of 4096 bytes can hold, cannot exist. Such an index, index 0, an empty
/// literal name and what cannot be walked make the block [`Malformed`], all of them
/// errors for h2, which stops there too.
fn scan(block: &[u8], inserted: &mut usize) -> Result<Authorities, Malformed> {
    let mut cur = Cursor { buf: block, pos: 0 };
    let (mut found, mut several) = (None, false);
    while let Some(&first) = block.get(cur.pos) {
        let max_index = STATIC_ENTRIES + (*inserted).min(MAX_ENTRIES);
        let (prefix, indexing) = match first {
            // Indexed field: nothing to look at (see the module docs).
            0x80.. => match cur.int(7)? {
                index if (1..=max_index).contains(&index) => continue,
                _ => return Err(Malformed),
            },
            0x40.. => (6, true),
            // Dynamic table size update (h2 judges where it may appear and its value).
            0x20.. => {
                cur.int(5)?;
                continue;
            }
            // Literal without indexing (0000) or never indexed (0001).
            _ => (4, false),
        };
        let is_authority = match cur.int(prefix)? {
            0 => {
                let (huffman, name) = cur.string()?;
                let name = &block[name];
                if name.is_empty() {
                    // A non-empty Huffman string never validly decodes to nothing.
                    return Err(Malformed);
                } else if huffman {
                    *name == HUFFMAN_AUTHORITY[..]
                } else {
                    name == b":authority"
                }
            }
            index if index <= max_index => index == 1,
            _ => return Err(Malformed),
        };
        let start = cur.pos;
        let (huffman, data) = cur.string()?;
        if indexing {
            *inserted = inserted.saturating_add(1);
        }
        if is_authority {
            // More than one: left to h2, but the rest still counts its insertions.
            several |= found.is_some();
            found = Some(AuthorityField {
                repr: start..cur.pos,
                data,
                huffman,
                indexing,
            });
        }
    }
    Ok(match found {
        _ if several => Authorities::Several,
        Some(field) => Authorities::One(field),
        None => Authorities::None,
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// An HPACK integer (RFC 7541 5.1), at most 5 bytes as h2 accepts.
    fn int(&mut self, prefix_bits: u8) -> Result<usize, Malformed> {
        let max = (1usize << prefix_bits) - 1;
        let first = *self.buf.get(self.pos).ok_or(Malformed)?;
        self.pos += 1;
        let mut value = usize::from(first) & max;
        if value < max {
            return Ok(value);
        }
        for shift in [0, 7, 14, 21] {
            let byte = *self.buf.get(self.pos).ok_or(Malformed)?;
            self.pos += 1;
            value += usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    /// A string literal (RFC 7541 5.2): its Huffman flag and where its data is.
    fn string(&mut self) -> Result<(bool, Range<usize>), Malformed> {
        let huffman = self.buf.get(self.pos).ok_or(Malformed)? & 0x80 != 0;
        let len = self.int(7)?;
        let end = self.pos.checked_add(len).ok_or(Malformed)?;
        if end > self.buf.len() {
            return Err(Malformed);
        }
        let data = self.pos..end;
        self.pos = end;
        Ok((huffman, data))
    }
}

/// Decodes a Huffman string; `None` unless it is the canonical encoding of its value
/// (what h2 accepts: no EOS symbol, padding of fewer than 8 one bits).
fn huffman_decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut value = Vec::with_capacity(encoded.len() * 8 / 5 + 1);
    httlib_huffman::decode(encoded, &mut value, DecoderSpeed::FiveBits).ok()?;
    // The decoder is lenient with padding; a unique encoding makes this check exact.
    let mut again = Vec::with_capacity(encoded.len());
    httlib_huffman::encode(&value, &mut again).ok()?;
    (again == encoded).then_some(value)
}

/// HPACK integer (RFC 7541 5.1) with all flag bits clear: a raw string's length has a
/// zero Huffman bit above its 7-bit prefix.
fn put_int(dst: &mut Vec<u8>, prefix_bits: u8, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        dst.push(value as u8);
        return;
    }
    dst.push(max as u8);
    value -= max;
    while value >= 0x80 {
        dst.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    dst.push(value as u8);
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
                Mode::Failed => {
                    return Poll::Ready(Err(io::Error::other(
                        "HTTP/2 :authority rewrite: connection already rejected",
                    )));
                }
                Mode::Passthrough if this.inbuf.is_empty() => {
                    return Pin::new(&mut this.io).poll_read(cx, buf);
                }
                Mode::Passthrough => {
                    std::mem::swap(&mut this.out, &mut this.inbuf);
                    continue;
                }
                _ => {}
            }
            this.process();
            if !this.out.is_empty() || this.mode == Mode::Passthrough {
                continue;
            }
            if this.eof {
                if this.mode == Mode::Preface && !this.inbuf.is_empty() {
                    // A short preface: let h2 judge it.
                    this.pass_through();
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
            match this.fill(cx) {
                Poll::Ready(res) => res?,
                Poll::Pending => {
                    let err = ready!(this.poll_deadline(cx));
                    this.fail();
                    return Poll::Ready(Err(err));
                }
            }
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
            .field("waiting", &self.waiting.map(|(wait, _)| wait))
            .field("buffered_in", &self.inbuf.len())
            .field("buffered_out", &self.out.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::{Decoder, Encoder};
    use std::{collections::VecDeque, task::Waker};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    type Headers = Vec<(Vec<u8>, Vec<u8>)>;
    /// kind, flags, stream, payload
    type Frame = (u8, u8, u32, Vec<u8>);

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        [&len[1..], &[kind, flags], &stream.to_be_bytes(), payload].concat()
    }

    fn conn(frames: &[Vec<u8>]) -> Vec<u8> {
        let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
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

    /// What an invalid authority of `len` bytes becomes in an indexed field.
    fn replaced(len: usize) -> String {
        let s = format!("localhost{}", "x".repeat(len.saturating_sub(9)));
        s[..len].to_owned()
    }

    fn with_authority(mut h: Headers, authority: &str) -> Headers {
        let auth = h.iter_mut().filter(|(n, _)| n == b":authority");
        auth.for_each(|(_, v)| *v = authority.into());
        h
    }

    /// A raw HPACK string literal.
    fn raw(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_int(&mut out, 7, s.len());
        [out, s.to_vec()].concat()
    }

    /// A Huffman-coded HPACK string literal.
    fn huff(s: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        httlib_huffman::encode(s, &mut data).expect("encodable");
        let mut out = Vec::new();
        put_int(&mut out, 7, data.len());
        out[0] |= 0x80;
        [out, data].concat()
    }

    /// `GET http://…/`, all from the static table.
    const GET: [u8; 3] = [0x82, 0x86, 0x84];

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

    /// Decodes the header blocks in order with one decoder, as h2 does, and checks the
    /// framing promised to h2. Returns stream, END_STREAM | PRIORITY and the headers.
    fn blocks(frames: &[Frame]) -> Vec<(u32, u8, Headers)> {
        let mut decoder = Decoder::new();
        let (mut out, mut open) = (Vec::new(), None::<(u32, u8, Vec<u8>)>);
        for (kind, flags, stream, payload) in frames
            .iter()
            .filter(|f| f.0 == HEADERS || f.0 == CONTINUATION)
        {
            assert!(payload.len() <= MAX_FRAME);
            let first = open.is_none();
            assert_eq!(*kind, if first { HEADERS } else { CONTINUATION });
            let (id, head_flags, mut buf) = open.take().unwrap_or((*stream, *flags, Vec::new()));
            assert_eq!(*stream, id);
            let mut fragment = &payload[..];
            if first && flags & PADDED != 0 {
                let pad = usize::from(fragment[0]);
                fragment = &fragment[1..fragment.len() - pad];
            }
            if first && flags & PRIORITY != 0 {
                fragment = &fragment[5..];
            }
            buf.extend_from_slice(fragment);
            if flags & END_HEADERS == 0 {
                open = Some((id, head_flags, buf));
                continue;
            }
            let headers = decoder.decode(&buf).expect("decodes");
            out.push((id, head_flags & (END_STREAM | PRIORITY), headers));
        }
        assert!(open.is_none(), "unterminated block");
        out
    }

    fn authorities(blocks: &[(u32, u8, Headers)]) -> Vec<Option<String>> {
        let auth = |h: &Headers| {
            let field = h.iter().find(|h| h.0 == b":authority");
            field.map(|f| String::from_utf8_lossy(&f.1).into_owned())
        };
        blocks.iter().map(|b| auth(&b.2)).collect()
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
    fn drive(
        chunks: Vec<Vec<u8>>,
        read_size: usize,
    ) -> (io::Result<Vec<u8>>, AuthorityRewrite<Script>) {
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
            return (res, rw);
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
        let input = conn(&[
            frame(HEADERS, END_HEADERS, 1, &socket_block()),
            frame(0x0, END_STREAM, 1, b"\0\0\0\0\x02\x08\x01"),
            frame(0x8, 0, 0, &[0, 0, 0x10, 0]),
            frame(
                HEADERS,
                END_HEADERS | END_STREAM,
                3,
                &[&GET[..], &[0xbe]].concat(),
            ),
        ]);
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
        assert_eq!(
            frames[4], orig[4],
            "a reference to the repaired entry goes as it came"
        );
        let get = [(":method", "GET"), (":scheme", "http"), (":path", "/")];
        let socket = replaced(13);
        let expected: Headers = get
            .into_iter()
            .chain([(":authority", &socket[..])])
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let want = [(1, 0, expected.clone()), (3, END_STREAM, expected)];
        assert_eq!(blocks(&frames), want);
    }

    #[test]
    fn scanner_finds_only_literal_authorities() {
        let one = |repr: Range<usize>, huffman, indexing| {
            let data = repr.start + 1..repr.end;
            Ok(Authorities::One(AuthorityField {
                repr,
                data,
                huffman,
                indexing,
            }))
        };
        let name = |n: &[u8]| [&[0x40][..], &raw(n)].concat();
        let (huff_name, huff_ab) = (huff(b":authority"), huff(b"ab"));
        let at = huff_name.len() + 1;
        // (block, insertions before, result, insertions after)
        type Case = (Vec<u8>, usize, Result<Authorities, Malformed>, usize);
        let cases: [Case; 20] = [
            (vec![], 0, Ok(Authorities::None), 0),
            (
                [&GET[..], b"\x41\x02ab"].concat(),
                0,
                one(4..7, false, true),
                1,
            ),
            (b"\x01\x02ab".to_vec(), 0, one(1..4, false, false), 0),
            (b"\x11\x02ab".to_vec(), 0, one(1..4, false, false), 0),
            (
                [&name(b":authority")[..], &huff_ab].concat(),
                0,
                one(12..12 + huff_ab.len(), true, true),
                1,
            ),
            (
                [&[0x10], &huff_name[..], b"\x01a"].concat(),
                0,
                one(at..at + 2, false, false),
                0,
            ),
            // Dynamic name references, other names, indexed fields and size updates.
            (
                b"\x42\x01a\x7e\x01a\x81\xbf\x3f\xe1\x1f".to_vec(),
                0,
                Ok(Authorities::None),
                2,
            ),
            (
                [&name(b":Authority")[..], b"\x01a"].concat(),
                0,
                Ok(Authorities::None),
                1,
            ),
            (b"\x0f\x2f\x01a".to_vec(), 1, Ok(Authorities::None), 1), // name index 62
            (
                b"\x41\x01a\x01\x01b\x40\x01c\x00".to_vec(),
                0,
                Ok(Authorities::Several),
                2,
            ),
            // 128 entries at most: index 189 may exist, 190 not.
            (b"\xff\x3e".to_vec(), 1000, Ok(Authorities::None), 1000),
            (b"\xff\x3f".to_vec(), 1000, Err(Malformed), 1000),
            (b"\xbe".to_vec(), 0, Err(Malformed), 0),
            (b"\x80".to_vec(), 0, Err(Malformed), 0),
            (b"\x40\x00\x01a".to_vec(), 0, Err(Malformed), 0), // empty name
            (b"\x40\x80\x01a".to_vec(), 0, Err(Malformed), 0), // empty Huffman name
            (b"\x41\x05ab".to_vec(), 0, Err(Malformed), 0),
            (b"\x41".to_vec(), 0, Err(Malformed), 0),
            (b"\x3f\xff\xff\xff\xff\x01".to_vec(), 0, Err(Malformed), 0), // 6-byte int
            (
                b"\x3f\xff\xff\xff\x7f".to_vec(),
                0,
                Ok(Authorities::None),
                0,
            ), // 5: h2's limit
        ];
        for (block, before, want, after) in cases {
            let mut inserted = before;
            assert_eq!(scan(&block, &mut inserted), want, "{block:02x?}");
            assert_eq!(inserted, after, "{block:02x?}");
        }
        // The encoded name compared is the one another decoder reads as `:authority`.
        let field = [
            &[0x00, 0x80 | HUFFMAN_AUTHORITY.len() as u8],
            &HUFFMAN_AUTHORITY[..],
            b"\x01a",
        ];
        let decoded = Decoder::new().decode(&field.concat()).expect("decodes");
        assert_eq!(decoded, [(b":authority".to_vec(), b"a".to_vec())]);
    }

    #[test]
    fn huffman_decoding_accepts_only_canonical_strings() {
        let encoded = &huff(b"/tmp/sgw.sock")[1..];
        assert_eq!(
            huffman_decode(encoded).as_deref(),
            Some(&b"/tmp/sgw.sock"[..])
        );
        assert_eq!(huffman_decode(&[]).as_deref(), Some(&b""[..]));
        let mut zero_padding = encoded.to_vec();
        *zero_padding.last_mut().expect("bytes") &= 0xf0;
        let long_padding = [encoded, &[0xff]].concat();
        let eos = [0xff, 0xff, 0xff, 0xff];
        for bad in [&zero_padding[..], &long_padding, &eos] {
            assert_eq!(huffman_decode(bad), None, "{bad:02x?}");
        }
        let mut rng = Rng(0x0bad_cafe);
        for _ in 0..20_000 {
            let bytes = rng.bytes(0, 24);
            if let Some(value) = huffman_decode(&bytes) {
                let mut again = Vec::new();
                httlib_huffman::encode(&value, &mut again).expect("encodable");
                assert_eq!(again, bytes);
            }
        }
    }

    #[test]
    fn huffman_strings_and_dynamic_table_references() {
        // RFC 7541 C.4 (Huffman) blocks after a first block that indexes a socket path.
        let first = [b"\x41\x0d/tmp/sgw.sock".as_slice(), &[0x83, 0x86, 0x84]].concat();
        let c41 = b"\x82\x86\x84\x41\x8c\xf1\xe3\xc2\xe5\xf2\x3a\x6b\xa0\xab\x90\xf4\xff";
        // Starts with a table size update to 4096, which goes to h2 like the rest.
        let c42 = b"\x3f\xe1\x1f\x82\x86\x84\xbe\x58\x86\xa8\xeb\x10\x64\x9c\xbf";
        let back_ref = [0x83, 0x86, 0x84, 0xc0]; // index 64: the socket path, two blocks ago
        let input = conn(&[
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &first),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, c41),
            frame(HEADERS, END_HEADERS | END_STREAM, 5, c42),
            frame(HEADERS, END_HEADERS | END_STREAM, 7, &back_ref),
        ]);
        let (out, rw) = drive(vec![input.clone()], 64 * 1024);
        let out = out.expect("valid");
        assert_eq!(rw.huffman_decodes, 1, "www.example.com, once, to check it");
        let got = blocks(&parse(&out).expect("frames"));
        let (socket, example) = (Some(replaced(13)), Some("www.example.com".to_owned()));
        let want = [socket.clone(), example.clone(), example, socket];
        assert_eq!(authorities(&got), want);
        assert_eq!(got[0].2[0].0, b":authority", "order kept");
        assert!(
            got[2]
                .2
                .contains(&(b"cache-control".to_vec(), b"no-cache".to_vec()))
        );
        let unchanged = input.len() - run(&conn(&[])).expect("valid").len() - 9 - first.len();
        assert_eq!(
            out[out.len() - unchanged..],
            input[input.len() - unchanged..]
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
        let (out, rw) = drive(vec![input], 4096);
        let frames = parse(&out.expect("valid")).expect("frames");
        assert!(rw.is_rewriting());
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
                frame(HEADERS, END_HEADERS, 3, &[0xff, 0xff]), // no longer scanned
            ]),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            PREFACE[..10].to_vec(),
            conn(&[]),
        ];
        for input in inputs {
            let (out, rw) = drive(vec![input.clone()], 1000);
            assert!(out.expect("passthrough") == input && !rw.is_rewriting());
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

    /// Runs a real h2 server, answering 200 to everything, until the connection ends or
    /// `max` requests came; returns the authority and headers of each request. (h2 drops
    /// requests not yet accepted when the client closes, hence `max`.)
    async fn serve_requests<I: AsyncRead + AsyncWrite + Unpin>(
        io: I,
        max: usize,
    ) -> Vec<(String, http::HeaderMap)> {
        let mut seen = Vec::new();
        let Ok(mut conn) = h2::server::handshake(io).await else {
            return seen;
        };
        while seen.len() < max {
            let Some(Ok((req, mut respond))) = conn.accept().await else {
                break;
            };
            let authority = req.uri().authority().map(ToString::to_string);
            seen.push((authority.unwrap_or_default(), req.headers().clone()));
            let _ = respond.send_response(http::Response::new(()), true);
        }
        seen
    }

    async fn serve<I: AsyncRead + AsyncWrite + Unpin>(io: I) -> Vec<String> {
        let seen = serve_requests(io, usize::MAX).await;
        seen.into_iter().map(|(authority, _)| authority).collect()
    }

    /// Sends `input`, then reads whatever the server says until it closes.
    async fn send_all(mut io: DuplexStream, input: &[u8]) {
        let _ = io.write_all(input).await;
        let _ = io.read_to_end(&mut Vec::new()).await;
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

    /// A first block that indexes an invalid authority.
    fn socket_block() -> Vec<u8> {
        [&GET[..], b"\x41\x0d/tmp/sgw.sock"].concat()
    }

    #[tokio::test]
    async fn same_length_rewrite_keeps_dynamic_tables_in_sync() {
        let insert = |name: &[u8], value: Vec<u8>| [&[0x40], &raw(name)[..], &raw(&value)].concat();
        // Entry sizes count name + value + 32. After block 2 the client's table is exactly
        // full (4096): had the repair made the authority entry any larger, h2 would have
        // evicted it there, and index 64 in block 3 would fail.
        let auth = b"\x41\x07/s.sock"; // 49
        let one = insert(b"x-one", vec![b'a'; 1000]); // 1037
        let two = insert(b"x-two", vec![b'b'; 4096 - 49 - 1037 - 37]);
        // Evicts the authority and x-one, the oldest entries.
        let three = insert(b"x-three", vec![b'c'; 900]);
        let blocks = [
            // Table: x-one (62), authority (63).
            [&GET[..], auth, &one].concat(),
            // After x-two: x-two (62), x-one (63), authority (64).
            [&GET[..], &[0xbf], &two, &[0xbf]].concat(),
            // After x-three: x-three (62), x-two (63).
            [&GET[..], &[0xc0], &three, &[0xbf]].concat(),
        ];
        let input = conn(&[
            frame(HEADERS, END_HEADERS | END_STREAM, 1, &blocks[0]),
            frame(HEADERS, END_HEADERS | END_STREAM, 3, &blocks[1]),
            frame(HEADERS, END_HEADERS | END_STREAM, 5, &blocks[2]),
        ]);
        let (client, server) = duplex(64 * 1024);
        let (_, seen) = timeout(async {
            tokio::join!(
                send_all(client, &input),
                serve_requests(AuthorityRewrite::new(server), 3)
            )
        })
        .await;
        let got: Vec<_> = seen
            .iter()
            .map(|(authority, headers)| {
                let names = ["x-one", "x-two", "x-three"];
                let values = names.map(|n| headers.get(n).map_or(0, |v| v.len()));
                (authority.as_str(), values)
            })
            .collect();
        let local = "localho"; // "/s.sock" has 7 bytes
        assert_eq!(
            got,
            [
                (local, [1000, 0, 0]),
                (local, [1000, 2973, 0]),
                (local, [0, 2973, 900]),
            ]
        );
    }

    #[tokio::test]
    async fn huffman_coded_invalid_authority_is_repaired() {
        let sent = [
            // Indexed with the static name, then referred to.
            [&GET[..], &[0x41], &huff(b"/tmp/sgw.sock")].concat(),
            [&GET[..], &[0xbe]].concat(),
            // Not indexed, with the name as a Huffman literal.
            [
                &GET[..],
                &[0x00],
                &huff(b":authority"),
                &huff(b"%2Ftmp%2Fsgw.sock"),
            ]
            .concat(),
            // Never indexed, with a raw name.
            [&GET[..], &[0x10], &raw(b":authority"), &huff(b"/a b")].concat(),
        ];
        let frames: Vec<_> = (0..4)
            .map(|i| {
                frame(
                    HEADERS,
                    END_HEADERS | END_STREAM,
                    1 + 2 * i,
                    &sent[i as usize],
                )
            })
            .collect();
        let input = conn(&frames);
        let (out, rw) = drive(vec![input.clone()], 64 * 1024);
        assert_eq!(
            rw.huffman_decodes, 3,
            "only the values of the three literals"
        );
        let got = blocks(&parse(&out.expect("valid")).expect("frames"));
        let socket = Some(replaced(13));
        let local = Some("localhost".to_owned());
        assert_eq!(
            authorities(&got),
            [socket.clone(), socket, local.clone(), local]
        );

        let (client, server) = duplex(64 * 1024);
        let (_, seen) = timeout(async {
            tokio::join!(
                send_all(client, &input),
                serve_requests(AuthorityRewrite::new(server), 4)
            )
        })
        .await;
        let seen: Vec<_> = seen.into_iter().map(|(authority, _)| authority).collect();
        assert_eq!(
            seen,
            [
                replaced(13),
                replaced(13),
                "localhost".into(),
                "localhost".into()
            ]
        );
    }

    #[test]
    fn attack_blocks_are_scanned_without_decoding() {
        // Literal fields with empty Huffman-coded names and values.
        let attack = b"\x00\x80\x80".repeat(5000);
        let attack_frame = |stream| frame(HEADERS, END_HEADERS, stream, &attack);
        // As the first block: nothing to repair, h2 gets it as sent.
        let input = conn(&[attack_frame(1)]);
        let (out, rw) = drive(vec![input.clone()], 4096);
        assert!(out.expect("passthrough") == input && !rw.is_rewriting());
        assert_eq!(rw.huffman_decodes, 0);

        // On a connection being repaired every block is scanned; none is decoded.
        let first = frame(HEADERS, END_HEADERS, 1, &socket_block());
        let input = conn(&[first.clone(), attack_frame(3), attack_frame(5)]);
        let (out, rw) = drive(vec![input], 4096);
        let want = [
            run(&conn(&[first])).expect("valid"),
            attack_frame(3),
            attack_frame(5),
        ];
        assert!(out.expect("forwarded") == want.concat() && rw.is_rewriting());
        assert_eq!(rw.huffman_decodes, 0);

        // Thousands of Huffman-coded `:authority` values: the scan stops at the second.
        let many = b"\x41\x81\x0f".repeat(5000);
        let input = conn(&[frame(HEADERS, END_HEADERS, 1, &many)]);
        let (out, rw) = drive(vec![input.clone()], 4096);
        assert!(out.expect("passthrough") == input && rw.huffman_decodes == 0);

        // 114 KB in one frame: more than h2 accepts, so judged from the frame header and
        // handed over as it arrives: a truncated copy goes through without an error.
        let big = frame(HEADERS, END_HEADERS, 1, &b"\x00\x80\x80".repeat(38_000));
        let input = conn(&[big]);
        let head = &input[..input.len() - 113_000];
        let (out, rw) = drive(vec![head.to_vec()], 4096);
        assert!(out.expect("passthrough") == head && rw.huffman_decodes == 0);
    }

    #[tokio::test]
    async fn real_h2_server_refuses_attack_blocks_through_the_wrapper() {
        let attack = b"\x00\x80\x80".repeat(5000);
        let big = b"\x00\x80\x80".repeat(38_000);
        for block in [attack, big] {
            let input = conn(&[frame(HEADERS, END_HEADERS, 1, &block)]);
            let (client, server) = duplex(64 * 1024);
            let (_, seen) = timeout(async {
                tokio::join!(
                    send_all(client, &input),
                    serve(AuthorityRewrite::new(server))
                )
            })
            .await;
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn violations_reach_h2_unchanged() {
        let block = encode(&mut Encoder::new(), &request(Some("/tmp/sgw.sock")));
        let start = frame(HEADERS, 0, 1, &block[..5]);
        let cont = |flags, stream| frame(CONTINUATION, flags, stream, &[]);
        let one = |flags, stream, payload: &[u8]| vec![frame(HEADERS, flags, stream, payload)];
        let both = |payload: &[u8]| one(END_HEADERS, 1, &[&GET[..], payload].concat());
        // Indexes a 3000-byte value, then refers to it 30 times: ~91 KB decoded.
        let bomb_entry = b"\x40\x06x-bomb\x7f\xb9\x16".as_slice();
        let bomb = [bomb_entry, &[b'a'; 3000], &[0xbe; 30]].concat();
        let mut non_canonical = huff(b"/x");
        *non_canonical.last_mut().expect("bytes") &= 0xf8;
        let long_value = [&[0x01, 0x7f, 0xcd, 0x07], &[b'/'; 1100][..]].concat();
        let cases = [
            // Malformed HPACK, which h2 refuses.
            one(END_HEADERS, 1, &[0x80]),
            one(END_HEADERS, 1, b"\x41\x0d/tmp"),
            one(END_HEADERS, 1, &[0x3f, 0xff, 0xff, 0xff, 0xff, 0x01]),
            one(END_HEADERS, 1, &bomb),
            one(END_HEADERS, 1, &[0x3f, 0xe1, 0x3f, 0x82]),
            // Framing errors.
            [vec![start.clone()], vec![cont(0, 1); 6]].concat(),
            vec![start.clone(), cont(END_HEADERS, 3)],
            vec![start.clone(), frame(0, 0, 1, b"x")],
            vec![cont(END_HEADERS, 1)],
            one(END_HEADERS, 0, &block),
            one(END_HEADERS | PADDED, 1, &[9, 0x82]),
            one(END_HEADERS | PRIORITY, 1, &[0x82]),
            vec![frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2])],
            one(END_HEADERS, 1, &vec![0x82; 16_385]),
            // Authorities not ours to repair.
            both(b"\x41\x01a\x41\x02/x"), // two of them
            both(b"\x41\x01a\x7e\x02/x"), // named after a dynamic entry
            both(b"\x41\x00"),            // empty, to be indexed
            both(&[&[0x41], &non_canonical[..]].concat()),
            both(&long_value),
        ];
        for frames in &cases {
            let input = conn(frames);
            let (out, rw) = drive(vec![input.clone()], 4096);
            assert!(out.expect("forwarded") == input, "{frames:02x?}");
            assert!(!rw.is_rewriting());
        }
        // On a connection being repaired: the block goes out unchanged, repairs go on.
        let first = frame(HEADERS, END_HEADERS, 1, &socket_block());
        let fixed = run(&conn(std::slice::from_ref(&first))).expect("valid");
        let again = frame(HEADERS, END_HEADERS, 5, &[&GET[..], b"\x01\x02/y"].concat());
        let continued = cases[..5].iter().chain(&cases[14..]);
        for frames in continued {
            let input = conn(&[vec![first.clone()], frames.clone(), vec![again.clone()]].concat());
            let out = run(&input).expect("forwarded");
            let (head, tail) = out.split_at(fixed.len());
            assert_eq!(head, fixed);
            let (unchanged, repaired) = tail.split_at(frames.concat().len());
            assert_eq!(unchanged, frames.concat());
            let repaired = parse(&[PREFACE, repaired].concat()).expect("a frame");
            let block = Decoder::new().decode(&repaired[0].3).expect("decodes");
            assert_eq!(block[3], (b":authority".to_vec(), b"localhost".to_vec()));
        }
        for frames in &cases[5..14] {
            let input = conn(&[vec![first.clone()], frames.clone(), vec![again.clone()]].concat());
            let out = run(&input).expect("forwarded");
            assert!(out == [&fixed[..], &input[fixed.len()..]].concat());
        }

        // h2's limit is inclusive: 5 CONTINUATIONs plus the final one are fine.
        let last = frame(CONTINUATION, END_HEADERS, 1, &block[5..]);
        let at_limit = [vec![start], vec![cont(0, 1); 5], vec![last]].concat();
        let (out, rw) = drive(vec![conn(&at_limit)], 4096);
        assert!(out.is_ok() && rw.is_rewriting());

        // Ending inside a frame is an error, and the connection stays dead.
        let input = two_requests(Some("/tmp/sgw.sock"));
        let truncated = input[..input.len() - 3].to_vec();
        let (res, mut rw) = drive(vec![truncated], 4096);
        assert_eq!(
            res.expect_err("truncated").kind(),
            io::ErrorKind::UnexpectedEof
        );
        let (mut cx, mut buf) = (Context::from_waker(Waker::noop()), [0; 1024]);
        let res = Pin::new(&mut rw).poll_read(&mut cx, &mut ReadBuf::new(&mut buf));
        assert!(matches!(res, Poll::Ready(Err(_))));
    }

    /// A small HPACK encoder that, unlike loona's, indexes and Huffman-codes, choosing at
    /// random, so the dynamic table fills and evicts.
    #[derive(Default)]
    struct Hpack {
        table: VecDeque<(Vec<u8>, Vec<u8>)>,
        size: usize,
    }

    impl Hpack {
        fn encode(&mut self, headers: &Headers, rng: &mut Rng) -> Vec<u8> {
            let mut out = Vec::new();
            if rng.below(5) == 0 {
                out.extend([0x3f, 0xe1, 0x1f]); // table size update to 4096
            }
            let int = |out: &mut Vec<u8>, flags: u8, prefix_bits, value| {
                let start = out.len();
                put_int(out, prefix_bits, value);
                out[start] |= flags;
            };
            let string = |out: &mut Vec<u8>, s: &[u8], rng: &mut Rng| {
                out.extend(if rng.below(2) == 0 { raw(s) } else { huff(s) });
            };
            for (name, value) in headers {
                let found = self
                    .table
                    .iter()
                    .position(|e| e.0 == *name && e.1 == *value);
                if let Some(at) = found.filter(|_| rng.below(4) > 0) {
                    int(&mut out, 0x80, 7, 62 + at);
                    continue;
                }
                let (flags, prefix_bits, indexing) =
                    [(0x40, 6, true), (0, 4, false), (0x10, 4, false)][[0, 0, 1, 2][rng.below(4)]];
                let statics: [&[u8]; 4] = [b":authority", b":method", b":path", b":scheme"];
                match statics.iter().position(|s| s == name) {
                    Some(at) if rng.below(3) > 0 => {
                        int(&mut out, flags, prefix_bits, [1, 2, 4, 6][at])
                    }
                    _ => {
                        out.push(flags);
                        string(&mut out, name, rng);
                    }
                }
                string(&mut out, value, rng);
                if indexing {
                    self.size += name.len() + value.len() + 32;
                    self.table.push_front((name.clone(), value.clone()));
                    while self.size > 4096 {
                        let (n, v) = self.table.pop_back().expect("entries");
                        self.size -= n.len() + v.len() + 32;
                    }
                }
            }
            out
        }
    }

    #[test]
    fn random_header_lists_stay_in_sync() {
        let mut rng = Rng(0x7ab1e);
        let (mut indexed, mut referenced) = (0, 0);
        for _ in 0..300 {
            let mut enc = Hpack::default();
            let (mut frames, mut sent) = (Vec::new(), Vec::new());
            for i in 0..1 + rng.below(12) {
                let authority = match (i, rng.below(5)) {
                    (0, _) | (_, 0) => format!("/tmp/{}.sock", "s".repeat(rng.below(600))),
                    (_, 1) => format!("%2Fr{}", rng.below(1000)),
                    (_, 2) => "localhost:50051".to_owned(),
                    _ => format!("/{}", rng.below(3)),
                };
                let mut h = request(Some(&authority));
                for _ in 0..rng.below(4) {
                    let name = format!("x-h{}", rng.below(6)).into_bytes();
                    h.push((name, vec![b'v'; rng.below(1500)]));
                }
                let block = enc.encode(&h, &mut rng);
                let stream = 1 + 2 * i as u32;
                frames.push(frame(HEADERS, END_HEADERS, stream, &block));
                sent.push(h);
            }
            let (out, rw) = drive(vec![conn(&frames)], 64 * 1024);
            let got = blocks(&parse(&out.expect("valid")).expect("frames"));
            assert!(rw.is_rewriting());
            for ((_, _, got), sent) in got.iter().zip(&sent) {
                assert_eq!(got.len(), sent.len());
                for (got, sent) in got.iter().zip(sent) {
                    assert_eq!(got.0, sent.0);
                    let valid = http::uri::Authority::try_from(&sent.1[..]).is_ok();
                    if got.0 != b":authority" || valid {
                        assert!(got.1 == sent.1, "{}", String::from_utf8_lossy(&got.0));
                    } else if got.1 == b"localhost" {
                        assert!(sent.1.len() != 9 || got.1 == replaced(9).as_bytes());
                    } else {
                        assert_eq!(got.1, replaced(sent.1.len()).as_bytes());
                        indexed += 1;
                    }
                }
            }
            referenced += enc.table.len();
        }
        assert!(indexed > 100 && referenced > 1000, "{indexed} {referenced}");
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
                    // HPACK-shaped junk scanned in rewrite mode: table refs, literals
                    // (some of them `:authority`, some Huffman-coded), noise.
                    let mut hpack = Vec::new();
                    for _ in 0..1 + rng.below(8) {
                        match rng.below(4) {
                            0 => hpack.push(0x80 | (1 + rng.below(70)) as u8),
                            1 => hpack.extend([0x40 | rng.below(8) as u8, 2, b'a', b'b']),
                            2 => {
                                hpack.push([0x01, 0x41, 0x11][rng.below(3)]);
                                let value = rng.bytes(0, 12);
                                hpack.push(0x80 | value.len() as u8);
                                hpack.extend(value);
                            }
                            _ => hpack.extend(rng.bytes(1, 3)),
                        }
                    }
                    conn(&[first.clone(), frame(HEADERS, END_HEADERS, 3, &hpack)])
                }
            };
            let max_chunk = 1 + rng.below(64);
            let chunks = rng.chunks(&input, max_chunk);
            match drive(chunks, 1 + rng.below(512)) {
                (Ok(out), rw) if !rw.is_rewriting() => {
                    assert!(out == input, "passthrough must be exact");
                }
                (Ok(out), _) => {
                    // Whole frames in, whole frames out; only header blocks change.
                    if let Some(orig) = parse(&input) {
                        let frames = parse(&out).expect("whole frames");
                        assert_eq!(non_header(&frames), non_header(&orig));
                    }
                    rewritten += 1;
                }
                (Err(e), _) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof),
            }
        }
        assert!(
            rewritten > 1000,
            "the rewrite path must be exercised, not just errors"
        );
    }

    const SHORT: Deadlines = Deadlines {
        handshake: Duration::from_secs(3),
        header_block: Duration::from_secs(5),
    };

    /// Reads until the wrapper fails; returns the error and when it came.
    async fn read_until_error(rw: &mut AuthorityRewrite<DuplexStream>) -> (io::Error, Duration) {
        let start = Instant::now();
        let err = rw.read_to_end(&mut Vec::new()).await.expect_err("cut");
        (err, start.elapsed())
    }

    fn assert_cut(err: &io::Error, elapsed: Duration, after: Duration, what: &str) {
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains(what), "{err}");
        let late = elapsed.checked_sub(after).expect("not before the deadline");
        assert!(late < Duration::from_millis(10), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_deadline_cuts_a_slow_handshake() {
        let settings = conn(&[]);
        let cases = [
            &PREFACE[..10],
            PREFACE,
            &settings[..PREFACE.len() + 4],
            &settings[..settings.len() - 1],
        ];
        for sent in cases {
            let (mut client, server) = duplex(1024);
            let mut rw = AuthorityRewrite::with_deadlines(server, SHORT);
            client.write_all(sent).await.expect("write");
            let (err, elapsed) = read_until_error(&mut rw).await;
            assert_cut(
                &err,
                elapsed,
                SHORT.handshake,
                "preface and SETTINGS within 3s",
            );
            let again = rw.read(&mut [0; 16]).await;
            assert!(again.is_err(), "stays failed");
        }
        // The default: 10 s.
        let (_client, server) = duplex(1024);
        let (err, elapsed) = read_until_error(&mut AuthorityRewrite::new(server)).await;
        assert_cut(&err, elapsed, Duration::from_secs(10), "within 10s");
        // Too large to add to a deadline: none.
        let never = Deadlines {
            handshake: Duration::MAX,
            header_block: Duration::MAX,
        };
        let (_client, server) = duplex(1024);
        let (mut rw, mut buf) = (AuthorityRewrite::with_deadlines(server, never), [0; 16]);
        let read = tokio::time::timeout(Duration::from_secs(1 << 30), rw.read(&mut buf));
        assert!(read.await.is_err(), "still waiting");
    }

    #[tokio::test(start_paused = true)]
    async fn header_block_deadline_cuts_an_unfinished_block() {
        let block = encode(&mut Encoder::new(), &request(Some("/tmp/sgw.sock")));
        let open = frame(HEADERS, 0, 3, &block);
        let whole = frame(HEADERS, END_HEADERS, 3, &block);
        let first = frame(HEADERS, END_HEADERS, 1, &socket_block());
        // (already sent, then after 2 s, then a byte a second)
        let cases = [
            (conn(&[]), open.clone(), vec![]),
            (conn(&[]), whole[..20].to_vec(), vec![]),
            (conn(&[]), whole[..9].to_vec(), whole[9..].to_vec()),
            (conn(std::slice::from_ref(&first)), open.clone(), vec![]),
            (conn(&[first]), whole[..9].to_vec(), whole[9..].to_vec()),
        ];
        for (before, headers, trickle) in cases {
            let (mut client, server) = duplex(64 * 1024);
            let mut rw = AuthorityRewrite::with_deadlines(server, SHORT);
            client.write_all(&before).await.expect("write");
            let expected = run(&before).expect("valid");
            let mut got = vec![0; expected.len()];
            rw.read_exact(&mut got)
                .await
                .expect("handshake and first block");
            assert!(got == expected);
            let client = async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                client.write_all(&headers).await.expect("write");
                for byte in trickle {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if client.write_all(&[byte]).await.is_err() {
                        break;
                    }
                }
                client
            };
            let ((err, elapsed), _client) = tokio::join!(read_until_error(&mut rw), client);
            let after = Duration::from_secs(2) + SHORT.header_block;
            assert_cut(
                &err,
                elapsed,
                after,
                "header block of stream 3 not complete within 5s",
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_not_cut() {
        let valid = encode(&mut Encoder::new(), &request(Some("localhost")));
        let cases = [
            conn(&[]),
            conn(&[frame(HEADERS, END_HEADERS, 1, &valid)]),
            conn(&[frame(HEADERS, END_HEADERS, 1, &socket_block())]),
        ];
        for input in cases {
            let (mut client, server) = duplex(64 * 1024);
            let mut rw = AuthorityRewrite::with_deadlines(server, SHORT);
            client.write_all(&input).await.expect("write");
            let expected = run(&input).expect("valid");
            let mut got = vec![0; expected.len()];
            rw.read_exact(&mut got).await.expect("read");
            assert!(got == expected);
            let mut buf = [0; 64];
            let idle = tokio::time::timeout(Duration::from_secs(3600), rw.read(&mut buf));
            assert!(idle.await.is_err(), "an hour later, still open");
            let ping = frame(0x6, 0, 0, &[7; 8]);
            client.write_all(&ping).await.expect("write");
            let mut got = vec![0; ping.len()];
            rw.read_exact(&mut got).await.expect("still served");
            assert_eq!(got, ping);
        }
    }
}
