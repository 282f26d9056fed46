//! Bad input at the HTTP edge gets a clear 4xx with a problem body, stores
//! nothing, never echoes content, and never stops the server serving others.
//! A storage failure answers 503, never 201.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use registre_intake::{AppState, Metrics, router};
use registre_model::{ClassName, Limits};
use registre_store::vfs::FaultyVfs;
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};
use tower::ServiceExt;

const TOKEN: &str = "test-token";
const CANARY: &str = "CANARY-c0ntent-8d1e";

fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect()
}

fn state_on(store: Arc<dyn Store>) -> Arc<AppState> {
    Arc::new(AppState {
        store,
        classes: classes(),
        limits: Limits::default(),
        auth: registre_intake::http::auth::Authenticator::admin_token(TOKEN),
        metrics: Arc::new(Metrics::default()),
        policy: registre_intake::empty_policy(),
    })
}

fn memory_state() -> (Arc<AppState>, FaultyVfs) {
    let vfs = FaultyVfs::new();
    let store = EmbeddedStore::open_with_vfs(
        std::path::Path::new("/mem"),
        EmbeddedOptions::new(classes()),
        Arc::new(vfs.clone()),
    )
    .expect("open");
    (state_on(Arc::new(store)), vfs)
}

fn good(tag: &str) -> serde_json::Value {
    serde_json::json!({
        "class": "mss",
        "occurred_at": "2026-11-28T15:42:07.123+01:00",
        "actor": {"id": "810001234567", "id_type": "rpps", "auth": "psc"},
        "action": "suppression",
        "target": {"mailbox": "dr.martin@hopital.mssante.fr", "folder": "INBOX", "uids": tag},
        "request": "UID STORE 42 +FLAGS (\\Deleted)",
        "response": {"status": "OK", "text": "Store completed"},
        "outcome": "success"
    })
}

async fn post(st: &Arc<AppState>, body: impl Into<Body>) -> (StatusCode, String, String) {
    let req = Request::post("/v1/traces")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(body.into())
        .expect("request");
    let resp = router(st.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, ct, String::from_utf8_lossy(&bytes).into_owned())
}

async fn stored(st: &Arc<AppState>) -> usize {
    st.store
        .search(Query {
            limit: 10_000,
            ..Query::default()
        })
        .await
        .expect("search")
        .traces
        .len()
}

fn problem(body: &str) -> serde_json::Value {
    serde_json::from_str(body).expect("problem body is JSON")
}

#[tokio::test]
async fn content_fields_refused_everywhere_and_nothing_stored() {
    let (st, _) = memory_state();
    type Place = Box<dyn Fn(&mut serde_json::Value)>;
    let placements: Vec<(&str, Place)> = vec![
        ("subject", Box::new(|v| v["subject"] = CANARY.into())),
        ("body", Box::new(|v| v["body"] = CANARY.into())),
        (
            "target.subject",
            Box::new(|v| v["target"]["subject"] = CANARY.into()),
        ),
        (
            "target.objet",
            Box::new(|v| v["target"]["objet"] = CANARY.into()),
        ),
        (
            "actor.content",
            Box::new(|v| v["actor"]["content"] = CANARY.into()),
        ),
        (
            "response.body",
            Box::new(|v| v["response"]["body"] = CANARY.into()),
        ),
        (
            "source.attachment",
            Box::new(|v| v["source"] = serde_json::json!({"attachment": CANARY})),
        ),
        (
            "target.piece_jointe",
            Box::new(|v| v["target"]["piece_jointe"] = CANARY.into()),
        ),
        (
            "x.y[0].corps",
            Box::new(|v| v["x"] = serde_json::json!({"y": [{"corps": CANARY}]})),
        ),
    ];
    for (path, place) in placements {
        let mut bad = good("1");
        place(&mut bad);
        // In a batch with valid traces: the whole request is refused.
        let batch = serde_json::json!([good("a"), bad, good("b")]);
        let (status, ct, body) = post(&st, batch.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(ct, "application/problem+json");
        assert!(
            !body.contains(CANARY),
            "the canary leaked into the error: {body}"
        );
        let p = problem(&body);
        assert_eq!(p["errors"][0]["trace"], 1);
        assert_eq!(p["errors"][0]["field"], path);
        assert_eq!(p["errors"][0]["code"], "content_field");
        assert!(p["detail"].as_str().expect("detail").contains(path));
    }
    assert_eq!(stored(&st).await, 0, "a refused request stored something");
}

#[tokio::test]
async fn oversize_fields_and_literals_are_refused() {
    let (st, _) = memory_state();
    let mut cases = Vec::new();
    let mut v = good("1");
    v["request"] = "A".repeat(2049).into();
    cases.push((v, "request", "too_long"));
    let mut v = good("1");
    v["response"]["text"] = "A".repeat(1025).into();
    cases.push((v, "response.text", "too_long"));
    let mut v = good("1");
    v["actor"]["id"] = "A".repeat(300).into();
    cases.push((v, "actor.id", "too_long"));
    let mut v = good("1");
    v["request"] = format!("A1 APPEND INBOX {{{}}}", CANARY.len()).into();
    cases.push((v, "request", "literal_in_request"));
    let mut v = good("1");
    v["request"] = format!("DATA\r\n{CANARY}").into();
    cases.push((v, "request", "literal_in_request"));
    let mut v = good("1");
    v["target"]["uids"] = "1,".repeat(9000).into();
    cases.push((v, "", "too_large"));
    for (v, field, code) in cases {
        let (status, _, body) = post(&st, v.to_string()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let p = problem(&body);
        assert_eq!(p["errors"][0]["field"], field, "{body}");
        assert_eq!(p["errors"][0]["code"], code, "{body}");
        assert!(!body.contains(CANARY));
    }
    assert_eq!(stored(&st).await, 0);
}

#[tokio::test]
async fn malformed_input_gets_a_clear_4xx() {
    let (st, _) = memory_state();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut deep_obj = good("1");
    let mut nested = serde_json::json!(1);
    for _ in 0..100 {
        nested = serde_json::json!({ "n": nested });
    }
    deep_obj["extra"] = nested;
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (b"{\"class\": ".to_vec(), StatusCode::BAD_REQUEST, "not-json"),
        (b"not json at all".to_vec(), StatusCode::BAD_REQUEST, "not-json"),
        (b"".to_vec(), StatusCode::BAD_REQUEST, "empty-body"),
        (b"[]".to_vec(), StatusCode::BAD_REQUEST, "empty-batch"),
        (b"42".to_vec(), StatusCode::BAD_REQUEST, "not-json"),
        // Inside an array: the element is one (too large / too deep) trace.
        (deep.into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-trace"),
        (
            format!("[{}{}]", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-trace",
        ),
        (
            format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "not-json",
        ),
        (deep_obj.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-trace"),
        (
            [&br#"{"class":"mss","actor":{"id":""#[..], &[0xff, 0xfe], br#""}}"#].concat(),
            StatusCode::BAD_REQUEST,
            "not-json",
        ),
        (
            br#"{"class":"mss","occurred_at":"2026-11-28T15:42:07+01:00","actor":{"id":5},"action":"envoi"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-trace",
        ),
        (
            br#"{"class":"mss","occurred_at":"2026-11-28T15:42:07+01:00","actor":{"id":"a"},"action":"delete"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-trace",
        ),
        (
            br#"{"class":"nope","occurred_at":"2026-11-28T15:42:07+01:00","actor":{"id":"a"},"action":"envoi"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-trace",
        ),
    ];
    for (body, want, code) in cases {
        let (status, ct, text) = post(&st, body).await;
        assert_eq!(status, want, "{text}");
        assert_eq!(ct, "application/problem+json");
        assert_eq!(
            problem(&text)["type"],
            format!("urn:registre:problem:{code}"),
            "{text}"
        );
    }
    // The unknown action error teaches the vocabulary.
    let (_, _, text) = post(
        &st,
        r#"{"class":"mss","occurred_at":"2026-11-28T15:42:07+01:00","actor":{"id":"a"},"action":"delete"}"#,
    )
    .await;
    assert!(text.contains("suppression"), "{text}");
    // Too many traces in one request.
    let many: Vec<_> = (0..10_001).map(|_| serde_json::json!({})).collect();
    let (status, _, _) = post(&st, serde_json::Value::Array(many).to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(stored(&st).await, 0);
    // And the server still serves a good request.
    let (status, _, body) = post(&st, good("ok").to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(stored(&st).await, 1);
}

#[tokio::test]
async fn auth_and_routing_errors_are_problems() {
    let (st, _) = memory_state();
    for (req, want) in [
        (
            Request::get("/v1/traces").body(Body::empty()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Request::get("/v1/traces")
                .header("authorization", "Bearer wrong")
                .body(Body::empty()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Request::get("/nope").body(Body::empty()),
            StatusCode::NOT_FOUND,
        ),
        (
            Request::delete("/healthz").body(Body::empty()),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::get("/v1/traces?limit=0")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/v1/traces?color=red")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/v1/traces?cursor=garbage")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty()),
            StatusCode::BAD_REQUEST,
        ),
        (
            Request::get("/v1/traces?since=yesterday")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(Body::empty()),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let resp = router(st.clone())
            .oneshot(req.expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status(), want);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }
}

#[tokio::test]
async fn fsync_failure_answers_503_never_201() {
    let (st, vfs) = memory_state();
    let (status, _, _) = post(&st, good("before").to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    vfs.fail_syncs_after(0);
    for _ in 0..3 {
        let (status, ct, body) = post(&st, good("during").to_string()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(ct, "application/problem+json");
    }
    // Nothing unacknowledged became visible.
    assert_eq!(stored(&st).await, 1);
    let metrics = router(st.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).expect("req"))
        .await
        .expect("resp");
    let text = axum::body::to_bytes(metrics.into_body(), usize::MAX)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("registre_append_failures_total 3"), "{text}");
}

/// A 100 MB body over a real socket is cut off at the limit with a 413, and
/// the server answers the next client normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_body_is_refused_without_reading_it_all() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (st, _) = memory_state();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(registre_intake::serve(
        listener,
        st.clone(),
        std::future::pending(),
    ));

    for chunked in [false, true] {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = if chunked {
            format!(
                "POST /v1/traces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            )
        } else {
            format!(
                "POST /v1/traces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: 100000000\r\n\r\n"
            )
        };
        s.write_all(head.as_bytes()).await.expect("head");
        let chunk = vec![b' '; 1 << 20];
        // Keep sending until the server answers and closes.
        let writer = tokio::spawn(async move {
            let mut s = s;
            for _ in 0..100 {
                let r = if chunked {
                    let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
                    c.extend_from_slice(&chunk);
                    c.extend_from_slice(b"\r\n");
                    s.write_all(&c).await
                } else {
                    s.write_all(&chunk).await
                };
                if r.is_err() {
                    break;
                }
            }
            let mut out = Vec::new();
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out))
                    .await;
            out
        });
        let out = writer.await.expect("writer");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 413") || text.is_empty(),
            "expected 413, got {:?}",
            &text[..text.len().min(200)]
        );
    }
    let resp = reqwest_like_post(addr, &good("after").to_string()).await;
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
}

async fn reqwest_like_post(addr: std::net::SocketAddr, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}
