//! The IMAP relay (DESIGN §9, issue 6): TLS toward clients (implicit or
//! STARTTLS) and toward the server (implicit, STARTTLS or none), bytes
//! forwarded unchanged, both directions parsed passively, one trace per
//! significant action handed to a [`Journal`] before the server's answer
//! reaches the client.
//!
//! # What it does
//!
//! - Accepts connections ([`serve`]), one task each. With
//!   [`ListenTls::Starttls`] the proxy itself speaks the plaintext phase
//!   (greeting, CAPABILITY, NOOP, LOGOUT, STARTTLS; everything else is
//!   refused with `NO [PRIVACYREQUIRED]`, so no password crosses the network
//!   in clear) and **discards every byte the client sent after its STARTTLS
//!   line** before the handshake (command injection, RFC 9051 §11.1).
//! - Connects to the server ([`UpstreamTls`]), verified against its CA
//!   ([`upstream_client_config`]); with STARTTLS the proxy issues it itself
//!   and the greeting it forwards loses its pre-TLS `[CAPABILITY …]` code,
//!   so clients ask for the capabilities again over TLS.
//! - Client → server: each chunk is fed to the [`Session`] first. Complete
//!   lines and literal bytes are forwarded as is; an incomplete command line
//!   is held back (at most [`Limits::max_line`]) until its command is known.
//! - Server → client: complete lines are forwarded as is, except
//!   `COMPRESS=DEFLATE` and `STARTTLS` removed from capability lists and
//!   codes ([`without_capabilities`]: the stream must stay readable, and the
//!   client is already on TLS with the proxy). A line is held back only
//!   until its first physical line is complete; a line with a literal
//!   (FETCH data) is then streamed, never buffered whole.
//! - The traces an answer produces are recorded ([`Journal::record`]) before
//!   the tagged answer is forwarded.
//!
//! # Fail closed
//!
//! - Before a command that can produce a trace (LOGIN, AUTHENTICATE, FETCH,
//!   STORE, COPY, MOVE, EXPUNGE, CLOSE, APPEND and their UID forms) is
//!   forwarded, the relay asks [`Journal::ready`]. When the journal cannot
//!   take a trace (and no spool has room), the command is **not forwarded**:
//!   its bytes (literals included, whether synchronising or not) are
//!   dropped and the client gets `<tag> NO [UNAVAILABLE] journal
//!   unavailable, command not performed`. Nothing happens on the server.
//! - If the journal fails between that check and the answer (a narrow
//!   race), the tagged answer is replaced by `<tag> NO [UNAVAILABLE] journal
//!   unavailable, action not traced`: the command was performed upstream,
//!   but nothing untraced is *acknowledged*.
//!
//! A parse error in either direction ends the connection at once: nothing
//! the parser could not read is forwarded, so no action passes untraced.
//!
//! # Never content
//!
//! Nothing here logs bytes: log lines name the peer address and the error
//! kind only (parser errors name limits and rules, never the bytes).

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use registre_model::Trace;
use registre_store::{AppendError, Store};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::imap::{
    ClientEvent, Limits, ResponseCode, ServerEvent, Session, SessionError, Status, Tagged,
    Untagged, without_capabilities, without_capability_code,
};
use crate::imap_trace::{ConnectionInfo, ImapTracer, TracerConfig};
use crate::tls::{ListenTls, UpstreamTls};

/// A client has this long to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A STARTTLS client has this long between connecting and its STARTTLS.
pub const PLAINTEXT_TIMEOUT: Duration = Duration::from_secs(60);
/// The upstream server has this long to accept TCP and TLS and greet.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// After the client closed its side, the server has this long to close.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per direction.
const CHUNK: usize = 16 * 1024;
/// Longest line of the plaintext phase and of the upstream greeting.
const SHORT_LINE: usize = 8 * 1024;
/// Capabilities the proxy's clients must not see.
const REMOVED_CAPABILITIES: &[&str] = &["COMPRESS=DEFLATE", "STARTTLS"];
/// Refused commands waiting for a line boundary of the server stream.
const MAX_INJECTIONS: usize = 64;
/// What the client reads for a command refused before it was forwarded.
const NOT_PERFORMED: &[u8] = b" NO [UNAVAILABLE] journal unavailable, command not performed\r\n";
/// What the client reads when recording the answer's trace failed.
const NOT_TRACED: &[u8] = b" NO [UNAVAILABLE] journal unavailable, action not traced\r\n";

/// Where traces go. Resolves once the traces are durable.
pub trait Journal: Send + Sync + 'static {
    /// Why recording failed.
    type Error: std::error::Error + Send + 'static;

    /// Records `traces` (in order); `Ok` once they are durable.
    fn record(&self, traces: Vec<Trace>) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Whether a trace recorded now is expected to be taken (the journal
    /// answered its last request, or a spool has room). Asked before a
    /// traceable command is forwarded: when `false` the proxy refuses the
    /// command itself (fail closed) instead of performing it untraced.
    fn ready(&self) -> bool {
        true
    }
}

/// The embedded journal in-process: `append` resolves after fsync.
impl Journal for Arc<dyn Store> {
    type Error = AppendError;

    async fn record(&self, traces: Vec<Trace>) -> Result<(), AppendError> {
        self.append(traces).await.map(drop)
    }
}

/// One IMAP relay listener's settings.
#[derive(Clone)]
pub struct RelayConfig {
    /// TLS toward mail clients (the proxy's certificate).
    pub acceptor: TlsAcceptor,
    /// Implicit TLS (993) or STARTTLS (143) toward clients.
    pub listen_tls: ListenTls,
    /// `host:port` of the upstream IMAP server.
    pub upstream: String,
    /// The name the upstream certificate must carry.
    pub upstream_name: ServerName<'static>,
    /// How to reach the upstream server.
    pub upstream_tls: UpstreamTls,
    /// TLS toward the upstream server (unused with [`UpstreamTls::None`]).
    pub connector: TlsConnector,
    /// Shared by every connection's tracer.
    pub tracer: Arc<TracerConfig>,
    /// Parser bounds, each direction.
    pub limits: Limits,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("listen_tls", &self.listen_tls)
            .field("upstream", &self.upstream)
            .field("upstream_name", &self.upstream_name)
            .field("upstream_tls", &self.upstream_tls)
            .field("tracer", &self.tracer)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a relay could not be set up or a connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Reading the CA file.
    #[error("cannot read {path}: {reason}")]
    Ca {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A network or TLS error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// Timed out (handshake, upstream connection).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The parser refused a direction; the connection is closed.
    #[error("IMAP parser: {0}")]
    Parse(#[from] SessionError),
    /// The journal refused a trace that could not be answered for.
    #[error("journal unavailable")]
    Journal,
    /// The upstream server did not behave as IMAP (greeting, STARTTLS).
    #[error("upstream server: {0}")]
    Upstream(&'static str),
    /// The client broke the plaintext phase's rules, or logged out in it.
    #[error("client before TLS: {0}")]
    Plaintext(&'static str),
}

/// A rustls client configuration trusting only the CA certificates of the
/// PEM file `ca` (no ALPN).
pub fn upstream_client_config(ca: &Path) -> Result<Arc<ClientConfig>, RelayError> {
    let err = |reason: String| RelayError::Ca {
        path: ca.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate".to_owned()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    Ok(upstream_client_config_with_roots(roots))
}

/// A rustls client configuration trusting `roots` (no ALPN).
pub fn upstream_client_config_with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(builder) => builder,
            // *ring* supports the safe default versions: not reachable.
            Err(e) => unreachable!("ring lacks TLS 1.2/1.3: {e}"),
        };
    Arc::new(config.with_root_certificates(roots).with_no_client_auth())
}

/// Serves `listener` until `shutdown` resolves: then stops accepting, closes
/// the open connections (each records its `deconnexion`) and returns once
/// they are all done.
pub async fn serve<J: Journal>(
    listener: TcpListener,
    config: Arc<RelayConfig>,
    journal: Arc<J>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    accept_loop(listener, shutdown, "imap relay", move |tcp, peer, stop| {
        let (config, journal) = (config.clone(), journal.clone());
        async move {
            if let Err(e) = connection(tcp, peer, &config, &*journal, stop).await {
                tracing::info!(%peer, error = %e, "imap relay: connection ended");
            }
        }
    })
    .await
}

/// Accepts connections on `listener` until `shutdown` resolves, one task
/// per connection (`handle`, given the `stop` signal); then tells the open
/// connections to stop and returns once they are all done. Shared by the
/// IMAP and the submission relays.
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    what: &'static str,
    handle: H,
) -> io::Result<()>
where
    H: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "{what}: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                tasks.spawn(handle(tcp, peer, stop_rx.clone()));
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Either side's byte stream, TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn connection<J: Journal>(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &RelayConfig,
    journal: &J,
    stop: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let _ = tcp.set_nodelay(true);
    let mut client: Box<dyn Io> = match config.listen_tls {
        ListenTls::Implicit => Box::new(
            tokio::time::timeout(HANDSHAKE_TIMEOUT, config.acceptor.accept(tcp))
                .await
                .map_err(|_| RelayError::Timeout("client TLS handshake"))??,
        ),
        ListenTls::Starttls => Box::new(
            tokio::time::timeout(PLAINTEXT_TIMEOUT, client_starttls(tcp, peer, config))
                .await
                .map_err(|_| RelayError::Timeout("client STARTTLS"))??,
        ),
    };
    let upstream = match tokio::time::timeout(UPSTREAM_TIMEOUT, connect_upstream(config)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            let _ = client
                .write_all(b"* BYE [UNAVAILABLE] mail server unavailable\r\n")
                .await;
            return Err(e);
        }
        Err(_) => {
            let _ = client
                .write_all(b"* BYE [UNAVAILABLE] mail server unavailable\r\n")
                .await;
            return Err(RelayError::Timeout("upstream connection"));
        }
    };
    // The client of a STARTTLS listener had the proxy's greeting already.
    let greet = match (config.listen_tls, config.upstream_tls) {
        (ListenTls::Starttls, _) => None,
        (ListenTls::Implicit, UpstreamTls::Starttls) => Some(
            without_capability_code(&upstream.greeting)
                .unwrap_or_else(|| upstream.greeting.clone()),
        ),
        (ListenTls::Implicit, _) => Some(
            without_capabilities(&upstream.greeting, REMOVED_CAPABILITIES)
                .unwrap_or_else(|| upstream.greeting.clone()),
        ),
    };
    if let Some(greeting) = greet {
        client.write_all(&greeting).await?;
        client.flush().await?;
    }
    let info = ConnectionInfo {
        client_ip: Some(peer.ip()),
        session: Some(format!("{peer}")),
    };
    relay(
        client,
        upstream,
        info,
        (config.tracer.clone(), config.limits),
        journal,
        stop,
    )
    .await
}

/// The plaintext phase of a STARTTLS listener: the proxy answers by itself
/// until the client's STARTTLS, then drops whatever else it had read and
/// hands the socket to TLS.
async fn client_starttls(
    mut tcp: TcpStream,
    peer: SocketAddr,
    config: &RelayConfig,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, RelayError> {
    const CAPS: &str = "IMAP4rev1 STARTTLS LOGINDISABLED";
    tcp.write_all(
        format!("* OK [CAPABILITY {CAPS}] registre proxy ready, STARTTLS first\r\n").as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    let mut refused = 0;
    loop {
        let Some(line) = read_line(&mut tcp, &mut buf, SHORT_LINE).await? else {
            return Err(RelayError::Plaintext("closed before STARTTLS"));
        };
        let mut words = line.split(|&b| b == b' ');
        let tag = words.next().filter(|t| valid_tag(t));
        let command = words.next().map(<[u8]>::to_ascii_uppercase);
        let args = words.next().is_some();
        let reply = match (tag, command.as_deref(), args) {
            (Some(tag), Some(b"STARTTLS"), false) => {
                let mut ok = tag.to_vec();
                ok.extend_from_slice(b" OK Begin TLS negotiation now\r\n");
                tcp.write_all(&ok).await?;
                if !buf.is_empty() {
                    // Never forwarded, never logged: only its size.
                    tracing::warn!(%peer, bytes = buf.len(), "imap relay: bytes sent after STARTTLS before the handshake discarded");
                }
                drop(buf);
                return tokio::time::timeout(HANDSHAKE_TIMEOUT, config.acceptor.accept(tcp))
                    .await
                    .map_err(|_| RelayError::Timeout("client TLS handshake"))?
                    .map_err(RelayError::Io);
            }
            (Some(tag), Some(b"CAPABILITY"), false) => {
                let mut r = format!("* CAPABILITY {CAPS}\r\n").into_bytes();
                r.extend_from_slice(tag);
                r.extend_from_slice(b" OK CAPABILITY completed\r\n");
                r
            }
            (Some(tag), Some(b"NOOP"), false) => [tag, b" OK NOOP completed\r\n"].concat(),
            (Some(tag), Some(b"LOGOUT"), false) => {
                let r = [b"* BYE logging out\r\n", tag, b" OK LOGOUT completed\r\n"].concat();
                tcp.write_all(&r).await?;
                return Err(RelayError::Plaintext("logged out before STARTTLS"));
            }
            (Some(tag), Some(_), _) => {
                refused += 1;
                [tag, b" NO [PRIVACYREQUIRED] use STARTTLS first\r\n"].concat()
            }
            _ => {
                refused += 1;
                b"* BAD [CLIENTBUG] expected a tagged command\r\n".to_vec()
            }
        };
        if refused > 10 {
            tcp.write_all(b"* BYE too many commands refused before STARTTLS\r\n")
                .await?;
            return Err(RelayError::Plaintext("too many refused commands"));
        }
        tcp.write_all(&reply).await?;
    }
}

/// A tag the proxy may echo: 1 to 64 printable ASCII characters, none of
/// IMAP's specials (RFC 9051 `tag`).
fn valid_tag(tag: &[u8]) -> bool {
    (1..=64).contains(&tag.len())
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\]+".contains(&b))
}

/// Reads one line (CRLF removed) of at most `max` bytes into `buf`; what
/// follows it stays in `buf`. `None` at end of stream before any line.
async fn read_line<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<Vec<u8>>, RelayError> {
    loop {
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = buf.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
        if buf.len() > max {
            return Err(RelayError::Plaintext("line too long"));
        }
        let mut chunk = [0u8; 1024];
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The upstream connection once greeted.
struct Upstream {
    io: Box<dyn Io>,
    /// The greeting line, CRLF included.
    greeting: Vec<u8>,
}

async fn connect_upstream(config: &RelayConfig) -> Result<Upstream, RelayError> {
    let tcp = TcpStream::connect(&config.upstream).await?;
    let _ = tcp.set_nodelay(true);
    let tls = |tcp| config.connector.connect(config.upstream_name.clone(), tcp);
    match config.upstream_tls {
        UpstreamTls::None => greeted(Box::new(tcp)).await,
        UpstreamTls::Implicit => greeted(Box::new(tls(tcp).await?)).await,
        UpstreamTls::Starttls => {
            let mut tcp = tcp;
            let mut buf = Vec::new();
            let greeting = greeting_line(&mut tcp, &mut buf).await?;
            tcp.write_all(b"registre0 STARTTLS\r\n").await?;
            loop {
                let line = read_line(&mut tcp, &mut buf, SHORT_LINE)
                    .await
                    .map_err(|_| RelayError::Upstream("STARTTLS answer too long"))?
                    .ok_or(RelayError::Upstream("closed during STARTTLS"))?;
                if line.starts_with(b"registre0 ") {
                    if !line[10..].to_ascii_uppercase().starts_with(b"OK") {
                        return Err(RelayError::Upstream("STARTTLS refused"));
                    }
                    break;
                }
            }
            if !buf.is_empty() {
                // Server-side injection: bytes after the OK, before TLS.
                return Err(RelayError::Upstream("bytes after its STARTTLS answer"));
            }
            Ok(Upstream {
                io: Box::new(tls(tcp).await?),
                greeting,
            })
        }
    }
}

/// Reads the greeting of a server whose stream starts with it.
async fn greeted(mut io: Box<dyn Io>) -> Result<Upstream, RelayError> {
    let mut buf = Vec::new();
    let greeting = greeting_line(&mut io, &mut buf).await?;
    if !buf.is_empty() {
        return Err(RelayError::Upstream("bytes after its greeting"));
    }
    Ok(Upstream { io, greeting })
}

async fn greeting_line<R: AsyncRead + Unpin>(
    from: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, RelayError> {
    let mut line = read_line(from, buf, SHORT_LINE)
        .await
        .map_err(|_| RelayError::Upstream("greeting too long"))?
        .ok_or(RelayError::Upstream("closed before its greeting"))?;
    let upper = line.to_ascii_uppercase();
    if !(upper.starts_with(b"* OK") || upper.starts_with(b"* PREAUTH")) {
        return Err(RelayError::Upstream("no OK greeting"));
    }
    line.extend_from_slice(b"\r\n");
    Ok(line)
}

/// What both directions of one connection share.
struct Shared {
    session: Session,
    tracer: ImapTracer,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Relays a greeted connection until either side ends or `stop` is set.
async fn relay<J: Journal>(
    client: Box<dyn Io>,
    upstream: Upstream,
    info: ConnectionInfo,
    (tracer, limits): (Arc<TracerConfig>, Limits),
    journal: &J,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let mut session = Session::new(limits);
    session.client.refuse_starttls();
    let mut tracer = ImapTracer::new(tracer, info);
    // The greeting was read (and forwarded) outside the pumps.
    let (events, _) = session.server_bytes(&upstream.greeting)?;
    for event in &events {
        tracer.observe(&event.event);
    }
    let position = upstream.greeting.len() as u64;
    let shared = Mutex::new(Shared { session, tracer });
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream.io);
    let (inject_tx, inject_rx) = mpsc::channel(MAX_INJECTIONS);

    let result = {
        let mut to_server = pin!(client_to_server(
            client_read,
            upstream_write,
            &shared,
            journal,
            inject_tx
        ));
        let mut to_client = pin!(server_to_client(
            upstream_read,
            client_write,
            &shared,
            journal,
            inject_rx,
            position,
        ));
        tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => Ok(()),
            r = &mut to_client => r,
            r = &mut to_server => match r {
                // The client closed its side: let the server finish.
                Ok(()) => tokio::time::timeout(DRAIN_TIMEOUT, &mut to_client)
                    .await
                    .unwrap_or(Ok(())),
                Err(e) => Err(e),
            },
        }
    };
    let closing = lock(&shared).tracer.connection_closed();
    if let Some(trace) = closing
        && journal.record(vec![trace]).await.is_err()
    {
        tracing::warn!("imap relay: journal unavailable, deconnexion not traced");
    }
    result
}

/// The proxy's own answer to commands it never forwards: a second TLS
/// layer or compression would leave the stream unreadable (both are
/// removed from the capabilities; a client sending them anyway is told no).
fn never_forwarded(name: &str) -> Option<&'static [u8]> {
    match name {
        "STARTTLS" => Some(b" BAD [CLIENTBUG] TLS is already active with the proxy\r\n"),
        "COMPRESS" => Some(b" NO [CANNOT] compression is not available through the proxy\r\n"),
        _ => None,
    }
}

/// Commands that can produce a trace: refused before forwarding when the
/// journal is not ready.
fn traceable(name: &[u8]) -> bool {
    const NAMES: &[&[u8]] = &[
        b"LOGIN",
        b"AUTHENTICATE",
        b"FETCH",
        b"STORE",
        b"COPY",
        b"MOVE",
        b"EXPUNGE",
        b"CLOSE",
        b"APPEND",
    ];
    let name = name.strip_prefix(b"UID ").unwrap_or(name);
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The tag and command name (`UID ` included) at the start of a command
/// line's text.
fn head(text: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let mut words = text.splitn(4, |&b| b == b' ');
    let tag = words.next()?;
    let mut name = words.next()?.to_ascii_uppercase();
    if name == b"UID" {
        name.push(b' ');
        name.extend_from_slice(&words.next()?.to_ascii_uppercase());
    }
    Some((tag, name))
}

async fn client_to_server<R, W, J>(
    mut from: R,
    mut to: W,
    shared: &Mutex<Shared>,
    journal: &J,
    inject: mpsc::Sender<(String, &'static [u8])>,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    J: Journal,
{
    let mut buf = vec![0u8; CHUNK];
    // Bytes read and neither forwarded nor dropped, from stream position
    // `base`.
    let mut pending: Vec<u8> = Vec::new();
    let mut base: u64 = 0;
    // A refused command whose literal is still arriving: dropped until it
    // ends (its line's start).
    let mut dropping: Option<(u64, String)> = None;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        pending.extend_from_slice(&buf[..n]);
        let end = base + pending.len() as u64;
        let mut cuts: Vec<(u64, u64)> = Vec::new();
        let mut refused: Vec<(String, &'static [u8])> = Vec::new();
        let hold_from;
        {
            let mut guard = lock(shared);
            let session = &mut guard.session;
            // Parsed before forwarding: a chunk the parser refuses never leaves.
            let events = session.client_bytes(&buf[..n])?;
            for event in &events {
                let ClientEvent::Command(command) = &event.event else {
                    continue;
                };
                if let Some((start, tag)) = dropping.take_if(|(s, _)| *s == event.start) {
                    cuts.push((start.max(base), event.end));
                    refused.push((tag, NOT_PERFORMED));
                } else if event.start < base {
                    // Already (partly) forwarded: the server answers it.
                } else if let Some(answer) = never_forwarded(&command.name) {
                    cuts.push((event.start, event.end));
                    refused.push((command.tag.clone(), answer));
                } else if traceable(command.name.as_bytes()) && !journal.ready() {
                    cuts.push((event.start, event.end));
                    refused.push((command.tag.clone(), NOT_PERFORMED));
                }
            }
            let open = session.client.open_command().map(|o| {
                (
                    o.start,
                    o.in_literal,
                    o.awaiting_sync,
                    head(o.text).map(|(t, n)| (t.to_vec(), n)),
                )
            });
            hold_from = match open {
                // A refused command's literal: dropped as it comes.
                Some((start, ..)) if dropping.as_ref().is_some_and(|(s, _)| *s == start) => {
                    cuts.push((start.max(base), end));
                    end
                }
                Some((start, true, awaiting_sync, Some((tag, name))))
                    if start >= base && traceable(&name) && !journal.ready() =>
                {
                    let tag = String::from_utf8_lossy(&tag).into_owned();
                    cuts.push((start, end));
                    if awaiting_sync {
                        // The client waits for `+`: refuse now, so the
                        // decoder knows the literal will not come.
                        let refusal = Tagged {
                            tag: tag.clone(),
                            status: Status::No,
                            code: None,
                            text: String::new(),
                        };
                        let mut late = Vec::new();
                        session.client.on_tagged_completion(&refusal, &mut late);
                        for e in &late {
                            session
                                .matcher
                                .on_client(&e.event)
                                .map_err(SessionError::from)?;
                        }
                        refused.push((tag, NOT_PERFORMED));
                    } else {
                        dropping = Some((start, tag));
                    }
                    end
                }
                // A literal streams; its command line was let through.
                Some((_, true, ..)) => end,
                // A line still being typed: held until its command is known.
                Some((start, false, ..)) => start.max(base),
                None => end,
            };
        }
        // Forward [base, hold_from) minus the cuts.
        let mut at = base;
        let mut out: Vec<u8> = Vec::with_capacity((hold_from - base) as usize);
        for (from_pos, to_pos) in &cuts {
            let (from_pos, to_pos) = ((*from_pos).max(at), (*to_pos).min(hold_from));
            if from_pos > at {
                out.extend_from_slice(&pending[(at - base) as usize..(from_pos - base) as usize]);
            }
            at = at.max(to_pos);
        }
        if hold_from > at {
            out.extend_from_slice(&pending[(at - base) as usize..(hold_from - base) as usize]);
        }
        pending.drain(..(hold_from - base) as usize);
        base = hold_from;
        if !out.is_empty() {
            to.write_all(&out).await?;
            to.flush().await?;
        }
        if refused.iter().any(|(_, answer)| *answer == NOT_PERFORMED) {
            tracing::warn!("imap relay: journal unavailable, commands refused before the server");
        }
        for refusal in refused {
            if inject.send(refusal).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// What to do with one piece of server output if the journal refuses.
enum OnFail {
    /// Forward it anyway (no trace depends on it).
    Keep,
    /// Replace it by a `NO [UNAVAILABLE]` for this tag.
    Refuse(String),
    /// Forward nothing from here and close.
    Close,
}

struct Piece {
    bytes: Vec<u8>,
    on_fail: OnFail,
}

/// The server → client byte stream: `pending` holds the bytes from stream
/// position `base` not yet forwarded; `line_start` is where the current
/// (incomplete) line starts; bytes before `sent` are planned for output.
/// Positions count the refusals the relay inserted as if the server had
/// sent them, as the session's decoder does.
struct ServerStream {
    pending: Vec<u8>,
    base: u64,
    sent: u64,
    line_start: u64,
}

impl ServerStream {
    fn slice(&self, from: u64, to: u64) -> &[u8] {
        &self.pending[(from - self.base) as usize..(to - self.base) as usize]
    }

    /// Between two lines: a line may be inserted.
    fn at_boundary(&self) -> bool {
        self.pending.is_empty() && self.sent == self.line_start
    }
}

async fn server_to_client<R, W, J>(
    mut from: R,
    mut to: W,
    shared: &Mutex<Shared>,
    journal: &J,
    mut inject: mpsc::Receiver<(String, &'static [u8])>,
    position: u64,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    J: Journal,
{
    let mut buf = vec![0u8; CHUNK];
    let mut stream = ServerStream {
        pending: Vec::new(),
        base: position,
        sent: position,
        line_start: position,
    };
    let mut queued: VecDeque<(String, &'static [u8])> = VecDeque::new();
    let mut inject_open = true;
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    let _ = to.shutdown().await;
                    return Ok(());
                }
                forward_chunk(&buf[..n], &mut stream, shared, journal, &mut to).await?;
            }
            refusal = inject.recv(), if inject_open => match refusal {
                Some(refusal) => queued.push_back(refusal),
                None => inject_open = false,
            },
        }
        if !queued.is_empty() && stream.at_boundary() {
            let out = refusals(&mut queued, &mut stream, shared)?;
            to.write_all(&out).await?;
            to.flush().await?;
        }
    }
}

/// The refusal lines for the queued tags, inserted at a line boundary.
fn refusals(
    queued: &mut VecDeque<(String, &'static [u8])>,
    stream: &mut ServerStream,
    shared: &Mutex<Shared>,
) -> Result<Vec<u8>, RelayError> {
    let mut out = Vec::new();
    let mut guard = lock(shared);
    let Shared { session, tracer } = &mut *guard;
    for (tag, answer) in queued.drain(..) {
        let mut line = tag.into_bytes();
        line.extend_from_slice(answer);
        // The session sees the refusal as the server's answer, so the
        // command leaves the matcher; its trace (of an action that did not
        // happen, while the journal is down) is not recorded.
        let (_, exchanges) = session.server_bytes(&line)?;
        for exchange in &exchanges {
            let _ = tracer.trace(exchange);
        }
        let len = line.len() as u64;
        stream.base += len;
        stream.sent += len;
        stream.line_start += len;
        out.extend_from_slice(&line);
    }
    Ok(out)
}

/// Plans, records and forwards one chunk from the server.
async fn forward_chunk<W, J>(
    chunk: &[u8],
    stream: &mut ServerStream,
    shared: &Mutex<Shared>,
    journal: &J,
    to: &mut W,
) -> Result<(), RelayError>
where
    W: AsyncWrite + Unpin,
    J: Journal,
{
    stream.pending.extend_from_slice(chunk);
    let (pieces, traces) = plan(stream, shared, chunk)?;
    let recorded = traces.is_empty() || journal.record(traces).await.is_ok();
    let mut out = Vec::new();
    for piece in pieces {
        match (recorded, piece.on_fail) {
            (true, _) | (false, OnFail::Keep) => out.extend_from_slice(&piece.bytes),
            (false, OnFail::Refuse(tag)) => {
                out.extend_from_slice(tag.as_bytes());
                out.extend_from_slice(NOT_TRACED);
            }
            (false, OnFail::Close) => {
                to.write_all(&out).await?;
                let _ = to.shutdown().await;
                return Err(RelayError::Journal);
            }
        }
    }
    if !recorded {
        tracing::warn!("imap relay: journal unavailable, answers refused to the client");
    }
    to.write_all(&out).await?;
    to.flush().await?;
    Ok(())
}

/// Feeds one server chunk to the session and the tracer: the output pieces
/// (in order) and the traces to record before they are forwarded.
fn plan(
    stream: &mut ServerStream,
    shared: &Mutex<Shared>,
    chunk: &[u8],
) -> Result<(Vec<Piece>, Vec<Trace>), RelayError> {
    let mut guard = lock(shared);
    let Shared { session, tracer } = &mut *guard;
    let (events, exchanges) = session.server_bytes(chunk)?;
    let mut exchanges = exchanges.iter().peekable();
    let mut pieces = Vec::new();
    let mut traces = Vec::new();
    let filter = |line: &[u8]| without_capabilities(line, REMOVED_CAPABILITIES);
    for event in &events {
        let streamed = stream.sent > event.start;
        let from = stream.sent.max(event.start);
        let line = stream.slice(from, event.end);
        let mut on_fail = OnFail::Keep;
        let mut bytes = None;
        match &event.event {
            ServerEvent::Tagged(tagged) => {
                if let Some(exchange) = exchanges.next_if(|e| e.completion == *tagged)
                    && let Some(trace) = tracer.trace(exchange)
                {
                    traces.push(trace);
                    on_fail = if streamed {
                        OnFail::Close
                    } else {
                        OnFail::Refuse(tagged.tag.clone())
                    };
                }
                if matches!(tagged.code, Some(ResponseCode::Capability(_))) && !streamed {
                    bytes = filter(line);
                }
            }
            other => {
                tracer.observe(other);
                let capability = matches!(
                    other,
                    ServerEvent::Untagged(
                        Untagged::Capability(_)
                            | Untagged::Status {
                                code: Some(ResponseCode::Capability(_)),
                                ..
                            }
                    )
                );
                if capability && !streamed {
                    bytes = filter(line);
                }
            }
        }
        pieces.push(Piece {
            bytes: bytes.unwrap_or_else(|| line.to_vec()),
            on_fail,
        });
        stream.sent = event.end;
        stream.line_start = event.end;
    }
    // Completions the events did not pair (not expected): traced, and the
    // connection closes if they cannot be recorded.
    for exchange in exchanges {
        if let Some(trace) = tracer.trace(exchange) {
            traces.push(trace);
            pieces.push(Piece {
                bytes: Vec::new(),
                on_fail: OnFail::Close,
            });
        }
    }
    drop(guard);
    // The incomplete line: streamed once its first physical line is
    // complete (what follows is a literal: FETCH data, never a tagged or
    // capability line), held back before.
    let end = stream.base + stream.pending.len() as u64;
    let streaming = stream.sent > stream.line_start;
    if end > stream.sent && (streaming || stream.slice(stream.sent, end).contains(&b'\n')) {
        pieces.push(Piece {
            bytes: stream.slice(stream.sent, end).to_vec(),
            on_fail: OnFail::Keep,
        });
        stream.sent = end;
    }
    let done = (stream.sent - stream.base) as usize;
    stream.pending.drain(..done);
    stream.base = stream.sent;
    Ok((pieces, traces))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal that keeps the traces, or refuses them all.
    struct Memory {
        refuse: bool,
        ready: bool,
        traces: Mutex<Vec<Trace>>,
    }

    impl Journal for Memory {
        type Error = io::Error;

        async fn record(&self, traces: Vec<Trace>) -> Result<(), io::Error> {
            if self.refuse {
                return Err(io::Error::other("down"));
            }
            self.traces.lock().unwrap().extend(traces);
            Ok(())
        }

        fn ready(&self) -> bool {
            self.ready
        }
    }

    /// Runs the server → client direction over `server` (delivered `chunk`
    /// bytes at a time) after the client sent `client`.
    async fn server_side(
        client: &[u8],
        server: &[u8],
        chunk: usize,
        refuse: bool,
    ) -> (Vec<u8>, usize) {
        let shared = Mutex::new(Shared {
            session: Session::new(Limits::default()),
            tracer: ImapTracer::new(Arc::default(), ConnectionInfo::default()),
        });
        lock(&shared).session.client_bytes(client).unwrap();
        let (mut tx, rx) = tokio::io::duplex(chunk);
        let server = server.to_vec();
        let writer = tokio::spawn(async move {
            let _ = tx.write_all(&server).await;
        });
        let journal = Memory {
            refuse,
            ready: true,
            traces: Mutex::new(Vec::new()),
        };
        let mut out = Vec::new();
        let (_, inject) = mpsc::channel(1);
        let _ = server_to_client(rx, &mut out, &shared, &journal, inject, 0).await;
        writer.await.unwrap();
        let count = journal.traces.lock().unwrap().len();
        (out, count)
    }

    const CLIENT: &[u8] = b"a1 LOGIN dr.martin secret\r\na2 UID FETCH 7 (BODY.PEEK[])\r\n";
    const SERVER: &[u8] = b"* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE IDLE] ready\r\n\
        * CAPABILITY IMAP4rev1 compress=deflate\r\n\
        a1 OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] Logged in\r\n\
        * 1 FETCH (UID 7 BODY[] {12}\r\nhello\r\nworld)\r\n\
        a2 OK Fetch completed.\r\n";
    const FORWARDED: &[u8] = b"* OK [CAPABILITY IMAP4rev1 IDLE] ready\r\n\
        * CAPABILITY IMAP4rev1\r\n\
        a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n\
        * 1 FETCH (UID 7 BODY[] {12}\r\nhello\r\nworld)\r\n\
        a2 OK Fetch completed.\r\n";

    #[tokio::test]
    async fn forwards_unchanged_but_compress_deflate_in_any_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let (out, traces) = server_side(CLIENT, SERVER, chunk, false).await;
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(FORWARDED),
                "chunk {chunk}"
            );
            assert_eq!(traces, 2, "connexion and consultation, chunk {chunk}");
        }
    }

    #[tokio::test]
    async fn refuses_the_answer_when_the_journal_is_down() {
        for chunk in [1, 5, 4096] {
            let (out, traces) = server_side(CLIENT, SERVER, chunk, true).await;
            let expected = String::from_utf8_lossy(FORWARDED)
                .replace(
                    "a1 OK [CAPABILITY IMAP4rev1] Logged in",
                    "a1 NO [UNAVAILABLE] journal unavailable, action not traced",
                )
                .replace(
                    "a2 OK Fetch completed.",
                    "a2 NO [UNAVAILABLE] journal unavailable, action not traced",
                );
            assert_eq!(String::from_utf8_lossy(&out), expected, "chunk {chunk}");
            assert_eq!(traces, 0);
        }
    }

    #[tokio::test]
    async fn a_parser_error_forwards_nothing_more() {
        // A line longer than the limit: the connection ends, the line is
        // not forwarded.
        let mut server = b"* OK ready\r\n".to_vec();
        server.extend(std::iter::repeat_n(b'x', 70 * 1024));
        let (out, _) = server_side(b"", &server, 4096, false).await;
        assert_eq!(out, b"* OK ready\r\n");
    }

    /// A server that answers every line `<tag> OK done` and keeps what it
    /// received.
    async fn fake_server(io: tokio::io::DuplexStream) -> Vec<u8> {
        let (mut r, mut w) = tokio::io::split(io);
        w.write_all(b"* OK ready\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        loop {
            let line = match read_line(&mut r, &mut buf, 1 << 20).await {
                Ok(Some(line)) => line,
                _ => return got,
            };
            got.extend_from_slice(&line);
            got.extend_from_slice(b"\r\n");
            let tag = line
                .split(|&b| b == b' ')
                .next()
                .unwrap_or_default()
                .to_vec();
            let mut answer = tag;
            answer.extend_from_slice(b" OK done\r\n");
            if w.write_all(&answer).await.is_err() {
                return got;
            }
        }
    }

    /// Reads from `r` until `needle` has been seen.
    async fn read_until(r: &mut (impl AsyncRead + Unpin), seen: &mut Vec<u8>, needle: &str) {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(seen).contains(needle) {
            let n = r.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Runs `client` through the relay in front of [`fake_server`]: what
    /// the client read and what the server received.
    async fn through_relay<C, F>(journal: &Memory, client: C) -> (String, String)
    where
        C: FnOnce(
            tokio::io::ReadHalf<tokio::io::DuplexStream>,
            tokio::io::WriteHalf<tokio::io::DuplexStream>,
        ) -> F,
        F: Future<Output = Vec<u8>>,
    {
        let (client_end, proxy_client) = tokio::io::duplex(64 * 1024);
        let (proxy_upstream, server_end) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(fake_server(server_end));
        let (_stop_tx, stop) = watch::channel(false);
        let proxy = async {
            let mut upstream: Box<dyn Io> = Box::new(proxy_upstream);
            let mut buf = Vec::new();
            let greeting = greeting_line(&mut upstream, &mut buf).await.unwrap();
            relay(
                Box::new(proxy_client),
                Upstream {
                    io: upstream,
                    greeting,
                },
                ConnectionInfo::default(),
                (Arc::default(), Limits::default()),
                journal,
                stop,
            )
            .await
        };
        let (r, w) = tokio::io::split(client_end);
        // The client's write half is dropped when it returns: end of input.
        let (result, seen) = tokio::join!(proxy, client(r, w));
        result.unwrap();
        let got = String::from_utf8(server.await.unwrap()).unwrap();
        (String::from_utf8(seen).unwrap(), got)
    }

    #[tokio::test]
    async fn commands_are_refused_before_the_server_when_the_journal_is_not_ready() {
        let journal = Memory {
            refuse: true,
            ready: false,
            traces: Mutex::new(Vec::new()),
        };
        let (seen, got) = through_relay(&journal, |mut r, mut w| async move {
            let mut seen = Vec::new();
            // LITERAL+ and a synchronising literal, refused; the rest passes.
            w.write_all(
                b"a1 NOOP\r\na2 UID STORE 1 +FLAGS (\\Deleted)\r\n\
                  a3 APPEND INBOX {5+}\r\nhello\r\na4 SELECT INBOX\r\na5 APPEND INBOX {7}\r\n",
            )
            .await
            .unwrap();
            read_until(&mut r, &mut seen, "a5 NO").await;
            // Split in the middle of a line, then a command line cut twice.
            w.write_all(b"a6 NO").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            w.write_all(b"OP\r\na7 EXP").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            w.write_all(b"UNGE\r\n").await.unwrap();
            read_until(&mut r, &mut seen, "a7 NO").await;
            read_until(&mut r, &mut seen, "a6 OK").await;
            seen
        })
        .await;
        assert_eq!(got, "a1 NOOP\r\na4 SELECT INBOX\r\na6 NOOP\r\n");
        for tag in ["a2", "a3", "a5", "a7"] {
            assert!(
                seen.contains(&format!(
                    "{tag} NO [UNAVAILABLE] journal unavailable, command not performed\r\n"
                )),
                "{tag}: {seen}"
            );
        }
        for tag in ["a1", "a4", "a6"] {
            assert!(
                seen.contains(&format!("{tag} OK done\r\n")),
                "{tag}: {seen}"
            );
        }
        assert!(journal.traces.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn starttls_and_compress_are_answered_by_the_proxy() {
        let journal = Memory {
            refuse: false,
            ready: true,
            traces: Mutex::new(Vec::new()),
        };
        let (seen, got) = through_relay(&journal, |mut r, mut w| async move {
            let mut seen = Vec::new();
            w.write_all(b"t1 STARTTLS\r\nt2 COMPRESS DEFLATE\r\nt3 NOOP\r\n")
                .await
                .unwrap();
            read_until(&mut r, &mut seen, "t3 OK").await;
            read_until(&mut r, &mut seen, "t2 NO").await;
            seen
        })
        .await;
        assert_eq!(got, "t3 NOOP\r\n");
        assert!(seen.contains("t1 BAD [CLIENTBUG]"), "{seen}");
        assert!(seen.contains("t2 NO [CANNOT]"), "{seen}");
    }

    #[test]
    fn traceable_commands_and_heads() {
        assert!(traceable(b"UID FETCH"));
        assert!(traceable(b"append"));
        assert!(!traceable(b"SELECT"));
        assert!(!traceable(b"UID SEARCH"));
        assert_eq!(
            head(b"a1 uid fetch 1:* (FLAGS)"),
            Some((&b"a1"[..], b"UID FETCH".to_vec()))
        );
        assert_eq!(head(b"a1"), None);
        assert!(valid_tag(b"A0001"));
        assert!(!valid_tag(b"a+1"));
        assert!(!valid_tag(b""));
    }
}
