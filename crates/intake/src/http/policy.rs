//! `GET /v1/policy` (auditeur) and `PUT /v1/policy/{class}` (admin): the
//! retention of each class. A change is traced (action `politique`, old and
//! new value) before it is applied; a change that cannot be traced does not
//! happen.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use registre_access::Principal;
use registre_model::{Action, Retention};
use serde::Deserialize;

use super::access_log::record;
use super::{AppState, Problem};

pub async fn show(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Response {
    let classes = st.policy.classes();
    if let Err(p) = record(
        &st,
        &who,
        Action::Recherche,
        "/v1/policy",
        "",
        200,
        format!("{} classes", classes.len()),
    )
    .await
    {
        return p.into_response();
    }
    axum::Json(serde_json::json!({
        "classes": classes,
        "history": st.policy.history(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRetention {
    /// e.g. `6 months`, `1 year`, `20 years`.
    retention: String,
}

pub async fn set(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(class): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: SetRetention = match super::json_object(&body) {
        Some(r) => r,
        None => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-policy",
                "Invalid policy change",
                "expected {\"retention\": \"6 months\"} (units: days, weeks, months, years)",
            )
            .into_response();
        }
    };
    let retention = match Retention::parse(&req.retention) {
        Ok(r) => r,
        Err(e) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-policy",
                "Invalid policy change",
                e.to_string(),
            )
            .into_response();
        }
    };
    let _serial = st.policy.lock_changes().await;
    let change = match st.policy.prepare(&class, retention, &who.id) {
        Ok(c) => c,
        Err(e) => {
            return Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-class",
                "Unknown class",
                e.to_string(),
            )
            .into_response();
        }
    };
    let summary = format!(
        "retention of {class}: {} -> {}",
        change.previous, change.retention
    );
    let route = format!("/v1/policy/{class}");
    let query = format!("retention={retention}");
    if let Err(p) = record(&st, &who, Action::Politique, &route, &query, 200, summary).await {
        return p.into_response();
    }
    let policy = st.policy.clone();
    let applied = {
        let change = change.clone();
        // Writes and fsyncs policy.json: off the async threads.
        tokio::task::spawn_blocking(move || policy.apply(change))
            .await
            .unwrap_or_else(|e| {
                Err(registre_policy::PolicyError::Io {
                    path: "policy.json".into(),
                    source: std::io::Error::other(e.to_string()),
                })
            })
    };
    match applied {
        Ok(c) => {
            if let Some(w) = &c.warning {
                tracing::warn!(class = %class, retention = %retention, "{w}");
            }
            axum::Json(serde_json::json!({ "class": c, "previous": change.previous }))
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot persist a policy change");
            Problem::unavailable(format!("the policy change could not be saved: {e}"))
                .into_response()
        }
    }
}
