//! `POST /v1/traces`: one trace or an array of traces, acknowledged only
//! once durable. A request with any invalid trace stores nothing.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use registre_model::{Trace, TraceError, TraceErrorKind, parse_trace_value};
use registre_store::{AppendError, Receipt};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{AppState, MAX_BATCH, MAX_BODY_BYTES, Problem, TraceProblem};
use crate::events::{AppendFailed, TracesAccepted, TracesRejected};

#[derive(Serialize)]
struct Accepted {
    accepted: Vec<Receipt>,
}

/// At most this many per-trace errors are listed in a 422.
const MAX_LISTED_ERRORS: usize = 100;

pub async fn post_traces(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<registre_access::Principal>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(&st, &who, &headers, body).await {
        Ok(r) => r,
        Err(p) => p.into_response(),
    }
}

async fn handle(
    st: &AppState,
    who: &registre_access::Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    check_content_type(headers)?;
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Request too large",
            format!(
                "a request carries at most {MAX_BODY_BYTES} bytes ({} MiB) and {MAX_BATCH} traces; split it",
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
    // A client trickling its body must not hold a connection forever.
    let bytes = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "body-timeout",
            "Request body too slow",
            "the request body did not arrive within 60 seconds",
        )
    })?
    .map_err(|_| too_large())?;

    let mut traces = parse_body(st, &bytes)?;
    bind_authorship(who, &mut traces)?;
    let n = traces.len();
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
            Ok((
                StatusCode::CREATED,
                axum::Json(Accepted { accepted: receipts }),
            )
                .into_response())
        }
        Err(e @ (AppendError::Unavailable(_) | AppendError::ShuttingDown)) => {
            let msg = e.to_string();
            AppendFailed {
                traces: n,
                error: &msg,
            }
            .emit(&st.metrics);
            Err(Problem::unavailable(format!("{msg}; retry later")))
        }
        Err(e) => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-trace",
            "Invalid trace",
            e.to_string(),
        )),
    }
}

/// The author of a trace is the authenticated one: a credential that is not
/// a trusted proxy writes only its own traces, and their `actor.auth` says
/// how it was authenticated.
fn bind_authorship(who: &registre_access::Principal, traces: &mut [Trace]) -> Result<(), Problem> {
    if who.trusted_proxy {
        return Ok(());
    }
    let mut errors = Vec::new();
    for (i, t) in traces.iter_mut().enumerate() {
        if t.actor.id != who.id {
            errors.push(TraceProblem {
                trace: i,
                field: "actor.id".into(),
                code: "actor_mismatch",
                detail: format!(
                    "this credential authenticates `{}`; a trace may not claim another author \
                     (only a trusted proxy may)",
                    who.id
                ),
            });
        } else {
            t.actor.auth = Some(who.auth.clone());
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut p = Problem::new(
        StatusCode::FORBIDDEN,
        "actor-mismatch",
        "Trace author is not the caller",
        format!(
            "{} trace(s) claim an author other than the authenticated `{}`; nothing was stored",
            errors.len(),
            who.id
        ),
    );
    p.errors = errors.into_iter().take(MAX_LISTED_ERRORS).collect();
    Err(p)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), Problem> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    // curl's `-d` sends application/x-www-form-urlencoded by default; the
    // body is still parsed as JSON, so accept it rather than puzzle users.
    if essence == "application/json"
        || essence.ends_with("+json")
        || essence == "application/x-www-form-urlencoded"
    {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the traces as application/json",
        ))
    }
}

/// Whole body → typed traces, or a problem listing every invalid trace.
fn parse_body(st: &AppState, bytes: &[u8]) -> Result<Vec<Trace>, Problem> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let raws: Vec<&RawValue> = match first {
        Some(b'[') => match serde_json::from_slice::<Bounded<'_>>(bytes) {
            Ok(b) => b.0,
            Err(e) if e.to_string().starts_with(TOO_MANY) => {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-many-traces",
                    "Too many traces",
                    format!("more than {MAX_BATCH} traces in one request; split it"),
                ));
            }
            Err(e) => return Err(not_json(e)),
        },
        Some(b'{') => vec![serde_json::from_slice(bytes).map_err(not_json)?],
        Some(_) => {
            return Err(Problem::bad_request(
                "not-json",
                "the body must be one trace (a JSON object) or an array of traces",
            ));
        }
        None => return Err(Problem::bad_request("empty-body", "the body is empty")),
    };
    if raws.is_empty() {
        return Err(Problem::bad_request(
            "empty-batch",
            "the array holds no trace",
        ));
    }
    if raws.len() > MAX_BATCH {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-many-traces",
            "Too many traces",
            format!("{} traces in one request; at most {MAX_BATCH}", raws.len()),
        ));
    }
    let mut traces = Vec::with_capacity(raws.len());
    let mut errors: Vec<(usize, TraceError)> = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        match parse_one(st, raw) {
            Ok(t) => traces.push(t),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() {
        return Ok(traces);
    }
    let codes: Vec<&'static str> = errors.iter().map(|(_, e)| e.code()).collect();
    TracesRejected {
        route: "/v1/traces",
        invalid: errors.len(),
        total: raws.len(),
        codes: &codes,
    }
    .emit(&st.metrics);
    let first = &errors[0];
    let detail = if raws.len() == 1 {
        format!("{}; nothing was stored", first.1)
    } else {
        format!(
            "{} of {} traces are invalid (first: trace {}: {}); nothing was stored",
            errors.len(),
            raws.len(),
            first.0,
            first.1
        )
    };
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-trace",
        "Invalid trace",
        detail,
    );
    p.errors = errors
        .into_iter()
        .take(MAX_LISTED_ERRORS)
        .map(|(i, e)| TraceProblem {
            trace: i,
            field: e.path.clone(),
            code: e.code(),
            detail: e.detail(),
        })
        .collect();
    Err(p)
}

const TOO_MANY: &str = "registre: too many traces";

/// The top-level array, refused as soon as it holds more than `MAX_BATCH`
/// elements (never a multi-million-element vector from an 8 MiB body).
struct Bounded<'a>(Vec<&'a RawValue>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Bounded<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = Bounded<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of traces")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Bounded<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<&'de RawValue>()? {
                    if out.len() == MAX_BATCH {
                        return Err(serde::de::Error::custom(TOO_MANY));
                    }
                    out.push(x);
                }
                Ok(Bounded(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

fn parse_one(st: &AppState, raw: &RawValue) -> Result<Trace, TraceError> {
    let text = raw.get();
    if text.len() > st.limits.max_trace_bytes {
        return Err(TraceError::new(
            "",
            TraceErrorKind::TooLarge {
                max: st.limits.max_trace_bytes,
            },
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| TraceError::new("", TraceErrorKind::NotJson("invalid JSON".into())))?;
    let trace = parse_trace_value(&value, &st.limits)?;
    if !st.classes.contains(&trace.class) {
        return Err(TraceError::new(
            "class",
            TraceErrorKind::UnknownClass {
                known: st.classes.iter().map(|c| c.as_str().to_owned()).collect(),
            },
        ));
    }
    Ok(trace)
}

fn not_json(e: serde_json::Error) -> Problem {
    let pos = registre_model::json_error_position(&e);
    Problem::bad_request("not-json", format!("the body is not valid JSON: {pos}"))
}
