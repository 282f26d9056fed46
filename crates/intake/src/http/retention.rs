//! Purge and legal holds (admin):
//! - `POST /v1/purge` (`{"dry_run": true}` to only report);
//! - `GET /v1/holds`, `POST /v1/holds`, `DELETE /v1/holds/{id}`.
//!
//! Each purge that destroys anything writes one trace per log (class
//! `technique`, action `purge`: which log, which index range, how many
//! traces, how many held, and why) *before* it destroys: a purge that
//! cannot be traced does not happen. Each hold change is a trace (action
//! `politique`) written before it is applied.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use registre_access::{AuthMethod, Principal, Role};
use registre_model::{Action, ClassName};
use registre_store::{Hold, HoldError, HoldFilter, PurgeReport, PurgeRequest};
use serde::Deserialize;

use super::access_log::{record, record_in};
use super::{AppState, Problem};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PurgeBody {
    #[serde(default)]
    dry_run: bool,
}

pub async fn purge(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    let req: PurgeBody = if body.iter().all(u8::is_ascii_whitespace) {
        PurgeBody::default()
    } else {
        match super::json_object(&body) {
            Some(r) => r,
            None => {
                return Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-purge",
                    "Invalid purge request",
                    "expected no body, or {\"dry_run\": true|false}",
                )
                .into_response();
            }
        }
    };
    match run_purge(&st, &who, req.dry_run, "on demand").await {
        Ok(report) => axum::Json(report).into_response(),
        Err(p) => p.into_response(),
    }
}

/// The retention of every class, from the policy in force.
fn retention(st: &AppState) -> Vec<(ClassName, registre_model::Retention)> {
    st.policy
        .classes()
        .into_iter()
        .filter(|c| st.classes.contains(&c.class))
        .map(|c| (c.class, c.retention))
        .collect()
}

/// Plans (dry run), traces each log's purge, then purges. Used by
/// `POST /v1/purge` and by the scheduler.
pub async fn run_purge(
    st: &AppState,
    who: &Principal,
    dry_run: bool,
    why: &str,
) -> Result<PurgeReport, Problem> {
    let fail = |e: registre_store::PurgeError| Problem::unavailable(e.to_string());
    let plan = st
        .store
        .purge(PurgeRequest {
            retention: retention(st),
            dry_run: true,
            ..PurgeRequest::default()
        })
        .await
        .map_err(fail)?;
    if dry_run {
        record(
            st,
            who,
            Action::Recherche,
            "/v1/purge",
            "dry_run=true",
            200,
            format!("purge dry run: {} traces would go", plan.purged()),
        )
        .await?;
        return Ok(plan);
    }
    for l in plan.logs.iter().filter(|l| l.segments > 0) {
        let range = format!("{}..{}", l.first.unwrap_or(0), l.end.unwrap_or(0));
        record_in(
            st,
            ClassName::TECHNIQUE,
            who,
            Action::Purge,
            "/v1/purge",
            &format!("log={}&range={range}", l.log),
            200,
            format!(
                "{why}: log {} indexes {range}: {} traces past retention ({}, received before {}) \
                 destroyed with their segments' keys; {} kept by legal holds",
                l.log, l.purged, l.retention, l.cutoff, l.held
            ),
        )
        .await?;
    }
    let report = st
        .store
        .purge(PurgeRequest {
            retention: retention(st),
            dry_run: false,
            ..PurgeRequest::default()
        })
        .await
        .map_err(fail)?;
    // Time moves: anything the trace above did not announce is traced now.
    for (done, planned) in report.logs.iter().zip(&plan.logs) {
        if done.purged != planned.purged || done.held != planned.held {
            let range = format!("{}..{}", done.first.unwrap_or(0), done.end.unwrap_or(0));
            let _ = record_in(
                st,
                ClassName::TECHNIQUE,
                who,
                Action::Purge,
                "/v1/purge",
                &format!("log={}&range={range}", done.log),
                200,
                format!(
                    "{why} (final count): log {} indexes {range}: {} traces destroyed, {} kept by legal holds",
                    done.log, done.purged, done.held
                ),
            )
            .await;
        }
    }
    if report.purged() > 0 {
        tracing::info!(
            purged = report.purged(),
            held = report.held(),
            "purge: traces past retention destroyed"
        );
    }
    Ok(report)
}

/// Runs a purge every `every` (the first one `every` after start).
pub fn spawn_purge_scheduler(st: Arc<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    let who = Principal {
        id: "registre/purge-scheduler".into(),
        auth: "system".into(),
        roles: vec![Role::Admin],
        trusted_proxy: false,
        method: AuthMethod::ApiKey {
            key_id: "scheduler".into(),
        },
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(p) = run_purge(&st, &who, false, "scheduled purge").await {
                tracing::error!(problem = %p.detail, "scheduled purge failed; retrying at the next interval");
            }
        }
    })
}

pub async fn list_holds(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Response {
    let holds = match st.store.holds().await {
        Ok(h) => h,
        Err(e) => return hold_error(e),
    };
    let active = holds.iter().filter(|h| h.active()).count();
    if let Err(p) = record(
        &st,
        &who,
        Action::Recherche,
        "/v1/holds",
        "",
        200,
        format!("{} legal holds ({active} active)", holds.len()),
    )
    .await
    {
        return p.into_response();
    }
    axum::Json(serde_json::json!({ "holds": holds })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    reason: String,
    #[serde(flatten)]
    filter: HoldFilter,
}

fn invalid_hold(detail: impl Into<String>) -> Response {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-hold",
        "Invalid legal hold",
        detail,
    )
    .into_response()
}

pub async fn add_hold(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    let Some(req) = super::json_object::<NewHold>(&body) else {
        return invalid_hold(
            "expected {\"reason\": \"…\", and search filters: actor, patient, mailbox, action, \
             class, since, until}",
        );
    };
    let reason: String = req
        .reason
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if reason.is_empty() || reason.chars().count() > 500 {
        return invalid_hold("`reason` must say why, in 1 to 500 characters");
    }
    if let Err(e) = req.filter.to_query() {
        return invalid_hold(e);
    }
    let mut id = [0u8; 4];
    if registre_store::crypto::random(&mut id).is_err() {
        return Problem::unavailable("no randomness available").into_response();
    }
    let hold = Hold {
        id: format!("h-{}", registre_store::crypto::hex(&id)),
        reason,
        filter: req.filter,
        created_by: who.id.clone(),
        created_at: jiff::Timestamp::now().to_string(),
        released_by: None,
        released_at: None,
    };
    let filters = serde_json::to_string(&hold.filter).unwrap_or_default();
    if let Err(p) = record(
        &st,
        &who,
        Action::Politique,
        "/v1/holds",
        &format!("id={}", hold.id),
        201,
        format!(
            "legal hold {} placed on {filters}: {}",
            hold.id, hold.reason
        ),
    )
    .await
    {
        return p.into_response();
    }
    match st.store.add_hold(hold).await {
        Ok(h) => (StatusCode::CREATED, axum::Json(h)).into_response(),
        Err(e) => hold_error(e),
    }
}

pub async fn release_hold(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let holds = match st.store.holds().await {
        Ok(h) => h,
        Err(e) => return hold_error(e),
    };
    let Some(h) = holds.into_iter().find(|h| h.id == id) else {
        return hold_error(HoldError::Unknown(id));
    };
    if !h.active() {
        return hold_error(HoldError::Released(id));
    }
    if let Err(p) = record(
        &st,
        &who,
        Action::Politique,
        &format!("/v1/holds/{id}"),
        "",
        200,
        format!(
            "legal hold {id} released (placed by {}: {})",
            h.created_by, h.reason
        ),
    )
    .await
    {
        return p.into_response();
    }
    match st
        .store
        .release_hold(id, who.id.clone(), jiff::Timestamp::now().to_string())
        .await
    {
        Ok(h) => axum::Json(h).into_response(),
        Err(e) => hold_error(e),
    }
}

fn hold_error(e: HoldError) -> Response {
    match e {
        HoldError::Unknown(_) => Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-hold",
            "Unknown legal hold",
            e.to_string(),
        )
        .into_response(),
        HoldError::Released(_) | HoldError::Duplicate(_) => Problem::new(
            StatusCode::CONFLICT,
            "hold-conflict",
            "Legal hold conflict",
            e.to_string(),
        )
        .into_response(),
        HoldError::Invalid(d) => invalid_hold(d),
        _ => Problem::unavailable(e.to_string()).into_response(),
    }
}
