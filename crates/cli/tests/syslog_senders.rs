//! Real syslog senders into the real `registre serve`:
//!
//! - util-linux `logger --rfc5424` over UDP, over TCP with line framing and
//!   over TCP with octet counting (`--octet-count`);
//! - **rsyslog** (`rsyslogd` with `rsyslog-gnutls`), started here from a
//!   private configuration, forwarding over mutual TLS with octet counting
//!   (`omfwd`, `StreamDriver="gtls"`, `TCP_Framing="octet-counted"`) to
//!   registre's TLS listener, with a test CA made by rcgen.
//!
//! Every message must arrive once and be searchable (`GET /v1/traces`).
//! A missing binary prints a visible SKIP line (`.ci/run` installs them).

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, free_port};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

const ACTOR: &str = "810001234567";

/// A one-line DICOM AuditMessage about patient `tag` (INS).
fn audit_xml(tag: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AuditMessage>\
         <EventIdentification EventActionCode=\"R\" EventDateTime=\"2026-11-28T15:42:07.123+01:00\" EventOutcomeIndicator=\"0\">\
         <EventID csd-code=\"110110\" codeSystemName=\"DCM\" originalText=\"Patient Record\"/>\
         <EventTypeCode csd-code=\"ITI-18\" codeSystemName=\"IHE Transactions\" originalText=\"Registry Stored Query\"/></EventIdentification>\
         <ActiveParticipant UserID=\"{ACTOR}\" UserIsRequestor=\"true\" NetworkAccessPointID=\"10.1.2.3\" NetworkAccessPointTypeCode=\"2\"/>\
         <AuditSourceIdentification AuditSourceID=\"MonDPI 4.2\"/>\
         <ParticipantObjectIdentification ParticipantObjectID=\"{tag}^^^&amp;1.2.250.1.213.1.4.8&amp;ISO\" ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">\
         <ParticipantObjectIDTypeCode csd-code=\"2\" codeSystemName=\"RFC-3881\" originalText=\"Patient Number\"/></ParticipantObjectIdentification>\
         </AuditMessage>"
    )
}

/// The path of `bin` if it runs (`--version`), looking in PATH and sbin.
fn find(bin: &str) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from(bin)];
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        candidates.push(Path::new(dir).join(bin));
    }
    candidates.into_iter().find(|p| {
        Command::new(p)
            .arg(if bin == "rsyslogd" { "-v" } else { "--version" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn skip(what: &str) {
    eprintln!(
        "SKIP: {what} is not installed; `.ci/run` installs it (apt-get install -y {})",
        if what == "logger" {
            "bsdutils"
        } else {
            "rsyslog rsyslog-gnutls"
        }
    );
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// The actor's traces, newest first.
async fn search(http: &reqwest::Client, url: &str, token: &str) -> Vec<Value> {
    let body: Value = http
        .get(format!("{url}/v1/traces?actor={ACTOR}&limit=1000"))
        .bearer_auth(token)
        .send()
        .await
        .expect("search")
        .error_for_status()
        .expect("search status")
        .json()
        .await
        .expect("search body");
    body["traces"].as_array().cloned().unwrap_or_default()
}

/// Searches until `want` traces are found (or 30 s pass).
async fn wait_for(http: &reqwest::Client, url: &str, token: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let traces = search(http, url, token).await;
        if traces.len() >= want || Instant::now() > deadline {
            return traces;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn patient(t: &Value) -> String {
    t["target"]["patient"]["id"]
        .as_str()
        .unwrap_or("?")
        .to_owned()
}

/// Each of `tags` exactly once among `traces`, each kept with its syslog
/// message.
fn each_once(traces: &[Value], tags: &[String]) {
    let mut got: Vec<String> = traces.iter().map(patient).collect();
    got.sort();
    let mut want = tags.to_vec();
    want.sort();
    assert_eq!(got, want, "every message arrives once");
    for t in traces {
        assert_eq!(t["original"]["format"], "syslog", "{t}");
        let text = t["original"]["text"].as_str().expect("original text");
        assert!(text.contains(&audit_xml(&patient(t))), "{text}");
        assert_eq!(t["action"], "consultation");
        assert_eq!(t["class"], "applicative");
        assert_eq!(t["target"]["patient"]["system"], "1.2.250.1.213.1.4.8");
        assert_eq!(t["source"]["ip"], "10.1.2.3");
        assert_eq!(t["source"]["software"], "MonDPI 4.2");
    }
}

async fn metric(http: &reqwest::Client, url: &str, line: &str) -> bool {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_and_tcp() {
    let Some(logger) = find("logger") else {
        skip("logger");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let udp = free_udp_port();
    let tcp = free_port();
    let server = Server::start_with(
        &dir.path().join("data"),
        port,
        &[
            OsStr::new("--syslog-udp"),
            OsStr::new(&format!("127.0.0.1:{udp}")),
            OsStr::new("--syslog-tcp"),
            OsStr::new(&format!("127.0.0.1:{tcp}")),
        ],
    );
    let mut tags = Vec::new();
    // (transport flags, port, label)
    let modes: [(&[&str], u16, &str); 3] = [
        (&["-d"], udp, "udp"),
        (&["-T"], tcp, "tcp-lines"),
        (&["-T", "--octet-count"], tcp, "tcp-octets"),
    ];
    for (flags, port, label) in modes {
        for i in 0..10 {
            let tag = format!("{label}-{i}");
            let status = Command::new(&logger)
                .args(["--rfc5424", "--msgid", "IHE+RFC-3881", "-t", "MonDPI"])
                .args(["-S", "16384", "-n", "127.0.0.1", "-P", &port.to_string()])
                .args(flags)
                .arg(audit_xml(&tag))
                .status()
                .expect("run logger");
            assert!(status.success(), "logger {label} failed");
            tags.push(tag);
        }
    }
    let http = reqwest::Client::new();
    let traces = wait_for(&http, &server.url, &server.token, tags.len()).await;
    each_once(&traces, &tags);
    // logger writes RFC 5424 with its timeQuality structured data.
    let t = traces
        .iter()
        .find(|t| patient(t) == "udp-0")
        .expect("udp-0");
    let text = t["original"]["text"].as_str().expect("text");
    assert!(text.starts_with("<13>1 "), "{text}");
    assert!(
        text.contains(" MonDPI - IHE+RFC-3881 [timeQuality "),
        "{text}"
    );
    // Nothing more arrives later: once each.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(search(&http, &server.url, &server.token).await.len(), 30);
    assert!(
        metric(
            &http,
            &server.url,
            r#"registre_syslog_messages_total{transport="udp",outcome="stored"} 10"#
        )
        .await
    );
    assert!(
        metric(
            &http,
            &server.url,
            r#"registre_syslog_messages_total{transport="tcp",outcome="stored"} 20"#
        )
        .await
    );
}

// ---- rsyslog over mutual TLS ----

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "registre syslog test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let ca = params.self_signed(&key).expect("CA");
    let issuer = Issuer::new(params, key);
    let leaf = |sans: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut p = CertificateParams::new(sans).expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let k = KeyPair::generate().expect("leaf key");
        let c = p.signed_by(&k, &issuer).expect("leaf");
        (c.pem(), k.serialize_pem())
    };
    Pki {
        ca_pem: ca.pem(),
        server: leaf(
            vec!["localhost".into(), "127.0.0.1".into()],
            "localhost",
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(vec![], "rsyslog-dpi", ExtendedKeyUsagePurpose::ClientAuth),
    }
}

/// rsyslogd, killed when dropped.
struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn https_client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_forwards_over_mutual_tls_with_octet_counting() {
    let Some(rsyslogd) = find("rsyslogd") else {
        skip("rsyslogd");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let pki = pki();
    let write = |name: &str, text: &str| {
        let p = root.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let ca = write("ca.pem", &pki.ca_pem);
    let server_cert = write("server.pem", &pki.server.0);
    let server_key = write("server.key", &pki.server.1);
    let client_cert = write("client.pem", &pki.client.0);
    let client_key = write("client.key", &pki.client.1);
    let config = write(
        "registre.toml",
        "[syslog]\nrequire_client_cert = true\nallowed_clients = [\"rsyslog-dpi\"]\n",
    );

    let port = free_port();
    let syslog_tls = free_port();
    let server = Server::start_with(
        &root.join("data"),
        port,
        &[
            OsStr::new("--config"),
            config.as_os_str(),
            OsStr::new("--tls-cert"),
            server_cert.as_os_str(),
            OsStr::new("--tls-key"),
            server_key.as_os_str(),
            OsStr::new("--client-ca"),
            ca.as_os_str(),
            OsStr::new("--syslog-tls"),
            OsStr::new(&format!("127.0.0.1:{syslog_tls}")),
        ],
    );
    let url = format!("https://127.0.0.1:{port}");

    // rsyslog: a TCP input on a private port, forwarded as is (RFC 5424,
    // octet counting) over TLS with its client certificate.
    let input = free_port();
    let work = root.join("rsyslog-work");
    std::fs::create_dir_all(&work).expect("work dir");
    let conf = write(
        "rsyslog.conf",
        &format!(
            r#"global(
  workDirectory="{work}"
  maxMessageSize="64k"
  defaultNetstreamDriverCAFile="{ca}"
  defaultNetstreamDriverCertFile="{cert}"
  defaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{input}" ruleset="fwd")
ruleset(name="fwd") {{
  action(type="omfwd" target="127.0.0.1" port="{syslog_tls}" protocol="tcp"
         StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
         StreamDriverPermittedPeers="localhost"
         TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}}
"#,
            work = work.display(),
            ca = ca.display(),
            cert = client_cert.display(),
            key = client_key.display(),
        ),
    );
    let check = Command::new(&rsyslogd)
        .args(["-N1", "-f"])
        .arg(&conf)
        .output()
        .expect("rsyslogd -N1");
    if !check.status.success() {
        let why = String::from_utf8_lossy(&check.stderr);
        if why.contains("gtls") {
            skip("rsyslog-gnutls");
            return;
        }
        panic!("rsyslog rejects the test configuration: {why}");
    }
    let _rsyslog = Rsyslog(
        Command::new(&rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(root.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut input_conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", input)) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("rsyslog's input did not open: {e}"),
        }
    };

    // 50 DICOM audit messages into rsyslog, one per line.
    let tags: Vec<String> = (0..50).map(|i| format!("rs{i:02}")).collect();
    for tag in &tags {
        writeln!(
            input_conn,
            "<85>1 2026-11-28T15:42:07.123+01:00 dpi.hopital.test MonDPI 4242 IHE+RFC-3881 - {}",
            audit_xml(tag)
        )
        .expect("write to rsyslog");
    }
    input_conn.flush().expect("flush");

    let http = https_client(&pki.ca_pem);
    let traces = wait_for(&http, &url, &server.token, tags.len()).await;
    each_once(&traces, &tags);
    let t = &traces[0];
    assert_eq!(t["source"]["host"], "dpi.hopital.test");
    let text = t["original"]["text"].as_str().expect("text");
    assert!(
        text.starts_with(
            "<85>1 2026-11-28T15:42:07.123+01:00 dpi.hopital.test MonDPI 4242 IHE+RFC-3881 - <?xml"
        ),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        search(&http, &url, &server.token).await.len(),
        50,
        "once each"
    );
    assert!(
        metric(
            &http,
            &url,
            r#"registre_syslog_messages_total{transport="tls",outcome="stored"} 50"#
        )
        .await
    );
    assert!(
        metric(
            &http,
            &url,
            r#"registre_syslog_connections_total{transport="tls",outcome="accepted"} 1"#
        )
        .await
    );

    // One data set for both TDE solutions: an AuditEvent posted over FHIR
    // and the DICOM messages rsyslog delivered are found by ITI-81 and by
    // ITI-82 alike.
    let recorded = jiff::Zoned::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string();
    let event = serde_json::json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": recorded,
        "outcome": "0",
        "agent": [{"who": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810009999999"}}, "requestor": true}],
        "source": {"observer": {"display": "MonDPI 4.2"}},
        "entity": [{
            "what": {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "fhir-patient-1"}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}
        }]
    });
    let r = http
        .post(format!("{url}/fhir/AuditEvent"))
        .bearer_auth(&server.token)
        .header("content-type", "application/fhir+json")
        .body(event.to_string())
        .send()
        .await
        .expect("post AuditEvent");
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.expect("created");
    let fhir_id = created["id"].as_str().expect("id").to_owned();
    // The DICOM messages say they were recorded at 2026-11-28T15:42+01:00.
    let since = "2026-11-01T00:00:00Z";
    let bundle: Value = http
        .get(format!("{url}/fhir/AuditEvent?date=ge{since}&_count=1000"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("ITI-81")
        .json()
        .await
        .expect("searchset");
    let events: Vec<&Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "AuditEvent")
        .collect();
    assert!(
        events.iter().any(|e| e["id"] == fhir_id.as_str()),
        "ITI-81 misses the FHIR event"
    );
    let from_syslog = events
        .iter()
        .filter(|e| e["agent"].to_string().contains(ACTOR))
        .count();
    assert_eq!(
        from_syslog, 50,
        "ITI-81 returns the DICOM messages as AuditEvents"
    );
    let r = http
        .get(format!("{url}/syslogsearch?date=ge{since}&_count=1000"))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("ITI-82");
    assert_eq!(r.status().as_u16(), 200);
    let messages: Value = r.json().await.expect("ITI-82 JSON");
    let text = messages.to_string();
    assert!(text.contains(&fhir_id), "ITI-82 misses the FHIR event");
    assert!(
        text.contains("IHE+RFC-3881") && text.contains("rs49"),
        "ITI-82 misses the syslog messages"
    );
}

#[test]
fn syslog_flags_refuse_unsafe_setups_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_registre"))
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(args)
            .env("REGISTRE_LOG", "warn")
            .output()
            .expect("run registre");
        assert!(!out.status.success(), "{args:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--syslog-tls", "127.0.0.1:0"]);
    assert!(e.contains("--tls-cert and --tls-key"), "{e}");
    let e = run(&["--syslog-udp", "0.0.0.0:0"]);
    assert!(e.contains("allow_plain"), "{e}");
    let e = run(&["--syslog-tcp", "0.0.0.0:0"]);
    assert!(e.contains("not a loopback address"), "{e}");
}
