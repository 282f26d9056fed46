//! Line framing shared by both directions: a logical IMAP line is text up to
//! CRLF, where a text segment ending in `{N}`, `{N+}` or `~{N}` is followed
//! by N literal bytes and then more text. The framer keeps the text (bounded)
//! and only the *position and length* of each literal: literal bytes are
//! counted and dropped as they stream by, whatever the chunking.

use super::error::DecodeError;

/// Bounds of one direction's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest logical line, literal bytes excluded (default 64 KiB).
    pub max_line: usize,
    /// Largest literal accepted (skipped, never buffered; default 100 MiB).
    pub max_literal: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 64 * 1024,
            max_literal: 100 * 1024 * 1024,
        }
    }
}

/// Where a literal stood in the line's text, and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiteralMark {
    /// Offset of its `{` (or `~`) in [`Line::text`].
    pub offset: usize,
    /// Announced length.
    pub len: u64,
    /// `{N}`: the client waits for the server's `+` before sending it.
    pub synchronising: bool,
}

/// One complete logical line.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// The text, final CRLF removed; each literal is present only as its
    /// `{N}` announcement.
    pub text: &'a [u8],
    pub literals: &'a [LiteralMark],
    pub start: u64,
    pub end: u64,
}

impl Line<'_> {
    pub fn literal_bytes(&self) -> u64 {
        self.literals.iter().map(|l| l.len).sum()
    }
}

/// A logical line not complete yet ([`Framer::open_line`]).
#[derive(Debug, Clone, Copy)]
pub struct OpenLine<'a> {
    /// Stream position of its first byte.
    pub start: u64,
    /// Its text so far (up to the latest literal announcement, or a partial
    /// physical line).
    pub text: &'a [u8],
    /// Literal bytes are being skipped (the text ends with `{N}`).
    pub in_literal: bool,
    /// A synchronising literal is announced and none of it was sent: the
    /// client waits for the server's `+`.
    pub awaiting_sync: bool,
}

#[derive(Debug)]
enum State {
    Text,
    Literal { remaining: u64 },
    Failed(DecodeError),
}

#[derive(Debug)]
pub(crate) struct Framer {
    limits: Limits,
    state: State,
    text: Vec<u8>,
    literals: Vec<LiteralMark>,
    /// Bytes consumed since creation.
    position: u64,
    /// Position of the current line's first byte.
    start: u64,
    /// The previous call returned a line: clear it before going on.
    returned: bool,
    /// Where the text after the latest literal begins in `text`.
    segment_start: usize,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Text,
            text: Vec::new(),
            literals: Vec::new(),
            position: 0,
            start: 0,
            returned: false,
            segment_start: 0,
        }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// Counts `n` bytes that are not IMAP (after STARTTLS) as consumed.
    pub fn skip_raw(&mut self, n: u64) {
        self.position += n;
        self.start = self.position;
    }

    /// Consumes bytes from `input` until a line is complete (returned) or
    /// `input` is empty (`None`).
    pub fn next_line<'a>(&'a mut self, input: &mut &[u8]) -> Result<Option<Line<'a>>, DecodeError> {
        if self.returned {
            self.returned = false;
            self.text.clear();
            self.literals.clear();
            self.segment_start = 0;
            self.start = self.position;
        }
        loop {
            match &mut self.state {
                State::Failed(error) => return Err(error.clone()),
                State::Literal { remaining } => {
                    // usize → u64 never loses bits on supported targets.
                    let take = (*remaining).min(input.len() as u64) as usize;
                    *remaining -= take as u64;
                    self.position += take as u64;
                    *input = &input[take..];
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.state = State::Text;
                }
                State::Text => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let (segment, complete) = match input.iter().position(|&b| b == b'\n') {
                        Some(i) => (&input[..=i], true),
                        None => (*input, false),
                    };
                    if self.text.len() + segment.len() > self.limits.max_line {
                        return Err(self.fail(DecodeError::LineTooLong {
                            limit: self.limits.max_line,
                        }));
                    }
                    self.text.extend_from_slice(segment);
                    self.position += segment.len() as u64;
                    *input = &input[segment.len()..];
                    if !complete {
                        return Ok(None);
                    }
                    self.text.pop();
                    if self.text.last() == Some(&b'\r') {
                        self.text.pop();
                    }
                    // Only this segment may announce a literal: the text
                    // before it ends with the previous announcement.
                    let segment_start = self.segment_start.min(self.text.len());
                    let segment_text = &self.text[segment_start..];
                    match trailing_literal(segment_text) {
                        Ok(Some(mut mark)) => {
                            mark.offset += segment_start;
                            if mark.len > self.limits.max_literal {
                                return Err(self.fail(DecodeError::LiteralTooLarge {
                                    announced: mark.len,
                                    limit: self.limits.max_literal,
                                }));
                            }
                            self.literals.push(mark);
                            self.segment_start = self.text.len();
                            if mark.len > 0 {
                                self.state = State::Literal {
                                    remaining: mark.len,
                                };
                            }
                        }
                        Ok(None) => {
                            self.returned = true;
                            return Ok(Some(Line {
                                text: &self.text,
                                literals: &self.literals,
                                start: self.start,
                                end: self.position,
                            }));
                        }
                        Err(error) => return Err(self.fail(error)),
                    }
                }
            }
        }
    }

    /// The text gathered so far of a line still waiting for a synchronising
    /// literal the client has not started sending, or `None`.
    pub fn pending_sync_literal(&self) -> Option<&[u8]> {
        match (&self.state, self.literals.last()) {
            (State::Literal { remaining }, Some(mark))
                if mark.synchronising && *remaining == mark.len && !self.returned =>
            {
                Some(&self.text)
            }
            _ => None,
        }
    }

    /// The logical line being read, if any byte of it was consumed and it
    /// is not complete yet.
    pub fn open_line(&self) -> Option<OpenLine<'_>> {
        if self.returned || self.position == self.start || matches!(self.state, State::Failed(_)) {
            return None;
        }
        Some(OpenLine {
            start: self.start,
            text: &self.text,
            in_literal: matches!(self.state, State::Literal { .. }),
            awaiting_sync: self.pending_sync_literal().is_some(),
        })
    }

    /// The server refused a synchronising literal (tagged NO/BAD instead of
    /// `+`): the client will not send it. Ends the pending line as it is,
    /// literal length set to 0, and returns it.
    pub fn refuse_pending_literal(&mut self) -> Option<Line<'_>> {
        self.pending_sync_literal()?;
        self.state = State::Text;
        if let Some(mark) = self.literals.last_mut() {
            mark.len = 0;
        }
        self.returned = true;
        Some(Line {
            text: &self.text,
            literals: &self.literals,
            start: self.start,
            end: self.position,
        })
    }

    fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.text = Vec::new();
        self.literals = Vec::new();
        self.state = State::Failed(error.clone());
        error
    }
}

/// A literal announced at the end of a text segment: `{N}`, `{N+}`, or with
/// a `~` before (RFC 3516 literal8).
fn trailing_literal(text: &[u8]) -> Result<Option<LiteralMark>, DecodeError> {
    let Some(body) = text.strip_suffix(b"}") else {
        return Ok(None);
    };
    let Some(open) = body.iter().rposition(|&b| b == b'{') else {
        return Ok(None);
    };
    let inner = &body[open + 1..];
    let (digits, synchronising) = match inner.strip_suffix(b"+") {
        Some(digits) => (digits, false),
        None => (inner, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Ok(None);
    }
    let len = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or(DecodeError::BadLiteralLength)?;
    let offset = if open > 0 && text[open - 1] == b'~' {
        open - 1
    } else {
        open
    };
    Ok(Some(LiteralMark {
        offset,
        len,
        synchronising,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut Framer, mut input: &[u8]) -> Vec<(Vec<u8>, Vec<u64>)> {
        let mut out = Vec::new();
        while let Some(line) = framer.next_line(&mut input).expect("frames") {
            out.push((
                line.text.to_vec(),
                line.literals.iter().map(|l| l.len).collect(),
            ));
        }
        out
    }

    #[test]
    fn literals_are_skipped_and_marked() {
        let mut framer = Framer::new(Limits::default());
        let out = lines(
            &mut framer,
            b"a LOGIN {4}\r\nuser {6+}\r\nsecret\r\nb NOOP\n",
        );
        assert_eq!(
            out,
            [
                (b"a LOGIN {4} {6+}".to_vec(), vec![4, 6]),
                (b"b NOOP".to_vec(), vec![])
            ]
        );
        assert_eq!(framer.position(), 39);
    }

    #[test]
    fn bounds_are_errors_that_stick() {
        let limits = Limits {
            max_line: 8,
            max_literal: 10,
        };
        let mut framer = Framer::new(limits);
        let mut input: &[u8] = b"a b c d e f\r\n";
        assert_eq!(
            framer.next_line(&mut input).unwrap_err(),
            DecodeError::LineTooLong { limit: 8 }
        );
        let mut more: &[u8] = b"x\r\n";
        assert!(framer.next_line(&mut more).is_err());

        let mut framer = Framer::new(limits);
        let mut input: &[u8] = b"a {11}\r\n";
        assert_eq!(
            framer.next_line(&mut input).unwrap_err(),
            DecodeError::LiteralTooLarge {
                announced: 11,
                limit: 10
            }
        );
        let mut framer = Framer::new(limits);
        let mut input: &[u8] = b"{99999999999999999999999}\r\n";
        let mut framer_big = Framer::new(Limits {
            max_line: 100,
            max_literal: 10,
        });
        assert_eq!(
            framer_big.next_line(&mut input).unwrap_err(),
            DecodeError::BadLiteralLength
        );
        let mut input: &[u8] = b"{1}";
        assert!(framer.next_line(&mut input).expect("partial").is_none());
    }
}
