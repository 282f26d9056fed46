//! Access control (DESIGN §7): roles, the authenticated [`Principal`] behind
//! every request, and the credentials that prove it — API keys (here),
//! OIDC bearer tokens such as Pro Santé Connect's, and client certificates.
//!
//! The HTTP layer asks an authenticator for a `Principal`, then checks the
//! route's allowed roles ([`Role`]) and binds trace authorship to it.

mod apikey;
mod principal;
mod role;

pub use apikey::{ApiKey, ApiKeyError, ApiKeyStore, NewApiKey};
pub use principal::{AuthError, AuthMethod, Principal};
pub use role::{ROLES, Role};
