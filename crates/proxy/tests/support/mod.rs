//! Shared test support for the proxy's tests: real mail servers (Dovecot and
//! a private Postfix) started from a private directory (see `mail.rs`), and
//! the Python mail client driving them (`mail_client.py`).

// Each test binary uses only part of the support module.
#![allow(dead_code)]

pub mod canary;
pub mod mail;
