//! The CRI container log format: one record per line of output,
//! `2026-11-22T04:00:00.123456789Z stdout F hello`.
//!
//! The tag is `F` for a full line and `P` for a piece of a line longer than [`MAX_LINE`] bytes
//! (the rest follows in later records; the last piece is `F`). [`LineFramer`] cuts a byte stream
//! into records; [`format_record`] renders one; [`parse_record`] reads one back (for
//! `kubectl logs`).

use jiff::Timestamp;

/// Longest line content in one record; longer lines are split into `P` records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The name written in the log (`stdout` / `stderr`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One piece of output to be written as a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Line content without the newline.
    pub content: Vec<u8>,
    /// `true` for a `P` record (the line goes on).
    pub partial: bool,
}

/// Cuts a byte stream into log records: call [`push`](Self::push) with each read, then
/// [`finish`](Self::finish) at end of stream.
#[derive(Debug, Default)]
pub struct LineFramer {
    pending: Vec<u8>,
}

impl LineFramer {
    /// A framer with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; returns the records that are complete now.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Chunk> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(newline) => {
                    self.pending.extend_from_slice(&data[..newline]);
                    data = &data[newline + 1..];
                    self.drain_long(&mut out);
                    out.push(Chunk {
                        content: std::mem::take(&mut self.pending),
                        partial: false,
                    });
                }
                None => {
                    self.pending.extend_from_slice(data);
                    data = &[];
                    self.drain_long(&mut out);
                }
            }
        }
        out
    }

    /// Ends the stream: a buffered unterminated line becomes a final `F` record.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.pending.is_empty() {
            None
        } else {
            Some(Chunk {
                content: std::mem::take(&mut self.pending),
                partial: false,
            })
        }
    }

    /// Emits `P` records while more than [`MAX_LINE`] bytes are pending, keeping the rest.
    fn drain_long(&mut self, out: &mut Vec<Chunk>) {
        while self.pending.len() > MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            out.push(Chunk {
                content: std::mem::replace(&mut self.pending, rest),
                partial: true,
            });
        }
    }
}

/// Renders one record, newline included.
pub fn format_record(at: Timestamp, stream: Stream, chunk: &Chunk) -> Vec<u8> {
    let tag = if chunk.partial { 'P' } else { 'F' };
    let mut line = format!("{at:.9} {} {tag} ", stream.as_str()).into_bytes();
    line.extend_from_slice(&chunk.content);
    line.push(b'\n');
    line
}

/// One parsed record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// When the output was read.
    pub timestamp: Timestamp,
    /// Which stream.
    pub stream: Stream,
    /// `P` record.
    pub partial: bool,
    /// Content without newline.
    pub content: &'a [u8],
}

/// Parses one record (without or with its trailing newline); `None` if malformed.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or(&[]);
    Some(Record {
        timestamp,
        stream,
        partial,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> Chunk {
        Chunk {
            content: s.as_bytes().to_vec(),
            partial: false,
        }
    }

    #[test]
    fn framer_splits_on_newlines_across_reads() {
        let mut framer = LineFramer::new();
        assert_eq!(framer.push(b"hel"), vec![]);
        assert_eq!(framer.push(b"lo\nwor"), vec![full("hello")]);
        assert_eq!(framer.push(b"ld\n\nx"), vec![full("world"), full("")]);
        assert_eq!(framer.finish(), Some(full("x")));
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn framer_cuts_long_lines_into_partial_records() {
        let mut framer = LineFramer::new();
        let long = vec![b'a'; MAX_LINE * 2 + 10];
        let mut chunks = framer.push(&long);
        chunks.extend(framer.push(b"\n"));
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].partial && chunks[1].partial && !chunks[2].partial);
        assert_eq!(chunks[0].content.len(), MAX_LINE);
        assert_eq!(chunks[2].content.len(), 10);
    }

    #[test]
    fn format_record_uses_nanosecond_rfc3339_and_tag() {
        let at: Timestamp = "2026-11-22T04:00:00.123456789Z".parse().expect("timestamp");
        let line = format_record(at, Stream::Stdout, &full("hello"));
        assert_eq!(line, b"2026-11-22T04:00:00.123456789Z stdout F hello\n");
        let at: Timestamp = "2026-11-22T04:00:00Z".parse().expect("timestamp");
        let chunk = Chunk {
            content: b"x y".to_vec(),
            partial: true,
        };
        let line = format_record(at, Stream::Stderr, &chunk);
        assert_eq!(line, b"2026-11-22T04:00:00.000000000Z stderr P x y\n");
    }

    #[test]
    fn parse_record_reads_back_what_format_record_wrote() {
        let at: Timestamp = "2026-11-22T04:00:00.5Z".parse().expect("timestamp");
        let line = format_record(at, Stream::Stderr, &full("a b  c"));
        let record = parse_record(&line).expect("parses");
        assert_eq!(record.timestamp, at);
        assert_eq!(record.stream, Stream::Stderr);
        assert!(!record.partial);
        assert_eq!(record.content, b"a b  c");
        assert_eq!(
            parse_record(b"2026-11-22T04:00:00Z stdout F ")
                .expect("parses")
                .content,
            b""
        );
        assert!(parse_record(b"garbage").is_none());
        assert!(parse_record(b"2026-11-22T04:00:00Z stdin F x").is_none());
    }
}
