//! `POST /fhir/AuditEvent` (ITI-20 FHIR Feed): one AuditEvent, checked,
//! mapped, bound to its author, made durable, then answered `201` with its
//! `Location` and the stored resource.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registre_access::Principal;
use registre_audit::fhir::{self, OperationOutcome};
use registre_model::StoredTrace;
use serde_json::Value;

use super::{
    Return, admit, append, http_date, last_updated, not_json, outcome, prefer, read_body, rejected,
    resource, status_of,
};
use crate::http::AppState;

pub async fn create(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return not_json(&e),
    };
    let mut trace = match fhir::to_trace(&value, &st.limits) {
        Ok(t) => t,
        Err(issues) => {
            rejected(&st, "/fhir/AuditEvent", &[&issues], 1);
            return outcome(status_of(&issues), &OperationOutcome::new(issues));
        }
    };
    if let Err((status, o)) = admit(&st, &who, &mut trace) {
        rejected(&st, "/fhir/AuditEvent", &[&o.issues], 1);
        return outcome(status, &o);
    }
    let receipts = match append(&st, vec![trace.clone()]).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(r) = receipts.first() else {
        return super::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            fhir::IssueType::Exception,
            "the journal returned no receipt",
        );
    };
    let updated = last_updated(&r.id);
    let stored = StoredTrace::new(trace, r.index, r.id, updated.clone());
    let ev = fhir::audit_event(&stored);
    let mut resp = match prefer(&headers, Return::Representation) {
        Return::Representation => resource(StatusCode::CREATED, &ev),
        Return::OperationOutcome => outcome(
            StatusCode::CREATED,
            &OperationOutcome::information(format!(
                "stored as trace {} of the `{}` log (index {})",
                r.id, r.log, r.index
            )),
        ),
        Return::Minimal => StatusCode::CREATED.into_response(),
    };
    let h = resp.headers_mut();
    if let Ok(loc) = HeaderValue::from_str(&format!("/fhir/AuditEvent/{}", r.id)) {
        h.insert(header::LOCATION, loc);
    }
    h.insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    if let Some(d) = http_date(&updated) {
        h.insert(header::LAST_MODIFIED, d);
    }
    resp
}
