//! `registre serve`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use registre_intake::{AppState, Metrics};
use registre_model::Limits;
use registre_store::crypto::MasterKey;
use registre_store::{EmbeddedOptions, EmbeddedStore, Store};
use registre_store_pg::{PgOpenError, PgOptions, PgStore};

use crate::CliError;
use crate::config::{Backend, Config};

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

Syslog (IHE ATNA: DICOM audit messages or JSON traces in RFC 5424 messages):
  registre serve --tls-cert server.pem --tls-key server.key --syslog-tls 0.0.0.0:6514
      RFC 5425 (octet counting over TLS) with the server's certificate; add
      --client-ca (and [syslog] require_client_cert) for mutual TLS.
  registre serve --syslog-udp 127.0.0.1:5514 --syslog-tcp 127.0.0.1:5514
      RFC 5426 (UDP) and RFC 6587 (plain TCP: octet counting or one message
      per line). Plain syslog on a non-loopback address needs [syslog]
      allow_plain = true.
  Syslog senders are trusted sources (the actor in their messages is taken as
  is): restrict them with mutual TLS. Every message is counted in /metrics
  (registre_syslog_*), refusals are logged with their reason.

Several nodes on one PostgreSQL database (docs/postgres.md):
  openssl rand -hex 32 > /etc/registre/master.key; chmod 600 /etc/registre/master.key
  registre serve --store postgres://registre@db.hopital.fr:5432/registre?sslmode=require \\
      --master-key-file /etc/registre/master.key --listen 10.0.0.11:7380 --tls-cert … --tls-key …
      The schema is created (and migrated) by registre itself; every node gets
      the same master key file and the same [server] instance. --data still
      holds the node's admin token, API keys and policy: give every node the
      same keys file (copy it), or use OIDC.

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
    /// Data directory (default ./registre-data). With PostgreSQL it holds
    /// only the node's admin token, API keys and policy.
    #[arg(long, env = "REGISTRE_DATA")]
    data: Option<PathBuf>,
    /// The store: a `postgres://` or `postgresql://` URL (several nodes on
    /// one database; `?sslmode=require` for TLS), or `embedded`. Default:
    /// [store] in the configuration, else embedded.
    #[arg(long, env = "REGISTRE_STORE", value_name = "URL")]
    store: Option<String>,
    /// The PostgreSQL schema of the journal (default: [store] schema, else
    /// `registre`).
    #[arg(long, env = "REGISTRE_STORE_SCHEMA", value_name = "NAME")]
    store_schema: Option<String>,
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
    /// <data>/keys/master.key; required with PostgreSQL. Keep it apart from
    /// the data's backups.
    #[arg(long, env = "REGISTRE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Receive syslog over UDP (RFC 5426) on this address, e.g. 127.0.0.1:514.
    #[arg(long, value_name = "ADDR")]
    syslog_udp: Option<std::net::SocketAddr>,
    /// Receive syslog over TLS (RFC 5425, octet counting) on this address,
    /// e.g. 0.0.0.0:6514; needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    syslog_tls: Option<std::net::SocketAddr>,
    /// Receive syslog over plain TCP (RFC 6587: octet counting or lines).
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<std::net::SocketAddr>,
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
    let mut tls_options = None;
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
            let config = registre_intake::tls::server_config(&opts)
                .map_err(|e| CliError::with("cannot set up TLS", &e))?;
            tls_options = Some(opts);
            Some(config)
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
    let backend = cfg
        .store
        .backend(args.store.as_deref(), args.store_schema.as_deref())
        .map_err(|m| CliError::new(format!("[store]: {m}")))?;
    let syslog = syslog_listeners(&args, &cfg, tls.as_ref(), tls_options.as_ref()).await?;
    let policies = cfg.class_policies();
    let period = cfg
        .segment_period_secs()
        .map_err(|m| CliError::new(format!("[store] segment_period: {m}")))?;
    let master_key_file = args
        .master_key_file
        .clone()
        .or_else(|| cfg.store.master_key_file.clone());
    let purge_every = cfg
        .purge_interval()
        .map_err(|m| CliError::new(format!("[retention] purge_interval: {m}")))?;
    let checkpoint_interval = std::time::Duration::from_secs(
        crate::config::parse_period(&cfg.store.checkpoint_interval)
            .map_err(|m| CliError::new(format!("[store] checkpoint_interval: {m}")))?,
    );
    let classes: Vec<_> = policies.iter().map(|p| p.name.clone()).collect();

    let (store, where_): (Arc<dyn Store>, String) = match &backend {
        Backend::Embedded => {
            let mut opts = EmbeddedOptions::new(classes);
            opts.segment_period_secs = period;
            opts.segment_periods = cfg.segment_periods();
            opts.master_key_file = master_key_file;
            opts.max_segment_bytes = cfg.store.max_segment_mib.max(1) << 20;
            opts.instance = cfg.server.instance.clone();
            opts.checkpoint_interval = checkpoint_interval;
            let store =
                tokio::task::block_in_place(|| EmbeddedStore::open(&data, opts)).map_err(|e| {
                    CliError::with(format!("cannot open the journal in {}", data.display()), &e)
                })?;
            (Arc::new(store), data.display().to_string())
        }
        Backend::Postgres { url, schema } => {
            let master = pg_master_key(master_key_file.as_deref())?;
            node_dir(&data)?;
            let mut opts = PgOptions::new(url, classes, Arc::new(master));
            opts.schema = schema.clone();
            opts.partition_period_secs = period;
            opts.partition_periods = cfg.segment_periods();
            opts.instance = cfg.server.instance.clone();
            opts.checkpoint_interval = checkpoint_interval;
            opts.pool_size = cfg.store.pool_size.max(1);
            let store = PgStore::open(opts)
                .await
                .map_err(|e| pg_open_error(url, schema, e))?;
            (
                Arc::new(store),
                format!(
                    "PostgreSQL {} (schema {schema}; node files in {})",
                    crate::config::redact_url(url),
                    data.display()
                ),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::with(format!("cannot listen on {listen}"), &e))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::with("cannot read the listening address", &e))?;

    let (auth, policy, token_path) = access(&data, &cfg, &policies).await?;
    eprintln!(
        "registre {} — journal in {where_}",
        env!("CARGO_PKG_VERSION")
    );
    let stats = store.stats().await.unwrap_or_default();
    for p in policy.classes() {
        let size = stats
            .iter()
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
    syslog.describe();

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
    // One stop for every listener: a signal, or the HTTP server ending.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
    }
    let syslog_tasks = syslog.spawn(&state, &stop_rx);
    let http = match tls {
        Some(config) => {
            registre_intake::tls::serve_tls(
                listener,
                config,
                registre_intake::router(state),
                stopped(stop_rx.clone()),
            )
            .await
        }
        None => registre_intake::serve(listener, state, stopped(stop_rx.clone())).await,
    };
    let _ = stop_tx.send(true);
    for task in syslog_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "a syslog listener stopped with an error"),
            Err(e) => tracing::error!(error = %e, "a syslog listener panicked"),
        }
    }
    http.map_err(|e| CliError::with("the HTTP server stopped", &e))?;
    eprintln!("registre stopped");
    Ok(())
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The syslog listeners, bound (so a bad address fails before the server
/// says it is listening) but not yet serving.
struct SyslogListeners {
    options: registre_intake::syslog::SyslogOptions,
    udp: Option<tokio::net::UdpSocket>,
    tcp: Option<tokio::net::TcpListener>,
    tls: Option<(
        tokio::net::TcpListener,
        Arc<registre_intake::syslog::ServerConfig>,
    )>,
}

async fn syslog_listeners(
    args: &ServeArgs,
    cfg: &Config,
    http_tls: Option<&Arc<registre_intake::syslog::ServerConfig>>,
    tls_options: Option<&registre_intake::tls::TlsOptions>,
) -> Result<SyslogListeners, CliError> {
    let sc = &cfg.syslog;
    let options = sc
        .options()
        .map_err(|m| CliError::new(format!("[syslog] {m}")))?;
    let udp_addr = args.syslog_udp.or(sc.udp);
    let tcp_addr = args.syslog_tcp.or(sc.tcp);
    let tls_addr = args.syslog_tls.or(sc.tls);
    for (what, addr) in [("--syslog-udp", udp_addr), ("--syslog-tcp", tcp_addr)] {
        if let Some(addr) = addr
            && !addr.ip().is_loopback()
            && !sc.allow_plain
        {
            return Err(CliError::new(format!(
                "refusing plain syslog ({what}) on {addr}, which is not a loopback address: \
                 traces are health data and UDP/TCP syslog is neither encrypted nor \
                 authenticated. Use --syslog-tls, or set [syslog] allow_plain = true if the \
                 network is protected otherwise"
            )));
        }
    }
    let bind_error = |kind: &str, addr: std::net::SocketAddr, e: std::io::Error| {
        CliError::with(format!("cannot listen for syslog on {kind} {addr}"), &e)
    };
    let udp = match udp_addr {
        None => None,
        Some(addr) => {
            let socket = tokio::net::UdpSocket::bind(addr).await;
            Some(socket.map_err(|e| bind_error("udp", addr, e))?)
        }
    };
    let tcp = match tcp_addr {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await;
            Some(listener.map_err(|e| bind_error("tcp", addr, e))?)
        }
    };
    let tls = match tls_addr {
        None => None,
        Some(addr) => {
            let (Some(http_config), Some(opts)) = (http_tls, tls_options) else {
                return Err(CliError::new(
                    "the syslog TLS listener (--syslog-tls, [syslog] tls) uses the server's \
                     certificate: give --tls-cert and --tls-key (or [server] tls_cert and tls_key)",
                ));
            };
            let config = if sc.require_client_cert && !opts.require_client_cert {
                if opts.client_ca.is_none() {
                    return Err(CliError::new(
                        "[syslog] require_client_cert needs the CA of the senders' certificates: \
                         --client-ca (or [server] client_ca)",
                    ));
                }
                let mut strict = opts.clone();
                strict.require_client_cert = true;
                registre_intake::tls::server_config(&strict)
                    .map_err(|e| CliError::with("cannot set up TLS for syslog", &e))?
            } else {
                http_config.clone()
            };
            if !sc.allowed_clients.is_empty() && opts.client_ca.is_none() {
                return Err(CliError::new(
                    "[syslog] allowed_clients needs the CA of the senders' certificates: \
                     --client-ca (or [server] client_ca)",
                ));
            }
            let listener = tokio::net::TcpListener::bind(addr).await;
            let listener = listener.map_err(|e| bind_error("tls", addr, e))?;
            Some((listener, config))
        }
    };
    Ok(SyslogListeners {
        options,
        udp,
        tcp,
        tls,
    })
}

impl SyslogListeners {
    fn describe(&self) {
        let addr = |r: std::io::Result<std::net::SocketAddr>| {
            r.map_or_else(|e| format!("? ({e})"), |a| a.to_string())
        };
        if let Some(s) = &self.udp {
            eprintln!("  syslog udp {} (RFC 5426)", addr(s.local_addr()));
        }
        if let Some(l) = &self.tcp {
            eprintln!(
                "  syslog tcp {} (RFC 6587: octet counting or lines)",
                addr(l.local_addr())
            );
        }
        if let Some((l, _)) = &self.tls {
            eprintln!(
                "  syslog tls {} (RFC 5425: octet counting over TLS)",
                addr(l.local_addr())
            );
        }
    }

    fn spawn(
        self,
        state: &Arc<AppState>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<std::io::Result<()>>> {
        use registre_intake::syslog;
        let mut tasks = Vec::new();
        if let Some(socket) = self.udp {
            tasks.push(tokio::spawn(syslog::serve_udp(
                socket,
                state.clone(),
                self.options.clone(),
                stopped(stop.clone()),
            )));
        }
        if let Some(listener) = self.tcp {
            tasks.push(tokio::spawn(syslog::serve_tcp(
                listener,
                state.clone(),
                self.options.clone(),
                stopped(stop.clone()),
            )));
        }
        if let Some((listener, config)) = self.tls {
            tasks.push(tokio::spawn(syslog::serve_tls(
                listener,
                config,
                state.clone(),
                self.options.clone(),
                stopped(stop.clone()),
            )));
        }
        tasks
    }
}

/// The API's credentials (admin token, API keys, OIDC issuers) and the
/// retention policy of the journal in `data`: what `serve` and
/// `proxy --api-listen` share.
async fn access(
    data: &Path,
    cfg: &Config,
    policies: &[crate::config::ClassPolicy],
) -> Result<
    (
        Arc<registre_intake::http::auth::Authenticator>,
        Arc<registre_policy::Policy>,
        PathBuf,
    ),
    CliError,
> {
    let token_path = data.join("admin-token");
    let token = admin_token(&token_path)?;
    let keys = registre_access::ApiKeyStore::open(data)
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
            Some(data),
        )
        .map_err(|e| CliError::with("cannot load the retention policy", &e))?,
    );
    Ok((auth, policy, token_path))
}

/// `registre proxy --api-listen`: the HTTP API over the proxy's embedded
/// journal, in the proxy's process (plain HTTP, loopback only: put a TLS
/// reverse proxy in front, or run `registre serve` for more).
pub(crate) fn api_for_proxy(
    listen: std::net::SocketAddr,
    store: Arc<dyn Store>,
    cfg: &Config,
    data: &Path,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
    let policies = cfg.class_policies();
    let classes: Vec<_> = policies.iter().map(|p| p.name.clone()).collect();
    let cfg_access = (cfg.access.certificates.clone(), cfg.access.oidc.clone());
    let data = data.to_owned();
    let cfg = Config {
        access: crate::config::AccessConfig {
            certificates: cfg_access.0,
            oidc: cfg_access.1,
        },
        classes: cfg.classes.clone(),
        ..Config::default()
    };
    async move {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::other(format!(
                "--api-listen {listen}: plain HTTP, loopback addresses only (traces are health data)"
            )));
        }
        let (auth, policy, token_path) = access(&data, &cfg, &policies)
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        eprintln!(
            "  HTTP API on http://{listen} (admin token: {})",
            token_path.display()
        );
        let state = Arc::new(AppState {
            store,
            classes,
            limits: Limits::default(),
            auth,
            metrics: Arc::new(Metrics::default()),
            policy,
        });
        registre_intake::serve(listener, state, stop).await
    }
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

pub(crate) async fn shutdown_signal() {
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

/// How to make a master key, for the messages that ask for one.
pub(crate) const MAKE_MASTER_KEY: &str = "make one with `openssl rand -hex 32 > master.key; \
     chmod 600 master.key` (64 hex digits), give the same file to every node, and keep it \
     apart from the database's backups";

/// The master key of a PostgreSQL journal: required (it never goes to the
/// database, so no node can make one up).
pub(crate) fn pg_master_key(file: Option<&Path>) -> Result<MasterKey, CliError> {
    let Some(file) = file else {
        return Err(CliError::new(format!(
            "a PostgreSQL journal needs its master key: give --master-key-file FILE (or [store] \
             master_key_file, or REGISTRE_MASTER_KEY_FILE). The key wraps every data key and \
             never goes to the database; {MAKE_MASTER_KEY}"
        )));
    };
    if !file.exists() {
        return Err(CliError::new(format!(
            "the master key file {} does not exist; {MAKE_MASTER_KEY}",
            file.display()
        )));
    }
    MasterKey::read(file).map_err(|e| {
        CliError::with(
            format!(
                "cannot read the master key {} (64 hex digits expected)",
                file.display()
            ),
            &e,
        )
    })
}

/// The node's own directory (admin token, API keys, policy), 0700.
fn node_dir(data: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    if data.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .map_err(|e| CliError::with(format!("cannot create {}", data.display()), &e))
}

/// A `PgStore::open` error as an operator reads it.
pub(crate) fn pg_open_error(url: &str, schema: &str, e: PgOpenError) -> CliError {
    let at = crate::config::redact_url(url);
    match e {
        PgOpenError::Connect(why) => CliError::new(format!(
            "cannot reach PostgreSQL at {at}: {why}. Is it running, are the host and port right, \
             and (with sslmode=require) does its certificate verify?"
        )),
        PgOpenError::Db(why)
            if why.contains("SQLSTATE 28P01")
                || why.contains("SQLSTATE 28000")
                || why.contains("authentication failed") =>
        {
            CliError::new(format!(
                "PostgreSQL at {at} refused the credentials: {why}. Check the user and password \
                 in the URL and pg_hba.conf"
            ))
        }
        PgOpenError::Db(why) if why.contains("SQLSTATE 3D000") => CliError::new(format!(
            "PostgreSQL at {at}: {why}. Create the database first (`createdb`); registre \
             creates its schema itself"
        )),
        PgOpenError::NewerSchema { .. } => CliError::with(
            format!("cannot open the journal in schema {schema} at {at}"),
            &e,
        ),
        PgOpenError::Key(why) => CliError::new(format!(
            "wrong master key for the journal in schema {schema} at {at}: {why}"
        )),
        e => CliError::with(
            format!("cannot open the journal in schema {schema} at {at}"),
            &e,
        ),
    }
}
