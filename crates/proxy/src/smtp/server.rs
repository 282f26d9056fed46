//! Server → client: replies, multi-line ones (`250-…` then `250 …`) as one
//! event, with the enhanced status code (RFC 3463), the EHLO extensions
//! and the queue id of a final reply.

use std::fmt;

use super::error::DecodeError;
use super::frame::{Framer, Limits, bounded_text};
use crate::imap::Spanned;

/// What server bytes meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A complete reply (all its lines; the span covers them).
    Reply(Reply),
    /// A line that is no reply line; not kept.
    Malformed {
        /// Which rule it broke.
        reason: &'static str,
    },
}

/// A reply: its code, and the text of its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code (of the last line, as clients read it).
    pub code: u16,
    /// The enhanced status code at the start of the first line's text.
    pub enhanced: Option<EnhancedCode>,
    /// Each line's text after the code and separator, as sent (lossy
    /// UTF-8; at most [`MAX_REPLY_LINES`] lines of 1 KiB).
    pub lines: Vec<String>,
    /// More lines (or longer ones) than kept.
    pub truncated: bool,
}

/// At most this many lines of a reply are kept.
pub const MAX_REPLY_LINES: usize = 256;
const MAX_TEXT: usize = 1024;

/// `class.subject.detail` (RFC 3463), e.g. `2.0.0`, `5.1.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// Subject (0–999).
    pub subject: u16,
    /// Detail (0–999).
    pub detail: u16,
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// An EHLO extension line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Upper-case keyword (`PIPELINING`, `SIZE`, `AUTH`…).
    pub keyword: String,
    /// Its parameters, as sent (`10240000`; `PLAIN LOGIN`…).
    pub params: Vec<String>,
}

impl Reply {
    /// 2yz.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 3yz (334 AUTH challenge, 354 start mail input).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// 4yz: a temporary failure.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// 5yz: a permanent failure.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The lines joined by `\n`, for a trace's response text.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// The extensions of a reply to EHLO (every line after the first,
    /// which names the server).
    pub fn extensions(&self) -> Vec<Extension> {
        self.lines
            .iter()
            .skip(1)
            .filter_map(|line| {
                let mut words = line.split_ascii_whitespace();
                let keyword = words.next()?.to_ascii_uppercase();
                Some(Extension {
                    keyword,
                    params: words.map(str::to_owned).collect(),
                })
            })
            .collect()
    }

    /// The queue id of a final reply to a message: `queued as ID`
    /// (Postfix, and Dovecot submission relaying it), or `id=ID` (Exim).
    pub fn queue_id(&self) -> Option<String> {
        self.lines.iter().find_map(|line| {
            let lower = line.to_ascii_lowercase();
            let after = if let Some(i) = lower.find("queued as ") {
                &line[i + "queued as ".len()..]
            } else {
                let i = lower
                    .match_indices("id=")
                    .find(|(i, _)| *i == 0 || lower.as_bytes()[i - 1] == b' ')?
                    .0;
                &line[i + 3..]
            };
            let id: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                .take(64)
                .collect();
            let id = id.trim_end_matches('.');
            (!id.is_empty()).then(|| id.to_owned())
        })
    }
}

#[derive(Debug, Default)]
struct Pending {
    start: u64,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
    truncated: bool,
}

/// Decodes the server → client direction.
#[derive(Debug)]
pub struct ServerDecoder {
    limits: Limits,
    framer: Framer,
    pending: Option<Pending>,
}

impl ServerDecoder {
    /// A decoder for a new connection (or a new TLS layer).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            framer: Framer::new(),
            pending: None,
        }
    }

    /// Starts over, positions from 0 (after STARTTLS).
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Decodes a chunk of any size; complete replies become events.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Spanned<ServerEvent>>,
    ) -> Result<(), DecodeError> {
        let max_line = self.limits.max_line;
        while let Some(line) = self.framer.next_line(&mut input, |_| max_line)? {
            let text = line.text;
            let valid = text.len() >= 3
                && (b'2'..=b'5').contains(&text[0])
                && text[1..3].iter().all(u8::is_ascii_digit)
                && matches!(text.get(3), None | Some(b' ' | b'-'));
            if !valid {
                out.push(Spanned {
                    start: line.start,
                    end: line.end,
                    event: ServerEvent::Malformed {
                        reason: "not a reply line",
                    },
                });
                continue;
            }
            let pending = self.pending.get_or_insert_with(|| Pending {
                start: line.start,
                enhanced: enhanced(text),
                ..Pending::default()
            });
            let body = text.get(4..).unwrap_or_default();
            if pending.lines.len() < MAX_REPLY_LINES {
                pending.truncated |= body.len() > MAX_TEXT;
                pending.lines.push(bounded_text(body, MAX_TEXT));
            } else {
                pending.truncated = true;
            }
            if text.get(3) == Some(&b'-') {
                continue;
            }
            let pending = self.pending.take().unwrap_or_default();
            let code = u16::from(text[0] - b'0') * 100
                + u16::from(text[1] - b'0') * 10
                + u16::from(text[2] - b'0');
            out.push(Spanned {
                start: pending.start,
                end: line.end,
                event: ServerEvent::Reply(Reply {
                    code,
                    enhanced: pending
                        .enhanced
                        .filter(|e| u16::from(e.class) == code / 100),
                    lines: pending.lines,
                    truncated: pending.truncated,
                }),
            });
        }
        Ok(())
    }
}

/// `c.s.d ` at the start of a reply line's text.
fn enhanced(line: &[u8]) -> Option<EnhancedCode> {
    let text = line.get(4..)?;
    let word = text.split(|&b| b == b' ').next()?;
    let mut parts = word.split(|&b| b == b'.');
    let number = |part: Option<&[u8]>| -> Option<u16> {
        let part = part?;
        if part.is_empty() || part.len() > 3 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let class = number(parts.next())?;
    let subject = number(parts.next())?;
    let detail = number(parts.next())?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some(EnhancedCode {
        class: u8::try_from(class).ok()?,
        subject,
        detail,
    })
}

/// Given the bytes of one complete reply to EHLO (a [`ServerEvent::Reply`]'s
/// span), returns the same reply without the extensions named in `drop`
/// (any case), the continuation marks fixed; `None` when there is nothing
/// to remove, and the reply must then be forwarded as is.
pub fn without_extensions(reply: &[u8], drop: &[&str]) -> Option<Vec<u8>> {
    let lines: Vec<&[u8]> = reply.split_inclusive(|&b| b == b'\n').collect();
    let keep = |index: usize, line: &[u8]| {
        if index == 0 {
            return true;
        }
        let text = line.get(4..).unwrap_or_default();
        let keyword = text
            .split(|&b| matches!(b, b' ' | b'\r' | b'\n'))
            .next()
            .unwrap_or_default();
        !drop
            .iter()
            .any(|d| keyword.eq_ignore_ascii_case(d.as_bytes()))
    };
    let kept: Vec<&[u8]> = lines
        .iter()
        .enumerate()
        .filter(|(i, line)| keep(*i, line))
        .map(|(_, line)| *line)
        .collect();
    if kept.len() == lines.len() {
        return None;
    }
    let mut out = Vec::with_capacity(reply.len());
    for (i, line) in kept.iter().enumerate() {
        let start = out.len();
        out.extend_from_slice(line);
        if matches!(out.get(start + 3), Some(b' ' | b'-')) {
            out[start + 3] = if i + 1 == kept.len() { b' ' } else { b'-' };
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(bytes: &[u8]) -> Vec<Spanned<ServerEvent>> {
        let mut decoder = ServerDecoder::new(Limits::default());
        let mut out = Vec::new();
        decoder.feed(bytes, &mut out).expect("decodes");
        out
    }

    #[test]
    fn multi_line_reply_with_extensions() {
        let bytes = b"250-mx.hopital.fr\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 CHUNKING\r\n";
        let out = replies(bytes);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start, out[0].end), (0, bytes.len() as u64));
        let ServerEvent::Reply(reply) = &out[0].event else {
            panic!("reply")
        };
        assert_eq!(reply.code, 250);
        let extensions = reply.extensions();
        assert_eq!(extensions.len(), 4);
        assert_eq!(extensions[2].keyword, "AUTH");
        assert_eq!(extensions[2].params, ["PLAIN", "LOGIN"]);
        assert_eq!(
            without_extensions(bytes, &["chunking"]).as_deref(),
            Some(&b"250-mx.hopital.fr\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 AUTH PLAIN LOGIN\r\n"[..])
        );
        assert_eq!(without_extensions(bytes, &["STARTTLS"]), None);
    }

    #[test]
    fn enhanced_codes_and_queue_ids() {
        let out = replies(
            b"250 2.0.0 Ok: queued as 4F2A1C3B9D\r\n550 5.1.1 <x@y.fr>: Recipient address rejected\r\n250 OK id=1rAbCd-000123-Xy\r\n354 End data with <CR><LF>.<CR><LF>\r\n250\r\n",
        );
        let replies: Vec<&Reply> = out
            .iter()
            .map(|e| match &e.event {
                ServerEvent::Reply(r) => r,
                ServerEvent::Malformed { .. } => panic!("malformed"),
            })
            .collect();
        assert_eq!(replies[0].queue_id().as_deref(), Some("4F2A1C3B9D"));
        assert_eq!(
            replies[0].enhanced.map(|e| e.to_string()).as_deref(),
            Some("2.0.0")
        );
        assert_eq!(
            replies[1].enhanced,
            Some(EnhancedCode {
                class: 5,
                subject: 1,
                detail: 1
            })
        );
        assert!(replies[1].is_permanent() && replies[1].queue_id().is_none());
        assert_eq!(replies[2].queue_id().as_deref(), Some("1rAbCd-000123-Xy"));
        assert!(replies[3].is_intermediate() && replies[3].enhanced.is_none());
        assert_eq!(replies[4].lines, [""]);
    }

    #[test]
    fn malformed_lines() {
        let out = replies(b"hello\r\n600 no\r\n25\r\n250x\r\n");
        assert_eq!(out.len(), 4);
        assert!(
            out.iter()
                .all(|e| matches!(e.event, ServerEvent::Malformed { .. }))
        );
    }
}
