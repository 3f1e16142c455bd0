//! SPDY/3.1 framing, as far as the Kubernetes streaming protocols use it (the framing
//! `moby/spdystream` speaks for client-go): control frames (SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and DATA frames, with header blocks compressed
//! by one zlib stream per direction that uses the SPDY/3 dictionary.
//!
//! Compressed header blocks from the peer reference the dictionary; they are inflated by a raw
//! inflater whose window is primed with the dictionary (a stored deflate block holding it, whose
//! output is discarded), so no zlib library with preset-dictionary support is needed. Our own
//! header blocks are compressed without the dictionary (no `FDICT` flag), which every zlib reader
//! accepts.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The SPDY version spoken.
pub const VERSION: u16 = 3;
/// Largest frame payload accepted from a peer.
pub const MAX_FRAME: usize = 16 << 20;
/// Largest decompressed header block accepted from a peer.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Control frame types.
pub mod kind {
    /// Opens a stream.
    pub const SYN_STREAM: u16 = 1;
    /// Accepts a stream.
    pub const SYN_REPLY: u16 = 2;
    /// Aborts a stream.
    pub const RST_STREAM: u16 = 3;
    /// Connection settings.
    pub const SETTINGS: u16 = 4;
    /// Liveness check, echoed by the receiver.
    pub const PING: u16 = 6;
    /// Ends the connection.
    pub const GOAWAY: u16 = 7;
    /// More headers for a stream.
    pub const HEADERS: u16 = 8;
    /// Flow-control credit.
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes.
pub mod rst {
    /// Malformed stream.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The stream is refused.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream was cancelled.
    pub const CANCEL: u32 = 5;
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The connection failed.
    #[error("reading a SPDY frame: {0}")]
    Io(#[from] std::io::Error),
    /// A frame is malformed.
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
    /// A frame is larger than we accept.
    #[error("SPDY frame of {0} bytes is too large")]
    TooLarge(usize),
    /// The peer speaks another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A header block could not be inflated or deflated.
    #[error("SPDY header compression: {0}")]
    Compression(String),
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// SYN_STREAM.
    SynStream {
        /// The new stream.
        stream_id: u32,
        /// The stream it is associated to (0: none).
        associated: u32,
        /// Priority 0 (highest) to 7.
        priority: u8,
        /// FLAG_FIN: the sender sends nothing more.
        fin: bool,
        /// FLAG_UNIDIRECTIONAL.
        unidirectional: bool,
        /// Lower-case header names and their values.
        headers: Vec<(String, String)>,
    },
    /// SYN_REPLY.
    SynReply {
        /// The accepted stream.
        stream_id: u32,
        /// FLAG_FIN.
        fin: bool,
        /// Reply headers.
        headers: Vec<(String, String)>,
    },
    /// RST_STREAM.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Status code (see [`rst`]).
        status: u32,
    },
    /// PING.
    Ping {
        /// The ping id (echoed).
        id: u32,
    },
    /// GOAWAY.
    GoAway {
        /// Last stream id the sender processed.
        last_good: u32,
        /// Status code.
        status: u32,
    },
    /// HEADERS.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN.
        fin: bool,
        /// The headers.
        headers: Vec<(String, String)>,
    },
    /// WINDOW_UPDATE.
    WindowUpdate {
        /// The stream.
        stream_id: u32,
        /// Credit added.
        delta: u32,
    },
    /// A DATA frame.
    Data {
        /// The stream.
        stream_id: u32,
        /// FLAG_FIN: the last frame of the sender's half.
        fin: bool,
        /// Payload.
        data: Bytes,
    },
    /// SETTINGS or an unknown control frame (ignored, as the spec asks).
    Other {
        /// Control frame type.
        kind: u16,
    },
}

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const STREAM_MASK: u32 = 0x7fff_ffff;

/// Inflates the peer's header blocks: one zlib stream across all frames of a connection.
pub struct HeaderInflater {
    inner: Decompress,
    /// The zlib stream header (2 bytes, plus a 4-byte dictionary id) is still to be skipped.
    header_pending: bool,
}

impl std::fmt::Debug for HeaderInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderInflater").finish_non_exhaustive()
    }
}

impl HeaderInflater {
    /// A fresh inflater whose window holds the SPDY dictionary.
    pub fn new() -> Result<Self, SpdyError> {
        let mut inner = Decompress::new(false);
        let len = u16::try_from(DICTIONARY.len())
            .map_err(|_| SpdyError::Compression("dictionary too long".into()))?;
        // A non-final stored block: BFINAL=0, BTYPE=00, then LEN and NLEN (little endian).
        let mut primer = vec![0u8];
        primer.extend_from_slice(&len.to_le_bytes());
        primer.extend_from_slice(&(!len).to_le_bytes());
        primer.extend_from_slice(DICTIONARY);
        let mut out = Vec::with_capacity(DICTIONARY.len() + 64);
        inner
            .decompress_vec(&primer, &mut out, FlushDecompress::Sync)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        if out != DICTIONARY {
            return Err(SpdyError::Compression(
                "priming the header inflater failed".into(),
            ));
        }
        Ok(Self {
            inner,
            header_pending: true,
        })
    }

    /// Inflates one frame's header block.
    pub fn inflate(&mut self, mut block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if self.header_pending {
            let [cmf, flg, ..] = *block else {
                return Err(SpdyError::Malformed("short zlib header"));
            };
            if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
                return Err(SpdyError::Compression("bad zlib header".into()));
            }
            let skip = if flg & 0x20 != 0 { 6 } else { 2 };
            block = block
                .get(skip..)
                .ok_or(SpdyError::Malformed("short zlib header"))?;
            self.header_pending = false;
        }
        let mut out = Vec::with_capacity(block.len() * 4 + 256);
        let mut pos = 0;
        loop {
            let before_in = self.inner.total_in();
            let before_out = out.len();
            let status = self
                .inner
                .decompress_vec(&block[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            let consumed = usize::try_from(self.inner.total_in() - before_in)
                .map_err(|_| SpdyError::Compression("counter overflow".into()))?;
            pos += consumed;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(SpdyError::TooLarge(out.len()));
            }
            let room_left = out.len() < out.capacity();
            if (pos >= block.len() && room_left) || status == Status::StreamEnd {
                return Ok(out);
            }
            if consumed == 0 && out.len() == before_out && room_left {
                return Err(SpdyError::Compression(
                    "header block does not inflate".into(),
                ));
            }
            out.reserve(4096);
        }
    }
}

/// Deflates our header blocks: one zlib stream per connection, sync-flushed per frame.
pub struct HeaderDeflater {
    inner: Compress,
}

impl std::fmt::Debug for HeaderDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDeflater").finish_non_exhaustive()
    }
}

impl Default for HeaderDeflater {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDeflater {
    /// A fresh deflater (zlib framing, no preset dictionary).
    pub fn new() -> Self {
        Self {
            inner: Compress::new(Compression::default(), true),
        }
    }

    /// Deflates one header block, flushed so the peer can inflate it at once.
    pub fn deflate(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() + 64);
        let mut pos = 0;
        loop {
            let before_in = self.inner.total_in();
            self.inner
                .compress_vec(&block[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            pos += usize::try_from(self.inner.total_in() - before_in)
                .map_err(|_| SpdyError::Compression("counter overflow".into()))?;
            if pos >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            out.reserve(256);
        }
    }
}

/// Encodes a SPDY/3 header block (uncompressed).
pub fn encode_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let count = u32::try_from(headers.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for (name, value) in headers {
        for s in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(s);
        }
    }
    out
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], SpdyError> {
    if data.len() < n {
        return Err(SpdyError::Malformed("truncated header block"));
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Ok(head)
}

fn take_u32(data: &mut &[u8]) -> Result<u32, SpdyError> {
    let bytes = take(data, 4)?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Decodes a SPDY/3 header block (inflated).
pub fn decode_headers(mut data: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let count = take_u32(&mut data)? as usize;
    if count > data.len() / 8 {
        return Err(SpdyError::Malformed("header count exceeds the block"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let len = take_u32(&mut data)? as usize;
        let name = String::from_utf8_lossy(take(&mut data, len)?).to_ascii_lowercase();
        let len = take_u32(&mut data)? as usize;
        let value = String::from_utf8_lossy(take(&mut data, len)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

fn be32(data: &[u8], at: usize) -> Result<u32, SpdyError> {
    data.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(SpdyError::Malformed("control frame too short"))
}

/// Reads the next frame; `None` at a clean end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    inflater: &mut HeaderInflater,
) -> Result<Option<Frame>, SpdyError> {
    let mut head = [0u8; 8];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let flags = head[4];
    let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
    if len > MAX_FRAME {
        return Err(SpdyError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    let fin = flags & FLAG_FIN != 0;
    if head[0] & 0x80 == 0 {
        let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & STREAM_MASK;
        return Ok(Some(Frame::Data {
            stream_id,
            fin,
            data: Bytes::from(payload),
        }));
    }
    let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let frame_kind = u16::from_be_bytes([head[2], head[3]]);
    let p = &payload;
    let frame = match frame_kind {
        kind::SYN_STREAM => {
            let block = p
                .get(10..)
                .ok_or(SpdyError::Malformed("SYN_STREAM too short"))?;
            Frame::SynStream {
                stream_id: be32(p, 0)? & STREAM_MASK,
                associated: be32(p, 4)? & STREAM_MASK,
                priority: p[8] >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: decode_headers(&inflater.inflate(block)?)?,
            }
        }
        kind::SYN_REPLY | kind::HEADERS => {
            let block = p
                .get(4..)
                .ok_or(SpdyError::Malformed("SYN_REPLY/HEADERS too short"))?;
            let stream_id = be32(p, 0)? & STREAM_MASK;
            let headers = decode_headers(&inflater.inflate(block)?)?;
            if frame_kind == kind::SYN_REPLY {
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream_id,
                    fin,
                    headers,
                }
            }
        }
        kind::RST_STREAM => Frame::RstStream {
            stream_id: be32(p, 0)? & STREAM_MASK,
            status: be32(p, 4)?,
        },
        kind::PING => Frame::Ping { id: be32(p, 0)? },
        kind::GOAWAY => Frame::GoAway {
            last_good: be32(p, 0)? & STREAM_MASK,
            status: be32(p, 4).unwrap_or(0),
        },
        kind::WINDOW_UPDATE => Frame::WindowUpdate {
            stream_id: be32(p, 0)? & STREAM_MASK,
            delta: be32(p, 4)? & STREAM_MASK,
        },
        other => Frame::Other { kind: other },
    };
    Ok(Some(frame))
}

fn control(
    out: &mut BytesMut,
    frame_kind: u16,
    flags: u8,
    payload: &[u8],
) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME {
        return Err(SpdyError::TooLarge(payload.len()));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_kind);
    out.put_u8(flags);
    out.put_uint(payload.len() as u64, 3);
    out.put_slice(payload);
    Ok(())
}

/// Appends the wire form of `frame` to `out`, compressing header blocks with `deflater`.
pub fn encode_frame(
    frame: &Frame,
    deflater: &mut HeaderDeflater,
    out: &mut BytesMut,
) -> Result<(), SpdyError> {
    let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            if data.len() > MAX_FRAME {
                return Err(SpdyError::TooLarge(data.len()));
            }
            out.put_u32(stream_id & STREAM_MASK);
            out.put_u8(fin_flag(*fin));
            out.put_uint(data.len() as u64, 3);
            out.put_slice(data);
            Ok(())
        }
        Frame::SynStream {
            stream_id,
            associated,
            priority,
            fin,
            unidirectional,
            headers,
        } => {
            let mut p = Vec::new();
            p.extend_from_slice(&(stream_id & STREAM_MASK).to_be_bytes());
            p.extend_from_slice(&(associated & STREAM_MASK).to_be_bytes());
            p.push((priority & 0x07) << 5);
            p.push(0);
            p.extend_from_slice(&deflater.deflate(&encode_headers(headers))?);
            let flags = fin_flag(*fin)
                | if *unidirectional {
                    FLAG_UNIDIRECTIONAL
                } else {
                    0
                };
            control(out, kind::SYN_STREAM, flags, &p)
        }
        Frame::SynReply {
            stream_id,
            fin,
            headers,
        }
        | Frame::Headers {
            stream_id,
            fin,
            headers,
        } => {
            let frame_kind = if matches!(frame, Frame::SynReply { .. }) {
                kind::SYN_REPLY
            } else {
                kind::HEADERS
            };
            let mut p = (stream_id & STREAM_MASK).to_be_bytes().to_vec();
            p.extend_from_slice(&deflater.deflate(&encode_headers(headers))?);
            control(out, frame_kind, fin_flag(*fin), &p)
        }
        Frame::RstStream { stream_id, status } => {
            let mut p = (stream_id & STREAM_MASK).to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(out, kind::RST_STREAM, 0, &p)
        }
        Frame::Ping { id } => control(out, kind::PING, 0, &id.to_be_bytes()),
        Frame::GoAway { last_good, status } => {
            let mut p = (last_good & STREAM_MASK).to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(out, kind::GOAWAY, 0, &p)
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut p = (stream_id & STREAM_MASK).to_be_bytes().to_vec();
            p.extend_from_slice(&(delta & STREAM_MASK).to_be_bytes());
            control(out, kind::WINDOW_UPDATE, 0, &p)
        }
        Frame::Other { kind: k } => control(out, *k, 0, &[]),
    }
}

/// The SPDY/3 header compression dictionary (from the SPDY/3 specification).
pub const DICTIONARY: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\
    \x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-char\
    set\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-\
    ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\
    \x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10c\
    ontent-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\
    \x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\
    \x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\
    \x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\
    \x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
    \x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\
    \x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\
    \x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0br\
    etry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\
    \x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04va\
    ry\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\
    \x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\
    \x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230\
    3304305306307402405406407408409410411412413414415416417502504505203\x20Non-Authoritative\
    \x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\x20Request401\
    \x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Internal\x20Server\x20Error501\
    \x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20Feb\x20Mar\x20Apr\x20May\x20Ju\
    n\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mon,\x20Tue,\x20Wed,\x20Thu,\
    \x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png,image/jpg,image/gif,applicati\
    on/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflat\
    e,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// Starts the task that writes a connection's outgoing frames (header blocks compressed with the
/// connection's one deflater, in order) and shuts the writer down once every sender is gone or a
/// write fails. `what` names the protocol in logs.
pub fn spawn_frame_writer<W>(
    mut writer: W,
    what: &'static str,
) -> (mpsc::Sender<Frame>, JoinHandle<()>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (out, mut frames) = mpsc::channel::<Frame>(64);
    let task = tokio::spawn(async move {
        let mut deflater = HeaderDeflater::new();
        let mut buf = BytesMut::new();
        while let Some(frame) = frames.recv().await {
            buf.clear();
            if let Err(error) = encode_frame(&frame, &mut deflater, &mut buf) {
                tracing::warn!(%error, what, "encoding a SPDY frame failed");
                break;
            }
            if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        if let Err(error) = writer.shutdown().await {
            tracing::debug!(%error, what, "closing the SPDY connection failed");
        }
    });
    (out, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn inflates_blocks_compressed_with_the_spdy_dictionary() {
        // Two consecutive header blocks as a zlib writer with the SPDY dictionary (client-go's
        // spdystream) produces them: FDICT set, back-references into the dictionary.
        let first = hex("78bbe3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff");
        let second = hex("c2aa19540e2512d60b000000ffff");
        let mut inflater = HeaderInflater::new().expect("inflater");
        let headers = decode_headers(&inflater.inflate(&first).expect("first")).expect("decode");
        assert_eq!(
            headers,
            pairs(&[
                ("streamtype", "error"),
                ("port", "8080"),
                ("requestid", "0")
            ])
        );
        let headers = decode_headers(&inflater.inflate(&second).expect("second")).expect("decode");
        assert_eq!(
            headers,
            pairs(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")])
        );
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 2,
                fin: false,
                unidirectional: false,
                headers: pairs(&[("streamtype", "data"), ("port", "80")]),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good: 5,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
        ];
        let mut deflater = HeaderDeflater::new();
        let mut wire = BytesMut::new();
        for frame in &frames {
            encode_frame(frame, &mut deflater, &mut wire).expect("encode");
        }
        let mut reader: &[u8] = &wire;
        let mut inflater = HeaderInflater::new().expect("inflater");
        for frame in &frames {
            let got = read_frame(&mut reader, &mut inflater)
                .await
                .expect("read")
                .expect("frame");
            assert_eq!(&got, frame);
        }
        assert!(read_frame(&mut reader, &mut inflater)
            .await
            .expect("eof")
            .is_none());
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut inflater = HeaderInflater::new().expect("inflater");
        // A SYN_STREAM whose header block is not zlib.
        let wire = [
            0x80, 0x03, 0x00, 0x01, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
        ];
        let mut reader: &[u8] = &wire;
        assert!(read_frame(&mut reader, &mut inflater).await.is_err());
        assert!(decode_headers(&[0, 0, 0, 9, 0, 0]).is_err());
        let mut reader: &[u8] = &[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut reader, &mut inflater).await,
            Err(SpdyError::Version(2))
        ));
    }
}
