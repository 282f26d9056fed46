//! Access control (DESIGN §7): roles, the authenticated [`Principal`] behind
//! every request, and the credentials that prove it — API keys (here),
//! OIDC bearer tokens such as Pro Santé Connect's, and client certificates.
//!
//! The HTTP layer asks an authenticator for a `Principal`, then checks the
//! route's allowed roles ([`Role`]) and binds trace authorship to it.

mod apikey;
mod oidc;
mod principal;
mod role;

pub use apikey::{ApiKey, ApiKeyError, ApiKeyStore, NewApiKey};
pub use oidc::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_JWKS_MAX_AGE, DEFAULT_REFRESH_INTERVAL, Discovery,
    OidcConfigError, OidcIssuer, OidcValidator, PSC_ACR, RoleRule,
};
pub use principal::{AuthError, AuthMethod, Principal};
pub use role::{ROLES, Role};
