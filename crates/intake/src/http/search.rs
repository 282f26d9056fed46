//! `GET /v1/traces`: search, newest first, cursor paging.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use registre_model::{Action, ClassName, parse_occurred_at};
use registre_store::{Cursor, Query, SearchError, StoredRecord};
use serde::Serialize;

use super::{AppState, Problem};

/// Default and largest page size.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

const PARAMS: &[&str] = &[
    "actor",
    "mailbox",
    "patient",
    "action",
    "class",
    "since",
    "until",
    "occurred_since",
    "occurred_until",
    "limit",
    "cursor",
    "proofs",
];

#[derive(Serialize)]
struct PageBody {
    traces: Vec<Hit>,
    next: Option<String>,
    /// With `proofs=true`: the signed checkpoint each proof leads to, by log.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    checkpoints: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Hit {
    #[serde(flatten)]
    record: StoredRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    proof: Option<ProofBody>,
}

/// An RFC 6962 inclusion proof of the trace in the tree of `size` leaves,
/// whose signed checkpoint is in the page's `checkpoints`.
#[derive(Serialize)]
struct ProofBody {
    size: u64,
    hashes: Vec<String>,
}

pub async fn search_traces(
    State(st): State<Arc<AppState>>,
    axum::Extension(who): axum::Extension<registre_access::Principal>,
    RawQuery(raw): RawQuery,
) -> Response {
    let raw = raw.as_deref().unwrap_or("");
    let with_proofs = form_urlencoded::parse(raw.as_bytes())
        .any(|(k, v)| k == "proofs" && (v == "true" || v == "1"));
    let q = match parse_query(&st, raw) {
        Ok(q) => q,
        Err(p) => return p.into_response(),
    };
    match st.store.search(q).await {
        Ok(page) => {
            let next = page.next.map(|c| c.encode());
            let mut checkpoints = BTreeMap::new();
            let mut hits = Vec::with_capacity(page.traces.len());
            if with_proofs {
                // One checkpoint per log, covering the newest trace of the page.
                let mut newest: BTreeMap<String, u64> = BTreeMap::new();
                for r in &page.traces {
                    let e = newest.entry(r.trace.log.as_str().to_owned()).or_default();
                    *e = (*e).max(r.trace.index);
                }
                let mut sizes = BTreeMap::new();
                for (log, index) in newest {
                    match super::integrity::covering_checkpoint(&st, &log, index).await {
                        Ok(cp) => {
                            sizes.insert(log.clone(), cp.size);
                            checkpoints.insert(log, cp.note);
                        }
                        Err(p) => return p.into_response(),
                    }
                }
                for record in page.traces {
                    let log = record.trace.log.as_str().to_owned();
                    let size = sizes.get(&log).copied().unwrap_or(0);
                    let proof = match st
                        .store
                        .inclusion_proof(&log, record.trace.index, size)
                        .await
                    {
                        Ok(h) => ProofBody {
                            size,
                            hashes: super::integrity::b64(&h),
                        },
                        Err(e) => return super::integrity::integrity_problem(e).into_response(),
                    };
                    hits.push(Hit {
                        record,
                        proof: Some(proof),
                    });
                }
            } else {
                hits.extend(page.traces.into_iter().map(|record| Hit {
                    record,
                    proof: None,
                }));
            }
            // The search itself is a trace; no trace, no answer.
            if let Err(p) = super::access_log::record(
                &st,
                &who,
                registre_model::Action::Recherche,
                "/v1/traces",
                raw,
                200,
                format!("{} traces returned", hits.len()),
            )
            .await
            {
                return p.into_response();
            }
            axum::Json(PageBody {
                traces: hits,
                next,
                checkpoints,
            })
            .into_response()
        }
        Err(SearchError::BadCursor(why)) => Problem::bad_request(
            "bad-cursor",
            format!("invalid cursor ({why}); pass the `next` value of the previous page as is"),
        )
        .into_response(),
        Err(SearchError::UnknownClass(c)) => {
            Problem::bad_request("unknown-class", format!("unknown class `{c}`")).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "search failed");
            Problem::unavailable(format!("the search could not read the journal: {e}"))
                .into_response()
        }
    }
}

/// Parses and checks the query string.
pub fn parse_query(st: &AppState, raw: &str) -> Result<Query, Problem> {
    let mut q = Query {
        limit: DEFAULT_LIMIT,
        ..Query::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        if !PARAMS.contains(&k.as_ref()) {
            return Err(Problem::bad_request(
                "unknown-parameter",
                format!("unknown query parameter; accepted: {}", PARAMS.join(", ")),
            ));
        }
        if seen.iter().any(|s| *s == k) {
            return Err(Problem::bad_request(
                "repeated-parameter",
                format!("query parameter `{k}` is given twice"),
            ));
        }
        seen.push(k.to_string());
        if v.len() > 4096 {
            return Err(Problem::bad_request(
                "parameter-too-long",
                format!("query parameter `{k}` is too long"),
            ));
        }
        let v = v.into_owned();
        match k.as_ref() {
            "actor" => q.actor = Some(v),
            "mailbox" => q.mailbox = Some(v),
            "patient" => q.patient = Some(v),
            "action" => {
                q.action = Some(Action::parse(&v).ok_or_else(|| {
                    Problem::bad_request(
                        "unknown-action",
                        format!(
                            "unknown action; accepted: {} (or x-…)",
                            registre_model::ACTIONS.join(", ")
                        ),
                    )
                })?)
            }
            "class" => {
                let c = ClassName::new(&v).ok().filter(|c| st.classes.contains(c));
                q.class = Some(c.ok_or_else(|| {
                    Problem::bad_request(
                        "unknown-class",
                        format!(
                            "unknown class; configured: {}",
                            st.classes
                                .iter()
                                .map(|c| c.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?)
            }
            "since" => q.since = Some(time_param("since", &v)?),
            "until" => q.until = Some(time_param("until", &v)?),
            "occurred_since" => q.occurred_since = Some(time_param("occurred_since", &v)?),
            "occurred_until" => q.occurred_until = Some(time_param("occurred_until", &v)?),
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Problem::bad_request(
                            "bad-limit",
                            format!("`limit` must be an integer from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            "proofs" if !matches!(v.as_str(), "true" | "false" | "1" | "0") => {
                return Err(Problem::bad_request(
                    "bad-parameter",
                    "`proofs` is true or false",
                ));
            }
            "cursor" => {
                q.cursor = Some(Cursor::decode(&v).map_err(|e| {
                    Problem::bad_request(
                        "bad-cursor",
                        format!("{e}; pass the `next` value of the previous page as is"),
                    )
                })?)
            }
            _ => {}
        }
    }
    Ok(q)
}

fn time_param(name: &str, v: &str) -> Result<i64, Problem> {
    let ts = parse_occurred_at(v).ok_or_else(|| {
        Problem::bad_request(
            "bad-time",
            format!(
                "`{name}` must be an RFC 3339 date-time with an offset, e.g. 2026-11-28T00:00:00+01:00 or 2026-11-27T23:00:00Z"
            ),
        )
    })?;
    Ok(ts.as_microsecond())
}
