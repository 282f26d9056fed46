//! TLS and mutual TLS end to end, against the real `registre serve`: an
//! rcgen PKI (a CA, the server's certificate for 127.0.0.1, the MSSanté
//! proxy's client certificate, a client certificate from another CA), an
//! `[[access.certificates]]` rule that makes the proxy a trusted producer,
//! and a reqwest/rustls client. Without a client certificate, or with one
//! from another CA, the connection is refused at the TLS layer. Plain HTTP
//! on a non-loopback address is refused at start unless allowed; TLS there
//! is fine.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, free_port, trace_json};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

const PROXY_CN: &str = "proxy-messagerie";

/// A certificate and its key, PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
}

struct Pki {
    ca_pem: String,
    server: Leaf,
    /// CN proxy-messagerie, signed by the CA.
    proxy: Leaf,
    /// CN not named by any rule, signed by the CA.
    unknown: Leaf,
    /// CN proxy-messagerie, signed by another CA.
    stranger: Leaf,
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    sans: &[&str],
    cn: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Leaf {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Hôpital de test");
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn pki() -> Pki {
    let (ca_pem, issuer) = ca("registre test clients and server CA");
    let (_, other) = ca("another CA");
    let client = ExtendedKeyUsagePurpose::ClientAuth;
    Pki {
        ca_pem,
        server: leaf(
            &issuer,
            &["127.0.0.1", "localhost"],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        proxy: leaf(&issuer, &[], PROXY_CN, client.clone()),
        unknown: leaf(&issuer, &[], "poste-secretariat", client.clone()),
        stranger: leaf(&other, &[], PROXY_CN, client),
    }
}

/// The PKI's files, a configuration and a data directory.
struct Files {
    _dir: tempfile::TempDir,
    root: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    config: PathBuf,
}

fn files(pki: &Pki) -> Files {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let write = |name: &str, contents: &str| {
        let p = root.join(name);
        std::fs::write(&p, contents).expect("write");
        p
    };
    Files {
        cert: write("server.pem", &pki.server.cert_pem),
        key: write("server.key", &pki.server.key_pem),
        ca: write("clients-ca.pem", &pki.ca_pem),
        config: write(
            "registre.toml",
            &format!(
                r#"[[access.certificates]]
subject_cn = "{PROXY_CN}"
role = "producteur"
name = "mssante-proxy"
trusted_proxy = true
"#
            ),
        ),
        root,
        _dir: dir,
    }
}

/// A client that trusts the test CA, presenting `identity` if given.
fn client(pki: &Pki, identity: Option<&Leaf>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("client certificate PEM");
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

/// The whole error chain, for matching a TLS alert.
/// With TLS 1.3 the server checks the client certificate after its own
/// Finished: the client sees either the UnknownCA alert or, when the alert
/// loses the race with the close, a reset connection. Both are refusals.
fn refused_at_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let c = chain(e);
    c.contains("UnknownCA")
        || c.contains("CertificateRequired")
        || c.contains("not ready")
        || c.contains("Canceled")
        || c.contains("reset")
        || c.contains("Broken pipe")
        || c.contains("closed")
        || c.contains("EOF")
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(" / ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

fn mtls_server(f: &Files) -> Server {
    Server::start_with(
        &f.root.join("data"),
        free_port(),
        &[
            OsStr::new("--config"),
            f.config.as_os_str(),
            OsStr::new("--tls-cert"),
            f.cert.as_os_str(),
            OsStr::new("--tls-key"),
            f.key.as_os_str(),
            OsStr::new("--client-ca"),
            f.ca.as_os_str(),
            OsStr::new("--require-client-cert"),
        ],
    )
}

fn https(server: &Server, path: &str) -> String {
    format!("{}{path}", server.url.replacen("http://", "https://", 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trusted_proxy_certificate_writes_for_any_actor_and_others_are_refused_at_tls() {
    let pki = pki();
    let f = files(&pki);
    let server = mtls_server(&f);
    let proxy = client(&pki, Some(&pki.proxy));

    // The proxy writes traces for the mail users it authenticated itself.
    let body = format!(
        "[{},{}]",
        trace_json("810000000001", "1", "mss"),
        trace_json("810000000002", "2", "mss")
    );
    let r = proxy
        .post(https(&server, "/v1/traces"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("POST over mutual TLS");
    let status = r.status();
    let raw = r.text().await.unwrap_or_default();
    assert_eq!(status, 201, "trusted proxy write: {raw}");

    // It is a producer: it cannot read (403 naming the role needed and
    // the certificate's principal).
    let r = proxy
        .get(https(&server, "/v1/traces?actor=810000000001"))
        .send()
        .await
        .expect("GET over mutual TLS");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 403, "{v}");
    let detail = v["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains("auditeur") && detail.contains("mssante-proxy"),
        "{v}"
    );

    // A bearer over the same connection is the credential then: the admin
    // finds both traces, authored by their actors.
    for actor in ["810000000001", "810000000002"] {
        let r = proxy
            .get(https(
                &server,
                &format!("/v1/traces?actor={actor}&class=mss"),
            ))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("admin search");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("JSON");
        let traces = v["traces"].as_array().cloned().unwrap_or_default();
        assert_eq!(traces.len(), 1, "{v}");
        assert_eq!(traces[0]["actor"]["id"], actor);
    }
    // The refused read is traced under the certificate's principal.
    let r = proxy
        .get(https(
            &server,
            "/v1/traces?actor=mssante-proxy&class=applicative",
        ))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("admin search");
    let v: Value = r.json().await.expect("JSON");
    let traces = v["traces"].as_array().cloned().unwrap_or_default();
    assert!(
        traces.iter().any(|t| t["actor"]["auth"] == "mtls"
            && t["response"]["status"] == "403"
            && t["request"] == "GET /v1/traces"),
        "{v}"
    );

    // A certificate of the right CA that no rule names: 401 with why.
    let r = client(&pki, Some(&pki.unknown))
        .get(https(&server, "/v1/logs"))
        .send()
        .await
        .expect("GET with an unmapped certificate");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 401, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .is_some_and(|d| d.contains("matches no [[access.certificates]] rule")),
        "{v}"
    );

    // No client certificate: refused during the handshake (TLS 1.3: the
    // alert arrives on the first read).
    let e = client(&pki, None)
        .get(https(&server, "/healthz"))
        .send()
        .await
        .expect_err("served without a client certificate");
    assert!(refused_at_tls(&e), "no client certificate: {}", chain(&e));
    // Even with the admin's bearer token.
    let e = client(&pki, None)
        .get(https(&server, "/v1/logs"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect_err("served without a client certificate");
    assert!(refused_at_tls(&e), "{}", chain(&e));

    // The same CN from another CA: refused.
    let e = client(&pki, Some(&pki.stranger))
        .post(https(&server, "/v1/traces"))
        .header("content-type", "application/json")
        .body(trace_json("810000000003", "3", "mss"))
        .send()
        .await
        .expect_err("served a certificate of another CA");
    assert!(refused_at_tls(&e), "another CA: {}", chain(&e));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("{}/healthz", server.url))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    // Nothing from the refused clients was stored.
    let r = proxy
        .get(https(&server, "/v1/traces?actor=810000000003"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("admin search");
    let v: Value = r.json().await.expect("JSON");
    assert_eq!(v["traces"].as_array().map(Vec::len), Some(0), "{v}");
}

/// Spawns `registre serve` with `args` (quiet).
fn spawn_serve(data: &Path, args: &[&OsStr]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_registre"))
        .arg("serve")
        .arg("--data")
        .arg(data)
        .args(args)
        .env("REGISTRE_LOG", "warn")
        .env_remove("REGISTRE_LISTEN")
        .env_remove("REGISTRE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn registre serve")
}

/// Kills the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server answers on 127.0.0.1:`port`, or panics with its
/// stderr if it exits.
fn wait_listening(child: &mut Child, port: u16, data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && data.join("admin-token").exists()
        {
            return;
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("registre serve exited ({status}):\n{err}");
        }
        assert!(Instant::now() < deadline, "registre serve did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_non_loopback_address_is_refused_at_start_tls_is_not() {
    let pki = pki();
    let f = files(&pki);

    // Plain HTTP on 0.0.0.0: refused before anything is created.
    let data = f.root.join("plain-data");
    let mut child = spawn_serve(&data, &["--listen".as_ref(), "0.0.0.0:0".as_ref()]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("registre serve --listen 0.0.0.0:0 (plain HTTP) kept running");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(!status.success(), "plain HTTP on 0.0.0.0 started");
    assert!(
        err.contains("refusing to serve plain HTTP") && err.contains("--allow-plain-http"),
        "the refusal should say why and how: {err}"
    );
    assert!(
        !data.join("admin-token").exists(),
        "a refused start created the admin token"
    );

    // TLS on 0.0.0.0: served (reached through 127.0.0.1).
    let port = free_port();
    let data = f.root.join("tls-data");
    let listen = format!("0.0.0.0:{port}");
    let mut child = spawn_serve(
        &data,
        &[
            "--listen".as_ref(),
            listen.as_ref(),
            "--tls-cert".as_ref(),
            f.cert.as_os_str(),
            "--tls-key".as_ref(),
            f.key.as_os_str(),
        ],
    );
    wait_listening(&mut child, port, &data);
    let running = Running(child);
    let r = client(&pki, None)
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .expect("HTTPS on 0.0.0.0");
    assert_eq!(r.status(), 200);
    let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token");
    let r = client(&pki, None)
        .get(format!("https://127.0.0.1:{port}/v1/logs"))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("HTTPS on 0.0.0.0");
    assert_eq!(r.status(), 200);
    drop(running);

    // Plain HTTP on 0.0.0.0 with --allow-plain-http: served.
    let port = free_port();
    let data = f.root.join("allowed-data");
    let listen = format!("0.0.0.0:{port}");
    let mut child = spawn_serve(
        &data,
        &[
            "--listen".as_ref(),
            listen.as_ref(),
            "--allow-plain-http".as_ref(),
        ],
    );
    wait_listening(&mut child, port, &data);
    let _running = Running(child);
    let r = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .expect("plain HTTP allowed");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_the_configuration_file_with_optional_client_certificates() {
    let pki = pki();
    let f = files(&pki);
    // TLS and the client CA from [server], the rule from [[access.certificates]].
    let config = f.root.join("tls.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntls_cert = {:?}\ntls_key = {:?}\nclient_ca = {:?}\n\n{}",
            f.cert,
            f.key,
            f.ca,
            std::fs::read_to_string(&f.config).expect("rules")
        ),
    )
    .expect("write");
    let server = Server::start_with(
        &f.root.join("data"),
        free_port(),
        &[OsStr::new("--config"), config.as_os_str()],
    );

    // Without a client certificate, a bearer credential is enough.
    let r = client(&pki, None)
        .get(https(&server, "/v1/logs"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("HTTPS with a bearer");
    assert_eq!(r.status(), 200);
    // …and nothing at all is a 401, not a TLS refusal.
    let r = client(&pki, None)
        .get(https(&server, "/v1/logs"))
        .send()
        .await
        .expect("HTTPS without any credential");
    assert_eq!(r.status(), 401);
    // The proxy's certificate is still its credential.
    let r = client(&pki, Some(&pki.proxy))
        .post(https(&server, "/v1/traces"))
        .header("content-type", "application/json")
        .body(trace_json("810000000007", "7", "mss"))
        .send()
        .await
        .expect("POST with the proxy certificate");
    assert_eq!(r.status(), 201);
    // A certificate of another CA is refused even though optional.
    let e = client(&pki, Some(&pki.stranger))
        .get(https(&server, "/healthz"))
        .send()
        .await
        .expect_err("served a certificate of another CA");
    assert!(refused_at_tls(&e), "{}", chain(&e));

    // The CLI reaches an HTTPS server whose CA is in REGISTRE_CA_CERT.
    let ca = f.ca.clone();
    let o = Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(["search", "--actor", "810000000007", "--format", "jsonl"])
        .args(["--server", &https(&server, "")])
        .arg("--token-file")
        .arg(f.root.join("data/admin-token"))
        .env("REGISTRE_CA_CERT", &ca)
        .env("REGISTRE_LOG", "warn")
        .env_remove("REGISTRE_TOKEN")
        .env_remove("REGISTRE_SERVER")
        .output()
        .expect("registre search");
    assert!(
        o.status.success(),
        "registre search over HTTPS: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}

/// The binary as a client: `REGISTRE_CA_CERT` trusts the test CA,
/// `REGISTRE_CLIENT_CERT` (if given) presents `identity` (certificate and
/// key in one PEM file); run from an empty directory, so no
/// `./registre-data/admin-token` is found by accident.
fn cli(f: &Files, identity: Option<&Leaf>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_registre"));
    let cwd = f.root.join("cwd");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    c.current_dir(&cwd)
        .env("REGISTRE_LOG", "warn")
        .env("REGISTRE_CA_CERT", &f.ca)
        .env("XDG_STATE_HOME", f.root.join("state"))
        .env_remove("REGISTRE_TOKEN")
        .env_remove("REGISTRE_TOKEN_FILE")
        .env_remove("REGISTRE_SERVER")
        .env_remove("REGISTRE_CLIENT_CERT");
    if let Some(leaf) = identity {
        let pem = f.root.join("client-identity.pem");
        std::fs::write(&pem, format!("{}{}", leaf.cert_pem, leaf.key_pem)).expect("write");
        c.env("REGISTRE_CLIENT_CERT", pem);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_mutual_tls_with_registre_client_cert() {
    let pki = pki();
    let f = files(&pki);
    let server = mtls_server(&f);
    let url = https(&server, "");
    let token_file = f.root.join("data/admin-token");

    // Bearer + client certificate: the admin searches over mutual TLS.
    let o = cli(&f, Some(&pki.proxy))
        .args(["search", "--server", &url, "--format", "jsonl"])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .expect("registre search");
    assert!(
        o.status.success(),
        "search over mutual TLS: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Without REGISTRE_CLIENT_CERT the server refuses the connection.
    let o = cli(&f, None)
        .args(["search", "--server", &url])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .expect("registre search");
    assert!(!o.status.success(), "served without a client certificate");
    // A client certificate of another CA: refused too.
    let o = cli(&f, Some(&pki.stranger))
        .args(["search", "--server", &url])
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .expect("registre search");
    assert!(!o.status.success(), "served a certificate of another CA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_appends_with_its_certificate_alone() {
    let pki = pki();
    let f = files(&pki);
    let server = mtls_server(&f);
    let jsonl = f.root.join("traces.jsonl");
    std::fs::write(
        &jsonl,
        format!(
            "{}\n{}\n",
            trace_json("810000000011", "11", "mss"),
            trace_json("810000000012", "12", "mss")
        ),
    )
    .expect("write");
    let o = cli(&f, Some(&pki.proxy))
        .args(["append", "--quiet", "--server", &https(&server, "")])
        .arg(&jsonl)
        .output()
        .expect("registre append");
    assert!(
        o.status.success(),
        "append as the trusted proxy, by its certificate: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    for actor in ["810000000011", "810000000012"] {
        let r = client(&pki, Some(&pki.proxy))
            .get(https(
                &server,
                &format!("/v1/traces?actor={actor}&class=mss"),
            ))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("admin search");
        let v: Value = r.json().await.expect("JSON");
        assert_eq!(v["traces"].as_array().map(Vec::len), Some(1), "{v}");
    }
}
