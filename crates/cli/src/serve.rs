//! `registre serve`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use registre_intake::{AppState, Metrics};
use registre_model::Limits;
use registre_store::{EmbeddedOptions, EmbeddedStore, Store};

use crate::CliError;
use crate::config::Config;

const SERVE_HELP: &str = "\
Examples:
  registre serve
      Embedded journal in ./registre-data, HTTP API on 127.0.0.1:7380.
  registre serve --config /etc/registre/registre.toml
  registre serve --data /var/lib/registre --listen 127.0.0.1:8080

On first start the data directory is created and an admin token is written to
<data>/admin-token (mode 0600); every /v1 route needs it as a bearer token:
  curl -H \"Authorization: Bearer $(cat registre-data/admin-token)\" \\
       'http://127.0.0.1:7380/v1/traces?actor=810001234567'

Flags override the configuration file, which overrides the defaults.
Logs go to stderr; REGISTRE_LOG=debug for more.";

/// Run the journal: embedded store + HTTP API.
#[derive(Args)]
#[command(after_help = SERVE_HELP)]
pub struct ServeArgs {
    /// Configuration file (TOML; see registre.toml in the repository).
    /// Default: ./registre.toml when it exists.
    #[arg(long, env = "REGISTRE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default ./registre-data).
    #[arg(long, env = "REGISTRE_DATA")]
    data: Option<PathBuf>,
    /// Address of the HTTP API (default 127.0.0.1:7380).
    #[arg(long, env = "REGISTRE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    allow_plain_http: bool,
    /// Serve HTTPS with this certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Verify client certificates against this CA (PEM): mutual TLS.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate.
    #[arg(long, requires = "client_ca")]
    require_client_cert: bool,
    /// The master key that wraps the data keys (64 hex digits), instead of
    /// <data>/keys/master.key. Keep it apart from the data's backups.
    #[arg(long, env = "REGISTRE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let config_path = args.config.clone().or_else(|| {
        let p = PathBuf::from("registre.toml");
        p.exists().then_some(p)
    });
    let cfg = Config::load(config_path.as_deref())
        .map_err(|e| CliError::with("cannot load the configuration", &e))?;
    let data = args.data.clone().unwrap_or_else(|| cfg.server.data.clone());
    let listen = args.listen.unwrap_or(cfg.server.listen);
    let tls = match (
        args.tls_cert.clone().or(cfg.server.tls_cert.clone()),
        args.tls_key.clone().or(cfg.server.tls_key.clone()),
    ) {
        (Some(cert), Some(key)) => {
            let opts = registre_intake::tls::TlsOptions {
                cert,
                key,
                client_ca: args.client_ca.clone().or(cfg.server.client_ca.clone()),
                require_client_cert: args.require_client_cert || cfg.server.require_client_cert,
            };
            Some(
                registre_intake::tls::server_config(&opts)
                    .map_err(|e| CliError::with("cannot set up TLS", &e))?,
            )
        }
        (None, None) => None,
        _ => {
            return Err(CliError::new(
                "TLS needs both a certificate and its key (--tls-cert and --tls-key)",
            ));
        }
    };
    if tls.is_none()
        && !(listen.ip().is_loopback() || args.allow_plain_http || cfg.server.allow_plain_http)
    {
        return Err(CliError::new(format!(
            "refusing to serve plain HTTP on {listen}, which is not a loopback address: \
             traces are health data. Listen on 127.0.0.1 behind a TLS reverse proxy, or pass \
             --allow-plain-http if the network is protected otherwise"
        )));
    }
    let policies = cfg.class_policies();
    let period = cfg
        .segment_period_secs()
        .map_err(|m| CliError::new(format!("[store] segment_period: {m}")))?;
    let mut opts = EmbeddedOptions::new(policies.iter().map(|p| p.name.clone()).collect());
    opts.segment_period_secs = period;
    opts.segment_periods = cfg.segment_periods();
    opts.master_key_file = args
        .master_key_file
        .clone()
        .or_else(|| cfg.store.master_key_file.clone());
    let purge_every = cfg
        .purge_interval()
        .map_err(|m| CliError::new(format!("[retention] purge_interval: {m}")))?;
    opts.max_segment_bytes = cfg.store.max_segment_mib.max(1) << 20;
    opts.instance = cfg.server.instance.clone();
    opts.checkpoint_interval = std::time::Duration::from_secs(
        crate::config::parse_period(&cfg.store.checkpoint_interval)
            .map_err(|m| CliError::new(format!("[store] checkpoint_interval: {m}")))?,
    );

    let store = tokio::task::block_in_place(|| EmbeddedStore::open(&data, opts)).map_err(|e| {
        CliError::with(format!("cannot open the journal in {}", data.display()), &e)
    })?;
    let token_path = data.join("admin-token");
    let token = admin_token(&token_path)?;
    let keys = registre_access::ApiKeyStore::open(&data)
        .map_err(|e| CliError::with("cannot load the API keys", &e))?;
    if keys.is_empty() {
        // First start with access control: the admin token becomes the
        // first admin key (all-powerful, also a trusted proxy).
        keys.adopt("admin", registre_access::Role::Admin, &token)
            .map_err(|e| CliError::with("cannot register the admin token as a key", &e))?;
        tracing::warn!(
            "ALERT: the bootstrap admin key (admin-token) was registered; create narrower keys with `registre keys create` and revoke it in production"
        );
    } else if keys
        .list()
        .iter()
        .any(|k| k.name == "admin" && k.trusted_proxy && k.revoked_at.is_none())
    {
        tracing::warn!(
            "the bootstrap admin key (admin-token) is still active: revoke it once you have your own keys"
        );
    }
    let mut bearers: Vec<Arc<dyn registre_intake::http::auth::BearerAuthenticator>> = Vec::new();
    if !cfg.access.oidc.is_empty() {
        let names: Vec<String> = cfg.access.oidc.iter().map(|i| i.name.clone()).collect();
        let oidc = registre_access::OidcValidator::new(cfg.access.oidc.clone())
            .map_err(|e| CliError::with("invalid [[access.oidc]] configuration", &e))?;
        if let Err(e) = oidc.prefetch().await {
            tracing::warn!(error = %e, "cannot reach an OIDC issuer yet; tokens will be checked once it answers");
        }
        eprintln!("  OIDC issuers accepted: {}", names.join(", "));
        bearers.push(Arc::new(oidc));
    }
    let auth = Arc::new(registre_intake::http::auth::Authenticator {
        keys: Arc::new(keys),
        bearers,
        certificates: cfg.access.certificates.clone(),
    });

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::with(format!("cannot listen on {listen}"), &e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::with("cannot read the listening address", &e))?;

    let store: Arc<dyn Store> = Arc::new(store);
    let policy = Arc::new(
        registre_policy::Policy::load(
            policies
                .iter()
                .map(|p| registre_policy::ClassPolicy {
                    class: p.name.clone(),
                    retention: p.retention,
                    description: p.description.clone(),
                    warning: p.warning.clone(),
                    source: "config".into(),
                })
                .collect(),
            Some(&data),
        )
        .map_err(|e| CliError::with("cannot load the retention policy", &e))?,
    );
    eprintln!(
        "registre {} — journal in {}",
        env!("CARGO_PKG_VERSION"),
        data.display()
    );
    for p in policy.classes() {
        let size = store
            .stats()
            .into_iter()
            .find(|s| s.log == p.class)
            .map_or(0, |s| s.size);
        eprintln!(
            "  class {:<12} retention {:<10} {size:>10} traces  {}",
            p.class.as_str(),
            p.retention.to_string(),
            p.description
        );
        if let Some(w) = &p.warning {
            tracing::warn!(class = %p.class, retention = %p.retention, "{w}");
        }
    }
    eprintln!(
        "  admin token: {} (send it as `Authorization: Bearer …`)",
        token_path.display()
    );
    eprintln!("  checkpoint verifier key: {}", store.verifier_key());
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "listening on {scheme}://{local}  (API description: {scheme}://{local}/openapi.json)"
    );

    let state = Arc::new(AppState {
        store,
        classes: policies.iter().map(|p| p.name.clone()).collect(),
        limits: Limits::default(),
        auth,
        metrics: Arc::new(Metrics::default()),
        policy,
    });
    match purge_every {
        Some(secs) => {
            eprintln!(
                "  purge: every {} (traces past retention are destroyed with their keys)",
                cfg.retention.purge_interval.trim()
            );
            registre_intake::http::retention::spawn_purge_scheduler(
                state.clone(),
                std::time::Duration::from_secs(secs.max(1)),
            );
        }
        None => eprintln!("  purge: on demand only ([retention] purge_interval = \"off\")"),
    }
    match tls {
        Some(config) => {
            registre_intake::tls::serve_tls(
                listener,
                config,
                registre_intake::router(state),
                shutdown_signal(),
            )
            .await
        }
        None => registre_intake::serve(listener, state, shutdown_signal()).await,
    }
    .map_err(|e| CliError::with("the HTTP server stopped", &e))?;
    eprintln!("registre stopped");
    Ok(())
}

/// Reads the admin token, creating it (0600) on first start.
fn admin_token(path: &Path) -> Result<String, CliError> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CliError::with(
                format!("cannot read {}", path.display()),
                &e,
            ));
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| CliError::new(format!("no randomness: {e}")))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CliError::with(format!("cannot create {}", path.display()), &e))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| CliError::with(format!("cannot write {}", path.display()), &e))?;
    tracing::info!(path = %path.display(), "created the admin token");
    Ok(token)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
}
