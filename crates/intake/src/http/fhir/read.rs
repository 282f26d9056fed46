//! `GET /fhir/AuditEvent/{id}`: the trace whose UUID is `id`, as an
//! AuditEvent. The store has no lookup by id, but a UUIDv7 carries the
//! millisecond the trace was received: the read is a search of that
//! millisecond. Every read is traced (found or not) before it is answered.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use registre_access::Principal;
use registre_audit::fhir::{self, IssueType};
use registre_model::{Action, StoredTrace};
use registre_store::{Query, SearchError};
use uuid::Uuid;

use super::{error, http_date, last_updated, resource};
use crate::http::{AppState, access_log};

/// Most pages of one millisecond read before giving up (each of up to 1000
/// traces): a read is bounded work.
const MAX_PAGES: usize = 64;

pub async fn read(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no AuditEvent has this id (ids are the UUIDs of traces; purged traces are gone)",
        )
    };
    // Only a canonical UUIDv7 can be a trace's id; nothing is read otherwise.
    let Some(uuid) = Uuid::parse_str(&id)
        .ok()
        .filter(|u| id.len() == 36 && u.get_version_num() == 7)
    else {
        return not_found();
    };
    let found = match find(&st, uuid).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "read failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                format!("the journal could not be read: {e}"),
            );
        }
    };
    let route = format!("/fhir/AuditEvent/{uuid}");
    let (status, summary) = match &found {
        Some(_) => (200, "1 AuditEvent read".to_owned()),
        None => (404, "no such AuditEvent".to_owned()),
    };
    if let Err(p) =
        access_log::record(&st, &who, Action::Consultation, &route, "", status, summary).await
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            p.detail,
        );
    }
    let Some(mut t) = found else {
        return not_found();
    };
    t.received_at = last_updated(&t.id);
    let ev = fhir::audit_event(&t);
    let mut resp = resource(StatusCode::OK, &ev);
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    if let Some(d) = http_date(&t.received_at) {
        h.insert(header::LAST_MODIFIED, d);
    }
    resp
}

/// The stored trace with this id, searching the millisecond it names.
pub(crate) async fn find(st: &AppState, id: Uuid) -> Result<Option<StoredTrace>, SearchError> {
    let Some(ts) = id.get_timestamp() else {
        return Ok(None);
    };
    let (secs, nanos) = ts.to_unix();
    let ms = secs as i64 * 1000 + i64::from(nanos / 1_000_000);
    let mut q = Query {
        since: Some(ms * 1000),
        until: Some((ms + 1) * 1000),
        limit: 1000,
        ..Query::default()
    };
    for _ in 0..MAX_PAGES {
        let page = st.store.search(q.clone()).await?;
        if let Some(r) = page.traces.into_iter().find(|r| r.trace.id == id) {
            return Ok(Some(r.trace));
        }
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return Ok(None),
        }
    }
    Ok(None)
}
