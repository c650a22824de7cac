//! SPDY/3.1 framing, the byte format under kubectl's `port-forward` (also tunnelled inside a
//! WebSocket) and its `exec`/`attach` fallback: frame encoding and decoding, and the header
//! blocks, which are one zlib stream per direction primed with the SPDY/3 dictionary.
//!
//! flate2's default (miniz) backend cannot set a zlib dictionary, so the inflater is primed by
//! feeding a raw-deflate *stored block* holding the dictionary before the peer's data: later
//! back-references then resolve into it exactly as with `inflateSetDictionary`. Our own
//! header blocks are compressed without a dictionary, which zlib readers accept because the
//! stream header says so (no `FDICT` flag).

use std::sync::LazyLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The most payload one frame can carry (24-bit length).
pub(crate) const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;
/// Upper bound on a decompressed header block: kubectl's are a few hundred bytes.
const MAX_HEADER_BLOCK: usize = 1 << 20;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status: the stream was refused or is not wanted.
pub(crate) const RST_REFUSED_STREAM: u32 = 3;

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1): the
/// words below, each prefixed with its big-endian u32 length, then a run of common values.
pub(crate) static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
        "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
});

/// Header name/value pairs; names are lowercase on the wire, multiple values NUL-joined.
pub(crate) type Headers = Vec<(String, String)>;

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    /// A peer opens a stream.
    SynStream {
        id: u32,
        associated: u32,
        priority: u8,
        fin: bool,
        headers: Headers,
    },
    /// The answer to a SYN_STREAM: the stream is accepted.
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    /// Abnormal stream termination.
    RstStream { id: u32, status: u32 },
    /// Connection settings as (flags, id, value); read and ignored.
    Settings(Vec<(u8, u32, u32)>),
    /// Liveness check; the receiver echoes the peer's pings.
    Ping(u32),
    /// The sender accepts no more streams.
    GoAway { last_good: u32, status: u32 },
    /// Extra headers on an open stream.
    Headers {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    /// Flow-control credit; kubectl's spdystream neither sends nor honours it.
    WindowUpdate { id: u32, delta: u32 },
    /// Stream payload.
    Data { id: u32, fin: bool, data: Bytes },
    /// A control frame type this codec does not know (skipped, as the spec says).
    Unknown(u16),
}

/// Malformed input.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpdyError {
    /// Not a SPDY/3 control frame or a truncated field.
    #[error("spdy protocol error: {0}")]
    Protocol(String),
    /// The header block did not (de)compress.
    #[error("spdy header compression: {0}")]
    Compression(String),
}

fn protocol(msg: impl Into<String>) -> SpdyError {
    SpdyError::Protocol(msg.into())
}

/// zlib's Adler-32, to check the peer's dictionary id.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// Reads frames from a byte stream; owns the inbound header zlib stream.
pub(crate) struct Decoder {
    inflate: Decompress,
    /// Whether the zlib stream header (and dictionary id) has been consumed.
    started: bool,
}

impl Decoder {
    /// A decoder whose inflater already holds the dictionary as history.
    pub(crate) fn new() -> Result<Self, SpdyError> {
        let dict = DICTIONARY.as_slice();
        let len = dict.len() as u16;
        let mut primer = vec![0x00]; // BFINAL=0, BTYPE=00 (stored), padded to the byte
        primer.extend_from_slice(&len.to_le_bytes());
        primer.extend_from_slice(&(!len).to_le_bytes());
        primer.extend_from_slice(dict);
        let mut inflate = Decompress::new(false);
        let mut out = Vec::with_capacity(dict.len() + 64);
        inflate
            .decompress_vec(&primer, &mut out, FlushDecompress::Sync)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        if out != dict {
            return Err(SpdyError::Compression(
                "priming the dictionary failed".into(),
            ));
        }
        Ok(Self {
            inflate,
            started: false,
        })
    }

    fn inflate(&mut self, mut block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if !self.started {
            let (cmf, flg) = match block {
                [c, f, ..] => (*c, *f),
                _ => return Err(SpdyError::Compression("short zlib header".into())),
            };
            if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
                return Err(SpdyError::Compression("not a zlib stream".into()));
            }
            block = &block[2..];
            if flg & 0x20 != 0 {
                if block.len() < 4 {
                    return Err(SpdyError::Compression("short zlib dictionary id".into()));
                }
                let id = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                if id != adler32(&DICTIONARY) {
                    return Err(SpdyError::Compression(format!(
                        "peer uses an unknown dictionary {id:#x}"
                    )));
                }
                block = &block[4..];
            }
            self.started = true;
        }
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        loop {
            let before = self.inflate.total_in();
            out.reserve(1024);
            self.inflate
                .decompress_vec(block, &mut out, FlushDecompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let used = (self.inflate.total_in() - before) as usize;
            block = &block[used..];
            // Done once all input is consumed and the output did not fill the space given.
            if block.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::Compression("header block too large".into()));
            }
        }
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        parse_header_block(&raw)
    }

    /// Takes one whole frame off the front of `buf`, or `None` if more bytes are needed.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < 8 + len {
            return Ok(None);
        }
        let head = buf.split_to(8);
        let mut body = buf.split_to(len).freeze();
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Some(Frame::Data {
                id,
                fin: flags & FLAG_FIN != 0,
                data: body,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != 3 {
            return Err(protocol(format!("unsupported SPDY version {version}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        let need = |n: usize| {
            if len < n {
                Err(protocol(format!("control frame {kind} too short")))
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(10)?;
                let id = body.get_u32() & 0x7fff_ffff;
                let associated = body.get_u32() & 0x7fff_ffff;
                let priority = body.get_u8() >> 5;
                body.advance(1);
                Frame::SynStream {
                    id,
                    associated,
                    priority,
                    fin,
                    headers: self.headers(&body)?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need(4)?;
                let id = body.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&body)?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply { id, fin, headers }
                } else {
                    Frame::Headers { id, fin, headers }
                }
            }
            TYPE_RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    id: body.get_u32() & 0x7fff_ffff,
                    status: body.get_u32(),
                }
            }
            TYPE_SETTINGS => {
                need(4)?;
                let n = body.get_u32() as usize;
                if body.len() < n.saturating_mul(8) {
                    return Err(protocol("SETTINGS entries truncated"));
                }
                let entries = (0..n)
                    .map(|_| {
                        let word = body.get_u32();
                        ((word >> 24) as u8, word & 0x00ff_ffff, body.get_u32())
                    })
                    .collect();
                Frame::Settings(entries)
            }
            TYPE_PING => {
                need(4)?;
                Frame::Ping(body.get_u32())
            }
            TYPE_GOAWAY => {
                need(4)?;
                let last_good = body.get_u32() & 0x7fff_ffff;
                let status = if body.len() >= 4 { body.get_u32() } else { 0 };
                Frame::GoAway { last_good, status }
            }
            TYPE_WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    id: body.get_u32() & 0x7fff_ffff,
                    delta: body.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown(other),
        };
        Ok(Some(frame))
    }
}

fn parse_header_block(raw: &[u8]) -> Result<Headers, SpdyError> {
    let mut b = raw;
    let short = || protocol("header block truncated");
    let take = |b: &mut &[u8]| -> Result<String, SpdyError> {
        if b.len() < 4 {
            return Err(short());
        }
        let n = b.get_u32() as usize;
        if b.len() < n {
            return Err(short());
        }
        let s = String::from_utf8_lossy(&b[..n]).into_owned();
        b.advance(n);
        Ok(s)
    };
    if b.len() < 4 {
        return Err(short());
    }
    let count = b.get_u32();
    let mut headers = Vec::new();
    for _ in 0..count {
        let name = take(&mut b)?;
        let value = take(&mut b)?;
        headers.push((name, value));
    }
    Ok(headers)
}

/// Writes frames; owns the outbound header zlib stream.
pub(crate) struct Encoder {
    deflate: Compress,
}

impl Encoder {
    /// A fresh outbound stream (zlib header, no dictionary).
    pub(crate) fn new() -> Self {
        Self {
            deflate: Compress::new(Compression::default(), true),
        }
    }

    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.put_u32(headers.len() as u32);
        for (k, v) in headers {
            let k = k.to_ascii_lowercase();
            raw.put_u32(k.len() as u32);
            raw.extend_from_slice(k.as_bytes());
            raw.put_u32(v.len() as u32);
            raw.extend_from_slice(v.as_bytes());
        }
        let mut input = raw.as_slice();
        let mut out = Vec::with_capacity(raw.len() + 64);
        loop {
            let before = self.deflate.total_in();
            out.reserve(256);
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            // The sync flush is complete once the input is gone and output space was left over.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Appends the wire form of `frame` to `out`.
    pub(crate) fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        let mut body = Vec::new();
        let (kind, flags) = match frame {
            Frame::Data { id, fin, data } => {
                if data.len() > MAX_FRAME_PAYLOAD {
                    return Err(protocol("data frame too large"));
                }
                out.put_u32(id & 0x7fff_ffff);
                out.put_u8(if *fin { FLAG_FIN } else { 0 });
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream {
                id,
                associated,
                priority,
                fin,
                headers,
            } => {
                body.put_u32(*id);
                body.put_u32(*associated);
                body.put_u8(priority << 5);
                body.put_u8(0);
                body.extend(self.compress(headers)?);
                (TYPE_SYN_STREAM, u8::from(*fin))
            }
            Frame::SynReply { id, fin, headers } | Frame::Headers { id, fin, headers } => {
                body.put_u32(*id);
                body.extend(self.compress(headers)?);
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                (kind, u8::from(*fin))
            }
            Frame::RstStream { id, status } => {
                body.put_u32(*id);
                body.put_u32(*status);
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings(entries) => {
                body.put_u32(entries.len() as u32);
                for (flags, id, value) in entries {
                    body.put_u32(u32::from(*flags) << 24 | (id & 0x00ff_ffff));
                    body.put_u32(*value);
                }
                (TYPE_SETTINGS, 0)
            }
            Frame::Ping(id) => {
                body.put_u32(*id);
                (TYPE_PING, 0)
            }
            Frame::GoAway { last_good, status } => {
                body.put_u32(*last_good);
                body.put_u32(*status);
                (TYPE_GOAWAY, 0)
            }
            Frame::WindowUpdate { id, delta } => {
                body.put_u32(*id);
                body.put_u32(*delta);
                (TYPE_WINDOW_UPDATE, 0)
            }
            Frame::Unknown(kind) => return Err(protocol(format!("cannot encode frame {kind}"))),
        };
        out.put_u16(0x8003);
        out.put_u16(kind);
        out.put_u8(flags);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&body);
        Ok(())
    }
}

/// The first value of header `name` (case-insensitive).
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(v.as_str()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = Decoder::new().unwrap();
        // Feed byte by byte: decoding must wait for whole frames.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.put_u8(b);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert!(buf.is_empty());
        got
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
    }

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                id: 1,
                associated: 0,
                priority: 2,
                fin: false,
                headers: h(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynReply {
                id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Data {
                id: 3,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                id: 5,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Headers {
                id: 1,
                fin: true,
                headers: h(&[("a", "b\0c")]),
            },
            Frame::RstStream { id: 7, status: 5 },
            Frame::Settings(vec![(1, 4, 100), (0, 7, 65536)]),
            Frame::Ping(9),
            Frame::WindowUpdate { id: 0, delta: 1000 },
            Frame::GoAway {
                last_good: 7,
                status: 0,
            },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_takes_the_first_value() {
        let hs = h(&[("streamtype", "data"), ("port", "80\x0081")]);
        assert_eq!(header(&hs, "streamType"), Some("data"));
        assert_eq!(header(&hs, "Port"), Some("80"));
        assert_eq!(header(&hs, "requestID"), None);
    }

    /// Two SYN_STREAM frames from one zlib stream compressed *with* the SPDY/3 dictionary, as
    /// Go's `zlib.NewWriterLevelDict` (spdystream) writes them; generated with Python's zlib
    /// (`compressobj(9, zdict=...)`, `Z_SYNC_FLUSH` per block).
    #[test]
    fn decodes_dictionary_compressed_header_blocks() {
        let blocks: [&[u8]; 2] = [DICT_BLOCK_1, DICT_BLOCK_2];
        let mut wire = Vec::new();
        for (i, block) in blocks.iter().enumerate() {
            let len = 10 + block.len();
            wire.extend_from_slice(&[0x80, 0x03, 0x00, 0x01, 0x00]);
            wire.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
            wire.extend_from_slice(&(1 + 2 * i as u32).to_be_bytes());
            wire.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            wire.extend_from_slice(block);
        }
        let mut dec = Decoder::new().unwrap();
        let mut buf = BytesMut::from(wire.as_slice());
        let first = dec.decode(&mut buf).unwrap().unwrap();
        let second = dec.decode(&mut buf).unwrap().unwrap();
        let Frame::SynStream { id, headers, .. } = first else {
            panic!("{first:?}")
        };
        assert_eq!(id, 1);
        assert_eq!(
            headers,
            h(&[
                ("port", "8080"),
                ("requestid", "0"),
                ("streamtype", "error")
            ])
        );
        let Frame::SynStream { id, headers, .. } = second else {
            panic!("{second:?}")
        };
        assert_eq!(id, 3);
        assert_eq!(
            headers,
            h(&[("port", "8080"), ("requestid", "0"), ("streamtype", "data")])
        );
    }

    #[test]
    fn dictionary_id_matches_the_wire() {
        // Every SPDY/3 header stream starts 78 f9 e3 c6 a7 c2: the id is adler32(dictionary).
        assert_eq!(adler32(&DICTIONARY), 0xe3c6_a7c2);
    }

    #[test]
    fn rejects_a_foreign_dictionary() {
        let mut dec = Decoder::new().unwrap();
        let block = [0x78, 0xbb, 0, 0, 0, 1, 0x02, 0x00];
        assert!(dec.inflate(&block).is_err());
    }

    // Generated test vectors (see decodes_dictionary_compressed_header_blocks).
    const DICT_BLOCK_1: &[u8] = &[
        0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2, 0x02, 0x25, 0x3a, 0x48, 0xf9, 0x5b, 0x04, 0x4e, 0xea,
        0x16, 0x06, 0x16, 0x06, 0x40, 0x9a, 0xb3, 0x08, 0x12, 0x5f, 0x99, 0xa0, 0x74, 0xcc, 0x68,
        0x00, 0x4e, 0x89, 0x25, 0x45, 0xa9, 0x89, 0xb9, 0xd0, 0xc2, 0x86, 0x35, 0x15, 0x14, 0x15,
        0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
    ];
    const DICT_BLOCK_2: &[u8] = &[
        0x22, 0x53, 0x33, 0xa8, 0xa4, 0x4a, 0x04, 0x00, 0x00, 0x00, 0xff, 0xff,
    ];
}
