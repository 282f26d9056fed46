//! Shared test support: the test OIDC issuer (see `issuer.rs`).

pub mod issuer;
