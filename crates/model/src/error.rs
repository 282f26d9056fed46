//! Why a trace was refused. Messages name the field path and the rule, never
//! the value: an error message must not carry content back into logs.

use std::fmt;

/// A refused trace: where (a field path such as `target.subject` or
/// `target.recipients[2]`; empty for the trace itself) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError {
    pub path: String,
    pub kind: TraceErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceErrorKind {
    /// Not JSON; the detail is the parser's position message (no content).
    NotJson(String),
    /// The trace (or a sub-object) is not a JSON object.
    NotAnObject,
    /// A field named like message content (body, subject, attachment…).
    ContentField(&'static str),
    /// A field the schema does not have.
    UnknownField,
    /// A field only the server sets (`id`, `index`, `log`, `received_at`, `salt`).
    ServerField,
    Missing,
    WrongType(&'static str),
    /// A string longer than allowed (bytes).
    TooLong {
        max: usize,
    },
    /// The whole trace is larger than allowed (bytes of its JSON).
    TooLarge {
        max: usize,
    },
    /// An array with more items than allowed.
    TooMany {
        max: usize,
    },
    UnknownAction,
    UnknownClass {
        known: Vec<String>,
    },
    /// Request text carrying a protocol literal or several lines.
    Literal,
    /// A control character (U+0000–U+001F, U+007F) in a text field.
    ControlCharacter,
    Invalid(&'static str),
}

impl TraceError {
    pub fn new(path: impl Into<String>, kind: TraceErrorKind) -> TraceError {
        TraceError {
            path: path.into(),
            kind,
        }
    }

    /// A short stable code for the rule (`content_field`, `unknown_field`…),
    /// for machines and metrics.
    pub fn code(&self) -> &'static str {
        match self.kind {
            TraceErrorKind::NotJson(_) => "not_json",
            TraceErrorKind::NotAnObject => "not_an_object",
            TraceErrorKind::ContentField(_) => "content_field",
            TraceErrorKind::UnknownField => "unknown_field",
            TraceErrorKind::ServerField => "server_field",
            TraceErrorKind::Missing => "missing_field",
            TraceErrorKind::WrongType(_) => "wrong_type",
            TraceErrorKind::TooLong { .. } => "too_long",
            TraceErrorKind::TooLarge { .. } => "too_large",
            TraceErrorKind::TooMany { .. } => "too_many",
            TraceErrorKind::UnknownAction => "unknown_action",
            TraceErrorKind::UnknownClass { .. } => "unknown_class",
            TraceErrorKind::Literal => "literal_in_request",
            TraceErrorKind::ControlCharacter => "control_character",
            TraceErrorKind::Invalid(_) => "invalid_value",
        }
    }

    /// The message without the path.
    pub fn detail(&self) -> String {
        match &self.kind {
            TraceErrorKind::NotJson(m) => format!("not valid JSON: {m}"),
            TraceErrorKind::NotAnObject => "must be a JSON object".into(),
            TraceErrorKind::ContentField(what) => format!(
                "looks like message content ({what}); registre never stores message content \
                 (no body, subject or attachment): send identifiers and sizes instead"
            ),
            TraceErrorKind::UnknownField => "unknown field; the trace schema has no such field \
                 (see GET /openapi.json)"
                .into(),
            TraceErrorKind::ServerField => {
                "set by the server (id, index, log, received_at, salt); do not send it".into()
            }
            TraceErrorKind::Missing => "required field is missing".into(),
            TraceErrorKind::WrongType(t) => format!("wrong type: expected {t}"),
            TraceErrorKind::TooLong { max } => format!("too long: at most {max} bytes"),
            TraceErrorKind::TooLarge { max } => {
                format!("trace too large: at most {max} bytes of JSON")
            }
            TraceErrorKind::TooMany { max } => format!("too many items: at most {max}"),
            TraceErrorKind::UnknownAction => format!(
                "unknown action; accepted: {} (or an extension x-…)",
                crate::ACTIONS.join(", ")
            ),
            TraceErrorKind::UnknownClass { known } => {
                format!("unknown class; configured: {}", known.join(", "))
            }
            TraceErrorKind::Literal => "request text must be one command line with every literal \
                 replaced by {N bytes}; it carries a literal or several lines"
                .into(),
            TraceErrorKind::ControlCharacter => "control characters are not allowed".into(),
            TraceErrorKind::Invalid(why) => (*why).to_owned(),
        }
    }
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.detail())
        } else {
            write!(f, "`{}`: {}", self.path, self.detail())
        }
    }
}

impl std::error::Error for TraceError {}
