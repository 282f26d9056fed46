//! Every kind of FHIR answer registre gives — AuditEvents (created, read,
//! built from JSON API and syslog traces), `searchset`, `batch-response` and
//! `transaction-response` Bundles, OperationOutcomes (validation, content,
//! authorization, routing, paging, storage errors) and the
//! CapabilityStatement — validated against FHIR R4 by an independent
//! validator: the Python `fhir.resources` package at its R4 release, in a
//! test-only virtualenv (`target/fhir-venv`), through
//! `tests/fhir_validate.py`.
//!
//! Without Python, or when the package cannot be installed (no network),
//! the test says SKIP and passes; `REGISTRE_REQUIRE_FHIR_VALIDATOR=1` makes
//! that a failure.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fhir_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::StatusCode;
use fhir_common::*;
use registre_model::Limits;
use serde_json::{Value, json};

/// The R4 (4.0.1) release of fhir.resources (6.2 and later are R4B/R5),
/// and the pydantic it is written for.
const PACKAGES: &[&str] = &["fhir.resources==6.1.0", "pydantic>=1.10,<2"];

#[tokio::test]
async fn every_fhir_answer_validates_against_r4() {
    let out = tempfile::tempdir().expect("tempdir");
    let answers = answers().await;
    assert!(answers.len() >= 20, "{} answers", answers.len());
    for (name, body) in &answers {
        std::fs::write(
            out.path().join(format!("{name}.json")),
            serde_json::to_vec_pretty(body).expect("JSON"),
        )
        .expect("write");
    }
    let Some(python) = validator_python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fhir_validate.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(out.path())
        .output()
        .expect("run the validator");
    let report = String::from_utf8_lossy(&run.stdout);
    println!("{report}{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.success(),
        "FHIR answers do not validate against R4:\n{report}"
    );
    assert_eq!(
        report.lines().filter(|l| l.starts_with("valid ")).count(),
        answers.len(),
        "{report}"
    );
}

/// Collects one of each kind of answer, named.
async fn answers() -> Vec<(String, Value)> {
    let env = env();
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut keep = |name: &str, r: &Resp, status: StatusCode| {
        assert_eq!(r.status, status, "{name}: {}", r.text());
        assert!(
            r.ct.starts_with("application/fhir+json"),
            "{name}: {}",
            r.ct
        );
        out.push((name.to_owned(), r.json()));
    };
    let now = now_local();
    let day = now[..10].to_owned();

    // Created and read, from every example.
    let mut first_id = String::new();
    for (i, (_, ev)) in examples().into_iter().enumerate() {
        let r = post(&env.st, "/fhir/AuditEvent", &env.admin, &ev).await;
        let id = r.json()["id"].as_str().expect("id").to_owned();
        keep(&format!("create-{i:02}"), &r, StatusCode::CREATED);
        let r = get(&env.st, &format!("/fhir/AuditEvent/{id}"), &env.dpo).await;
        keep(&format!("read-{i:02}"), &r, StatusCode::OK);
        if first_id.is_empty() {
            first_id = id;
        }
    }
    let tde = event("810001234567", &now, "2840756123456");
    let r = post(&env.st, "/fhir/AuditEvent", &env.admin, &tde).await;
    keep("create-tde", &r, StatusCode::CREATED);

    // Built from traces of the JSON API (each action) and of syslog.
    let mut json_ids = Vec::new();
    for action in registre_model::ACTIONS
        .iter()
        .chain(&["x-dcm-110100", "x-impression"])
    {
        let trace = json!({"class": "mss", "occurred_at": now, "actor": {"id": "u1", "id_type": "login"},
            "action": action, "outcome": "failure", "response": {"status": "NO", "text": "refused"},
            "target": {"mailbox": "a@b.fr", "folder": "INBOX", "uids": "1:4", "message_id": "<m@x>",
                "recipients": ["c@d.fr"], "size": 12, "patient": {"id": "IPP-1", "system": "urn:hopital:ipp"},
                "resource": "Encounter/1"},
            "request": "UID FETCH 1:4 (FLAGS)", "source": {"host": "poste-1", "software": "Client 1"}});
        let r = call(
            &env.st,
            "POST",
            "/v1/traces",
            Some(&env.admin),
            Some(trace.to_string().into_bytes()),
            &[("content-type", "application/json")],
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{action}: {}", r.text());
        json_ids.push(
            r.json()["accepted"][0]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    for (i, id) in json_ids.iter().enumerate() {
        let r = get(&env.st, &format!("/fhir/AuditEvent/{id}"), &env.dpo).await;
        keep(&format!("read-json-{i:02}"), &r, StatusCode::OK);
    }
    let msg = format!(
        "<85>1 {now} poste-12 MonLPS - IHE+RFC-3881 - {{\"class\":\"applicative\",\"occurred_at\":\"{now}\",\"actor\":{{\"id\":\"u2\"}},\"action\":\"consultation\"}}"
    );
    if let Ok(t) = registre_audit::syslog::message_to_trace(msg.as_bytes(), &Limits::default()) {
        let id = env.st.store.append(vec![t]).await.expect("append")[0].id;
        let r = get(&env.st, &format!("/fhir/AuditEvent/{id}"), &env.dpo).await;
        keep("read-syslog", &r, StatusCode::OK);
    }

    // Searchsets: everything, a page with a next link, an empty one.
    let r = get(
        &env.st,
        &format!("/fhir/AuditEvent?date=ge{day}&_count=1000"),
        &env.dpo,
    )
    .await;
    keep("searchset-all", &r, StatusCode::OK);
    let r = get(
        &env.st,
        "/fhir/AuditEvent?date=ge2000-01-01&_count=2",
        &env.dpo,
    )
    .await;
    keep("searchset-page", &r, StatusCode::OK);
    let r = get(&env.st, "/fhir/AuditEvent?date=lt2000-01-01", &env.dpo).await;
    keep("searchset-empty", &r, StatusCode::OK);

    // Bundles: a batch with good and bad entries, as minimal and as
    // representation; a transaction; a refused transaction.
    let mut bad = tde.clone();
    bad["agent"][0]["foo"] = json!(1);
    let mut content = tde.clone();
    content["outcomeDesc"] = json!("a\nb");
    let b = bundle("batch", &[tde.clone(), bad.clone(), content]);
    let r = post(&env.st, "/fhir", &env.admin, &b).await;
    keep("batch-response", &r, StatusCode::OK);
    let r = call(
        &env.st,
        "POST",
        "/fhir",
        Some(&env.admin),
        Some(b.to_string().into_bytes()),
        &[("prefer", "return=representation")],
    )
    .await;
    keep("batch-response-representation", &r, StatusCode::OK);
    let r = post(
        &env.st,
        "/fhir",
        &env.admin,
        &bundle("transaction", &[tde.clone(), tde.clone()]),
    )
    .await;
    keep("transaction-response", &r, StatusCode::OK);
    let r = post(
        &env.st,
        "/fhir",
        &env.admin,
        &bundle("transaction", &[tde.clone(), bad.clone()]),
    )
    .await;
    keep("outcome-transaction-refused", &r, StatusCode::BAD_REQUEST);
    let r = post(
        &env.st,
        "/fhir",
        &env.admin,
        &bundle("batch", &vec![tde.clone(); 1001]),
    )
    .await;
    keep(
        "outcome-too-many-entries",
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
    );

    // OperationOutcomes of every layer.
    let r = post(&env.st, "/fhir/AuditEvent", &env.admin, &bad).await;
    keep("outcome-unknown-element", &r, StatusCode::BAD_REQUEST);
    let r = post(
        &env.st,
        "/fhir/AuditEvent",
        &env.admin,
        &as_sent(fixture("hl7-r4-examples/AuditEvent-example.json")),
    )
    .await;
    keep("outcome-no-requestor", &r, StatusCode::BAD_REQUEST);
    let r = post(
        &env.st,
        "/fhir/AuditEvent",
        &env.admin,
        &fixture("balp/AuditEvent-ex-auditBasicReadServer.json"),
    )
    .await;
    keep("outcome-narrative", &r, StatusCode::BAD_REQUEST);
    let mut letter = tde.clone();
    letter["entity"][0]["detail"] = json!([{"type": "body", "valueString": "x"}]);
    let r = post(&env.st, "/fhir/AuditEvent", &env.admin, &letter).await;
    keep("outcome-content", &r, StatusCode::UNPROCESSABLE_ENTITY);
    let r = call(
        &env.st,
        "POST",
        "/fhir/AuditEvent",
        Some(&env.admin),
        Some(b"{\"a\":".to_vec()),
        &[],
    )
    .await;
    keep("outcome-not-json", &r, StatusCode::BAD_REQUEST);
    let r = post(&env.st, "/fhir/AuditEvent", &env.dpi, &tde).await;
    keep("outcome-author", &r, StatusCode::FORBIDDEN);
    let r = call(
        &env.st,
        "GET",
        &format!("/fhir/AuditEvent/{first_id}"),
        None,
        None,
        &[],
    )
    .await;
    keep("outcome-401", &r, StatusCode::UNAUTHORIZED);
    let r = get(&env.st, &format!("/fhir/AuditEvent/{first_id}"), &env.dpi).await;
    keep("outcome-403", &r, StatusCode::FORBIDDEN);
    let r = get(
        &env.st,
        "/fhir/AuditEvent/019ac3c4-1f2e-7a00-8000-0123456789ab",
        &env.dpo,
    )
    .await;
    keep("outcome-404-read", &r, StatusCode::NOT_FOUND);
    let r = get(&env.st, "/fhir/Observation", &env.dpo).await;
    keep("outcome-404-route", &r, StatusCode::NOT_FOUND);
    let r = call(
        &env.st,
        "PUT",
        &format!("/fhir/AuditEvent/{first_id}"),
        Some(&env.admin),
        None,
        &[],
    )
    .await;
    keep("outcome-405", &r, StatusCode::METHOD_NOT_ALLOWED);
    let r = get(&env.st, "/fhir/AuditEvent?agent=x", &env.dpo).await;
    keep("outcome-search-no-date", &r, StatusCode::BAD_REQUEST);
    let r = get(
        &env.st,
        "/fhir/AuditEvent?date=ge2026-01-01&_cursor=nope",
        &env.dpo,
    )
    .await;
    keep("outcome-search-cursor", &r, StatusCode::BAD_REQUEST);

    // The CapabilityStatement.
    let r = call(&env.st, "GET", "/fhir/metadata", None, None, &[]).await;
    keep("capability-statement", &r, StatusCode::OK);

    // Storage failure.
    env.vfs.fail_syncs_after(0);
    let r = post(&env.st, "/fhir/AuditEvent", &env.admin, &tde).await;
    keep("outcome-503", &r, StatusCode::SERVICE_UNAVAILABLE);
    out
}

/// The virtualenv's Python with the validator installed, or `None` (after
/// saying SKIP) when it cannot be had.
fn validator_python() -> Option<PathBuf> {
    let require = std::env::var_os("REGISTRE_REQUIRE_FHIR_VALIDATOR").is_some();
    let skip = |why: String| {
        assert!(!require, "the FHIR validator is required: {why}");
        eprintln!("SKIP fhir_validate: {why}");
        println!("SKIP fhir_validate: {why}");
        None
    };
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let venv = target.join("fhir-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        Command::new(p)
            .args([
                "-c",
                "import fhir.resources, sys; sys.exit(fhir.resources.__fhir_version__ != '4.0.1')",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && ready(&python) {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output();
    match made {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return skip(format!(
                "cannot create the virtualenv: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return skip(format!("no python3 ({e})")),
    }
    let pip = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PACKAGES)
        .output();
    match pip {
        Ok(o) if o.status.success() && ready(&python) => Some(python),
        Ok(o) => skip(format!(
            "cannot install {}: {}",
            PACKAGES.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => skip(format!("cannot run pip ({e})")),
    }
}
