//! Keeps `openapi.json` true: the document the router serves describes
//! exactly the routes it serves, its `Trace` schema is the one
//! `registre_model::parse_trace` enforces (fields, required fields, closed
//! objects, limits), and real answers fit the documented response schemas.
//!
//! Access control is held to its word: each operation's `x-registre-roles`
//! is the code's `ROUTES`, every role is allowed or refused as documented,
//! and the 401, 403 and 503 answers, the authorship binding and the tracing
//! of accesses are the documented ones.
//!
//! The integrity routes are held to their word too: the commitment and leaf
//! hash the descriptions give are recomputed from served traces and found in
//! the served tiles, proofs verify against the served signed checkpoints, and
//! the document's own examples verify the same way.
//!
//! There is no JSON Schema crate here: `check` below is a small structural
//! validator (types, `required`, closed objects, `enum`/`const`, lengths,
//! bounds, `$ref`/`allOf`/`anyOf`/`oneOf`, `unevaluatedProperties: false`
//! over `allOf`, `additionalProperties` and `propertyNames` schemas; not
//! `pattern` nor `format`).

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use registre_intake::http::auth::{Authenticator, ROUTES};
use registre_intake::http::{MAX_BATCH, MAX_BODY_BYTES, OPENAPI_JSON};
use registre_intake::{AppState, Metrics, router};
use registre_log::checkpoint::{Checkpoint, open_checkpoint};
use registre_log::merkle::{self, EMPTY_ROOT, Hash, MemoryTree};
use registre_log::tile::parse_path;
use registre_log::{Verifier, leaf_hash};
use registre_model::{ACTIONS, ClassName, Limits, Retention, TraceError, jcs, parse_trace};
use registre_policy::{ClassPolicy, Policy};
use registre_store::clock::{Clock, ManualClock, SystemClock};
use registre_store::{EmbeddedOptions, EmbeddedStore, Hold, HoldFilter, Store};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const TOKEN: &str = "openapi-test-token";

/// Every route the router serves, as (method, path).
const SERVED: &[(&str, &str)] = &[
    ("post", "/v1/traces"),
    ("get", "/v1/traces"),
    ("get", "/v1/logs"),
    ("get", "/v1/proofs/inclusion"),
    ("get", "/v1/proofs/consistency"),
    ("post", "/v1/exports"),
    ("get", "/v1/keys"),
    ("post", "/v1/keys"),
    ("delete", "/v1/keys/{id}"),
    ("get", "/v1/policy"),
    ("put", "/v1/policy/{class}"),
    ("post", "/v1/purge"),
    ("get", "/v1/holds"),
    ("post", "/v1/holds"),
    ("delete", "/v1/holds/{id}"),
    ("get", "/logs/{log}/checkpoint"),
    ("get", "/logs/{log}/tile/{tilePath}"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/fhir/AuditEvent"),
    ("get", "/fhir/AuditEvent"),
    ("get", "/fhir/AuditEvent/{id}"),
    ("post", "/fhir"),
    ("get", "/fhir/metadata"),
    ("get", "/syslogsearch"),
];

/// Routes that need a credential: `/v1`, the FHIR routes but the
/// CapabilityStatement, and ITI-82.
fn guarded(path: &str) -> bool {
    path.starts_with("/v1/")
        || path == "/syslogsearch"
        || (path.starts_with("/fhir") && path != "/fhir/metadata")
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The DESIGN example.
fn design_trace() -> Value {
    json!({
        "class": "mss",
        "occurred_at": "2026-11-28T15:42:07.123+01:00",
        "actor": {"id": "810001234567", "id_type": "rpps", "auth": "psc"},
        "action": "suppression",
        "target": {"mailbox": "dr.martin@hopital.mssante.fr", "folder": "INBOX", "uids": "42"},
        "request": "UID STORE 42 +FLAGS (\\Deleted)",
        "response": {"status": "OK", "text": "Store completed"},
        "outcome": "success",
        "source": {"ip": "10.1.2.3", "software": "MonLPS 4.2", "session": "b3f1"}
    })
}

fn app() -> (tempfile::TempDir, Router) {
    let (dir, app, _) = app_with(&["mss", "technique", "applicative"]);
    (dir, app)
}

/// An app whose journal has these classes only, and its credentials.
fn app_with(class_names: &[&str]) -> (tempfile::TempDir, Router, Arc<Authenticator>) {
    let (dir, app, auth, _) = app_at(class_names, Arc::new(SystemClock));
    (dir, app, auth)
}

/// `app_with` whose store reads the time on `clock`; with its store.
fn app_at(
    class_names: &[&str],
    clock: Arc<dyn Clock>,
) -> (
    tempfile::TempDir,
    Router,
    Arc<Authenticator>,
    Arc<EmbeddedStore>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let classes: Vec<ClassName> = class_names
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect();
    let mut opts = EmbeddedOptions::new(classes.clone());
    opts.clock = clock;
    let store = Arc::new(EmbeddedStore::open(dir.path(), opts).expect("open store"));
    let auth = registre_intake::http::auth::Authenticator::admin_token(TOKEN);
    let state = Arc::new(AppState {
        store: store.clone(),
        classes,
        limits: Limits::default(),
        auth: auth.clone(),
        metrics: Arc::new(Metrics::default()),
        policy: policy_of(class_names),
    });
    (dir, router(state), auth, store)
}

/// A retention policy (in memory) for these classes, with the built-in
/// defaults: `mss` 6 months, `technique` 1 year, `applicative` 20 years.
fn policy_of(class_names: &[&str]) -> Arc<Policy> {
    let defaults = class_names
        .iter()
        .map(|c| {
            let (retention, description) = match *c {
                "mss" => (Retention::months(6), "MSSanté functional traces"),
                "technique" => (Retention::years(1), "technical traces"),
                "applicative" => (Retention::years(20), "applicative traces"),
                _ => (Retention::years(1), ""),
            };
            ClassPolicy {
                class: ClassName::new(c).expect("class"),
                retention,
                description: description.to_owned(),
                warning: None,
                source: "config".to_owned(),
            }
        })
        .collect();
    Arc::new(Policy::load(defaults, None).expect("in-memory policy"))
}

struct Answer {
    status: StatusCode,
    content_type: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: bool,
    content_type: Option<&str>,
    body: Option<String>,
) -> Answer {
    let bearer = token.then_some(TOKEN);
    call_as(app, method, uri, bearer, content_type, body).await
}

/// `call` with this bearer credential (or none).
async fn call_as(
    app: &Router,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    content_type: Option<&str>,
    body: Option<String>,
) -> Answer {
    let mut req = Request::builder()
        .method(method.to_ascii_uppercase().as_str())
        .uri(uri);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

async fn post_json(app: &Router, body: &Value) -> Answer {
    call(
        app,
        "post",
        "/v1/traces",
        true,
        Some("application/json"),
        Some(body.to_string()),
    )
    .await
}

async fn get(app: &Router, uri: &str, token: bool) -> Answer {
    call(app, "get", uri, token, None, None).await
}

/// Creates an API key with the bootstrap admin token; returns (id, secret).
async fn create_key(app: &Router, body: Value) -> (String, String) {
    let a = call(
        app,
        "post",
        "/v1/keys",
        true,
        Some("application/json"),
        Some(body.to_string()),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    let v = a.json();
    let id = v["key"]["id"].as_str().expect("id").to_owned();
    (id, v["secret"].as_str().expect("secret").to_owned())
}

/// Places a legal hold with the bootstrap admin token; returns its id.
async fn place_hold(app: &Router, body: Value) -> String {
    let a = send(app, "post", "/v1/holds", Some(&body.to_string())).await;
    assert_eq!(
        a.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    a.json()["id"].as_str().expect("id").to_owned()
}

/// `call` with the bootstrap admin token, and `body` as JSON.
async fn send(app: &Router, method: &str, uri: &str, body: Option<&str>) -> Answer {
    let ct = body.map(|_| "application/json");
    call(app, method, uri, true, ct, body.map(str::to_owned)).await
}

/// The traces a search (with the admin token) finds, newest first.
async fn found(app: &Router, uri: &str) -> Vec<Value> {
    let a = get(app, uri, true).await;
    assert_eq!(a.status, StatusCode::OK, "{uri}");
    a.json()["traces"].as_array().expect("traces").clone()
}

/// The request body example of an operation: `design`, else the first.
fn body_example(op: &Value) -> Value {
    let examples = op["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("request examples");
    examples
        .get("design")
        .or_else(|| examples.values().next())
        .expect("a request example")["value"]
        .clone()
}

/// Whether operations of this method take a request body (POST, PUT).
fn has_body(method: &str) -> bool {
    matches!(method, "post" | "put")
}

/// Traces in `mss`: the ones `seeded_app` appends.
const SEEDED_MSS: u64 = 300;

/// An app whose `mss` log holds 300 traces (design traces, and the `envoi`
/// trace of the batch example at index 39) and `applicative` one; the size-40
/// tree of `mss` got a signed checkpoint, returned with the app.
async fn seeded_app() -> (tempfile::TempDir, Router, String) {
    let (dir, app) = app();
    let doc: Value = serde_json::from_str(OPENAPI_JSON).expect("document");
    let batch = doc["paths"]["/v1/traces"]["post"]["requestBody"]["content"]["application/json"]
        ["examples"]["batch"]["value"]
        .as_array()
        .expect("batch example")
        .clone();
    assert_eq!(batch[0]["class"], "mss");
    assert_eq!(batch[1]["class"], "applicative");
    let mut first = vec![design_trace(); 39];
    first.extend(batch);
    assert_eq!(
        post_json(&app, &Value::Array(first)).await.status,
        StatusCode::CREATED
    );
    // A proof of the newest trace issues the checkpoint of size 40.
    let a = get(&app, "/v1/proofs/inclusion?log=mss&index=39", true).await;
    assert_eq!(a.status, StatusCode::OK);
    let note40 = a.json()["checkpoint"]
        .as_str()
        .expect("checkpoint")
        .to_owned();
    let rest = Value::Array(vec![design_trace(); SEEDED_MSS as usize - 40]);
    assert_eq!(post_json(&app, &rest).await.status, StatusCode::CREATED);
    (dir, app, note40)
}

/// The document as the router serves it.
async fn served_doc(app: &Router) -> Value {
    let a = call(app, "get", "/openapi.json", false, None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.body, OPENAPI_JSON.as_bytes());
    a.json()
}

// ---- reading the document ------------------------------------------------

/// Follows `$ref`s (local, `#/…`) to the schema they name.
fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let ptr = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        s = doc
            .pointer(ptr)
            .unwrap_or_else(|| panic!("dangling $ref {r}"));
    }
    s
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("no schema {name}"))
}

fn props(s: &Value) -> &Map<String, Value> {
    s["properties"].as_object().expect("properties")
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().expect("string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn keys(m: &Map<String, Value>) -> BTreeSet<String> {
    m.keys().cloned().collect()
}

/// A value holding every property of `s`, from the leaves' `examples`.
fn full(doc: &Value, s: &Value) -> Value {
    let s = resolve(doc, s);
    if let Some(p) = s.get("properties") {
        let obj = p
            .as_object()
            .expect("properties")
            .iter()
            .map(|(k, v)| (k.clone(), full(doc, v)))
            .collect();
        return Value::Object(obj);
    }
    if let Some(items) = s.get("items") {
        return json!([full(doc, items)]);
    }
    s["examples"][0].clone()
}

/// A value holding only the required properties of `s`.
fn minimal(doc: &Value, s: &Value) -> Value {
    let s = resolve(doc, s);
    match s.get("properties") {
        Some(p) => {
            let req = names(&s["required"]);
            let obj = p
                .as_object()
                .expect("properties")
                .iter()
                .filter(|(k, _)| req.contains(*k))
                .map(|(k, v)| (k.clone(), minimal(doc, v)))
                .collect();
            Value::Object(obj)
        }
        None => full(doc, s),
    }
}

/// Every object schema inside `s` (itself included), with its JSON pointer.
fn objects<'a>(doc: &'a Value, s: &'a Value, ptr: &str, out: &mut Vec<(String, &'a Value)>) {
    let s = resolve(doc, s);
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        out.push((ptr.to_owned(), s));
        for (k, v) in p {
            objects(doc, v, &format!("{ptr}/{k}"), out);
        }
    }
}

/// Every leaf schema inside `s` (array items as index 0), with its pointer.
fn leaves<'a>(doc: &'a Value, s: &'a Value, ptr: &str, out: &mut Vec<(String, &'a Value)>) {
    let s = resolve(doc, s);
    if let Some(p) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            leaves(doc, v, &format!("{ptr}/{k}"), out);
        }
    } else {
        out.push((ptr.to_owned(), s));
        if let Some(items) = s.get("items") {
            leaves(doc, items, &format!("{ptr}/0"), out);
        }
    }
}

/// `/target/recipients/0` → `target.recipients[0]`, as `TraceError::path`.
fn field_path(ptr: &str) -> String {
    let mut s = String::new();
    for seg in ptr.split('/').skip(1) {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            s.push_str(&format!("[{seg}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(seg);
        }
    }
    s
}

fn parse(v: &Value) -> Result<(), TraceError> {
    parse_trace(v.to_string().as_bytes(), &Limits::default()).map(|_| ())
}

fn refused(v: &Value) -> TraceError {
    match parse_trace(v.to_string().as_bytes(), &Limits::default()) {
        Ok(_) => panic!("parse_trace accepted {v}"),
        Err(e) => e,
    }
}

// ---- a small structural validator ---------------------------------------

/// Checks `v` against schema `s`. `strict`: objects typed `object` may only
/// hold their documented properties (for the server's own answers).
fn check(doc: &Value, s: &Value, v: &Value, strict: bool, at: &str) -> Result<(), String> {
    let s = resolve(doc, s);
    let fail = |why: String| Err(format!("{at}: {why}"));
    // Closed over its `allOf` branches: they are checked open, and the
    // object below is closed over every property they evaluate.
    let unevaluated_closed = s.get("unevaluatedProperties") == Some(&Value::Bool(false));
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check(doc, sub, v, strict && !unevaluated_closed, at)?;
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(|sub| check(doc, sub, v, strict, at).is_ok())
    {
        return fail("matches no anyOf branch".into());
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
        let n = one
            .iter()
            .filter(|sub| check(doc, sub, v, strict, at).is_ok())
            .count();
        if n != 1 {
            return fail(format!("matches {n} oneOf branches"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            other => other
                .as_array()
                .expect("type list")
                .iter()
                .filter_map(Value::as_str)
                .collect(),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return fail(format!("expected {types:?}, got {v}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        return fail(format!("{v} not in enum"));
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return fail(format!("{v} is not {c}"));
    }
    if let Value::String(text) = v {
        let n = text.chars().count() as u64;
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return fail("too long".into());
        }
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return fail("too short".into());
        }
    }
    if let Some(n) = v.as_i64()
        && s.get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|m| n < m)
    {
        return fail("below minimum".into());
    }
    if let Some(n) = v.as_u64()
        && s.get("maximum")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
    {
        return fail("above maximum".into());
    }
    if let Value::Array(items) = v {
        let n = items.len() as u64;
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return fail("too many items".into());
        }
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return fail("too few items".into());
        }
        if let Some(item) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                check(doc, item, x, strict, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Value::Object(obj) = v {
        for r in names(&s["required"]) {
            if !obj.contains_key(&r) {
                return fail(format!("required `{r}` missing"));
            }
        }
        let p = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties");
        let closed = additional == Some(&Value::Bool(false));
        let evaluated = evaluated(doc, s);
        let closed_over_all_of = unevaluated_closed
            || (strict && !evaluated.is_empty() && s.get("type") == Some(&json!("object")));
        for (k, x) in obj {
            if let Some(names) = s.get("propertyNames") {
                check(doc, names, &json!(k), strict, &format!("{at} key {k}"))?;
            }
            match (p.and_then(|p| p.get(k)), additional) {
                (Some(ps), _) => check(doc, ps, x, strict, &format!("{at}.{k}"))?,
                (None, _) if closed => return fail(format!("undocumented property `{k}`")),
                (None, Some(a)) if a.is_object() => check(doc, a, x, strict, &format!("{at}.{k}"))?,
                (None, _) if closed_over_all_of && !evaluated.contains(k) => {
                    return fail(format!("undocumented property `{k}`"));
                }
                (None, _) => {}
            }
        }
    }
    Ok(())
}

/// The properties `s` documents: its own and those of its `allOf` branches.
fn evaluated(doc: &Value, s: &Value) -> BTreeSet<String> {
    let s = resolve(doc, s);
    let mut out: BTreeSet<String> = s
        .get("properties")
        .and_then(Value::as_object)
        .map(keys)
        .unwrap_or_default();
    for sub in s
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(evaluated(doc, sub));
    }
    out
}

// ---- integrity helpers ---------------------------------------------------

fn sha256(bytes: &[u8]) -> Hash {
    // `registre_store::commitment` is SHA-256 of its input (checked below).
    registre_store::commitment(bytes)
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn b64_hash(v: &Value) -> Hash {
    let bytes = STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64");
    Hash::try_from(bytes.as_slice()).expect("32 bytes")
}

fn b64_hashes(v: &Value) -> Vec<Hash> {
    v.as_array().expect("hashes").iter().map(b64_hash).collect()
}

/// The commitment the document defines: `SHA-256(salt ‖ JCS(trace without
/// salt))`, the salt as its 16 bytes; `proof` is not part of the trace.
fn commitment_of(trace: &Value) -> Hash {
    let mut t = trace.clone();
    let obj = t.as_object_mut().expect("trace object");
    let salt = obj.remove("salt").expect("salt");
    obj.remove("proof");
    let mut record = unhex(salt.as_str().expect("salt"));
    assert_eq!(record.len(), 16);
    record.extend(jcs::to_canonical_vec(&t).expect("JCS"));
    sha256(&record)
}

/// The leaf hash the document defines: `SHA-256(0x00 ‖ commitment)`.
fn leaf_of(commitment: &Hash) -> Hash {
    let mut b = vec![0x00];
    b.extend_from_slice(commitment);
    let leaf = sha256(&b);
    assert_eq!(leaf, leaf_hash(commitment));
    leaf
}

/// Opens a signed checkpoint note with the verifier key `vkey`.
fn open(note: &str, vkey: &str) -> Checkpoint {
    let verifier = Verifier::parse(vkey).unwrap_or_else(|e| panic!("verifier key {vkey}: {e}"));
    let (cp, opened) = open_checkpoint(note.as_bytes(), &[verifier])
        .unwrap_or_else(|e| panic!("checkpoint does not verify: {e}\n{note}"));
    assert_eq!(opened.verified().len(), 1);
    cp
}

/// The parameters' example values: `example`, or every `examples` value.
fn param_examples(p: &Value) -> Vec<Value> {
    if let Some(e) = p.get("example") {
        return vec![e.clone()];
    }
    p["examples"]
        .as_object()
        .map(|m| m.values().map(|e| e["value"].clone()).collect())
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `path` with its path parameters and required query parameters set to
/// their (first) documented examples.
fn example_uri(doc: &Value, path: &str, op: &Value) -> String {
    let mut uri = path.to_owned();
    let mut query = Vec::new();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().expect("name");
        let examples = param_examples(p);
        for e in &examples {
            check(doc, &p["schema"], e, false, name).expect("parameter example fits");
        }
        let value = || {
            text(
                examples
                    .first()
                    .unwrap_or_else(|| panic!("{path}: parameter {name} has no example")),
            )
        };
        match p["in"].as_str() {
            Some("path") => {
                assert_eq!(p["required"], true, "{path}: path parameter {name}");
                let slot = format!("{{{name}}}");
                assert!(uri.contains(&slot), "{path}: no {slot}");
                uri = uri.replace(&slot, &value());
            }
            Some("query") if p["required"] == true => query.push(format!("{name}={}", value())),
            _ => {}
        }
    }
    assert!(
        !uri.contains('{'),
        "{path}: a path parameter is not documented"
    );
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    uri
}

/// The schema of an operation's response for `status`.
fn response_schema<'a>(doc: &'a Value, op: &'a Value, status: StatusCode) -> &'a Value {
    let r = op["responses"]
        .get(status.as_str())
        .unwrap_or_else(|| panic!("status {status} is not documented"));
    let r = resolve(doc, r);
    let content = r["content"].as_object().expect("content");
    let (_, media) = content.iter().next().expect("one media type");
    &media["schema"]
}

fn assert_answer(doc: &Value, op: &Value, a: &Answer) {
    let r = resolve(
        doc,
        op["responses"]
            .get(a.status.as_str())
            .unwrap_or_else(|| panic!("status {} is not documented", a.status)),
    );
    for (name, h) in r["headers"].as_object().into_iter().flatten() {
        let h = resolve(doc, h);
        let Some(value) = a.headers.get(name.as_str()) else {
            assert!(h["required"] != true, "{}: header {name} missing", a.status);
            continue;
        };
        let text = value.to_str().expect("header text");
        let v = match h["schema"]["type"].as_str() {
            Some("integer") => json!(text.parse::<u64>().expect("integer header")),
            _ => json!(text),
        };
        check(doc, &h["schema"], &v, true, name)
            .unwrap_or_else(|e| panic!("{} header does not fit: {e}", a.status));
    }
    let content = r["content"].as_object().expect("content");
    let essence = a.content_type.split(';').next().unwrap_or("").trim();
    assert!(
        content.contains_key(essence),
        "{} answered {essence}, documented {:?}",
        a.status,
        content.keys().collect::<Vec<_>>()
    );
    if essence.ends_with("json") {
        let body = a.json();
        check(doc, response_schema(doc, op, a.status), &body, true, "body")
            .unwrap_or_else(|e| panic!("{} answer does not fit its schema: {e}\n{body}", a.status));
    }
}

// ---- tests ---------------------------------------------------------------

#[tokio::test]
async fn document_is_openapi_3_1() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    assert!(doc["openapi"].as_str().expect("openapi").starts_with("3.1"));
    assert_eq!(
        doc["jsonSchemaDialect"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["servers"][0]["url"], "http://127.0.0.1:7380");
    let about = doc["info"]["description"].as_str().expect("description");
    for word in [
        "mss",
        "technique",
        "applicative",
        "SC.MSS/CONF.18",
        "admin-token",
        "SHA-256(salt ‖ JCS(trace without salt))",
        "SHA-256(0x00 ‖ commitment)",
        "/logs/",
        "producteur",
        "auditeur",
        "admin ⊇ auditeur",
        "bootstrap admin key",
        "trusted proxy",
        "actor-mismatch",
        "registre_admin_credentials_created_total",
        "`503`",
    ] {
        assert!(about.contains(word), "info.description lacks {word}");
    }
    // Every $ref resolves.
    fn refs(doc: &Value, v: &Value) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let _ = resolve(doc, &json!({ "$ref": r }));
                }
                m.values().for_each(|x| refs(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(doc, x)),
            _ => {}
        }
    }
    refs(&doc, &doc);
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert!(
        scheme["description"]
            .as_str()
            .is_some_and(|d| d.contains("<data>/admin-token"))
    );
}

#[tokio::test]
async fn documented_routes_are_the_served_routes() {
    let (_dir, app, _) = seeded_app().await;
    let doc = served_doc(&app).await;
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in item.as_object().expect("path item").keys() {
            if METHODS.contains(&m.as_str()) {
                documented.insert((m.clone(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served, "documented routes != served routes");

    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let guarded = guarded(path);
        assert_eq!(
            op.get("security"),
            guarded.then(|| json!([{"bearerAuth": []}])).as_ref(),
            "{method} {path}: bearer security on guarded routes only"
        );
        let body = has_body(method).then(|| body_example(op).to_string());
        let ct = body.as_ref().map(|_| "application/json");
        let mut uri = example_uri(&doc, path, op);
        if path == "/v1/keys/{id}" {
            // Revoke a key that exists.
            let (id, _) = create_key(&app, json!({"name": "to-revoke", "role": "auditeur"})).await;
            uri = format!("/v1/keys/{id}");
        }
        if path == "/v1/holds/{id}" {
            // Release a hold that exists.
            let id = place_hold(&app, json!({"reason": "to release", "actor": "x"})).await;
            uri = format!("/v1/holds/{id}");
        }
        if path == "/fhir/AuditEvent/{id}" {
            // Read an AuditEvent that exists: the create example's.
            let create = &doc["paths"]["/fhir/AuditEvent"]["post"];
            let a = send(
                &app,
                "post",
                "/fhir/AuditEvent",
                Some(&body_example(create).to_string()),
            )
            .await;
            assert_eq!(
                a.status,
                StatusCode::CREATED,
                "{}",
                String::from_utf8_lossy(&a.body)
            );
            uri = format!("/fhir/AuditEvent/{}", a.json()["id"].as_str().expect("id"));
        }
        let a = call(&app, method, &uri, true, ct, body.clone()).await;
        assert!(
            a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} answered {}",
            a.status
        );
        assert!(
            a.status.is_success(),
            "{method} {uri} answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
        assert_answer(&doc, op, &a);
        let a = call(&app, method, &uri, false, ct, body).await;
        if guarded {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        } else {
            assert!(a.status.is_success(), "{method} {uri} needs no token");
        }
        assert_answer(&doc, op, &a);
    }
}

/// The roles an operation documents, as `x-registre-roles` says them.
fn documented_roles(op: &Value) -> Vec<String> {
    op["x-registre-roles"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r.as_str().expect("role").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `role` may call an operation accepting `roles` (admin ⊇ auditeur).
fn may(roles: &[String], role: &str) -> bool {
    roles.iter().any(|r| r == role) || (role == "admin" && roles.iter().any(|r| r == "auditeur"))
}

/// The `code spans` of a text.
fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[tokio::test]
async fn documented_roles_are_the_codes() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;

    // `x-registre-roles` of every operation == `auth::ROUTES`, in order.
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, op) in item.as_object().expect("path item") {
            if !METHODS.contains(&m.as_str()) {
                continue;
            }
            if !guarded(path) {
                assert!(
                    op.get("x-registre-roles").is_none(),
                    "{m} {path} is open: no roles"
                );
                continue;
            }
            let roles = documented_roles(op);
            assert!(!roles.is_empty(), "{m} {path}: no x-registre-roles");
            // The description says them: `**Roles**: …` names exactly these
            // roles, and `admin` wherever `auditeur` is (admin ⊇ auditeur).
            let desc = op["description"].as_str().expect("description");
            let said = desc
                .split("**Roles**: ")
                .nth(1)
                .and_then(|s| s.split(". ").next())
                .unwrap_or_else(|| panic!("{m} {path}: the description does not say its roles"));
            let said: BTreeSet<&str> = code_spans(said).into_iter().collect();
            let mut want: BTreeSet<&str> = roles.iter().map(String::as_str).collect();
            if want.contains("auditeur") {
                want.insert("admin");
            }
            assert_eq!(said, want, "{m} {path}: roles said in the description");
            documented.push((m.to_ascii_uppercase(), path.clone(), roles));
        }
    }
    let mut code: Vec<(String, String, Vec<String>)> = ROUTES
        .iter()
        .map(|(m, p, roles)| {
            let roles = roles.iter().map(|r| r.as_str().to_owned()).collect();
            ((*m).to_owned(), (*p).to_owned(), roles)
        })
        .collect();
    documented.sort();
    code.sort();
    assert_eq!(
        documented, code,
        "x-registre-roles != registre_intake::http::auth::ROUTES"
    );

    // The roles table of `info.description`: each role's row lists exactly
    // the routes that role may call.
    let about = doc["info"]["description"].as_str().expect("description");
    let mut rows = 0;
    for line in about.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let role = cells[0].trim_start_matches("| ").trim_matches('`');
        let listed: BTreeSet<&str> = code_spans(cells[1]).into_iter().collect();
        let routes: Vec<String> = code
            .iter()
            .filter(|(_, _, roles)| may(roles, role))
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();
        let want: BTreeSet<&str> = routes.iter().map(String::as_str).collect();
        assert_eq!(listed, want, "roles table, row {role}");
        rows += 1;
    }
    assert_eq!(rows, 3, "one row per role: producteur, auditeur, admin");
}

#[tokio::test]
async fn access_control_answers_fit_their_schemas() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    let op = |m: &str, p: &str| doc["paths"][p][m].clone();
    let create_op = op("post", "/v1/keys");

    // One key per role, and the mail proxy; the secret is shown once.
    let mut secret = std::collections::BTreeMap::new();
    for (name, role, proxy) in [
        ("dpi-server", "producteur", false),
        ("dpo", "auditeur", false),
        ("rssi", "admin", false),
        ("mssante-proxy", "producteur", true),
    ] {
        let body = json!({"name": name, "role": role, "trusted_proxy": proxy});
        let a = call(
            &app,
            "post",
            "/v1/keys",
            true,
            Some("application/json"),
            Some(body.to_string()),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED);
        assert_answer(&doc, &create_op, &a);
        let v = a.json();
        assert_eq!(
            (
                &v["key"]["name"],
                &v["key"]["role"],
                &v["key"]["trusted_proxy"]
            ),
            (&json!(name), &json!(role), &json!(proxy))
        );
        let s = v["secret"].as_str().expect("secret").to_owned();
        let id = v["key"]["id"].as_str().expect("id");
        assert!(s.starts_with(&format!("rgk_{id}_")), "{s}");
        secret.insert(if proxy { "proxy" } else { role }, s);
    }
    // The alert: one admin and one trusted proxy were created.
    let a = get(&app, "/metrics", false).await;
    let metrics = String::from_utf8(a.body).expect("UTF-8");
    assert!(
        metrics
            .lines()
            .any(|l| l == "registre_admin_credentials_created_total 2"),
        "{metrics}"
    );
    // The list shows the keys, never a secret.
    let a = get(&app, "/v1/keys", true).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &op("get", "/v1/keys"), &a);
    let listed = String::from_utf8(a.body.clone()).expect("UTF-8");
    for s in secret.values() {
        assert!(!listed.contains(s.rsplit('_').next().expect("secret part")));
    }
    assert_eq!(a.json()["keys"][0]["name"], "admin", "the bootstrap key");

    // Every role on every /v1 operation: refused as `forbidden` exactly when
    // the operation's `x-registre-roles` (with admin ⊇ auditeur) says so.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, o) in item.as_object().expect("path item") {
            if !path.starts_with("/v1/") || !METHODS.contains(&m.as_str()) {
                continue;
            }
            let roles = documented_roles(o);
            let body = has_body(m).then(|| body_example(o).to_string());
            let ct = body.as_ref().map(|_| "application/json");
            let uri = example_uri(&doc, path, o);
            for role in ["producteur", "auditeur", "admin"] {
                let a = call_as(&app, m, &uri, Some(&secret[role]), ct, body.clone()).await;
                assert_answer(&doc, o, &a);
                let forbidden = a.status == StatusCode::FORBIDDEN
                    && a.json()["type"] == "urn:registre:problem:forbidden";
                assert_eq!(
                    forbidden,
                    !may(&roles, role),
                    "{role} on {m} {path}: {}",
                    String::from_utf8_lossy(&a.body)
                );
                if forbidden {
                    let detail = a.json()["detail"].as_str().expect("detail").to_owned();
                    assert!(
                        detail.contains(&format!("needs the role {}", roles.join(" or ")))
                            && detail.contains(&format!("has {role}")),
                        "{detail}"
                    );
                }
            }
        }
    }

    // 401: the documented reasons.
    let (revoked_id, revoked) =
        create_key(&app, json!({"name": "old-dpo", "role": "auditeur"})).await;
    let a = call(
        &app,
        "delete",
        &format!("/v1/keys/{revoked_id}"),
        true,
        None,
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &op("delete", "/v1/keys/{id}"), &a);
    assert!(a.json()["key"]["revoked_at"].is_string());
    let (_, expired) = create_key(
        &app,
        json!({"name": "intern", "role": "auditeur", "expires_at": "2000-01-01T00:00:00Z"}),
    )
    .await;
    let search = op("get", "/v1/traces");
    let unauthorized = resolve(&doc, &search["responses"]["401"])["description"]
        .as_str()
        .expect("401 description")
        .to_owned();
    for (bearer, reason) in [
        (None, "no credential"),
        (Some("rgk_00000000_nope"), "unknown API key"),
        (Some("not-a-key"), "unknown API key"),
        (Some(revoked.as_str()), "this API key was revoked"),
        (Some(expired.as_str()), "this API key expired"),
    ] {
        let a = call_as(&app, "get", "/v1/traces", bearer, None, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{reason}");
        assert_answer(&doc, &search, &a);
        let detail = a.json()["detail"].as_str().expect("detail").to_owned();
        assert!(detail.starts_with(reason), "{detail}");
        assert!(
            unauthorized.contains(reason),
            "401 does not document {reason}"
        );
    }
    for (m, uri, body) in [
        ("delete", "/v1/keys/00000000", None),
        ("post", "/v1/keys", Some("{\"name\": \"x\"}")),
        (
            "post",
            "/v1/keys",
            Some("{\"name\": \"a b\", \"role\": \"auditeur\"}"),
        ),
        (
            "post",
            "/v1/keys",
            Some("{\"name\": \"x\", \"role\": \"auditeur\", \"expires_at\": \"soon\"}"),
        ),
        ("post", "/v1/exports", Some("{}")),
    ] {
        let path = if uri.starts_with("/v1/keys/") {
            "/v1/keys/{id}"
        } else {
            uri
        };
        let a = call(
            &app,
            m,
            uri,
            true,
            Some("application/json"),
            body.map(str::to_owned),
        )
        .await;
        assert!(a.status.is_client_error(), "{m} {uri} {body:?}");
        assert_answer(&doc, &op(m, path), &a);
    }

    // Authorship: a producer writes only its own traces, as `apikey`.
    let post = op("post", "/v1/traces");
    let mut mine = design_trace();
    mine["actor"]["id"] = json!("dpi-server");
    let batch = json!([mine.clone(), design_trace()]).to_string();
    let a = call_as(
        &app,
        "post",
        "/v1/traces",
        Some(&secret["producteur"]),
        None,
        Some(batch),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_answer(&doc, &post, &a);
    let p = a.json();
    assert_eq!(p["type"], "urn:registre:problem:actor-mismatch");
    assert_eq!(
        (
            &p["errors"][0]["trace"],
            &p["errors"][0]["field"],
            &p["errors"][0]["code"]
        ),
        (&json!(1), &json!("actor.id"), &json!("actor_mismatch"))
    );
    for (who, trace) in [("producteur", &mine), ("proxy", &design_trace())] {
        let a = call_as(
            &app,
            "post",
            "/v1/traces",
            Some(&secret[who]),
            None,
            Some(trace.to_string()),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{who}");
        assert_answer(&doc, &post, &a);
    }
    for (actor, auth) in [("dpi-server", "apikey"), ("810001234567", "psc")] {
        let uri = format!("/v1/traces?class=mss&actor={actor}");
        let a = call_as(&app, "get", &uri, Some(&secret["auditeur"]), None, None).await;
        assert_answer(&doc, &search, &a);
        let page = a.json();
        assert_eq!(
            page["traces"].as_array().map(Vec::len),
            Some(1),
            "{actor}: nothing else was stored"
        );
        assert_eq!(page["traces"][0]["actor"]["auth"], auth, "{actor}");
    }

    // An export is recorded under its caller's name.
    let export = op("post", "/v1/exports");
    let body = body_example(&export).to_string();
    let a = call_as(
        &app,
        "post",
        "/v1/exports",
        Some(&secret["auditeur"]),
        None,
        Some(body),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_answer(&doc, &export, &a);

    // Each access is a trace of `applicative`: its caller, its filters,
    // never its results.
    let traced = |uri: &str| {
        let uri = uri.to_owned();
        let app = app.clone();
        async move {
            let a = get(&app, &uri, true).await;
            assert_eq!(a.status, StatusCode::OK);
            a.json()["traces"].as_array().expect("traces").clone()
        }
    };
    let searches =
        traced("/v1/traces?class=applicative&actor=dpo&action=recherche&limit=1000").await;
    let t = searches
        .iter()
        .find(|t| t["request"] == "/v1/traces?class=mss&actor=dpi-server")
        .expect("the search is traced");
    assert_eq!(t["actor"], json!({"id": "dpo", "auth": "apikey"}));
    assert_eq!(t["target"]["resource"], "/v1/traces");
    assert_eq!(
        t["response"],
        json!({"status": "200", "text": "1 traces returned"})
    );
    assert_eq!(t["outcome"], "success");
    for t in &searches {
        assert!(
            !t.to_string().contains("mssante.fr"),
            "a result leaked: {t}"
        );
    }
    let exports = traced("/v1/traces?class=applicative&actor=dpo&action=export").await;
    let req = exports[0]["request"].as_str().expect("request");
    assert!(
        req.starts_with("/v1/exports?actor=810001234567") && req.contains("&reason="),
        "{req}"
    );
    let created =
        traced("/v1/traces?class=applicative&actor=admin&action=creation&limit=1000").await;
    assert!(created.iter().any(|t| {
        t["response"]["text"]
            .as_str()
            .is_some_and(|s| s.contains("for rssi with role admin"))
    }));
    let revoked = traced("/v1/traces?class=applicative&actor=admin&action=suppression").await;
    assert_eq!(revoked[0]["request"], format!("/v1/keys/{revoked_id}"));
    let listings = traced("/v1/traces?class=applicative&actor=admin&action=recherche").await;
    assert!(listings.iter().any(|t| t["request"] == "/v1/keys"));
    // A refusal as `forbidden` is traced too, as a failure.
    let refusals =
        traced("/v1/traces?class=applicative&actor=dpi-server&action=recherche&limit=1000").await;
    assert!(refusals.iter().any(|t| {
        t["outcome"] == "failure"
            && t["response"]["status"] == "403"
            && t["response"]["text"]
                .as_str()
                .is_some_and(|s| s.starts_with("refused: needs "))
    }));

    // A retention change (the admin's call above, with the documented
    // example) is traced with its old and new value.
    let set_op = op("put", "/v1/policy/{class}");
    let class = set_op["parameters"][0]["example"]
        .as_str()
        .expect("class example")
        .to_owned();
    let new = Retention::parse(
        body_example(&set_op)["retention"]
            .as_str()
            .expect("retention"),
    )
    .expect("the example retention parses");
    // (Legal holds placed by rssi above are `politique` changes too.)
    let changes: Vec<Value> = traced("/v1/traces?class=applicative&actor=rssi&action=politique")
        .await
        .into_iter()
        .filter(|t| t["target"]["resource"] != "/v1/holds")
        .collect();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(
        changes[0]["request"],
        format!("/v1/policy/{class}?retention={new}")
    );
    assert_eq!(
        changes[0]["target"]["resource"],
        format!("/v1/policy/{class}")
    );
    assert_eq!(
        changes[0]["response"],
        json!({"status": "200", "text": format!("retention of {class}: 1 year -> {new}")})
    );
    assert_eq!(changes[0]["outcome"], "success");

    // 503: where accesses cannot be traced (no `applicative` log), every
    // traced route refuses; appending is not an access.
    let (_bare_dir, bare, auth, bare_store) = app_at(&["mss"], Arc::new(SystemClock));
    let victim = auth
        .keys
        .create("victim", registre_access::Role::Auditeur, false, None)
        .expect("key");
    let hold = bare_store
        .add_hold(Hold {
            id: "h-0000beef".into(),
            reason: "placed before the applicative log went".into(),
            filter: HoldFilter::default(),
            created_by: "test".into(),
            created_at: "2026-11-28T17:20:41.523118904Z".into(),
            released_by: None,
            released_at: None,
        })
        .await
        .expect("hold");
    assert_eq!(
        post_json(&bare, &design_trace()).await.status,
        StatusCode::CREATED
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (m, o) in item.as_object().expect("path item") {
            if !path.starts_with("/v1/") || !METHODS.contains(&m.as_str()) {
                continue;
            }
            let body = has_body(m).then(|| body_example(o).to_string());
            let ct = body.as_ref().map(|_| "application/json");
            let uri = match path.as_str() {
                "/v1/keys/{id}" => format!("/v1/keys/{}", victim.key.id),
                // A hold that exists and is active.
                "/v1/holds/{id}" => format!("/v1/holds/{}", hold.id),
                // A proof of a trace that exists.
                "/v1/proofs/inclusion" => "/v1/proofs/inclusion?log=mss&index=0".into(),
                "/v1/proofs/consistency" => "/v1/proofs/consistency?log=mss&from=1&to=1".into(),
                // A class the bare app's policy has.
                "/v1/policy/{class}" => "/v1/policy/mss".into(),
                _ => example_uri(&doc, path, o),
            };
            let a = call(&bare, m, &uri, true, ct, body).await;
            assert_answer(&doc, o, &a);
            if (m.as_str(), path.as_str()) == ("post", "/v1/traces") {
                assert_eq!(a.status, StatusCode::CREATED);
            } else {
                assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{m} {uri}");
                assert_eq!(a.json()["type"], "urn:registre:problem:unavailable");
            }
        }
    }
}

#[tokio::test]
async fn answers_fit_their_schemas() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    let post = &doc["paths"]["/v1/traces"]["post"];
    let get = &doc["paths"]["/v1/traces"]["get"];

    // Every request example is accepted, with one receipt per trace.
    let examples = post["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("examples");
    assert_eq!(examples["design"]["value"], design_trace());
    for (name, ex) in examples {
        let a = post_json(&app, &ex["value"]).await;
        assert_eq!(a.status, StatusCode::CREATED, "example {name}");
        assert_answer(&doc, post, &a);
        let n = ex["value"].as_array().map_or(1, Vec::len);
        assert_eq!(a.json()["accepted"].as_array().map(Vec::len), Some(n));
    }

    // Search: a page of stored traces, with their salts.
    let a = call(&app, "get", "/v1/traces?limit=2", true, None, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, get, &a);
    let page = a.json();
    assert_eq!(page["traces"].as_array().map(Vec::len), Some(2));
    assert!(page["next"].is_string());
    let stored = &page["traces"][0];
    let salt = stored["salt"].as_str().expect("salt");
    assert!(
        salt.len() == 32
            && salt
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert!(stored["id"].as_str().is_some_and(|id| id.len() == 36));
    let cursor = page["next"].as_str().expect("next");
    let a = call(
        &app,
        "get",
        &format!("/v1/traces?limit=1000&cursor={cursor}&since=2000-01-01T00:00:00Z"),
        true,
        None,
        None,
    )
    .await;
    assert_answer(&doc, get, &a);
    assert!(a.json()["next"].is_null());

    // Documented problems.
    let mut bad_trace = design_trace();
    bad_trace["target"]["subject"] = json!("Résultats");
    let cases: Vec<(&Value, Answer)> = vec![
        (post, post_json(&app, &bad_trace).await),
        (post, post_json(&app, &json!([design_trace(), {}])).await),
        (post, post_json(&app, &json!([])).await),
        (
            post,
            call(
                &app,
                "post",
                "/v1/traces",
                true,
                Some("application/json"),
                Some("{".into()),
            )
            .await,
        ),
        (
            post,
            call(
                &app,
                "post",
                "/v1/traces",
                true,
                Some("text/plain"),
                Some("x".into()),
            )
            .await,
        ),
        (
            post,
            post_json(&app, &Value::Array(vec![json!({}); MAX_BATCH + 1])).await,
        ),
        (
            get,
            call(&app, "get", "/v1/traces?bogus=1", true, None, None).await,
        ),
        (
            get,
            call(&app, "get", "/v1/traces?limit=0", true, None, None).await,
        ),
        (
            get,
            call(&app, "get", "/v1/traces?since=yesterday", true, None, None).await,
        ),
    ];
    let expected = [422, 422, 400, 400, 415, 413, 400, 400, 400];
    for ((op, a), want) in cases.iter().zip(expected) {
        assert_eq!(
            a.status.as_u16(),
            want,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.content_type, "application/problem+json");
        assert_answer(&doc, op, a);
    }
    let errors = cases[0].1.json()["errors"].clone();
    assert_eq!(errors[0]["field"], "target.subject");
    assert_eq!(errors[0]["code"], "content_field");

    // Unknown routes and methods answer problems too.
    let problem = schema(&doc, "Problem");
    for (m, p, want) in [
        ("get", "/v2/nothing", StatusCode::NOT_FOUND),
        ("delete", "/healthz", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let a = call(&app, m, p, true, None, None).await;
        assert_eq!(a.status, want);
        check(&doc, problem, &a.json(), true, "body").expect("problem shape");
    }
}

#[tokio::test]
async fn policy_answers_fit_their_schemas() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    let show = doc["paths"]["/v1/policy"]["get"].clone();
    let set = doc["paths"]["/v1/policy/{class}"]["put"].clone();
    let put = |uri: &str, body: &str| {
        let (app, uri, body) = (app.clone(), uri.to_owned(), body.to_owned());
        async move {
            call(
                &app,
                "put",
                &uri,
                true,
                Some("application/json"),
                Some(body),
            )
            .await
        }
    };

    // The policy as configured: every class, no change yet.
    let a = get(&app, "/v1/policy", true).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &show, &a);
    let p = a.json();
    let classes: Vec<(&str, &str, &str)> = p["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| {
            (
                c["class"].as_str().expect("class"),
                c["retention"].as_str().expect("retention"),
                c["source"].as_str().expect("source"),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            ("mss", "6 months", "config"),
            ("technique", "1 year", "config"),
            ("applicative", "20 years", "config")
        ]
    );
    assert_eq!(p["history"], json!([]));

    // Every body example changes the retention; the answer gives the
    // previous one and the source names the caller.
    let examples = set["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("examples")
        .clone();
    let mut previous = "1 year".to_owned();
    for (name, ex) in &examples {
        let a = put("/v1/policy/technique", &ex["value"].to_string()).await;
        assert_eq!(a.status, StatusCode::OK, "example {name}");
        assert_answer(&doc, &set, &a);
        let v = a.json();
        let want = Retention::parse(ex["value"]["retention"].as_str().expect("retention"))
            .expect("example retention")
            .to_string();
        assert_eq!(v["previous"], previous.as_str(), "example {name}");
        assert_eq!(v["class"]["class"], "technique");
        assert_eq!(v["class"]["retention"], want.as_str(), "example {name}");
        assert!(
            v["class"]["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("set by admin at ")),
            "{v}"
        );
        assert!(v["class"].get("warning").is_none(), "{v}");
        previous = want;
    }
    // Outside the recommended range: applied, with a warning.
    let a = put("/v1/policy/applicative", r#"{"retention": "10 ans"}"#).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &set, &a);
    let v = a.json();
    assert_eq!(
        (&v["previous"], &v["class"]["retention"]),
        (&json!("20 years"), &json!("10 years"))
    );
    assert!(v["class"]["warning"].is_string(), "{v}");

    // Documented problems: nothing is changed.
    // `<status> <problem type> <class> <body>`
    let cases = [
        "422 invalid-policy technique {",
        "422 invalid-policy technique {}",
        "422 invalid-policy technique []",
        r#"422 invalid-policy technique {"retention": 6}"#,
        r#"422 invalid-policy technique {"retention": "6 months", "class": "mss"}"#,
        r#"422 invalid-policy technique {"retention": "six months"}"#,
        r#"422 invalid-policy technique {"retention": "0 days"}"#,
        r#"422 invalid-policy technique {"retention": "6 fortnights"}"#,
        r#"422 invalid-policy technique {"retention": "36526 days"}"#,
        r#"422 invalid-policy technique {"retention": "101 years"}"#,
        r#"422 invalid-policy nope {"retention": "nope"}"#,
        r#"404 unknown-class nope {"retention": "1 year"}"#,
        r#"404 unknown-class MSS {"retention": "1 year"}"#,
    ];
    for case in cases {
        let mut parts = case.splitn(4, ' ');
        let (Some(status), Some(kind), Some(class), Some(body)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            panic!("case {case}");
        };
        let a = put(&format!("/v1/policy/{class}"), body).await;
        assert_eq!(
            (a.status.as_str(), a.content_type.as_str()),
            (status, "application/problem+json"),
            "{case}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(
            a.json()["type"],
            format!("urn:registre:problem:{kind}"),
            "{case}"
        );
        assert_answer(&doc, &set, &a);
    }

    // The history holds the changes made, oldest first.
    let a = get(&app, "/v1/policy", true).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &show, &a);
    let p = a.json();
    let history: Vec<(&str, &str, &str, &str)> = p["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["class"].as_str().expect("class"),
                h["previous"].as_str().expect("previous"),
                h["retention"].as_str().expect("retention"),
                h["by"].as_str().expect("by"),
            )
        })
        .collect();
    assert_eq!(history.len(), examples.len() + 1, "{p}");
    assert_eq!(history[0], ("technique", "1 year", "6 months", "admin"));
    assert_eq!(
        history.last().copied(),
        Some(("applicative", "20 years", "10 years", "admin"))
    );
    for h in p["history"].as_array().expect("history") {
        let at = h["at"].as_str().expect("at");
        assert!(
            at.parse::<jiff::Timestamp>().is_ok() && at.ends_with('Z'),
            "{at}"
        );
    }
    assert_eq!(p["classes"][1]["retention"], previous.as_str());
    assert_eq!(p["classes"][2]["retention"], "10 years");
    assert_eq!(p["classes"][0]["source"], "config");
}

#[tokio::test]
async fn hold_answers_fit_their_schemas() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    let list = doc["paths"]["/v1/holds"]["get"].clone();
    let place = doc["paths"]["/v1/holds"]["post"].clone();
    let release = doc["paths"]["/v1/holds/{id}"]["delete"].clone();
    let listed = || async {
        let a = get(&app, "/v1/holds", true).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_answer(&doc, &list, &a);
        a.json()["holds"].as_array().expect("holds").clone()
    };
    assert_eq!(listed().await, Vec::<Value>::new());

    // Every body example places a hold; so do a hold with no filter (it
    // keeps everything) and a reason of 500 characters once trimmed.
    let mut bodies: Vec<Value> = place["requestBody"]["content"]["application/json"]["examples"]
        .as_object()
        .expect("examples")
        .values()
        .map(|e| e["value"].clone())
        .collect();
    bodies.push(json!({"reason": "keep everything"}));
    bodies.push(json!({"reason": format!("  {}\n", "é".repeat(500)), "action": "x-impression"}));
    let mut placed = Vec::new();
    for body in &bodies {
        let a = send(&app, "post", "/v1/holds", Some(&body.to_string())).await;
        assert_eq!(
            a.status,
            StatusCode::CREATED,
            "{body}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_answer(&doc, &place, &a);
        let h = a.json();
        let mut filter = body.clone();
        let reason = filter
            .as_object_mut()
            .and_then(|o| o.remove("reason"))
            .expect("reason");
        assert_eq!(
            h["reason"],
            reason.as_str().expect("reason").trim(),
            "{body}"
        );
        assert_eq!(h["filter"], filter, "{body}");
        assert_eq!(h["created_by"], "admin");
        let id = h["id"].as_str().expect("id");
        assert!(
            id.len() == 10
                && id.starts_with("h-")
                && id[2..]
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        let at = h["created_at"].as_str().expect("created_at");
        assert!(
            at.parse::<jiff::Timestamp>().is_ok() && at.ends_with('Z'),
            "{at}"
        );
        assert!(h.get("released_at").is_none() && h.get("released_by").is_none());
        placed.push(h);
    }
    assert_eq!(listed().await, placed, "listed in the order placed");

    // Documented problems: nothing is traced or placed.
    // `<status> <problem type> <body>`
    let long = format!(r#"422 invalid-hold {{"reason": "{}"}}"#, "r".repeat(501));
    let long_actor = format!(
        r#"422 invalid-hold {{"reason": "x", "actor": "{}"}}"#,
        "a".repeat(257)
    );
    let cases = [
        "422 invalid-hold {",
        "422 invalid-hold []",
        "422 invalid-hold {}",
        "422 invalid-hold ",
        r#"422 invalid-hold {"reason": 5}"#,
        r#"422 invalid-hold {"reason": ""}"#,
        r#"422 invalid-hold {"reason": " \n\t "}"#,
        long.as_str(),
        r#"422 invalid-hold {"reason": "x", "zz": 1}"#,
        r#"422 invalid-hold {"reason": "x", "filter": {"actor": "a"}}"#,
        r#"422 invalid-hold {"reason": "x", "actor": 5}"#,
        r#"422 invalid-hold {"reason": "x", "actor": "  "}"#,
        long_actor.as_str(),
        r#"422 invalid-hold {"reason": "x", "class": "MSS"}"#,
        r#"422 invalid-hold {"reason": "x", "action": "delete"}"#,
        r#"422 invalid-hold {"reason": "x", "since": "yesterday"}"#,
        r#"422 invalid-hold {"reason": "x", "until": "2026-11-28T15:42:07"}"#,
    ];
    for case in cases {
        let mut parts = case.splitn(3, ' ');
        let (Some(status), Some(kind), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("case {case}");
        };
        let a = send(&app, "post", "/v1/holds", Some(body)).await;
        assert_eq!(
            (a.status.as_str(), a.content_type.as_str()),
            (status, "application/problem+json"),
            "{case}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(
            a.json()["type"],
            format!("urn:registre:problem:{kind}"),
            "{case}"
        );
        assert_answer(&doc, &place, &a);
    }
    assert_eq!(listed().await, placed, "nothing placed");

    // Release: once (200, the hold released), not twice (409).
    let mut released = Vec::new();
    for h in &placed {
        let uri = format!("/v1/holds/{}", h["id"].as_str().expect("id"));
        let a = send(&app, "delete", &uri, None).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_answer(&doc, &release, &a);
        let r = a.json();
        let mut active = r.clone();
        let obj = active.as_object_mut().expect("hold");
        assert_eq!(obj.remove("released_by"), Some(json!("admin")));
        let at = obj.remove("released_at").expect("released_at");
        assert!(
            at.as_str()
                .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok() && t.ends_with('Z')),
            "{at}"
        );
        assert_eq!(&active, h, "only the release is added");
        let a = send(&app, "delete", &uri, None).await;
        assert_eq!(
            (a.status, a.json()["type"].as_str()),
            (
                StatusCode::CONFLICT,
                Some("urn:registre:problem:hold-conflict")
            ),
            "{uri} again"
        );
        assert_answer(&doc, &release, &a);
        released.push(r);
    }
    for uri in ["/v1/holds/h-00000000", "/v1/holds/nope"] {
        let a = send(&app, "delete", uri, None).await;
        assert_eq!(
            (a.status, a.json()["type"].as_str()),
            (
                StatusCode::NOT_FOUND,
                Some("urn:registre:problem:unknown-hold")
            ),
            "{uri}"
        );
        assert_answer(&doc, &release, &a);
    }
    assert_eq!(listed().await, released, "released holds stay listed");

    // Traced in `applicative`: each placement and release before it
    // applies (`politique`), each listing (`recherche`); refusals are not.
    let changes = found(
        &app,
        "/v1/traces?class=applicative&actor=admin&action=politique&limit=1000",
    )
    .await;
    assert_eq!(changes.len(), 2 * placed.len(), "{changes:#?}");
    for h in &placed {
        let id = h["id"].as_str().expect("id");
        let reason = h["reason"].as_str().expect("reason");
        let t = changes
            .iter()
            .find(|t| t["request"] == format!("/v1/holds?id={id}"))
            .unwrap_or_else(|| panic!("placing {id} is traced"));
        assert_eq!(t["target"]["resource"], "/v1/holds");
        assert_eq!(t["response"]["status"], "201");
        let text = t["response"]["text"].as_str().expect("text");
        assert!(
            text.starts_with(&format!("legal hold {id} placed on ")),
            "{text}"
        );
        assert!(text.ends_with(&format!(": {reason}")), "{text}");
        let t = changes
            .iter()
            .find(|t| t["request"] == format!("/v1/holds/{id}"))
            .unwrap_or_else(|| panic!("releasing {id} is traced"));
        assert_eq!(t["target"]["resource"], format!("/v1/holds/{id}"));
        assert_eq!(t["response"]["status"], "200");
        assert!(
            t["response"]["text"].as_str().is_some_and(
                |s| s.starts_with(&format!("legal hold {id} released (placed by admin: "))
            ),
            "{t}"
        );
        assert_eq!(t["outcome"], "success");
        assert_eq!(t["actor"], json!({"id": "admin", "auth": "apikey"}));
    }
    let listings = found(
        &app,
        "/v1/traces?class=applicative&actor=admin&action=recherche&limit=1000",
    )
    .await;
    let listings: Vec<&Value> = listings
        .iter()
        .filter(|t| t["request"] == "/v1/holds")
        .collect();
    assert_eq!(listings.len(), 4, "one per listing");
    let n = placed.len();
    assert_eq!(
        listings[0]["response"]["text"],
        format!("{n} legal holds (0 active)")
    );
    assert_eq!(
        listings[1]["response"]["text"],
        format!("{n} legal holds ({n} active)")
    );
    assert_eq!(listings[3]["response"]["text"], "0 legal holds (0 active)");
}

/// Days, in seconds.
const DAY: i64 = 86_400;

#[tokio::test]
async fn purge_answers_fit_their_schemas() {
    let clock = Arc::new(ManualClock::starting_now());
    let (_dir, app, _, _) = app_at(&["mss", "technique", "applicative"], clock.clone());
    let doc = served_doc(&app).await;
    let purge = doc["paths"]["/v1/purge"]["post"].clone();
    let examples = purge["requestBody"]["content"]["application/json"]["examples"].clone();
    let (dry, real) = (
        examples["dry-run"]["value"].to_string(),
        examples["purge"]["value"].to_string(),
    );
    assert_eq!(
        (
            examples["dry-run"]["value"]["dry_run"].as_bool(),
            examples["purge"]["value"]["dry_run"].as_bool()
        ),
        (Some(true), Some(false))
    );
    let run = |body: Option<&str>| {
        let (app, body) = (app.clone(), body.map(str::to_owned));
        async move {
            let ct = body.as_ref().map(|_| "application/json");
            call(&app, "post", "/v1/purge", true, ct, body).await
        }
    };
    // The report of a served purge: it fits, one entry per log in the
    // policy's order, each counted back from `at` by its retention.
    let report = |a: Answer, dry_run: bool| {
        assert_eq!(
            a.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&a.body)
        );
        assert_answer(&doc, &purge, &a);
        let r = a.json();
        assert_eq!(r["dry_run"], dry_run);
        let at: jiff::Timestamp = r["at"].as_str().expect("at").parse().expect("at");
        assert_eq!(at.as_microsecond(), clock.now(), "the store's clock");
        let logs = r["logs"].as_array().expect("logs").clone();
        let names: Vec<&str> = logs
            .iter()
            .map(|l| l["log"].as_str().expect("log"))
            .collect();
        assert_eq!(names, ["mss", "technique", "applicative"]);
        for (l, retention) in logs.iter().zip(["6 months", "1 year", "20 years"]) {
            assert_eq!(l["retention"], retention);
            let cutoff: jiff::Timestamp = l["cutoff"]
                .as_str()
                .expect("cutoff")
                .parse()
                .expect("cutoff");
            let want = Retention::parse(retention)
                .expect("retention")
                .cutoff(clock.now());
            assert_eq!(cutoff.as_microsecond(), want, "{l}");
            assert_eq!(l["first"].is_null(), l["segments"] == 0, "{l}");
            assert_eq!(l["end"].is_null(), l["segments"] == 0, "{l}");
        }
        logs
    };
    let nothing = |l: &Value| {
        l["segments"] == 0
            && l["purged"] == 0
            && l["held"] == 0
            && l["bytes"] == 0
            && l["first"].is_null()
            && l["end"].is_null()
    };
    let purges = || found(&app, "/v1/traces?class=technique&action=purge&limit=1000");
    let mss = || found(&app, "/v1/traces?class=mss&limit=1000");

    // `mss`: 30 traces of one author, then 20 of another; a legal hold on
    // the first author's `mss` traces.
    let mut other = design_trace();
    other["actor"]["id"] = json!("810009999999");
    let batch = [vec![design_trace(); 30], vec![other; 20]].concat();
    assert_eq!(
        post_json(&app, &Value::Array(batch)).await.status,
        StatusCode::CREATED
    );
    let hold = place_hold(
        &app,
        json!({"reason": "litigation", "actor": "810001234567", "class": "mss"}),
    )
    .await;

    // Nothing is past retention yet: neither a dry run nor a purge takes
    // anything, and a purge that takes nothing is not traced.
    for l in report(run(Some(&dry)).await, true) {
        assert!(nothing(&l), "{l}");
    }
    for l in report(run(None).await, false) {
        assert!(nothing(&l), "{l}");
    }
    assert_eq!(purges().await.len(), 0);

    // 200 days later the `mss` traces are past their 6 months.
    clock.advance_secs(200 * DAY);

    // Documented problems: nothing is traced or destroyed.
    for body in [
        "{",
        "[]",
        "null",
        "true",
        r#"{"dry_run": "yes"}"#,
        r#"{"dry_run": 1}"#,
        r#"{"dry_run": true, "log": "mss"}"#,
    ] {
        let a = run(Some(body)).await;
        assert_eq!(
            (a.status, a.content_type.as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, "application/problem+json"),
            "{body}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["type"], "urn:registre:problem:invalid-purge");
        assert_answer(&doc, &purge, &a);
    }
    assert_eq!(mss().await.len(), 50);

    // A hold with no filter keeps everything.
    let all = place_hold(&app, json!({"reason": "keep everything"})).await;
    let m = &report(run(Some(&dry)).await, true)[0];
    assert_eq!((&m["purged"], &m["held"]), (&json!(0), &json!(50)), "{m}");
    let a = send(&app, "delete", &format!("/v1/holds/{all}"), None).await;
    assert_eq!(a.status, StatusCode::OK);

    // A dry run says what would go and what the hold keeps; it destroys
    // nothing.
    let planned = report(run(Some(&dry)).await, true);
    let m = &planned[0];
    assert_eq!(
        (
            &m["segments"],
            &m["first"],
            &m["end"],
            &m["purged"],
            &m["held"]
        ),
        (&json!(1), &json!(0), &json!(50), &json!(20), &json!(30)),
        "{m}"
    );
    assert!(m["bytes"].as_u64().is_some_and(|b| b > 0), "{m}");
    assert!(nothing(&planned[1]) && nothing(&planned[2]), "{planned:?}");
    assert_eq!(mss().await.len(), 50);
    assert_eq!(purges().await.len(), 0);

    // The purge does it (no body: a real purge).
    let done = report(run(None).await, false);
    assert_eq!(done, planned, "the purge is the plan");
    let kept = mss().await;
    assert_eq!(kept.len(), 30, "the held traces stay");
    assert!(kept.iter().all(|t| t["actor"]["id"] == "810001234567"));
    // Traced, in `technique`, before it destroyed.
    let traced = purges().await;
    assert_eq!(traced.len(), 1, "{traced:#?}");
    let t = &traced[0];
    assert_eq!(t["class"], "technique");
    assert_eq!(t["actor"], json!({"id": "admin", "auth": "apikey"}));
    assert_eq!(t["request"], "/v1/purge?log=mss&range=0..50");
    assert_eq!(t["target"]["resource"], "/v1/purge");
    assert_eq!(t["outcome"], "success");
    assert_eq!(
        t["response"],
        json!({
            "status": "200",
            "text": format!(
                "on demand: log mss indexes 0..50: 20 traces past retention (6 months, \
                 received before {}) destroyed with their segments' keys; 30 kept by legal holds",
                m["cutoff"].as_str().expect("cutoff")
            )
        })
    );

    // Released, the hold keeps nothing: the next purge takes its traces.
    let a = send(&app, "delete", &format!("/v1/holds/{hold}"), None).await;
    assert_eq!(a.status, StatusCode::OK);
    let done = report(run(Some(&real)).await, false);
    let m = &done[0];
    assert_eq!(
        (
            &m["segments"],
            &m["first"],
            &m["end"],
            &m["purged"],
            &m["held"]
        ),
        (&json!(1), &json!(0), &json!(30), &json!(30), &json!(0)),
        "{m}"
    );
    assert!(nothing(&done[1]) && nothing(&done[2]), "{done:?}");
    assert_eq!(mss().await.len(), 0);
    let traced = purges().await;
    assert_eq!(traced.len(), 2);
    assert_eq!(traced[0]["request"], "/v1/purge?log=mss&range=0..30");
    // Nothing is left to take.
    for l in report(run(Some(&real)).await, false) {
        assert!(nothing(&l), "{l}");
    }
    assert_eq!(purges().await.len(), 2);

    // Each dry run is an `applicative` trace, with its count.
    let dry_runs: Vec<Value> = found(
        &app,
        "/v1/traces?class=applicative&actor=admin&action=recherche&limit=1000",
    )
    .await
    .into_iter()
    .filter(|t| t["target"]["resource"] == "/v1/purge")
    .collect();
    let texts: Vec<&str> = dry_runs
        .iter()
        .map(|t| {
            assert_eq!(t["request"], "/v1/purge?dry_run=true");
            t["response"]["text"].as_str().expect("text")
        })
        .collect();
    assert_eq!(
        texts,
        [
            "purge dry run: 20 traces would go",
            "purge dry run: 0 traces would go",
            "purge dry run: 0 traces would go"
        ]
    );
}

#[tokio::test]
async fn purge_cannot_happen_untraced() {
    // No `technique` log: a purge that would take anything cannot be
    // traced, so it does not happen.
    let clock = Arc::new(ManualClock::starting_now());
    let (_dir, app, _, _) = app_at(&["mss", "applicative"], clock.clone());
    let doc = served_doc(&app).await;
    let purge = doc["paths"]["/v1/purge"]["post"].clone();
    assert_eq!(
        post_json(&app, &Value::Array(vec![design_trace(); 10]))
            .await
            .status,
        StatusCode::CREATED
    );
    clock.advance_secs(200 * DAY);
    // A dry run is traced in `applicative`: served.
    let a = send(&app, "post", "/v1/purge", Some(r#"{"dry_run": true}"#)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &purge, &a);
    assert_eq!(a.json()["logs"][0]["purged"], 10);
    for body in [None, Some(r#"{"dry_run": false}"#)] {
        let a = send(&app, "post", "/v1/purge", body).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
        assert_eq!(a.json()["type"], "urn:registre:problem:unavailable");
        assert_answer(&doc, &purge, &a);
    }
    assert_eq!(found(&app, "/v1/traces?class=mss").await.len(), 10);
}

#[tokio::test]
async fn request_limits_are_the_servers() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    let body = &doc["paths"]["/v1/traces"]["post"]["requestBody"];
    assert_eq!(body["x-max-body-bytes"], json!(MAX_BODY_BYTES));
    let one_of = &body["content"]["application/json"]["schema"]["oneOf"];
    assert_eq!(one_of[0]["$ref"], "#/components/schemas/Trace");
    assert_eq!(one_of[1]["items"]["$ref"], "#/components/schemas/Trace");
    assert_eq!(one_of[1]["minItems"], 1);
    assert_eq!(one_of[1]["maxItems"], json!(MAX_BATCH));
    assert_eq!(
        schema(&doc, "Trace")["x-max-trace-bytes"],
        json!(Limits::default().max_trace_bytes)
    );
}

#[tokio::test]
async fn trace_schema_is_the_parsers() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;
    let trace = schema(&doc, "Trace");
    let mut codes_seen = BTreeSet::new();
    let mut seen = |e: TraceError| {
        codes_seen.insert(e.code());
        e
    };

    // Examples: valid for the schema and for the parser.
    let mut examples: Vec<Value> = trace["examples"].as_array().expect("examples").clone();
    examples.push(design_trace());
    let body_examples = doc["paths"]["/v1/traces"]["post"]["requestBody"]["content"]
        ["application/json"]["examples"]
        .as_object()
        .expect("examples");
    for ex in body_examples.values() {
        match &ex["value"] {
            Value::Array(a) => examples.extend(a.iter().cloned()),
            v => examples.push(v.clone()),
        }
    }
    for ex in &examples {
        check(&doc, trace, ex, false, "trace").expect("example fits the schema");
        parse(ex).unwrap_or_else(|e| panic!("example refused: {e}\n{ex}"));
    }

    // A trace with every property, and one with only the required ones.
    let all = full(&doc, trace);
    check(&doc, trace, &all, false, "trace").expect("full trace fits the schema");
    let parsed = parse_trace(all.to_string().as_bytes(), &Limits::default())
        .unwrap_or_else(|e| panic!("full trace refused: {e}\n{all}"));
    assert_eq!(
        serde_json::to_value(&parsed).expect("serialise"),
        all,
        "every property is kept as sent"
    );
    let min = minimal(&doc, trace);
    check(&doc, trace, &min, false, "trace").expect("minimal trace fits the schema");
    parse(&min).unwrap_or_else(|e| panic!("minimal trace refused: {e}\n{min}"));

    // Each property, alone on top of the required ones, is accepted.
    let mut objs = Vec::new();
    objects(&doc, trace, "", &mut objs);
    for (ptr, obj) in &objs {
        for k in props(obj).keys() {
            let mut v = min.clone();
            let mut at = String::new();
            for seg in ptr.split('/').skip(1) {
                let parent_ptr = at.clone();
                at = format!("{at}/{seg}");
                if v.pointer(&at).is_none() {
                    let (_, sub) = objs.iter().find(|(p, _)| *p == at).expect("sub-object");
                    v.pointer_mut(&parent_ptr).expect("parent")[seg] = minimal(&doc, sub);
                }
            }
            let value = all.pointer(&format!("{ptr}/{k}")).cloned().expect("value");
            v.pointer_mut(ptr).expect("object")[k] = value;
            parse(&v).unwrap_or_else(|e| {
                panic!("`{}` refused: {e}\n{v}", field_path(&format!("{ptr}/{k}")))
            });
        }
    }

    // `required` is exactly what the parser reports missing; every object is
    // closed; nothing else is needed.
    for (ptr, obj) in &objs {
        assert_eq!(
            obj["additionalProperties"],
            false,
            "`{}` must be closed",
            field_path(ptr)
        );
        let mut missing = BTreeSet::new();
        for k in props(obj).keys() {
            let mut v = all.clone();
            v.pointer_mut(ptr)
                .and_then(Value::as_object_mut)
                .expect("object")
                .remove(k);
            let path = field_path(&format!("{ptr}/{k}"));
            match parse(&v) {
                Ok(()) => {}
                Err(e) => {
                    let e = seen(e);
                    assert_eq!(
                        (e.code(), e.path.as_str()),
                        ("missing_field", path.as_str()),
                        "removing `{path}`"
                    );
                    missing.insert(k.clone());
                }
            }
        }
        assert_eq!(
            names(&obj["required"]),
            missing,
            "required of `{}`",
            field_path(ptr)
        );
        let mut v = all.clone();
        v.pointer_mut(ptr).expect("object")["zz_extra"] = json!(1);
        let e = seen(refused(&v));
        assert_eq!(e.code(), "unknown_field");
        assert_eq!(e.path, field_path(&format!("{ptr}/zz_extra")));
    }

    // Limits: lengths, item counts and integer bounds are the parser's.
    let mut ls = Vec::new();
    leaves(&doc, trace, "", &mut ls);
    for (ptr, s) in &ls {
        let path = field_path(ptr);
        let plain = ["pattern", "format", "enum", "anyOf", "const"]
            .iter()
            .all(|k| s.get(k).is_none());
        if let (Some(max), true) = (s.get("maxLength").and_then(Value::as_u64), plain) {
            let mut v = all.clone();
            *v.pointer_mut(ptr).expect("leaf") = json!("a".repeat(max as usize));
            parse(&v).unwrap_or_else(|e| panic!("`{path}` of {max} bytes refused: {e}"));
            *v.pointer_mut(ptr).expect("leaf") = json!("a".repeat(max as usize + 1));
            let e = seen(refused(&v));
            assert_eq!((e.code(), e.path.as_str()), ("too_long", path.as_str()));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            // Short items, so that the whole trace stays within its bound.
            let short = json!("a");
            let mut v = all.clone();
            *v.pointer_mut(ptr).expect("leaf") = Value::Array(vec![short.clone(); max as usize]);
            parse(&v).unwrap_or_else(|e| panic!("`{path}` of {max} items refused: {e}"));
            v.pointer_mut(ptr)
                .and_then(Value::as_array_mut)
                .expect("array")
                .push(short);
            let e = seen(refused(&v));
            assert_eq!((e.code(), e.path.as_str()), ("too_many", path.as_str()));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_u64) {
            let mut v = all.clone();
            *v.pointer_mut(ptr).expect("leaf") = json!(max);
            parse(&v).unwrap_or_else(|e| panic!("`{path}` = {max} refused: {e}"));
            *v.pointer_mut(ptr).expect("leaf") = json!(max + 1);
            let e = seen(refused(&v));
            assert_eq!(e.path, path);
        }
    }
    assert_eq!(
        schema(&doc, "Target")["properties"]["recipients"]["maxItems"],
        json!(Limits::default().max_recipients)
    );

    // Server fields are refused; they are exactly what StoredTrace adds.
    let stored = schema(&doc, "StoredTrace");
    let added: BTreeSet<String> = keys(props(stored))
        .difference(&keys(props(trace)))
        .cloned()
        .collect();
    assert_eq!(
        added,
        BTreeSet::from(["id", "index", "log", "original", "received_at", "salt"].map(String::from))
    );
    for f in &added {
        let mut v = all.clone();
        v[f] = stored["examples"][0][f].clone();
        let e = seen(refused(&v));
        assert_eq!((e.code(), e.path.as_str()), ("server_field", f.as_str()));
    }
    check(&doc, stored, &stored["examples"][0], true, "stored").expect("StoredTrace example");

    // The content guard and the request rule the descriptions promise.
    let mut v = all.clone();
    v["target"]["body"] = json!("x");
    assert_eq!(seen(refused(&v)).code(), "content_field");
    let mut v = all.clone();
    v["extra"] = json!({"piece_jointe": "x"});
    assert_eq!(seen(refused(&v)).code(), "content_field");
    let mut v = all.clone();
    v["request"] = json!("A1 APPEND INBOX {310}");
    assert_eq!(seen(refused(&v)).code(), "literal_in_request");
    v["request"] = json!("A1 APPEND INBOX {310 bytes}");
    parse(&v).expect("{N bytes} is allowed");
    let mut v = all.clone();
    v["occurred_at"] = json!("2026-11-28T15:42:07");
    assert_eq!(seen(refused(&v)).code(), "invalid_value");
    let desc = trace["description"].as_str().expect("description");
    for word in [
        "body",
        "subject",
        "attachment",
        "content_field",
        "server_field",
    ] {
        assert!(desc.contains(word), "Trace description lacks {word}");
    }

    // Actions: the enum is the vocabulary; `x-…` extensions pass.
    let action = schema(&doc, "Action");
    assert_eq!(
        action["anyOf"][0]["enum"],
        json!(ACTIONS),
        "Action enum == registre_model::ACTIONS"
    );
    assert_eq!(action["anyOf"][1]["pattern"], "^x-[a-z0-9-]{1,40}$");
    let mut v = all.clone();
    v["action"] = json!("x-impression");
    parse(&v).expect("extension action");
    v["action"] = json!("delete");
    assert_eq!(seen(refused(&v)).code(), "unknown_action");

    // Every rule code met here is documented.
    let documented = names(&schema(&doc, "TraceProblem")["properties"]["code"]["enum"]);
    for c in &codes_seen {
        assert!(documented.contains(*c), "rule code {c} is not documented");
    }
}

#[tokio::test]
async fn integrity_answers_fit_their_schemas() {
    let (_dir, app, note40) = seeded_app().await;
    let doc = served_doc(&app).await;
    let op = |path: &str| doc["paths"][path]["get"].clone();
    let (logs_op, inclusion_op, consistency_op) = (
        op("/v1/logs"),
        op("/v1/proofs/inclusion"),
        op("/v1/proofs/consistency"),
    );
    let (checkpoint_op, tile_op, search_op) = (
        op("/logs/{log}/checkpoint"),
        op("/logs/{log}/tile/{tilePath}"),
        op("/v1/traces"),
    );
    assert_eq!(sha256(b"abc"), {
        let h = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        Hash::try_from(unhex(h).as_slice()).expect("32 bytes")
    });

    // The logs and the verifier key.
    let a = get(&app, "/v1/logs", true).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &logs_op, &a);
    let logs = a.json();
    let vkey = logs["verifier_key"]
        .as_str()
        .expect("verifier_key")
        .to_owned();
    Verifier::parse(&vkey).expect("verifier key parses");
    let names: Vec<&str> = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .map(|l| l["log"].as_str().expect("log"))
        .collect();
    assert_eq!(names, ["applicative", "mss", "technique"], "sorted by name");
    for l in logs["logs"].as_array().expect("logs") {
        let name = l["log"].as_str().expect("log");
        assert_eq!(l["verifier_key"], vkey.as_str());
        assert_eq!(l["origin"], format!("localhost/registre/{name}"));
        assert_eq!(l["checkpoint_url"], format!("/logs/{name}/checkpoint"));
    }
    assert_eq!(logs["logs"][1]["size"], SEEDED_MSS);

    // The size-40 checkpoint (issued by a proof while seeding).
    let cp40 = open(&note40, &vkey);
    assert_eq!((cp40.origin(), cp40.size()), ("localhost/registre/mss", 40));

    // A proof of the newest trace issues the checkpoint of the whole log;
    // the public checkpoint route then serves it.
    let a = get(&app, "/v1/proofs/inclusion?log=mss&index=299", true).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &inclusion_op, &a);
    let latest = a.json()["checkpoint"]
        .as_str()
        .expect("checkpoint")
        .to_owned();
    let cp = open(&latest, &vkey);
    assert_eq!(cp.size(), SEEDED_MSS);
    let a = get(&app, "/logs/mss/checkpoint", false).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    assert_answer(&doc, &checkpoint_op, &a);
    assert_eq!(String::from_utf8(a.body).expect("UTF-8"), latest);
    let a = get(&app, "/v1/logs", true).await;
    assert_eq!(a.json()["logs"][1]["checkpoint_size"], SEEDED_MSS);
    // An empty log gets its size-0 checkpoint on demand.
    let a = get(&app, "/logs/technique/checkpoint", false).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_answer(&doc, &checkpoint_op, &a);
    let empty = open(std::str::from_utf8(&a.body).expect("UTF-8"), &vkey);
    assert_eq!((empty.size(), *empty.root()), (0, EMPTY_ROOT));

    // Tiles: every documented example, then the bundles and tiles of the
    // whole log, whose commitments and leaves are the documented ones.
    let tile_param = &tile_op["parameters"][1];
    assert_eq!(tile_param["name"], "tilePath");
    let mut tile = std::collections::BTreeMap::new();
    for ex in param_examples(tile_param) {
        let path = ex.as_str().expect("example");
        let parsed = parse_path(&format!("tile/{path}"))
            .unwrap_or_else(|e| panic!("example {path} is not a tile path: {e}"));
        assert_eq!(parsed.path(), format!("tile/{path}"), "canonical");
        let a = get(&app, &format!("/logs/mss/tile/{path}"), false).await;
        assert_eq!(a.status, StatusCode::OK, "tile {path}");
        assert_eq!(a.content_type, "application/octet-stream");
        assert_answer(&doc, &tile_op, &a);
        // Escaped slashes, as generated clients send a path parameter.
        let escaped = path.replace('/', "%2F");
        let b = get(&app, &format!("/logs/mss/tile/{escaped}"), false).await;
        assert_eq!(
            (b.status, &b.body),
            (StatusCode::OK, &a.body),
            "tile {escaped}"
        );
        tile.insert(path.to_owned(), a.body);
    }
    let mut commitments: Vec<Hash> = Vec::new();
    for (path, n) in [("entries/000", 256), ("entries/001.p/44", 44)] {
        let bundle = &tile[path];
        assert_eq!(bundle.len(), 34 * n, "{path}");
        for e in bundle.chunks_exact(34) {
            assert_eq!(e[..2], [0, 32], "{path}: u16 big-endian length 32");
            commitments.push(Hash::try_from(&e[2..]).expect("32 bytes"));
        }
    }
    let leaves: Vec<Hash> = commitments.iter().map(leaf_of).collect();
    let served_leaves: Vec<u8> = [tile["0/000"].as_slice(), tile["0/001.p/44"].as_slice()].concat();
    assert_eq!(
        served_leaves,
        leaves.concat(),
        "level-0 tiles hold the leaf hashes"
    );
    let mut tree = MemoryTree::new();
    for l in &leaves[..256] {
        tree.push(*l);
    }
    assert_eq!(
        tile["1/000.p/1"],
        tree.root(),
        "level-1 tile: root of 256 leaves"
    );
    for l in &leaves[256..] {
        tree.push(*l);
    }
    assert_eq!((tree.size(), tree.root()), (cp.size(), *cp.root()));
    assert_eq!(tree.root_at(40), Some(*cp40.root()));

    // Search with proofs: each trace's documented commitment is its entry,
    // and its proof leads to the page's signed checkpoint.
    for uri in [
        "/v1/traces?proofs=true&limit=1000",
        "/v1/traces?proofs=1&class=mss&limit=3",
        "/v1/traces?proofs=true&class=applicative",
    ] {
        let a = get(&app, uri, true).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_answer(&doc, &search_op, &a);
        let page = a.json();
        let checkpoints = page["checkpoints"].as_object().expect("checkpoints");
        let traces = page["traces"].as_array().expect("traces");
        let logs: BTreeSet<String> = traces
            .iter()
            .map(|t| t["log"].as_str().expect("log").to_owned())
            .collect();
        assert_eq!(keys(checkpoints), logs, "{uri}: one checkpoint per log");
        for t in traces {
            let log = t["log"].as_str().expect("log");
            let cp = open(checkpoints[log].as_str().expect("note"), &vkey);
            let index = t["index"].as_u64().expect("index");
            let c = commitment_of(t);
            if log == "mss" {
                assert_eq!(c, commitments[index as usize], "mss/{index}: commitment");
            }
            assert_eq!(t["proof"]["size"], cp.size());
            merkle::verify_inclusion(
                &leaf_of(&c),
                index,
                cp.size(),
                &b64_hashes(&t["proof"]["hashes"]),
                cp.root(),
            )
            .unwrap_or_else(|e| panic!("{log}/{index}: {e}"));
        }
    }
    for uri in ["/v1/traces?limit=2", "/v1/traces?limit=2&proofs=false"] {
        let page = get(&app, uri, true).await.json();
        assert!(page.get("checkpoints").is_none(), "{uri}");
        assert!(page["traces"][0].get("proof").is_none(), "{uri}");
    }

    // Inclusion proofs, against the latest checkpoint or a given size.
    for (uri, size, root) in [
        (
            "/v1/proofs/inclusion?log=mss&index=39",
            SEEDED_MSS,
            *cp.root(),
        ),
        (
            "/v1/proofs/inclusion?index=5&size=40&log=mss",
            40,
            *cp40.root(),
        ),
        (
            "/v1/proofs/inclusion?log=mss&index=299&size=300",
            300,
            *cp.root(),
        ),
    ] {
        let a = get(&app, uri, true).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_answer(&doc, &inclusion_op, &a);
        let p = a.json();
        assert_eq!(p["size"], size, "{uri}");
        assert_eq!(p["log"], "mss");
        assert_eq!(
            p.get("checkpoint").is_some(),
            !uri.contains("size="),
            "{uri}"
        );
        let index = p["index"].as_u64().expect("index");
        merkle::verify_inclusion(
            &leaves[index as usize],
            index,
            size,
            &b64_hashes(&p["hashes"]),
            &root,
        )
        .unwrap_or_else(|e| panic!("{uri}: {e}"));
    }

    // Consistency proofs.
    for (from, to) in [(40, 300), (1, 300), (300, 300), (40, 40)] {
        let uri = format!("/v1/proofs/consistency?log=mss&from={from}&to={to}");
        let a = get(&app, &uri, true).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_answer(&doc, &consistency_op, &a);
        let p = a.json();
        assert_eq!(
            (p["from"].clone(), p["to"].clone()),
            (json!(from), json!(to))
        );
        let hashes = b64_hashes(&p["hashes"]);
        if from == to {
            assert!(hashes.is_empty());
        } else {
            let old = tree.root_at(from).expect("old root");
            let new = tree.root_at(to).expect("new root");
            merkle::verify_consistency(from, to, &old, &new, &hashes)
                .unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
    }

    // Documented problems; the /v1 routes are called with the token.
    // `<status> <problem type> <uri>`
    let cases = [
        "400 missing-parameter /v1/proofs/inclusion?log=mss",
        "400 missing-parameter /v1/proofs/inclusion?index=1",
        "400 bad-parameter /v1/proofs/inclusion?log=mss&index=x",
        "400 bad-parameter /v1/proofs/inclusion?log=mss&index=-1",
        "400 unknown-parameter /v1/proofs/inclusion?log=mss&index=1&zz=1",
        "400 repeated-parameter /v1/proofs/inclusion?log=mss&log=mss&index=1",
        "400 out-of-range /v1/proofs/inclusion?log=mss&index=5&size=5",
        "400 out-of-range /v1/proofs/inclusion?log=mss&index=1&size=301",
        "404 unknown-log /v1/proofs/inclusion?log=nope&index=0",
        "404 unknown-log /v1/proofs/inclusion?log=nope&index=0&size=1",
        "404 no-such-index /v1/proofs/inclusion?log=mss&index=300",
        "404 no-such-index /v1/proofs/inclusion?log=technique&index=0",
        "400 missing-parameter /v1/proofs/consistency?log=mss&from=1",
        "400 bad-parameter /v1/proofs/consistency?log=mss&from=1&to=x",
        "400 unknown-parameter /v1/proofs/consistency?log=mss&from=1&to=2&size=3",
        "400 repeated-parameter /v1/proofs/consistency?log=mss&from=1&from=1&to=2",
        "400 out-of-range /v1/proofs/consistency?log=mss&from=0&to=3",
        "400 out-of-range /v1/proofs/consistency?log=mss&from=5&to=3",
        "400 out-of-range /v1/proofs/consistency?log=mss&from=1&to=301",
        "404 unknown-log /v1/proofs/consistency?log=nope&from=1&to=1",
        "404 unknown-log /logs/nope/checkpoint",
        "404 bad-tile-path /logs/mss/tile/0/0",
        "404 bad-tile-path /logs/mss/tile/0/x000/001",
        "404 bad-tile-path /logs/mss/tile/64/000",
        "404 bad-tile-path /logs/mss/tile/0/000.p/256",
        "404 bad-tile-path /logs/mss/tile/entries/000/",
        "404 bad-tile-path /logs/mss/tile/data/000",
        "404 no-such-tile /logs/mss/tile/0/002",
        "404 no-such-tile /logs/mss/tile/0/001.p/45",
        "404 no-such-tile /logs/mss/tile/0/x001/000",
        "404 no-such-tile /logs/mss/tile/entries/001",
        "404 no-such-tile /logs/mss/tile/1/000",
        "404 no-such-tile /logs/technique/tile/entries/000.p/1",
        "404 unknown-log /logs/nope/tile/0/000",
        "400 bad-parameter /v1/traces?proofs=maybe",
        "400 repeated-parameter /v1/traces?proofs=true&proofs=true",
    ];
    for case in cases {
        let mut parts = case.splitn(3, ' ');
        let (Some(status), Some(kind), Some(uri)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("case {case}");
        };
        let status: u16 = status.parse().expect("status");
        let op = match uri.split('?').next().unwrap_or(uri) {
            "/v1/proofs/inclusion" => &inclusion_op,
            "/v1/proofs/consistency" => &consistency_op,
            "/v1/traces" => &search_op,
            p if p.ends_with("/checkpoint") => &checkpoint_op,
            p if p.contains("/tile/") => &tile_op,
            p => panic!("no operation for {p}"),
        };
        let a = get(&app, uri, uri.starts_with("/v1/")).await;
        assert_eq!(
            (a.status.as_u16(), a.content_type.as_str()),
            (status, "application/problem+json"),
            "{uri}: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(
            a.json()["type"],
            format!("urn:registre:problem:{kind}"),
            "{uri}"
        );
        assert_answer(&doc, op, &a);
    }
}

#[tokio::test]
async fn integrity_examples_verify() {
    let (_dir, app) = app();
    let doc = served_doc(&app).await;

    // Every example of a component schema fits it, as a server answer.
    for (name, s) in doc["components"]["schemas"].as_object().expect("schemas") {
        for (i, ex) in s["examples"].as_array().into_iter().flatten().enumerate() {
            let strict = name != "Trace";
            check(&doc, s, ex, strict, &format!("{name}.examples[{i}]"))
                .unwrap_or_else(|e| panic!("example does not fit: {e}"));
        }
    }

    // The examples tell one story: the stored trace of the examples is leaf
    // 41 of `mss`, proven in the example checkpoint, signed by the example
    // key; the consistency example links the two example checkpoints.
    let ex = |name: &str| schema(&doc, name)["examples"].clone();
    let vkey = ex("VerifierKey")[0].as_str().expect("vkey").to_owned();
    let notes = ex("CheckpointNote");
    let cp = open(notes[0].as_str().expect("note"), &vkey);
    let cp40 = open(notes[1].as_str().expect("note"), &vkey);
    assert_eq!(
        (cp.origin(), cp.size(), cp40.origin(), cp40.size()),
        (
            "hopital-nord.example/registre/mss",
            42,
            "hopital-nord.example/registre/mss",
            40
        )
    );
    let stored = &ex("StoredTrace")[0];
    let leaf = leaf_of(&commitment_of(stored));
    let index = stored["index"].as_u64().expect("index");
    let inclusion = &ex("InclusionProof")[0];
    assert_eq!(
        (
            &inclusion["log"],
            &inclusion["index"],
            &inclusion["checkpoint"]
        ),
        (&stored["log"], &stored["index"], &notes[0])
    );
    let hit = &ex("SearchHit")[0];
    let page = &ex("Page")[1];
    assert_eq!(&page["traces"][0], hit);
    assert_eq!(page["checkpoints"]["mss"], notes[0]);
    for proof in [inclusion, &hit["proof"], &ex("TraceProof")[0]] {
        assert_eq!(proof["size"], cp.size());
        merkle::verify_inclusion(
            &leaf,
            index,
            cp.size(),
            &b64_hashes(&proof["hashes"]),
            cp.root(),
        )
        .expect("example inclusion proof");
    }
    let consistency = &ex("ConsistencyProof")[0];
    assert_eq!(
        (&consistency["from"], &consistency["to"]),
        (&json!(40), &json!(42))
    );
    merkle::verify_consistency(
        40,
        42,
        cp40.root(),
        cp.root(),
        &b64_hashes(&consistency["hashes"]),
    )
    .expect("example consistency proof");
    let logs = &ex("Logs")[0];
    assert_eq!(logs["verifier_key"], vkey.as_str());
    for l in logs["logs"].as_array().expect("logs") {
        assert_eq!(l["verifier_key"], vkey.as_str());
        let name = l["log"].as_str().expect("log");
        assert_eq!(l["origin"], format!("hopital-nord.example/registre/{name}"));
        assert_eq!(l["checkpoint_url"], format!("/logs/{name}/checkpoint"));
    }
    b64_hash(&ex("Hash")[0]);

    // The documented operation examples are the schemas' examples.
    let checkpoint = &doc["paths"]["/logs/{log}/checkpoint"]["get"]["responses"]["200"];
    assert_eq!(checkpoint["content"]["text/plain"]["example"], notes[0]);
}
