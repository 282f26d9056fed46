//! `GET /syslogsearch?date=…` (IHE ITI-82 "Retrieve Syslog Event"): the
//! journal's traces as syslog messages, a JSON array, over the same data as
//! ITI-81 (the ANS TDE guide: "un tableau de messages Syslog au format
//! JSON").
//!
//! Each element is one message, its RFC 5424 fields named as RFC 5424 names
//! them: `pri` (with `facility` and `severity`), `version`, `timestamp`,
//! `hostname`, `app-name`, `procid`, `msgid` (a field that was NILVALUE is
//! left out), `structured-data` (`[{"id", "params": {name: value}}]`) and
//! `msg` (text); plus `registre` (`id`, `log`, `index`, `received_at`,
//! `format`: where the trace came from), to ask for its proof or read it as
//! an AuditEvent (`GET /fhir/AuditEvent/{id}`).
//!
//! A trace that came by syslog is its message as received. Any other is
//! written as the message an ATNA sender would have sent: PRI 85
//! (authpriv.notice; 84, warning, for a failure), `timestamp` its
//! `occurred_at`, `hostname` its source host or IP, `app-name` its source
//! software; `msg` the DICOM AuditMessage (`msgid` `IHE+RFC-3881`) of a
//! DICOM trace, the AuditEvent (`FHIR+AuditEvent`) of a FHIR one, the trace
//! itself (`REGISTRE+JSON`) otherwise.
//!
//! Parameters: `date` (required, as in ITI-81: on the message's event time,
//! the trace's `occurred_at`; prefixes `ge`, `le`, `gt`, `lt`, `eq`…),
//! `host`, `ip`, `app`, `procid` (or `pid`), `msgid` (exact), `_count`
//! (default 50, at most 1000) and `_cursor`. Paging: a `Link: <…>;
//! rel="next"` header. Errors are RFC 9457 problems, like the JSON API.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registre_access::Principal;
use registre_audit::fhir::{self, Search};
use registre_audit::syslog;
use registre_model::{Action, Outcome, StoredTrace};
use serde_json::{Map, Value, json};

use crate::http::{AppState, Problem, access_log};

const FILTERS: &[&str] = &["host", "ip", "app", "procid", "pid", "msgid"];

pub async fn syslog_search(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    // Dates and paging are ITI-81's; the syslog header filters are ours.
    // (A Serializer is not Send: it stays out of the awaits below.)
    let mut fhir_query: Vec<(String, String)> = Vec::new();
    let mut filters: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "date" | "_count" | "_cursor" => {
                fhir_query.push((k.into_owned(), v.into_owned()));
            }
            f if FILTERS.contains(&f) => {
                if v.len() > 1024 {
                    return Problem::bad_request(
                        "parameter-too-long",
                        format!("query parameter `{f}` is too long"),
                    )
                    .into_response();
                }
                let name = if f == "pid" { "procid" } else { f };
                filters.push((name.to_owned(), v.into_owned()));
            }
            _ => {
                return Problem::bad_request(
                    "unknown-parameter",
                    "unknown query parameter; accepted: date, host, ip, app, procid (pid), \
                     msgid, _count, _cursor",
                )
                .into_response();
            }
        }
    }
    let fhir_query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&fhir_query)
        .finish();
    let s = match Search::parse(&fhir_query, &jiff::tz::TimeZone::system()) {
        Ok(s) => s,
        Err(o) => {
            let why = o
                .issues
                .first()
                .map(|i| i.diagnostics.clone())
                .unwrap_or_default();
            return Problem::bad_request("bad-parameter", why).into_response();
        }
    };
    let (traces, next) = match super::search::run(&st, &s).await {
        Ok(x) => x,
        Err(r) => return problem_of(r).await,
    };
    let messages: Vec<Value> = traces
        .iter()
        .filter(|t| s.matches(&json!({"recorded": t.occurred_at})))
        .map(message)
        .filter(|m| {
            filters.iter().all(|(k, want)| {
                let have = match k.as_str() {
                    "host" => m.get("hostname"),
                    "app" => m.get("app-name"),
                    "ip" => m.get("registre").and_then(|r| r.get("ip")),
                    other => m.get(other),
                };
                have.and_then(Value::as_str)
                    .is_some_and(|h| h.eq_ignore_ascii_case(want))
            })
        })
        .collect();
    if let Err(p) = access_log::record(
        &st,
        &who,
        Action::Recherche,
        "/syslogsearch",
        &raw,
        200,
        format!("{} syslog messages returned", messages.len()),
    )
    .await
    {
        return p.into_response();
    }
    let mut r = axum::Json(Value::Array(messages)).into_response();
    if let Some(c) = next {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form_urlencoded::parse(raw.as_bytes()).filter(|(k, _)| k != "_cursor"))
            .append_pair("_cursor", &c)
            .finish();
        if let Ok(v) = HeaderValue::from_str(&format!("</syslogsearch?{query}>; rel=\"next\"")) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

/// A FHIR error of the shared search code, as a problem.
async fn problem_of(r: Response) -> Response {
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let detail = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v["issue"][0]["diagnostics"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "the search failed".to_owned());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        Problem::unavailable(detail).into_response()
    } else {
        Problem::bad_request("bad-parameter", detail).into_response()
    }
}

/// A trace as one syslog message (JSON).
fn message(t: &StoredTrace) -> Value {
    let format = t
        .original
        .as_ref()
        .map_or("registre-json", |o| o.format.as_str());
    let mut reg = json!({
        "id": t.id.to_string(),
        "log": t.log.as_str(),
        "index": t.index,
        "received_at": t.received_at,
        "format": format,
    });
    if let Some(ip) = t.source.as_ref().and_then(|s| s.ip.as_deref()) {
        reg["ip"] = json!(ip);
    }
    if let Some(o) = t
        .original
        .as_ref()
        .filter(|o| o.format == syslog::ORIGINAL_FORMAT)
        && let Ok(m) = syslog::parse(o.text.as_bytes())
    {
        let mut v = Map::new();
        v.insert("pri".into(), json!(m.pri));
        v.insert("facility".into(), json!(m.facility()));
        v.insert("severity".into(), json!(m.severity()));
        v.insert("version".into(), json!(1));
        for (k, f) in [
            ("timestamp", m.timestamp),
            ("hostname", m.hostname),
            ("app-name", m.app_name),
            ("procid", m.procid),
            ("msgid", m.msgid),
        ] {
            if let Some(x) = f {
                v.insert(k.into(), json!(x));
            }
        }
        if !m.structured_data.is_empty() {
            let sd: Vec<Value> = m
                .structured_data
                .iter()
                .map(|e| {
                    let params: Map<String, Value> = e
                        .params
                        .iter()
                        .map(|p| (p.name.to_owned(), json!(p.value.as_ref())))
                        .collect();
                    json!({"id": e.id, "params": params})
                })
                .collect();
            v.insert("structured-data".into(), Value::Array(sd));
        }
        if let Some(msg) = m.msg {
            v.insert(
                "msg".into(),
                json!(String::from_utf8_lossy(msg).into_owned()),
            );
        }
        v.insert("registre".into(), reg);
        return Value::Object(v);
    }
    let severity = if t.outcome == Some(Outcome::Failure) {
        4
    } else {
        5
    };
    let mut v = Map::new();
    v.insert("pri".into(), json!(10 * 8 + severity));
    v.insert("facility".into(), json!(10));
    v.insert("severity".into(), json!(severity));
    v.insert("version".into(), json!(1));
    v.insert("timestamp".into(), json!(t.occurred_at));
    let source = t.source.as_ref();
    if let Some(h) = source.and_then(|s| s.host.as_deref().or(s.ip.as_deref())) {
        v.insert("hostname".into(), json!(h));
    }
    if let Some(app) = source.and_then(|s| s.software.as_deref()) {
        v.insert("app-name".into(), json!(app));
    }
    let (msgid, msg) = match t.original.as_ref() {
        Some(o) if o.format == "dicom+xml" => ("IHE+RFC-3881", o.text.clone()),
        Some(o) if o.format == fhir::ORIGINAL_FORMAT => {
            let mut read = t.clone();
            read.received_at = super::last_updated(&t.id);
            ("FHIR+AuditEvent", fhir::audit_event(&read).to_string())
        }
        _ => {
            let mut plain = t.clone();
            plain.original = None;
            (
                "REGISTRE+JSON",
                serde_json::to_string(&plain).unwrap_or_default(),
            )
        }
    };
    v.insert("msgid".into(), json!(msgid));
    v.insert("msg".into(), json!(msg));
    v.insert("registre".into(), reg);
    Value::Object(v)
}
