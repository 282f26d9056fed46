//! Server → client: tagged completions, the untagged data the traces need,
//! continuation requests. FETCH data is skipped, literals included: only the
//! sequence number, the UID and the count of skipped bytes are kept.

use super::error::DecodeError;
use super::frame::{Framer, Limits, Line};
use super::lex::{Lexer, Token};
use super::types::{SequenceSet, Spanned, Status, bounded_text};

/// What a server line meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// The completion of a command.
    Tagged(Tagged),
    /// Untagged data.
    Untagged(Untagged),
    /// `+`: a continuation request (its text, maybe a SASL challenge, is
    /// not kept).
    Continuation,
    /// A line that is no response; not kept.
    Malformed {
        /// Which rule it broke.
        reason: &'static str,
    },
}

/// A tagged status response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The command's tag.
    pub tag: String,
    /// OK, NO or BAD.
    pub status: Status,
    /// The response code, if any.
    pub code: Option<ResponseCode>,
    /// The human-readable text (at most 1 KiB).
    pub text: String,
}

/// The untagged responses the proxy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Untagged {
    /// `* OK|NO|BAD|PREAUTH|BYE [code] text` (the greeting included).
    Status {
        /// The status.
        status: Status,
        /// The response code, if any.
        code: Option<ResponseCode>,
        /// The text (at most 1 KiB).
        text: String,
    },
    /// `* CAPABILITY …` (upper-case).
    Capability(Vec<String>),
    /// `* n EXISTS`
    Exists(u32),
    /// `* n EXPUNGE` (a sequence number).
    Expunge(u32),
    /// `* VANISHED [(EARLIER)] uids` (RFC 7162).
    Vanished {
        /// `(EARLIER)`: a resynchronisation, not an expunge just done.
        earlier: bool,
        /// The UIDs.
        uids: SequenceSet,
    },
    /// `* n FETCH (…)`: skipped, only the UID (when returned) and the byte
    /// count of the literals are kept.
    Fetch {
        /// Sequence number.
        seq: u32,
        /// `UID n` inside the data, if present.
        uid: Option<u32>,
        /// Bytes of literals skipped.
        literal_bytes: u64,
    },
    /// Anything else (LIST, STATUS, FLAGS, SEARCH, ESEARCH, RECENT…): its
    /// upper-case name only.
    Other {
        /// The response name.
        name: String,
    },
}

/// A response code, `[…]` at the start of a status text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `[CAPABILITY …]` (upper-case).
    Capability(Vec<String>),
    /// `[COPYUID uidvalidity source-uids destination-uids]` (RFC 4315).
    CopyUid {
        /// UIDVALIDITY of the destination.
        uid_validity: u32,
        /// UIDs in the source mailbox.
        source: SequenceSet,
        /// Matching UIDs in the destination.
        destination: SequenceSet,
    },
    /// `[APPENDUID uidvalidity uids]` (RFC 4315).
    AppendUid {
        /// UIDVALIDITY of the destination.
        uid_validity: u32,
        /// UIDs of the appended messages.
        uids: SequenceSet,
    },
    /// `[UIDNEXT n]`
    UidNext(u32),
    /// `[UIDVALIDITY n]`
    UidValidity(u32),
    /// Any other code (`UNAVAILABLE`, `ALERT`, `TRYCREATE`…): its
    /// upper-case name.
    Other {
        /// The code's name.
        name: String,
    },
}

/// Decodes the server → client direction.
#[derive(Debug)]
pub struct ServerDecoder {
    limits: Limits,
    framer: Framer,
}

impl ServerDecoder {
    /// A decoder for a new connection (or a new TLS layer).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            framer: Framer::new(limits),
        }
    }

    /// Starts over, positions from 0 (after STARTTLS).
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// Decodes a chunk of any size; complete lines become events.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Spanned<ServerEvent>>,
    ) -> Result<(), DecodeError> {
        while let Some(line) = self.framer.next_line(&mut input)? {
            out.push(Spanned {
                start: line.start,
                end: line.end,
                event: decode_line(&line),
            });
        }
        Ok(())
    }
}

const MAX_TEXT: usize = 1024;

fn decode_line(line: &Line<'_>) -> ServerEvent {
    let text = line.text;
    if text.first() == Some(&b'+') {
        return ServerEvent::Continuation;
    }
    let Some((first, rest)) = split_word(text) else {
        return ServerEvent::Malformed {
            reason: "empty line",
        };
    };
    if first == b"*" {
        return untagged(line, rest);
    }
    let Some((status, rest)) = split_word(rest) else {
        return ServerEvent::Malformed {
            reason: "tag without status",
        };
    };
    match Status::parse(status) {
        Some(status @ (Status::Ok | Status::No | Status::Bad)) => {
            let (code, text) = resp_text(rest);
            ServerEvent::Tagged(Tagged {
                tag: bounded_text(first, 128),
                status,
                code,
                text,
            })
        }
        _ => ServerEvent::Malformed {
            reason: "tagged response without OK, NO or BAD",
        },
    }
}

fn untagged(line: &Line<'_>, rest: &[u8]) -> ServerEvent {
    let Some((word, after)) = split_word(rest) else {
        return ServerEvent::Malformed {
            reason: "empty untagged response",
        };
    };
    if let Some(number) = parse_number(word) {
        let Some((name, _)) = split_word(after) else {
            return ServerEvent::Malformed {
                reason: "number without response name",
            };
        };
        let name = name.to_ascii_uppercase();
        return ServerEvent::Untagged(match name.as_slice() {
            b"EXISTS" => Untagged::Exists(number),
            b"EXPUNGE" => Untagged::Expunge(number),
            b"FETCH" => Untagged::Fetch {
                seq: number,
                uid: fetch_uid(line),
                literal_bytes: line.literal_bytes(),
            },
            _ => Untagged::Other {
                name: bounded_text(&name, 64),
            },
        });
    }
    if let Some(status) = Status::parse(word) {
        let (code, text) = resp_text(after);
        return ServerEvent::Untagged(Untagged::Status { status, code, text });
    }
    let name = word.to_ascii_uppercase();
    ServerEvent::Untagged(match name.as_slice() {
        b"CAPABILITY" => Untagged::Capability(capabilities(after)),
        b"VANISHED" => {
            let (earlier, set) = match split_word(after) {
                Some((word, set)) if word.eq_ignore_ascii_case(b"(EARLIER)") => (true, set),
                _ => (false, after),
            };
            match std::str::from_utf8(set).ok().and_then(SequenceSet::parse) {
                Some(uids) => Untagged::Vanished { earlier, uids },
                None => {
                    return ServerEvent::Malformed {
                        reason: "VANISHED without a UID set",
                    };
                }
            }
        }
        _ => Untagged::Other {
            name: bounded_text(&name, 64),
        },
    })
}

/// `UID n` at the top level of the FETCH data.
fn fetch_uid(line: &Line<'_>) -> Option<u32> {
    let mut lexer = Lexer::new(line.text, line.literals);
    let mut depth = 0usize;
    let mut previous_was_uid = false;
    while let Some(token) = lexer.next_token().ok()? {
        match token {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            Token::Atom(atom) if depth == 1 => {
                if previous_was_uid {
                    return parse_number(atom);
                }
                previous_was_uid = atom.eq_ignore_ascii_case(b"UID");
                continue;
            }
            _ => {}
        }
        previous_was_uid = false;
    }
    None
}

/// `[code] text` or `text`.
fn resp_text(rest: &[u8]) -> (Option<ResponseCode>, String) {
    if let Some(inner) = rest.strip_prefix(b"[")
        && let Some(close) = inner.iter().position(|&b| b == b']')
    {
        {
            let code = response_code(&inner[..close]);
            let text = inner[close + 1..]
                .strip_prefix(b" ")
                .unwrap_or(&inner[close + 1..]);
            return (Some(code), bounded_text(text, MAX_TEXT));
        }
    }
    (None, bounded_text(rest, MAX_TEXT))
}

fn response_code(code: &[u8]) -> ResponseCode {
    let (name, args) = split_word(code).unwrap_or((code, b""));
    let name = name.to_ascii_uppercase();
    let mut words = args.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let set = |word: Option<&[u8]>| std::str::from_utf8(word?).ok().and_then(SequenceSet::parse);
    let parsed = match name.as_slice() {
        b"CAPABILITY" => Some(ResponseCode::Capability(capabilities(args))),
        b"COPYUID" => (|| {
            Some(ResponseCode::CopyUid {
                uid_validity: parse_number(words.next()?)?,
                source: set(words.next())?,
                destination: set(words.next())?,
            })
        })(),
        b"APPENDUID" => (|| {
            Some(ResponseCode::AppendUid {
                uid_validity: parse_number(words.next()?)?,
                uids: set(words.next())?,
            })
        })(),
        b"UIDNEXT" => words
            .next()
            .and_then(parse_number)
            .map(ResponseCode::UidNext),
        b"UIDVALIDITY" => words
            .next()
            .and_then(parse_number)
            .map(ResponseCode::UidValidity),
        _ => None,
    };
    parsed.unwrap_or_else(|| ResponseCode::Other {
        name: bounded_text(&name, 64),
    })
}

fn capabilities(list: &[u8]) -> Vec<String> {
    list.split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .take(256)
        .map(|w| bounded_text(&w.to_ascii_uppercase(), 128))
        .collect()
}

fn split_word(text: &[u8]) -> Option<(&[u8], &[u8])> {
    if text.is_empty() {
        return None;
    }
    Some(match text.iter().position(|&b| b == b' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[]),
    })
}

fn parse_number(word: &[u8]) -> Option<u32> {
    if word.is_empty() || word.len() > 10 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}
