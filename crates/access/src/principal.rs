//! The authenticated caller.

use serde::Serialize;

use crate::Role;

/// How the caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A registre API key (its id).
    ApiKey { key_id: String },
    /// An OIDC bearer token from `issuer` (e.g. Pro Santé Connect: `psc`).
    Oidc { issuer: String, acr: Option<String> },
    /// A TLS client certificate (its subject).
    Certificate { subject: String },
}

/// Who is calling, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The actor id: the API key's name, the token's `SubjectNameID` (else
    /// `sub`), the certificate's mapped name.
    pub id: String,
    /// `actor.auth` of the traces this principal writes (`apikey`, `psc`,
    /// `oidc`, `mtls`).
    pub auth: String,
    pub roles: Vec<Role>,
    /// May write traces on behalf of any actor (the proxy, which
    /// authenticates mail users itself). Otherwise the traces it writes are
    /// authored by `id`.
    pub trusted_proxy: bool,
    pub method: AuthMethod,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether any of `allowed` is held (admin implies auditor).
    pub fn may(&self, allowed: &[Role]) -> bool {
        allowed
            .iter()
            .any(|r| self.has(*r) || (*r == Role::Auditeur && self.has(Role::Admin)))
    }
}

/// Why a request is not authenticated (401) — the message says why, never
/// echoing the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error(
        "no credential: send `Authorization: Bearer <API key or token>` or a client certificate"
    )]
    Missing,
    #[error("unknown API key")]
    UnknownKey,
    #[error("this API key was revoked")]
    Revoked,
    #[error("this API key expired")]
    Expired,
    /// A bearer token was refused; the reason names the failed check
    /// (`alg none`, wrong `iss`, expired, unknown `kid`…).
    #[error("token refused: {0}")]
    Token(String),
    #[error("the identity provider cannot be reached to check the token: {0}")]
    Unavailable(String),
}
