//! The ways traces come into registre and go out to readers. Each surface
//! turns bytes into typed traces (via `registre_model`) and hands batches to
//! a [`registre_store::Store`].
//!
//! - [`http`]: the JSON API (`/v1/traces`, `/healthz`, `/metrics`,
//!   `/openapi.json`).
//! - [`syslog`]: the syslog listeners (UDP, TLS, TCP): DICOM audit messages
//!   and JSON traces in RFC 5424 messages.

pub mod events;
pub mod http;
pub mod metrics;
pub mod syslog;
pub mod tls;

pub use http::{AppState, empty_policy, router, serve};
pub use metrics::Metrics;
