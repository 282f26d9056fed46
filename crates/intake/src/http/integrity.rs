//! The integrity surface (DESIGN §4): public C2SP tlog-tiles and checkpoints
//! under `/logs/<log>/…` (no credential: they reveal nothing personal), and
//! under `/v1` the list of logs and the inclusion and consistency proofs.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use registre_log::merkle::Hash;
use registre_store::IntegrityError;
use serde::Serialize;

use super::{AppState, Problem};

/// `GET /logs/{log}/checkpoint`: the latest signed checkpoint.
pub async fn checkpoint(State(st): State<Arc<AppState>>, Path(log): Path<String>) -> Response {
    let r = match st.store.checkpoint(&log, false).await {
        Ok(None) => st.store.checkpoint(&log, true).await,
        other => other,
    };
    match r {
        Ok(Some(cp)) => {
            let mut resp = cp.note.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        Ok(None) => Problem::new(
            StatusCode::NOT_FOUND,
            "no-checkpoint",
            "No checkpoint",
            "this log has no checkpoint yet",
        )
        .into_response(),
        Err(e) => integrity_problem(e).into_response(),
    }
}

/// `GET /logs/{log}/tile/{*path}`: a tile or an entry bundle.
pub async fn tile(
    State(st): State<Arc<AppState>>,
    Path((log, rest)): Path<(String, String)>,
) -> Response {
    let path = format!("tile/{rest}");
    let tile = match registre_log::tile::parse_path(&path) {
        Ok(t) => t,
        Err(e) => {
            return Problem::new(
                StatusCode::NOT_FOUND,
                "bad-tile-path",
                "Not a tile",
                format!("not a C2SP tlog-tiles path: {e}"),
            )
            .into_response();
        }
    };
    match st.store.tile(&log, tile).await {
        Ok(bytes) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            // Tiles never change once they exist (a partial tile is a prefix
            // of its full tile): cache them forever.
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            resp
        }
        Err(IntegrityError::OutOfRange(why)) => {
            Problem::new(StatusCode::NOT_FOUND, "no-such-tile", "No such tile", why).into_response()
        }
        Err(e) => integrity_problem(e).into_response(),
    }
}

#[derive(Serialize)]
struct LogsBody {
    verifier_key: String,
    logs: Vec<LogEntry>,
}

#[derive(Serialize)]
struct LogEntry {
    log: String,
    origin: String,
    size: u64,
    checkpoint_size: u64,
    checkpoint_url: String,
    verifier_key: String,
}

/// `GET /v1/logs`.
pub async fn logs(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<registre_access::Principal>,
) -> Response {
    if let Err(p) = super::access_log::record(
        &st,
        &who,
        registre_model::Action::Recherche,
        "/v1/logs",
        "",
        200,
        "list of logs".into(),
    )
    .await
    {
        return p.into_response();
    }
    let vkey = st.store.verifier_key();
    let logs = match st.store.logs().await {
        Ok(l) => l,
        Err(e) => return integrity_problem(e).into_response(),
    };
    let logs = logs
        .into_iter()
        .map(|l| LogEntry {
            checkpoint_url: format!("/logs/{}/checkpoint", l.log),
            log: l.log.as_str().to_owned(),
            origin: l.origin,
            size: l.size,
            checkpoint_size: l.checkpoint_size,
            verifier_key: vkey.clone(),
        })
        .collect();
    axum::Json(LogsBody {
        verifier_key: vkey,
        logs,
    })
    .into_response()
}

#[derive(Serialize)]
struct InclusionBody {
    log: String,
    index: u64,
    size: u64,
    hashes: Vec<String>,
    /// The signed checkpoint of `size`, when `size` is a checkpoint's.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
}

/// `GET /v1/proofs/inclusion?log=&index=[&size=]`: without `size`, against
/// the latest checkpoint (issued on demand when the trace is newer).
pub async fn inclusion(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<registre_access::Principal>,
    RawQuery(q): RawQuery,
) -> Response {
    let params = match Params::parse(q.as_deref().unwrap_or(""), &["log", "index", "size"]) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let r = async {
        let log = params.required("log")?;
        let index = params.number("index")?.ok_or_else(|| missing("index"))?;
        let (size, checkpoint) = match params.number("size")? {
            Some(size) => (size, None),
            None => {
                let cp = covering_checkpoint(&st, &log, index).await?;
                (cp.size, Some(cp.note))
            }
        };
        let hashes = st
            .store
            .inclusion_proof(&log, index, size)
            .await
            .map_err(integrity_problem)?;
        Ok::<_, Problem>(InclusionBody {
            log,
            index,
            size,
            hashes: b64(&hashes),
            checkpoint,
        })
    };
    match r.await {
        Ok(body) => {
            let summary = format!(
                "inclusion proof of {} in {} at size {}",
                body.index, body.log, body.size
            );
            match super::access_log::record(
                &st,
                &who,
                registre_model::Action::Recherche,
                "/v1/proofs/inclusion",
                q.as_deref().unwrap_or(""),
                200,
                summary,
            )
            .await
            {
                Ok(()) => axum::Json(body).into_response(),
                Err(p) => p.into_response(),
            }
        }
        Err(p) => p.into_response(),
    }
}

#[derive(Serialize)]
struct ConsistencyBody {
    log: String,
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

/// `GET /v1/proofs/consistency?log=&from=&to=`.
pub async fn consistency(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<registre_access::Principal>,
    RawQuery(q): RawQuery,
) -> Response {
    let params = match Params::parse(q.as_deref().unwrap_or(""), &["log", "from", "to"]) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let r = async {
        let log = params.required("log")?;
        let from = params.number("from")?.ok_or_else(|| missing("from"))?;
        let to = params.number("to")?.ok_or_else(|| missing("to"))?;
        let hashes = st
            .store
            .consistency_proof(&log, from, to)
            .await
            .map_err(integrity_problem)?;
        Ok::<_, Problem>(ConsistencyBody {
            log,
            from,
            to,
            hashes: b64(&hashes),
        })
    }
    .await;
    match r {
        Ok(body) => {
            let summary = format!(
                "consistency proof of {} from {} to {}",
                body.log, body.from, body.to
            );
            match futures_record(&st, &who, q.as_deref().unwrap_or(""), summary).await {
                Ok(()) => axum::Json(body).into_response(),
                Err(p) => p.into_response(),
            }
        }
        Err(p) => p.into_response(),
    }
}

async fn futures_record(
    st: &AppState,
    who: &registre_access::Principal,
    q: &str,
    summary: String,
) -> Result<(), Problem> {
    super::access_log::record(
        st,
        who,
        registre_model::Action::Recherche,
        "/v1/proofs/consistency",
        q,
        200,
        summary,
    )
    .await
}

/// The latest checkpoint of `log`, issuing a new one if `index` is newer.
pub async fn covering_checkpoint(
    st: &AppState,
    log: &str,
    index: u64,
) -> Result<registre_store::SignedCheckpoint, Problem> {
    let size = st
        .store
        .logs()
        .await
        .map_err(integrity_problem)?
        .into_iter()
        .find(|l| l.log.as_str() == log)
        .map(|l| l.size)
        .ok_or_else(|| {
            integrity_problem(registre_store::IntegrityError::UnknownLog(log.to_owned()))
        })?;
    if index >= size {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-index",
            "No such trace",
            format!("log {log} has no trace at index {index}"),
        ));
    }
    let cp = st
        .store
        .checkpoint(log, false)
        .await
        .map_err(integrity_problem)?;
    match cp {
        Some(cp) if cp.size > index => Ok(cp),
        _ => st
            .store
            .checkpoint(log, true)
            .await
            .map_err(integrity_problem)?
            .filter(|cp| cp.size > index)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "no-such-index",
                    "No such trace",
                    format!("log {log} has no trace at index {index}"),
                )
            }),
    }
}

pub fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

pub fn integrity_problem(e: IntegrityError) -> Problem {
    match e {
        IntegrityError::UnknownLog(l) => Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-log",
            "Unknown log",
            format!("unknown log `{l}`"),
        ),
        IntegrityError::OutOfRange(why) => Problem::bad_request("out-of-range", why),
        e => {
            tracing::error!(error = %e, "integrity request failed");
            Problem::unavailable(e.to_string())
        }
    }
}

fn missing(name: &str) -> Problem {
    Problem::bad_request(
        "missing-parameter",
        format!("query parameter `{name}` is required"),
    )
}

struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: &str, allowed: &[&str]) -> Result<Params, Problem> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(Problem::bad_request(
                    "unknown-parameter",
                    format!("unknown query parameter; accepted: {}", allowed.join(", ")),
                ));
            }
            if out.iter().any(|(x, _)| *x == k) {
                return Err(Problem::bad_request(
                    "repeated-parameter",
                    format!("query parameter `{k}` is given twice"),
                ));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    fn required(&self, k: &str) -> Result<String, Problem> {
        self.get(k).map(str::to_owned).ok_or_else(|| missing(k))
    }

    fn number(&self, k: &str) -> Result<Option<u64>, Problem> {
        self.get(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    Problem::bad_request(
                        "bad-parameter",
                        format!("`{k}` must be a non-negative integer"),
                    )
                })
            })
            .transpose()
    }
}
