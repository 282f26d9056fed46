//! Syslog listeners (DESIGN §8, IHE ATNA): RFC 5424 messages over UDP (RFC
//! 5426), TLS (RFC 5425) and plain TCP (RFC 6587), each message a DICOM
//! AuditMessage or a JSON trace ([`registre_audit::syslog::message_to_trace`]).
//! All are off unless configured (`registre serve --syslog-udp`,
//! `--syslog-tls`, `--syslog-tcp`, or `[syslog]`).
//!
//! # Delivery
//!
//! Syslog has no acknowledgement, so back-pressure is the only promise: on
//! a stream (TCP, TLS) the frames of one read are parsed, appended to the
//! store as one batch, and the next read happens only once that batch is
//! durable. A UDP listener drains the datagrams already queued (up to
//! [`UDP_BATCH`], 1 MiB) into one batch the same way. Nothing is ever dropped
//! silently: every message is counted when received
//! (`registre_syslog_messages_total{outcome="received"}`), then either
//! stored (`outcome="stored"`) or refused
//! (`registre_syslog_refused_total{reason}`, and logged with its reason,
//! never its content). A message is refused whole: it is stored entirely or
//! not at all.
//!
//! # Streams
//!
//! TLS takes RFC 5425 octet counting; plain TCP takes octet counting or
//! LF-terminated lines (decided per frame). A stream that cannot be split
//! into frames (garbage, a frame over `max_frame`, a sender that vanishes or
//! stalls inside a frame) is counted (`registre_syslog_frame_errors_total`),
//! logged, and its connection closed: the frames completed before the error
//! are stored, the partial one is not; other connections are unaffected.
//! Memory per connection is bounded (one read buffer, at most one
//! `max_frame` in progress); connections are limited per listener
//! (`max_connections`, extra ones closed at once and counted); a started
//! frame must finish within `frame_timeout` and an idle connection is closed
//! after `idle_timeout`. On shutdown every listener stops accepting, each
//! connection finishes the batch it is storing, and then closes.
//!
//! # Authorship
//!
//! A syslog sender is a trusted source, like the MSSanté proxy: the actor
//! named in its messages is taken as is (`actor.auth` is whatever a JSON
//! trace says, absent for DICOM). Restrict who may send with mutual TLS
//! (`client_ca`, `require_client_cert`) and, optionally, `allowed_clients`
//! (certificate common names or subjectAltNames). UDP and plain TCP carry
//! no authentication: keep them on loopback or a protected network.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use registre_audit::syslog::{FrameDecoder, Framing, MessageError, message_to_trace};
use registre_model::{Trace, TraceError, TraceErrorKind};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::AppState;
use crate::events::{AppendFailed, TracesAccepted};
use crate::tls::{ClientCertificate, HANDSHAKE_TIMEOUT};

pub use registre_audit::syslog::DEFAULT_MAX_FRAME;
/// The TLS configuration [`serve_tls`] takes ([`crate::tls::server_config`]).
pub use rustls::ServerConfig;

/// The IANA port of syslog over TLS (RFC 5425).
pub const DEFAULT_TLS_PORT: u16 = 6514;
/// Most datagrams taken into one batch…
pub const UDP_BATCH: usize = 512;
/// …and most bytes (the next datagrams wait in the socket's buffer).
const UDP_BATCH_BYTES: usize = 1 << 20;
/// Bytes read from a stream at once.
const READ_BUFFER: usize = 64 * 1024;
/// Refusals logged per listener and second; the rest are only counted.
const LOGS_PER_SECOND: u64 = 20;

/// How the listeners behave (`[syslog]` in registre.toml).
#[derive(Debug, Clone)]
pub struct SyslogOptions {
    /// Largest frame on a stream, bytes (a message kept with a trace is at
    /// most 16 KiB; larger frames up to this are refused one by one, larger
    /// still close the connection).
    pub max_frame: usize,
    /// Open connections per stream listener.
    pub max_connections: usize,
    /// A connection with no frame in progress is closed after this long
    /// without a byte.
    pub idle_timeout: Duration,
    /// A frame, once started, must be complete within this.
    pub frame_timeout: Duration,
    /// TLS: when not empty, only client certificates whose common name or
    /// one of whose subjectAltNames is listed may send.
    pub allowed_clients: Vec<String>,
}

impl Default for SyslogOptions {
    fn default() -> SyslogOptions {
        SyslogOptions {
            max_frame: DEFAULT_MAX_FRAME,
            max_connections: 256,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            allowed_clients: Vec::new(),
        }
    }
}

/// A listener's transport, as metrics and logs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Logs refusals without flooding: at most [`LOGS_PER_SECOND`] per second,
/// then a count of those not logged.
#[derive(Default)]
struct LogLimiter {
    second: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimiter {
    fn allow(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.count.store(0, Ordering::Relaxed);
            let n = self.suppressed.swap(0, Ordering::Relaxed);
            if n > 0 {
                tracing::warn!(
                    suppressed = n,
                    "syslog refusals not logged (rate limit); all are counted in registre_syslog_refused_total"
                );
            }
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < LOGS_PER_SECOND {
            true
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// What every listener shares.
struct Ctx {
    st: Arc<AppState>,
    opts: SyslogOptions,
    transport: Transport,
    logs: LogLimiter,
}

impl Ctx {
    fn name(&self) -> &'static str {
        self.transport.as_str()
    }

    /// One message → a trace, or its refusal (counted and logged).
    fn parse(&self, peer: SocketAddr, raw: &[u8]) -> Option<Trace> {
        let refused = |code: &'static str, detail: &dyn std::fmt::Display| {
            self.st.metrics.syslog_refused(self.name(), code, 1);
            if self.logs.allow() {
                tracing::warn!(
                    transport = self.name(),
                    %peer,
                    reason = code,
                    bytes = raw.len(),
                    "syslog message refused, nothing stored: {detail}"
                );
            }
        };
        if raw.len() > self.opts.max_frame {
            let e = MessageError::TooLarge {
                len: raw.len(),
                max: self.opts.max_frame,
            };
            refused(e.code(), &e);
            return None;
        }
        match message_to_trace(raw, &self.st.limits) {
            Ok(t) if self.st.classes.contains(&t.class) => Some(t),
            Ok(_) => {
                let e = TraceError::new(
                    "class",
                    TraceErrorKind::UnknownClass {
                        known: self
                            .st
                            .classes
                            .iter()
                            .map(|c| c.as_str().to_owned())
                            .collect(),
                    },
                );
                refused("unknown_class", &e);
                None
            }
            Err(e) => {
                refused(e.code(), &e);
                None
            }
        }
    }

    /// Counts, parses and stores one batch of messages (each with its
    /// peer, for the logs). `Err` when the store could not make them
    /// durable (they are counted as refused, `store_unavailable`).
    async fn store(&self, messages: &[(&[u8], SocketAddr)]) -> Result<(), ()> {
        if messages.is_empty() {
            return Ok(());
        }
        let m = &self.st.metrics;
        m.syslog_received(self.name(), messages.len() as u64);
        let traces: Vec<Trace> = messages
            .iter()
            .filter_map(|(raw, peer)| self.parse(*peer, raw))
            .collect();
        if traces.is_empty() {
            return Ok(());
        }
        let n = traces.len();
        match self.st.store.append(traces).await {
            Ok(receipts) => {
                m.syslog_stored(self.name(), n as u64);
                let mut by_log: Vec<(&str, u64)> = Vec::new();
                for r in &receipts {
                    match by_log.iter_mut().find(|(l, _)| *l == r.log.as_str()) {
                        Some(e) => e.1 += 1,
                        None => by_log.push((r.log.as_str(), 1)),
                    }
                }
                for (log, count) in by_log {
                    TracesAccepted { log, count }.emit(m);
                }
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                AppendFailed {
                    traces: n,
                    error: &msg,
                }
                .emit(m);
                m.syslog_refused(self.name(), "store_unavailable", n as u64);
                tracing::error!(
                    transport = self.name(),
                    peer = %messages[0].1,
                    messages = n,
                    "syslog messages not stored: {msg}"
                );
                Err(())
            }
        }
    }
}

/// RFC 5426: one message per datagram, until `shutdown`.
pub async fn serve_udp(
    socket: UdpSocket,
    st: Arc<AppState>,
    opts: SyslogOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let ctx = Ctx {
        st,
        opts,
        transport: Transport::Udp,
        logs: LogLimiter::default(),
    };
    let mut shutdown = pin!(shutdown);
    // The largest UDP payload is 65,507 bytes: a datagram is never cut.
    let mut buf = vec![0u8; 65_536];
    loop {
        let first = tokio::select! {
            () = &mut shutdown => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, peer) = match first {
            Ok(x) => x,
            Err(e) => {
                // ICMP port unreachable and the like: not ours to stop on,
                // but no busy loop either.
                tracing::debug!(error = %e, "syslog UDP receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Datagrams from several peers may share a batch; each refusal is
        // logged with its own peer.
        let mut batch = vec![(buf[..n].to_vec(), peer)];
        let mut bytes = n;
        while batch.len() < UDP_BATCH && bytes < UDP_BATCH_BYTES {
            match socket.try_recv_from(&mut buf) {
                Ok((n, p)) => {
                    batch.push((buf[..n].to_vec(), p));
                    bytes += n;
                }
                Err(_) => break,
            }
        }
        let messages: Vec<(&[u8], SocketAddr)> =
            batch.iter().map(|(raw, p)| (raw.as_slice(), *p)).collect();
        // A failure is counted and logged; UDP has no connection to close.
        let _ = ctx.store(&messages).await;
    }
    Ok(())
}

/// RFC 6587 over plain TCP: octet counting or LF-terminated lines.
pub async fn serve_tcp(
    listener: TcpListener,
    st: Arc<AppState>,
    opts: SyslogOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    accept_streams(listener, None, st, opts, shutdown).await
}

/// RFC 5425: octet counting over TLS with the server's certificate (and,
/// when `config` verifies them, client certificates). The configuration's
/// ALPN list is not used: syslog senders do not offer one.
pub async fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    st: Arc<AppState>,
    opts: SyslogOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let mut config = (*config).clone();
    config.alpn_protocols.clear();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    accept_streams(listener, Some(acceptor), st, opts, shutdown).await
}

async fn accept_streams(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    st: Arc<AppState>,
    opts: SyslogOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let ctx = Arc::new(Ctx {
        st,
        transport,
        logs: LogLimiter::default(),
        opts,
    });
    let slots = Arc::new(Semaphore::new(ctx.opts.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        while tasks.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                tracing::error!(transport = transport.as_str(), error = %e, "syslog listener: accept failed");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            ctx.st
                .metrics
                .syslog_connection(transport.as_str(), "refused_limit");
            if ctx.logs.allow() {
                tracing::warn!(
                    transport = transport.as_str(),
                    %peer,
                    limit = ctx.opts.max_connections,
                    "syslog connection refused: too many open connections"
                );
            }
            drop(tcp);
            continue;
        };
        ctx.st
            .metrics
            .syslog_connection(transport.as_str(), "accepted");
        let ctx = ctx.clone();
        let tls = tls.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            let _slot = slot;
            ctx.st.metrics.syslog_open(ctx.name(), 1);
            match tls {
                None => stream(tcp, peer, &ctx, stop).await,
                Some(acceptor) => tls_connection(tcp, peer, acceptor, &ctx, stop).await,
            }
            ctx.st.metrics.syslog_open(ctx.name(), -1);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

async fn tls_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) {
    let m = &ctx.st.metrics;
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        r = handshake => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                m.syslog_connection("tls", "tls_handshake_failed");
                tracing::info!(%peer, error = %e, "syslog TLS handshake failed");
                return;
            }
            Err(_) => {
                m.syslog_connection("tls", "tls_handshake_failed");
                tracing::info!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "syslog TLS handshake timed out");
                return;
            }
        },
        _ = stop.wait_for(|s| *s) => return,
    };
    if !ctx.opts.allowed_clients.is_empty() {
        let cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| ClientCertificate::from_der(der).ok());
        let allowed = cert.as_ref().is_some_and(|c| {
            ctx.opts.allowed_clients.iter().any(|a| {
                c.common_name.as_deref() == Some(a.as_str()) || c.sans.iter().any(|s| s == a)
            })
        });
        if !allowed {
            m.syslog_connection("tls", "client_not_allowed");
            tracing::warn!(
                %peer,
                subject = cert.as_ref().map_or("(no client certificate)", |c| c.subject.as_str()),
                "syslog TLS client not in [syslog] allowed_clients: connection closed"
            );
            return;
        }
    }
    stream(tls, peer, ctx, stop).await;
}

/// Reads frames until the peer leaves, a framing error, a store failure, a
/// timeout or shutdown. Each read's frames are stored before the next read.
async fn stream<IO: AsyncRead + Unpin>(
    mut io: IO,
    peer: SocketAddr,
    ctx: &Ctx,
    mut stop: watch::Receiver<bool>,
) {
    let name = ctx.name();
    let m = &ctx.st.metrics;
    let framing = match ctx.transport {
        Transport::Tls => Framing::OctetCounting,
        _ => Framing::Auto,
    };
    let mut dec = FrameDecoder::new(framing, ctx.opts.max_frame);
    let mut buf = vec![0u8; READ_BUFFER];
    let frame_error = |reason: &'static str, detail: &dyn std::fmt::Display| {
        m.syslog_frame_error(name, reason);
        tracing::warn!(
            transport = name,
            %peer,
            reason,
            "syslog connection closed: {detail}; the frames before were stored, the partial one was not"
        );
    };
    loop {
        let limit = if dec.in_frame() {
            ctx.opts.frame_timeout
        } else {
            ctx.opts.idle_timeout
        };
        let read = tokio::select! {
            r = tokio::time::timeout(limit, io.read(&mut buf)) => r,
            _ = stop.wait_for(|s| *s) => {
                if dec.in_frame() {
                    frame_error("shutdown", &"the server is stopping");
                }
                return;
            }
        };
        let n = match read {
            Ok(Ok(0)) => {
                if let Err(e) = dec.finish() {
                    frame_error(e.code(), &e);
                }
                return;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                if dec.in_frame() {
                    frame_error(
                        "truncated",
                        &format_args!("read failed inside a frame ({e})"),
                    );
                } else {
                    tracing::debug!(transport = name, %peer, error = %e, "syslog connection ended");
                }
                return;
            }
            Err(_) => {
                if dec.in_frame() {
                    frame_error(
                        "timeout",
                        &format_args!("a frame did not complete within {:?}", limit),
                    );
                } else {
                    tracing::debug!(transport = name, %peer, idle = ?limit, "idle syslog connection closed");
                }
                return;
            }
        };
        let mut frames = Vec::new();
        let decoded = dec.decode(&buf[..n], &mut frames);
        let messages: Vec<(&[u8], SocketAddr)> =
            frames.iter().map(|f| (f.as_slice(), peer)).collect();
        if ctx.store(&messages).await.is_err() {
            // Not durable: the sender must not keep sending into the void.
            return;
        }
        if let Err(e) = decoded {
            frame_error(e.code(), &e);
            return;
        }
    }
}
