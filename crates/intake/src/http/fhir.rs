//! The FHIR R4 surface (IHE RESTful ATNA, ANS TDE gestionnaire de traces)
//! and ITI-82, over the same journal as the JSON API.
//!
//! | route | what | roles |
//! |---|---|---|
//! | `POST /fhir/AuditEvent` | ITI-20 FHIR Feed: one AuditEvent → `201`, `Location`, the stored resource, after durability | producteur, admin |
//! | `POST /fhir` | a `batch` or `transaction` Bundle of AuditEvent creates (at most 1000) → its response Bundle | producteur, admin |
//! | `GET /fhir/AuditEvent/{id}` | read (traced) | auditeur |
//! | `GET /fhir/AuditEvent?date=…` | ITI-81 search, a `searchset` Bundle with `next` links (traced) | auditeur |
//! | `GET /fhir/metadata` | the CapabilityStatement | none |
//! | `GET /syslogsearch?date=…` | ITI-82: the same traces as syslog messages in JSON (traced) | auditeur |
//!
//! Every FHIR answer is `application/fhir+json; fhirVersion=4.0`, and every
//! FHIR error an OperationOutcome (also the 401, 403, 404, 405 and 503 that
//! other layers answer as problems: [`outcomes`] turns them into
//! OperationOutcomes on `/fhir` paths). The mapping between AuditEvent and
//! trace is `registre_audit::fhir`'s.

mod bundle;
mod create;
mod read;
mod search;
mod syslog_search;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use registre_access::Principal;
use registre_audit::fhir::{self, Issue, IssueType, OperationOutcome};
use registre_model::Trace;
use registre_store::{AppendError, Receipt};
use serde_json::Value;

pub use bundle::post_bundle;
pub use create::create;
pub use read::read;
pub use search::search;
pub use syslog_search::syslog_search;

use super::{AppState, MAX_BODY_BYTES};
use crate::events::{AppendFailed, TracesAccepted, TracesRejected};

/// `GET /fhir/metadata`: public, like `/openapi.json`.
pub async fn metadata() -> Response {
    resource(
        StatusCode::OK,
        &fhir::capability_statement(env!("CARGO_PKG_VERSION")),
    )
}

/// A FHIR resource answer.
pub(crate) fn resource(status: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir::CONTENT_TYPE),
    );
    r
}

/// An OperationOutcome answer.
pub(crate) fn outcome(status: StatusCode, o: &OperationOutcome) -> Response {
    let mut r = resource(status, &o.to_value());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    }
    r
}

/// One error issue, answered.
pub(crate) fn error(
    status: StatusCode,
    code: IssueType,
    diagnostics: impl Into<String>,
) -> Response {
    outcome(status, &OperationOutcome::error(code, "", diagnostics))
}

/// The status of a refused resource: 413 when it is too large, 422 when
/// only registre's content rules refuse it, else 400.
pub(crate) fn status_of(issues: &[Issue]) -> StatusCode {
    if issues.iter().any(|i| i.code == IssueType::TooCostly) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if issues.iter().all(|i| i.code == IssueType::BusinessRule) {
        StatusCode::UNPROCESSABLE_ENTITY
    } else if issues.iter().all(|i| i.code == IssueType::Forbidden) {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// The request body: FHIR JSON (or JSON), at most [`MAX_BODY_BYTES`],
/// within 60 seconds.
pub(crate) async fn read_body(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueType::NotSupported,
                "send FHIR JSON: Content-Type application/fhir+json (or application/json)",
            ));
        }
    }
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooCostly,
            format!(
                "a request carries at most {MAX_BODY_BYTES} bytes ({} MiB); split it",
                MAX_BODY_BYTES >> 20
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| {
        error(
            StatusCode::REQUEST_TIMEOUT,
            IssueType::Transient,
            "the request body did not arrive within 60 seconds",
        )
    })?
    .map_err(|_| too_large())?;
    Ok(bytes.to_vec())
}

/// A JSON body that did not parse.
pub(crate) fn not_json(e: &serde_json::Error) -> Response {
    let pos = registre_model::json_error_position(e);
    error(
        StatusCode::BAD_REQUEST,
        IssueType::Structure,
        format!("the body is not valid JSON: {pos}"),
    )
}

/// Checks a mapped trace against the server (its class is configured) and
/// binds it to the caller: a credential that is not a trusted proxy may
/// only post events whose requestor is itself (`actor.auth` is then set
/// from the credential), as on `POST /v1/traces`.
pub(crate) fn admit(
    st: &AppState,
    who: &Principal,
    t: &mut Trace,
) -> Result<(), (StatusCode, OperationOutcome)> {
    if !st.classes.contains(&t.class) {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            OperationOutcome::error(
                IssueType::Processing,
                "AuditEvent.type",
                format!(
                    "this event goes to the `{}` class, which this server does not keep \
                     (configured: {})",
                    t.class,
                    st.classes
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        ));
    }
    if who.trusted_proxy {
        return Ok(());
    }
    if t.actor.id != who.id {
        return Err((
            StatusCode::FORBIDDEN,
            OperationOutcome::error(
                IssueType::Forbidden,
                "AuditEvent.agent",
                format!(
                    "this credential authenticates `{}`; the requestor agent of an AuditEvent \
                     must be the caller (only a trusted proxy may post for others)",
                    who.id
                ),
            ),
        ));
    }
    t.actor.auth = Some(who.auth.clone());
    Ok(())
}

/// Appends admitted traces; the receipts once durable, else the 503.
pub(crate) async fn append(st: &AppState, traces: Vec<Trace>) -> Result<Vec<Receipt>, Response> {
    let n = traces.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    match st.store.append(traces).await {
        Ok(receipts) => {
            let mut by_log: Vec<(&str, u64)> = Vec::new();
            for r in &receipts {
                match by_log.iter_mut().find(|(l, _)| *l == r.log.as_str()) {
                    Some(e) => e.1 += 1,
                    None => by_log.push((r.log.as_str(), 1)),
                }
            }
            for (log, count) in by_log {
                TracesAccepted { log, count }.emit(&st.metrics);
            }
            Ok(receipts)
        }
        Err(e @ (AppendError::Unavailable(_) | AppendError::ShuttingDown)) => {
            let msg = e.to_string();
            AppendFailed {
                traces: n,
                error: &msg,
            }
            .emit(&st.metrics);
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                format!("{msg}; nothing was acknowledged, retry later"),
            ))
        }
        Err(e) => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Processing,
            e.to_string(),
        )),
    }
}

/// Counts refused AuditEvents like refused traces (by rule).
pub(crate) fn rejected(st: &AppState, route: &'static str, issues: &[&[Issue]], total: usize) {
    let codes: Vec<&'static str> = issues
        .iter()
        .map(|i| i.first().map_or("fhir_invalid", |i| rule_code(i.code)))
        .collect();
    TracesRejected {
        route,
        invalid: issues.len(),
        total,
        codes: &codes,
    }
    .emit(&st.metrics);
}

fn rule_code(c: IssueType) -> &'static str {
    match c {
        IssueType::BusinessRule => "content_field",
        IssueType::TooLong => "too_long",
        IssueType::TooCostly => "too_large",
        IssueType::Required => "missing_field",
        IssueType::Structure => "unknown_field",
        IssueType::NotSupported => "not_supported",
        IssueType::Forbidden => "actor_mismatch",
        _ => "invalid_value",
    }
}

/// `meta.lastUpdated` and `Last-Modified` of a trace: its UUIDv7 time
/// (`received_at` to the millisecond).
pub(crate) fn last_updated(id: &uuid::Uuid) -> String {
    let ms = id
        .get_timestamp()
        .map(|t| {
            let (s, n) = t.to_unix();
            s as i64 * 1000 + i64::from(n / 1_000_000)
        })
        .unwrap_or(0);
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// The RFC 9110 HTTP-date of an instant string.
pub(crate) fn http_date(instant: &str) -> Option<HeaderValue> {
    let ts: jiff::Timestamp = instant.parse().ok()?;
    let s = ts
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    HeaderValue::from_str(&s).ok()
}

/// Whether the client asks for the stored resource back (`Prefer`), the
/// default for a single create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub(crate) fn prefer(headers: &HeaderMap, default: Return) -> Return {
    let Some(p) = headers.get("prefer").and_then(|v| v.to_str().ok()) else {
        return default;
    };
    for part in p.split([',', ';']) {
        match part.trim() {
            "return=minimal" => return Return::Minimal,
            "return=representation" => return Return::Representation,
            "return=OperationOutcome" => return Return::OperationOutcome,
            _ => {}
        }
    }
    default
}

/// On `/fhir` paths: answers as OperationOutcomes what the other layers
/// answer as RFC 9457 problems (401, 403, 404, 405, 413, 503), and refuses a
/// client that accepts no JSON (406).
pub async fn outcomes(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path != "/fhir" && !path.starts_with("/fhir/") {
        return next.run(req).await;
    }
    if let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        let a = accept.to_ascii_lowercase();
        if !a.trim().is_empty() && !a.contains("json") && !a.contains("*/*") {
            return error(
                StatusCode::NOT_ACCEPTABLE,
                IssueType::NotSupported,
                "registre answers FHIR JSON only: accept application/fhir+json",
            );
        }
    }
    let resp = next.run(req).await;
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/problem+json"));
    let status = resp.status();
    if !is_problem && (status.is_success() || status.is_redirection() || is_fhir(&resp)) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let kind = problem
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.strip_prefix("urn:registre:problem:"))
        .unwrap_or("");
    let code = match (kind, status.as_u16()) {
        ("unauthorized", _) | (_, 401) => IssueType::Login,
        ("forbidden", _) | (_, 403) => IssueType::Forbidden,
        ("not-found", _) | (_, 404) => IssueType::NotFound,
        ("method-not-allowed", _) | (_, 405) => IssueType::NotSupported,
        ("unavailable", _) | (_, 503) => IssueType::Transient,
        (_, 413) => IssueType::TooCostly,
        _ => IssueType::Processing,
    };
    let diagnostics = problem
        .get("detail")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_owned()
        });
    let diagnostics = match code {
        IssueType::NotFound => {
            "no such FHIR route; see GET /fhir/metadata for what this server supports".to_owned()
        }
        IssueType::NotSupported if status == StatusCode::METHOD_NOT_ALLOWED => {
            "this FHIR route does not accept that method; see GET /fhir/metadata".to_owned()
        }
        _ => diagnostics,
    };
    let mut r = outcome(status, &OperationOutcome::error(code, "", diagnostics));
    for h in [header::WWW_AUTHENTICATE, header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = parts.headers.get(&h) {
            r.headers_mut().insert(h, v.clone());
        }
    }
    r
}

fn is_fhir(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/fhir+json"))
}
