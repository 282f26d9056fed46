//! Client → server: commands, IDLE's `DONE`, AUTHENTICATE continuation
//! lines. The decoder only observes: it never waits for the server's `+`
//! before reading a synchronising literal, and learns of a refused literal
//! or the end of an AUTHENTICATE/IDLE exchange from
//! [`ClientDecoder::on_tagged_completion`] (called by [`Session`](super::Session)).

use super::error::DecodeError;
use super::frame::{Framer, Limits, Line, OpenLine};
use super::lex::{Lexer, Token, Unterminated};
use super::sasl::{self, SaslIdentity};
use super::server::Tagged;
use super::types::{Arg, SequenceSet, Spanned, Status, bounded_text};

/// What a client line meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A tagged command.
    Command(Command),
    /// `DONE`, ending an IDLE.
    IdleDone,
    /// An AUTHENTICATE continuation line: the identities it names, if the
    /// mechanism's response could be read (never the password).
    AuthResponse(Option<SaslIdentity>),
    /// `*`: the client cancelled the AUTHENTICATE exchange.
    AuthCancelled,
    /// Bytes the client sent after STARTTLS, before the TLS handshake: the
    /// proxy must drop them (RFC 9051 §11.1, command injection).
    AfterStartTls {
        /// How many bytes.
        bytes: u64,
    },
    /// A line that is no command (the server will answer BAD); not kept.
    Malformed {
        /// Which rule it broke.
        reason: &'static str,
    },
}

/// A tagged command, summarised for the trace. Literals are lengths only;
/// a password is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The tag, as sent.
    pub tag: String,
    /// Upper-case name, `UID ` included (`UID FETCH`).
    pub name: String,
    /// The arguments the traces need.
    pub args: CommandArgs,
    /// The command line without its tag, each literal replaced by
    /// `{N bytes}`, passwords and search keys left out, at most 2 KiB
    /// (DESIGN §2 `request`).
    pub request: String,
    /// Total bytes of the command's literals (skipped).
    pub literal_bytes: u64,
}

/// The arguments of the commands the proxy traces.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandArgs {
    /// No argument, or none that matters.
    None,
    /// LOGIN: the user name (the password is not kept).
    Login {
        /// The user name.
        user: Arg,
    },
    /// AUTHENTICATE.
    Authenticate {
        /// Upper-case mechanism name.
        mechanism: String,
        /// Identities of the SASL-IR initial response, if any was readable.
        initial: Option<SaslIdentity>,
    },
    /// SELECT, EXAMINE, CREATE, DELETE, SUBSCRIBE, UNSUBSCRIBE, STATUS.
    Mailbox {
        /// The mailbox.
        mailbox: Arg,
    },
    /// RENAME.
    Rename {
        /// Existing name.
        from: Arg,
        /// New name.
        to: Arg,
    },
    /// FETCH, UID FETCH.
    Fetch {
        /// Sequence numbers (or UIDs for UID FETCH).
        set: SequenceSet,
        /// What is fetched.
        items: FetchItems,
    },
    /// STORE, UID STORE.
    Store {
        /// Sequence numbers (or UIDs).
        set: SequenceSet,
        /// How flags change.
        flags: StoreFlags,
    },
    /// COPY, MOVE and their UID forms.
    Transfer {
        /// Sequence numbers (or UIDs).
        set: SequenceSet,
        /// Destination mailbox.
        mailbox: Arg,
    },
    /// UID EXPUNGE.
    UidExpunge {
        /// The UIDs to expunge.
        uids: SequenceSet,
    },
    /// APPEND (MULTIAPPEND included).
    Append {
        /// Destination mailbox.
        mailbox: Arg,
        /// Number of messages.
        messages: u32,
        /// Their total size in bytes (skipped, never kept).
        size: u64,
    },
    /// ENABLE.
    Enable {
        /// Upper-case capability names.
        capabilities: Vec<String>,
    },
    /// COMPRESS.
    Compress {
        /// Upper-case mechanism.
        mechanism: String,
    },
    /// Arguments that could not be read (the server will likely answer BAD).
    Unparsed,
}

/// What a FETCH asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchItems {
    /// Message bytes are asked for: `BODY[…]`, `BODY.PEEK[…]`, `BINARY[…]`,
    /// `BINARY.PEEK[…]`, `RFC822`, `RFC822.TEXT`, `RFC822.HEADER` (a
    /// consultation); otherwise only metadata (FLAGS, UID, ENVELOPE, sizes…).
    pub content: bool,
    /// A non-PEEK body item sets `\Seen`.
    pub marks_seen: bool,
    /// The item names, upper-case (at most 32, each at most 128 bytes).
    pub items: Vec<String>,
}

/// How a STORE changes flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFlags {
    /// `+FLAGS`, `-FLAGS` or `FLAGS`.
    pub mode: StoreMode,
    /// `.SILENT`.
    pub silent: bool,
    /// The flags, as sent.
    pub flags: Vec<String>,
    /// `\Deleted` is added (mode `+` or replace): a deletion, not a marking.
    pub adds_deleted: bool,
}

/// The three STORE modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
    /// `FLAGS`
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Commands,
    Idle {
        tag: String,
    },
    Authenticate {
        tag: String,
        mechanism: String,
        step: usize,
    },
    /// STARTTLS was sent: nothing is IMAP until the caller resets.
    StartTls {
        tag: String,
    },
}

/// Decodes the client → server direction.
#[derive(Debug)]
pub struct ClientDecoder {
    limits: Limits,
    framer: Framer,
    mode: Mode,
    /// STARTTLS is answered by the caller, never by the server: the bytes
    /// after it are still commands.
    starttls_refused: bool,
}

impl ClientDecoder {
    /// A decoder for a new connection (or a new TLS layer).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            framer: Framer::new(limits),
            mode: Mode::Commands,
            starttls_refused: false,
        }
    }

    /// The caller refuses STARTTLS itself (the relay, whose clients are on
    /// TLS with it already): it stays an ordinary command.
    pub fn refuse_starttls(&mut self) {
        self.starttls_refused = true;
    }

    /// Starts over, positions from 0: after the TLS handshake that follows
    /// STARTTLS.
    pub fn reset(&mut self) {
        let refused = self.starttls_refused;
        *self = Self::new(self.limits);
        self.starttls_refused = refused;
    }

    /// Decodes a chunk of any size; complete lines become events.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<Spanned<ClientEvent>>,
    ) -> Result<(), DecodeError> {
        loop {
            if matches!(self.mode, Mode::StartTls { .. }) {
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
            let Some(line) = self.framer.next_line(&mut input)? else {
                return Ok(());
            };
            let event = decode_line(&mut self.mode, &line, self.starttls_refused);
            out.push(Spanned {
                start: line.start,
                end: line.end,
                event,
            });
        }
    }

    /// The command line being read, if incomplete: its start, text so far
    /// and literal state. `None` outside the command mode (IDLE, an
    /// AUTHENTICATE exchange, after STARTTLS) and between lines.
    pub fn open_command(&self) -> Option<OpenLine<'_>> {
        match self.mode {
            Mode::Commands => self.framer.open_line(),
            _ => None,
        }
    }

    /// The server completed the command `tagged.tag`: ends an IDLE or an
    /// AUTHENTICATE exchange, resumes after a refused STARTTLS, and, when the
    /// server refused a synchronising literal (the client will not send it),
    /// emits the command as it stood. Call it before the matcher sees the
    /// completion.
    pub fn on_tagged_completion(&mut self, tagged: &Tagged, out: &mut Vec<Spanned<ClientEvent>>) {
        match &self.mode {
            Mode::Idle { tag } | Mode::Authenticate { tag, .. } if *tag == tagged.tag => {
                self.mode = Mode::Commands;
            }
            Mode::StartTls { tag } if *tag == tagged.tag && tagged.status != Status::Ok => {
                self.mode = Mode::Commands;
            }
            _ => {}
        }
        let waiting_for = self
            .framer
            .pending_sync_literal()
            .and_then(|text| text.split(|&b| b == b' ').next())
            .is_some_and(|tag| tag == tagged.tag.as_bytes());
        if waiting_for
            && tagged.status != Status::Ok
            && let Some(line) = self.framer.refuse_pending_literal()
        {
            {
                let event = decode_line(&mut self.mode, &line, self.starttls_refused);
                out.push(Spanned {
                    start: line.start,
                    end: line.end,
                    event,
                });
            }
        }
    }
}

fn decode_line(mode: &mut Mode, line: &Line<'_>, starttls_refused: bool) -> ClientEvent {
    match mode {
        Mode::Idle { .. } if line.text.eq_ignore_ascii_case(b"DONE") => {
            *mode = Mode::Commands;
            return ClientEvent::IdleDone;
        }
        Mode::Authenticate {
            mechanism, step, ..
        } if !line.text.contains(&b' ') => {
            if line.text == b"*" {
                *mode = Mode::Commands;
                return ClientEvent::AuthCancelled;
            }
            let identity = sasl::identity(mechanism, *step, line.text);
            *step += 1;
            return ClientEvent::AuthResponse(identity);
        }
        // Anything else is a command: the IDLE or AUTHENTICATE was refused
        // or is over.
        _ => {}
    }
    match parse_command(line) {
        Ok(command) => {
            *mode = match (command.name.as_str(), &command.args) {
                ("IDLE", _) => Mode::Idle {
                    tag: command.tag.clone(),
                },
                ("AUTHENTICATE", CommandArgs::Authenticate { mechanism, initial }) => {
                    Mode::Authenticate {
                        tag: command.tag.clone(),
                        mechanism: mechanism.clone(),
                        step: usize::from(initial.is_some()),
                    }
                }
                ("STARTTLS", _) if !starttls_refused => Mode::StartTls {
                    tag: command.tag.clone(),
                },
                _ => Mode::Commands,
            };
            ClientEvent::Command(command)
        }
        Err(reason) => ClientEvent::Malformed { reason },
    }
}

const MAX_ARG: usize = 1024;
const MAX_REQUEST: usize = 2048;

fn parse_command(line: &Line<'_>) -> Result<Command, &'static str> {
    let mut lexer = Lexer::new(line.text, line.literals);
    let tag = match lexer.next_token() {
        Ok(Some(Token::Atom(tag))) if is_tag(tag) => bounded_text(tag, 128),
        _ => return Err("no tag"),
    };
    let after_tag = line.text.len() - lexer.rest().len();
    let mut name = match lexer.next_token() {
        Ok(Some(Token::Atom(name))) => upper(name),
        _ => return Err("no command name"),
    };
    if name == "UID" {
        match lexer.next_token() {
            Ok(Some(Token::Atom(sub))) => name = format!("UID {}", upper(sub)),
            _ => return Err("UID without a command"),
        }
    }
    let args = parse_args(&name, &mut lexer)
        .ok()
        .flatten()
        .unwrap_or(CommandArgs::Unparsed);
    let request = request_summary(&name, &args, line, after_tag);
    Ok(Command {
        tag,
        name,
        args,
        request,
        literal_bytes: line.literal_bytes(),
    })
}

/// `Ok(None)` when the arguments do not match the command's syntax.
fn parse_args(name: &str, lexer: &mut Lexer<'_>) -> Result<Option<CommandArgs>, Unterminated> {
    let args = match name {
        "LOGIN" => {
            let Some(user) = astring(lexer.next_token()?) else {
                return Ok(None);
            };
            CommandArgs::Login { user }
        }
        "AUTHENTICATE" => {
            let Some(Token::Atom(mechanism)) = lexer.next_token()? else {
                return Ok(None);
            };
            let mechanism = upper(mechanism);
            let initial = match lexer.next_token()? {
                Some(Token::Atom(response)) => sasl::identity(&mechanism, 0, response),
                _ => None,
            };
            CommandArgs::Authenticate { mechanism, initial }
        }
        "SELECT" | "EXAMINE" | "CREATE" | "DELETE" | "SUBSCRIBE" | "UNSUBSCRIBE" | "STATUS" => {
            let Some(mailbox) = astring(lexer.next_token()?) else {
                return Ok(None);
            };
            CommandArgs::Mailbox { mailbox }
        }
        "RENAME" => {
            let (Some(from), Some(to)) =
                (astring(lexer.next_token()?), astring(lexer.next_token()?))
            else {
                return Ok(None);
            };
            CommandArgs::Rename { from, to }
        }
        "FETCH" | "UID FETCH" => {
            let Some(set) = sequence_set(lexer.next_token()?) else {
                return Ok(None);
            };
            let mut items = FetchItems::default();
            match lexer.next_token()? {
                Some(Token::Atom(item)) => classify(&mut items, item),
                Some(Token::Open) => loop {
                    match lexer.next_token()? {
                        Some(Token::Atom(item)) => classify(&mut items, item),
                        Some(Token::Close) => break,
                        _ => return Ok(None),
                    }
                },
                _ => return Ok(None),
            }
            CommandArgs::Fetch { set, items }
        }
        "STORE" | "UID STORE" => {
            let Some(set) = sequence_set(lexer.next_token()?) else {
                return Ok(None);
            };
            let mut item = lexer.next_token()?;
            if item == Some(Token::Open) {
                // RFC 7162 modifiers: (UNCHANGEDSINCE n)
                lexer.skip_list()?;
                item = lexer.next_token()?;
            }
            let Some(Token::Atom(item)) = item else {
                return Ok(None);
            };
            let item = upper(item);
            let (mode, rest) = match item.as_bytes().first() {
                Some(b'+') => (StoreMode::Add, &item[1..]),
                Some(b'-') => (StoreMode::Remove, &item[1..]),
                _ => (StoreMode::Replace, item.as_str()),
            };
            let silent = match rest {
                "FLAGS" => false,
                "FLAGS.SILENT" => true,
                _ => return Ok(None),
            };
            let mut flags = Vec::new();
            let mut token = lexer.next_token()?;
            let listed = token == Some(Token::Open);
            if listed {
                token = lexer.next_token()?;
            }
            loop {
                match token {
                    Some(Token::Atom(flag)) if flags.len() < 64 => {
                        flags.push(bounded_text(flag, 128));
                    }
                    Some(Token::Close) if listed => break,
                    None if !listed => break,
                    _ => return Ok(None),
                }
                token = lexer.next_token()?;
            }
            let adds_deleted = mode != StoreMode::Remove
                && flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"));
            CommandArgs::Store {
                set,
                flags: StoreFlags {
                    mode,
                    silent,
                    flags,
                    adds_deleted,
                },
            }
        }
        "COPY" | "UID COPY" | "MOVE" | "UID MOVE" => {
            let Some(set) = sequence_set(lexer.next_token()?) else {
                return Ok(None);
            };
            let Some(mailbox) = astring(lexer.next_token()?) else {
                return Ok(None);
            };
            CommandArgs::Transfer { set, mailbox }
        }
        "UID EXPUNGE" => {
            let Some(uids) = sequence_set(lexer.next_token()?) else {
                return Ok(None);
            };
            CommandArgs::UidExpunge { uids }
        }
        "APPEND" => {
            let Some(mailbox) = astring(lexer.next_token()?) else {
                return Ok(None);
            };
            let (mut messages, mut size) = (0u32, 0u64);
            while let Some(token) = lexer.next_token()? {
                match token {
                    Token::Open => lexer.skip_list()?, // flags, or UTF8 (~{N})…
                    Token::Literal(len) => {
                        messages = messages.saturating_add(1);
                        size = size.saturating_add(len);
                    }
                    Token::Quoted(_) | Token::Atom(_) => {} // date-time, UTF8, extensions
                    Token::Close => return Ok(None),
                }
            }
            if messages == 0 {
                // The literal may be inside `UTF8 (~{N})`, skipped above.
                let total = lexer_literals_total(lexer);
                if total.0 == 0 {
                    return Ok(None);
                }
                (messages, size) = total;
            }
            CommandArgs::Append {
                mailbox,
                messages,
                size,
            }
        }
        "ENABLE" => {
            let mut capabilities = Vec::new();
            while let Some(token) = lexer.next_token()? {
                if let Token::Atom(capability) = token
                    && capabilities.len() < 32
                {
                    capabilities.push(upper(capability));
                }
            }
            CommandArgs::Enable { capabilities }
        }
        "COMPRESS" => {
            let Some(Token::Atom(mechanism)) = lexer.next_token()? else {
                return Ok(None);
            };
            CommandArgs::Compress {
                mechanism: upper(mechanism),
            }
        }
        _ => CommandArgs::None,
    };
    Ok(Some(args))
}

fn lexer_literals_total(lexer: &Lexer<'_>) -> (u32, u64) {
    let literals = lexer.literals();
    (
        u32::try_from(literals.len()).unwrap_or(u32::MAX),
        literals.iter().map(|l| l.len).sum(),
    )
}

fn classify(items: &mut FetchItems, item: &[u8]) {
    let item = upper(item);
    let body_section = |prefix: &str| item.starts_with(prefix);
    if body_section("BODY.PEEK[") || body_section("BINARY.PEEK[") || item == "RFC822.HEADER" {
        items.content = true;
    } else if body_section("BODY[")
        || body_section("BINARY[")
        || item == "RFC822"
        || item == "RFC822.TEXT"
    {
        items.content = true;
        items.marks_seen = true;
    }
    if items.items.len() < 32 {
        items.items.push(bounded_text(item.as_bytes(), 128));
    }
}

fn astring(token: Option<Token<'_>>) -> Option<Arg> {
    match token? {
        Token::Atom(atom) => Some(Arg::Text(bounded_text(atom, MAX_ARG))),
        Token::Quoted(quoted) => Some(Arg::Text(bounded_text(&quoted, MAX_ARG))),
        Token::Literal(len) => Some(Arg::Literal { len }),
        Token::Open | Token::Close => None,
    }
}

fn sequence_set(token: Option<Token<'_>>) -> Option<SequenceSet> {
    match token? {
        Token::Atom(atom) => SequenceSet::parse(std::str::from_utf8(atom).ok()?),
        _ => None,
    }
}

/// RFC 9051 `tag`: astring characters except `+`.
fn is_tag(tag: &[u8]) -> bool {
    !tag.is_empty()
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        })
}

fn upper(bytes: &[u8]) -> String {
    bounded_text(&bytes.to_ascii_uppercase(), 128)
}

/// The request text of a trace: the line after the tag, literals as
/// `{N bytes}`; LOGIN's password, SASL responses and search keys (which may
/// quote a subject) are left out.
fn request_summary(name: &str, args: &CommandArgs, line: &Line<'_>, after_tag: usize) -> String {
    let shown = |arg: &Arg| match arg {
        Arg::Text(text) => quote(text),
        Arg::Literal { len } => format!("{{{len} bytes}}"),
    };
    match (name, args) {
        ("LOGIN", CommandArgs::Login { user }) => return format!("LOGIN {} ***", shown(user)),
        ("LOGIN", _) => return "LOGIN ***".to_owned(),
        ("AUTHENTICATE", CommandArgs::Authenticate { mechanism, .. }) => {
            return format!("AUTHENTICATE {mechanism}");
        }
        ("AUTHENTICATE", _) => return "AUTHENTICATE".to_owned(),
        ("SEARCH" | "UID SEARCH" | "SORT" | "UID SORT" | "THREAD" | "UID THREAD", _) => {
            return name.to_owned();
        }
        _ => {}
    }
    let mut out = Vec::new();
    let mut i = after_tag;
    for mark in line.literals {
        if mark.offset < i {
            continue;
        }
        out.extend_from_slice(&line.text[i..mark.offset]);
        out.extend_from_slice(format!("{{{} bytes}}", mark.len).as_bytes());
        i = line.text[mark.offset..]
            .iter()
            .position(|&b| b == b'}')
            .map_or(line.text.len(), |close| mark.offset + close + 1);
        if out.len() > MAX_REQUEST {
            break;
        }
    }
    if i < line.text.len() {
        out.extend_from_slice(&line.text[i..]);
    }
    bounded_text(&out, MAX_REQUEST)
}

fn quote(text: &str) -> String {
    if !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\')
        })
    {
        text.to_owned()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}
