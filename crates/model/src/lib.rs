//! The vocabulary every layer of registre speaks: the trace, its action
//! vocabulary, the content guard that turns untrusted JSON into a typed
//! [`Trace`] or a precise [`TraceError`], and the RFC 8785 canonical form.
//!
//! Pure code: no I/O, no clock, no randomness. Server-added fields are given
//! to [`StoredTrace::new`] by the caller.

mod action;
mod class;
mod error;
mod guard;
pub mod jcs;
mod parse;
mod retention;
mod time;
mod trace;

pub use action::{ACTIONS, Action};
pub use class::{ClassName, ClassNameError};
pub use error::{TraceError, TraceErrorKind};
pub use guard::{content_field_reason, request_literal};
pub use parse::{Limits, json_error_position, parse_trace, parse_trace_value};
pub use retention::{Retention, RetentionError, RetentionUnit};
pub use time::{format_received_at, parse_occurred_at};
pub use trace::{
    Actor, Original, Outcome, Patient, Response, Salt, Source, StoredTrace, Target, Trace,
};
