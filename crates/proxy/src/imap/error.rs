//! Errors of the IMAP decoders: they name the limit or the rule, never the
//! bytes (which may be a message, a password or a token).

/// A framing error: the direction can no longer be followed, so the proxy
/// stops tracing it (and closes). Every later call returns the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A line (literals excluded) grew past the configured bound.
    #[error("IMAP line longer than {limit} bytes (literals excluded)")]
    LineTooLong {
        /// The configured bound ([`Limits::max_line`](super::Limits)).
        limit: usize,
    },
    /// A literal announced more bytes than accepted.
    #[error("IMAP literal of {announced} bytes announced, more than the {limit} accepted")]
    LiteralTooLarge {
        /// What the peer announced.
        announced: u64,
        /// The configured bound ([`Limits::max_literal`](super::Limits)).
        limit: u64,
    },
    /// A literal's length is not a number that fits in 64 bits.
    #[error("IMAP literal length is not a valid number")]
    BadLiteralLength,
}
