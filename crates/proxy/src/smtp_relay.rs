//! The submission relay (DESIGN §9, issue 6): mail clients on one side, the
//! operator's submission server on the other, bytes forwarded unchanged,
//! both directions parsed passively ([`crate::smtp`]), one trace per AUTH,
//! mail transaction and QUIT ([`SmtpTracer`]) handed to a [`Journal`]
//! before the server's answer reaches the client.
//!
//! # TLS
//!
//! - Toward clients ([`ListenTls`]): implicit TLS (465), or plaintext then
//!   STARTTLS (587). The proxy answers STARTTLS itself (`220 2.0.0 Ready to
//!   start TLS`) once every earlier reply has been forwarded; **whatever the
//!   client sent after STARTTLS and before the handshake is discarded**
//!   (plaintext command injection, RFC 3207 §5, CVE-2011-0411) and the
//!   client parser starts over. Before STARTTLS only EHLO, HELO, NOOP, RSET
//!   and QUIT are relayed; anything else is answered `530 5.7.0 Must issue
//!   a STARTTLS command first` by the proxy, so no password or message
//!   crosses the client's network in clear. STARTTLS on a link already in
//!   TLS is answered `503 5.5.1 TLS already active`.
//! - Toward the server ([`UpstreamTls`]): implicit TLS, plaintext (`none`),
//!   or STARTTLS, which the proxy negotiates itself on connect (greeting,
//!   `EHLO <helo_name>`, STARTTLS, handshake) before relaying: the client
//!   then gets the server's original greeting and its own EHLO reaches the
//!   server inside TLS. A server that does not offer STARTTLS is not used.
//! - EHLO replies are rewritten so that they promise only what the proxy
//!   delivers: `STARTTLS` is offered exactly while the client link is
//!   plaintext and listen-tls is starttls (AUTH is hidden then), and only
//!   the extensions in [`KEPT_EXTENSIONS`] are passed on. The parser follows
//!   CHUNKING (BDAT), so it stays; BURL (the server fetches the message
//!   from IMAP: a send the proxy would not see end), XCLIENT, XFORWARD and
//!   any extension the proxy does not know are removed.
//!
//! # Bytes
//!
//! Client bytes are parsed before any of them is forwarded; a command line
//! is forwarded once complete, message data (DATA after the server's 354,
//! BDAT chunks) as it arrives, never buffered whole. Bytes sent after DATA
//! are held (at most one line, [`Limits::max_line`]) until the server
//! answers: message or commands. Server replies are forwarded whole, in
//! order, EHLO replies rewritten. Everything else is forwarded unchanged.
//!
//! One task per connection reads both sides and writes in between: SMTP is
//! strictly request/reply, so the server never writes while it is being
//! written to except to end the connection (which the socket buffers
//! absorb).
//!
//! # Fail closed
//!
//! Replies are first in, first out (RFC 5321 §4.1, RFC 2920), so the proxy
//! keeps an ordered queue of what each command is owed: a server reply, or
//! a reply of its own; its own replies leave only once every earlier server
//! reply has been forwarded.
//!
//! - `MAIL FROM` when [`Journal::ready`] is false is not forwarded: the proxy
//!   answers `451 4.3.0 journal unavailable, try again later`, and the RCPT,
//!   DATA and BDAT of that transaction (pipelined or not) `503 5.5.1 MAIL
//!   transaction refused: journal unavailable`; the BDAT chunks are dropped.
//! - `AUTH` when the journal is not ready: `454 4.7.0 journal unavailable`.
//! - The `envoi` trace is recorded before the reply to the end of the
//!   message (or to BDAT LAST) is forwarded. If recording fails then, that
//!   reply becomes `451 4.3.0 journal unavailable, message status unknown`.
//!   **The narrow race:** the server has already taken the message at that
//!   point (its reply is what we hold), so a message can leave untraced if
//!   the journal fails between MAIL FROM (when it was ready) and the end of
//!   the data. The client is told the send failed, so it will retry: at
//!   worst a duplicate, never a send acknowledged without a trace. Closing
//!   that window needs a local spool (later work).
//! - A successful AUTH whose `connexion` cannot be recorded is answered
//!   `454 4.7.0 journal unavailable` and the connection is closed (the
//!   server's session is authenticated, the client was told it is not).
//! - A parse error in either direction ends the connection at once: nothing
//!   the parser could not read is forwarded.
//!
//! # Known limits
//!
//! - A DATA message whose lines end with a bare LF is relayed as sent (the
//!   parser counts them, [`ClientEvent::Message`]`::bare_line_feeds`): a
//!   server that ends data on `LF.LF` (SMTP smuggling) would see a second
//!   transaction the proxy does not. Postfix and Dovecot do not; refusing
//!   such messages would need the end of data held back until the count is
//!   known.
//! - Idle connections are closed by the server's timeouts, not the proxy's.
//!
//! # Never content
//!
//! Nothing here logs bytes: log lines name the peer address and the error
//! kind only.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use registre_model::Trace;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::imap::Spanned;
use crate::relay::{DRAIN_TIMEOUT, HANDSHAKE_TIMEOUT, Journal, UPSTREAM_TIMEOUT};
use crate::smtp::{
    ClientEvent, Command, CommandArgs, Decision, Limits, Outcome, ServerDecoder, ServerEvent,
    Session, SessionError,
};
use crate::smtp_trace::SmtpTracer;
use crate::tls::{ListenTls, UpstreamTls};
use crate::trace_common::{ConnectionInfo, TracerConfig};

/// Read buffer per direction.
const CHUNK: usize = 16 * 1024;
/// At most this many replies owed to the client (server's and the proxy's).
pub const MAX_OWED: usize = 1024;
/// A server reply is held whole (EHLO replies are rewritten): at most this
/// many bytes of it.
pub const MAX_REPLY: usize = 64 * 1024;

/// The EHLO extensions passed on to clients (any case; `AUTH=…` too): the
/// ones the parser follows or that do not change what a transaction is.
pub const KEPT_EXTENSIONS: &[&str] = &[
    "PIPELINING",
    "SIZE",
    "8BITMIME",
    "BINARYMIME",
    "CHUNKING",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "SMTPUTF8",
    "AUTH",
    "VRFY",
    "EXPN",
    "HELP",
    "ETRN",
    "DELIVERBY",
    "MT-PRIORITY",
    "REQUIRETLS",
    "RRVS",
    "FUTURERELEASE",
    "NO-SOLICITING",
    "MTRK",
    "LIMITS",
    "SUBMITTER",
];

const READY_TO_START_TLS: &[u8] = b"220 2.0.0 Ready to start TLS\r\n";
const TLS_ALREADY_ACTIVE: &[u8] = b"503 5.5.1 TLS already active\r\n";
const STARTTLS_FIRST: &[u8] = b"530 5.7.0 Must issue a STARTTLS command first\r\n";
const MAIL_REFUSED: &[u8] = b"451 4.3.0 journal unavailable, try again later\r\n";
const TRANSACTION_REFUSED: &[u8] = b"503 5.5.1 MAIL transaction refused: journal unavailable\r\n";
const AUTH_REFUSED: &[u8] = b"454 4.7.0 journal unavailable\r\n";
const AUTH_DATA_REFUSED: &[u8] = b"501 5.5.2 authentication exchange already ended\r\n";
const STATUS_UNKNOWN: &[u8] = b"451 4.3.0 journal unavailable, message status unknown\r\n";
const UPSTREAM_DOWN: &[u8] = b"421 4.3.0 service not available, closing transmission channel\r\n";

/// One submission relay listener's settings.
#[derive(Clone)]
pub struct SmtpRelayConfig {
    /// TLS toward mail clients: implicit, or STARTTLS.
    pub listen_tls: ListenTls,
    /// The proxy's certificate (for either mode).
    pub acceptor: TlsAcceptor,
    /// `host:port` of the upstream submission server.
    pub upstream: String,
    /// TLS toward the upstream server.
    pub upstream_tls: UpstreamTls,
    /// The name the upstream certificate must carry.
    pub upstream_name: ServerName<'static>,
    /// TLS toward the upstream server (unused with [`UpstreamTls::None`]);
    /// see [`crate::relay::upstream_client_config`].
    pub connector: TlsConnector,
    /// The name the proxy gives in its own EHLO (upstream STARTTLS only):
    /// the proxy host's name.
    pub helo_name: String,
    /// Shared by every connection's tracer.
    pub tracer: Arc<TracerConfig>,
    /// Parser bounds, each direction.
    pub limits: Limits,
}

impl std::fmt::Debug for SmtpRelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelayConfig")
            .field("listen_tls", &self.listen_tls)
            .field("upstream", &self.upstream)
            .field("upstream_tls", &self.upstream_tls)
            .field("upstream_name", &self.upstream_name)
            .field("helo_name", &self.helo_name)
            .field("tracer", &self.tracer)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpRelayError {
    /// A network or TLS error.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// Timed out (handshake, upstream connection).
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The upstream server did not follow the expected dialogue.
    #[error("upstream server: {0}")]
    Upstream(&'static str),
    /// The parser refused a direction; the connection is closed.
    #[error("SMTP parser: {0}")]
    Parse(#[from] SessionError),
    /// More replies owed than [`MAX_OWED`], or a reply longer than
    /// [`MAX_REPLY`].
    #[error("SMTP limit: {0}")]
    Limit(&'static str),
    /// The journal refused a trace that could not be answered for.
    #[error("journal unavailable")]
    Journal,
}

/// Serves `listener` until `shutdown` resolves: then stops accepting, closes
/// the open connections (each records what it still owes: transactions left
/// open, `deconnexion`) and returns once they are all done.
pub async fn serve<J: Journal>(
    listener: TcpListener,
    config: Arc<SmtpRelayConfig>,
    journal: Arc<J>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    crate::relay::accept_loop(listener, shutdown, "smtp relay", move |tcp, peer, stop| {
        let (config, journal) = (config.clone(), journal.clone());
        async move {
            if let Err(e) = connection(tcp, peer, &config, &*journal, stop).await {
                tracing::info!(%peer, error = %e, "smtp relay: connection ended");
            }
        }
    })
    .await
}

/// A connection's stream: plaintext, or TLS as server or client.
enum Stream {
    Plain(TcpStream),
    Accepted(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Connected(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Between taking the plaintext stream and the end of its handshake.
    Upgrading,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Accepted(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Connected(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Accepted(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Connected(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Accepted(s) => Pin::new(s).poll_flush(cx),
            Stream::Connected(s) => Pin::new(s).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Accepted(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Connected(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

async fn connection<J: Journal>(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &SmtpRelayConfig,
    journal: &J,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SmtpRelayError> {
    let _ = tcp.set_nodelay(true);
    let mut client = match config.listen_tls {
        ListenTls::Implicit => Stream::Accepted(Box::new(accept(config, tcp).await?)),
        ListenTls::Starttls => Stream::Plain(tcp),
    };
    let upstream = tokio::time::timeout(UPSTREAM_TIMEOUT, connect_upstream(config))
        .await
        .map_err(|_| SmtpRelayError::Timeout("upstream connection"))
        .and_then(|r| r);
    let (mut upstream, greeting) = match upstream {
        Ok(connected) => connected,
        Err(e) => {
            let _ = client.write_all(UPSTREAM_DOWN).await;
            let _ = client.shutdown().await;
            return Err(e);
        }
    };

    let info = ConnectionInfo {
        client_ip: Some(peer.ip()),
        session: Some(format!("{peer}")),
    };
    let mut relay = Relay::new(config, info);
    let ready = || journal.ready();
    let mut io = Io {
        client: &mut client,
        upstream: &mut upstream,
        journal,
        peer,
        config,
    };
    let result: Result<(), SmtpRelayError> = async {
        if let Some(greeting) = greeting {
            let plan = relay.server_bytes(&greeting, &ready)?;
            io.execute(plan, &mut relay).await?;
        }
        let mut client_buf = vec![0u8; CHUNK];
        let mut server_buf = vec![0u8; CHUNK];
        loop {
            tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => return Ok(()),
                n = io.client.read(&mut client_buf) => {
                    let n = closed_is_zero(n)?;
                    if n == 0 {
                        return io.drain(&mut relay, &mut server_buf, &ready).await;
                    }
                    let plan = relay.client_bytes(&client_buf[..n], &ready)?;
                    io.execute(plan, &mut relay).await?;
                }
                n = io.upstream.read(&mut server_buf) => {
                    let n = closed_is_zero(n)?;
                    if n == 0 {
                        let _ = io.client.shutdown().await;
                        return Ok(());
                    }
                    let plan = relay.server_bytes(&server_buf[..n], &ready)?;
                    io.execute(plan, &mut relay).await?;
                }
            }
        }
    }
    .await;
    let closing = relay.finish();
    if !closing.is_empty() && journal.record(closing).await.is_err() {
        tracing::warn!(%peer, "smtp relay: journal unavailable, end of connection not traced");
    }
    result
}

/// A TLS peer that closes without `close_notify` (most mail clients after
/// QUIT) has ended the connection like any other: no error.
fn closed_is_zero(read: io::Result<usize>) -> io::Result<usize> {
    match read {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
        other => other,
    }
}

async fn accept(
    config: &SmtpRelayConfig,
    tcp: TcpStream,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, SmtpRelayError> {
    Ok(
        tokio::time::timeout(HANDSHAKE_TIMEOUT, config.acceptor.accept(tcp))
            .await
            .map_err(|_| SmtpRelayError::Timeout("client TLS handshake"))??,
    )
}

/// Connects to the server; with upstream STARTTLS, negotiates it and
/// returns the server's greeting (to be relayed to the client).
async fn connect_upstream(
    config: &SmtpRelayConfig,
) -> Result<(Stream, Option<Vec<u8>>), SmtpRelayError> {
    let tcp = TcpStream::connect(&config.upstream).await?;
    let _ = tcp.set_nodelay(true);
    let name = config.upstream_name.clone();
    match config.upstream_tls {
        UpstreamTls::None => Ok((Stream::Plain(tcp), None)),
        UpstreamTls::Implicit => {
            let tls = config.connector.connect(name, tcp).await?;
            Ok((Stream::Connected(Box::new(tls)), None))
        }
        UpstreamTls::Starttls => {
            let mut dialogue = Dialogue {
                tcp,
                decoder: ServerDecoder::new(config.limits),
                read: Vec::new(),
                used: 0,
            };
            let greeting = dialogue.reply().await?;
            if greeting.1 != 220 {
                return Err(SmtpRelayError::Upstream("no 220 greeting"));
            }
            dialogue
                .send(format!("EHLO {}\r\n", config.helo_name).as_bytes())
                .await?;
            let (_, code, starttls) = dialogue.reply().await?;
            if code != 250 || !starttls {
                return Err(SmtpRelayError::Upstream("STARTTLS not offered"));
            }
            dialogue.send(b"STARTTLS\r\n").await?;
            if dialogue.reply().await?.1 != 220 {
                return Err(SmtpRelayError::Upstream("STARTTLS refused"));
            }
            if dialogue.used != dialogue.read.len() {
                // Bytes after the 220, before the handshake: injected.
                return Err(SmtpRelayError::Upstream("bytes after STARTTLS"));
            }
            let tls = config.connector.connect(name, dialogue.tcp).await?;
            Ok((Stream::Connected(Box::new(tls)), Some(greeting.0)))
        }
    }
}

/// The proxy's own plaintext dialogue with the server before STARTTLS.
struct Dialogue {
    tcp: TcpStream,
    decoder: ServerDecoder,
    /// Everything read so far; `used` of it decoded into replies.
    read: Vec<u8>,
    used: usize,
}

impl Dialogue {
    async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tcp.write_all(bytes).await?;
        self.tcp.flush().await
    }

    /// The next reply: its bytes, its code, whether it offers STARTTLS.
    async fn reply(&mut self) -> Result<(Vec<u8>, u16, bool), SmtpRelayError> {
        let mut buf = [0u8; 4096];
        loop {
            // Decode what was read but not decoded yet, a byte at a time
            // past the previous reply, so no byte after this one is taken.
            while self.used < self.read.len() {
                let mut events = Vec::new();
                let from = self.used;
                self.decoder
                    .feed(&self.read[from..=from], &mut events)
                    .map_err(SessionError::from)?;
                self.used += 1;
                if let Some(event) = events.pop() {
                    let ServerEvent::Reply(reply) = event.event else {
                        return Err(SmtpRelayError::Upstream("not a reply"));
                    };
                    let start = usize::try_from(event.start).unwrap_or(usize::MAX);
                    let bytes = self.read.get(start..self.used).unwrap_or_default().to_vec();
                    let starttls = reply.extensions().iter().any(|e| e.keyword == "STARTTLS");
                    return Ok((bytes, reply.code, starttls));
                }
            }
            if self.read.len() > MAX_REPLY {
                return Err(SmtpRelayError::Limit("upstream reply too long"));
            }
            let n = self.tcp.read(&mut buf).await?;
            if n == 0 {
                return Err(SmtpRelayError::Upstream("closed during STARTTLS"));
            }
            self.read.extend_from_slice(&buf[..n]);
        }
    }
}

/// The I/O side of one connection.
struct Io<'a, J> {
    client: &'a mut Stream,
    upstream: &'a mut Stream,
    journal: &'a J,
    peer: SocketAddr,
    config: &'a SmtpRelayConfig,
}

impl<J: Journal> Io<'_, J> {
    /// Records the plan's traces, then writes its bytes; performs the
    /// client's TLS handshake when the plan ends with the proxy's 220.
    async fn execute(&mut self, plan: Plan, relay: &mut Relay) -> Result<(), SmtpRelayError> {
        let peer = self.peer;
        if plan.refused > 0 {
            tracing::warn!(%peer, commands = plan.refused, "smtp relay: journal unavailable, commands refused");
        }
        let recorded = plan.traces.is_empty() || self.journal.record(plan.traces).await.is_ok();
        if !recorded {
            tracing::warn!(%peer, "smtp relay: journal unavailable, trace not recorded");
        }
        if !plan.to_server.is_empty() {
            self.upstream.write_all(&plan.to_server).await?;
            self.upstream.flush().await?;
        }
        let (out, close) = resolve(plan.to_client, recorded);
        if !out.is_empty() {
            self.client.write_all(&out).await?;
            self.client.flush().await?;
        }
        if close {
            let _ = self.client.shutdown().await;
            return Err(SmtpRelayError::Journal);
        }
        if plan.starttls {
            let Stream::Plain(tcp) = std::mem::replace(self.client, Stream::Upgrading) else {
                return Err(SmtpRelayError::Limit("STARTTLS on a TLS link"));
            };
            *self.client = Stream::Accepted(Box::new(accept(self.config, tcp).await?));
            let (traces, discarded) = relay.client_tls_started();
            if discarded > 0 {
                tracing::warn!(%peer, bytes = discarded, "smtp relay: plaintext sent after STARTTLS discarded");
            }
            if !traces.is_empty() && self.journal.record(traces).await.is_err() {
                tracing::warn!(%peer, "smtp relay: journal unavailable, trace not recorded");
            }
        }
        Ok(())
    }

    /// The client closed its side: the server has a little while to answer
    /// what it still owes (the QUIT's 221, say), then the connection ends.
    async fn drain(
        &mut self,
        relay: &mut Relay,
        buf: &mut [u8],
        ready: &impl Fn() -> bool,
    ) -> Result<(), SmtpRelayError> {
        let _ = self.upstream.shutdown().await;
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        loop {
            let Ok(n) = tokio::time::timeout_at(deadline, self.upstream.read(buf)).await else {
                return Ok(());
            };
            let n = closed_is_zero(n)?;
            if n == 0 {
                return Ok(());
            }
            let plan = relay.server_bytes(&buf[..n], ready)?;
            if !plan.traces.is_empty() && self.journal.record(plan.traces).await.is_err() {
                tracing::warn!(peer = %self.peer, "smtp relay: journal unavailable, trace not recorded");
            }
        }
    }
}

/// The bytes for the client, given whether the plan's traces were
/// recorded, and whether the connection must close after them.
fn resolve(pieces: Vec<Piece>, recorded: bool) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    for piece in pieces {
        match (recorded, piece.on_fail) {
            (true, _) | (false, OnFail::Keep) => out.extend_from_slice(&piece.bytes),
            (false, OnFail::Replace(reply)) => out.extend_from_slice(reply),
            (false, OnFail::Close(reply)) => {
                out.extend_from_slice(reply);
                return (out, true);
            }
        }
    }
    (out, false)
}

/// What to do with a reply if the traces recorded before it are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnFail {
    /// Forward it anyway (no trace acknowledges an action through it).
    Keep,
    /// Forward this reply instead.
    Replace(&'static [u8]),
    /// Forward this reply instead, then close.
    Close(&'static [u8]),
}

impl OnFail {
    fn rank(self) -> u8 {
        match self {
            OnFail::Keep => 0,
            OnFail::Replace(_) => 1,
            OnFail::Close(_) => 2,
        }
    }
}

#[derive(Debug)]
struct Piece {
    bytes: Vec<u8>,
    on_fail: OnFail,
}

/// What one batch of bytes from either side gives: bytes for the server,
/// replies for the client, traces to record before the replies leave.
#[derive(Debug, Default)]
struct Plan {
    to_server: Vec<u8>,
    to_client: Vec<Piece>,
    traces: Vec<Trace>,
    /// The proxy's `220` to STARTTLS is the last piece: the handshake
    /// follows.
    starttls: bool,
    /// Commands refused because the journal was not ready.
    refused: u32,
}

/// What a command is owed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owed {
    /// A server reply; `ehlo` when it answers EHLO (to rewrite).
    Server { ehlo: bool },
    /// A reply of the proxy's.
    Local(&'static [u8]),
    /// The proxy's `220` to STARTTLS, then the handshake.
    StartTls,
}

/// How the client's next bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Commands,
    /// A DATA message the server accepted: streamed to it.
    Message,
    /// A BDAT chunk: streamed (`forward`) or dropped.
    Chunk {
        forward: bool,
    },
}

/// Bytes of one direction not yet forwarded: `bytes[0]` is at stream
/// position `base`; up to `cursor` they are decided (forwarded or dropped).
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    base: u64,
    cursor: u64,
}

impl Pending {
    fn end(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }

    /// The undecided bytes up to `to`, now decided.
    fn take(&mut self, to: u64) -> &[u8] {
        let from = self.cursor.max(self.base);
        let to = to.clamp(from, self.end());
        self.cursor = to;
        // Both within `bytes`: clamped to [base, end].
        &self.bytes[(from - self.base) as usize..(to - self.base) as usize]
    }

    /// Drops what is decided.
    fn settle(&mut self) {
        let done = (self.cursor.max(self.base) - self.base) as usize;
        self.bytes.drain(..done.min(self.bytes.len()));
        self.base += done as u64;
    }

    fn held(&self) -> usize {
        self.bytes.len()
    }
}

/// One connection's protocol state: the parser, the tracer, what each
/// command is owed. Pure: the I/O is [`Io`]'s.
#[derive(Debug)]
struct Relay {
    session: Session,
    tracer: SmtpTracer,
    owed: VecDeque<Owed>,
    client: Pending,
    server: Pending,
    flow: Flow,
    /// The current MAIL FROM was refused by the proxy.
    refusing: bool,
    /// The last AUTH was answered by the proxy.
    auth_local: bool,
    listen: ListenTls,
    client_tls: bool,
    /// Bytes dropped after STARTTLS.
    discarded: u64,
}

impl Relay {
    fn new(config: &SmtpRelayConfig, info: ConnectionInfo) -> Self {
        Self::with(
            config.tracer.clone(),
            config.limits,
            config.listen_tls,
            info,
        )
    }

    fn with(
        tracer: Arc<TracerConfig>,
        limits: Limits,
        listen: ListenTls,
        info: ConnectionInfo,
    ) -> Self {
        Self {
            session: Session::new(limits),
            tracer: SmtpTracer::new(tracer, info),
            owed: VecDeque::from([Owed::Server { ehlo: false }]),
            client: Pending::default(),
            server: Pending::default(),
            flow: Flow::Commands,
            refusing: false,
            auth_local: false,
            listen,
            client_tls: listen == ListenTls::Implicit,
            discarded: 0,
        }
    }

    /// The client link is plaintext and must turn to TLS first.
    fn before_starttls(&self) -> bool {
        self.listen == ListenTls::Starttls && !self.client_tls
    }

    /// Client bytes.
    fn client_bytes(
        &mut self,
        chunk: &[u8],
        ready: &impl Fn() -> bool,
    ) -> Result<Plan, SmtpRelayError> {
        let mut plan = Plan::default();
        self.client.bytes.extend_from_slice(chunk);
        let mut events = Vec::new();
        self.session
            .client
            .feed(chunk, &mut events)
            .map_err(SessionError::from)?;
        self.client_events(events, ready, &mut plan)?;
        Ok(plan)
    }

    /// Server bytes.
    fn server_bytes(
        &mut self,
        chunk: &[u8],
        ready: &impl Fn() -> bool,
    ) -> Result<Plan, SmtpRelayError> {
        let mut plan = Plan::default();
        self.server.bytes.extend_from_slice(chunk);
        let mut events = Vec::new();
        self.session
            .server
            .feed(chunk, &mut events)
            .map_err(SessionError::from)?;
        for event in events {
            let bytes = self.server.take(event.end).to_vec();
            let ServerEvent::Reply(reply) = &event.event else {
                plan.to_client.push(Piece {
                    bytes,
                    on_fail: OnFail::Keep,
                });
                continue;
            };
            let before = self.session.matcher.in_flight();
            let mut outcomes = Vec::new();
            let decision = self.session.matcher.on_reply(reply, &mut outcomes);
            let completed = self.session.matcher.in_flight() < before;
            let mut ehlo = false;
            if completed && let Some(Owed::Server { ehlo: e }) = self.owed.front() {
                ehlo = *e;
                self.owed.pop_front();
            }
            let bytes = if ehlo && reply.is_positive() {
                self.rewrite_ehlo(&bytes).unwrap_or(bytes)
            } else {
                bytes
            };
            let on_fail = self.trace(&outcomes, &mut plan);
            plan.to_client.push(Piece { bytes, on_fail });
            if let Some(decision) = decision {
                let mut late = Vec::new();
                self.session
                    .client
                    .on_decision(decision, &mut late)
                    .map_err(SessionError::from)?;
                if decision == (Decision::Data { accepted: true }) {
                    self.flow = Flow::Message;
                }
                self.client_events(late, ready, &mut plan)?;
            }
            self.flush_owed(&mut plan);
        }
        self.server.settle();
        if self.server.held() > MAX_REPLY {
            return Err(SmtpRelayError::Limit("server reply too long"));
        }
        Ok(plan)
    }

    /// The TLS handshake after the proxy's 220 is done: the client parser
    /// starts over; the bytes it dropped meanwhile are counted. Returns the
    /// traces of what was still open, and the bytes discarded.
    fn client_tls_started(&mut self) -> (Vec<Trace>, u64) {
        self.session.client.reset();
        self.client = Pending::default();
        self.flow = Flow::Commands;
        self.refusing = false;
        self.auth_local = false;
        self.client_tls = true;
        let mut outcomes = Vec::new();
        self.session.matcher.after_starttls(&mut outcomes);
        let traces = outcomes
            .iter()
            .filter_map(|o| self.tracer.trace(o))
            .collect();
        (traces, std::mem::take(&mut self.discarded))
    }

    /// The connection ended: transactions left open, then `deconnexion`.
    fn finish(&mut self) -> Vec<Trace> {
        let mut traces: Vec<Trace> = self
            .session
            .finish()
            .iter()
            .filter_map(|o| self.tracer.trace(o))
            .collect();
        traces.extend(self.tracer.connection_closed());
        traces
    }

    /// Client events in order (the proxy's own answers may make the client
    /// decoder produce more: they are handled next), then the bytes of a
    /// message or chunk under way.
    fn client_events(
        &mut self,
        events: Vec<Spanned<ClientEvent>>,
        ready: &impl Fn() -> bool,
        plan: &mut Plan,
    ) -> Result<(), SmtpRelayError> {
        let mut queue = VecDeque::from(events);
        while let Some(event) = queue.pop_front() {
            let mut late = Vec::new();
            self.client_event(event, &mut late, ready, plan)?;
            for event in late.into_iter().rev() {
                queue.push_front(event);
            }
            self.flush_owed(plan);
        }
        match self.flow {
            Flow::Message | Flow::Chunk { forward: true } => {
                let end = self.client.end();
                let bytes = self.client.take(end);
                plan.to_server.extend_from_slice(bytes);
            }
            Flow::Chunk { forward: false } => {
                let end = self.client.end();
                self.client.take(end);
            }
            Flow::Commands => {}
        }
        self.client.settle();
        Ok(())
    }

    fn client_event(
        &mut self,
        event: Spanned<ClientEvent>,
        late: &mut Vec<Spanned<ClientEvent>>,
        ready: &impl Fn() -> bool,
        plan: &mut Plan,
    ) -> Result<(), SmtpRelayError> {
        let end = event.end;
        match &event.event {
            ClientEvent::Command(command) => self.command(command, end, late, ready, plan),
            ClientEvent::AuthResponse(_) | ClientEvent::AuthCancelled if self.auth_local => {
                self.client.take(end);
                self.owe(Owed::Local(AUTH_DATA_REFUSED))
            }
            ClientEvent::AfterStartTls { bytes } => {
                self.client.take(end);
                self.discarded += bytes;
                Ok(())
            }
            ClientEvent::Chunk { .. } if self.flow == (Flow::Chunk { forward: false }) => {
                self.client.take(end);
                self.flow = Flow::Commands;
                Ok(())
            }
            ClientEvent::AuthResponse(_)
            | ClientEvent::AuthCancelled
            | ClientEvent::Message { .. }
            | ClientEvent::Chunk { .. }
            | ClientEvent::Malformed { .. } => {
                let mut outcomes = Vec::new();
                self.session
                    .matcher
                    .on_client(&event.event, &mut outcomes)
                    .map_err(SessionError::from)?;
                self.trace(&outcomes, plan);
                let bytes = self.client.take(end);
                plan.to_server.extend_from_slice(bytes);
                match &event.event {
                    ClientEvent::Message { .. } => {
                        self.flow = Flow::Commands;
                        self.owe(Owed::Server { ehlo: false })
                    }
                    ClientEvent::Chunk { .. } => {
                        self.flow = Flow::Commands;
                        Ok(())
                    }
                    ClientEvent::Malformed { .. } => self.owe(Owed::Server { ehlo: false }),
                    _ => Ok(()),
                }
            }
        }
    }

    fn command(
        &mut self,
        command: &Command,
        end: u64,
        late: &mut Vec<Spanned<ClientEvent>>,
        ready: &impl Fn() -> bool,
        plan: &mut Plan,
    ) -> Result<(), SmtpRelayError> {
        let name = command.name.as_str();
        if name == "STARTTLS" {
            self.client.take(end);
            if self.before_starttls() {
                self.refusing = false;
                return self.owe(Owed::StartTls);
            }
            self.session
                .client
                .on_decision(Decision::StartTlsRefused, late)
                .map_err(SessionError::from)?;
            return self.owe(Owed::Local(TLS_ALREADY_ACTIVE));
        }
        let local = if self.before_starttls()
            && !matches!(name, "EHLO" | "HELO" | "NOOP" | "RSET" | "QUIT")
        {
            Some(STARTTLS_FIRST)
        } else {
            match name {
                "MAIL" if !ready() => {
                    self.refusing = true;
                    plan.refused += 1;
                    Some(MAIL_REFUSED)
                }
                "MAIL" => {
                    self.refusing = false;
                    None
                }
                "RCPT" | "DATA" | "BDAT" if self.refusing => {
                    plan.refused += 1;
                    Some(TRANSACTION_REFUSED)
                }
                "AUTH" if !ready() => {
                    plan.refused += 1;
                    Some(AUTH_REFUSED)
                }
                "RSET" | "EHLO" | "HELO" | "LHLO" | "QUIT" => {
                    self.refusing = false;
                    None
                }
                _ => None,
            }
        };
        if let Some(reply) = local {
            self.client.take(end);
            // The decoder expects the server's answer to some commands.
            match (name, &command.args) {
                ("AUTH", _) => {
                    self.auth_local = true;
                    self.session
                        .client
                        .on_decision(Decision::AuthFinished, late)
                        .map_err(SessionError::from)?;
                }
                ("DATA", _) => self
                    .session
                    .client
                    .on_decision(Decision::Data { accepted: false }, late)
                    .map_err(SessionError::from)?,
                ("BDAT", CommandArgs::Bdat { .. }) => self.flow = Flow::Chunk { forward: false },
                _ => {}
            }
            return self.owe(Owed::Local(reply));
        }
        self.auth_local = false;
        let mut outcomes = Vec::new();
        self.session
            .matcher
            .on_client(&ClientEvent::Command(command.clone()), &mut outcomes)
            .map_err(SessionError::from)?;
        self.trace(&outcomes, plan);
        let bytes = self.client.take(end);
        plan.to_server.extend_from_slice(bytes);
        if let ("BDAT", CommandArgs::Bdat { .. }) = (name, &command.args) {
            self.flow = Flow::Chunk { forward: true };
        }
        self.owe(Owed::Server {
            ehlo: name == "EHLO",
        })
    }

    fn owe(&mut self, owed: Owed) -> Result<(), SmtpRelayError> {
        if self.owed.len() >= MAX_OWED {
            return Err(SmtpRelayError::Limit("too many replies owed"));
        }
        self.owed.push_back(owed);
        Ok(())
    }

    /// The proxy's own replies now first in line.
    fn flush_owed(&mut self, plan: &mut Plan) {
        loop {
            match self.owed.front() {
                Some(Owed::Local(reply)) => {
                    plan.to_client.push(Piece {
                        bytes: reply.to_vec(),
                        on_fail: OnFail::Keep,
                    });
                }
                Some(Owed::StartTls) => {
                    plan.to_client.push(Piece {
                        bytes: READY_TO_START_TLS.to_vec(),
                        on_fail: OnFail::Keep,
                    });
                    plan.starttls = true;
                }
                Some(Owed::Server { .. }) | None => return,
            }
            self.owed.pop_front();
        }
    }

    /// The traces of `outcomes` into the plan; what the reply that
    /// completed them must become if they cannot be recorded.
    fn trace(&mut self, outcomes: &[Outcome], plan: &mut Plan) -> OnFail {
        let mut on_fail = OnFail::Keep;
        for outcome in outcomes {
            let Some(trace) = self.tracer.trace(outcome) else {
                continue;
            };
            plan.traces.push(trace);
            let this = match outcome {
                Outcome::Transaction(txn) if txn.delivered() => OnFail::Replace(STATUS_UNKNOWN),
                Outcome::Auth(auth) if auth.succeeded() => OnFail::Close(AUTH_REFUSED),
                _ => OnFail::Keep,
            };
            if this.rank() > on_fail.rank() {
                on_fail = this;
            }
        }
        on_fail
    }

    /// An EHLO reply as the client must see it (see the module doc);
    /// `None` when it is unchanged.
    fn rewrite_ehlo(&self, reply: &[u8]) -> Option<Vec<u8>> {
        let plaintext = self.before_starttls();
        let lines: Vec<&[u8]> = reply.split_inclusive(|&b| b == b'\n').collect();
        let (first, extensions) = lines.split_first()?;
        let code = first.get(..3)?;
        let mut kept: Vec<Vec<u8>> = vec![first.to_vec()];
        for line in extensions {
            let text = line.get(4..).unwrap_or_default();
            let keyword = text
                .split(|&b| matches!(b, b' ' | b'=' | b'\r' | b'\n'))
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let keyword = String::from_utf8_lossy(&keyword);
            let keep =
                KEPT_EXTENSIONS.contains(&keyword.as_ref()) && !(plaintext && keyword == "AUTH");
            if keep {
                kept.push(line.to_vec());
            }
        }
        if plaintext {
            let mut line = code.to_vec();
            line.extend_from_slice(b" STARTTLS\r\n");
            kept.push(line);
        }
        let count = kept.len();
        let mut out = Vec::with_capacity(reply.len() + 16);
        for (i, mut line) in kept.into_iter().enumerate() {
            if line.len() >= 4 && matches!(line[3], b' ' | b'-') {
                line[3] = if i + 1 == count { b' ' } else { b'-' };
            } else if line.len() >= 3 && i + 1 < count {
                // `250\r\n` followed by more lines: give it a separator.
                let ending = line.split_off(3);
                line.push(b'-');
                line.extend_from_slice(&ending);
            }
            out.extend_from_slice(&line);
        }
        (out != reply).then_some(out)
    }
}

#[cfg(test)]
mod tests;
