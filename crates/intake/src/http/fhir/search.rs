//! `GET /fhir/AuditEvent?…` (ITI-81): the search parameters are parsed
//! strictly by `registre_audit::fhir::Search`; what the store indexes is
//! pushed down (the `date` bounds on the action-time index, the patient),
//! the rest is checked on each trace's AuditEvent. Pages follow the store's
//! cursor (`_cursor` in the `next` link), so a page may hold fewer entries
//! than `_count` (even none) and still have a `next` link.
//!
//! `date` is `AuditEvent.recorded` (the trace's `occurred_at`): the store's
//! action-time index takes its bounds as they are, so an event received
//! days after it was recorded is found like any other.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use registre_access::Principal;
use registre_audit::fhir::{self, IssueType, Search};
use registre_model::{Action, StoredTrace};
use registre_store::{Cursor, Query, SearchError};

use super::{error, outcome, resource};
use crate::http::{AppState, access_log};

pub async fn search(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.unwrap_or_default();
    let s = match Search::parse(&raw, &jiff::tz::TimeZone::system()) {
        Ok(s) => s,
        Err(o) => return outcome(StatusCode::BAD_REQUEST, &o),
    };
    let (traces, next) = match run(&st, &s).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let events: Vec<serde_json::Value> = traces
        .into_iter()
        .map(|mut t| {
            t.received_at = super::last_updated(&t.id);
            fhir::audit_event(&t)
        })
        .filter(|ev| s.matches(ev))
        .collect();
    let self_url = format!("/fhir/AuditEvent?{raw}");
    let next_url = next.map(|c| link(&s.link_query, &c));
    // `total` only when this page is the whole result.
    let total = (s.cursor.is_none() && next_url.is_none()).then_some(events.len());
    if let Err(p) = access_log::record(
        &st,
        &who,
        Action::Recherche,
        "/fhir/AuditEvent",
        &raw,
        200,
        format!("{} AuditEvents returned", events.len()),
    )
    .await
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            p.detail,
        );
    }
    resource(
        StatusCode::OK,
        &fhir::searchset(events, total, &self_url, next_url.as_deref()),
    )
}

/// The query string of a next link: the search's own parameters, then the
/// store's cursor.
pub(crate) fn link(query: &str, cursor: &str) -> String {
    let mut q = form_urlencoded::Serializer::new(query.to_owned());
    q.append_pair("_cursor", cursor);
    format!("/fhir/AuditEvent?{}", q.finish())
}

/// One page of the store for a search (the action-time index for `date`,
/// the patient index when the search names one): its traces, to be
/// checked against the search, and the cursor to go on.
pub(crate) async fn run(
    st: &AppState,
    s: &Search,
) -> Result<(Vec<StoredTrace>, Option<String>), Response> {
    let cursor = match &s.cursor {
        None => None,
        Some(c) => Some(Cursor::decode(c).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                format!("{e}; pass the `next` link as it is"),
            )
        })?),
    };
    let q = Query {
        occurred_since: s.lower,
        occurred_until: s.upper,
        patient: s.patient_identifier().map(str::to_owned),
        limit: s.count,
        cursor,
        ..Query::default()
    };
    let page = match st.store.search(q).await {
        Ok(p) => p,
        Err(SearchError::BadCursor(why)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                IssueType::Value,
                format!("invalid `_cursor` ({why}); pass the `next` link as it is"),
            ));
        }
        Err(e) => {
            tracing::error!(error = %e, "search failed");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                format!("the search could not read the journal: {e}"),
            ));
        }
    };
    let next = page.next.map(|c| c.encode());
    Ok((page.traces.into_iter().map(|r| r.trace).collect(), next))
}
