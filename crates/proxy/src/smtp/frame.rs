//! Line framing shared by both directions: text up to LF (a CR before it is
//! removed), bounded, with positions counted from the decoder's creation.

use super::error::DecodeError;

/// Bounds of one direction's decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest command or reply line, CRLF included (default 4 KiB: RFC
    /// 5321 §4.5.3.1.4 says 512, raised by extensions' parameters).
    pub max_line: usize,
    /// Longest AUTH line (the command with its initial response, or a
    /// continuation line: OAuth tokens are long; default 64 KiB).
    pub max_auth_line: usize,
    /// Largest message counted, DATA or the BDAT chunks of one transaction
    /// (skipped, never buffered; default 100 MiB).
    pub max_message: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 4 * 1024,
            max_auth_line: 64 * 1024,
            max_message: 100 * 1024 * 1024,
        }
    }
}

/// One complete line, its CRLF (or bare LF) removed.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    pub text: &'a [u8],
    pub start: u64,
    pub end: u64,
}

#[derive(Debug)]
pub(crate) struct Framer {
    text: Vec<u8>,
    /// Bytes consumed since creation.
    position: u64,
    /// Position of the current line's first byte.
    start: u64,
    /// The previous call returned a line: clear it before going on.
    returned: bool,
    failed: Option<DecodeError>,
}

impl Framer {
    pub fn new() -> Self {
        Self {
            text: Vec::new(),
            position: 0,
            start: 0,
            returned: false,
            failed: None,
        }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// Counts `n` bytes that are not lines (a message, a chunk, bytes after
    /// STARTTLS) as consumed.
    pub fn skip_raw(&mut self, n: u64) {
        self.clear_returned();
        self.position += n;
        self.start = self.position;
    }

    fn clear_returned(&mut self) {
        if self.returned {
            self.returned = false;
            self.text.clear();
            self.start = self.position;
        }
    }

    /// Consumes bytes from `input` until a line is complete (returned) or
    /// `input` is empty (`None`). `limit` says how long the line may grow,
    /// given its beginning (at least 5 bytes of it when the bound is
    /// crossed, so the answer does not depend on the chunking).
    pub fn next_line<'a>(
        &'a mut self,
        input: &mut &[u8],
        limit: impl Fn(&[u8]) -> usize,
    ) -> Result<Option<Line<'a>>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.clear_returned();
        if input.is_empty() {
            return Ok(None);
        }
        let (segment, complete) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (&input[..=i], true),
            None => (*input, false),
        };
        let grown = self.text.len() + segment.len();
        if grown > 5 {
            let mut head = [0u8; 5];
            for (i, byte) in head.iter_mut().enumerate() {
                *byte = if i < self.text.len() {
                    self.text[i]
                } else {
                    segment[i - self.text.len()]
                };
            }
            let limit = limit(&head);
            if grown > limit {
                return Err(self.fail(DecodeError::LineTooLong { limit }));
            }
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
        self.returned = true;
        Ok(Some(Line {
            text: &self.text,
            start: self.start,
            end: self.position,
        }))
    }

    pub fn fail(&mut self, error: DecodeError) -> DecodeError {
        self.text = Vec::new();
        self.failed = Some(error.clone());
        error
    }

    pub fn failed(&self) -> Option<&DecodeError> {
        self.failed.as_ref()
    }
}

/// Lossy UTF-8, cut on a character boundary: shared with the IMAP side.
pub(crate) use crate::imap::types::bounded_text;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_bounds() {
        let mut framer = Framer::new();
        let mut input: &[u8] = b"EHLO x\r\nNOOP\nQU";
        let mut lines = Vec::new();
        while let Some(line) = framer.next_line(&mut input, |_| 16).expect("frames") {
            lines.push((line.text.to_vec(), line.start, line.end));
        }
        assert_eq!(
            lines,
            [(b"EHLO x".to_vec(), 0, 8), (b"NOOP".to_vec(), 8, 13)]
        );
        let mut input: &[u8] = b"IT and more than sixteen\r\n";
        assert_eq!(
            framer.next_line(&mut input, |_| 16).unwrap_err(),
            DecodeError::LineTooLong { limit: 16 }
        );
        let mut input: &[u8] = b"\r\n";
        assert!(framer.next_line(&mut input, |_| 16).is_err());
    }
}
