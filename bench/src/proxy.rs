//! The IMAP proxy benchmark (issue 6): the same load generator, in the same
//! run, against three paths to the same real Dovecot:
//!
//! - **direct**: client → Dovecot IMAPS (TLS);
//! - **nginx**: client → nginx's mail proxy (TLS) → Dovecot's plain IMAP
//!   port: a pure relay after login, the floor;
//! - **registre**: client → `registre_proxy::relay::serve` (TLS) → Dovecot
//!   IMAPS (TLS), every traced action written durably (fsync group commit,
//!   encryption at rest) to an `EmbeddedStore` before its answer is
//!   forwarded: the real configuration. The relay runs on its own tokio
//!   runtime (2 workers), as a separate process would;
//! - **registre → plain**: the same relay to Dovecot's plain IMAP port
//!   (`UpstreamTls::None`), like for like with nginx.
//!
//! Each session logs in once (not measured), then loops `SELECT INBOX`,
//! `UID FETCH <uid> (BODY.PEEK[])`, `UID STORE <uid> ±FLAGS (\Seen)`,
//! `APPEND` (synchronising literal, 4–50 KB), `UID STORE <new> +FLAGS
//! (\Deleted)`, `UID EXPUNGE <new>`; each command is timed on its own.
//! Sessions use their own mailbox (one user each), pre-filled with messages
//! of 4–50 KB.
//!
//! Then SMTP submission, same paths (Dovecot submission, which relays to the
//! private Postfix, which delivers to Dovecot LMTP): each session does EHLO
//! and AUTH PLAIN once, then sends (`MAIL FROM`, `RCPT TO`, `DATA`, the
//! message, `.`), each send timed whole. Postfix's queue is let drain between
//! measurements.

mod client;
mod nginx;
mod smtp;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_proxy::imap::Limits;
use registre_proxy::imap_trace::TracerConfig;
use registre_proxy::relay::{self, RelayConfig};
use registre_proxy::smtp_relay::{self, SmtpRelayConfig};
use registre_proxy::tls::{ListenTls, UpstreamTls};
use registre_store::{EmbeddedOptions, EmbeddedStore, Store};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::support::mail::{DOMAIN, MailServers};
use client::Imap;

/// The proxy section's settings.
pub struct ProxyOpts {
    /// Before each round's measurement (sessions logged in, not recorded).
    pub warmup: Duration,
    /// Measured time per path and concurrency, split in `rounds` rounds
    /// that take the paths in turn (a different order each round), so
    /// that all paths see the same background load.
    pub measure: Duration,
    pub rounds: usize,
    pub sessions: Vec<usize>,
    pub smtp_sessions: Vec<usize>,
    /// Messages pre-filled in each mailbox.
    pub messages: usize,
}

impl ProxyOpts {
    pub fn full() -> Self {
        ProxyOpts {
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(10),
            rounds: 5,
            sessions: vec![1, 8, 32],
            smtp_sessions: vec![1, 8],
            messages: 40,
        }
    }

    pub fn quick() -> Self {
        ProxyOpts {
            warmup: Duration::from_millis(500),
            measure: Duration::from_secs(4),
            rounds: 2,
            ..Self::full()
        }
    }

    pub fn smoke() -> Self {
        ProxyOpts {
            warmup: Duration::from_millis(300),
            measure: Duration::from_secs(1),
            rounds: 1,
            sessions: vec![1, 4],
            smtp_sessions: vec![1],
            messages: 8,
        }
    }
}

const IMAP_KINDS: &[&str] = &[
    "SELECT INBOX",
    "UID FETCH <uid> (BODY.PEEK[])",
    "UID STORE <uid> ±FLAGS (\\Seen)",
    "APPEND, synchronising literal",
    "UID STORE <new> +FLAGS (\\Deleted)",
    "UID EXPUNGE <new>",
];

const SMTP_KINDS: &[&str] = &[];

/// One path's figures at one concurrency.
struct Stats {
    rate: f64,
    /// Operations measured (IMAP commands, SMTP sends).
    ops: usize,
    all: (f64, f64),
    kinds: Vec<(f64, f64)>,
}

/// What one session measured: (kind, latency) and when its last measured
/// command ended.
type Measured = (Vec<(u8, Duration)>, Option<Instant>);

type Conn = Imap<TlsStream<TcpStream>>;
type SmtpConn = smtp::Smtp<TlsStream<TcpStream>>;

/// Where the SMTP sends go (a user of its own, not a measured mailbox).
const SINK: (&str, &str) = ("sink@hopital.test", "secret-sink");

struct Mailbox {
    address: String,
    password: String,
    uids: Vec<u32>,
}

/// Deterministic xorshift.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A plain-text message of about `size` bytes (headers, then lines of 76
/// base64-alphabet characters, like an encoded attachment).
fn message(i: usize, size: usize, rng: &mut Rng) -> Vec<u8> {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut m = format!(
        "From: Dr Martin <dr.martin@{DOMAIN}>\r\n\
         To: Secretariat <secretariat@{DOMAIN}>\r\n\
         Subject: Compte rendu de consultation {i}\r\n\
         Date: Fri, 27 Nov 2026 10:{:02}:00 +0100\r\n\
         Message-ID: <bench-{i}@{DOMAIN}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n",
        i % 60
    )
    .into_bytes();
    while m.len() + 78 <= size {
        for _ in 0..76 {
            m.push(B64[(rng.next() % 64) as usize]);
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// `n` messages, sizes log-uniform in 4–50 KB.
fn message_pool(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let u = (rng.next() % 10_000) as f64 / 10_000.0;
            let size = (4096.0 * (50.0f64 / 4.0).powf(u)) as usize;
            message(i, size, &mut rng)
        })
        .collect()
}

fn client_tls(ca: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn server_tls(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    Arc::new(config).into()
}

async fn tls_connect(port: u16, tls: &TlsConnector) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect {port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").expect("name");
    tls.connect(name, tcp)
        .await
        .map_err(|e| format!("TLS to {port}: {e}"))
}

async fn connect(port: u16, tls: &TlsConnector) -> Result<Conn, String> {
    let s = tls_connect(port, tls).await?;
    Imap::new(s).await.map_err(|e| format!("greeting: {e}"))
}

async fn login(
    port: u16,
    tls: &TlsConnector,
    address: &str,
    password: &str,
) -> Result<Conn, String> {
    let mut c = connect(port, tls).await?;
    let r = c
        .command(&format!("LOGIN \"{address}\" \"{password}\""), false)
        .await
        .map_err(|e| format!("LOGIN: {e}"))?;
    if !r.ok {
        return Err(format!("LOGIN {address}: {}", r.text));
    }
    Ok(c)
}

fn ok(r: std::io::Result<client::Reply>, what: &str) -> Result<client::Reply, String> {
    match r {
        Ok(r) if r.ok => Ok(r),
        Ok(r) => Err(format!("{what}: {}", r.text)),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

/// Fills each mailbox with `n` messages (directly to Dovecot) and returns
/// their UIDs.
async fn prefill(
    servers: &MailServers,
    tls: &TlsConnector,
    pool: &Arc<Vec<Vec<u8>>>,
    n: usize,
) -> Result<Vec<Mailbox>, String> {
    let mut tasks = Vec::new();
    for (k, u) in servers
        .users
        .iter()
        .filter(|u| u.address != SINK.0)
        .enumerate()
    {
        let (tls, pool, port) = (tls.clone(), pool.clone(), servers.imaps);
        let (address, password) = (u.address.clone(), u.password.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = login(port, &tls, &address, &password).await?;
            for i in 0..n {
                ok(
                    c.append("INBOX", &pool[(k * 7 + i) % pool.len()]).await,
                    "APPEND",
                )?;
            }
            ok(c.command("SELECT INBOX", false).await, "SELECT")?;
            let r = ok(c.command("UID SEARCH ALL", true).await, "UID SEARCH")?;
            let uids: Vec<u32> = r
                .untagged
                .iter()
                .filter_map(|l| l.strip_prefix("* SEARCH"))
                .flat_map(|l| l.split_whitespace().filter_map(|w| w.parse().ok()))
                .collect();
            c.logout().await;
            if uids.is_empty() {
                return Err(format!("no message in {address}'s INBOX"));
            }
            Ok(Mailbox {
                address,
                password,
                uids,
            })
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// The measured loop of one session, from `from` to `until` (iterations
/// started before `from` are the warm-up).
async fn session(
    mut c: Conn,
    mailbox: Arc<Mailbox>,
    pool: Arc<Vec<Vec<u8>>>,
    seed: usize,
    from: Instant,
    until: Instant,
) -> Result<Measured, String> {
    let mut lat: Vec<(u8, Duration)> = Vec::with_capacity(1 << 16);
    let mut last = None;
    let mut i = seed;
    let uids = &mailbox.uids;
    while Instant::now() < until {
        let recording = Instant::now() >= from;
        let uid = uids[i % uids.len()];
        let msg = &pool[i % pool.len()];
        // First pass over the mailbox sets \Seen, the next clears it, …:
        // every STORE changes a flag.
        let sign = if (i / uids.len()).is_multiple_of(2) {
            '+'
        } else {
            '-'
        };
        i += 1;
        let mut timed = [Duration::ZERO; 6];
        let t = Instant::now();
        ok(c.command("SELECT INBOX", false).await, "SELECT")?;
        timed[0] = t.elapsed();
        let t = Instant::now();
        ok(
            c.command(&format!("UID FETCH {uid} (BODY.PEEK[])"), false)
                .await,
            "UID FETCH",
        )?;
        timed[1] = t.elapsed();
        let t = Instant::now();
        ok(
            c.command(&format!("UID STORE {uid} {sign}FLAGS (\\Seen)"), false)
                .await,
            "UID STORE \\Seen",
        )?;
        timed[2] = t.elapsed();
        let t = Instant::now();
        let r = ok(c.append("INBOX", msg).await, "APPEND")?;
        timed[3] = t.elapsed();
        let new = r
            .append_uid()
            .ok_or_else(|| format!("APPEND answered without APPENDUID: {}", r.text))?;
        let t = Instant::now();
        ok(
            c.command(&format!("UID STORE {new} +FLAGS (\\Deleted)"), false)
                .await,
            "UID STORE \\Deleted",
        )?;
        timed[4] = t.elapsed();
        let t = Instant::now();
        ok(
            c.command(&format!("UID EXPUNGE {new}"), false).await,
            "UID EXPUNGE",
        )?;
        timed[5] = t.elapsed();
        if recording {
            lat.extend(timed.iter().enumerate().map(|(k, d)| (k as u8, *d)));
            last = Some(Instant::now());
        }
    }
    c.logout().await;
    Ok((lat, last))
}

/// One session's measured loop.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Imap,
    Smtp,
}

/// The SMTP loop of one session: sends to [`SINK`] until `until`.
async fn smtp_session(
    mut c: SmtpConn,
    mailbox: Arc<Mailbox>,
    pool: Arc<Vec<Vec<u8>>>,
    seed: usize,
    from: Instant,
    until: Instant,
) -> Result<Measured, String> {
    let mut lat = Vec::with_capacity(1 << 14);
    let mut last = None;
    let mut i = seed;
    while Instant::now() < until {
        let recording = Instant::now() >= from;
        let msg = &pool[i % pool.len()];
        i += 1;
        let t = Instant::now();
        c.send(&mailbox.address, SINK.0, msg).await?;
        if recording {
            lat.push((0, t.elapsed()));
            last = Some(Instant::now());
        }
    }
    c.quit().await;
    Ok((lat, last))
}

/// What one round of one path measured.
struct Raw {
    lat: Vec<(u8, Duration)>,
    secs: f64,
}

/// `n` sessions against `port`, one mailbox (user) each, round robin: log
/// in all, then run for `o.warmup` and `o.measure / o.rounds`.
async fn measure(
    protocol: Protocol,
    port: u16,
    n: usize,
    tls: &TlsConnector,
    mailboxes: &[Arc<Mailbox>],
    pool: &Arc<Vec<Vec<u8>>>,
    o: &ProxyOpts,
) -> Result<Raw, String> {
    enum Logged {
        Imap(Conn),
        Smtp(SmtpConn),
    }
    let mut logins = Vec::new();
    for k in 0..n {
        let (tls, m) = (tls.clone(), mailboxes[k % mailboxes.len()].clone());
        logins.push(tokio::spawn(async move {
            match protocol {
                Protocol::Imap => login(port, &tls, &m.address, &m.password)
                    .await
                    .map(Logged::Imap),
                Protocol::Smtp => {
                    let s = tls_connect(port, &tls).await?;
                    let mut c = smtp::Smtp::new(s)
                        .await
                        .map_err(|e| format!("SMTP greeting: {e}"))?;
                    c.login(&m.address, &m.password).await?;
                    Ok(Logged::Smtp(c))
                }
            }
        }));
    }
    let mut conns = Vec::new();
    for l in logins {
        conns.push(l.await.map_err(|e| e.to_string())??);
    }
    let from = Instant::now() + o.warmup;
    let until = from + o.measure / o.rounds.max(1) as u32;
    let mut tasks = Vec::new();
    for (k, c) in conns.into_iter().enumerate() {
        let (m, pool) = (mailboxes[k % mailboxes.len()].clone(), pool.clone());
        tasks.push(match c {
            Logged::Imap(c) => tokio::spawn(session(c, m, pool, k * 13, from, until)),
            Logged::Smtp(c) => tokio::spawn(smtp_session(c, m, pool, k * 13, from, until)),
        });
    }
    let mut lat = Vec::new();
    let mut last = from;
    for t in tasks {
        let (l, end) = t.await.map_err(|e| e.to_string())??;
        if let Some(end) = end {
            last = last.max(end);
        }
        lat.extend(l);
    }
    Ok(Raw {
        lat,
        secs: (last - from).as_secs_f64(),
    })
}

/// The figures of a path's rounds together.
fn stats(raws: Vec<Raw>, kinds_len: usize) -> Result<Stats, String> {
    let mut all = Vec::new();
    let mut kinds: Vec<Vec<Duration>> = vec![Vec::new(); kinds_len];
    let mut secs = 0.0;
    for r in raws {
        secs += r.secs;
        for (k, d) in r.lat {
            if let Some(v) = kinds.get_mut(k as usize) {
                v.push(d);
            }
            all.push(d);
        }
    }
    if all.is_empty() || secs <= 0.0 {
        return Err("nothing completed in the measured window".into());
    }
    Ok(Stats {
        rate: all.len() as f64 / secs,
        ops: all.len(),
        all: crate::percentiles(&mut all),
        kinds: kinds
            .iter_mut()
            .map(|v| crate::percentiles(v.as_mut_slice()))
            .collect(),
    })
}

/// Files in Postfix's queue (maildrop, incoming, active, deferred, hold).
fn postfix_queue(servers: &MailServers) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => count(&e.path()),
                    Ok(t) if t.is_file() => 1,
                    _ => 0,
                })
                .sum()
        })
    }
    let spool = servers.dir.join("postfix/spool");
    ["maildrop", "incoming", "active", "deferred", "hold"]
        .iter()
        .map(|q| count(&spool.join(q)))
        .sum()
}

/// Waits (up to 2 min) for Postfix to deliver what the last measurement
/// queued; the messages left.
async fn drain_postfix(servers: &MailServers) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = postfix_queue(servers);
        if left == 0 || Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// registre's IMAP and SMTP relays on their own runtime (2 workers), one
/// journal (a private directory) for both, as one proxy process.
struct Registre {
    imap: u16,
    smtp: u16,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<Result<u64, String>>>,
}

impl Registre {
    fn start(imap: RelayConfig, smtp: SmtpRelayConfig, dir: &Path) -> Result<Registre, String> {
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let dir = dir.to_owned();
        let thread = std::thread::Builder::new()
            .name("registre-proxy".into())
            .spawn(move || -> Result<u64, String> {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("registre-proxy")
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let bound = async {
                        let store = Arc::new(
                            EmbeddedStore::open(&dir, EmbeddedOptions::new(crate::classes()))
                                .map_err(|e| format!("open the journal: {e}"))?,
                        );
                        let a = tokio::net::TcpListener::bind("127.0.0.1:0")
                            .await
                            .map_err(|e| e.to_string())?;
                        let b = tokio::net::TcpListener::bind("127.0.0.1:0")
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok::<_, String>((store, a, b))
                    }
                    .await;
                    let (store, a, b) = match bound {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = port_tx.send(Err(e.clone()));
                            return Err(e);
                        }
                    };
                    let port = |l: &tokio::net::TcpListener| l.local_addr().map_or(0, |a| a.port());
                    let _ = port_tx.send(Ok((port(&a), port(&b))));
                    let journal: Arc<dyn Store> = store.clone();
                    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                        let _ = rx.wait_for(|s| *s).await;
                    };
                    let (r1, r2) = tokio::join!(
                        relay::serve(
                            a,
                            Arc::new(imap),
                            Arc::new(journal.clone()),
                            stopped(stop_rx.clone())
                        ),
                        smtp_relay::serve(b, Arc::new(smtp), Arc::new(journal), stopped(stop_rx)),
                    );
                    r1.and(r2).map_err(|e| e.to_string())?;
                    Ok(store.stats().iter().map(|s| s.size).sum())
                })
            })
            .map_err(|e| e.to_string())?;
        let (imap, smtp) = port_rx
            .recv()
            .map_err(|_| "the relay thread ended at start".to_owned())??;
        Ok(Registre {
            imap,
            smtp,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the relays; the number of traces in the journal.
    fn stop(mut self) -> Result<u64, String> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(true);
        }
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err("the relay thread panicked".into()),
        }
    }
}

/// The paths measured, in table order.
const PATHS: [&str; 4] = ["direct", "nginx", "registre", "registre→plain"];

/// One protocol's results: per concurrency, per path.
type Results = Vec<(usize, Vec<Result<Stats, String>>)>;

/// Measures every path at every concurrency of `sessions`.
#[allow(clippy::too_many_arguments)]
async fn measure_all(
    protocol: Protocol,
    sessions: &[usize],
    ports: [Option<u16>; 4],
    servers: &MailServers,
    tls: &TlsConnector,
    mailboxes: &[Arc<Mailbox>],
    pool: &Arc<Vec<Vec<u8>>>,
    o: &ProxyOpts,
) -> Results {
    let (what, unit, kinds_len) = match protocol {
        Protocol::Imap => ("IMAP", "commands", IMAP_KINDS.len()),
        Protocol::Smtp => ("SMTP", "sends", SMTP_KINDS.len()),
    };
    let rounds = o.rounds.max(1);
    let mut results = Vec::new();
    for &n in sessions {
        let mut raws: Vec<Result<Vec<Raw>, String>> = ports
            .iter()
            .map(|p| match p {
                Some(_) => Ok(Vec::new()),
                None => Err("skipped".to_owned()),
            })
            .collect();
        eprintln!(
            "{what}, {n} session(s): {rounds} round(s) of {:.1} s warm-up + {:.1} s measured per path…",
            o.warmup.as_secs_f64(),
            o.measure.as_secs_f64() / rounds as f64
        );
        for round in 0..rounds {
            for k in 0..PATHS.len() {
                let path = (k + round) % PATHS.len();
                let (Some(port), Ok(acc)) = (ports[path], &mut raws[path]) else {
                    continue;
                };
                if protocol == Protocol::Smtp {
                    let left = drain_postfix(servers).await;
                    if left > 0 {
                        eprintln!("  (Postfix still holds {left} queue files after 2 min)");
                    }
                }
                match measure(protocol, port, n, tls, mailboxes, pool, o).await {
                    Ok(r) => {
                        eprintln!(
                            "  round {}: {}: {:.0} {unit}/s",
                            round + 1,
                            PATHS[path],
                            r.lat.len() as f64 / r.secs.max(1e-9)
                        );
                        acc.push(r);
                    }
                    Err(e) => {
                        eprintln!("  round {}: {}: FAILED: {e}", round + 1, PATHS[path]);
                        raws[path] = Err(e);
                    }
                }
            }
        }
        let row: Vec<Result<Stats, String>> = raws
            .into_iter()
            .map(|r| r.and_then(|raws| stats(raws, kinds_len)))
            .collect();
        for (path, r) in PATHS.iter().zip(&row) {
            if let Ok(s) = r {
                eprintln!(
                    "  {path}: {:.0} {unit}/s, p50 {:.3} ms, p99 {:.3} ms",
                    s.rate, s.all.0, s.all.1
                );
            }
        }
        results.push((n, row));
    }
    results
}

/// Runs the section and prints its tables.
pub async fn run(o: &ProxyOpts, machine: &str) {
    let max_sessions = o
        .sessions
        .iter()
        .chain(&o.smtp_sessions)
        .copied()
        .max()
        .unwrap_or(1);
    let mut users: Vec<(String, String)> = (1..=max_sessions)
        .map(|i| {
            (
                format!("bench{i:02}@{DOMAIN}"),
                format!("bench-secret-{i:02}"),
            )
        })
        .collect();
    users.push((SINK.0.to_owned(), SINK.1.to_owned()));
    let refs: Vec<(&str, &str)> = users
        .iter()
        .map(|(a, p)| (a.as_str(), p.as_str()))
        .collect();
    let Some(servers) = tokio::task::block_in_place(|| MailServers::start_with_users(&refs)) else {
        println!(
            "\nIMAP/SMTP proxy bench: SKIP (the mail servers could not start; see the SKIP line above)"
        );
        return;
    };
    let tls = client_tls(&servers.ca_pem);
    let pool = Arc::new(message_pool(64));
    let avg_kb = pool.iter().map(Vec::len).sum::<usize>() as f64 / pool.len() as f64 / 1024.0;
    eprintln!(
        "proxy: filling {} mailboxes with {} messages each (avg {avg_kb:.1} KB)…",
        max_sessions, o.messages
    );
    let t = Instant::now();
    let mailboxes: Vec<Arc<Mailbox>> = match prefill(&servers, &tls, &pool, o.messages).await {
        Ok(m) => m.into_iter().map(Arc::new).collect(),
        Err(e) => {
            println!("\nIMAP/SMTP proxy bench: FAILED to fill the mailboxes: {e}");
            return;
        }
    };
    eprintln!("  filled in {:.1} s", t.elapsed().as_secs_f64());

    let (cert, key) = servers.issue(&["localhost", "127.0.0.1"]);
    let mut notes: Vec<String> = Vec::new();

    // nginx, in front of Dovecot's plain IMAP and submission ports.
    let nginx = match nginx::start(servers.imap, servers.submission, &cert, &key).await {
        Ok(n) => Some(n),
        Err(why) => {
            let line = format!("SKIP: nginx peer: {why}");
            eprintln!("{line}");
            notes.push(line);
            None
        }
    };

    // registre, in front of Dovecot over TLS, then of its plain ports.
    let upstream = relay::upstream_client_config(&servers.ca_pem).expect("upstream CA");
    let tracer = Arc::new(TracerConfig {
        mail_domain: Some(DOMAIN.to_owned()),
        ..TracerConfig::default()
    });
    let imap_config = |port: u16, upstream_tls: UpstreamTls| RelayConfig {
        acceptor: server_tls(&cert, &key),
        listen_tls: ListenTls::Implicit,
        upstream: format!("127.0.0.1:{port}"),
        upstream_name: ServerName::try_from("localhost").expect("name"),
        upstream_tls,
        connector: upstream.clone().into(),
        tracer: tracer.clone(),
        limits: Limits::default(),
    };
    let smtp_config = |port: u16, upstream_tls: UpstreamTls| SmtpRelayConfig {
        listen_tls: ListenTls::Implicit,
        acceptor: server_tls(&cert, &key),
        upstream: format!("127.0.0.1:{port}"),
        upstream_tls,
        upstream_name: ServerName::try_from("localhost").expect("name"),
        connector: upstream.clone().into(),
        helo_name: "localhost".to_owned(),
        tracer: tracer.clone(),
        limits: registre_proxy::smtp::Limits::default(),
    };
    let journal_dirs = [
        tempfile::tempdir_in(".").expect("tempdir"),
        tempfile::tempdir_in(".").expect("tempdir"),
    ];
    let mut relays = Vec::new();
    for ((imap, smtp), dir) in [
        (
            imap_config(servers.imaps, UpstreamTls::Implicit),
            smtp_config(servers.submissions, UpstreamTls::Implicit),
        ),
        (
            imap_config(servers.imap, UpstreamTls::None),
            smtp_config(servers.submission, UpstreamTls::None),
        ),
    ]
    .into_iter()
    .zip(&journal_dirs)
    {
        relays.push(match Registre::start(imap, smtp, dir.path()) {
            Ok(r) => Some(r),
            Err(e) => {
                let line = format!("registre peer FAILED to start: {e}");
                eprintln!("{line}");
                notes.push(line);
                None
            }
        });
    }

    let imap_ports = [
        Some(servers.imaps),
        nginx.as_ref().map(|n| n.port),
        relays[0].as_ref().map(|r| r.imap),
        relays[1].as_ref().map(|r| r.imap),
    ];
    let smtp_ports = [
        Some(servers.submissions),
        nginx.as_ref().map(|n| n.smtp_port),
        relays[0].as_ref().map(|r| r.smtp),
        relays[1].as_ref().map(|r| r.smtp),
    ];
    let imap = measure_all(
        Protocol::Imap,
        &o.sessions,
        imap_ports,
        &servers,
        &tls,
        &mailboxes,
        &pool,
        o,
    )
    .await;
    let smtp = measure_all(
        Protocol::Smtp,
        &o.smtp_sessions,
        smtp_ports,
        &servers,
        &tls,
        &mailboxes,
        &pool,
        o,
    )
    .await;
    let left = drain_postfix(&servers).await;
    if left > 0 {
        notes.push(format!(
            "Postfix still held {left} queue files 2 min after the last SMTP measurement"
        ));
    }

    for (k, r) in relays.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let path = PATHS[2 + k];
        let ops = |res: &Results| -> usize {
            res.iter()
                .filter_map(|(_, row)| row.get(2 + k).and_then(|r| r.as_ref().ok()))
                .map(|s| s.ops)
                .sum()
        };
        match r.stop() {
            Ok(traces) => notes.push(format!(
                "{path} journal: {traces} traces in all (warm-ups, logins, logouts included) \
                 for {} measured IMAP commands and {} measured SMTP sends",
                ops(&imap),
                ops(&smtp)
            )),
            Err(e) => notes.push(format!("{path} relay: {e}")),
        }
    }
    if let Some(n) = &nginx {
        let log = n.error_log();
        let errors = log.lines().filter(|l| l.contains("[error]")).count();
        if errors > 0 {
            notes.push(format!(
                "nginx logged {errors} error line(s) in {}",
                n.dir().display()
            ));
        }
    }
    let stalled = |res: &Results, pick: &dyn Fn(&Stats) -> f64| {
        res.iter().any(|(_, row)| {
            row.get(1)
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|s| pick(s) > 30.0)
        })
    };
    if stalled(&imap, &|s| s.kinds[1].0) || stalled(&smtp, &|s| s.all.0) {
        notes.push(
            "nginx: its ~40 ms (IMAP FETCH, SMTP sends) is nginx's own, not the network's: its \
             mail proxy sets TCP_NODELAY on neither socket, so a message it forwards in several \
             write(2)s (one per 16 KB TLS record toward the client, seen with strace; one per \
             client buffer toward Dovecot) has its tail held by Nagle until the peer's delayed \
             ACK. Compare nginx on the other IMAP commands."
                .into(),
        );
    }
    drop(nginx);

    println!();
    println!(
        "registre IMAP/SMTP proxy bench — {machine}; {} mailboxes × {} messages \
         (avg {avg_kb:.1} KB, 4–50 KB); per path and concurrency {:.1} s measured, in {} \
         interleaved round(s) each after {:.1} s of warm-up",
        mailboxes.len(),
        o.messages,
        o.measure.as_secs_f64(),
        o.rounds.max(1),
        o.warmup.as_secs_f64()
    );
    println!(
        "direct: TLS → Dovecot; nginx: TLS → nginx mail proxy → Dovecot plain; \
         registre: TLS → relay (durable, encrypted journal) → TLS → Dovecot; \
         registre→plain: the same relay → Dovecot plain"
    );
    println!();
    println!(
        "IMAP, per session: SELECT INBOX, UID FETCH <uid> (BODY.PEEK[]), UID STORE <uid> ±FLAGS (\\Seen), \
         APPEND {{literal}}, UID STORE <new> +FLAGS (\\Deleted), UID EXPUNGE <new>"
    );
    print_table(&imap, "commands", IMAP_KINDS);
    println!();
    println!(
        "SMTP submission, per session: MAIL FROM, RCPT TO, DATA, message, `.` (one send, timed whole); \
         Dovecot submission relays to Postfix, which delivers to Dovecot LMTP"
    );
    print_table(&smtp, "sends", SMTP_KINDS);
    println!();
    println!("Targets: ≤ 5 % throughput loss and ≤ 0.3 ms added at p50:");
    for (what, res) in [("IMAP", &imap), ("SMTP", &smtp)] {
        for (n, row) in res {
            for (path, base) in [(2, 0), (3, 0), (3, 1)] {
                if let (Some(Ok(r)), Some(Ok(d))) = (row.get(path), row.get(base)) {
                    let loss = (1.0 - r.rate / d.rate) * 100.0;
                    let added = r.all.0 - d.all.0;
                    println!(
                        "  {what} {n:>3} session(s), {} vs {}: throughput loss {loss:.1} % ({}), \
                         added p50 {added:+.3} ms ({})",
                        PATHS[path],
                        PATHS[base],
                        if loss <= 5.0 { "met" } else { "NOT met" },
                        if added <= 0.3 { "met" } else { "NOT met" }
                    );
                }
            }
        }
    }
    for n in &notes {
        println!("{n}");
    }
    tokio::task::block_in_place(move || drop(servers));
}

fn print_table(results: &Results, unit: &str, kinds: &[&str]) {
    println!(
        "| {:<40} | {:>15} | {:>15} | {:>15} | {:>15} | {:>16} | {:>16} | {:>16} | {:>16} |",
        "figure",
        "direct",
        "nginx",
        "registre",
        "registre→plain",
        "nginx/direct",
        "registre/direct",
        "reg→plain/direct",
        "reg→plain/nginx"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|{}|{}|",
        "-".repeat(42),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(17),
        "-".repeat(18),
        "-".repeat(18),
        "-".repeat(18),
        "-".repeat(18)
    );
    let pairs = [(1usize, 0usize), (2, 0), (3, 0), (3, 1)];
    for (n, row) in results {
        let s = |i: usize| row.get(i).and_then(|r| r.as_ref().ok());
        let cells = |f: &dyn Fn(&Stats) -> String| -> Vec<String> {
            (0..PATHS.len())
                .map(|i| match row.get(i) {
                    Some(Ok(st)) => f(st),
                    Some(Err(e)) if e == "skipped" => "skipped".into(),
                    _ => "failed".into(),
                })
                .collect()
        };
        let print = |what: String, c: Vec<String>, cmp: Vec<String>| {
            println!(
                "| {:<40} | {:>15} | {:>15} | {:>15} | {:>15} | {:>16} | {:>16} | {:>16} | {:>16} |",
                what, c[0], c[1], c[2], c[3], cmp[0], cmp[1], cmp[2], cmp[3]
            );
        };
        let sessions = if *n == 1 {
            "1 session".to_owned()
        } else {
            format!("{n} sessions")
        };
        let cmp_rate: Vec<String> = pairs
            .iter()
            .map(|&(a, b)| match (s(a), s(b)) {
                (Some(x), Some(y)) => format!(
                    "{:.3}× ({:+.1} %)",
                    x.rate / y.rate,
                    (x.rate / y.rate - 1.0) * 100.0
                ),
                _ => "—".into(),
            })
            .collect();
        print(
            format!("{sessions}: {unit}/s"),
            cells(&|st| format!("{:.0}", st.rate)),
            cmp_rate,
        );
        let added = |pick: &dyn Fn(&Stats) -> f64| -> Vec<String> {
            pairs
                .iter()
                .map(|&(a, b)| match (s(a), s(b)) {
                    (Some(x), Some(y)) => format!("{:+.3} ms", pick(x) - pick(y)),
                    _ => "—".into(),
                })
                .collect()
        };
        print(
            format!("{sessions}: all {unit} p50 / p99 (ms)"),
            cells(&|st| format!("{:.3} / {:.3}", st.all.0, st.all.1)),
            added(&|st| st.all.0),
        );
        for (k, kind) in kinds.iter().enumerate() {
            print(
                format!("  {kind}"),
                cells(&|st| format!("{:.3} / {:.3}", st.kinds[k].0, st.kinds[k].1)),
                added(&|st| st.kinds[k].0),
            );
        }
    }
    println!(
        "(throughput rows: ratio to the second path and the change; latency rows: p50 / p99 in ms, \
         comparison columns: added p50)"
    );
}
