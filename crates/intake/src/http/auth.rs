//! Who is calling, and may they? Every guarded route (`/v1`, the FHIR
//! routes but `/fhir/metadata`, `/syslogsearch`) declares the roles it
//! accepts in [`ROUTES`]; the middleware authenticates the caller (API key,
//! then OIDC token) into a [`Principal`] request extension and answers 401
//! (not authenticated, with the reason) or 403 (not allowed) as a problem
//! (turned into an OperationOutcome on `/fhir` paths by `fhir::outcomes`).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registre_access::{ApiKeyStore, AuthError, Principal, Role};

use super::{AppState, Problem};
use registre_store::BoxFuture;

/// A bearer authenticator other than API keys (OIDC issuers): `Ok(None)`
/// when the credential is not its kind.
pub trait BearerAuthenticator: Send + Sync {
    fn authenticate<'a>(
        &'a self,
        bearer: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>>;
}

impl BearerAuthenticator for registre_access::OidcValidator {
    fn authenticate<'a>(
        &'a self,
        bearer: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(registre_access::OidcValidator::authenticate(self, bearer))
    }
}

/// The credentials a server accepts.
pub struct Authenticator {
    pub keys: Arc<ApiKeyStore>,
    pub bearers: Vec<Arc<dyn BearerAuthenticator>>,
    /// Client certificate → principal rules (mutual TLS).
    pub certificates: Vec<crate::tls::CertRule>,
}

impl Authenticator {
    /// One admin API key whose secret is `token` (tests, benchmarks).
    pub fn admin_token(token: &str) -> Arc<Authenticator> {
        let keys = ApiKeyStore::in_memory();
        // In memory: cannot fail on I/O; randomness failure is fatal anyway.
        if let Err(e) = keys.adopt("admin", Role::Admin, token) {
            tracing::error!(error = %e, "cannot register the admin token");
        }
        Arc::new(Authenticator {
            keys: Arc::new(keys),
            bearers: Vec::new(),
            certificates: Vec::new(),
        })
    }

    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Principal, AuthError> {
        let Some(bearer) = bearer else {
            return Err(AuthError::Missing);
        };
        if let Some(p) = self.keys.authenticate(bearer)? {
            return Ok(p);
        }
        for b in &self.bearers {
            if let Some(p) = b.authenticate(bearer).await? {
                return Ok(p);
            }
        }
        Err(AuthError::UnknownKey)
    }
}

/// Every guarded route and the roles it accepts (admin also holds auditeur).
pub const ROUTES: &[(&str, &str, &[Role])] = &[
    ("POST", "/v1/traces", &[Role::Producteur, Role::Admin]),
    ("GET", "/v1/traces", &[Role::Auditeur]),
    ("GET", "/v1/logs", &[Role::Auditeur]),
    ("GET", "/v1/proofs/inclusion", &[Role::Auditeur]),
    ("GET", "/v1/proofs/consistency", &[Role::Auditeur]),
    ("POST", "/v1/exports", &[Role::Auditeur]),
    ("GET", "/v1/keys", &[Role::Admin]),
    ("POST", "/v1/keys", &[Role::Admin]),
    ("DELETE", "/v1/keys/{id}", &[Role::Admin]),
    ("GET", "/v1/policy", &[Role::Auditeur]),
    ("PUT", "/v1/policy/{class}", &[Role::Admin]),
    ("POST", "/v1/purge", &[Role::Admin]),
    ("GET", "/v1/holds", &[Role::Admin]),
    ("POST", "/v1/holds", &[Role::Admin]),
    ("DELETE", "/v1/holds/{id}", &[Role::Admin]),
    ("POST", "/fhir/AuditEvent", &[Role::Producteur, Role::Admin]),
    ("POST", "/fhir", &[Role::Producteur, Role::Admin]),
    ("GET", "/fhir/AuditEvent", &[Role::Auditeur]),
    ("GET", "/fhir/AuditEvent/{id}", &[Role::Auditeur]),
    ("GET", "/syslogsearch", &[Role::Auditeur]),
];

/// The roles a route accepts, if it is a guarded route.
pub fn allowed(method: &Method, path: &str) -> Option<&'static [Role]> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, r)| *r)
}

/// The middleware on every guarded route.
pub async fn require_role(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_owned);
    let cert = req
        .extensions()
        .get::<crate::tls::ClientCertificate>()
        .cloned();
    let principal = match cert {
        // A verified client certificate and no bearer: the certificate is
        // the credential, and it must match a rule.
        Some(c) if bearer.is_none() => {
            match crate::tls::certificate_principal(&c, &st.auth.certificates) {
                Some(p) => p,
                None => {
                    return Problem::unauthorized(&format!(
                        "the client certificate ({}) matches no [[access.certificates]] rule",
                        c.subject
                    ))
                    .into_response();
                }
            }
        }
        _ => match st.auth.authenticate(bearer.as_deref()).await {
            Ok(p) => p,
            Err(AuthError::Unavailable(why)) => {
                return Problem::unavailable(format!(
                    "the identity provider cannot be reached to check the token: {why}"
                ))
                .into_response();
            }
            Err(e) => return Problem::unauthorized(&e.to_string()).into_response(),
        },
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let Some(roles) = allowed(req.method(), &path) else {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            "this route has no access rule; refused",
        )
        .into_response();
    };
    if !principal.may(roles) {
        let want: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let have: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
        // A refused attempt by an authenticated caller is traced too.
        let _ = super::access_log::record(
            &st,
            &principal,
            if req.method() == Method::GET {
                registre_model::Action::Recherche
            } else {
                registre_model::Action::Extension("x-refus".into())
            },
            &format!("{} {}", req.method(), req.uri().path()),
            // The route only: an unvalidated query is not worth keeping.
            "",
            403,
            format!("refused: needs {}", want.join(" or ")),
        )
        .await;
        return Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!(
                "{} {path} needs the role {}; this credential ({}) has {}",
                req.method(),
                want.join(" or "),
                principal.id,
                have.join(", ")
            ),
        )
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}
