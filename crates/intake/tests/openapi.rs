//! Keeps `openapi.json` true: the document the router serves describes
//! exactly the routes it serves, its `Trace` schema is the one
//! `registre_model::parse_trace` enforces (fields, required fields, closed
//! objects, limits), and real answers fit the documented response schemas.
//!
//! There is no JSON Schema crate here: `check` below is a small structural
//! validator (types, `required`, closed objects, `enum`/`const`, lengths,
//! bounds, `$ref`/`allOf`/`anyOf`/`oneOf`; not `pattern` nor `format`).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use registre_intake::http::{MAX_BATCH, MAX_BODY_BYTES, OPENAPI_JSON};
use registre_intake::{AppState, Metrics, router};
use registre_model::{ACTIONS, ClassName, Limits, TraceError, parse_trace};
use registre_store::{EmbeddedOptions, EmbeddedStore};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const TOKEN: &str = "openapi-test-token";

/// Every route the router serves, as (method, path).
const SERVED: &[(&str, &str)] = &[
    ("post", "/v1/traces"),
    ("get", "/v1/traces"),
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

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
    let dir = tempfile::tempdir().expect("tempdir");
    let classes: Vec<ClassName> = ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect();
    let store =
        EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes.clone())).expect("open store");
    let state = Arc::new(AppState {
        store: Arc::new(store),
        classes,
        limits: Limits::default(),
        token: TOKEN.into(),
        metrics: Arc::new(Metrics::default()),
    });
    (dir, router(state))
}

struct Answer {
    status: StatusCode,
    content_type: String,
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
    let mut req = Request::builder()
        .method(method.to_ascii_uppercase().as_str())
        .uri(uri);
    if token {
        req = req.header("authorization", format!("Bearer {TOKEN}"));
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
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Answer {
        status,
        content_type,
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
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check(doc, sub, v, strict, at)?;
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
        let closed = s.get("additionalProperties") == Some(&Value::Bool(false))
            || (strict && p.is_some() && s.get("type") == Some(&json!("object")));
        for (k, x) in obj {
            match p.and_then(|p| p.get(k)) {
                Some(ps) => check(doc, ps, x, strict, &format!("{at}.{k}"))?,
                None if closed => return fail(format!("undocumented property `{k}`")),
                None => {}
            }
        }
    }
    Ok(())
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
    let (_dir, app) = app();
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
        let guarded = path.starts_with("/v1/");
        assert_eq!(
            op.get("security"),
            guarded.then(|| json!([{"bearerAuth": []}])).as_ref(),
            "{method} {path}: bearer security on /v1 routes only"
        );
        let body = (method == "post").then(|| {
            op["requestBody"]["content"]["application/json"]["examples"]["design"]["value"]
                .to_string()
        });
        let ct = body.as_ref().map(|_| "application/json");
        let a = call(&app, method, path, true, ct, body).await;
        assert!(
            a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} answered {}",
            a.status
        );
        assert!(
            a.status.is_success(),
            "{method} {path} answered {}",
            a.status
        );
        assert_answer(&doc, op, &a);
        if guarded {
            let a = call(&app, method, path, false, None, None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_answer(&doc, op, &a);
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
        BTreeSet::from(["id", "index", "log", "received_at", "salt"].map(String::from))
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
