//! The `Store` conformance suite on PostgreSQL (the same suite runs on the
//! embedded store in `crates/store/tests/conformance.rs`). Needs
//! `REGISTRE_TEST_DATABASE_URL`; each test runs in its own schema.

mod support;

registre_store::conformance_tests!(support::harness);
