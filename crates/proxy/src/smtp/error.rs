//! Errors of the SMTP decoders: they name the limit or the rule, never the
//! bytes (which may be a message, a password or a token).

/// A framing error: the direction can no longer be followed, so the proxy
/// stops tracing it (and closes). Every later call returns the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A command or reply line grew past the configured bound.
    #[error("SMTP line longer than {limit} bytes")]
    LineTooLong {
        /// The bound ([`Limits::max_line`](super::Limits), or
        /// [`Limits::max_auth_line`](super::Limits) for AUTH lines).
        limit: usize,
    },
    /// A message (DATA, or the BDAT chunks of one transaction) grew past the
    /// configured bound.
    #[error("SMTP message larger than {limit} bytes")]
    MessageTooLarge {
        /// The bound ([`Limits::max_message`](super::Limits)).
        limit: u64,
    },
    /// The client sent more bytes after DATA than one line before the
    /// server answered it: they cannot be told apart (message or commands)
    /// within bounded memory.
    #[error("more than {limit} bytes sent after DATA before the server's answer")]
    DataBeforeReply {
        /// The bound ([`Limits::max_line`](super::Limits)).
        limit: usize,
    },
}
