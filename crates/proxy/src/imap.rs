//! A passive IMAP4rev1/IMAP4rev2 parser for a proxy that forwards bytes
//! unchanged (DESIGN §9, issue 6).
//!
//! # Why our own parser and not imap-codec
//!
//! imap-codec (`CommandCodec`, `ResponseCodec`, checked at 1.0 and
//! 2.0.0-alpha) decodes one *complete* message from a `&[u8]`: when it meets
//! a literal it answers `LiteralFound`/`Incomplete` and the caller must
//! buffer the literal and decode again from the start. The decoded `Command`
//! owns the literal's bytes (an APPEND message, a FETCH `BODY[]`). A proxy
//! would then hold up to 100 MiB of message per direction in memory, parse it
//! twice, and hand message content to code that must never see it. What the
//! proxy needs is narrower: frame lines, *count* literal bytes without
//! keeping them, and read a dozen commands and responses. That is this
//! module, a few hundred lines with bounded memory (one line of text, never
//! a literal), fed chunks of any size (TLS records) in either direction.
//!
//! # Pieces
//!
//! - [`ClientDecoder`]: client → server bytes into [`ClientEvent`]s
//!   ([`Command`] with a typed [`CommandArgs`], IDLE's `DONE`, AUTHENTICATE
//!   continuation lines, bytes sent after STARTTLS).
//! - [`ServerDecoder`]: server → client bytes into [`ServerEvent`]s (tagged
//!   completions, the untagged data the traces need, continuations).
//! - [`Matcher`]: pairs each command with its tagged completion (pipelining),
//!   with the untagged data observed meanwhile ([`Exchange`]); [`Session`]
//!   wires the two decoders and the matcher together.
//! - [`without_compress_deflate`]: the one rewrite the proxy does.
//!
//! # Never content
//!
//! Literal bytes are skipped by count and never copied; passwords are
//! dropped as soon as they are read, bearer tokens are held in a [`Secret`]
//! whose `Debug` says only its length; errors name limits and rules, never
//! the bytes that broke them.

mod capability;
mod client;
mod error;
mod frame;
mod lex;
mod matcher;
pub(crate) mod sasl;
mod server;
pub(crate) mod types;

#[cfg(test)]
mod tests;

pub use capability::{without_capabilities, without_capability_code, without_compress_deflate};
pub use client::{
    ClientDecoder, ClientEvent, Command, CommandArgs, FetchItems, StoreFlags, StoreMode,
};
pub use error::DecodeError;
pub use frame::{Limits, OpenLine};
pub use matcher::{Exchange, MAX_OBSERVED, MatchError, Matcher, Observed, Session, SessionError};
pub use sasl::SaslIdentity;
pub use server::{ResponseCode, ServerDecoder, ServerEvent, Tagged, Untagged};
pub use types::{Arg, Secret, SequenceSet, Spanned, Status};
