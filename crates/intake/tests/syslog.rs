//! The syslog listeners in process: UDP, plain TCP and TLS into a real
//! store, every message counted; hostile streams (garbage, oversize frames,
//! frames split byte by byte across TLS records, a sender vanishing or
//! stalling mid-frame, too many connections, a failing store) are counted,
//! reported, never half-stored, and never disturb other senders.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use registre_audit::syslog::octet_frame;
use registre_intake::syslog::{SyslogOptions, serve_tcp, serve_tls, serve_udp};
use registre_intake::tls::{TlsOptions, server_config};
use registre_intake::{AppState, Metrics};
use registre_model::{ClassName, Limits};
use registre_store::vfs::FaultyVfs;
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, StoredRecord};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const CANARY: &str = "CANARY-syslog-5c1d";

fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect()
}

fn state() -> (Arc<AppState>, FaultyVfs) {
    let vfs = FaultyVfs::new();
    let store = EmbeddedStore::open_with_vfs(
        std::path::Path::new("/mem"),
        EmbeddedOptions::new(classes()),
        Arc::new(vfs.clone()),
    )
    .expect("open");
    let st = Arc::new(AppState {
        store: Arc::new(store),
        classes: classes(),
        limits: Limits::default(),
        auth: registre_intake::http::auth::Authenticator::admin_token("unused"),
        metrics: Arc::new(Metrics::default()),
        policy: registre_intake::empty_policy(),
    });
    (st, vfs)
}

/// A DICOM AuditMessage in an RFC 5424 message; `tag` becomes the patient id.
fn dicom(tag: &str) -> Vec<u8> {
    format!(
        "<85>1 2026-11-28T15:42:07.123+01:00 dpi.hopital.test MonDPI 4242 IHE+RFC-3881 - \
         <?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>\
         <EventIdentification EventActionCode=\"R\" EventDateTime=\"2026-11-28T15:42:07.123+01:00\" EventOutcomeIndicator=\"0\">\
         <EventID csd-code=\"110110\" codeSystemName=\"DCM\" originalText=\"Patient Record\"/></EventIdentification>\
         <ActiveParticipant UserID=\"810001234567\" UserIsRequestor=\"true\" NetworkAccessPointID=\"10.1.2.3\" NetworkAccessPointTypeCode=\"2\"/>\
         <AuditSourceIdentification AuditSourceID=\"MonDPI 4.2\"/>\
         <ParticipantObjectIdentification ParticipantObjectID=\"{tag}\" ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">\
         <ParticipantObjectIDTypeCode csd-code=\"2\"/></ParticipantObjectIdentification></AuditMessage>"
    )
    .into_bytes()
}

fn json_trace(tag: &str, class: &str) -> Vec<u8> {
    format!(
        "<110>1 2026-11-28T15:42:07.123+01:00 proxy registre-proxy - trace - {{\"class\":\"{class}\",\
         \"occurred_at\":\"2026-11-28T15:42:07.123+01:00\",\"actor\":{{\"id\":\"810001234567\"}},\
         \"action\":\"consultation\",\"target\":{{\"mailbox\":\"box@hopital.mssante.fr\",\"uids\":\"{tag}\"}}}}"
    )
    .into_bytes()
}

fn malformed_xml() -> Vec<u8> {
    format!("<85>1 - h a - IHE+RFC-3881 - <AuditMessage><{CANARY}></AuditMessage>").into_bytes()
}

fn billion_laughs() -> Vec<u8> {
    let mut xml =
        String::from("<?xml version=\"1.0\"?><!DOCTYPE AuditMessage [<!ENTITY l0 \"lol\">");
    for i in 1..10 {
        let prev = format!("&l{};", i - 1).repeat(10);
        xml.push_str(&format!("<!ENTITY l{i} \"{prev}\">"));
    }
    xml.push_str("]><AuditMessage><EventIdentification EventDateTime=\"&l9;\"/></AuditMessage>");
    format!("<85>1 - h a - IHE+RFC-3881 - {xml}").into_bytes()
}

async fn all(st: &AppState) -> Vec<StoredRecord> {
    st.store
        .search(Query {
            limit: 10_000,
            ..Query::default()
        })
        .await
        .expect("search")
        .traces
}

async fn patients(st: &AppState) -> Vec<String> {
    let mut v: Vec<String> = all(st)
        .await
        .into_iter()
        .filter_map(|r| {
            r.trace
                .target
                .and_then(|t| t.patient.map(|p| p.id).or(t.uids))
        })
        .collect();
    v.sort();
    v
}

/// Waits until `f` holds (the listeners work asynchronously).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the listener stops")
            .expect("no panic")
            .expect("no error");
    }
}

fn stopper() -> (oneshot::Sender<()>, impl std::future::Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

async fn udp(st: &Arc<AppState>) -> Running {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let (tx, stop) = stopper();
    let task = tokio::spawn(serve_udp(
        socket,
        st.clone(),
        SyslogOptions::default(),
        stop,
    ));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

async fn tcp(st: &Arc<AppState>, opts: SyslogOptions) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, stop) = stopper();
    let task = tokio::spawn(serve_tcp(listener, st.clone(), opts, stop));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

// ---- TLS ----

struct Pki {
    ca: CertificateDer<'static>,
    dir: tempfile::TempDir,
    client: (CertificateDer<'static>, KeyPair),
    stranger: (CertificateDer<'static>, KeyPair),
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    sans: Vec<String>,
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> (CertificateDer<'static>, String, KeyPair) {
    let mut params = CertificateParams::new(sans).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    (cert.der().clone(), cert.pem(), key)
}

fn ca(name: &str) -> (CertificateDer<'static>, String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("CA");
    (cert.der().clone(), cert.pem(), Issuer::new(params, key))
}

fn pki() -> Pki {
    let (ca_der, ca_pem, issuer) = ca("registre syslog test CA");
    let (_, _, other) = ca("another CA");
    let (_, server_pem, server_key) = leaf(
        &issuer,
        vec!["localhost".into(), "127.0.0.1".into()],
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (c, _, ck) = leaf(
        &issuer,
        vec![],
        "rsyslog-dpi",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (s, _, sk) = leaf(
        &other,
        vec![],
        "rsyslog-dpi",
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("server.pem"), server_pem).expect("write");
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).expect("write");
    std::fs::write(dir.path().join("ca.pem"), ca_pem).expect("write");
    Pki {
        ca: ca_der,
        dir,
        client: (c, ck),
        stranger: (s, sk),
    }
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn server(&self, client_ca: bool, require: bool) -> Arc<rustls::ServerConfig> {
        server_config(&TlsOptions {
            cert: self.path("server.pem"),
            key: self.path("server.key"),
            client_ca: client_ca.then(|| self.path("ca.pem")),
            require_client_cert: require,
        })
        .expect("server config")
    }

    fn connector(&self, identity: Option<&(CertificateDer<'static>, KeyPair)>) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).expect("root");
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![cert.clone()],
                    PrivateKeyDer::Pkcs8(key.serialize_der().into()),
                )
                .expect("identity"),
        };
        TlsConnector::from(Arc::new(config))
    }
}

async fn tls(
    st: &Arc<AppState>,
    config: Arc<rustls::ServerConfig>,
    opts: SyslogOptions,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, stop) = stopper();
    let task = tokio::spawn(serve_tls(listener, config, st.clone(), opts, stop));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

async fn tls_client(
    pki: &Pki,
    addr: SocketAddr,
    identity: Option<&(CertificateDer<'static>, KeyPair)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    pki.connector(identity)
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// True once the server has closed the connection (EOF or reset).
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut b = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn count(st: &AppState, kind: &str, transport: &str, label: &str) -> i64 {
    st.metrics.syslog_count(kind, transport, label)
}

// ---- tests ----

#[tokio::test]
async fn udp_one_message_per_datagram() {
    let (st, _) = state();
    let server = udp(&st).await;
    let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
    for i in 0..20 {
        client
            .send_to(&dicom(&format!("P{i:02}")), server.addr)
            .await
            .expect("send");
    }
    client
        .send_to(&json_trace("J1", "mss"), server.addr)
        .await
        .expect("send");
    client
        .send_to(&malformed_xml(), server.addr)
        .await
        .expect("send");
    client.send_to(b"garbage", server.addr).await.expect("send");
    client
        .send_to(&json_trace("J2", "nope"), server.addr)
        .await
        .expect("send");
    until("24 datagrams", || count(&st, "received", "udp", "") == 24).await;
    until("21 stored", || count(&st, "stored", "udp", "") == 21).await;
    assert_eq!(count(&st, "refused", "udp", "xml_malformed"), 1);
    assert_eq!(count(&st, "refused", "udp", "syslog_header"), 1);
    assert_eq!(count(&st, "refused", "udp", "unknown_class"), 1);
    let mut want: Vec<String> = (0..20).map(|i| format!("P{i:02}")).collect();
    want.push("J1".into());
    want.sort();
    assert_eq!(patients(&st).await, want);
    let rec = all(&st)
        .await
        .into_iter()
        .find(|r| {
            r.trace
                .target
                .as_ref()
                .and_then(|t| t.patient.as_ref())
                .is_some_and(|p| p.id == "P07")
        })
        .expect("P07");
    let original = rec.trace.original.expect("original");
    assert_eq!(original.format, "syslog");
    assert_eq!(original.text.as_bytes(), &dicom("P07")[..]);
    assert_eq!(rec.trace.class.as_str(), "applicative");
    assert_eq!(rec.trace.action.as_str(), "consultation");
    let text = st.metrics.render(&[]);
    assert!(
        text.contains(r#"registre_syslog_messages_total{transport="udp",outcome="stored"} 21"#),
        "{text}"
    );
    assert!(
        text.contains(r#"registre_syslog_refused_total{transport="udp",reason="xml_malformed"} 1"#)
    );
    assert!(!text.contains(CANARY));
    server.stop().await;
}

#[tokio::test]
async fn tcp_octet_counting_and_lines_in_one_stream() {
    let (st, _) = state();
    let server = tcp(&st, SyslogOptions::default()).await;
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    let mut stream = Vec::new();
    stream.extend_from_slice(&octet_frame(&dicom("A")));
    stream.extend_from_slice(&dicom("B"));
    stream.push(b'\n');
    stream.extend_from_slice(&json_trace("C", "mss"));
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&octet_frame(&malformed_xml()));
    stream.extend_from_slice(&octet_frame(&billion_laughs()));
    stream.extend_from_slice(&octet_frame(&dicom("D")));
    c.write_all(&stream).await.expect("write");
    until("6 received", || count(&st, "received", "tcp", "") == 6).await;
    until("4 stored", || count(&st, "stored", "tcp", "") == 4).await;
    assert_eq!(count(&st, "refused", "tcp", "xml_malformed"), 1);
    assert_eq!(count(&st, "refused", "tcp", "xml_dtd"), 1);
    // Refused messages do not close the connection: it still works. A
    // message over 16 KiB (the most kept with a trace) in a frame under
    // max_frame is refused alone.
    let mut huge = dicom("huge");
    huge.extend(std::iter::repeat_n(b' ', 20_000));
    c.write_all(&octet_frame(&huge)).await.expect("write");
    c.write_all(&octet_frame(&dicom("E"))).await.expect("write");
    until("5 stored", || count(&st, "stored", "tcp", "") == 5).await;
    assert_eq!(count(&st, "refused", "tcp", "too_large"), 1);
    assert_eq!(count(&st, "received", "tcp", ""), 8);
    assert_eq!(patients(&st).await, ["A", "B", "C", "D", "E"]);
    assert_eq!(count(&st, "frame_errors", "tcp", "bad_frame"), 0);
    drop(c);
    server.stop().await;
}

#[tokio::test]
async fn tls_frames_split_byte_by_byte_and_batched() {
    let pki = pki();
    let (st, _) = state();
    let server = tls(&st, pki.server(false, false), SyslogOptions::default()).await;
    let mut c = tls_client(&pki, server.addr, None)
        .await
        .expect("handshake");
    // One frame, one TLS record per byte.
    let frame = octet_frame(&dicom("split"));
    for b in &frame {
        c.write_all(std::slice::from_ref(b)).await.expect("write");
        c.flush().await.expect("flush");
    }
    until("the split frame", || count(&st, "stored", "tls", "") == 1).await;
    // Many frames in one write.
    let mut many = Vec::new();
    for i in 0..50 {
        many.extend_from_slice(&octet_frame(&dicom(&format!("m{i:02}"))));
    }
    c.write_all(&many).await.expect("write");
    c.flush().await.expect("flush");
    until("51 stored", || count(&st, "stored", "tls", "") == 51).await;
    let p = patients(&st).await;
    assert_eq!(p.len(), 51);
    assert_eq!(p.iter().filter(|x| *x == "split").count(), 1);
    assert_eq!(count(&st, "connections", "tls", "accepted"), 1);
    assert_eq!(count(&st, "open", "tls", ""), 1);
    c.shutdown().await.expect("close");
    until("connection gone", || count(&st, "open", "tls", "") == 0).await;
    assert_eq!(count(&st, "frame_errors", "tls", "truncated"), 0);
    server.stop().await;
}

#[tokio::test]
async fn tls_garbage_and_oversize_close_only_that_connection() {
    let pki = pki();
    let (st, _) = state();
    let opts = SyslogOptions {
        max_frame: 4096,
        ..SyslogOptions::default()
    };
    let server = tls(&st, pki.server(false, false), opts).await;
    let mut good = tls_client(&pki, server.addr, None).await.expect("good");
    good.write_all(&octet_frame(&dicom("before")))
        .await
        .expect("write");
    good.flush().await.expect("flush");
    until("first", || count(&st, "stored", "tls", "") == 1).await;

    // Garbage: closed, counted, nothing stored from it.
    let mut bad = tls_client(&pki, server.addr, None).await.expect("bad");
    bad.write_all(format!("GET /{CANARY} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .expect("write");
    bad.flush().await.expect("flush");
    assert!(closed_by_server(&mut bad).await);
    until("bad_frame", || {
        count(&st, "frame_errors", "tls", "bad_frame") == 1
    })
    .await;

    // A whole frame, then an oversize one in the same write: the first is
    // stored, the connection closed at the second's length.
    let mut big = tls_client(&pki, server.addr, None).await.expect("big");
    let mut w = octet_frame(&dicom("whole"));
    w.extend_from_slice(b"5000 ");
    w.extend_from_slice(&vec![b'x'; 5000]);
    big.write_all(&w).await.expect("write");
    let _ = big.flush().await;
    assert!(closed_by_server(&mut big).await);
    until("frame_too_large", || {
        count(&st, "frame_errors", "tls", "frame_too_large") == 1
    })
    .await;

    // A frame under the limit but over 16 KiB would be refused alone; here a
    // 3000-byte frame that is not syslog is refused and the connection lives.
    let mut odd = tls_client(&pki, server.addr, None).await.expect("odd");
    odd.write_all(&octet_frame(&vec![b'y'; 3000]))
        .await
        .expect("write");
    odd.write_all(&octet_frame(&dicom("after-odd")))
        .await
        .expect("write");
    odd.flush().await.expect("flush");
    until("after-odd", || count(&st, "stored", "tls", "") == 3).await;
    assert_eq!(count(&st, "refused", "tls", "syslog_header"), 1);

    // The first sender was never disturbed.
    good.write_all(&octet_frame(&dicom("after")))
        .await
        .expect("write");
    good.flush().await.expect("flush");
    until("after", || count(&st, "stored", "tls", "") == 4).await;
    assert_eq!(
        patients(&st).await,
        ["after", "after-odd", "before", "whole"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_sender_vanishing_mid_frame_stores_nothing_of_it() {
    let pki = pki();
    let (st, _) = state();
    let server = tls(&st, pki.server(false, false), SyslogOptions::default()).await;
    let mut c = tls_client(&pki, server.addr, None).await.expect("client");
    let mut w = octet_frame(&dicom("complete"));
    let partial = octet_frame(&dicom("partial"));
    w.extend_from_slice(&partial[..partial.len() / 2]);
    c.write_all(&w).await.expect("write");
    c.flush().await.expect("flush");
    until("complete", || count(&st, "stored", "tls", "") == 1).await;
    // Vanish: the TCP connection goes without a TLS close_notify.
    drop(c);
    until("truncated", || {
        count(&st, "frame_errors", "tls", "truncated") == 1
    })
    .await;
    assert_eq!(patients(&st).await, ["complete"]);
    assert_eq!(count(&st, "received", "tls", ""), 1);

    // Plain TCP: a clean close inside a frame is reported the same way.
    let plain = tcp(&st, SyslogOptions::default()).await;
    let mut c = TcpStream::connect(plain.addr).await.expect("connect");
    c.write_all(&partial[..40]).await.expect("write");
    c.shutdown().await.expect("close");
    until("tcp truncated", || {
        count(&st, "frame_errors", "tcp", "truncated") == 1
    })
    .await;
    assert_eq!(count(&st, "received", "tcp", ""), 0);
    server.stop().await;
    plain.stop().await;
}

#[tokio::test]
async fn stalled_frames_time_out_and_connections_are_limited() {
    let (st, _) = state();
    let opts = SyslogOptions {
        frame_timeout: Duration::from_millis(1500),
        max_connections: 2,
        ..SyslogOptions::default()
    };
    let server = tcp(&st, opts).await;
    let mut slow = TcpStream::connect(server.addr).await.expect("slow");
    slow.write_all(b"100 <85>1 ").await.expect("write");
    let mut idle = TcpStream::connect(server.addr).await.expect("idle");
    until("two open", || count(&st, "open", "tcp", "") == 2).await;
    // A third connection is over the limit: closed at once, counted.
    let mut third = TcpStream::connect(server.addr).await.expect("third");
    assert!(closed_by_server(&mut third).await);
    assert_eq!(count(&st, "connections", "tcp", "refused_limit"), 1);
    // The stalled frame times out; the idle connection (no frame started)
    // stays open.
    assert!(closed_by_server(&mut slow).await);
    assert_eq!(count(&st, "frame_errors", "tcp", "timeout"), 1);
    idle.write_all(&octet_frame(&dicom("idle-ok")))
        .await
        .expect("write");
    until("idle-ok", || count(&st, "stored", "tcp", "") == 1).await;
    drop(idle);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_store_is_counted_and_closes_the_stream() {
    let (st, vfs) = state();
    let server = tcp(&st, SyslogOptions::default()).await;
    vfs.fail_syncs_after(0);
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    c.write_all(&octet_frame(&dicom("lost")))
        .await
        .expect("write");
    assert!(closed_by_server(&mut c).await);
    assert_eq!(count(&st, "received", "tcp", ""), 1);
    assert_eq!(count(&st, "stored", "tcp", ""), 0);
    assert_eq!(count(&st, "refused", "tcp", "store_unavailable"), 1);
    assert!(
        st.metrics
            .render(&[])
            .contains("registre_append_failures_total 1")
    );
    server.stop().await;
}

#[tokio::test]
async fn mutual_tls_and_allowed_clients() {
    let pki = pki();
    let (st, _) = state();
    let opts = SyslogOptions {
        allowed_clients: vec!["rsyslog-dpi".into()],
        ..SyslogOptions::default()
    };
    // Client certificates verified when presented, not required by TLS:
    // allowed_clients refuses the anonymous sender itself.
    let server = tls(&st, pki.server(true, false), opts).await;
    let mut anon = tls_client(&pki, server.addr, None)
        .await
        .expect("anonymous handshake");
    let _ = anon.write_all(&octet_frame(&dicom("anon"))).await;
    let _ = anon.flush().await;
    assert!(closed_by_server(&mut anon).await);
    until("client_not_allowed", || {
        count(&st, "connections", "tls", "client_not_allowed") == 1
    })
    .await;
    // A certificate from another CA fails the handshake.
    let stranger = async {
        let mut s = tls_client(&pki, server.addr, Some(&pki.stranger)).await?;
        s.write_all(&octet_frame(&dicom("stranger"))).await?;
        s.flush().await?;
        let mut b = [0u8; 1];
        s.read(&mut b).await
    }
    .await;
    assert!(!matches!(stranger, Ok(n) if n > 0));
    until("handshake failure", || {
        count(&st, "connections", "tls", "tls_handshake_failed") == 1
    })
    .await;
    // The allowed client sends.
    let mut ok = tls_client(&pki, server.addr, Some(&pki.client))
        .await
        .expect("client certificate");
    ok.write_all(&octet_frame(&dicom("allowed")))
        .await
        .expect("write");
    ok.flush().await.expect("flush");
    until("allowed", || count(&st, "stored", "tls", "") == 1).await;
    assert_eq!(patients(&st).await, ["allowed"]);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_what_arrived_and_reports_partial_frames() {
    let (st, _) = state();
    let server = tcp(&st, SyslogOptions::default()).await;
    let mut c = TcpStream::connect(server.addr).await.expect("connect");
    c.write_all(&octet_frame(&dicom("in")))
        .await
        .expect("write");
    c.write_all(b"500 <85>1 -").await.expect("write");
    until("in", || count(&st, "stored", "tcp", "") == 1).await;
    server.stop().await;
    assert!(closed_by_server(&mut c).await);
    assert_eq!(count(&st, "frame_errors", "tcp", "shutdown"), 1);
    assert_eq!(count(&st, "open", "tcp", ""), 0);
    assert_eq!(patients(&st).await, ["in"]);
}
