//! `registre proxy`: the MSSanté tracing proxy in front of the operator's
//! IMAP and submission servers (issue 6). One listener from flags
//! (`registre proxy imap|smtp …`), or every `[[proxy.imap]]` and
//! `[[proxy.smtp]]` of the configuration file (`registre proxy`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};
use registre_model::ClassName;
use registre_proxy::imap_trace::TracerConfig;
use registre_proxy::relay::{self, Journal, RelayConfig};
use registre_proxy::smtp_relay::{self, SmtpRelayConfig};
use registre_proxy::spool::{Spool, Spooled};
use registre_proxy::tls::{ListenTls, UpstreamTls};
use registre_store::{EmbeddedOptions, EmbeddedStore, Store};
use rustls::pki_types::ServerName;
use tokio::sync::watch;

use crate::CliError;
use crate::config::{Config, ProxyListener};
use crate::proxy_journal::HttpJournal;

const PROXY_HELP: &str = "\
Examples:
  # IMAPS in front of the operator's server, traces in the embedded journal:
  registre proxy imap --listen 0.0.0.0:993 \\
      --tls-cert /etc/registre/proxy.crt --tls-key /etc/registre/proxy.key \\
      --upstream imap.operateur-mssante.fr:993 --upstream-ca /etc/ssl/operateur-ca.pem \\
      --mail-domain hopital.mssante.fr --data /var/lib/registre

  # Submission with STARTTLS (587), traces sent to a registre server, with a spool:
  registre proxy smtp --listen 0.0.0.0:587 --listen-tls starttls \\
      --tls-cert proxy.crt --tls-key proxy.key \\
      --upstream smtp.operateur-mssante.fr:587 --upstream-tls starttls --upstream-ca operateur-ca.pem \\
      --journal https://registre.hopital.local:7380 --token-file /etc/registre/producer.token \\
      --spool /var/spool/registre

  # Every [[proxy.imap]] and [[proxy.smtp]] of registre.toml:
  registre proxy --config /etc/registre/registre.toml

Mail clients connect to the proxy as to their mail server. Bytes are forwarded
unchanged (COMPRESS=DEFLATE and STARTTLS are removed from IMAP capabilities,
CHUNKING-like extensions the proxy cannot follow from SMTP's). Every
significant action (log in and out, reading, flagging, deleting, moving,
copying, depositing, sending) becomes one trace of class mss with the author,
the local time, the request and the server's answer, written durably before
that answer is forwarded. Message content, passwords and tokens are never
stored.

Fail closed: when the journal cannot take a trace (and the spool, if any, is
full), traceable commands are refused before they reach the server: IMAP
`NO [UNAVAILABLE]`, SMTP `451 4.3.0`.";

/// Trace a mail server's users without changing their mail client.
#[derive(Args)]
#[command(after_help = PROXY_HELP)]
pub struct ProxyArgs {
    #[command(subcommand)]
    listener: Option<ProxyCommand>,
    #[command(flatten)]
    journal: JournalArgs,
}

/// One listener given by flags.
#[derive(Subcommand)]
pub enum ProxyCommand {
    /// An IMAP listener (993 implicit TLS, or 143 with --listen-tls starttls).
    Imap(ListenerArgs),
    /// A submission listener (465 implicit TLS, or 587 with --listen-tls starttls).
    Smtp(ListenerArgs),
}

#[derive(Args)]
pub struct ListenerArgs {
    /// Address mail clients connect to.
    #[arg(long)]
    listen: SocketAddr,
    /// TLS toward clients: implicit or starttls.
    #[arg(long, default_value = "implicit", value_name = "MODE")]
    listen_tls: ListenTls,
    /// The proxy's certificate chain (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// The mail server, HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// TLS toward the mail server: implicit, starttls or none.
    #[arg(long, default_value = "implicit", value_name = "MODE")]
    upstream_tls: UpstreamTls,
    /// The CA certificate(s) the mail server's certificate must chain to (PEM).
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// The name the mail server's certificate must carry (default: HOST of --upstream).
    #[arg(long)]
    upstream_name: Option<String>,
}

/// Where the traces go (flags override `[proxy]` and `[server] data`).
#[derive(Args)]
pub struct JournalArgs {
    /// Configuration file (default ./registre.toml when it exists).
    #[arg(long, env = "REGISTRE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// The embedded journal's data directory, opened exclusively like `serve`.
    #[arg(long, env = "REGISTRE_DATA", global = true, conflicts_with = "journal")]
    data: Option<PathBuf>,
    /// The master key file (see `registre serve --help`).
    #[arg(
        long,
        env = "REGISTRE_MASTER_KEY_FILE",
        value_name = "FILE",
        global = true
    )]
    master_key_file: Option<PathBuf>,
    /// Also serve the HTTP API from this process (embedded journal only).
    #[arg(long, value_name = "ADDR", global = true, conflicts_with = "journal")]
    api_listen: Option<SocketAddr>,
    /// A registre server's URL: traces go there instead of an embedded journal.
    #[arg(long, value_name = "URL", global = true, requires = "token_file")]
    journal: Option<String>,
    /// The producer key for --journal (a file holding the token).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// CA certificate(s) of the journal's HTTPS certificate (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    journal_ca: Option<PathBuf>,
    /// Spool directory absorbing journal outages (--journal only).
    #[arg(long, value_name = "DIR", global = true)]
    spool: Option<PathBuf>,
    /// The spool's bound in MiB (default 64); past it commands are refused.
    #[arg(long, value_name = "MIB", global = true)]
    spool_max_mib: Option<u64>,
    /// Domain appended to logins without `@` for `target.mailbox`.
    #[arg(long, global = true)]
    mail_domain: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Imap,
    Smtp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Smtp => "submission",
        }
    }
}

/// One listener, from flags or the configuration.
struct Listener {
    protocol: Protocol,
    listen: SocketAddr,
    listen_tls: ListenTls,
    tls_cert: PathBuf,
    tls_key: PathBuf,
    upstream: String,
    upstream_tls: UpstreamTls,
    upstream_ca: Option<PathBuf>,
    upstream_name: Option<String>,
}

impl Listener {
    fn from_flags(protocol: Protocol, a: ListenerArgs) -> Listener {
        Listener {
            protocol,
            listen: a.listen,
            listen_tls: a.listen_tls,
            tls_cert: a.tls_cert,
            tls_key: a.tls_key,
            upstream: a.upstream,
            upstream_tls: a.upstream_tls,
            upstream_ca: a.upstream_ca,
            upstream_name: a.upstream_name,
        }
    }

    fn from_config(protocol: Protocol, l: &ProxyListener) -> Result<Listener, CliError> {
        let section = match protocol {
            Protocol::Imap => "[[proxy.imap]]",
            Protocol::Smtp => "[[proxy.smtp]]",
        };
        Ok(Listener {
            protocol,
            listen: l.listen,
            listen_tls: l.listen_tls.parse().map_err(|e| {
                CliError::new(format!("{section} listen {}: listen_tls: {e}", l.listen))
            })?,
            tls_cert: l.tls_cert.clone(),
            tls_key: l.tls_key.clone(),
            upstream: l.upstream.clone(),
            upstream_tls: l.upstream_tls.parse().map_err(|e| {
                CliError::new(format!("{section} listen {}: upstream_tls: {e}", l.listen))
            })?,
            upstream_ca: l.upstream_ca.clone(),
            upstream_name: l.upstream_name.clone(),
        })
    }
}

/// The journal the relays write to.
#[derive(Clone)]
enum ProxyJournal {
    Embedded(Arc<dyn Store>),
    Http(HttpJournal),
    Spooled(Arc<Spooled<HttpJournal>>),
}

/// Why a batch was not taken (the message only: no trace content).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct JournalFailure(String);

impl Journal for ProxyJournal {
    type Error = JournalFailure;

    async fn record(&self, traces: Vec<registre_model::Trace>) -> Result<(), JournalFailure> {
        let failure = |e: &dyn std::error::Error| JournalFailure(e.to_string());
        match self {
            ProxyJournal::Embedded(store) => store.record(traces).await.map_err(|e| failure(&e)),
            ProxyJournal::Http(http) => http.record(traces).await.map_err(|e| failure(&e)),
            ProxyJournal::Spooled(s) => s.record(traces).await.map_err(|e| failure(&e)),
        }
    }

    fn ready(&self) -> bool {
        match self {
            ProxyJournal::Embedded(store) => store.ready(),
            ProxyJournal::Http(http) => http.ready(),
            ProxyJournal::Spooled(s) => s.ready(),
        }
    }
}

pub async fn run(args: ProxyArgs) -> Result<(), CliError> {
    let j = args.journal;
    let config_path = j.config.clone().or_else(|| {
        let p = PathBuf::from("registre.toml");
        p.exists().then_some(p)
    });
    let cfg = Config::load(config_path.as_deref())
        .map_err(|e| CliError::with("cannot load the configuration", &e))?;
    let listeners = match args.listener {
        Some(ProxyCommand::Imap(a)) => vec![Listener::from_flags(Protocol::Imap, a)],
        Some(ProxyCommand::Smtp(a)) => vec![Listener::from_flags(Protocol::Smtp, a)],
        None => {
            let mut all = Vec::new();
            for l in &cfg.proxy.imap {
                all.push(Listener::from_config(Protocol::Imap, l)?);
            }
            for l in &cfg.proxy.smtp {
                all.push(Listener::from_config(Protocol::Smtp, l)?);
            }
            all
        }
    };
    if listeners.is_empty() {
        return Err(CliError::new(
            "no listener: run `registre proxy imap …` or `registre proxy smtp …` (see --help), \
             or add [[proxy.imap]] / [[proxy.smtp]] sections to the configuration file",
        ));
    }
    let mail_domain = j.mail_domain.clone().or(cfg.proxy.mail_domain.clone());
    let tracer = Arc::new(TracerConfig {
        mail_domain,
        bearer_subject: bearer_subject(&cfg).await?,
        ..TracerConfig::default()
    });

    // Where traces go.
    let remote = j.journal.clone().or(cfg.proxy.journal.clone());
    let (journal, api) = match remote {
        Some(url) => {
            if j.data.is_some() || j.api_listen.is_some() {
                return Err(CliError::new(
                    "--journal sends traces to a registre server: --data and --api-listen are for the embedded journal",
                ));
            }
            let token = j
                .token_file
                .clone()
                .or(cfg.proxy.token_file.clone())
                .ok_or_else(|| CliError::new("--journal needs --token-file (a producer key)"))?;
            let ca = j.journal_ca.clone().or(cfg.proxy.journal_ca.clone());
            let http = HttpJournal::new(&url, &token, ca.as_deref())?;
            http.spawn_probe();
            eprintln!("registre proxy: traces sent to {url}");
            let journal = match j.spool.clone().or(cfg.proxy.spool.clone()) {
                Some(dir) => {
                    let mib = j.spool_max_mib.unwrap_or(cfg.proxy.spool_max_mib).max(1);
                    let spool = Spool::open(&dir, mib << 20).map_err(|e| {
                        CliError::with(format!("cannot open the spool {}", dir.display()), &e)
                    })?;
                    let (files, bytes) = spool.len();
                    eprintln!(
                        "  spool: {} (bound {mib} MiB; {files} batches, {bytes} bytes waiting)",
                        dir.display()
                    );
                    let spooled = Arc::new(Spooled::new(http, spool));
                    tokio::spawn(spooled.clone().flush_forever());
                    ProxyJournal::Spooled(spooled)
                }
                None => {
                    eprintln!("  no spool: commands are refused while the journal is down");
                    ProxyJournal::Http(http)
                }
            };
            (journal, None)
        }
        None => {
            if j.spool.is_some() {
                return Err(CliError::new(
                    "--spool is for --journal: the embedded journal is on this host already",
                ));
            }
            let data = j.data.clone().unwrap_or_else(|| cfg.server.data.clone());
            let store = open_embedded(&data, &cfg, j.master_key_file.clone())?;
            eprintln!("registre proxy: traces in {} (class mss)", data.display());
            let api = j.api_listen.or(cfg.proxy.api_listen);
            (
                ProxyJournal::Embedded(store.clone()),
                api.map(|a| (a, store)),
            )
        }
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for l in &listeners {
        let listener = tokio::net::TcpListener::bind(l.listen)
            .await
            .map_err(|e| CliError::with(format!("cannot listen on {}", l.listen), &e))?;
        eprintln!(
            "  {} on {} ({} TLS) → {} ({} TLS)",
            l.protocol.name(),
            l.listen,
            l.listen_tls,
            l.upstream,
            l.upstream_tls
        );
        let setup = TlsSetup::new(l)?;
        let shutdown = stopped(stop_rx.clone());
        let journal = Arc::new(journal.clone());
        match l.protocol {
            Protocol::Imap => {
                let config = Arc::new(RelayConfig {
                    acceptor: setup.acceptor,
                    listen_tls: l.listen_tls,
                    upstream: l.upstream.clone(),
                    upstream_name: setup.name,
                    upstream_tls: l.upstream_tls,
                    connector: setup.connector,
                    tracer: tracer.clone(),
                    limits: registre_proxy::imap::Limits::default(),
                });
                tasks.spawn(relay::serve(listener, config, journal, shutdown));
            }
            Protocol::Smtp => {
                let config = Arc::new(SmtpRelayConfig {
                    listen_tls: l.listen_tls,
                    acceptor: setup.acceptor,
                    upstream: l.upstream.clone(),
                    upstream_tls: l.upstream_tls,
                    upstream_name: setup.name,
                    connector: setup.connector,
                    helo_name: host_name(),
                    tracer: tracer.clone(),
                    limits: registre_proxy::smtp::Limits::default(),
                });
                tasks.spawn(smtp_relay::serve(listener, config, journal, shutdown));
            }
        }
    }
    if let Some((addr, store)) = api {
        let data = j.data.clone().unwrap_or_else(|| cfg.server.data.clone());
        let serve = crate::serve::api_for_proxy(addr, store, &cfg, &data, stopped(stop_rx.clone()));
        tasks.spawn(serve);
    }
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut failed = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(CliError::with("a listener stopped", &e)),
            Err(e) => failed = Some(CliError::with("a listener panicked", &e)),
        }
    }
    eprintln!("registre proxy stopped");
    failed.map_or(Ok(()), Err)
}

/// The author of a bearer-token login: the subject of a JWT from a
/// `[[proxy.oidc]]` issuer, checked with cached keys (refreshed every 10
/// minutes here). `None` without issuers: the login the client names.
async fn bearer_subject(
    cfg: &Config,
) -> Result<Option<registre_proxy::imap_trace::BearerSubject>, CliError> {
    if cfg.proxy.oidc.is_empty() {
        return Ok(None);
    }
    let validator = Arc::new(
        registre_access::OidcValidator::new(cfg.proxy.oidc.clone())
            .map_err(|e| CliError::with("invalid [[proxy.oidc]] configuration", &e))?,
    );
    if let Err(e) = validator.prefetch().await {
        tracing::warn!(error = %e, "cannot reach a [[proxy.oidc]] issuer yet; bearer logins are named by their login until it answers");
    }
    {
        let validator = validator.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(600)).await;
                if let Err(e) = validator.prefetch().await {
                    tracing::warn!(error = %e, "cannot refresh the [[proxy.oidc]] keys");
                }
            }
        });
    }
    Ok(Some(Arc::new(
        move |token: &registre_proxy::imap::Secret| {
            let token = std::str::from_utf8(token.expose()).ok()?;
            validator.subject_cached(token).ok().flatten()
        },
    )))
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn open_embedded(
    data: &Path,
    cfg: &Config,
    master_key_file: Option<PathBuf>,
) -> Result<Arc<dyn Store>, CliError> {
    let classes: Vec<ClassName> = cfg
        .class_policies()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let mut opts = EmbeddedOptions::new(classes);
    opts.master_key_file = master_key_file.or_else(|| cfg.store.master_key_file.clone());
    opts.segment_periods = cfg.segment_periods();
    opts.instance = cfg.server.instance.clone();
    let store = tokio::task::block_in_place(|| EmbeddedStore::open(data, opts)).map_err(|e| {
        CliError::with(format!("cannot open the journal in {}", data.display()), &e)
    })?;
    Ok(Arc::new(store))
}

/// Both sides' TLS for one listener.
struct TlsSetup {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl TlsSetup {
    fn new(l: &Listener) -> Result<TlsSetup, CliError> {
        let host = l
            .upstream
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
            .ok_or_else(|| CliError::new(format!("upstream {}: expected HOST:PORT", l.upstream)))?;
        let name = l.upstream_name.clone().unwrap_or(host);
        let name = ServerName::try_from(name.clone())
            .map_err(|_| CliError::new(format!("`{name}` is not a valid server name")))?;
        let mut server_tls =
            (*registre_intake::tls::server_config(&registre_intake::tls::TlsOptions {
                cert: l.tls_cert.clone(),
                key: l.tls_key.clone(),
                client_ca: None,
                require_client_cert: false,
            })
            .map_err(|e| CliError::with("cannot load the proxy's certificate", &e))?)
            .clone();
        // Mail clients offer no ALPN.
        server_tls.alpn_protocols.clear();
        let connector = match (&l.upstream_ca, l.upstream_tls) {
            (Some(ca), _) => relay::upstream_client_config(ca)
                .map_err(|e| CliError::with("cannot load the upstream CA", &e))?,
            (None, UpstreamTls::None) => {
                // Never used: no TLS toward this server.
                relay::upstream_client_config_with_roots(rustls::RootCertStore::empty())
            }
            (None, _) => {
                return Err(CliError::new(format!(
                    "upstream {}: --upstream-ca (upstream_ca) is required with {} TLS: the \
                     CA that signs the mail server's certificate (IGC Santé for MSSanté operators)",
                    l.upstream, l.upstream_tls
                )));
            }
        };
        Ok(TlsSetup {
            acceptor: Arc::new(server_tls).into(),
            connector: connector.into(),
            name,
        })
    }
}

/// This host's name, for the proxy's own EHLO.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "registre-proxy".to_owned())
}
