//! RFC 5424 syslog messages, their transport framing (RFC 5425 octet
//! counting, RFC 6587 non-transparent framing), and the step from one
//! message to one trace.
//!
//! # `original` of a syslog trace (agreed with the FHIR / ITI-82 side)
//!
//! Every trace made from a syslog message carries
//! `original = {"format": "syslog", "text": <the whole RFC 5424 message>}`:
//! PRI, header, structured data and MSG exactly as received (a UTF-8 BOM
//! included), without the transport's framing (no `MSG-LEN SP` prefix, no
//! line feed of non-transparent framing; a line feed *inside* an
//! octet-counted frame, as rsyslog's templates end, is part of the message
//! and kept). It holds at most [`MAX_ORIGINAL`]
//! bytes (16 KiB): a longer message is refused (`too_large`), never cut, so
//! `GET /syslogsearch` (ITI-82) always returns the message as it came. The
//! MSG part is a DICOM AuditMessage (XML) or a JSON trace; both get the same
//! `original`. A DICOM AuditMessage mapped outside syslog
//! ([`crate::dicom::to_trace`]) carries `{"format": "dicom+xml", "text":
//! <the XML>}` instead.
//!
//! # Parsing
//!
//! [`parse`] reads one message (RFC 5424 §6): `PRI VERSION SP TIMESTAMP SP
//! HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]`.
//! Any PRI from 0 to 191; VERSION 1 only; header fields `-` (NILVALUE) or
//! printable US-ASCII within their lengths; the timestamp checked as RFC 5424
//! says (fractions up to 9 digits are accepted, RFC 5424 allows 6);
//! structured data with its escapes (`\"`, `\\`, `\]`; any other backslash
//! is kept as is, RFC 5424 §6.3.3); an optional UTF-8 BOM before MSG.
//! Errors ([`SyslogError`]) say which field and at which byte, and never
//! quote the message.
//!
//! # Framing
//!
//! [`FrameDecoder`] splits a byte stream (TCP, TLS) into messages,
//! incrementally: a frame may arrive split across any number of reads (TLS
//! records), several frames may arrive in one read. [`Framing::OctetCounting`]
//! is RFC 5425 (`MSG-LEN SP SYSLOG-MSG`); [`Framing::Auto`] also accepts
//! RFC 6587 non-transparent framing (one message per line, terminated by
//! LF), deciding per frame by its first byte (a digit starts an octet count,
//! `<` starts a line). Line feeds and carriage returns between frames are
//! skipped in both modes (some senders end octet-counted frames with one).
//! A frame longer than the decoder's maximum is an error as soon as its
//! length is known, before its bytes are buffered: a connection never holds
//! more than one maximum frame.

use std::borrow::Cow;

use registre_model::{Limits, Original, Trace, TraceError, parse_trace};

use crate::dicom::{self, DicomError};

/// Longest message kept with a trace (`original.text`), in bytes.
pub const MAX_ORIGINAL: usize = 16 * 1024;

/// Default largest frame on a stream (TCP, TLS), in bytes.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// The `format` of `original` for traces that came by syslog.
pub const ORIGINAL_FORMAT: &str = "syslog";

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One RFC 5424 message, borrowed from the bytes it was parsed from.
/// `None` stands for the NILVALUE `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// PRIVAL: facility × 8 + severity, 0 to 191.
    pub pri: u8,
    pub timestamp: Option<&'a str>,
    pub hostname: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub procid: Option<&'a str>,
    /// e.g. `IHE+RFC-3881`, `IHE+DICOM`.
    pub msgid: Option<&'a str>,
    pub structured_data: Vec<SdElement<'a>>,
    /// MSG started with a UTF-8 BOM (not included in `msg`).
    pub bom: bool,
    /// The MSG part without its BOM; `None` when the message ends after the
    /// structured data.
    pub msg: Option<&'a [u8]>,
}

/// One SD-ELEMENT: `[id name="value" …]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    pub id: &'a str,
    pub params: Vec<SdParam<'a>>,
}

/// One SD-PARAM; `value` is unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdParam<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

impl Message<'_> {
    pub fn facility(&self) -> u8 {
        self.pri >> 3
    }

    pub fn severity(&self) -> u8 {
        self.pri & 7
    }

    /// The message in RFC 5424 form (structured data values escaped).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(b'<');
        out.extend_from_slice(self.pri.to_string().as_bytes());
        out.extend_from_slice(b">1");
        for field in [
            self.timestamp,
            self.hostname,
            self.app_name,
            self.procid,
            self.msgid,
        ] {
            out.push(b' ');
            out.extend_from_slice(field.unwrap_or("-").as_bytes());
        }
        out.push(b' ');
        if self.structured_data.is_empty() {
            out.push(b'-');
        }
        for e in &self.structured_data {
            out.push(b'[');
            out.extend_from_slice(e.id.as_bytes());
            for p in &e.params {
                out.push(b' ');
                out.extend_from_slice(p.name.as_bytes());
                out.extend_from_slice(b"=\"");
                for c in p.value.bytes() {
                    if matches!(c, b'"' | b'\\' | b']') {
                        out.push(b'\\');
                    }
                    out.push(c);
                }
                out.push(b'"');
            }
            out.push(b']');
        }
        if let Some(msg) = self.msg {
            out.push(b' ');
            if self.bom {
                out.extend_from_slice(BOM);
            }
            out.extend_from_slice(msg);
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v);
        v
    }
}

/// Why bytes are not an RFC 5424 message. Names the field and a byte
/// offset, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyslogError {
    #[error("empty message")]
    Empty,
    #[error("PRI: a syslog message starts with `<` (RFC 5424 §6.2.1)")]
    NoPri,
    #[error("PRI: expected 1 to 3 digits between `<` and `>`, a value from 0 to 191")]
    BadPri,
    #[error(
        "VERSION: expected `1` after PRI; this looks like a BSD syslog (RFC 3164) message: \
         send RFC 5424 (`logger --rfc5424`, rsyslog template RSYSLOG_SyslogProtocol23Format)"
    )]
    NoVersion,
    #[error("VERSION: only version 1 (RFC 5424) is supported")]
    UnsupportedVersion,
    #[error("{field}: expected a space at byte {at}")]
    ExpectedSpace { field: &'static str, at: usize },
    #[error("{field}: empty field at byte {at} (use `-` for no value)")]
    EmptyField { field: &'static str, at: usize },
    #[error("{field}: longer than {max} characters")]
    FieldTooLong { field: &'static str, max: usize },
    #[error("{field}: only printable US-ASCII is allowed (byte {at})")]
    BadChar { field: &'static str, at: usize },
    #[error(
        "TIMESTAMP: not an RFC 5424 date-time (YYYY-MM-DDThh:mm:ss[.fraction] then Z or ±hh:mm)"
    )]
    BadTimestamp,
    #[error("STRUCTURED-DATA: {what} at byte {at}")]
    BadStructuredData { what: &'static str, at: usize },
}

impl SyslogError {
    /// A short stable code, for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SyslogError::NoVersion | SyslogError::UnsupportedVersion => "syslog_version",
            SyslogError::BadTimestamp => "syslog_timestamp",
            SyslogError::BadStructuredData { .. } => "syslog_structured_data",
            _ => "syslog_header",
        }
    }
}

/// Parses one RFC 5424 message (the frame's bytes, without framing).
pub fn parse(raw: &[u8]) -> Result<Message<'_>, SyslogError> {
    if raw.is_empty() {
        return Err(SyslogError::Empty);
    }
    let mut p = Parser { b: raw, i: 0 };
    if p.b[0] != b'<' {
        return Err(SyslogError::NoPri);
    }
    p.i = 1;
    let start = p.i;
    let mut pri: u32 = 0;
    while p.i < p.b.len() && p.b[p.i].is_ascii_digit() && p.i - start < 3 {
        pri = pri * 10 + u32::from(p.b[p.i] - b'0');
        p.i += 1;
    }
    if p.i == start || p.peek() != Some(b'>') || pri > 191 {
        return Err(SyslogError::BadPri);
    }
    p.i += 1;
    let vstart = p.i;
    while p.peek().is_some_and(|c| c.is_ascii_digit()) {
        p.i += 1;
    }
    match &p.b[vstart..p.i] {
        b"1" => {}
        [] => return Err(SyslogError::NoVersion),
        _ => return Err(SyslogError::UnsupportedVersion),
    }
    p.space("VERSION")?;
    let timestamp = p.field("TIMESTAMP", 64)?;
    if timestamp.is_some_and(|ts| !valid_timestamp(ts)) {
        return Err(SyslogError::BadTimestamp);
    }
    p.space("TIMESTAMP")?;
    let hostname = p.field("HOSTNAME", 255)?;
    p.space("HOSTNAME")?;
    let app_name = p.field("APP-NAME", 48)?;
    p.space("APP-NAME")?;
    let procid = p.field("PROCID", 128)?;
    p.space("PROCID")?;
    let msgid = p.field("MSGID", 32)?;
    p.space("MSGID")?;
    let structured_data = p.structured_data()?;
    let (bom, msg) = match p.peek() {
        None => (false, None),
        Some(b' ') => {
            let rest = &p.b[p.i + 1..];
            match rest.strip_prefix(BOM) {
                Some(m) => (true, Some(m)),
                None => (false, Some(rest)),
            }
        }
        Some(_) => {
            return Err(SyslogError::ExpectedSpace {
                field: "STRUCTURED-DATA",
                at: p.i,
            });
        }
    };
    Ok(Message {
        pri: pri as u8,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        bom,
        msg,
    })
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn space(&mut self, after: &'static str) -> Result<(), SyslogError> {
        if self.peek() == Some(b' ') {
            self.i += 1;
            Ok(())
        } else {
            Err(SyslogError::ExpectedSpace {
                field: after,
                at: self.i,
            })
        }
    }

    /// A header field: NILVALUE or 1 to `max` printable US-ASCII characters.
    fn field(&mut self, field: &'static str, max: usize) -> Result<Option<&'a str>, SyslogError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b' ' {
                break;
            }
            if !(33..=126).contains(&c) {
                return Err(SyslogError::BadChar { field, at: self.i });
            }
            self.i += 1;
            if self.i - start > max {
                return Err(SyslogError::FieldTooLong { field, max });
            }
        }
        let s = &self.b[start..self.i];
        if s.is_empty() {
            return Err(SyslogError::EmptyField { field, at: start });
        }
        // Printable ASCII only: valid UTF-8.
        let s = std::str::from_utf8(s).map_err(|_| SyslogError::BadChar { field, at: start })?;
        Ok((s != "-").then_some(s))
    }

    fn sd_error(&self, what: &'static str) -> SyslogError {
        SyslogError::BadStructuredData { what, at: self.i }
    }

    fn structured_data(&mut self) -> Result<Vec<SdElement<'a>>, SyslogError> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                return Ok(Vec::new());
            }
            Some(b'[') => {}
            None => return Err(self.sd_error("missing (expected `-` or `[`)")),
            Some(_) => return Err(self.sd_error("expected `-` or `[`")),
        }
        let mut out = Vec::new();
        while self.peek() == Some(b'[') {
            self.i += 1;
            let id = self.sd_name("SD-ID")?;
            let mut params = Vec::new();
            loop {
                match self.peek() {
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    Some(b' ') => {
                        self.i += 1;
                        let name = self.sd_name("PARAM-NAME")?;
                        if self.peek() != Some(b'=') {
                            return Err(self.sd_error("expected `=` after PARAM-NAME"));
                        }
                        self.i += 1;
                        if self.peek() != Some(b'"') {
                            return Err(self.sd_error("expected `\"` to open PARAM-VALUE"));
                        }
                        self.i += 1;
                        let value = self.param_value()?;
                        params.push(SdParam { name, value });
                    }
                    None => return Err(self.sd_error("unterminated SD-ELEMENT")),
                    Some(_) => return Err(self.sd_error("expected ` ` or `]` in SD-ELEMENT")),
                }
            }
            out.push(SdElement { id, params });
        }
        Ok(out)
    }

    /// SD-NAME: 1 to 32 printable US-ASCII except `=`, space, `]`, `"`.
    fn sd_name(&mut self, what: &'static str) -> Result<&'a str, SyslogError> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !(33..=126).contains(&c) || matches!(c, b'=' | b']' | b'"') {
                break;
            }
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return Err(self.sd_error(match what {
                "SD-ID" => "empty or invalid SD-ID",
                _ => "empty or invalid PARAM-NAME",
            }));
        }
        if n > 32 {
            return Err(SyslogError::BadStructuredData {
                what: "SD-NAME longer than 32 characters",
                at: start,
            });
        }
        std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.sd_error("invalid SD-NAME"))
    }

    /// PARAM-VALUE after its opening quote, through its closing quote.
    fn param_value(&mut self) -> Result<Cow<'a, str>, SyslogError> {
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.sd_error("unterminated PARAM-VALUE")),
                Some(b'"') => break,
                Some(b'\\') => {
                    if matches!(self.b.get(self.i + 1), Some(b'"' | b'\\' | b']')) {
                        escaped = true;
                        self.i += 2;
                    } else {
                        self.i += 1;
                    }
                }
                Some(_) => self.i += 1,
            }
        }
        let raw = &self.b[start..self.i];
        self.i += 1; // closing quote
        let s = std::str::from_utf8(raw).map_err(|e| SyslogError::BadStructuredData {
            what: "PARAM-VALUE is not UTF-8",
            at: start + e.valid_up_to(),
        })?;
        if !escaped {
            return Ok(Cow::Borrowed(s));
        }
        let mut out = String::with_capacity(s.len());
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\'
                && let Some(&n @ ('"' | '\\' | ']')) = chars.peek()
            {
                out.push(n);
                chars.next();
                continue;
            }
            out.push(c);
        }
        Ok(Cow::Owned(out))
    }
}

/// RFC 5424 §6.2.3 TIMESTAMP (FULL-DATE "T" FULL-TIME), with fractions of
/// up to 9 digits, naming a real instant.
fn valid_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10)
        && b.get(10) == Some(&b'T')
        && digits(11..13)
        && b.get(13) == Some(&b':')
        && digits(14..16)
        && b.get(16) == Some(&b':')
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 9 {
            return false;
        }
    }
    let offset_ok = match b.get(i) {
        Some(b'Z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len() && digits(i + 1..i + 3) && b[i + 3] == b':' && digits(i + 4..i + 6)
        }
        _ => false,
    };
    offset_ok && s.parse::<jiff::Timestamp>().is_ok()
}

/// Why a well-framed syslog message did not become a trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("the message is {len} bytes; at most {max} are kept with a trace")]
    TooLarge { len: usize, max: usize },
    #[error("RFC 5424: {0}")]
    Syslog(#[from] SyslogError),
    #[error("the message is not UTF-8 text (invalid byte at {at})")]
    NotUtf8 { at: usize },
    #[error(
        "the message has no MSG part: registre expects a DICOM AuditMessage (XML) or a JSON \
         trace after the header"
    )]
    NoMsg,
    #[error(
        "MSG is neither a DICOM AuditMessage (XML, starting with `<`) nor a JSON trace \
         (starting with `{{`)"
    )]
    UnknownPayload,
    #[error("DICOM AuditMessage: {0}")]
    Dicom(#[from] DicomError),
    #[error("JSON trace: {0}")]
    Trace(TraceError),
}

impl MessageError {
    /// A short stable code, for metrics (`registre_syslog_refused_total{reason}`).
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::TooLarge { .. } => "too_large",
            MessageError::Syslog(e) => e.code(),
            MessageError::NotUtf8 { .. } => "not_utf8",
            MessageError::NoMsg => "no_msg",
            MessageError::UnknownPayload => "unknown_payload",
            MessageError::Dicom(e) => e.code(),
            MessageError::Trace(_) => "json_trace_invalid",
        }
    }
}

/// One syslog message (a frame, a datagram) → one trace, with `original`
/// = the whole message (format `syslog`). MSG, once trimmed of surrounding
/// whitespace and NULs (the ANS TDE example starts it with a line feed), is
/// a DICOM AuditMessage
/// ([`crate::dicom`]; the header's HOSTNAME fills `source.host` when the
/// message names no host) or a JSON trace (checked as on the JSON API).
/// The class is not checked against the server's classes here.
pub fn message_to_trace(raw: &[u8], limits: &Limits) -> Result<Trace, MessageError> {
    if raw.len() > MAX_ORIGINAL {
        return Err(MessageError::TooLarge {
            len: raw.len(),
            max: MAX_ORIGINAL,
        });
    }
    let msg = parse(raw)?;
    let text = std::str::from_utf8(raw).map_err(|e| MessageError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let body = msg.msg.ok_or(MessageError::NoMsg)?;
    // A sub-slice of valid UTF-8 starting after an ASCII space or the BOM.
    let body = std::str::from_utf8(body).map_err(|e| MessageError::NotUtf8 {
        at: e.valid_up_to(),
    })?;
    let body = body.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    let mut trace = match body.as_bytes().first() {
        None => return Err(MessageError::NoMsg),
        Some(b'<') => {
            let mut t = dicom::to_trace(body, limits)?;
            if let Some(host) = msg.hostname {
                let source = t.source.get_or_insert_with(Default::default);
                if source.host.is_none() && host.len() <= limits.max_short {
                    source.host = Some(host.to_owned());
                }
            }
            t
        }
        Some(b'{') => parse_trace(body.as_bytes(), limits).map_err(MessageError::Trace)?,
        Some(_) => return Err(MessageError::UnknownPayload),
    };
    trace.original = Some(Original {
        format: ORIGINAL_FORMAT.to_owned(),
        text: text.to_owned(),
    });
    Ok(trace)
}

/// How frames are delimited on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 5425 (and RFC 6587 §3.4.1): `MSG-LEN SP SYSLOG-MSG`.
    OctetCounting,
    /// Octet counting or RFC 6587 §3.4.2 non-transparent framing (one
    /// message per LF-terminated line), decided per frame by its first byte.
    Auto,
}

/// A stream that cannot be split into frames. The connection must be
/// closed: after an error the decoder cannot find the next frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("a frame announces {len} bytes; frames are limited to {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("a line (non-transparent framing) is longer than {max} bytes")]
    LineTooLong { max: usize },
    #[error("MSG-LEN at stream byte {at}: expected digits then a space")]
    BadLength { at: u64 },
    #[error("MSG-LEN at stream byte {at}: a length does not start with 0")]
    LeadingZero { at: u64 },
    #[error(
        "stream byte {at}: expected a frame: `MSG-LEN SP SYSLOG-MSG` (RFC 5425){also}",
        also = if *.line { " or a line starting with `<` (RFC 6587)" } else { "" }
    )]
    BadStart { at: u64, line: bool },
    #[error("the stream ended inside a frame ({have} bytes of it received)")]
    Truncated { have: usize },
}

impl FrameError {
    /// A short stable code, for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            FrameError::TooLarge { .. } | FrameError::LineTooLong { .. } => "frame_too_large",
            FrameError::BadLength { .. } | FrameError::LeadingZero { .. } => "bad_length",
            FrameError::BadStart { .. } => "bad_frame",
            FrameError::Truncated { .. } => "truncated",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames.
    Start,
    /// Reading MSG-LEN digits.
    Len(u64),
    /// Reading a counted body; this many bytes still to come.
    Body(usize),
    /// Reading an LF-terminated line.
    Line,
}

/// Incremental frame decoder with bounded memory (see the module docs).
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    framing: Framing,
    max_frame: usize,
    state: State,
    buf: Vec<u8>,
    /// Stream position of the next byte, for errors.
    pos: u64,
    /// Bytes of the current frame seen so far (length digits included).
    partial: usize,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    pub fn new(framing: Framing, max_frame: usize) -> FrameDecoder {
        FrameDecoder {
            framing,
            max_frame: max_frame.max(1),
            state: State::Start,
            buf: Vec::new(),
            pos: 0,
            partial: 0,
            failed: None,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// True while part of a frame has been received but not all of it.
    pub fn in_frame(&self) -> bool {
        self.state != State::Start
    }

    /// Bytes held for the frame in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the next bytes of the stream; every frame they complete is
    /// pushed to `out`, in order. On error, `out` holds the frames completed
    /// before it, and the decoder keeps answering the same error.
    pub fn decode(&mut self, mut chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !chunk.is_empty() {
            match self.step(chunk, out) {
                Ok(used) => {
                    chunk = &chunk[used..];
                    self.pos += used as u64;
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The stream ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.state {
            State::Start => Ok(()),
            _ => Err(FrameError::Truncated { have: self.partial }),
        }
    }

    /// Consumes a prefix of `chunk` (none only when it changes state).
    fn step(&mut self, chunk: &[u8], out: &mut Vec<Vec<u8>>) -> Result<usize, FrameError> {
        match self.state {
            State::Start => {
                let c = chunk[0];
                match c {
                    b'\n' | b'\r' => {}
                    b'1'..=b'9' => {
                        self.state = State::Len(u64::from(c - b'0'));
                        self.partial = 1;
                    }
                    b'0' => return Err(FrameError::LeadingZero { at: self.pos }),
                    b'<' if self.framing == Framing::Auto => {
                        self.state = State::Line;
                        self.partial = 0;
                        // The `<` is the line's first byte: Line consumes it.
                        return Ok(0);
                    }
                    _ => {
                        return Err(FrameError::BadStart {
                            at: self.pos,
                            line: self.framing == Framing::Auto,
                        });
                    }
                }
                Ok(1)
            }
            State::Len(n) => {
                let c = chunk[0];
                match c {
                    b'0'..=b'9' => {
                        let n = n * 10 + u64::from(c - b'0');
                        if n > self.max_frame as u64 {
                            return Err(FrameError::TooLarge {
                                len: n,
                                max: self.max_frame,
                            });
                        }
                        self.state = State::Len(n);
                        self.partial += 1;
                    }
                    b' ' => {
                        // n ≤ max_frame (checked digit by digit), n ≥ 1.
                        let n = n as usize;
                        self.buf = Vec::with_capacity(n);
                        self.state = State::Body(n);
                        self.partial += 1;
                    }
                    _ => return Err(FrameError::BadLength { at: self.pos }),
                }
                Ok(1)
            }
            State::Body(rest) => {
                let take = rest.min(chunk.len());
                self.buf.extend_from_slice(&chunk[..take]);
                self.partial += take;
                if take == rest {
                    out.push(std::mem::take(&mut self.buf));
                    self.state = State::Start;
                    self.partial = 0;
                } else {
                    self.state = State::Body(rest - take);
                }
                Ok(take)
            }
            State::Line => {
                let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                let line = if done { &chunk[..take - 1] } else { chunk };
                if self.buf.len() + line.len() > self.max_frame {
                    return Err(FrameError::LineTooLong {
                        max: self.max_frame,
                    });
                }
                self.buf.extend_from_slice(line);
                self.partial += take;
                if done {
                    let mut frame = std::mem::take(&mut self.buf);
                    if frame.last() == Some(&b'\r') {
                        frame.pop();
                    }
                    out.push(frame);
                    self.state = State::Start;
                    self.partial = 0;
                }
                Ok(take)
            }
        }
    }
}

/// `MSG-LEN SP msg`: one RFC 5425 frame.
pub fn octet_frame(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 8);
    v.extend_from_slice(msg.len().to_string().as_bytes());
    v.push(b' ');
    v.extend_from_slice(msg);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8] = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \xEF\xBB\xBFAn application event log entry...";

    #[test]
    fn rfc5424_examples() {
        let m = parse(EXAMPLE).expect("RFC 5424 example 3");
        assert_eq!((m.facility(), m.severity()), (20, 5));
        assert_eq!(m.hostname, Some("mymachine.example.com"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid, Some("ID47"));
        assert_eq!(m.structured_data[0].id, "exampleSDID@32473");
        assert_eq!(m.structured_data[0].params[2].value, "1011");
        assert!(m.bom);
        assert_eq!(m.msg, Some(&b"An application event log entry..."[..]));
        assert_eq!(m.to_vec(), EXAMPLE);

        let m = parse(b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - 'su root' failed for lonvick on /dev/pts/8").expect("example 1");
        assert_eq!(m.pri, 34);
        assert!(!m.bom);
        let m = parse(br#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#).expect("example 4");
        assert_eq!(m.structured_data.len(), 2);
        assert_eq!(m.msg, None);
        let m = parse(b"<0>1 - - - - - -").expect("all nil");
        assert_eq!(m.timestamp, None);
        let m = parse(
            b"<191>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time",
        )
        .expect("example 2");
        assert_eq!(m.pri, 191);
        assert_eq!(m.procid, Some("8710"));
    }

    #[test]
    fn escapes() {
        let m = parse(br#"<1>1 - - - - - [a@1 x="q\"b\\s\]e" y="\n\x"]"#).expect("escapes");
        assert_eq!(m.structured_data[0].params[0].value, "q\"b\\s]e");
        assert_eq!(m.structured_data[0].params[1].value, "\\n\\x");
    }

    #[test]
    fn precise_errors() {
        let e = |b: &[u8]| parse(b).expect_err("must fail");
        assert_eq!(e(b""), SyslogError::Empty);
        assert_eq!(e(b"hello"), SyslogError::NoPri);
        assert_eq!(e(b"<192>1 - - - - - -"), SyslogError::BadPri);
        assert_eq!(e(b"<1234>1 - - - - - -"), SyslogError::BadPri);
        assert_eq!(
            e(b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed"),
            SyslogError::NoVersion
        );
        assert_eq!(e(b"<34>2 - - - - - -"), SyslogError::UnsupportedVersion);
        assert_eq!(
            e(b"<34>1 2003-10-11 22:14:15 h a p m -"),
            SyslogError::BadTimestamp
        );
        assert_eq!(
            e(b"<34>1 2003-13-11T22:14:15Z h a p m -"),
            SyslogError::BadTimestamp
        );
        assert_eq!(
            e(b"<34>1 - h a p m"),
            SyslogError::ExpectedSpace {
                field: "MSGID",
                at: 15
            }
        );
        assert!(matches!(
            e(b"<34>1 - h a p m [x y]"),
            SyslogError::BadStructuredData { .. }
        ));
        assert!(matches!(
            e(b"<34>1 - h a p m [x y=\"unterminated]"),
            SyslogError::BadStructuredData { .. }
        ));
        assert!(matches!(
            e(b"<34>1 - h a p m -x"),
            SyslogError::ExpectedSpace { .. }
        ));
        let long = format!("<34>1 - h a p {} -", "m".repeat(33));
        assert_eq!(
            e(long.as_bytes()),
            SyslogError::FieldTooLong {
                field: "MSGID",
                max: 32
            }
        );
        assert!(matches!(
            e(b"<34>1 - h\x01 a p m -"),
            SyslogError::BadChar { .. }
        ));
    }

    #[test]
    fn frames() {
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        let mut out = Vec::new();
        d.decode(b"5 hello3 abc\n2 xy", &mut out).expect("decode");
        assert_eq!(
            out,
            vec![b"hello".to_vec(), b"abc".to_vec(), b"xy".to_vec()]
        );
        assert!(!d.in_frame());
        out.clear();
        d.decode(b"10 abc", &mut out).expect("partial");
        assert!(out.is_empty() && d.in_frame());
        assert_eq!(d.finish(), Err(FrameError::Truncated { have: 6 }));

        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        assert_eq!(
            d.decode(b"101 ", &mut out),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        assert!(matches!(
            d.decode(b"<13>1 line\n", &mut out),
            Err(FrameError::BadStart { line: false, .. })
        ));
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        assert_eq!(
            d.decode(b"05 hello", &mut out),
            Err(FrameError::LeadingZero { at: 0 })
        );
        let mut d = FrameDecoder::new(Framing::OctetCounting, 100);
        assert_eq!(
            d.decode(b"5x", &mut out),
            Err(FrameError::BadLength { at: 1 })
        );

        let mut d = FrameDecoder::new(Framing::Auto, 10);
        out.clear();
        d.decode(b"<1>a\r\n\n3 abc<2>b\n", &mut out).expect("auto");
        assert_eq!(
            out,
            vec![b"<1>a".to_vec(), b"abc".to_vec(), b"<2>b".to_vec()]
        );
        assert_eq!(
            d.decode(b"<3>0123456789", &mut out),
            Err(FrameError::LineTooLong { max: 10 })
        );
        let mut d = FrameDecoder::new(Framing::Auto, 10);
        assert!(matches!(
            d.decode(b"GET / HTTP/1.1\r\n", &mut out),
            Err(FrameError::BadStart { at: 0, line: true })
        ));
    }
}
