//! Credential management (admin) and the export record (auditeur). Every
//! call writes an applicative trace; creating a credential with admin rights
//! also raises an alert (a WARN log line and a counter).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use registre_access::{Principal, Role};
use registre_model::Action;
use serde::{Deserialize, Serialize};

use super::access_log::record;
use super::{AppState, Problem};

#[derive(Serialize)]
struct KeyView {
    id: String,
    name: String,
    role: Role,
    trusted_proxy: bool,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

fn view(k: registre_access::ApiKey) -> KeyView {
    KeyView {
        id: k.id,
        name: k.name,
        role: k.role,
        trusted_proxy: k.trusted_proxy,
        created_at: k.created_at,
        expires_at: k.expires_at,
        revoked_at: k.revoked_at,
    }
}

/// `GET /v1/keys`: every API key, never a secret.
pub async fn list(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
) -> Response {
    let keys: Vec<KeyView> = st.auth.keys.list().into_iter().map(view).collect();
    if let Err(p) = record(
        &st,
        &who,
        Action::Recherche,
        "/v1/keys",
        "",
        200,
        format!("{} keys listed", keys.len()),
    )
    .await
    {
        return p.into_response();
    }
    axum::Json(serde_json::json!({ "keys": keys })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    role: Role,
    #[serde(default)]
    trusted_proxy: bool,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
}

/// `POST /v1/keys`: creates a key; its secret is in this answer only.
pub async fn create(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    let req: CreateKey = match super::json_object(&body) {
        Some(r) => r,
        None => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-key-request",
                "Invalid key request",
                "expected {\"name\": …, \"role\": \"producteur\"|\"auditeur\"|\"admin\", \"trusted_proxy\": bool, \"expires_at\": RFC 3339}",
            )
            .into_response();
        }
    };
    let expires = match req.expires_at.as_deref().map(str::parse::<jiff::Timestamp>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(_)) => {
            return Problem::bad_request("bad-time", "`expires_at` must be an RFC 3339 date-time")
                .into_response();
        }
    };
    let created = match st
        .auth
        .keys
        .create(&req.name, req.role, req.trusted_proxy, expires)
    {
        Ok(k) => k,
        Err(e) => {
            return Problem::bad_request("invalid-key-request", e.to_string()).into_response();
        }
    };
    if req.role == Role::Admin || req.trusted_proxy {
        tracing::warn!(
            key_id = %created.key.id,
            role = %created.key.role,
            trusted_proxy = created.key.trusted_proxy,
            "ALERT: a credential with rights to modify the journal was created"
        );
        st.metrics.admin_credential_created();
    }
    let summary = format!(
        "key {} created for {} with role {}{}",
        created.key.id,
        created.key.name,
        created.key.role,
        if created.key.trusted_proxy {
            " (trusted proxy)"
        } else {
            ""
        }
    );
    if let Err(p) = record(&st, &who, Action::Creation, "/v1/keys", "", 201, summary).await {
        // Untraced, so undone: the key must not exist with its secret lost.
        if let Err(e) = st.auth.keys.remove(&created.key.id) {
            tracing::error!(key_id = %created.key.id, error = %e, "cannot undo an untraced key creation");
        }
        return p.into_response();
    }
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "key": view(created.key),
            "secret": created.secret,
            "note": "the secret is shown once and stored only as a hash",
        })),
    )
        .into_response()
}

/// `DELETE /v1/keys/{id}`.
pub async fn revoke(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    if !st.auth.keys.contains(&id) {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-key",
            "Unknown key",
            format!("no API key with id `{id}`"),
        )
        .into_response();
    }
    // Traced first: a revocation that cannot be traced does not happen.
    let route = format!("/v1/keys/{id}");
    if let Err(p) = record(
        &st,
        &who,
        Action::Suppression,
        &route,
        "",
        200,
        format!("key {id} revoked"),
    )
    .await
    {
        return p.into_response();
    }
    match st.auth.keys.revoke(&id) {
        Ok(k) => axum::Json(serde_json::json!({ "key": view(k) })).into_response(),
        Err(e) => Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-key",
            "Unknown key",
            e.to_string(),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRecord {
    /// The filters of the export, as query text.
    filters: String,
    traces: u64,
    manifest_sha256: String,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/exports`: an export bundle was made; record it in the journal
/// (class applicative, action export) under the caller's name.
pub async fn record_export(
    State(st): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    let req: ExportRecord = match super::json_object(&body) {
        Some(r) => r,
        None => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-export-record",
                "Invalid export record",
                "expected {\"filters\": text, \"traces\": n, \"manifest_sha256\": hex, \"reason\": text}",
            )
            .into_response();
        }
    };
    let hex = req.manifest_sha256.len() == 64
        && req.manifest_sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-export-record",
            "Invalid export record",
            "`manifest_sha256` must be 64 hexadecimal digits",
        )
        .into_response();
    }
    // The filters must be a search query registre understands.
    if let Err(p) = super::search::parse_query(&st, &req.filters) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-export-record",
            "Invalid export record",
            format!("`filters` is not a search query: {}", p.detail),
        )
        .into_response();
    }
    let mut query = req.filters.clone();
    if let Some(r) = &req.reason {
        // Encoded, so a reason cannot pose as a filter.
        query.push_str("&reason=");
        let r: String = r.chars().take(200).collect();
        query.extend(form_urlencoded::byte_serialize(r.as_bytes()));
    }
    let summary = format!(
        "{} traces; manifest sha256 {}",
        req.traces, req.manifest_sha256
    );
    match record(
        &st,
        &who,
        Action::Export,
        "/v1/exports",
        &query,
        201,
        summary,
    )
    .await
    {
        Ok(()) => (
            StatusCode::CREATED,
            axum::Json(serde_json::json!({"recorded": true})),
        )
            .into_response(),
        Err(p) => p.into_response(),
    }
}
