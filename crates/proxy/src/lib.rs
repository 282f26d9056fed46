//! The MSSanté tracing proxy (DESIGN §9, issue 6): IMAP and submission
//! relays between mail clients and the operator's servers, bytes forwarded
//! unchanged, one trace per significant action, never any content.
//!
//! - [`imap`]: a passive IMAP4rev1/rev2 parser for both directions
//!   (commands with tags, literals, IDLE, AUTHENTICATE; responses matched by
//!   tag), producing protocol events that never hold message content.
//! - [`imap_trace`]: one registre trace per significant IMAP action, from a
//!   command matched with its answer (DESIGN §9 table).
//! - [`relay`]: the IMAP relay (implicit TLS or STARTTLS toward clients,
//!   implicit, STARTTLS or none upstream), fail closed.
//! - [`spool`]: a bounded, sealed on-disk spool in front of a remote
//!   journal, flushed in order.
//! - [`tls`]: the TLS modes of each side.
//! - [`smtp`]: a passive SMTP/submission parser for both directions.
//! - [`smtp_trace`]: one registre trace per AUTH, mail transaction and QUIT
//!   (DESIGN §9 table); [`trace_common`] holds what both tracers share.
//! - [`smtp_relay`]: the submission relay (implicit TLS or STARTTLS toward
//!   clients, implicit, STARTTLS or none upstream), fail closed.

pub mod imap;
pub mod imap_trace;
pub mod relay;
pub mod smtp;
pub mod smtp_relay;
pub mod smtp_trace;
pub mod spool;
pub mod tls;
pub mod trace_common;
