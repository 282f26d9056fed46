//! Access control at the HTTP edge: every `/v1` route admits exactly the
//! roles `auth::ROUTES` declares (the matrix is generated from it, so a new
//! route without a test here fails), a refused credential gets a 401 that
//! says why, a producer writes only its own traces unless it is a trusted
//! proxy, every read, export and key operation is itself a trace (filters,
//! never results), creating a credential that can modify the journal raises
//! the alert counter, and a read whose trace cannot be written is refused.
//! A retention change is an admin's, traced with its old and new value
//! before it applies, and does not happen when it cannot be traced.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use registre_access::{ApiKeyStore, ROLES, Role};
use registre_intake::http::OPENAPI_JSON;
use registre_intake::http::auth::{Authenticator, ROUTES};
use registre_intake::{AppState, Metrics, router};
use registre_model::{Action, ClassName, Limits, Retention};
use registre_policy::{ClassPolicy, Policy};
use registre_store::vfs::FaultyVfs;
use registre_store::{EmbeddedOptions, EmbeddedStore, Query};
use serde_json::{Value, json};
use tower::ServiceExt;

const CANARY: &str = "CANARY-f0lder-3b7a91";

fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect()
}

/// The three classes with their default retentions, in memory.
fn policy() -> Arc<Policy> {
    let class = |name: &str, retention: Retention| ClassPolicy {
        class: ClassName::new(name).expect("class"),
        retention,
        description: format!("{name} traces"),
        warning: None,
        source: "config".into(),
    };
    let defaults = vec![
        class("mss", Retention::months(6)),
        class("technique", Retention::years(1)),
        class("applicative", Retention::years(20)),
    ];
    Arc::new(Policy::load(defaults, None).expect("in-memory policy"))
}

/// A credential the tests call with.
struct Caller {
    name: &'static str,
    role: Role,
    secret: String,
}

struct Env {
    st: Arc<AppState>,
    vfs: FaultyVfs,
    keys: Arc<ApiKeyStore>,
    /// producteur, not a trusted proxy.
    dpi: Caller,
    /// producteur, trusted proxy.
    proxy: Caller,
    /// auditeur.
    dpo: Caller,
    /// admin.
    rssi: Caller,
    revoked: String,
    expired: String,
}

impl Env {
    fn callers(&self) -> [&Caller; 4] {
        [&self.dpi, &self.proxy, &self.dpo, &self.rssi]
    }
}

fn env() -> Env {
    let vfs = FaultyVfs::new();
    let store = EmbeddedStore::open_with_vfs(
        std::path::Path::new("/mem"),
        EmbeddedOptions::new(classes()),
        Arc::new(vfs.clone()),
    )
    .expect("open");
    let keys = Arc::new(ApiKeyStore::in_memory());
    let st = Arc::new(AppState {
        store: Arc::new(store),
        classes: classes(),
        limits: Limits::default(),
        auth: Arc::new(Authenticator {
            keys: keys.clone(),
            bearers: vec![],
            certificates: vec![],
        }),
        metrics: Arc::new(Metrics::default()),
        policy: policy(),
    });
    let make = |name: &'static str, role: Role, trusted: bool| Caller {
        name,
        role,
        secret: keys
            .create(name, role, trusted, None)
            .expect("create key")
            .secret,
    };
    let dpi = make("dpi-server", Role::Producteur, false);
    let proxy = make("mssante-proxy", Role::Producteur, true);
    let dpo = make("dpo", Role::Auditeur, false);
    let rssi = make("rssi", Role::Admin, false);
    let gone = keys
        .create("former-app", Role::Producteur, false, None)
        .expect("create");
    keys.revoke(&gone.key.id).expect("revoke");
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    let expired = keys
        .create("old-auditor", Role::Auditeur, false, Some(past))
        .expect("create")
        .secret;
    Env {
        st,
        vfs,
        keys,
        dpi,
        proxy,
        dpo,
        rssi,
        revoked: gone.secret,
        expired,
    }
}

/// A valid trace authored by `actor`.
fn trace(actor: &str, folder: &str) -> Value {
    json!({
        "class": "mss",
        "occurred_at": "2026-11-28T15:42:07.123+01:00",
        "actor": {"id": actor, "id_type": "login", "auth": "psc"},
        "action": "consultation",
        "target": {"mailbox": "dr.martin@hopital.mssante.fr", "folder": folder},
        "request": "UID FETCH 42 (FLAGS)",
        "response": {"status": "OK"},
        "outcome": "success"
    })
}

/// A valid FHIR AuditEvent whose requestor is `actor`.
fn audit_event(actor: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": "2026-11-28T15:42:07.123+01:00",
        "agent": [{"who": {"identifier": {"value": actor}}, "requestor": true}],
        "source": {"observer": {"display": "LPS"}}
    })
}

struct Resp {
    status: StatusCode,
    ct: String,
    www_authenticate: Option<String>,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

async fn call(
    st: &Arc<AppState>,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let req = match body {
        Some(v) => req
            .header("content-type", "application/json")
            .body(Body::from(v.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = router(st.clone()).oneshot(req).await.expect("response");
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let ct = header("content-type").unwrap_or_default();
    let www_authenticate = header("www-authenticate");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    Resp {
        status,
        ct,
        www_authenticate,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn count(st: &Arc<AppState>, class: &str) -> usize {
    st.store
        .search(Query {
            class: Some(ClassName::new(class).expect("class")),
            limit: 10_000,
            ..Query::default()
        })
        .await
        .expect("search")
        .traces
        .len()
}

/// Posts one trace as `caller`; the trace is expected to be accepted.
async fn seed(env: &Env, caller: &Caller, folder: &str) {
    let r = call(
        &env.st,
        "POST",
        "/v1/traces",
        Some(&caller.secret),
        Some(&trace(caller.name, folder)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "seeding: {}", r.body);
}

/// A minimal valid request for one `ROUTES` entry, made by `caller`.
struct Probe {
    uri: String,
    body: Option<Value>,
    /// The status an allowed caller gets.
    ok: StatusCode,
    /// DELETE /v1/keys/{id}: the key the request revokes.
    target_key: Option<String>,
}

fn probe(env: &Env, method: &str, path: &str, caller: &Caller) -> Probe {
    let p = |uri: &str, body: Option<Value>, ok: StatusCode| Probe {
        uri: uri.to_owned(),
        body,
        ok,
        target_key: None,
    };
    match (method, path) {
        ("POST", "/v1/traces") => p(
            "/v1/traces",
            Some(trace(caller.name, "INBOX")),
            StatusCode::CREATED,
        ),
        ("GET", "/v1/traces") => p("/v1/traces", None, StatusCode::OK),
        ("GET", "/v1/logs") => p("/v1/logs", None, StatusCode::OK),
        ("GET", "/v1/proofs/inclusion") => {
            p("/v1/proofs/inclusion?log=mss&index=0", None, StatusCode::OK)
        }
        ("GET", "/v1/proofs/consistency") => p(
            "/v1/proofs/consistency?log=mss&from=1&to=1",
            None,
            StatusCode::OK,
        ),
        ("POST", "/v1/exports") => p(
            "/v1/exports",
            Some(
                json!({"filters": "actor=x", "traces": 1, "manifest_sha256": "abababababababababababababababababababababababababababababababab"}),
            ),
            StatusCode::CREATED,
        ),
        ("GET", "/v1/keys") => p("/v1/keys", None, StatusCode::OK),
        ("POST", "/v1/keys") => p(
            "/v1/keys",
            Some(json!({"name": "n", "role": "auditeur"})),
            StatusCode::CREATED,
        ),
        ("GET", "/v1/policy") => p("/v1/policy", None, StatusCode::OK),
        ("PUT", "/v1/policy/{class}") => p(
            "/v1/policy/technique",
            Some(json!({"retention": "6 months"})),
            StatusCode::OK,
        ),
        ("POST", "/v1/purge") => p("/v1/purge", Some(json!({"dry_run": true})), StatusCode::OK),
        ("GET", "/v1/holds") => p("/v1/holds", None, StatusCode::OK),
        ("POST", "/v1/holds") => p(
            "/v1/holds",
            Some(json!({"reason": "enquête SEC-42", "actor": caller.name})),
            StatusCode::CREATED,
        ),
        // Authorised callers get past the role check to the lookup.
        ("DELETE", "/v1/holds/{id}") => p("/v1/holds/h-00000000", None, StatusCode::NOT_FOUND),
        ("DELETE", "/v1/keys/{id}") => {
            let id = env
                .keys
                .create("to-revoke", Role::Producteur, false, None)
                .expect("create")
                .key
                .id;
            Probe {
                uri: format!("/v1/keys/{id}"),
                body: None,
                ok: StatusCode::OK,
                target_key: Some(id),
            }
        }
        ("POST", "/fhir/AuditEvent") => p(
            "/fhir/AuditEvent",
            Some(audit_event(caller.name)),
            StatusCode::CREATED,
        ),
        ("POST", "/fhir") => p(
            "/fhir",
            Some(json!({"resourceType": "Bundle", "type": "batch", "entry": [
                {"request": {"method": "POST", "url": "AuditEvent"}, "resource": audit_event(caller.name)}
            ]})),
            StatusCode::OK,
        ),
        ("GET", "/fhir/AuditEvent") => {
            p("/fhir/AuditEvent?date=ge2000-01-01", None, StatusCode::OK)
        }
        // Authorised callers get past the role check to the lookup.
        ("GET", "/fhir/AuditEvent/{id}") => p(
            "/fhir/AuditEvent/019ac3c4-1f2e-7a00-8000-0123456789ab",
            None,
            StatusCode::NOT_FOUND,
        ),
        ("GET", "/syslogsearch") => p("/syslogsearch?date=ge2000-01-01", None, StatusCode::OK),
        (m, p) => panic!(
            "auth::ROUTES has {m} {p}, which this test does not know how to call: \
             add a request for it to `probe` in tests/access.rs"
        ),
    }
}

/// The expected rule, independent of the code under test: a role may use a
/// route that lists it, and admin also holds auditeur rights.
fn expected_may(role: Role, allowed: &[Role]) -> bool {
    allowed.contains(&role) || (role == Role::Admin && allowed.contains(&Role::Auditeur))
}

fn is_revoked(env: &Env, id: &str) -> bool {
    env.keys
        .list()
        .iter()
        .find(|k| k.id == id)
        .expect("key exists")
        .revoked_at
        .is_some()
}

#[tokio::test]
async fn role_route_matrix_follows_routes() {
    let env = env();
    // Something to prove: mss has one trace.
    seed(&env, &env.dpi, "INBOX").await;
    // Every role is represented among the callers.
    for role in ROLES {
        assert!(
            env.callers().iter().any(|c| c.role == role),
            "no caller holds the role {role}"
        );
    }
    let mut covered: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for &(method, path, allowed) in ROUTES {
        for caller in env.callers() {
            let pr = probe(&env, method, path, caller);
            let keys_before = env.keys.list().len();
            let mss_before = count(&env.st, "mss").await;
            let policy_before = (env.st.policy.classes(), env.st.policy.history());
            let r = call(
                &env.st,
                method,
                &pr.uri,
                Some(&caller.secret),
                pr.body.as_ref(),
            )
            .await;
            let what = format!("{method} {} as {} ({})", pr.uri, caller.name, caller.role);
            if expected_may(caller.role, allowed) {
                assert_eq!(r.status, pr.ok, "{what} should be allowed: {}", r.body);
                if let Some(id) = &pr.target_key {
                    assert!(is_revoked(&env, id), "{what}: the key was not revoked");
                }
            } else {
                assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
                let p = r.json();
                // FHIR routes answer an OperationOutcome, the others a problem.
                let detail = if path.starts_with("/fhir") {
                    assert_eq!(r.ct, "application/fhir+json; fhirVersion=4.0", "{what}");
                    assert_eq!(p["resourceType"], "OperationOutcome", "{what}");
                    assert_eq!(p["issue"][0]["code"], "forbidden", "{what}");
                    p["issue"][0]["diagnostics"].as_str().expect("diagnostics")
                } else {
                    assert_eq!(r.ct, "application/problem+json", "{what}");
                    assert_eq!(p["type"], "urn:registre:problem:forbidden", "{what}");
                    assert_eq!(p["status"], 403, "{what}");
                    p["detail"].as_str().expect("detail")
                };
                // The part saying what is needed (before what the caller has).
                let needed = detail.split(';').next().unwrap_or(detail);
                for role in allowed {
                    assert!(
                        needed.contains(role.as_str()),
                        "{what}: the detail does not name the needed role {role}: {detail}"
                    );
                }
                assert!(
                    !detail.contains(&caller.secret),
                    "{what}: the secret is echoed"
                );
                // A refused request changed nothing.
                assert_eq!(env.keys.list().len(), keys_before, "{what}: a key changed");
                assert_eq!(
                    (env.st.policy.classes(), env.st.policy.history()),
                    policy_before,
                    "{what}: the policy changed"
                );
                assert_eq!(
                    count(&env.st, "mss").await,
                    mss_before,
                    "{what}: a trace was stored"
                );
                if let Some(id) = &pr.target_key {
                    assert!(!is_revoked(&env, id), "{what}: the key was revoked anyway");
                }
            }
            covered.insert((method, path, caller.role.as_str()));
        }
    }
    // Every entry of ROUTES was called by every role.
    for &(method, path, _) in ROUTES {
        for role in ROLES {
            assert!(
                covered.contains(&(method, path, role.as_str())),
                "{method} {path} was not tested as {role}"
            );
        }
    }
    assert_eq!(covered.len(), ROUTES.len() * ROLES.len());
}

/// Every `/v1` operation the OpenAPI document describes has an access rule
/// (a route served without one would answer 403 to everyone).
#[test]
fn every_documented_v1_route_has_an_access_rule() {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("openapi");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths.iter().filter(|(p, _)| p.starts_with("/v1/")) {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                let m = method.to_ascii_uppercase();
                assert!(
                    ROUTES.iter().any(|(rm, rp, _)| *rm == m && rp == path),
                    "{m} {path} is documented but has no entry in auth::ROUTES"
                );
            }
        }
    }
}

#[tokio::test]
async fn unauthenticated_requests_get_401_with_the_reason() {
    let env = env();
    let unknown = "rgk_0badc0de_bm90LWEta2V5LWF0LWFsbC1qdXN0LXJhbmRvbS1ieXRlcw";
    let random = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c29tZS1yYW5kb20tYmVhcmVy";
    let cases: [(Option<&str>, &str); 5] = [
        (None, "no credential"),
        (Some(unknown), "unknown"),
        (Some(&env.revoked), "revoked"),
        (Some(&env.expired), "expired"),
        (Some(random), "unknown"),
    ];
    for (bearer, reason) in cases {
        for (method, uri, body) in [
            ("GET", "/v1/traces", None),
            ("POST", "/v1/traces", Some(trace("former-app", "INBOX"))),
        ] {
            let r = call(&env.st, method, uri, bearer, body.as_ref()).await;
            let what = format!("{method} {uri} with {bearer:?}");
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
            assert_eq!(r.ct, "application/problem+json", "{what}");
            assert!(
                r.www_authenticate
                    .as_deref()
                    .is_some_and(|h| h.starts_with("Bearer")),
                "{what}: WWW-Authenticate {:?}",
                r.www_authenticate
            );
            let p = r.json();
            assert_eq!(p["type"], "urn:registre:problem:unauthorized", "{what}");
            let detail = p["detail"].as_str().expect("detail");
            assert!(
                detail.to_lowercase().contains(reason),
                "{what}: the detail does not say `{reason}`: {detail}"
            );
            if let Some(b) = bearer {
                assert!(!r.body.contains(b), "{what}: the credential is echoed");
            }
        }
    }
    // Every /v1 route requires a credential.
    for &(method, path, _) in ROUTES {
        let uri = path
            .replace("{id}", "0badc0de")
            .replace("{class}", "technique");
        let r = call(&env.st, method, &uri, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    assert_eq!(count(&env.st, "mss").await, 0);
    assert!(env.st.policy.history().is_empty());
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let env = env();
    for scheme in ["bearer", "BEARER"] {
        let req = Request::get("/v1/logs")
            .header("authorization", format!("{scheme} {}", env.dpo.secret))
            .body(Body::empty())
            .expect("request");
        let resp = router(env.st.clone()).oneshot(req).await.expect("response");
        assert_eq!(resp.status(), StatusCode::OK, "scheme `{scheme}`");
    }
}

#[tokio::test]
async fn a_producer_writes_only_its_own_traces() {
    let env = env();
    // Not its actor: refused, naming the trace and the field; nothing stored.
    let batch = json!([trace("dpi-server", "INBOX"), trace("someone-else", "INBOX")]);
    let r = call(
        &env.st,
        "POST",
        "/v1/traces",
        Some(&env.dpi.secret),
        Some(&batch),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.ct, "application/problem+json");
    let p = r.json();
    assert_eq!(p["type"], "urn:registre:problem:actor-mismatch", "{p}");
    let errors = p["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{p}");
    assert_eq!(errors[0]["trace"], 1, "{p}");
    assert_eq!(errors[0]["field"], "actor.id", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .expect("detail")
            .contains("nothing was stored")
    );
    // A single object too.
    let r = call(
        &env.st,
        "POST",
        "/v1/traces",
        Some(&env.dpi.secret),
        Some(&trace("someone-else", "INBOX")),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let p = r.json();
    assert_eq!(p["type"], "urn:registre:problem:actor-mismatch");
    assert_eq!(p["errors"][0]["trace"], 0);
    assert_eq!(p["errors"][0]["field"], "actor.id");
    assert_eq!(count(&env.st, "mss").await, 0, "a refused trace was stored");

    // Its own actor: stored, and actor.auth says how it authenticated
    // (the `psc` it claimed is replaced).
    let r = call(
        &env.st,
        "POST",
        "/v1/traces",
        Some(&env.dpi.secret),
        Some(&trace("dpi-server", "INBOX")),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let stored = env
        .st
        .store
        .search(Query {
            actor: Some("dpi-server".into()),
            limit: 10,
            ..Query::default()
        })
        .await
        .expect("search")
        .traces;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].trace.actor.auth.as_deref(), Some("apikey"));

    // The trusted proxy writes for any actor, actor.auth as sent.
    let r = call(
        &env.st,
        "POST",
        "/v1/traces",
        Some(&env.proxy.secret),
        Some(&json!([
            trace("810001234567", "INBOX"),
            trace("someone-else", "Sent")
        ])),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for actor in ["810001234567", "someone-else"] {
        let stored = env
            .st
            .store
            .search(Query {
                actor: Some(actor.into()),
                limit: 10,
                ..Query::default()
            })
            .await
            .expect("search")
            .traces;
        assert_eq!(stored.len(), 1, "{actor}");
        assert_eq!(
            stored[0].trace.actor.auth.as_deref(),
            Some("psc"),
            "{actor}"
        );
    }
    assert_eq!(count(&env.st, "mss").await, 3);
}

/// Strips the `?` of an empty query.
fn norm(request: &str) -> &str {
    request.strip_suffix('?').unwrap_or(request)
}

#[tokio::test]
async fn every_access_is_traced_with_filters_never_results() {
    let env = env();
    seed(&env, &env.dpi, CANARY).await;
    let st = &env.st;
    let dpo = Some(env.dpo.secret.as_str());
    let rssi = Some(env.rssi.secret.as_str());

    // The search returns the canary trace...
    let r = call(st, "GET", "/v1/traces?actor=dpi-server&limit=5", dpo, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains(CANARY), "the search should return the seed");
    let r = call(st, "GET", "/v1/traces?actor=x", dpo, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(st, "GET", "/v1/proofs/inclusion?log=mss&index=0", dpo, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(
        st,
        "GET",
        "/v1/proofs/consistency?log=mss&from=1&to=1",
        dpo,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = call(st, "GET", "/v1/logs", dpo, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let export = json!({
        "filters": "actor=dpi-server&since=2026-11-01T00:00:00Z",
        "traces": 1,
        "manifest_sha256": "abababababababababababababababababababababababababababababababab",
        "reason": "CNIL-2026-17"
    });
    let r = call(st, "POST", "/v1/exports", dpo, Some(&export)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = call(
        st,
        "POST",
        "/v1/keys",
        rssi,
        Some(&json!({"name": "auditor-2", "role": "auditeur"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let created = r.json();
    let new_secret = created["secret"].as_str().expect("secret").to_owned();
    let new_id = created["key"]["id"].as_str().expect("id").to_owned();
    let r = call(st, "GET", "/v1/keys", rssi, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        !r.body.contains(&new_secret),
        "a listed key shows its secret"
    );
    assert!(!r.body.contains("secret_sha256"), "{}", r.body);
    let r = call(st, "DELETE", &format!("/v1/keys/{new_id}"), rssi, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // What the journal says about those accesses.
    let r = call(
        st,
        "GET",
        "/v1/traces?class=applicative&limit=1000",
        rssi,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        !r.body.contains(CANARY),
        "an access trace holds a returned trace's content: {}",
        r.body
    );
    assert!(
        !r.body.contains(&new_secret),
        "an access trace holds a key's secret"
    );
    let page = r.json();
    let traces = page["traces"].as_array().expect("traces");
    for t in traces {
        assert_eq!(t["class"], "applicative", "{t}");
        assert_eq!(t["actor"]["auth"], "apikey", "{t}");
    }
    type Want<'a> = (&'a str, &'a str, Box<dyn Fn(&str) -> bool + 'a>, &'a str);
    let wants: Vec<Want> = vec![
        (
            "recherche",
            "dpo",
            Box::new(|q| q == "/v1/traces?actor=dpi-server&limit=5"),
            "200",
        ),
        (
            "recherche",
            "dpo",
            Box::new(|q| q == "/v1/traces?actor=x"),
            "200",
        ),
        (
            "recherche",
            "dpo",
            Box::new(|q| q == "/v1/proofs/inclusion?log=mss&index=0"),
            "200",
        ),
        (
            "recherche",
            "dpo",
            Box::new(|q| q == "/v1/proofs/consistency?log=mss&from=1&to=1"),
            "200",
        ),
        ("recherche", "dpo", Box::new(|q| q == "/v1/logs"), "200"),
        (
            "export",
            "dpo",
            Box::new(|q| {
                q.starts_with("/v1/exports?actor=dpi-server&since=2026-11-01T00:00:00Z")
                    && q.contains("CNIL-2026-17")
            }),
            "201",
        ),
        ("creation", "rssi", Box::new(|q| q == "/v1/keys"), "201"),
        ("recherche", "rssi", Box::new(|q| q == "/v1/keys"), "200"),
        (
            "suppression",
            "rssi",
            Box::new(|q| q == format!("/v1/keys/{new_id}") || q == format!("/v1/keys?id={new_id}")),
            "200",
        ),
    ];
    for (action, actor, request, status) in &wants {
        let found: Vec<&Value> = traces
            .iter()
            .filter(|t| {
                t["action"] == *action
                    && t["actor"]["id"] == *actor
                    && t["request"].as_str().is_some_and(|q| request(norm(q)))
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one `{action}` trace by {actor}; applicative traces: {traces:#?}"
        );
        assert_eq!(found[0]["response"]["status"], *status, "{}", found[0]);
        assert_eq!(found[0]["outcome"], "success", "{}", found[0]);
    }
    // Nothing else: exactly the accesses above (the final search is traced
    // after its own answer).
    assert_eq!(traces.len(), wants.len(), "{traces:#?}");
    // The search that returned the canary trace says how many, not what.
    let search = traces
        .iter()
        .find(|t| t["request"] == "/v1/traces?actor=dpi-server&limit=5")
        .expect("search trace");
    assert!(!search.to_string().contains(CANARY));
    assert!(!search.to_string().contains("INBOX"), "{search}");
    // And the final search is traced too.
    assert_eq!(count(st, "applicative").await, wants.len() + 1);
}

fn admin_alerts(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("registre_admin_credentials_created_total "))
        .unwrap_or_else(|| panic!("no admin credential counter in {metrics}"))
        .trim()
        .parse()
        .expect("counter value")
}

#[tokio::test]
async fn admin_and_proxy_key_creation_raises_the_alert_counter() {
    let env = env();
    let st = &env.st;
    let rssi = Some(env.rssi.secret.as_str());
    let alerts = async || admin_alerts(&call(st, "GET", "/metrics", None, None).await.body);
    assert_eq!(alerts().await, 0);
    for (body, want) in [
        (json!({"name": "auditor-2", "role": "auditeur"}), 0),
        (json!({"name": "app-2", "role": "producteur"}), 0),
        (json!({"name": "rssi-2", "role": "admin"}), 1),
        (
            json!({"name": "proxy-2", "role": "producteur", "trusted_proxy": true}),
            2,
        ),
        (json!({"name": "auditor-3", "role": "auditeur"}), 2),
    ] {
        let r = call(st, "POST", "/v1/keys", rssi, Some(&body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{body}: {}", r.body);
        assert_eq!(alerts().await, want, "after creating {body}");
    }
    // A refused creation raises nothing.
    let r = call(
        st,
        "POST",
        "/v1/keys",
        Some(&env.dpo.secret),
        Some(&json!({"name": "sneaky", "role": "admin"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(alerts().await, 2);
}

#[tokio::test]
async fn no_untraced_read_when_the_journal_cannot_write() {
    let env = env();
    seed(&env, &env.dpi, CANARY).await;
    env.vfs.fail_syncs_after(0);
    let dpo = Some(env.dpo.secret.as_str());
    let rssi = Some(env.rssi.secret.as_str());
    let export = json!({"filters": "actor=x", "traces": 1, "manifest_sha256": "abababababababababababababababababababababababababababababababab"});
    let reads: [(&str, &str, Option<&str>, Option<&Value>); 8] = [
        ("GET", "/v1/traces?actor=dpi-server", dpo, None),
        ("GET", "/v1/traces", rssi, None),
        ("GET", "/v1/logs", dpo, None),
        ("GET", "/v1/proofs/inclusion?log=mss&index=0", dpo, None),
        (
            "GET",
            "/v1/proofs/consistency?log=mss&from=1&to=1",
            dpo,
            None,
        ),
        ("GET", "/v1/keys", rssi, None),
        ("POST", "/v1/exports", dpo, Some(&export)),
        ("GET", "/v1/policy", dpo, None),
    ];
    for (method, uri, who, body) in reads {
        let r = call(&env.st, method, uri, who, body).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}: {}",
            r.body
        );
        assert_eq!(r.ct, "application/problem+json", "{method} {uri}");
        let p = r.json();
        assert_eq!(
            p["type"], "urn:registre:problem:unavailable",
            "{method} {uri}"
        );
        assert!(p.get("traces").is_none(), "{method} {uri}: {}", r.body);
        assert!(!r.body.contains(CANARY), "{method} {uri}: data leaked");
        assert!(
            !r.body.contains("dpi-server"),
            "{method} {uri}: data leaked"
        );
    }
}

/// The `applicative` traces with this action, oldest first, as JSON.
async fn applicative(st: &Arc<AppState>, action: Option<Action>) -> Vec<Value> {
    let mut traces: Vec<Value> = st
        .store
        .search(Query {
            class: Some(ClassName::new("applicative").expect("class")),
            action,
            limit: 10_000,
            ..Query::default()
        })
        .await
        .expect("search")
        .traces
        .iter()
        .map(|r| serde_json::to_value(&r.trace).expect("trace as JSON"))
        .collect();
    // The store answers newest first.
    traces.reverse();
    traces
}

#[tokio::test]
async fn a_policy_change_is_an_admins_and_is_traced_with_old_and_new_value() {
    let env = env();
    let st = &env.st;
    let rssi = Some(env.rssi.secret.as_str());
    let dpo = Some(env.dpo.secret.as_str());
    let get = |class: &str| st.policy.get(class).expect("class in the policy");
    let politique = async || applicative(st, Some(Action::Politique)).await;

    // An admin's change: answered with the previous value, in force at once.
    let r = call(
        st,
        "PUT",
        "/v1/policy/technique",
        rssi,
        Some(&json!({"retention": "6 mois"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["previous"], "1 year", "{v}");
    assert_eq!(v["class"]["class"], "technique", "{v}");
    assert_eq!(v["class"]["retention"], "6 months", "{v}");
    assert_eq!(get("technique").retention, Retention::months(6));

    // Kept in the policy's history, which names who and when.
    let history = st.policy.history();
    assert_eq!(history.len(), 1, "{history:?}");
    let h = &history[0];
    assert_eq!(
        (h.class.as_str(), h.retention, h.previous, h.by.as_str()),
        (
            "technique",
            Retention::months(6),
            Retention::years(1),
            "rssi"
        )
    );
    assert!(h.at.parse::<jiff::Timestamp>().is_ok(), "{}", h.at);
    assert_eq!(get("technique").source, format!("set by rssi at {}", h.at));
    assert_eq!(v["class"]["source"], get("technique").source.as_str());

    // Traced in `applicative` as `politique`, with the old and new value.
    let traces = politique().await;
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let t = &traces[0];
    assert_eq!(t["class"], "applicative", "{t}");
    assert_eq!(t["actor"], json!({"id": "rssi", "auth": "apikey"}), "{t}");
    assert_eq!(
        t["request"], "/v1/policy/technique?retention=6 months",
        "{t}"
    );
    assert_eq!(t["target"]["resource"], "/v1/policy/technique", "{t}");
    assert_eq!(
        t["response"],
        json!({"status": "200", "text": "retention of technique: 1 year -> 6 months"}),
        "{t}"
    );
    assert_eq!(t["outcome"], "success", "{t}");

    // An auditeur may not change it: 403, traced as a refusal, and nothing
    // changes (neither the retention, nor the history, nor `politique`).
    let applicative_before = applicative(st, None).await.len();
    let r = call(
        st,
        "PUT",
        "/v1/policy/technique",
        dpo,
        Some(&json!({"retention": "20 years"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.json()["type"], "urn:registre:problem:forbidden");
    assert_eq!(get("technique").retention, Retention::months(6));
    assert_eq!(st.policy.history(), history);
    assert_eq!(
        politique().await.len(),
        1,
        "a refused change is traced as one"
    );
    let all = applicative(st, None).await;
    assert_eq!(all.len(), applicative_before + 1, "the refusal is traced");
    let refusal = all.last().expect("refusal");
    assert_eq!(refusal["actor"]["id"], "dpo", "{refusal}");
    assert_eq!(refusal["outcome"], "failure", "{refusal}");
    assert_eq!(refusal["response"]["status"], "403", "{refusal}");

    // Refused bodies and unknown classes change nothing and are not traced.
    for (uri, body, status) in [
        (
            "/v1/policy/technique",
            json!({"retention": "six months"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/policy/technique",
            json!({"retention": "1 year", "by": "someone"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/v1/policy/nope",
            json!({"retention": "1 year"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = call(st, "PUT", uri, rssi, Some(&body)).await;
        assert_eq!(r.status, status, "{uri} {body}: {}", r.body);
        assert_eq!(r.ct, "application/problem+json", "{uri} {body}");
    }
    assert_eq!(get("technique").retention, Retention::months(6));
    assert_eq!(st.policy.history(), history);
    assert_eq!(applicative(st, None).await.len(), applicative_before + 1);

    // The auditeur reads the policy and its history.
    let r = call(st, "GET", "/v1/policy", dpo, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["classes"][1]["class"], "technique", "{v}");
    assert_eq!(v["classes"][1]["retention"], "6 months", "{v}");
    assert_eq!(
        v["history"],
        serde_json::to_value(&history).expect("history as JSON")
    );
    let reads = applicative(st, Some(Action::Recherche)).await;
    assert!(
        reads.iter().any(|t| t["actor"]["id"] == "dpo"
            && t["request"] == "/v1/policy"
            && t["response"]["status"] == "200"),
        "the reading is traced: {reads:#?}"
    );

    // A second change, outside the recommended range: applied with a
    // warning, appended to the history, traced with its own old value.
    let r = call(
        st,
        "PUT",
        "/v1/policy/applicative",
        rssi,
        Some(&json!({"retention": "10 years"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["previous"], "20 years", "{v}");
    assert!(v["class"]["warning"].is_string(), "{v}");
    assert_eq!(get("applicative").retention, Retention::years(10));
    assert!(get("applicative").warning.is_some());
    let history = st.policy.history();
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(
        (
            history[1].class.as_str(),
            history[1].previous,
            history[1].retention
        ),
        ("applicative", Retention::years(20), Retention::years(10))
    );
    let traces = politique().await;
    assert_eq!(traces.len(), 2, "{traces:#?}");
    assert_eq!(
        traces[1]["response"]["text"],
        "retention of applicative: 20 years -> 10 years"
    );
    assert_eq!(
        traces[1]["request"],
        "/v1/policy/applicative?retention=10 years"
    );
}

#[tokio::test]
async fn an_untraceable_policy_change_does_not_happen() {
    let env = env();
    let st = &env.st;
    let before = st.policy.get("technique").expect("technique");
    assert_eq!(before.retention, Retention::years(1));
    env.vfs.fail_syncs_after(0);
    let r = call(
        st,
        "PUT",
        "/v1/policy/technique",
        Some(&env.rssi.secret),
        Some(&json!({"retention": "6 months"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.ct, "application/problem+json");
    let p = r.json();
    assert_eq!(p["type"], "urn:registre:problem:unavailable", "{p}");
    assert!(p.get("previous").is_none(), "{p}");
    // The retention in force, its source and the history are unchanged.
    assert_eq!(st.policy.get("technique"), Some(before));
    assert!(st.policy.history().is_empty());
}
