//! `POST /fhir`: a `batch` or `transaction` Bundle of AuditEvent creates
//! (ITI-20 FHIR Feed, "Send Audit Bundle"). At most 1000 entries and the
//! body limit of `POST /v1/traces`. Every entry is checked before anything
//! is stored; the admitted ones are appended in one call and the answer
//! leaves once they are durable.
//!
//! - `batch`: each entry stands alone: `201 Created` with its location, or
//!   its own status and OperationOutcome; the answer is `200` with a
//!   `batch-response` Bundle.
//! - `transaction`: all or nothing: one refused entry and nothing is
//!   stored, the answer is the OperationOutcome of every refused entry
//!   (`400`, `403` or `422`); otherwise `200` with a
//!   `transaction-response` Bundle.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use registre_access::Principal;
use registre_audit::fhir::{
    self, BundleError, BundleKind, EntryResult, Issue, IssueType, MAX_ISSUES, OperationOutcome,
};
use registre_model::{StoredTrace, Trace};

use super::{
    Return, admit, append, error, last_updated, outcome, prefer, read_body, rejected, resource,
    status_of,
};
use crate::http::AppState;

pub async fn post_bundle(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&headers, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let bundle = match fhir::parse_bundle(&bytes) {
        Ok(b) => b,
        Err(BundleError::TooManyEntries) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                IssueType::TooCostly,
                format!(
                    "a Bundle carries at most {} entries; split it (nothing was stored)",
                    fhir::MAX_BUNDLE_ENTRIES
                ),
            );
        }
        Err(BundleError::Invalid(o)) => return outcome(StatusCode::BAD_REQUEST, &o),
    };
    let total = bundle.entries.len();

    // Check and map every entry before storing any.
    let mut checked: Vec<Result<Trace, (StatusCode, OperationOutcome)>> = Vec::with_capacity(total);
    for (i, entry) in bundle.entries.into_iter().enumerate() {
        let prefix = format!("Bundle.entry[{i}].resource");
        let r = entry
            .map_err(|issues| (status_of(&issues), OperationOutcome::new(issues)))
            .and_then(|resource| {
                fhir::to_trace(&resource, &st.limits).map_err(|issues| {
                    let issues: Vec<Issue> =
                        issues.into_iter().map(|x| x.within(&prefix)).collect();
                    (status_of(&issues), OperationOutcome::new(issues))
                })
            })
            .and_then(|mut t| {
                admit(&st, &who, &mut t).map_err(|(s, o)| {
                    let issues = o.issues.into_iter().map(|x| x.within(&prefix)).collect();
                    (s, OperationOutcome::new(issues))
                })?;
                Ok(t)
            });
        checked.push(r);
    }
    let refused: Vec<&[Issue]> = checked
        .iter()
        .filter_map(|r| r.as_ref().err().map(|(_, o)| o.issues.as_slice()))
        .collect();
    if !refused.is_empty() {
        rejected(&st, "/fhir", &refused, total);
    }

    if bundle.kind == BundleKind::Transaction && !refused.is_empty() {
        let statuses: Vec<StatusCode> = checked
            .iter()
            .filter_map(|r| r.as_ref().err().map(|(s, _)| *s))
            .collect();
        let status = if statuses.iter().all(|s| *s == statuses[0]) {
            statuses[0]
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut issues: Vec<Issue> = refused.iter().flat_map(|i| i.iter().cloned()).collect();
        issues.truncate(MAX_ISSUES);
        issues.insert(
            0,
            Issue::error(
                IssueType::Processing,
                "Bundle",
                format!(
                    "{} of {total} entries are refused; a transaction is all or nothing: \
                     nothing was stored",
                    refused.len()
                ),
            ),
        );
        return outcome(status, &OperationOutcome::new(issues));
    }

    let admitted: Vec<Trace> = checked
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let receipts = match append(&st, admitted).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let with_resource = prefer(&headers, Return::Minimal) == Return::Representation;
    let mut receipts = receipts.into_iter();
    let mut results = Vec::with_capacity(total);
    for r in checked {
        results.push(match r {
            Ok(trace) => {
                let Some(rc) = receipts.next() else {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        IssueType::Exception,
                        "the journal returned fewer receipts than traces",
                    );
                };
                let updated = last_updated(&rc.id);
                let resource = with_resource.then(|| {
                    fhir::audit_event(&StoredTrace::new(trace, rc.index, rc.id, updated.clone()))
                });
                EntryResult::Created {
                    id: rc.id.to_string(),
                    last_modified: updated,
                    resource,
                }
            }
            Err((status, outcome)) => EntryResult::Failed {
                status: status.as_u16(),
                outcome,
            },
        });
    }
    resource(
        StatusCode::OK,
        &fhir::response_bundle(bundle.kind, &results),
    )
}
