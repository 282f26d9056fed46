//! Client → server: commands, AUTH continuation lines, DATA messages and
//! BDAT chunks (counted, never kept). The decoder only observes: after
//! `DATA` it holds the next bytes until [`ClientDecoder::on_decision`] says
//! whether the server answered 354 (they are a message) or refused (they
//! are commands); it learns the end of an AUTH exchange and a refused
//! STARTTLS the same way.

use super::error::DecodeError;
use super::frame::{Framer, Limits, bounded_text};
// SASL responses are the same in RFC 4954 and RFC 9051 AUTHENTICATE.
use crate::imap::sasl;
use crate::imap::{SaslIdentity, Spanned};

/// What client bytes meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A command.
    Command(Command),
    /// An AUTH continuation line: the identities it names, if the
    /// mechanism's response could be read (never the password).
    AuthResponse(Option<SaslIdentity>),
    /// `*`: the client cancelled the AUTH exchange.
    AuthCancelled,
    /// The end of a DATA message (its `.` line): the span covers the
    /// message and the terminator; nothing of the message is kept.
    Message {
        /// Message bytes, dot-stuffing removed, terminator excluded.
        size: u64,
        /// Line feeds not preceded by a carriage return: a server that
        /// takes them as line ends would see another end of data than
        /// this decoder (SMTP smuggling); the relay may refuse such
        /// messages.
        bare_line_feeds: u64,
    },
    /// The end of a BDAT chunk's bytes (the span covers them).
    Chunk {
        /// Chunk bytes.
        size: u64,
        /// `BDAT n LAST`.
        last: bool,
    },
    /// Bytes the client sent after STARTTLS, before the TLS handshake: the
    /// proxy must drop them (RFC 3207 §6, command injection).
    AfterStartTls {
        /// How many bytes.
        bytes: u64,
    },
    /// A line that is no command (the server will answer 500); not kept.
    Malformed {
        /// Which rule it broke.
        reason: &'static str,
    },
}

/// A command, summarised for the trace: a password is never kept, an
/// unknown command keeps only its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Upper-case name (`MAIL`, `RCPT`, `X-UNKNOWN`…).
    pub name: String,
    /// The arguments the traces need.
    pub args: CommandArgs,
}

/// The arguments of the commands the proxy looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandArgs {
    /// No argument, or none that is kept (unknown commands, NOOP).
    None,
    /// EHLO, HELO, LHLO.
    Hello {
        /// The client's domain or address literal (at most 255 bytes).
        domain: String,
    },
    /// AUTH (RFC 4954).
    Auth {
        /// Upper-case mechanism name.
        mechanism: String,
        /// An initial response was sent (`=` for an empty one included).
        initial_response: bool,
        /// Identities of the initial response, if any was readable.
        initial: Option<SaslIdentity>,
    },
    /// MAIL FROM.
    Mail {
        /// The reverse-path (empty for `<>`).
        from: Path,
        /// ESMTP parameters (SIZE, BODY, SMTPUTF8, RET, ENVID, AUTH…).
        params: Vec<Param>,
    },
    /// RCPT TO.
    Rcpt {
        /// The forward-path.
        to: Path,
        /// ESMTP parameters (NOTIFY, ORCPT…).
        params: Vec<Param>,
    },
    /// BDAT (RFC 3030): `size` bytes follow the line.
    Bdat {
        /// Chunk size.
        size: u64,
        /// `LAST`.
        last: bool,
    },
    /// VRFY, EXPN, HELP: the argument (at most 256 bytes; HELP's may be
    /// empty).
    Argument {
        /// As sent.
        text: String,
    },
    /// Arguments that could not be read (the server will answer 501).
    Unparsed,
}

/// An address of MAIL FROM or RCPT TO, angle brackets and any source route
/// (`@a,@b:`) removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path {
    /// The mailbox, as sent (lossy UTF-8, at most 512 bytes); empty for the
    /// null reverse-path `<>`.
    pub address: String,
}

/// An ESMTP parameter, `KEYWORD[=value]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Upper-case keyword.
    pub keyword: String,
    /// The value as sent (at most 256 bytes).
    pub value: Option<String>,
}

impl Command {
    /// `MAIL FROM`'s `SIZE=` parameter, if valid.
    pub fn declared_size(&self) -> Option<u64> {
        match &self.args {
            CommandArgs::Mail { params, .. } => params
                .iter()
                .find(|p| p.keyword == "SIZE")
                .and_then(|p| p.value.as_deref()?.parse().ok()),
            _ => None,
        }
    }

    /// The command for the trace's `request` (DESIGN §2): arguments
    /// rebuilt from what was kept, never a password or a token.
    pub fn request(&self) -> String {
        let params = |params: &[Param]| {
            params
                .iter()
                .map(|p| match &p.value {
                    Some(value) => format!(" {}={value}", p.keyword),
                    None => format!(" {}", p.keyword),
                })
                .collect::<String>()
        };
        match &self.args {
            CommandArgs::None | CommandArgs::Unparsed => self.name.clone(),
            CommandArgs::Hello { domain } => format!("{} {domain}", self.name),
            CommandArgs::Auth { mechanism, .. } => format!("AUTH {mechanism}"),
            CommandArgs::Mail { from, params: p } => {
                format!("MAIL FROM:<{}>{}", from.address, params(p))
            }
            CommandArgs::Rcpt { to, params: p } => {
                format!("RCPT TO:<{}>{}", to.address, params(p))
            }
            CommandArgs::Bdat { size, last } => {
                format!("BDAT {size}{}", if *last { " LAST" } else { "" })
            }
            CommandArgs::Argument { text } if text.is_empty() => self.name.clone(),
            CommandArgs::Argument { text } => format!("{} {text}", self.name),
        }
    }
}

/// What the server answered to a command that changes how the client's
/// next bytes are read; [`Session`](super::Session) passes it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The reply to DATA: 354 (`accepted`, a message follows) or a refusal
    /// (the next bytes are commands).
    Data {
        /// The reply was 354.
        accepted: bool,
    },
    /// The final reply to AUTH (not 334): the exchange is over.
    AuthFinished,
    /// STARTTLS was refused: the client goes on in plaintext.
    StartTlsRefused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    LineStart,
    Mid,
    Cr,
    Dot,
    DotCr,
}

/// Finds the end of a DATA message (`CRLF.CRLF`, the first CRLF being the
/// DATA line's or the last line's), counting bytes as they pass.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Body {
    start: u64,
    state: Scan,
    size: u64,
    bare_line_feeds: u64,
}

impl Body {
    fn new(start: u64) -> Self {
        Self {
            start,
            state: Scan::LineStart,
            size: 0,
            bare_line_feeds: 0,
        }
    }

    /// Bytes of `input` that belong to the message, and whether its end
    /// was reached.
    fn scan(&mut self, input: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.state == Scan::Mid {
                // Fast path: ordinary text up to the next CR or LF.
                let run = input[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(input.len() - i);
                self.size += run as u64;
                i += run;
                if i == input.len() {
                    break;
                }
            }
            let byte = input[i];
            i += 1;
            if self.step(byte) {
                return (i, true);
            }
        }
        (i, false)
    }

    fn step(&mut self, byte: u8) -> bool {
        match self.state {
            Scan::LineStart if byte == b'.' => self.state = Scan::Dot,
            Scan::Dot if byte == b'\r' => self.state = Scan::DotCr,
            Scan::DotCr if byte == b'\n' => return true,
            Scan::LineStart | Scan::Dot => {
                // A leading dot is removed (RFC 5321 §4.5.2).
                self.state = Scan::Mid;
                self.content(byte);
            }
            Scan::DotCr => {
                self.size += 1; // the CR after a removed dot
                self.state = Scan::Cr;
                self.content(byte);
            }
            Scan::Mid | Scan::Cr => self.content(byte),
        }
        false
    }

    fn content(&mut self, byte: u8) {
        self.size += 1;
        self.state = match (self.state, byte) {
            (Scan::Cr, b'\n') => Scan::LineStart,
            (_, b'\r') => Scan::Cr,
            (_, b'\n') => {
                self.bare_line_feeds += 1;
                Scan::Mid
            }
            _ => Scan::Mid,
        };
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Commands,
    Auth {
        mechanism: String,
        step: usize,
    },
    /// DATA was sent: the next bytes wait for the server's answer.
    AwaitingData,
    Message(Body),
    Chunk {
        start: u64,
        remaining: u64,
        size: u64,
        last: bool,
    },
    /// STARTTLS was sent: nothing is SMTP until the caller resets.
    StartTls,
}

/// Decodes the client → server direction.
#[derive(Debug)]
pub struct ClientDecoder {
    limits: Limits,
    framer: Framer,
    mode: Mode,
    /// Bytes received after DATA before the server's answer.
    held: Vec<u8>,
    /// BDAT bytes announced in the current transaction.
    chunked: u64,
}

impl ClientDecoder {
    /// A decoder for a new connection (or a new TLS layer).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            framer: Framer::new(),
            mode: Mode::Commands,
            held: Vec::new(),
            chunked: 0,
        }
    }

    /// Starts over, positions from 0: after the TLS handshake that follows
    /// STARTTLS.
    pub fn reset(&mut self) {
        *self = Self::new(self.limits);
    }

    /// A DATA command waits for the server's answer (and holds what the
    /// client sent meanwhile).
    pub fn awaiting_data_reply(&self) -> bool {
        self.mode == Mode::AwaitingData
    }

    /// Decodes a chunk of any size; complete lines, messages and chunks
    /// become events.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Spanned<ClientEvent>>,
    ) -> Result<(), DecodeError> {
        if let Some(error) = self.framer.failed() {
            return Err(error.clone());
        }
        loop {
            match &mut self.mode {
                Mode::StartTls => {
                    if !input.is_empty() {
                        let start = self.framer.position();
                        let bytes = input.len() as u64;
                        self.framer.skip_raw(bytes);
                        out.push(Spanned {
                            start,
                            end: start + bytes,
                            event: ClientEvent::AfterStartTls { bytes },
                        });
                    }
                    return Ok(());
                }
                Mode::AwaitingData => {
                    if self.held.len() + input.len() > self.limits.max_line {
                        self.held = Vec::new();
                        return Err(self.framer.fail(DecodeError::DataBeforeReply {
                            limit: self.limits.max_line,
                        }));
                    }
                    self.held.extend_from_slice(input);
                    return Ok(());
                }
                Mode::Message(body) => {
                    let (used, ended) = body.scan(input);
                    input = &input[used..];
                    let (start, size, bare_line_feeds) =
                        (body.start, body.size, body.bare_line_feeds);
                    self.framer.skip_raw(used as u64);
                    if size > self.limits.max_message {
                        return Err(self.framer.fail(DecodeError::MessageTooLarge {
                            limit: self.limits.max_message,
                        }));
                    }
                    if !ended {
                        return Ok(());
                    }
                    // The terminator's bytes are not message bytes.
                    out.push(Spanned {
                        start,
                        end: self.framer.position(),
                        event: ClientEvent::Message {
                            size,
                            bare_line_feeds,
                        },
                    });
                    self.mode = Mode::Commands;
                }
                Mode::Chunk {
                    start,
                    remaining,
                    size,
                    last,
                } => {
                    // usize → u64 never loses bits on supported targets.
                    let take = (*remaining).min(input.len() as u64) as usize;
                    *remaining -= take as u64;
                    input = &input[take..];
                    let (start, size, last, done) = (*start, *size, *last, *remaining == 0);
                    self.framer.skip_raw(take as u64);
                    if !done {
                        return Ok(());
                    }
                    out.push(Spanned {
                        start,
                        end: self.framer.position(),
                        event: ClientEvent::Chunk { size, last },
                    });
                    self.mode = Mode::Commands;
                }
                Mode::Commands | Mode::Auth { .. } => {
                    let limits = self.limits;
                    let in_auth = matches!(self.mode, Mode::Auth { .. });
                    let limit = |head: &[u8]| {
                        if in_auth || head.eq_ignore_ascii_case(b"AUTH ") {
                            limits.max_auth_line
                        } else {
                            limits.max_line
                        }
                    };
                    let Some(line) = self.framer.next_line(&mut input, limit)? else {
                        return Ok(());
                    };
                    let (start, end) = (line.start, line.end);
                    let event = decode_line(&mut self.mode, line.text, end);
                    if let ClientEvent::Command(command) = &event {
                        match (command.name.as_str(), &command.args) {
                            ("BDAT", CommandArgs::Bdat { size, last }) => {
                                self.chunked = self.chunked.saturating_add(*size);
                                if self.chunked > self.limits.max_message {
                                    return Err(self.framer.fail(DecodeError::MessageTooLarge {
                                        limit: self.limits.max_message,
                                    }));
                                }
                                if *last {
                                    self.chunked = 0;
                                }
                            }
                            ("MAIL" | "RSET" | "EHLO" | "HELO" | "LHLO", _) => self.chunked = 0,
                            _ => {}
                        }
                    }
                    out.push(Spanned { start, end, event });
                }
            }
        }
    }

    /// The server's answer to DATA, AUTH or STARTTLS. After DATA, decodes
    /// the bytes held meanwhile as a message (354) or as commands.
    pub fn on_decision(
        &mut self,
        decision: Decision,
        out: &mut Vec<Spanned<ClientEvent>>,
    ) -> Result<(), DecodeError> {
        match (decision, &self.mode) {
            (Decision::Data { accepted }, Mode::AwaitingData) => {
                self.mode = if accepted {
                    Mode::Message(Body::new(self.framer.position()))
                } else {
                    Mode::Commands
                };
                let held = std::mem::take(&mut self.held);
                self.feed(&held, out)
            }
            (Decision::AuthFinished, Mode::Auth { .. })
            | (Decision::StartTlsRefused, Mode::StartTls) => {
                self.mode = Mode::Commands;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn decode_line(mode: &mut Mode, text: &[u8], end: u64) -> ClientEvent {
    if let Mode::Auth { mechanism, step } = mode {
        // A SASL response is base64 (or `*`, or `=`) and has no space; a
        // line with one is a command: the exchange ended unnoticed.
        if !text.contains(&b' ') {
            if text == b"*" {
                *mode = Mode::Commands;
                return ClientEvent::AuthCancelled;
            }
            let identity = sasl::identity(mechanism, *step, text);
            *step += 1;
            return ClientEvent::AuthResponse(identity);
        }
        *mode = Mode::Commands;
    }
    let command = match parse_command(text) {
        Ok(command) => command,
        Err(reason) => return ClientEvent::Malformed { reason },
    };
    *mode = match (command.name.as_str(), &command.args) {
        (
            "AUTH",
            CommandArgs::Auth {
                mechanism,
                initial_response,
                ..
            },
        ) => Mode::Auth {
            mechanism: mechanism.clone(),
            step: usize::from(*initial_response),
        },
        ("DATA", _) => Mode::AwaitingData,
        ("BDAT", CommandArgs::Bdat { size, last }) => Mode::Chunk {
            start: end,
            remaining: *size,
            size: *size,
            last: *last,
        },
        ("STARTTLS", _) => Mode::StartTls,
        _ => Mode::Commands,
    };
    ClientEvent::Command(command)
}

const MAX_DOMAIN: usize = 255;
const MAX_ADDRESS: usize = 512;
const MAX_PARAMS: usize = 16;
const MAX_VALUE: usize = 256;

fn parse_command(text: &[u8]) -> Result<Command, &'static str> {
    if text.is_empty() {
        return Err("empty line");
    }
    let (name, rest) = split_word(text);
    let valid_name = (1..=16).contains(&name.len())
        && name[0].is_ascii_alphabetic()
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid_name {
        return Err("no command name");
    }
    let name = String::from_utf8_lossy(&name.to_ascii_uppercase()).into_owned();
    let rest = trim(rest);
    let args = match name.as_str() {
        "EHLO" | "HELO" | "LHLO" if !rest.is_empty() => CommandArgs::Hello {
            domain: bounded_text(rest, MAX_DOMAIN),
        },
        "AUTH" => auth(rest).unwrap_or(CommandArgs::Unparsed),
        "MAIL" => path_and_params(rest, b"FROM:", false).map_or(
            CommandArgs::Unparsed,
            |(from, params)| CommandArgs::Mail { from, params },
        ),
        "RCPT" => {
            path_and_params(rest, b"TO:", true).map_or(CommandArgs::Unparsed, |(to, params)| {
                CommandArgs::Rcpt { to, params }
            })
        }
        "BDAT" => bdat(rest).unwrap_or(CommandArgs::Unparsed),
        "VRFY" | "EXPN" | "HELP" => CommandArgs::Argument {
            text: bounded_text(rest, MAX_VALUE),
        },
        "EHLO" | "HELO" | "LHLO" => CommandArgs::Unparsed,
        _ => CommandArgs::None,
    };
    Ok(Command { name, args })
}

fn auth(rest: &[u8]) -> Option<CommandArgs> {
    let (mechanism, response) = split_word(rest);
    let valid = (1..=20).contains(&mechanism.len())
        && mechanism
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return None;
    }
    let mechanism = String::from_utf8_lossy(&mechanism.to_ascii_uppercase()).into_owned();
    let response = trim(response);
    let initial_response = !response.is_empty();
    let initial = if initial_response {
        sasl::identity(&mechanism, 0, response)
    } else {
        None
    };
    Some(CommandArgs::Auth {
        mechanism,
        initial_response,
        initial,
    })
}

fn bdat(rest: &[u8]) -> Option<CommandArgs> {
    let (size, more) = split_word(rest);
    if size.is_empty() || size.len() > 19 || !size.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = std::str::from_utf8(size).ok()?.parse().ok()?;
    let last = match trim(more) {
        b"" => false,
        word if word.eq_ignore_ascii_case(b"LAST") => true,
        _ => return None,
    };
    Some(CommandArgs::Bdat { size, last })
}

/// `FROM:<path> params` / `TO:<path> params` (a space after the colon and a
/// path without brackets are tolerated, as Postfix does).
fn path_and_params(rest: &[u8], prefix: &[u8], forward: bool) -> Option<(Path, Vec<Param>)> {
    let head = rest.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = trim(&rest[prefix.len()..]);
    let (inner, after) = if let Some(bracketed) = rest.strip_prefix(b"<") {
        let close = closing_bracket(bracketed)?;
        (&bracketed[..close], &bracketed[close + 1..])
    } else {
        let (word, after) = split_word(rest);
        if word.is_empty() {
            return None;
        }
        (word, after)
    };
    // Source route `@a,@b:mailbox` (RFC 5321 §4.1.2, to be ignored).
    let mailbox = match inner.first() {
        Some(b'@') => &inner[inner.iter().position(|&b| b == b':')? + 1..],
        _ => inner,
    };
    if forward && mailbox.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    for word in after.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if params.len() == MAX_PARAMS {
            break;
        }
        let (keyword, value) = match word.iter().position(|&b| b == b'=') {
            Some(i) => (&word[..i], Some(&word[i + 1..])),
            None => (word, None),
        };
        if keyword.is_empty()
            || !keyword
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return None;
        }
        params.push(Param {
            keyword: bounded_text(&keyword.to_ascii_uppercase(), 64),
            value: value.map(|v| bounded_text(v, MAX_VALUE)),
        });
    }
    Some((
        Path {
            address: bounded_text(mailbox, MAX_ADDRESS),
        },
        params,
    ))
}

/// Index of the `>` closing a path, quoted local parts honoured.
fn closing_bracket(text: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'>' if !quoted => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b' ') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[]),
    }
}

fn trim(text: &[u8]) -> &[u8] {
    text.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &[u8]) -> (Body, usize, bool) {
        let mut body = Body::new(0);
        let (used, ended) = body.scan(bytes);
        (body, used, ended)
    }

    #[test]
    fn message_end_and_dot_stuffing() {
        let (b, used, ended) = body(b"a\r\n..b\r\n.\r\nQUIT\r\n");
        assert!(ended);
        assert_eq!(used, 11);
        assert_eq!(b.size, 7); // "a\r\n.b\r\n"
        let (b, used, ended) = body(b".\r\n");
        assert_eq!((b.size, used, ended), (0, 3, true));
        let (b, _, ended) = body(b"x\n.\nmore\r\n.x\r\n");
        assert!(!ended);
        assert_eq!(b.bare_line_feeds, 2);
        assert_eq!(b.size, 13);
        let (b, _, ended) = body(b".\rX\r\n");
        assert!(!ended);
        assert_eq!(b.size, 4);
    }

    #[test]
    fn paths_and_params() {
        let (path, params) = path_and_params(
            b"FROM:<\"a >b\"@x.fr> SIZE=12 BODY=8BITMIME SMTPUTF8",
            b"FROM:",
            false,
        )
        .expect("parses");
        assert_eq!(path.address, "\"a >b\"@x.fr");
        assert_eq!(params.len(), 3);
        assert_eq!(
            params[2],
            Param {
                keyword: "SMTPUTF8".into(),
                value: None
            }
        );
        let (path, _) = path_and_params(b"from: <>", b"FROM:", false).expect("null");
        assert_eq!(path.address, "");
        assert!(path_and_params(b"TO:<>", b"TO:", true).is_none());
        let (path, _) = path_and_params(b"TO:<@a.fr,@b.fr:u@c.fr>", b"TO:", true).expect("route");
        assert_eq!(path.address, "u@c.fr");
        assert!(path_and_params(b"TO:<u@c.fr", b"TO:", true).is_none());
        assert!(path_and_params(b"TO:<u@c.fr> =x", b"TO:", true).is_none());
    }

    #[test]
    fn requests_never_hold_secrets() {
        let command = parse_command(b"AUTH PLAIN AGRyLm1hcnRpbgBwdw==").expect("parses");
        assert_eq!(command.request(), "AUTH PLAIN");
        let command = parse_command(b"mail FROM:<a@b.fr> size=42").expect("parses");
        assert_eq!(command.request(), "MAIL FROM:<a@b.fr> SIZE=42");
        assert_eq!(command.declared_size(), Some(42));
        assert_eq!(parse_command(b"Subject: x"), Err("no command name"));
        assert_eq!(
            parse_command(b"XFOO secret args").map(|c| c.args),
            Ok(CommandArgs::None)
        );
    }
}
