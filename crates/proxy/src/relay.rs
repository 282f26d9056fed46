//! The IMAP relay (DESIGN §9, issue 6): implicit TLS on both sides, bytes
//! forwarded unchanged, both directions parsed passively, one trace per
//! significant action handed to a [`Journal`] before the server's answer
//! reaches the client.
//!
//! # What it does
//!
//! - Accepts TLS connections with the proxy's certificate ([`serve`]), opens
//!   a TLS connection to the upstream server verified against its CA
//!   ([`upstream_client_config`]), one task per connection.
//! - Client → server: each chunk is fed to the [`Session`] first, then
//!   forwarded as is.
//! - Server → client: complete lines are forwarded as is, except
//!   `COMPRESS=DEFLATE` removed from capability lists and codes
//!   ([`without_compress_deflate`]). A line is held back only until its first
//!   physical line is complete (at most [`Limits::max_line`]); a line with a
//!   literal (FETCH data) is then streamed, never buffered whole.
//! - The traces an answer produces are recorded ([`Journal::record`]) before
//!   the tagged answer is forwarded.
//!
//! # Fail closed (minimal form)
//!
//! If the journal refuses, the tagged answer forwarded to the client is
//! replaced by `<tag> NO [UNAVAILABLE] journal unavailable, action not
//! traced`. The command has already been performed upstream at that point
//! (its answer is what we hold): the client is told it failed and nothing
//! untraced is *acknowledged*, but e.g. an EXPUNGE did happen. True fail
//! closed (hold each command until the journal is known to be writable, or
//! spool) is later work.
//!
//! A parse error in either direction ends the connection at once: nothing
//! the parser could not read is forwarded, so no action passes untraced.
//!
//! # Never content
//!
//! Nothing here logs bytes: log lines name the peer address and the error
//! kind only (parser errors name limits and rules, never the bytes).

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
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::imap::{
    Limits, ResponseCode, ServerEvent, Session, SessionError, Untagged, without_compress_deflate,
};
use crate::imap_trace::{ConnectionInfo, ImapTracer, TracerConfig};

/// A client has this long to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The upstream server has this long to accept TCP and TLS.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// After the client closed its side, the server has this long to close.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per direction.
const CHUNK: usize = 16 * 1024;

/// Where traces go. Resolves once the traces are durable.
pub trait Journal: Send + Sync + 'static {
    /// Why recording failed.
    type Error: std::error::Error + Send + 'static;

    /// Records `traces` (in order); `Ok` once they are durable.
    fn record(&self, traces: Vec<Trace>) -> impl Future<Output = Result<(), Self::Error>> + Send;
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
    /// `host:port` of the upstream IMAPS server.
    pub upstream: String,
    /// The name the upstream certificate must carry.
    pub upstream_name: ServerName<'static>,
    /// TLS toward the upstream server.
    pub connector: TlsConnector,
    /// Shared by every connection's tracer.
    pub tracer: Arc<TracerConfig>,
    /// Parser bounds, each direction.
    pub limits: Limits,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("upstream", &self.upstream)
            .field("upstream_name", &self.upstream_name)
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
                        tracing::warn!(error = %e, "imap relay: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (config, journal, stop) = (config.clone(), journal.clone(), stop_rx.clone());
                tasks.spawn(async move {
                    if let Err(e) = connection(tcp, peer, &config, &*journal, stop).await {
                        tracing::info!(%peer, error = %e, "imap relay: connection ended");
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// What both directions of one connection share.
struct Shared {
    session: Session,
    tracer: ImapTracer,
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn connection<J: Journal>(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &RelayConfig,
    journal: &J,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    let _ = tcp.set_nodelay(true);
    let client = tokio::time::timeout(HANDSHAKE_TIMEOUT, config.acceptor.accept(tcp))
        .await
        .map_err(|_| RelayError::Timeout("client TLS handshake"))??;
    let upstream = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let tcp = TcpStream::connect(&config.upstream).await?;
        let _ = tcp.set_nodelay(true);
        config
            .connector
            .connect(config.upstream_name.clone(), tcp)
            .await
    })
    .await
    .map_err(|_| RelayError::Timeout("upstream connection"))??;

    let info = ConnectionInfo {
        client_ip: Some(peer.ip()),
        session: Some(format!("{peer}")),
    };
    let shared = Mutex::new(Shared {
        session: Session::new(config.limits),
        tracer: ImapTracer::new(config.tracer.clone(), info),
    });
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);

    let result = {
        let mut to_server = pin!(client_to_server(client_read, upstream_write, &shared));
        let mut to_client = pin!(server_to_client(
            upstream_read,
            client_write,
            &shared,
            journal,
            config.limits.max_line,
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
        tracing::warn!(%peer, "imap relay: journal unavailable, deconnexion not traced");
    }
    result
}

async fn client_to_server<R, W>(
    mut from: R,
    mut to: W,
    shared: &Mutex<Shared>,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        // Parsed before forwarding: a chunk the parser refuses never leaves.
        lock(shared).session.client_bytes(&buf[..n])?;
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
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
}

async fn server_to_client<R, W, J>(
    mut from: R,
    mut to: W,
    shared: &Mutex<Shared>,
    journal: &J,
    max_line: usize,
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    J: Journal,
{
    let mut buf = vec![0u8; CHUNK];
    let mut stream = ServerStream {
        pending: Vec::new(),
        base: 0,
        sent: 0,
        line_start: 0,
    };
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let chunk = &buf[..n];
        stream.pending.extend_from_slice(chunk);
        let (pieces, traces) = plan(&mut stream, shared, chunk)?;
        // Bounded: a held line is at most one physical line, which the
        // decoder bounds by `max_line` (it errors past it).
        debug_assert!(stream.pending.len() <= max_line + 2 * CHUNK);
        let recorded = traces.is_empty() || journal.record(traces).await.is_ok();
        let mut out = Vec::new();
        for piece in pieces {
            match (recorded, piece.on_fail) {
                (true, _) | (false, OnFail::Keep) => out.extend_from_slice(&piece.bytes),
                (false, OnFail::Refuse(tag)) => {
                    out.extend_from_slice(tag.as_bytes());
                    out.extend_from_slice(
                        b" NO [UNAVAILABLE] journal unavailable, action not traced\r\n",
                    );
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
    }
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
                    bytes = without_compress_deflate(line);
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
                    bytes = without_compress_deflate(line);
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
    }

    /// Runs the server → client direction over `server` (delivered `chunk`
    /// bytes at a time) after the client sent `client`.
    async fn relay(client: &[u8], server: &[u8], chunk: usize, refuse: bool) -> (Vec<u8>, usize) {
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
            traces: Mutex::new(Vec::new()),
        };
        let mut out = Vec::new();
        let _ = server_to_client(rx, &mut out, &shared, &journal, 64 * 1024).await;
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
            let (out, traces) = relay(CLIENT, SERVER, chunk, false).await;
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
            let (out, traces) = relay(CLIENT, SERVER, chunk, true).await;
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
        let (out, _) = relay(b"", &server, 4096, false).await;
        assert_eq!(out, b"* OK ready\r\n");
    }
}
