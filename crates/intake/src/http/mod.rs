//! The HTTP JSON API.
//!
//! | route | what | auth |
//! |---|---|---|
//! | `POST /v1/traces` | one trace or an array; `201` after durability | bearer |
//! | `GET /v1/traces` | search, newest first, cursor paging | bearer |
//! | `GET /v1/logs` | each log's origin, size, checkpoint size, verifier key | bearer |
//! | `GET /v1/proofs/inclusion` | RFC 6962 inclusion proof | bearer |
//! | `GET /v1/proofs/consistency` | RFC 6962 consistency proof | bearer |
//! | `GET /logs/{log}/checkpoint` | latest signed checkpoint (C2SP) | none |
//! | `GET /logs/{log}/tile/…` | C2SP tlog-tiles and entry bundles | none |
//! | `POST /fhir/AuditEvent`, `POST /fhir` | FHIR R4 AuditEvent create, batch/transaction Bundle (ITI-20) | bearer |
//! | `GET /fhir/AuditEvent/{id}`, `GET /fhir/AuditEvent` | FHIR read, ITI-81 search | bearer |
//! | `GET /fhir/metadata` | the FHIR CapabilityStatement | none |
//! | `GET /syslogsearch` | ITI-82: traces as syslog messages (JSON) | bearer |
//! | `GET /healthz` | liveness and readiness | none |
//! | `GET /metrics` | Prometheus text | none |
//! | `GET /openapi.json` | OpenAPI 3.1 of this API | none |

mod access_log;
pub mod auth;
mod fhir;
mod integrity;
mod keys;
mod policy;
mod problem;
pub mod retention;
mod search;
mod traces;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use registre_model::{ClassName, Limits};
use registre_store::Store;
use tokio::net::TcpListener;

pub use problem::{Problem, TraceProblem};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// Largest request body (`POST /v1/traces`).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most traces in one request.
pub const MAX_BATCH: usize = 10_000;

/// Decodes a JSON *object* body (serde's derived structs would also take an
/// array); `None` when it is not one.
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// A policy with no class (tests and benchmarks that do not use it).
pub fn empty_policy() -> Arc<registre_policy::Policy> {
    // In memory, no file: loading cannot fail.
    match registre_policy::Policy::load(Vec::new(), None) {
        Ok(p) => Arc::new(p),
        Err(e) => unreachable!("an in-memory policy cannot fail to load: {e}"),
    }
}

/// What every handler shares.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub classes: Vec<ClassName>,
    pub limits: Limits,
    /// The credentials accepted on `/v1` routes.
    pub auth: Arc<auth::Authenticator>,
    /// Retention per class.
    pub policy: Arc<registre_policy::Policy>,
    pub metrics: Arc<crate::Metrics>,
}

/// The whole HTTP API.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/traces",
            get(search::search_traces).post(traces::post_traces),
        )
        .route("/v1/logs", get(integrity::logs))
        .route("/v1/proofs/inclusion", get(integrity::inclusion))
        .route("/v1/proofs/consistency", get(integrity::consistency))
        .route("/v1/exports", axum::routing::post(keys::record_export))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route("/v1/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/v1/policy", get(policy::show))
        .route("/v1/policy/{class}", axum::routing::put(policy::set))
        .route("/v1/purge", axum::routing::post(retention::purge))
        .route(
            "/v1/holds",
            get(retention::list_holds).post(retention::add_hold),
        )
        .route(
            "/v1/holds/{id}",
            axum::routing::delete(retention::release_hold),
        )
        .route("/fhir/AuditEvent", get(fhir::search).post(fhir::create))
        .route("/fhir/AuditEvent/{id}", get(fhir::read))
        .route("/fhir", axum::routing::post(fhir::post_bundle))
        .route("/syslogsearch", get(fhir::syslog_search))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_role,
        ));
    Router::new()
        .merge(v1)
        .route("/logs/{log}/checkpoint", get(integrity::checkpoint))
        .route("/logs/{log}/tile/{*rest}", get(integrity::tile))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/fhir/metadata", get(fhir::metadata))
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(middleware::from_fn(fhir::outcomes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // hyper directly (not `axum::serve`): a task per connection, TCP_NODELAY
    // so small answers (201s) leave at once, and a header read timeout so a
    // silent client cannot hold a connection open.
    crate::tls::serve_plain(listener, router(state), shutdown).await
}

/// Counts and times every request by route template (never by raw path).
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route: &'static str = match req.extensions().get::<MatchedPath>().map(|m| m.as_str()) {
        Some("/v1/traces") => "/v1/traces",
        Some("/v1/logs") => "/v1/logs",
        Some("/v1/proofs/inclusion") => "/v1/proofs/inclusion",
        Some("/v1/proofs/consistency") => "/v1/proofs/consistency",
        Some("/v1/exports") => "/v1/exports",
        Some("/v1/keys") => "/v1/keys",
        Some("/v1/keys/{id}") => "/v1/keys/{id}",
        Some("/v1/policy") => "/v1/policy",
        Some("/v1/policy/{class}") => "/v1/policy/{class}",
        Some("/v1/purge") => "/v1/purge",
        Some("/v1/holds") => "/v1/holds",
        Some("/v1/holds/{id}") => "/v1/holds/{id}",
        Some("/logs/{log}/checkpoint") => "/logs/{log}/checkpoint",
        Some("/logs/{log}/tile/{*rest}") => "/logs/{log}/tile",
        Some("/healthz") => "/healthz",
        Some("/metrics") => "/metrics",
        Some("/openapi.json") => "/openapi.json",
        Some("/fhir/AuditEvent") => "/fhir/AuditEvent",
        Some("/fhir/AuditEvent/{id}") => "/fhir/AuditEvent/{id}",
        Some("/fhir") => "/fhir",
        Some("/fhir/metadata") => "/fhir/metadata",
        Some("/syslogsearch") => "/syslogsearch",
        _ => "other",
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .request(route, resp.status().as_u16(), start.elapsed().as_secs_f64());
    resp
}

async fn healthz(State(st): State<Arc<AppState>>) -> Response {
    let stats = match st.store.stats().await {
        Ok(s) => s,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "error": e.to_string()})),
            )
                .into_response();
        }
    };
    let logs: Vec<_> = stats
        .into_iter()
        .map(|s| serde_json::json!({"log": s.log, "size": s.size}))
        .collect();
    axum::Json(serde_json::json!({"status": "ok", "logs": logs})).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    // A store that cannot answer (PostgreSQL down) renders no log sizes.
    let stats = st.store.stats().await.unwrap_or_default();
    let body = st.metrics.render(&stats);
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn openapi() -> Response {
    let mut r = OPENAPI_JSON.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
