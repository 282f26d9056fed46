//! A test OpenID provider standing in for Pro Santé Connect, which tests
//! cannot reach. It is the only stand-in the tests use: a real HTTP server on
//! 127.0.0.1 with real keys generated at start — RSA 2048 (`rsa-1`, no `alg`
//! declared, so RS256 and PS256), EC P-256 (`ec-1`, ES256) and Ed25519
//! (`ed-1`, EdDSA) — and the endpoints a PSC client uses:
//!
//! - `/.well-known/openid-configuration` and, as PSC publishes it,
//!   `/.well-known/wallet-openid-configuration`;
//! - `/jwks` (keys can be added or rotated in at run time, see
//!   [`TestIssuer::add_key`]; an `enc` key is listed too, as PSC does);
//! - `/authorize`: approves at once and redirects to the loopback
//!   `redirect_uri` with `code` and `state` (PKCE S256 required);
//! - `/token`: `authorization_code` (checks the PKCE verifier) and
//!   `urn:openid:params:grant-type:ciba` (`authorization_pending` for the
//!   first [`IssuerOptions::ciba_pending_polls`] polls, then `slow_down`
//!   once, then the tokens);
//! - `/bc-authorize`: CIBA backchannel request, returns `auth_req_id`,
//!   `expires_in`, `interval`.
//!
//! Tokens carry PSC-like claims ([`TestIssuer::claims`]): `iss`, `aud`,
//! `sub`, `SubjectNameID` (an RPPS number), `acr: "eidas1"`, `exp`, `nbf`,
//! `iat`, and the role claim `registre_role`. [`TestIssuer::issue`] mints
//! any token, including malicious ones (`alg: none`, HS256 keyed with the
//! RSA public key, a `kid` not in the JWKS; [`tamper`] edits a signed
//! payload).
//!
//! All routes live under [`IssuerOptions::realm_path`] (PSC:
//! `/auth/realms/esante-wallet`, see [`PSC_REALM`]).
//!
//! Reuse from another crate's tests:
//!
//! ```ignore
//! #[path = "../../access/tests/support/issuer.rs"]
//! mod issuer;
//! ```
//!
//! with these dev-dependencies: `tokio`, `axum` (feature `form`),
//! `serde`, `serde_json`, `base64`, `sha2`, `hmac`, `getrandom` (0.3),
//! `rsa` (features `pkcs1v15`, `encoding`), `p256` (feature `ecdsa`),
//! `ed25519-dalek`.
//!
//! This is test code: it panics (with a message) on its own failures.

#![allow(dead_code)]
// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use rsa::traits::PublicKeyParts;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// PSC's realm path: the issuer is `<base>/auth/realms/esante-wallet`.
pub const PSC_REALM: &str = "/auth/realms/esante-wallet";
/// The default audience of the access tokens.
pub const AUDIENCE: &str = "registre";
/// The default subject: an RPPS number (11 digits after the `8` type).
pub const RPPS: &str = "810001234567";
/// The claim that carries the registre role.
pub const ROLE_CLAIM: &str = "registre_role";
/// The CIBA grant type.
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

/// How the test issuer behaves.
#[derive(Debug, Clone)]
pub struct IssuerOptions {
    /// Path of the issuer under the server's base URL ("" or [`PSC_REALM`]).
    pub realm_path: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// `SubjectNameID` of [`TestIssuer::claims`].
    pub subject: String,
    /// `registre_role` of minted tokens.
    pub role: String,
    /// `acr` of minted tokens.
    pub acr: String,
    /// CIBA polls answered `authorization_pending` before one `slow_down`.
    pub ciba_pending_polls: u32,
    /// The `interval` a CIBA request returns, in seconds.
    pub ciba_interval_secs: u64,
    /// Lifetime of minted tokens, in seconds.
    pub token_ttl_secs: i64,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        IssuerOptions {
            realm_path: String::new(),
            audience: AUDIENCE.into(),
            subject: RPPS.into(),
            role: "auditeur".into(),
            acr: "eidas1".into(),
            ciba_pending_polls: 2,
            ciba_interval_secs: 1,
            token_ttl_secs: 300,
        }
    }
}

/// The kind of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, RS256 and PS256.
    Rsa,
    /// EC P-256, ES256.
    Ec,
    /// Ed25519, EdDSA.
    Ed25519,
}

enum Secret {
    Rsa(Box<rsa::PrivateKey>),
    Ec(Box<p256::ecdsa::SigningKey>),
    Ed(Box<ed25519_dalek::SigningKey>),
}

struct TestKey {
    kid: String,
    /// `alg` declared in the JWK, if any.
    alg: Option<String>,
    published: bool,
    secret: Secret,
}

impl TestKey {
    fn generate(kid: &str, kind: KeyKind, alg: Option<&str>, published: bool) -> TestKey {
        let secret = match kind {
            KeyKind::Rsa => Secret::Rsa(Box::new(
                rsa::PrivateKey::new(&mut OsRng, 2048).expect("RSA key generation"),
            )),
            KeyKind::Ec => loop {
                // A uniformly random scalar; the rare invalid one is redrawn.
                if let Ok(k) = p256::ecdsa::SigningKey::from_slice(&random::<32>()) {
                    break Secret::Ec(Box::new(k));
                }
            },
            KeyKind::Ed25519 => Secret::Ed(Box::new(ed25519_dalek::SigningKey::from_bytes(
                &random::<32>(),
            ))),
        };
        TestKey {
            kid: kid.to_owned(),
            alg: alg.map(str::to_owned),
            published,
            secret,
        }
    }

    fn kind(&self) -> KeyKind {
        match self.secret {
            Secret::Rsa(_) => KeyKind::Rsa,
            Secret::Ec(_) => KeyKind::Ec,
            Secret::Ed(_) => KeyKind::Ed25519,
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk = match &self.secret {
            Secret::Rsa(k) => rsa_jwk(&k.to_public_key()),
            Secret::Ec(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let xy = point.as_bytes();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&xy[1..33]), "y": b64(&xy[33..65])})
            }
            Secret::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = &self.alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        use ed25519_dalek::Signer as _;
        match (&self.secret, alg) {
            (Secret::Rsa(k), "RS256") => {
                k.pkcs1v15_sign::<Sha256>(message).expect("RS256 signature")
            }
            (Secret::Rsa(k), "PS256") => k
                .pss_sign_with_rng::<Sha256, _>(&mut OsRng, message)
                .expect("PS256 signature"),
            (Secret::Ec(k), "ES256") => {
                let s: p256::ecdsa::Signature = k.sign(message);
                s.to_bytes().to_vec()
            }
            (Secret::Ed(k), "EdDSA") => k.sign(message).to_bytes().to_vec(),
            // Any other pairing: a signature of the right alg cannot be made
            // with this key; return bytes that verify under nothing.
            _ => vec![0x5a; 64],
        }
    }
}

fn rsa_jwk(public: &rsa::PublicKey) -> Value {
    json!({"kty": "RSA", "n": b64(&public.n_bytes()), "e": b64(&public.e_bytes())})
}

#[derive(Default)]
struct Grants {
    codes: HashMap<String, CodeGrant>,
    ciba: HashMap<String, CibaGrant>,
}

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    subject: String,
}

struct CibaGrant {
    client_id: String,
    subject: String,
    polls: u32,
    slowed: bool,
    expires: Instant,
}

struct Shared {
    issuer: String,
    options: IssuerOptions,
    keys: Mutex<Vec<TestKey>>,
    /// How long `/jwks` waits before answering (a slow provider).
    jwks_delay: Mutex<Duration>,
    hits: Mutex<HashMap<&'static str, usize>>,
    grants: Mutex<Grants>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn hit(&self, endpoint: &'static str) {
        *lock(&self.hits).entry(endpoint).or_default() += 1;
    }

    fn claims(&self, subject: &str) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "aud": self.options.audience,
            // PSC's `sub` is opaque; the RPPS is in SubjectNameID.
            "sub": format!("f:7d3c1b2a-test-4e5f-9a8b-issuer:{subject}"),
            "SubjectNameID": subject,
            "preferred_username": subject,
            "acr": self.options.acr,
            "exp": now + self.options.token_ttl_secs,
            "nbf": now,
            "iat": now,
            "auth_time": now,
            "azp": "registre-client",
            "scope": "openid scope_all",
            "jti": b64(&random::<16>()),
            ROLE_CLAIM: self.options.role,
        })
    }

    /// Signs with the key named `key_kid` (or the issuer's default key of
    /// the algorithm's kind), whatever the header says.
    fn sign_jwt(&self, header: &Value, claims: &Value, key_kid: Option<&str>) -> String {
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("none");
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature = match alg {
            a if a.eq_ignore_ascii_case("none") => Vec::new(),
            "HS256" => hmac_sha256(self.rsa_public_pem("rsa-1").as_bytes(), input.as_bytes()),
            _ => {
                let (kind, default) = match alg {
                    "ES256" => (KeyKind::Ec, "ec-1"),
                    "EdDSA" => (KeyKind::Ed25519, "ed-1"),
                    _ => (KeyKind::Rsa, "rsa-1"),
                };
                let keys = lock(&self.keys);
                let key = keys
                    .iter()
                    .find(|k| Some(k.kid.as_str()) == key_kid && k.kind() == kind)
                    .or_else(|| keys.iter().find(|k| k.kid == default))
                    .expect("the default keys exist");
                key.sign(alg, input.as_bytes())
            }
        };
        format!("{input}.{}", b64(&signature))
    }

    fn rsa_public(&self, kid: &str) -> rsa::PublicKey {
        let keys = lock(&self.keys);
        match keys.iter().find(|k| k.kid == kid).map(|k| &k.secret) {
            Some(Secret::Rsa(k)) => k.to_public_key(),
            _ => panic!("no RSA key {kid}"),
        }
    }

    fn rsa_public_pem(&self, kid: &str) -> String {
        use rsa::pkcs8::EncodePublicKey as _;
        self.rsa_public(kid)
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .expect("PEM")
    }

    fn tokens(&self, subject: &str, client_id: &str, nonce: Option<String>) -> Value {
        let access = self.claims(subject);
        let mut id = self.claims(subject);
        id["aud"] = json!(client_id);
        if let Some(nonce) = nonce {
            id["nonce"] = json!(nonce);
        }
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"});
        json!({
            "access_token": self.sign_jwt(&header, &access, Some("rsa-1")),
            "id_token": self.sign_jwt(&header, &id, Some("rsa-1")),
            "token_type": "Bearer",
            "expires_in": self.options.token_ttl_secs,
            "scope": "openid scope_all",
        })
    }
}

/// A running test issuer; the server stops when it is dropped.
pub struct TestIssuer {
    base: String,
    state: Arc<Shared>,
    /// Dropping it shuts the server down (gracefully: idle kept-alive
    /// connections are closed too).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestIssuer {
    /// Starts an issuer with the default options on 127.0.0.1 (port
    /// chosen by the system).
    pub async fn start() -> TestIssuer {
        TestIssuer::start_with(IssuerOptions::default()).await
    }

    pub async fn start_with(options: IssuerOptions) -> TestIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let base = format!("http://{}", listener.local_addr().expect("local address"));
        let realm = options.realm_path.trim_end_matches('/').to_owned();
        let keys = vec![
            TestKey::generate("rsa-1", KeyKind::Rsa, None, true),
            TestKey::generate("ec-1", KeyKind::Ec, Some("ES256"), true),
            TestKey::generate("ed-1", KeyKind::Ed25519, Some("EdDSA"), true),
        ];
        let state = Arc::new(Shared {
            issuer: format!("{base}{realm}"),
            options,
            keys: Mutex::new(keys),
            jwks_delay: Mutex::new(Duration::ZERO),
            hits: Mutex::new(HashMap::new()),
            grants: Mutex::new(Grants::default()),
        });
        let router = Router::new()
            .route(
                &format!("{realm}/.well-known/openid-configuration"),
                get(standard_discovery),
            )
            .route(
                &format!("{realm}/.well-known/wallet-openid-configuration"),
                get(wallet_discovery),
            )
            .route(&format!("{realm}/jwks"), get(jwks))
            .route(&format!("{realm}/authorize"), get(authorize))
            .route(&format!("{realm}/token"), post(token))
            .route(&format!("{realm}/bc-authorize"), post(bc_authorize))
            .with_state(Arc::clone(&state));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        TestIssuer {
            base,
            state,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    /// Stops the server and waits until its port and its open connections
    /// are closed (requests then fail to connect).
    pub async fn stop(&mut self) {
        self.shutdown.take();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of an endpoint of the issuer (`"/token"`, `"/authorize"`…).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.state.issuer)
    }

    pub fn options(&self) -> &IssuerOptions {
        &self.state.options
    }

    /// PSC-like claims for the default subject, valid now.
    pub fn claims(&self) -> Value {
        self.state.claims(&self.state.options.subject)
    }

    /// PSC-like claims for `subject` (an RPPS number).
    pub fn claims_for(&self, subject: &str) -> Value {
        self.state.claims(subject)
    }

    /// A compact JWS of `claims` with header `{"alg", "typ": "JWT", "kid"}`.
    ///
    /// `alg` "RS256"/"PS256"/"ES256"/"EdDSA": signed with the key `kid` if
    /// it is of the right kind, else with the default key of that kind
    /// (`rsa-1`, `ec-1`, `ed-1`) — so a `kid` the JWKS does not list still
    /// gets a genuine signature. "none": empty signature. "HS256": HMAC
    /// keyed with the PEM of the `rsa-1` public key (the key-confusion
    /// attack). Anything else: a signature that verifies under nothing.
    pub fn issue(&self, claims: &Value, kid: &str, alg: &str) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        self.state.sign_jwt(&header, claims, Some(kid))
    }

    /// Like [`TestIssuer::issue`] with any header (its `kid` picks the key).
    pub fn issue_with_header(&self, header: &Value, claims: &Value) -> String {
        let kid = header.get("kid").and_then(Value::as_str);
        self.state.sign_jwt(header, claims, kid)
    }

    /// Signs with key `signing_kid` whatever `header` says (a forgery with
    /// an unpublished key under a published `kid`, say).
    pub fn issue_signed_by(&self, header: &Value, claims: &Value, signing_kid: &str) -> String {
        self.state.sign_jwt(header, claims, Some(signing_kid))
    }

    /// An HS256 token whose HMAC key is `secret`.
    pub fn issue_hmac(&self, claims: &Value, kid: &str, secret: &[u8]) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let mac = hmac_sha256(secret, input.as_bytes());
        format!("{input}.{}", b64(&mac))
    }

    /// Generates a key; if `published`, the JWKS lists it from now on.
    pub fn add_key(&self, kid: &str, kind: KeyKind, alg: Option<&str>, published: bool) {
        let key = TestKey::generate(kid, kind, alg, published);
        let mut keys = lock(&self.state.keys);
        keys.retain(|k| k.kid != kid);
        keys.push(key);
    }

    /// Lists (`true`) or withdraws (`false`) key `kid` in the JWKS.
    pub fn publish(&self, kid: &str, published: bool) {
        for k in lock(&self.state.keys).iter_mut().filter(|k| k.kid == kid) {
            k.published = published;
        }
    }

    /// Makes `/jwks` answer only after `delay` (a slow or hanging provider).
    pub fn set_jwks_delay(&self, delay: Duration) {
        *lock(&self.state.jwks_delay) = delay;
    }

    /// The RSA public key `kid` as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn rsa_public_key_pem(&self, kid: &str) -> String {
        self.state.rsa_public_pem(kid)
    }

    /// The RSA public key `kid` as PKCS#1 PEM (`BEGIN RSA PUBLIC KEY`).
    pub fn rsa_public_key_pkcs1_pem(&self, kid: &str) -> String {
        use rsa::pkcs1::EncodeRsaPublicKey as _;
        self.state
            .rsa_public(kid)
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .expect("PEM")
    }

    /// The RSA public key `kid` as SPKI DER.
    pub fn rsa_public_key_der(&self, kid: &str) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey as _;
        self.state
            .rsa_public(kid)
            .to_public_key_der()
            .expect("DER")
            .as_bytes()
            .to_vec()
    }

    /// The JWK of the RSA public key `kid` (as the JWKS lists it).
    pub fn rsa_public_key_jwk(&self, kid: &str) -> Value {
        rsa_jwk(&self.state.rsa_public(kid))
    }

    /// How many requests an endpoint served: `"/jwks"`, `"/authorize"`,
    /// `"/token"`, `"/bc-authorize"`,
    /// `"/.well-known/openid-configuration"`,
    /// `"/.well-known/wallet-openid-configuration"`.
    pub fn hits(&self, endpoint: &str) -> usize {
        lock(&self.state.hits).get(endpoint).copied().unwrap_or(0)
    }
}

/// `token` with its payload edited and its signature kept.
pub fn tamper(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a compact JWS");
    };
    let raw = URL_SAFE_NO_PAD.decode(payload).expect("base64url payload");
    let mut claims: Value = serde_json::from_slice(&raw).expect("JSON payload");
    edit(&mut claims);
    format!("{header}.{}.{signature}", b64_json(&claims))
}

/// A PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = b64(&random::<32>());
    let challenge = b64(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

// --- HTTP handlers -------------------------------------------------------

type St = State<Arc<Shared>>;

fn discovery_document(s: &Shared) -> Value {
    let i = &s.issuer;
    json!({
        "issuer": i,
        "jwks_uri": format!("{i}/jwks"),
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "backchannel_authentication_endpoint": format!("{i}/bc-authorize"),
        "backchannel_token_delivery_modes_supported": ["poll"],
        "grant_types_supported": ["authorization_code", CIBA_GRANT],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "acr_values_supported": ["eidas1"],
        "scopes_supported": ["openid", "scope_all"],
        "claims_supported": ["sub", "SubjectNameID", "acr", ROLE_CLAIM],
    })
}

async fn standard_discovery(State(s): St) -> Json<Value> {
    s.hit("/.well-known/openid-configuration");
    Json(discovery_document(&s))
}

async fn wallet_discovery(State(s): St) -> Json<Value> {
    s.hit("/.well-known/wallet-openid-configuration");
    Json(discovery_document(&s))
}

async fn jwks(State(s): St) -> Json<Value> {
    s.hit("/jwks");
    let delay = *lock(&s.jwks_delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let keys = lock(&s.keys);
    let mut list: Vec<Value> = keys
        .iter()
        .filter(|k| k.published)
        .map(TestKey::jwk)
        .collect();
    // PSC also lists an encryption key: a verifier must skip it.
    if let Some(rsa) = keys.iter().find(|k| k.kid == "rsa-1")
        && let Secret::Rsa(k) = &rsa.secret
    {
        let mut enc = rsa_jwk(&k.to_public_key());
        enc["kid"] = json!("enc-1");
        enc["use"] = json!("enc");
        enc["alg"] = json!("RSA-OAEP");
        list.push(enc);
    }
    Json(json!({ "keys": list }))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn is_loopback_redirect(uri: &str) -> bool {
    ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| uri.starts_with(p))
}

#[derive(Deserialize)]
struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    login_hint: Option<String>,
}

/// Approves at once ("headless") and redirects with `code` and `state`.
async fn authorize(State(s): St, Query(p): Query<AuthorizeParams>) -> Response {
    s.hit("/authorize");
    let Some(redirect_uri) = p.redirect_uri.filter(|u| is_loopback_redirect(u)) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri must be a loopback http URL",
        );
    };
    let Some(client_id) = p.client_id else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no client_id");
    };
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let state = p
        .state
        .map(|st| format!("&state={}", percent_encode(&st)))
        .unwrap_or_default();
    let error = if p.response_type.as_deref() != Some("code") {
        Some("unsupported_response_type")
    } else if p.code_challenge_method.as_deref() != Some("S256") || p.code_challenge.is_none() {
        Some("invalid_request")
    } else {
        None
    };
    let location = match (error, p.code_challenge) {
        (None, Some(challenge)) => {
            let code = b64(&random::<24>());
            lock(&s.grants).codes.insert(
                code.clone(),
                CodeGrant {
                    client_id,
                    redirect_uri: redirect_uri.clone(),
                    challenge,
                    nonce: p.nonce,
                    subject: p.login_hint.unwrap_or_else(|| s.options.subject.clone()),
                },
            );
            format!("{redirect_uri}{sep}code={code}{state}")
        }
        (error, _) => format!(
            "{redirect_uri}{sep}error={}{state}",
            error.unwrap_or("invalid_request")
        ),
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `client_id` from the form or from HTTP Basic authentication.
fn client_id(headers: &HeaderMap, form: Option<&String>) -> Option<String> {
    if let Some(id) = form {
        return Some(id.clone());
    }
    let basic = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
    decoded.split_once(':').map(|(id, _)| id.to_owned())
}

#[derive(Deserialize)]
struct TokenParams {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    auth_req_id: Option<String>,
}

async fn token(State(s): St, headers: HeaderMap, Form(p): Form<TokenParams>) -> Response {
    s.hit("/token");
    let client = client_id(&headers, p.client_id.as_ref());
    match p.grant_type.as_str() {
        "authorization_code" => {
            let grant = p
                .code
                .as_ref()
                .and_then(|c| lock(&s.grants).codes.remove(c));
            let Some(grant) = grant else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or already used code",
                );
            };
            if client.as_deref() != Some(grant.client_id.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "client_id mismatch",
                );
            }
            if p.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri mismatch",
                );
            }
            let verified = p
                .code_verifier
                .is_some_and(|v| b64(&Sha256::digest(v.as_bytes())) == grant.challenge);
            if !verified {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            Json(s.tokens(&grant.subject, &grant.client_id, grant.nonce)).into_response()
        }
        CIBA_GRANT => {
            let Some(id) = p.auth_req_id else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no auth_req_id");
            };
            let mut grants = lock(&s.grants);
            let Some(grant) = grants.ciba.get_mut(&id) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown auth_req_id",
                );
            };
            if client.as_deref() != Some(grant.client_id.as_str()) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "client_id mismatch",
                );
            }
            if Instant::now() > grant.expires {
                grants.ciba.remove(&id);
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "expired_token",
                    "auth_req_id expired",
                );
            }
            if grant.polls < s.options.ciba_pending_polls {
                grant.polls += 1;
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "authorization_pending",
                    "the user has not answered yet",
                );
            }
            if !grant.slowed {
                grant.slowed = true;
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "slow_down",
                    "poll less often (interval + 5 s)",
                );
            }
            let Some(grant) = grants.ciba.remove(&id) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "gone");
            };
            drop(grants);
            Json(s.tokens(&grant.subject, &grant.client_id, None)).into_response()
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "authorization_code or CIBA only",
        ),
    }
}

#[derive(Deserialize)]
struct BcParams {
    client_id: Option<String>,
    scope: Option<String>,
    login_hint: Option<String>,
    binding_message: Option<String>,
}

/// CIBA backchannel authentication request (poll mode).
async fn bc_authorize(State(s): St, headers: HeaderMap, Form(p): Form<BcParams>) -> Response {
    s.hit("/bc-authorize");
    let Some(client_id) = client_id(&headers, p.client_id.as_ref()) else {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "no client_id");
    };
    if !p
        .scope
        .as_deref()
        .is_some_and(|sc| sc.split(' ').any(|x| x == "openid"))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope must include openid",
        );
    }
    let Some(subject) = p.login_hint.filter(|h| !h.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "login_hint (the RPPS number) is required",
        );
    };
    let expires_in = 120;
    let id = b64(&random::<24>());
    lock(&s.grants).ciba.insert(
        id.clone(),
        CibaGrant {
            client_id,
            subject,
            polls: 0,
            slowed: false,
            expires: Instant::now() + Duration::from_secs(expires_in),
        },
    );
    Json(json!({
        "auth_req_id": id,
        "expires_in": expires_in,
        "interval": s.options.ciba_interval_secs,
    }))
    .into_response()
}

// --- helpers -------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(&serde_json::to_vec(v).expect("JSON"))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key size");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("OS randomness");
    b
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The OS random source, for `rsa` (rand_core 0.10) key generation and PSS.
struct OsRng;

impl rsa::rand_core::TryRng for OsRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from_le_bytes(random::<4>()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from_le_bytes(random::<8>()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        getrandom::fill(dst).expect("OS randomness");
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for OsRng {}
