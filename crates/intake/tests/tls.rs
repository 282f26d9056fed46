//! TLS and mutual TLS: `server_config`, `serve_tls`, client certificates and
//! their mapping to principals. Certificates are made here with rcgen.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::{Extension, Router};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use registre_access::{AuthMethod, Principal, Role};
use registre_intake::tls::{
    CertRule, ClientCertificate, HANDSHAKE_TIMEOUT, TlsError, TlsOptions, certificate_principal,
    serve_tls, server_config,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

const CLIENT_CN: &str = "proxy-messagerie";
const CLIENT_SUBJECT: &str = r"CN=proxy-messagerie,O=Hôpital\, Test,C=FR";

/// A certificate and its key.
struct Leaf {
    cert: CertificateDer<'static>,
    cert_pem: String,
    key: KeyPair,
}

impl Leaf {
    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.serialize_der().into())
    }
}

/// The test PKI: a CA, its server and client certificates, and a client
/// certificate with the same names from another CA.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server: Leaf,
    client: Leaf,
    stranger: Leaf,
}

fn ca(name: &str) -> (CertificateDer<'static>, String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), cert.pem(), Issuer::new(params, key))
}

fn server_leaf(issuer: &Issuer<'static, KeyPair>) -> Leaf {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        cert: cert.der().clone(),
        cert_pem: cert.pem(),
        key,
    }
}

fn client_leaf(issuer: &Issuer<'static, KeyPair>) -> Leaf {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    // Most general first in the certificate (C, O, CN): the DN string reverses it.
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CountryName,
        DnValue::PrintableString("FR".try_into().unwrap()),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Hôpital, Test");
    params
        .distinguished_name
        .push(DnType::CommonName, CLIENT_CN);
    params.subject_alt_names = vec![
        SanType::DnsName("proxy.hopital.test".try_into().unwrap()),
        SanType::Rfc822Name("proxy@hopital.test".try_into().unwrap()),
        SanType::URI("spiffe://hopital.test/proxy".try_into().unwrap()),
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf {
        cert: cert.der().clone(),
        cert_pem: cert.pem(),
        key,
    }
}

fn pki() -> Pki {
    let (ca_der, ca_pem, issuer) = ca("registre test CA");
    let (_, _, other) = ca("another CA");
    Pki {
        ca_pem,
        ca_der,
        server: server_leaf(&issuer),
        client: client_leaf(&issuer),
        stranger: client_leaf(&other),
    }
}

/// The PKI's files, and options that use them.
struct Files {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn files(pki: &Pki) -> Files {
    let dir = tempfile::tempdir().unwrap();
    Files {
        cert: write(dir.path(), "server.pem", &pki.server.cert_pem),
        key: write(dir.path(), "server.key", &pki.server.key.serialize_pem()),
        ca: write(dir.path(), "client-ca.pem", &pki.ca_pem),
        _dir: dir,
    }
}

fn options(f: &Files, client_ca: bool, require: bool) -> TlsOptions {
    TlsOptions {
        cert: f.cert.clone(),
        key: f.key.clone(),
        client_ca: client_ca.then(|| f.ca.clone()),
        require_client_cert: require,
    }
}

/// Echoes what the handler sees: the client certificate, or `anonymous`.
async fn whoami(
    ConnectInfo(_peer): ConnectInfo<SocketAddr>,
    cert: Option<Extension<ClientCertificate>>,
) -> String {
    match cert {
        None => "anonymous".into(),
        Some(Extension(c)) => format!(
            "{}\n{}\n{}\n{}",
            c.subject,
            c.common_name.unwrap_or_default(),
            c.sans.join(" "),
            c.der.len()
        ),
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(config: Arc<rustls::ServerConfig>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/whoami", get(whoami));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls(listener, config, app, async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server; it must be gone within `within`.
    async fn stop(mut self, within: Duration) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(within, self.task)
            .await
            .expect("serve_tls did not return after shutdown")
            .unwrap()
            .unwrap();
    }
}

fn client_config(pki: &Pki, cert: Option<&Leaf>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.cert.clone()], leaf.key_der())
            .unwrap(),
    })
}

/// `GET path` over TLS (as `localhost`); the status and body, or why not.
async fn get_over_tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        match tls.read_to_end(&mut buf).await {
            Ok(_) => {}
            // Some peers close without close_notify after a full answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty() => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        let text = String::from_utf8(buf).map_err(|e| e.to_string())?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
        let status = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|s| s.get(..3))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line: {head:?}"))?;
        Ok((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn expected_echo(pki: &Pki) -> String {
    format!(
        "{CLIENT_SUBJECT}\n{CLIENT_CN}\nproxy.hopital.test proxy@hopital.test spiffe://hopital.test/proxy\n{}",
        pki.client.cert.len()
    )
}

#[tokio::test]
async fn tls_without_client_certificates() {
    let pki = pki();
    let f = files(&pki);
    let server = Server::start(server_config(&options(&f, false, false)).unwrap()).await;

    let (status, body) = get_over_tls(server.addr, client_config(&pki, None), "/whoami")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "anonymous"));
    // Not asked for, a client certificate is not sent.
    let (status, body) = get_over_tls(
        server.addr,
        client_config(&pki, Some(&pki.client)),
        "/whoami",
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (200, "anonymous"));
    // The router's answers come through (404 for unknown routes).
    let (status, _) = get_over_tls(server.addr, client_config(&pki, None), "/nope")
        .await
        .unwrap();
    assert_eq!(status, 404);

    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn mtls_required() {
    let pki = pki();
    let f = files(&pki);
    let server = Server::start(server_config(&options(&f, true, true)).unwrap()).await;

    let no_cert = get_over_tls(server.addr, client_config(&pki, None), "/whoami").await;
    // TLS 1.3: the client finishes first, then reads the server's alert.
    assert!(
        no_cert
            .as_ref()
            .is_err_and(|e| e.contains("CertificateRequired")),
        "no client certificate: {no_cert:?}"
    );

    let other_ca = get_over_tls(
        server.addr,
        client_config(&pki, Some(&pki.stranger)),
        "/whoami",
    )
    .await;
    assert!(
        other_ca.as_ref().is_err_and(|e| e.contains("UnknownCA")),
        "client certificate of another CA: {other_ca:?}"
    );

    let (status, body) = get_over_tls(
        server.addr,
        client_config(&pki, Some(&pki.client)),
        "/whoami",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, expected_echo(&pki));

    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn mtls_optional() {
    let pki = pki();
    let f = files(&pki);
    let server = Server::start(server_config(&options(&f, true, false)).unwrap()).await;

    let (status, body) = get_over_tls(server.addr, client_config(&pki, None), "/whoami")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "anonymous"));

    let (status, body) = get_over_tls(
        server.addr,
        client_config(&pki, Some(&pki.client)),
        "/whoami",
    )
    .await
    .unwrap();
    assert_eq!((status, body), (200, expected_echo(&pki)));

    // Optional, but verified when presented.
    let other_ca = get_over_tls(
        server.addr,
        client_config(&pki, Some(&pki.stranger)),
        "/whoami",
    )
    .await;
    assert!(
        other_ca.as_ref().is_err_and(|e| e.contains("UnknownCA")),
        "client certificate of another CA: {other_ca:?}"
    );

    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_silent_client_blocks_no_one() {
    let pki = pki();
    let f = files(&pki);
    let server = Server::start(server_config(&options(&f, true, true)).unwrap()).await;

    // Connects, sends nothing; another sends half a ClientHello.
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();

    let start = Instant::now();
    let (status, _) = get_over_tls(
        server.addr,
        client_config(&pki, Some(&pki.client)),
        "/whoami",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "served after {:?}",
        start.elapsed()
    );

    // Stopping does not wait for the handshakes to time out.
    server.stop(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let pki = pki();
    let f = files(&pki);
    let server = Server::start(server_config(&options(&f, false, false)).unwrap()).await;

    let start = Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(HANDSHAKE_TIMEOUT + Duration::from_secs(5), async {
        silent.read(&mut buf).await
    })
    .await
    .expect("the server kept a silent client past its handshake timeout");
    // Closed (EOF or reset), nothing sent.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        start.elapsed() >= HANDSHAKE_TIMEOUT - Duration::from_millis(500),
        "closed after {:?}",
        start.elapsed()
    );

    server.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections() {
    let pki = pki();
    let f = files(&pki);
    let server = Server::start(server_config(&options(&f, false, false)).unwrap()).await;

    // A keep-alive connection, idle after one answer.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls = TlsConnector::from(client_config(&pki, None))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);

    server.stop(Duration::from_secs(5)).await;
    // The server closed it.
    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(2), tls.read_to_end(&mut rest)).await;
    assert!(end.is_ok(), "connection still open after shutdown");
}

#[test]
fn server_config_errors_name_the_file_and_the_problem() {
    let pki = pki();
    let f = files(&pki);
    let dir = tempfile::tempdir().unwrap();
    let err = |opts: &TlsOptions| server_config(opts).unwrap_err();

    // Missing file.
    let missing = dir.path().join("absent.pem");
    let e = err(&TlsOptions {
        cert: missing.clone(),
        ..options(&f, false, false)
    });
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("absent.pem") && msg.contains("cannot read"),
        "{msg}"
    );

    // A PEM without a certificate (a key where the certificate should be).
    let e = err(&TlsOptions {
        cert: f.key.clone(),
        ..options(&f, false, false)
    });
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("server.key") && msg.contains("no certificate"),
        "{msg}"
    );

    // Not PEM at all: no certificate either.
    let junk = write(dir.path(), "junk.pem", "hello\n");
    let msg = err(&TlsOptions {
        cert: junk,
        ..options(&f, false, false)
    })
    .to_string();
    assert!(
        msg.contains("junk.pem") && msg.contains("no certificate"),
        "{msg}"
    );

    // A PEM without a key.
    let e = err(&TlsOptions {
        key: f.cert.clone(),
        ..options(&f, false, false)
    });
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("server.pem") && msg.contains("no private key"),
        "{msg}"
    );

    // A key that is not the certificate's.
    let other_key = write(dir.path(), "other.key", &pki.client.key.serialize_pem());
    let e = err(&TlsOptions {
        key: other_key,
        ..options(&f, false, false)
    });
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("other.key") && msg.contains("server.pem") && msg.contains("does not match"),
        "{msg}"
    );

    // A broken PEM block.
    let broken = write(
        dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    );
    let e = err(&TlsOptions {
        cert: broken,
        ..options(&f, false, false)
    });
    assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    assert!(e.to_string().contains("broken.pem"), "{e}");

    // Bad client CAs: none in the file, or not a certificate.
    let empty_ca = write(dir.path(), "empty-ca.pem", "");
    let e = err(&TlsOptions {
        client_ca: Some(empty_ca),
        ..options(&f, true, true)
    });
    assert!(matches!(e, TlsError::BadClientCa { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("empty-ca.pem") && msg.contains("no certificate"),
        "{msg}"
    );

    let garbage_ca = write(
        dir.path(),
        "garbage-ca.pem",
        "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
    );
    let e = err(&TlsOptions {
        cert: garbage_ca.clone(),
        ..options(&f, false, false)
    });
    assert!(matches!(e, TlsError::BadCertificate { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("garbage-ca.pem") && msg.contains("invalid certificate"),
        "{msg}"
    );
    let e = err(&TlsOptions {
        client_ca: Some(garbage_ca),
        ..options(&f, true, true)
    });
    assert!(matches!(e, TlsError::BadClientCa { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("garbage-ca.pem") && msg.contains("bad client CA"),
        "{msg}"
    );

    let e = err(&TlsOptions {
        client_ca: Some(dir.path().join("no-ca.pem")),
        ..options(&f, true, true)
    });
    assert!(matches!(e, TlsError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("no-ca.pem"), "{e}");

    // Requiring client certificates needs a CA to check them.
    let e = err(&options(&f, false, true));
    assert!(matches!(e, TlsError::RequireWithoutCa), "{e:?}");

    // And the good files work, with a key file holding the chain too.
    let combined = write(
        dir.path(),
        "combined.pem",
        &format!(
            "{}{}{}",
            pki.server.cert_pem,
            pki.ca_pem,
            pki.server.key.serialize_pem()
        ),
    );
    server_config(&TlsOptions {
        cert: combined.clone(),
        key: combined,
        client_ca: Some(f.ca.clone()),
        require_client_cert: true,
    })
    .unwrap();
}

#[test]
fn client_certificate_fields() {
    let pki = pki();
    let c = ClientCertificate::from_der(&pki.client.cert).unwrap();
    assert_eq!(c.subject, CLIENT_SUBJECT);
    assert_eq!(c.common_name.as_deref(), Some(CLIENT_CN));
    assert_eq!(
        c.sans,
        [
            "proxy.hopital.test",
            "proxy@hopital.test",
            "spiffe://hopital.test/proxy"
        ]
    );
    assert_eq!(c.der, pki.client.cert.as_ref());

    // IP addresses as text.
    let s = ClientCertificate::from_der(&pki.server.cert).unwrap();
    assert_eq!(s.subject, "CN=localhost");
    assert_eq!(s.sans, ["localhost", "127.0.0.1"]);

    assert!(matches!(
        ClientCertificate::from_der(b"not a certificate"),
        Err(TlsError::ClientCertificate(_))
    ));
}

fn cert(cn: Option<&str>, sans: &[&str]) -> ClientCertificate {
    ClientCertificate {
        subject: cn.map(|cn| format!("CN={cn},O=Test")).unwrap_or_default(),
        common_name: cn.map(str::to_string),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        der: vec![],
    }
}

#[test]
fn certificate_rules_map_to_principals() {
    let rules: Vec<CertRule> = serde_json::from_value(serde_json::json!([
        {"subject_cn": "proxy-messagerie", "role": "producteur", "name": "proxy", "trusted_proxy": true},
        {"san": "audit@hopital.test", "role": "auditeur", "name": "dpo"},
        {"subject_cn": "app", "san": "app.hopital.test", "role": "producteur", "name": "app"},
        {"subject_cn": "proxy-messagerie", "role": "admin", "name": "shadowed"},
    ]))
    .unwrap();

    // By common name; the first matching rule wins.
    let proxy = cert(Some("proxy-messagerie"), &["proxy.hopital.test"]);
    assert_eq!(
        certificate_principal(&proxy, &rules),
        Some(Principal {
            id: "proxy".into(),
            auth: "mtls".into(),
            roles: vec![Role::Producteur],
            trusted_proxy: true,
            method: AuthMethod::Certificate {
                subject: "CN=proxy-messagerie,O=Test".into()
            },
        })
    );

    // By SAN; trusted_proxy defaults to false.
    let dpo = certificate_principal(
        &cert(
            Some("Jeanne"),
            &["jeanne.hopital.test", "audit@hopital.test"],
        ),
        &rules,
    )
    .unwrap();
    assert_eq!(dpo.id, "dpo");
    assert_eq!(dpo.roles, [Role::Auditeur]);
    assert!(!dpo.trusted_proxy);
    assert!(dpo.may(&[Role::Auditeur]) && !dpo.may(&[Role::Producteur]));

    // A rule with both needs both.
    assert_eq!(
        certificate_principal(&cert(Some("app"), &["app.hopital.test"]), &rules)
            .unwrap()
            .id,
        "app"
    );
    assert_eq!(
        certificate_principal(&cert(Some("app"), &["other.hopital.test"]), &rules),
        None
    );
    assert_eq!(
        certificate_principal(&cert(Some("other"), &["app.hopital.test"]), &rules),
        None
    );

    // Exact matches only; no CN, no SAN, no match.
    assert_eq!(
        certificate_principal(&cert(Some("Proxy-Messagerie"), &[]), &rules),
        None
    );
    assert_eq!(
        certificate_principal(&cert(Some("proxy"), &["audit@hopital.test.evil"]), &rules),
        None
    );
    assert_eq!(certificate_principal(&cert(None, &[]), &rules), None);
    assert_eq!(certificate_principal(&proxy, &[]), None);

    // A rule built by hand with no criterion matches nothing.
    let open = CertRule {
        subject_cn: None,
        san: None,
        role: Role::Admin,
        name: "open".into(),
        trusted_proxy: false,
    };
    assert_eq!(certificate_principal(&proxy, &[open]), None);
}

#[test]
fn certificate_rules_are_checked_when_read() {
    let parse =
        |v: serde_json::Value| serde_json::from_value::<CertRule>(v).map_err(|e| e.to_string());
    let e = parse(serde_json::json!({"role": "admin", "name": "all"})).unwrap_err();
    assert!(e.contains("needs subject_cn or san"), "{e}");
    let e = parse(serde_json::json!({"subject_cn": "", "role": "admin", "name": "x"})).unwrap_err();
    assert!(e.contains("must not be empty"), "{e}");
    let e =
        parse(serde_json::json!({"subject-cn": "a", "role": "admin", "name": "x"})).unwrap_err();
    assert!(e.contains("unknown field"), "{e}");
    let e = parse(serde_json::json!({"subject_cn": "a", "role": "root", "name": "x"})).unwrap_err();
    assert!(e.contains("unknown variant"), "{e}");
    let e = parse(serde_json::json!({"subject_cn": "a", "role": "admin"})).unwrap_err();
    assert!(e.contains("name"), "{e}");
}
