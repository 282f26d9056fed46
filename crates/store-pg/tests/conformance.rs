//! The `Store` conformance suite on PostgreSQL (the same suite runs on the
//! embedded store in `crates/store/tests/conformance.rs`). Needs
//! `REGISTRE_TEST_DATABASE_URL`; each test runs in its own schema.

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

registre_store::conformance_tests!(support::harness);
