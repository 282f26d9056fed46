//! A passive SMTP / submission parser (RFC 5321, 6409) for a proxy that
//! forwards bytes unchanged (DESIGN §9, issue 6): the counterpart of
//! [`imap`](crate::imap), built the same way.
//!
//! # Why our own parser and not smtp-proto
//!
//! smtp-proto parses one request from a buffer the caller must keep
//! complete, and its DATA reader returns the message bytes. The proxy only
//! needs to *count* message bytes as they stream by and find the end of the
//! data, never holding them: the same reason the IMAP side skips literals.
//! These decoders keep at most one line of text per direction, whatever the
//! message size, and accept chunks of any size (TLS records).
//!
//! # Pieces
//!
//! - [`ClientDecoder`]: client → server bytes into [`ClientEvent`]s
//!   ([`Command`]s with typed [`CommandArgs`], AUTH continuation lines, the
//!   end of a DATA message or of a BDAT chunk, bytes sent after STARTTLS).
//!   It only observes, so whether the bytes after `DATA` are a message
//!   depends on the server's answer: [`ClientDecoder::on_decision`] tells
//!   it ([`Session`] does).
//! - [`ServerDecoder`]: server → client bytes into [`ServerEvent`]s: whole
//!   (multi-line) [`Reply`]s with their [`EnhancedCode`], the EHLO
//!   extensions ([`Reply::extensions`], [`without_extensions`] to filter
//!   them) and the queue id of a final reply ([`Reply::queue_id`]).
//! - [`Matcher`]: SMTP answers in order, even with PIPELINING, so replies
//!   are matched to commands first in, first out. It assembles one
//!   [`Transaction`] per MAIL (sender, recipients with each RCPT's reply,
//!   message size, final reply, queue id: one `envoi` trace later) and one
//!   [`AuthOutcome`] per AUTH (`connexion`). [`Session`] wires everything.
//!
//! # Never content
//!
//! Message bytes (DATA and BDAT) are counted and never copied; passwords
//! are dropped as soon as they are read and bearer tokens are held in a
//! [`Secret`] whose `Debug` says only its length; unknown commands keep only
//! their name; errors name limits and rules, never the bytes that broke them.

mod client;
mod error;
mod frame;
mod matcher;
mod server;

#[cfg(test)]
mod tests;

pub use crate::imap::{SaslIdentity, Secret, Spanned};
pub use client::{ClientDecoder, ClientEvent, Command, CommandArgs, Decision, Param, Path};
pub use error::DecodeError;
pub use frame::Limits;
pub use matcher::{
    AuthOutcome, Decoded, Ending, Exchange, MAX_RECIPIENTS, MatchError, Matcher, Outcome,
    Recipient, Session, SessionError, Transaction,
};
pub use server::{
    EnhancedCode, Extension, MAX_REPLY_LINES, Reply, ServerDecoder, ServerEvent, without_extensions,
};
