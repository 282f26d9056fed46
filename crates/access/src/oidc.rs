//! OIDC bearer tokens (DESIGN §7): Pro Santé Connect (PSC) and any OpenID
//! Connect provider whose signed JWTs name a configured issuer.
//!
//! One `[[access.oidc]]` entry ([`OidcIssuer`]) per trusted provider. For
//! each bearer that has the shape of a JWS (three base64url parts),
//! [`OidcValidator::authenticate`]:
//!
//! 1. reads the header **without trusting it** and accepts only the
//!    asymmetric algorithms RS256, PS256, ES256 and EdDSA — never `none`,
//!    never an HMAC (`HS*`), so a token "signed" with the provider's public
//!    key as an HMAC secret is refused before any key is looked at;
//! 2. picks the configured issuer from the (still unverified) `iss` — an
//!    unknown issuer is refused without any network request;
//! 3. gets the issuer's keys: its discovery document
//!    (`/.well-known/openid-configuration`, or as PSC publishes it
//!    `/.well-known/wallet-openid-configuration`), then the `jwks_uri` it
//!    names, cached; a `kid` that is not cached triggers one refresh, at
//!    most once per
//!    [`DEFAULT_REFRESH_INTERVAL`] per issuer, so random `kid`s cannot make
//!    registre hammer the provider;
//! 4. checks that the key's type (and its declared `alg`, if any) fits the
//!    header's algorithm, then verifies the signature (RustCrypto: `rsa`,
//!    `p256`, `ed25519-dalek`) — keys embedded in the token (`jwk`, `jku`,
//!    `x5u`, `x5c`) are never used;
//! 5. checks `iss` (exact), `aud`, `exp`, `nbf`, `iat` (with the configured
//!    leeway) and `acr`;
//! 6. maps claims to a [`Principal`]: the actor is the first present of
//!    `actor_claims` (PSC: `SubjectNameID`, the RPPS), the roles come from
//!    `role_rules`, else `default_role`.
//!
//! Every refusal is [`AuthError::Token`] whose reason names the failed check;
//! a provider that cannot be reached is [`AuthError::Unavailable`]. The token
//! itself is never put in a message or a log line (claim values that are
//! echoed are shortened and quoted).
//!
//! Discovery and JWKS must be fetched over HTTPS; plain HTTP is accepted only
//! for loopback addresses (a provider run by the tests or a local proxy).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{AuthError, AuthMethod, Principal, Role};

/// The `acr` Pro Santé Connect asserts for its authentications, required
/// by default from an issuer discovered the PSC way ([`Discovery::Wallet`]).
pub const PSC_ACR: &str = "eidas1";

/// Minimum time between two JWKS refreshes triggered by an unknown `kid`,
/// per issuer.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How long fetched keys are used before they are fetched again.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(3600);

/// How long past [`DEFAULT_JWKS_MAX_AGE`] the last keys are still used when
/// the provider cannot be reached (keys a provider withdrew stop being
/// honoured after that, reachable or not).
const STALE_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Bearer tokens above this size are refused before they are decoded.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Discovery documents and JWKS above this size are refused.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Default timeout of one request to a provider (connect included).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an issuer publishes its OpenID configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discovery {
    /// `<issuer>/.well-known/openid-configuration` (OpenID Connect
    /// Discovery 1.0).
    #[default]
    Standard,
    /// `<issuer>/.well-known/wallet-openid-configuration`, as Pro Santé
    /// Connect publishes it.
    Wallet,
}

impl Discovery {
    /// The path appended to the issuer URL.
    pub fn well_known_path(self) -> &'static str {
        match self {
            Discovery::Standard => "/.well-known/openid-configuration",
            Discovery::Wallet => "/.well-known/wallet-openid-configuration",
        }
    }
}

/// Gives `role` to a token whose `claim` equals `value` (a string, or a
/// number or boolean written as text) or, for an array claim, contains it.
///
/// `claim` is a top-level claim name; if the token has no such claim, a
/// dotted name walks nested objects (`realm_access.roles`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub claim: String,
    pub value: String,
    pub role: Role,
}

/// One trusted OpenID provider: an `[[access.oidc]]` entry.
///
/// ```toml
/// [[access.oidc]]
/// name = "psc"
/// issuer = "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet"
/// audience = ["registre-chu-exemple"]
/// discovery = "wallet"              # required_acr then defaults to "eidas1"
/// role_rules = [{ claim = "registre_role", value = "auditeur", role = "auditeur" }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// Short name, `actor.auth` of what its principals write (`psc`).
    pub name: String,
    /// The issuer URL, compared exactly with the token's `iss`.
    pub issuer: String,
    /// Accepted audiences: the token's `aud` must contain one of them.
    pub audience: Vec<String>,
    /// Where the OpenID configuration is (default: standard).
    #[serde(default)]
    pub discovery: Discovery,
    /// The `acr` a token must carry. Unset: [`PSC_ACR`] for
    /// [`Discovery::Wallet`] issuers, none otherwise; `""` requires none.
    #[serde(default)]
    pub required_acr: Option<String>,
    /// `acr` values from weakest to strongest. When set, a token whose `acr`
    /// ranks at or above `required_acr` passes; when empty, only the
    /// required value itself does.
    #[serde(default)]
    pub acr_order: Vec<String>,
    /// Claims that name the actor, first present wins.
    #[serde(default = "default_actor_claims")]
    pub actor_claims: Vec<String>,
    #[serde(default)]
    pub role_rules: Vec<RoleRule>,
    /// The role of a token no rule matches (none: such tokens are refused).
    #[serde(default)]
    pub default_role: Option<Role>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Principals of this issuer may write traces for any actor.
    #[serde(default)]
    pub trusted_proxy: bool,
}

fn default_actor_claims() -> Vec<String> {
    vec!["SubjectNameID".into(), "sub".into()]
}

fn default_leeway() -> u64 {
    60
}

impl OidcIssuer {
    /// An issuer with the defaults of a `[[access.oidc]]` entry that sets
    /// only `name`, `issuer` and `audience` (no role rule yet).
    pub fn new(name: &str, issuer: &str, audience: &[&str]) -> OidcIssuer {
        OidcIssuer {
            name: name.to_owned(),
            issuer: issuer.to_owned(),
            audience: audience.iter().map(|a| (*a).to_owned()).collect(),
            discovery: Discovery::Standard,
            required_acr: None,
            acr_order: Vec::new(),
            actor_claims: default_actor_claims(),
            role_rules: Vec::new(),
            default_role: None,
            leeway_secs: default_leeway(),
            trusted_proxy: false,
        }
    }

    /// Pro Santé Connect: named `psc`, wallet discovery, `acr` eidas1, actor
    /// from `SubjectNameID` (the RPPS number).
    pub fn psc(issuer: &str, audience: &[&str]) -> OidcIssuer {
        OidcIssuer {
            discovery: Discovery::Wallet,
            required_acr: Some(PSC_ACR.to_owned()),
            ..OidcIssuer::new("psc", issuer, audience)
        }
    }

    /// The URL of the discovery document.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}{}",
            self.issuer.trim_end_matches('/'),
            self.discovery.well_known_path()
        )
    }

    /// The `acr` actually required (see [`OidcIssuer::required_acr`]).
    pub fn effective_required_acr(&self) -> Option<&str> {
        match (&self.required_acr, self.discovery) {
            (Some(acr), _) if acr.is_empty() => None,
            (Some(acr), _) => Some(acr),
            (None, Discovery::Wallet) => Some(PSC_ACR),
            (None, Discovery::Standard) => None,
        }
    }

    fn validate(&self) -> Result<(), OidcConfigError> {
        let bad = |reason: String| OidcConfigError::Invalid {
            name: self.name.clone(),
            reason,
        };
        if self.name.is_empty()
            || self.name.len() > 32
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "name is 1 to 32 characters among a-z, 0-9, `-` and `_`".into(),
            ));
        }
        if matches!(self.name.as_str(), "apikey" | "mtls") {
            return Err(bad(format!(
                "name `{}` is reserved for another kind of credential",
                self.name
            )));
        }
        let url = reqwest::Url::parse(&self.issuer)
            .map_err(|e| bad(format!("issuer `{}` is not a URL: {e}", self.issuer)))?;
        if !fetch_allowed(&url) {
            return Err(bad(format!(
                "issuer `{}` must be https (plain http only on loopback)",
                self.issuer
            )));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad(format!(
                "issuer `{}` has a query or a fragment",
                self.issuer
            )));
        }
        if self.audience.is_empty() || self.audience.iter().any(String::is_empty) {
            return Err(bad("audience lists at least one non-empty value".into()));
        }
        if self.actor_claims.is_empty() || self.actor_claims.iter().any(String::is_empty) {
            return Err(bad("actor_claims lists at least one claim name".into()));
        }
        if self.role_rules.iter().any(|r| r.claim.is_empty()) {
            return Err(bad("a role rule has an empty claim name".into()));
        }
        if self.role_rules.is_empty() && self.default_role.is_none() {
            return Err(bad(
                "no role_rules and no default_role: every token would be refused".into(),
            ));
        }
        if let Some(acr) = self.effective_required_acr()
            && !self.acr_order.is_empty()
            && !self.acr_order.iter().any(|a| a == acr)
        {
            return Err(bad(format!("acr_order does not list required_acr `{acr}`")));
        }
        if self.leeway_secs > 600 {
            return Err(bad("leeway_secs is at most 600".into()));
        }
        Ok(())
    }
}

/// Why the `[[access.oidc]]` configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcConfigError {
    #[error("[[access.oidc]] `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error("two [[access.oidc]] entries have the same {what} `{value}`")]
    Duplicate { what: &'static str, value: String },
    #[error("cannot set up the HTTP client for OIDC: {0}")]
    Http(String),
}

/// Checks OIDC bearer tokens against the configured issuers.
///
/// Cheap to share behind an `Arc`; keys are cached per issuer.
pub struct OidcValidator {
    issuers: Vec<IssuerState>,
    http: reqwest::Client,
    refresh_interval: Duration,
    jwks_max_age: Duration,
    http_timeout: Duration,
}

struct IssuerState {
    config: OidcIssuer,
    /// The cached keys; held only to read or swap them, never across a
    /// fetch, so tokens whose key is cached never wait for the provider.
    cache: std::sync::RwLock<KeyCache>,
    /// Held across a fetch: concurrent misses wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl IssuerState {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyCache> {
        self.cache.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyCache> {
        self.cache.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A token's header and claims, and the configured issuer it names.
struct Parsed<'a> {
    state: &'a IssuerState,
    alg: Alg,
    kid: Option<String>,
    claims: Map<String, Value>,
}

#[derive(Default)]
struct KeyCache {
    keys: Vec<Arc<Jwk>>,
    /// Last successful JWKS fetch.
    fetched: Option<Instant>,
    /// Last refresh an unknown `kid` triggered (rate limit).
    forced: Option<Instant>,
}

impl fmt::Debug for OidcValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcValidator")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|s| s.config.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("refresh_interval", &self.refresh_interval)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("http_timeout", &self.http_timeout)
            .finish()
    }
}

impl OidcValidator {
    /// Checks the configuration; fetches nothing yet (see
    /// [`OidcValidator::prefetch`]).
    pub fn new(issuers: Vec<OidcIssuer>) -> Result<OidcValidator, OidcConfigError> {
        for (i, a) in issuers.iter().enumerate() {
            a.validate()?;
            for b in &issuers[..i] {
                if a.name == b.name {
                    return Err(OidcConfigError::Duplicate {
                        what: "name",
                        value: a.name.clone(),
                    });
                }
                if a.issuer == b.issuer {
                    return Err(OidcConfigError::Duplicate {
                        what: "issuer",
                        value: a.issuer.clone(),
                    });
                }
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(DEFAULT_HTTP_TIMEOUT)
            .user_agent(concat!("registre/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if fetch_allowed(attempt.url()) {
                    attempt.follow()
                } else {
                    attempt.error("redirected to a non-https URL")
                }
            }))
            .build()
            .map_err(|e| OidcConfigError::Http(error_chain(&e)))?;
        Ok(OidcValidator {
            issuers: issuers
                .into_iter()
                .map(|config| IssuerState {
                    config,
                    cache: std::sync::RwLock::new(KeyCache::default()),
                    fetching: tokio::sync::Mutex::new(()),
                })
                .collect(),
            http,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
        })
    }

    /// Sets the minimum time between two unknown-`kid` refreshes of an
    /// issuer's keys.
    pub fn with_refresh_interval(mut self, interval: Duration) -> OidcValidator {
        self.refresh_interval = interval;
        self
    }

    /// Sets how long fetched keys are used before being fetched again.
    pub fn with_jwks_max_age(mut self, max_age: Duration) -> OidcValidator {
        self.jwks_max_age = max_age;
        self
    }

    /// Sets the timeout of one request to a provider (discovery or JWKS),
    /// reading the body included.
    pub fn with_http_timeout(mut self, timeout: Duration) -> OidcValidator {
        self.http_timeout = timeout;
        self
    }

    /// No issuer configured: every JWT is refused (its issuer is unknown).
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The configured issuers.
    pub fn issuers(&self) -> impl Iterator<Item = &OidcIssuer> {
        self.issuers.iter().map(|s| &s.config)
    }

    /// Fetches every issuer's discovery document and keys now (at start-up,
    /// to report a misconfigured or unreachable provider early). Tries all
    /// issuers; returns the first failure.
    pub async fn prefetch(&self) -> Result<(), AuthError> {
        let mut first = Ok(());
        for state in &self.issuers {
            let _fetching = state.fetching.lock().await;
            if let Err(e) = self.refresh(state).await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// The principal of a bearer token.
    ///
    /// `Ok(None)`: the bearer is not a JWS (not three base64url parts), try
    /// other authenticators (API keys). `Err(AuthError::Token(reason))`: a
    /// JWT that is refused. `Err(AuthError::Unavailable(_))`: its issuer's
    /// keys could not be fetched.
    pub async fn authenticate(&self, bearer: &str) -> Result<Option<Principal>, AuthError> {
        let Some(jws) = Jws::split(bearer)? else {
            return Ok(None);
        };
        let result = self.check(&jws).await;
        if let Err(AuthError::Token(_)) = &result {
            // The reason may quote claims: not in our own logs.
            tracing::debug!("OIDC token refused");
        }
        result.map(Some)
    }

    /// The actor id of a bearer token checked with the keys already cached
    /// (no fetch, no await: for the mail proxy, which names the author of a
    /// XOAUTH2/OAUTHBEARER login; call [`OidcValidator::prefetch`] at start
    /// and periodically). Signature, `iss`, times, audience and `acr` are
    /// checked as by [`OidcValidator::authenticate`]; role rules are not
    /// (mail users hold no role on the journal).
    ///
    /// `Ok(None)`: not a JWS. `Err(AuthError::Unavailable(_))`: no cached
    /// key verifies it (keys not fetched yet, or an unknown `kid`).
    pub fn subject_cached(&self, bearer: &str) -> Result<Option<String>, AuthError> {
        let Some(jws) = Jws::split(bearer)? else {
            return Ok(None);
        };
        let Parsed {
            state,
            alg,
            kid,
            claims,
        } = self.parse(&jws)?;
        let key = match lookup(&state.read().keys, kid.as_deref(), alg) {
            Lookup::Found(key) => key,
            Lookup::Refused(reason) => return Err(token(reason)),
            Lookup::Unknown => {
                return Err(AuthError::Unavailable(format!(
                    "no cached key of {} verifies this token",
                    state.config.name
                )));
            }
        };
        self.verify_claims(&jws, state, alg, &key, &claims)?;
        actor_id(&state.config, &claims).map(Some)
    }

    /// The header and claims of `jws`, and the configured issuer it names.
    fn parse(&self, jws: &Jws<'_>) -> Result<Parsed<'_>, AuthError> {
        let header = decode_object(jws.header, "header")?;
        let alg = Alg::from_header(&header)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(token("header parameter kid is not a string")),
        };
        let claims = decode_object(jws.payload, "payload")?;
        let iss = match claims.get("iss") {
            Some(Value::String(iss)) => iss,
            Some(_) => return Err(token("claim iss is not a string")),
            None => return Err(token("token has no iss claim")),
        };
        let state = self
            .issuers
            .iter()
            .find(|s| s.config.issuer == *iss)
            .ok_or_else(|| token(format!("issuer {} is not configured", shown(iss))))?;
        Ok(Parsed {
            state,
            alg,
            kid,
            claims,
        })
    }

    /// Signature, times, audience and `acr` of a parsed token.
    fn verify_claims(
        &self,
        jws: &Jws<'_>,
        state: &IssuerState,
        alg: Alg,
        key: &Jwk,
        claims: &Map<String, Value>,
    ) -> Result<(), AuthError> {
        let signature = URL_SAFE_NO_PAD
            .decode(jws.signature)
            .map_err(|_| token("signature is not valid base64url"))?;
        if !key.verify(alg, jws.signing_input.as_bytes(), &signature) {
            return Err(token(format!(
                "signature does not verify ({alg} with key {})",
                key.label()
            )));
        }
        let cfg = &state.config;
        check_times(claims, cfg.leeway_secs, jiff::Timestamp::now().as_second())?;
        check_audience(claims, &cfg.audience)?;
        check_acr(
            acr_of(claims)?,
            cfg.effective_required_acr(),
            &cfg.acr_order,
        )
    }

    async fn check(&self, jws: &Jws<'_>) -> Result<Principal, AuthError> {
        let Parsed {
            state,
            alg,
            kid,
            claims,
        } = self.parse(jws)?;
        let key = self.key_for(state, kid.as_deref(), alg).await?;
        self.verify_claims(jws, state, alg, &key, &claims)?;
        let principal = map_principal(&state.config, &claims, acr_of(&claims)?)?;
        tracing::debug!(issuer = %state.config.name, "OIDC token accepted");
        Ok(principal)
    }

    /// The key that verifies `alg` under `kid`, fetching or refreshing the
    /// issuer's JWKS as needed.
    async fn key_for(
        &self,
        state: &IssuerState,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Arc<Jwk>, AuthError> {
        let fresh = |c: &KeyCache| c.fetched.is_some_and(|t| t.elapsed() < self.jwks_max_age);
        // Fast path: fresh keys that know this kid.
        {
            let cache = state.read();
            if fresh(&cache) {
                match lookup(&cache.keys, kid, alg) {
                    Lookup::Found(key) => return Ok(key),
                    Lookup::Refused(reason) => return Err(token(reason)),
                    Lookup::Unknown => {}
                }
            }
        }
        let asked = Instant::now();
        let _fetching = state.fetching.lock().await;
        // Keys fetched while this request waited count as a refresh.
        let mut refreshed = state.read().fetched.is_some_and(|t| t >= asked);
        if !refreshed && !fresh(&state.read()) {
            match self.refresh(state).await {
                Ok(()) => refreshed = true,
                Err(e)
                    if state
                        .read()
                        .fetched
                        .is_some_and(|t| t.elapsed() < self.jwks_max_age + STALE_GRACE) =>
                {
                    tracing::warn!(
                        issuer = %state.config.name,
                        error = %e,
                        "cannot refresh the OIDC keys; using the last ones"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        match lookup(&state.read().keys, kid, alg) {
            Lookup::Found(key) => return Ok(key),
            Lookup::Refused(reason) => return Err(token(reason)),
            Lookup::Unknown => {}
        }
        if !refreshed {
            let forced = state.read().forced;
            if let Some(t) = forced
                && t.elapsed() < self.refresh_interval
            {
                return Err(token(format!(
                    "{} (not in the JWKS of {}, refreshed {} s ago)",
                    unknown_key(kid, alg),
                    state.config.name,
                    t.elapsed().as_secs()
                )));
            }
            // Set before fetching: a failing provider is not retried either.
            state.write().forced = Some(Instant::now());
            self.refresh(state).await?;
        }
        match lookup(&state.read().keys, kid, alg) {
            Lookup::Found(key) => Ok(key),
            Lookup::Refused(reason) => Err(token(reason)),
            Lookup::Unknown => Err(token(format!(
                "{} (not in the refreshed JWKS of {})",
                unknown_key(kid, alg),
                state.config.name
            ))),
        }
    }

    /// Fetches the discovery document, then the JWKS it names, and swaps
    /// the cached keys. Call with `state.fetching` held.
    async fn refresh(&self, state: &IssuerState) -> Result<(), AuthError> {
        let cfg = &state.config;
        let discovery_url = cfg.discovery_url();
        let doc = self
            .get_json(&cfg.name, "discovery document", &discovery_url)
            .await?;
        let unavailable =
            |what: String| AuthError::Unavailable(format!("{}: {discovery_url} {what}", cfg.name));
        match doc.get("issuer").and_then(Value::as_str) {
            Some(iss) if iss == cfg.issuer => {}
            Some(iss) => {
                return Err(unavailable(format!(
                    "names issuer {}, not the configured {}",
                    shown(iss),
                    shown(&cfg.issuer)
                )));
            }
            None => return Err(unavailable("has no issuer".into())),
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| unavailable("has no jwks_uri".into()))?;
        let allowed = reqwest::Url::parse(jwks_uri).is_ok_and(|u| fetch_allowed(&u));
        if !allowed {
            return Err(unavailable(format!(
                "gives jwks_uri {} (must be an https URL)",
                shown(jwks_uri)
            )));
        }
        let jwks = self.get_json(&cfg.name, "JWKS", jwks_uri).await?;
        let Some(entries) = jwks.get("keys").and_then(Value::as_array) else {
            return Err(AuthError::Unavailable(format!(
                "{}: the JWKS {jwks_uri} has no keys array",
                cfg.name
            )));
        };
        let keys: Vec<Arc<Jwk>> = entries
            .iter()
            .filter_map(Jwk::parse)
            .map(Arc::new)
            .collect();
        let count = keys.len();
        {
            let mut cache = state.write();
            cache.keys = keys;
            cache.fetched = Some(Instant::now());
        }
        tracing::info!(issuer = %cfg.name, keys = count, "OIDC signing keys loaded");
        Ok(())
    }

    async fn get_json(&self, name: &str, what: &str, url: &str) -> Result<Value, AuthError> {
        let unavailable = |why: String| {
            AuthError::Unavailable(format!("{name}: cannot fetch the {what} {url}: {why}"))
        };
        let mut response = self
            .http
            .get(url)
            .timeout(self.http_timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let too_large = || unavailable(format!("larger than {MAX_DOCUMENT_BYTES} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))
    }
}

/// The three parts of a compact JWS, still undecoded.
struct Jws<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, what the signature covers.
    signing_input: &'a str,
}

impl<'a> Jws<'a> {
    /// `Ok(None)` when `bearer` is not shaped like a JWS at all.
    fn split(bearer: &'a str) -> Result<Option<Jws<'a>>, AuthError> {
        let parts: Vec<&str> = bearer.splitn(6, '.').collect();
        let b64 = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if parts.len() == 5 && parts.iter().all(|p| b64(p)) && !parts[0].is_empty() {
            return Err(token("encrypted tokens (JWE) are not accepted"));
        }
        let [header, payload, signature] = parts[..] else {
            return Ok(None);
        };
        if header.is_empty()
            || payload.is_empty()
            || !b64(header)
            || !b64(payload)
            || !b64(signature)
        {
            return Ok(None);
        }
        if bearer.len() > MAX_TOKEN_BYTES {
            return Err(token(format!(
                "token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        Ok(Some(Jws {
            header,
            payload,
            signature,
            signing_input: &bearer[..header.len() + 1 + payload.len()],
        }))
    }
}

fn decode_object(part: &str, what: &str) -> Result<Map<String, Value>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|raw| serde_json::from_slice::<Map<String, Value>>(&raw).ok())
        .ok_or_else(|| token(format!("token {what} is not base64url-encoded JSON")))
}

/// The accepted signature algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Ps256,
    Es256,
    EdDsa,
}

impl Alg {
    fn from_header(header: &Map<String, Value>) -> Result<Alg, AuthError> {
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            Some(_) => return Err(token("header parameter alg is not a string")),
            None => return Err(token("token header has no alg")),
        };
        let alg = match alg {
            "RS256" => Alg::Rs256,
            "PS256" => Alg::Ps256,
            "ES256" => Alg::Es256,
            "EdDSA" => Alg::EdDsa,
            a if a.eq_ignore_ascii_case("none") => {
                return Err(token(
                    "algorithm none is not accepted: tokens must be signed",
                ));
            }
            a if a.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS")) => {
                return Err(token(format!(
                    "HMAC algorithms are not accepted ({}): only RS256, PS256, ES256 and EdDSA",
                    shown(a)
                )));
            }
            a => {
                return Err(token(format!(
                    "algorithm {} is not accepted: only RS256, PS256, ES256 and EdDSA",
                    shown(a)
                )));
            }
        };
        // RFC 7515 §4.1.11: extensions we do not understand must be refused.
        if header.contains_key("crit") {
            return Err(token("critical header extensions (crit) are not supported"));
        }
        Ok(alg)
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A signature key of a JWKS.
struct Jwk {
    kid: Option<String>,
    /// The `alg` the JWK declares, if any: then only that one is accepted.
    alg: Option<String>,
    key: KeyMaterial,
}

enum KeyMaterial {
    Rsa(Box<rsa::PublicKey>),
    P256(Box<p256::ecdsa::VerifyingKey>),
    Ed25519(Box<ed25519_dalek::VerifyingKey>),
    /// Listed but not usable; kept to say why instead of "unknown kid".
    Unusable(String),
}

impl Jwk {
    /// `None` for keys that are not for signatures (`use` other than `sig`).
    fn parse(v: &Value) -> Option<Jwk> {
        let field = |name: &str| v.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            return None;
        }
        let bytes = |name: &str| field(name).and_then(|s| URL_SAFE_NO_PAD.decode(s).ok());
        let key = match field("kty") {
            Some("RSA") => match (bytes("n"), bytes("e")) {
                (Some(n), Some(e)) => rsa_key(&n, &e),
                _ => KeyMaterial::Unusable("its RSA n or e is missing or not base64url".into()),
            },
            Some("EC") => match field("crv") {
                Some("P-256") => match (bytes("x"), bytes("y")) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let point = [&[0x04][..], &x, &y].concat();
                        match p256::ecdsa::VerifyingKey::from_sec1_bytes(&point) {
                            Ok(k) => KeyMaterial::P256(Box::new(k)),
                            Err(_) => KeyMaterial::Unusable("its x, y is not a P-256 point".into()),
                        }
                    }
                    _ => KeyMaterial::Unusable("its P-256 x or y is malformed".into()),
                },
                crv => KeyMaterial::Unusable(format!(
                    "curve {} is not supported (only P-256)",
                    shown(crv.unwrap_or("(none)"))
                )),
            },
            Some("OKP") => match (field("crv"), bytes("x")) {
                (Some("Ed25519"), Some(x)) => match <[u8; 32]>::try_from(x.as_slice())
                    .ok()
                    .and_then(|x| ed25519_dalek::VerifyingKey::from_bytes(&x).ok())
                {
                    Some(k) => KeyMaterial::Ed25519(Box::new(k)),
                    None => KeyMaterial::Unusable("its Ed25519 x is malformed".into()),
                },
                _ => KeyMaterial::Unusable("only the Ed25519 OKP curve is supported".into()),
            },
            Some("oct") => KeyMaterial::Unusable("symmetric (oct) keys are never accepted".into()),
            kty => KeyMaterial::Unusable(format!(
                "key type {} is not supported",
                shown(kty.unwrap_or("(none)"))
            )),
        };
        Some(Jwk {
            kid: field("kid").map(str::to_owned),
            alg: field("alg").map(str::to_owned),
            key,
        })
    }

    fn label(&self) -> String {
        match &self.kid {
            Some(kid) => shown(kid),
            None => "(without kid)".into(),
        }
    }

    /// Whether this key may verify `alg`; if not, why. The key type must
    /// fit the algorithm's family, and a declared `alg` must be `alg`.
    fn fits(&self, alg: Alg) -> Result<(), String> {
        let kind = match (&self.key, alg) {
            (KeyMaterial::Rsa(_), Alg::Rs256 | Alg::Ps256)
            | (KeyMaterial::P256(_), Alg::Es256)
            | (KeyMaterial::Ed25519(_), Alg::EdDsa) => None,
            (KeyMaterial::Unusable(why), _) => {
                return Err(format!("key {} cannot be used: {why}", self.label()));
            }
            (KeyMaterial::Rsa(_), _) => Some("an RSA"),
            (KeyMaterial::P256(_), _) => Some("an EC P-256"),
            (KeyMaterial::Ed25519(_), _) => Some("an Ed25519"),
        };
        if let Some(kind) = kind {
            return Err(format!(
                "key {} is {kind} key, it cannot verify {alg}",
                self.label()
            ));
        }
        match &self.alg {
            Some(declared) if declared != alg.name() => Err(format!(
                "key {} is declared for {}, not {alg}",
                self.label(),
                shown(declared)
            )),
            _ => Ok(()),
        }
    }

    /// Call only after [`Jwk::fits`].
    fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier as _;
        match (&self.key, alg) {
            (KeyMaterial::Rsa(k), Alg::Rs256) => k
                .pkcs1v15_verify::<sha2::Sha256>(message, signature)
                .is_ok(),
            (KeyMaterial::Rsa(k), Alg::Ps256) => {
                k.pss_verify::<sha2::Sha256>(message, signature).is_ok()
            }
            (KeyMaterial::P256(k), Alg::Es256) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify(message, &s).is_ok()),
            (KeyMaterial::Ed25519(k), Alg::EdDsa) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|s| k.verify_strict(message, &s).is_ok())
            }
            _ => false,
        }
    }
}

fn rsa_key(n: &[u8], e: &[u8]) -> KeyMaterial {
    let key = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(n),
        rsa::BoxedUint::from_be_slice_vartime(e),
    );
    match key {
        Ok(k) if rsa::traits::PublicKeyParts::size(&k) < 256 => {
            KeyMaterial::Unusable("RSA keys shorter than 2048 bits are refused".into())
        }
        Ok(k) => KeyMaterial::Rsa(Box::new(k)),
        Err(e) => KeyMaterial::Unusable(format!("invalid RSA key: {e}")),
    }
}

enum Lookup {
    Found(Arc<Jwk>),
    /// No key under this `kid` (or, without `kid`, none for this `alg`).
    Unknown,
    Refused(String),
}

fn lookup(keys: &[Arc<Jwk>], kid: Option<&str>, alg: Alg) -> Lookup {
    match kid {
        Some(kid) => {
            let mut refusal = None;
            for key in keys.iter().filter(|k| k.kid.as_deref() == Some(kid)) {
                match key.fits(alg) {
                    Ok(()) => return Lookup::Found(Arc::clone(key)),
                    Err(why) => refusal = Some(why),
                }
            }
            refusal.map_or(Lookup::Unknown, Lookup::Refused)
        }
        None => {
            let mut fitting = keys.iter().filter(|k| k.fits(alg).is_ok());
            match (fitting.next(), fitting.next()) {
                (Some(key), None) => Lookup::Found(Arc::clone(key)),
                (None, _) => Lookup::Unknown,
                (Some(_), Some(_)) => Lookup::Refused(format!(
                    "token has no kid and several keys of the JWKS could verify {alg}"
                )),
            }
        }
    }
}

fn unknown_key(kid: Option<&str>, alg: Alg) -> String {
    match kid {
        Some(kid) => format!("unknown key id {}", shown(kid)),
        None => format!("token has no kid and no key can verify {alg}"),
    }
}

/// `exp` (required), `nbf` and `iat` against `now`, with `leeway`.
fn check_times(claims: &Map<String, Value>, leeway: u64, now: i64) -> Result<(), AuthError> {
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    let exp = numeric_date(claims, "exp")?.ok_or_else(|| token("token has no exp claim"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(token(format!("token expired at {}", date(exp))));
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now.saturating_add(leeway) < nbf
    {
        return Err(token(format!("token not valid before {}", date(nbf))));
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && iat > now.saturating_add(leeway)
    {
        return Err(token(format!("token issued in the future ({})", date(iat))));
    }
    Ok(())
}

fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // A fractional NumericDate: whole seconds are precise enough.
            None => match n.as_f64() {
                Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                _ => Err(token(format!("claim {name} is out of range"))),
            },
        },
        Some(_) => Err(token(format!("claim {name} is not a number"))),
    }
}

fn date(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), AuthError> {
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err(token("claim aud is neither a string nor an array")),
        None => return Err(token("token has no aud claim")),
    };
    if audiences.iter().any(|a| accepted.iter().any(|b| b == a)) {
        return Ok(());
    }
    let wanted: Vec<String> = accepted.iter().map(|a| shown(a)).collect();
    Err(token(if wanted.len() == 1 {
        format!("audience does not include {}", wanted.join(""))
    } else {
        format!("audience does not include any of {}", wanted.join(", "))
    }))
}

fn check_acr(acr: Option<&str>, required: Option<&str>, order: &[String]) -> Result<(), AuthError> {
    let Some(required) = required else {
        return Ok(());
    };
    let Some(acr) = acr else {
        return Err(token(format!("token has no acr ({required} required)")));
    };
    if acr == required {
        return Ok(());
    }
    let rank = |v: &str| order.iter().position(|o| o == v);
    if let (Some(have), Some(need)) = (rank(acr), rank(required))
        && have >= need
    {
        return Ok(());
    }
    Err(token(format!(
        "acr {} is below the required {required}",
        shown(acr)
    )))
}

/// The `acr` claim, if any.
fn acr_of(claims: &Map<String, Value>) -> Result<Option<&str>, AuthError> {
    match claims.get("acr") {
        None => Ok(None),
        Some(Value::String(acr)) => Ok(Some(acr.as_str())),
        Some(_) => Err(token("claim acr is not a string")),
    }
}

/// The actor id a token names (the first of the issuer's actor claims).
fn actor_id(cfg: &OidcIssuer, claims: &Map<String, Value>) -> Result<String, AuthError> {
    let id = cfg
        .actor_claims
        .iter()
        .find_map(|name| claim(claims, name).and_then(scalar_text))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            token(format!(
                "token carries none of the actor claims {}",
                cfg.actor_claims.join(", ")
            ))
        })?;
    if id.len() > 256 || id.chars().any(char::is_control) {
        return Err(token(
            "the actor claim is not a usable actor id (over 256 bytes or control characters)",
        ));
    }
    Ok(id)
}

fn map_principal(
    cfg: &OidcIssuer,
    claims: &Map<String, Value>,
    acr: Option<&str>,
) -> Result<Principal, AuthError> {
    let id = actor_id(cfg, claims)?;
    let mut roles: Vec<Role> = cfg
        .role_rules
        .iter()
        .filter(|rule| {
            claim(claims, &rule.claim).is_some_and(|v| match v {
                Value::Array(items) => items
                    .iter()
                    .any(|i| scalar_text(i).as_deref() == Some(rule.value.as_str())),
                v => scalar_text(v).as_deref() == Some(rule.value.as_str()),
            })
        })
        .map(|rule| rule.role)
        .collect();
    if roles.is_empty() {
        roles.extend(cfg.default_role);
    }
    if roles.is_empty() {
        return Err(token(format!(
            "no role for actor {} of {}: no role rule matches the token and no default_role is set",
            shown(&id),
            cfg.name
        )));
    }
    // As for API keys: an admin may do everything.
    if roles.contains(&Role::Admin) {
        roles.extend([Role::Auditeur, Role::Producteur]);
    }
    roles.sort_unstable_by(|a, b| b.cmp(a));
    roles.dedup();
    Ok(Principal {
        id,
        auth: cfg.name.clone(),
        roles,
        trusted_proxy: cfg.trusted_proxy,
        method: AuthMethod::Oidc {
            issuer: cfg.issuer.clone(),
            acr: acr.map(str::to_owned),
        },
    })
}

/// A claim by name, else by dotted path through nested objects.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    claims.get(name).or_else(|| {
        let mut parts = name.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |v, p| v.as_object()?.get(p))
    })
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn token(reason: impl Into<String>) -> AuthError {
    AuthError::Token(reason.into())
}

/// A value from the token, quoted and cut to 64 characters for messages.
fn shown(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// Discovery and keys come over https, or plain http on loopback only.
fn fetch_allowed(url: &reqwest::Url) -> bool {
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => url.host_str().is_some_and(|host| {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// An error and its sources, for messages (reqwest's own display omits the
/// cause, e.g. "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn shape() {
        assert!(matches!(Jws::split("rgk_0011aabb_secret"), Ok(None)));
        assert!(matches!(Jws::split("a.b"), Ok(None)));
        assert!(matches!(Jws::split("a.b.c.d"), Ok(None)));
        assert!(matches!(Jws::split("a+b.c.d"), Ok(None)));
        assert!(matches!(Jws::split(".b.c"), Ok(None)));
        assert!(matches!(Jws::split("a.b."), Ok(Some(_))));
        assert!(matches!(Jws::split("a.b.c.d.e"), Err(AuthError::Token(_))));
        let big = format!("a.{}.c", "b".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(Jws::split(&big), Err(AuthError::Token(_))));
    }

    #[test]
    fn times() {
        let now = 1_800_000_000;
        let ok = claims(serde_json::json!({"exp": now + 10, "nbf": now - 10, "iat": now}));
        assert_eq!(check_times(&ok, 60, now), Ok(()));
        let late = claims(serde_json::json!({"exp": now - 61}));
        assert!(
            matches!(check_times(&late, 60, now), Err(AuthError::Token(r)) if r.starts_with("token expired"))
        );
        let within_leeway = claims(serde_json::json!({"exp": now - 59}));
        assert_eq!(check_times(&within_leeway, 60, now), Ok(()));
        let early = claims(serde_json::json!({"exp": now + 600, "nbf": now + 61}));
        assert!(
            matches!(check_times(&early, 60, now), Err(AuthError::Token(r)) if r.starts_with("token not valid before"))
        );
        let fractional = claims(serde_json::json!({"exp": (now + 10) as f64 + 0.5}));
        assert_eq!(check_times(&fractional, 0, now), Ok(()));
        let no_exp = claims(serde_json::json!({}));
        assert!(check_times(&no_exp, 60, now).is_err());
        let text = claims(serde_json::json!({"exp": "soon"}));
        assert!(check_times(&text, 60, now).is_err());
    }

    #[test]
    fn acr_ranks() {
        let order = vec![
            "eidas-low".to_owned(),
            "eidas1".to_owned(),
            "eidas3".to_owned(),
        ];
        assert_eq!(check_acr(Some("eidas1"), Some("eidas1"), &[]), Ok(()));
        assert!(check_acr(Some("eidas3"), Some("eidas1"), &[]).is_err());
        assert_eq!(check_acr(Some("eidas3"), Some("eidas1"), &order), Ok(()));
        assert!(check_acr(Some("eidas-low"), Some("eidas1"), &order).is_err());
        assert!(check_acr(None, Some("eidas1"), &order).is_err());
        assert_eq!(check_acr(None, None, &[]), Ok(()));
    }

    #[test]
    fn config_defaults_and_checks() {
        let cfg: OidcIssuer = toml_like(serde_json::json!({
            "name": "psc",
            "issuer": "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet",
            "audience": ["registre"],
            "discovery": "wallet",
            "role_rules": [{"claim": "registre_role", "value": "auditeur", "role": "auditeur"}],
        }));
        assert_eq!(cfg.effective_required_acr(), Some(PSC_ACR));
        assert_eq!(cfg.actor_claims, ["SubjectNameID", "sub"]);
        assert_eq!(cfg.leeway_secs, 60);
        assert_eq!(
            cfg.discovery_url(),
            "https://auth.esw.esante.gouv.fr/auth/realms/esante-wallet/.well-known/wallet-openid-configuration"
        );
        assert!(OidcValidator::new(vec![cfg.clone()]).is_ok());
        let plain = OidcIssuer {
            issuer: "http://idp.example".into(),
            ..cfg.clone()
        };
        assert!(OidcValidator::new(vec![plain]).is_err());
        let no_role = OidcIssuer {
            role_rules: Vec::new(),
            ..cfg.clone()
        };
        assert!(OidcValidator::new(vec![no_role]).is_err());
        let twice = OidcIssuer {
            name: "other".into(),
            ..cfg.clone()
        };
        assert!(matches!(
            OidcValidator::new(vec![cfg.clone(), twice]),
            Err(OidcConfigError::Duplicate { what: "issuer", .. })
        ));
        let typo = serde_json::from_value::<OidcIssuer>(serde_json::json!({
            "name": "psc", "issuer": "https://x.example", "audience": ["a"], "requried_acr": "x"
        }));
        assert!(typo.is_err());
    }

    fn toml_like(v: Value) -> OidcIssuer {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("config: {e}"))
    }

    #[test]
    fn dotted_claims_and_rules() {
        let c = claims(serde_json::json!({
            "sub": "abc",
            "realm_access": {"roles": ["registre-admin"]},
            "https://registre.example/roles": "auditeur",
        }));
        assert!(claim(&c, "realm_access.roles").is_some());
        assert!(claim(&c, "https://registre.example/roles").is_some());
        let mut cfg = OidcIssuer::new("oidc", "https://idp.example", &["registre"]);
        cfg.role_rules = vec![RoleRule {
            claim: "realm_access.roles".into(),
            value: "registre-admin".into(),
            role: Role::Admin,
        }];
        let p = map_principal(&cfg, &c, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.id, "abc");
        assert_eq!(p.roles, vec![Role::Admin, Role::Auditeur, Role::Producteur]);
    }
}
