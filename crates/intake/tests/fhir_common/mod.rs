//! What the FHIR tests share: a real server state (the embedded store on the
//! fault-injecting in-memory VFS), its credentials, a request helper and the
//! FHIR examples of `registre-audit`'s test data.

#![allow(dead_code)]
// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use registre_access::{ApiKeyStore, Role};
use registre_intake::http::auth::Authenticator;
use registre_intake::{AppState, Metrics, router};
use registre_model::{ClassName, Limits};
use registre_store::vfs::FaultyVfs;
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, StoredTrace};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const FHIR_JSON: &str = "application/fhir+json; fhirVersion=4.0";

pub fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect()
}

pub struct Env {
    pub st: Arc<AppState>,
    pub vfs: FaultyVfs,
    /// admin, trusted proxy (the bootstrap key).
    pub admin: String,
    /// producteur `dpi-server`, not a trusted proxy.
    pub dpi: String,
    /// auditeur `dpo`.
    pub dpo: String,
}

pub fn env() -> Env {
    let vfs = FaultyVfs::new();
    let store = EmbeddedStore::open_with_vfs(
        std::path::Path::new("/mem"),
        EmbeddedOptions::new(classes()),
        Arc::new(vfs.clone()),
    )
    .expect("open");
    let keys = Arc::new(ApiKeyStore::in_memory());
    let admin = "fhir-test-admin-token".to_owned();
    keys.adopt("admin", Role::Admin, &admin).expect("adopt");
    let dpi = keys
        .create("dpi-server", Role::Producteur, false, None)
        .expect("key")
        .secret;
    let dpo = keys
        .create("dpo", Role::Auditeur, false, None)
        .expect("key")
        .secret;
    let st = Arc::new(AppState {
        store: Arc::new(store),
        classes: classes(),
        limits: Limits::default(),
        auth: Arc::new(Authenticator {
            keys,
            bearers: vec![],
            certificates: vec![],
        }),
        metrics: Arc::new(Metrics::default()),
        policy: registre_intake::empty_policy(),
    });
    Env {
        st,
        vfs,
        admin,
        dpi,
        dpo,
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub ct: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// The (expression, code) of each issue of an OperationOutcome answer.
    pub fn issues(&self) -> Vec<(String, String)> {
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{v}");
        v["issue"]
            .as_array()
            .expect("issues")
            .iter()
            .map(|i| {
                (
                    i["expression"][0].as_str().unwrap_or("").to_owned(),
                    i["code"].as_str().expect("code").to_owned(),
                )
            })
            .collect()
    }
}

pub async fn call(
    st: &Arc<AppState>,
    method: &str,
    uri: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let has_ct = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if body.is_some() && !has_ct {
        req = req.header("content-type", "application/fhir+json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.map_or_else(Body::empty, Body::from))
        .expect("request");
    let resp = router(st.clone()).oneshot(req).await.expect("response");
    let status = resp.status();
    let headers = resp.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec();
    Resp {
        status,
        ct,
        headers,
        body,
    }
}

pub async fn post(st: &Arc<AppState>, uri: &str, bearer: &str, v: &Value) -> Resp {
    call(
        st,
        "POST",
        uri,
        Some(bearer),
        Some(v.to_string().into_bytes()),
        &[],
    )
    .await
}

pub async fn get(st: &Arc<AppState>, uri: &str, bearer: &str) -> Resp {
    call(st, "GET", uri, Some(bearer), None, &[]).await
}

/// Every stored trace, newest first.
pub async fn stored(st: &Arc<AppState>) -> Vec<StoredTrace> {
    st.store
        .search(Query {
            limit: 10_000,
            ..Query::default()
        })
        .await
        .expect("search")
        .traces
        .into_iter()
        .map(|r| r.trace)
        .collect()
}

/// The stored traces that came in as FHIR (not the access traces).
pub async fn stored_fhir(st: &Arc<AppState>) -> Vec<StoredTrace> {
    stored(st)
        .await
        .into_iter()
        .filter(|t| t.original.as_ref().is_some_and(|o| o.format == "fhir+json"))
        .collect()
}

pub fn fixture(path: &str) -> Value {
    let full = format!(
        "{}/../audit/testdata/fhir/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// An example as a producer sends it: no narrative, no contained resource.
pub fn as_sent(mut v: Value) -> Value {
    let obj = v.as_object_mut().expect("object");
    obj.remove("text");
    obj.remove("contained");
    v
}

/// Every AuditEvent example of the test data (path, as sent), those that
/// have a requestor.
pub fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in ["hl7-r4-examples", "balp", "tde"] {
        let full = format!(
            "{}/../audit/testdata/fhir/{dir}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut names: Vec<String> = std::fs::read_dir(&full)
            .expect("dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("AuditEvent-") && n.ends_with(".json"))
            .collect();
        names.sort();
        for n in names {
            if n == "AuditEvent-example.json" {
                // No requestor: refused (tested apart).
                continue;
            }
            let path = format!("{dir}/{n}");
            out.push((path.clone(), as_sent(fixture(&path))));
        }
    }
    out
}

/// The server's local time now, RFC 3339 with its offset.
pub fn now_local() -> String {
    jiff::Zoned::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// A TDE-style AuditEvent: `actor` reads the record of INS patient `ins`.
pub fn event(actor: &str, recorded: &str, ins: &str) -> Value {
    json!({
        "resourceType": "AuditEvent",
        "meta": {"profile": ["https://interop.esante.gouv.fr/ig/fhir/tde/StructureDefinition/tde-auditevent"]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read", "display": "read"}],
        "action": "R",
        "period": {"start": recorded},
        "recorded": recorded,
        "outcome": "0",
        "agent": [{
            "who": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": actor}},
            "name": "Dr Émile Martin",
            "requestor": true,
            "network": {"address": "10.1.2.3", "type": "2"}
        }],
        "source": {"site": "hopital-nord", "observer": {"display": "MonLPS 4.2"}},
        "entity": [{
            "what": {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": ins}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }]
    })
}

/// A batch or transaction Bundle creating these AuditEvents.
pub fn bundle(kind: &str, events: &[Value]) -> Value {
    let entries: Vec<Value> = events
        .iter()
        .map(|e| json!({"request": {"method": "POST", "url": "AuditEvent"}, "resource": e}))
        .collect();
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}
