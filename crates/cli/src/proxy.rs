//! `registre proxy imap`: the MSSanté tracing proxy, in front of an IMAPS
//! server, writing to the embedded journal in `--data` (issue 6, in
//! progress: implicit TLS on both sides only).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use registre_model::ClassName;
use registre_proxy::imap::Limits;
use registre_proxy::imap_trace::TracerConfig;
use registre_proxy::relay::{self, RelayConfig};
use registre_store::{EmbeddedOptions, EmbeddedStore, Store};
use rustls::pki_types::ServerName;

use crate::CliError;

/// Trace a mail server's users without changing their mail client.
#[derive(Subcommand)]
pub enum ProxyCommand {
    /// IMAP over implicit TLS (port 993).
    Imap(ImapArgs),
}

const IMAP_HELP: &str = "\
Example:
  registre proxy imap --listen 0.0.0.0:993 \\
      --tls-cert /etc/registre/proxy.crt --tls-key /etc/registre/proxy.key \\
      --upstream imap.operateur-mssante.fr:993 --upstream-ca /etc/ssl/operateur-ca.pem \\
      --mail-domain hopital.mssante.fr --data /var/lib/registre

Mail clients connect to the proxy as to their IMAPS server. Bytes are forwarded
unchanged (COMPRESS=DEFLATE is removed from the capabilities so the proxy can
keep reading). Every significant action (log in and out, reading a message,
flagging, deleting, moving, copying, depositing) becomes one trace of class
mss, with the author, the local time, the request and the server's answer,
written durably before that answer is forwarded. Message content, passwords
and tokens are never stored. If the journal cannot take a trace, the client
gets `NO [UNAVAILABLE]` for that command.

Not yet: STARTTLS listeners, SMTP, a journal over HTTP (--journal), a spool.";

#[derive(Args)]
#[command(after_help = IMAP_HELP)]
pub struct ImapArgs {
    /// Address mail clients connect to (implicit TLS).
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The proxy's certificate chain (PEM).
    #[arg(long)]
    tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    tls_key: PathBuf,
    /// The IMAPS server, HOST:PORT (implicit TLS).
    #[arg(long)]
    upstream: String,
    /// The CA certificate(s) the upstream server's certificate must chain to (PEM).
    #[arg(long)]
    upstream_ca: PathBuf,
    /// The name the upstream certificate must carry (default: HOST of --upstream).
    #[arg(long)]
    upstream_name: Option<String>,
    /// Domain appended to logins without `@` for `target.mailbox`.
    #[arg(long)]
    mail_domain: Option<String>,
    /// The journal's data directory (opened exclusively, like `serve`).
    #[arg(long, env = "REGISTRE_DATA")]
    data: Option<PathBuf>,
    /// The master key file (see `registre serve --help`).
    #[arg(long, env = "REGISTRE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
}

pub async fn run(cmd: ProxyCommand) -> Result<(), CliError> {
    match cmd {
        ProxyCommand::Imap(a) => imap(a).await,
    }
}

async fn imap(a: ImapArgs) -> Result<(), CliError> {
    let data = a.data.clone().unwrap_or_else(crate::default_data_dir);
    let host = a
        .upstream
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
        .ok_or_else(|| CliError::new("--upstream must be HOST:PORT"))?;
    let name = a.upstream_name.clone().unwrap_or(host);
    let upstream_name = ServerName::try_from(name.clone())
        .map_err(|_| CliError::new(format!("`{name}` is not a valid server name")))?;
    let mut server_tls =
        (*registre_intake::tls::server_config(&registre_intake::tls::TlsOptions {
            cert: a.tls_cert.clone(),
            key: a.tls_key.clone(),
            client_ca: None,
            require_client_cert: false,
        })
        .map_err(|e| CliError::with("cannot load the proxy's certificate", &e))?)
        .clone();
    // IMAP clients offer no ALPN.
    server_tls.alpn_protocols.clear();
    let connector = relay::upstream_client_config(&a.upstream_ca)
        .map_err(|e| CliError::with("cannot load --upstream-ca", &e))?;
    let classes = [ClassName::MSS, ClassName::TECHNIQUE, ClassName::APPLICATIVE]
        .iter()
        .filter_map(|c| ClassName::new(c).ok())
        .collect();
    let mut opts = EmbeddedOptions::new(classes);
    opts.master_key_file = a.master_key_file.clone();
    let store = tokio::task::block_in_place(|| EmbeddedStore::open(&data, opts)).map_err(|e| {
        CliError::with(format!("cannot open the journal in {}", data.display()), &e)
    })?;
    let store: Arc<dyn Store> = Arc::new(store);
    let config = Arc::new(RelayConfig {
        acceptor: Arc::new(server_tls).into(),
        listen_tls: registre_proxy::tls::ListenTls::Implicit,
        upstream_tls: registre_proxy::tls::UpstreamTls::Implicit,
        upstream: a.upstream.clone(),
        upstream_name,
        connector: connector.into(),
        tracer: Arc::new(TracerConfig {
            mail_domain: a.mail_domain.clone(),
            ..TracerConfig::default()
        }),
        limits: Limits::default(),
    });
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| CliError::with(format!("cannot listen on {}", a.listen), &e))?;
    eprintln!(
        "registre proxy: IMAPS on {} → {} (traces in {}, class mss)",
        a.listen,
        a.upstream,
        data.display()
    );
    relay::serve(
        listener,
        config,
        Arc::new(store),
        crate::serve::shutdown_signal(),
    )
    .await
    .map_err(|e| CliError::with("the proxy stopped", &e))?;
    eprintln!("registre proxy stopped");
    Ok(())
}
