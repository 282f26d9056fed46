//! The submission relay end to end: real Dovecot submission relaying to a
//! real Postfix (support::mail), the embedded journal in a temporary
//! directory, two relays on free ports with a certificate from the harness
//! CA — one with implicit TLS toward clients and STARTTLS toward Dovecot
//! `submission`, one with STARTTLS toward clients and implicit TLS toward
//! `submissions` — and real clients through them: Python's smtplib
//! (`smtp_e2e.py`) and curl when it is installed.
//!
//! Checks every trace, that each message reached the recipient's Maildir
//! intact, that each `envoi` names the queue id Postfix logged for that
//! message, that the journal down refuses AUTH and MAIL FROM with nothing
//! reaching the server, and searches the journal's data directory, its
//! traces and the proxy's log output for the canaries (subject, body,
//! attachment, password).
//!
//! Without the servers (or not as root) the test prints a `SKIP` line.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use registre_model::{ClassName, Trace};
use registre_proxy::relay::{self, Journal};
use registre_proxy::smtp::Limits;
use registre_proxy::smtp_relay::{self, SmtpRelayConfig};
use registre_proxy::tls::{ListenTls, UpstreamTls};
use registre_proxy::trace_common::TracerConfig;
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use support::canary::{Capture, contains, files};
use support::mail::{MailServers, REFUSED_CODE, REFUSED_TEXT, free_port, which};

const USER: &str = "dr.martin@hopital.test";
const RECIPIENT: &str = "dr.durand@hopital.test";
const PASSWORD: &str = "pw-canary-3f9d2e71";
const CANARY: &str = "canary-a61c40d7";

/// The embedded store as the relay's journal, with a switch to take it
/// down.
struct Switch {
    store: Arc<dyn Store>,
    down: AtomicBool,
}

impl Journal for Switch {
    type Error = std::io::Error;

    async fn record(&self, traces: Vec<Trace>) -> Result<(), std::io::Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("journal down (test switch)"));
        }
        self.store
            .record(traces)
            .await
            .map_err(std::io::Error::other)
    }

    fn ready(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }
}

async fn run(program: &str, args: Vec<String>) -> (bool, String, String) {
    let program = program.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&program)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"))
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn python(scenario: &str, cfg: &Value, logs: &Capture) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_e2e.py");
    let (ok, stdout, stderr) = run(
        "python3",
        vec![
            script.display().to_string(),
            scenario.to_owned(),
            cfg.to_string(),
        ],
    )
    .await;
    assert!(
        ok,
        "smtp_e2e.py {scenario} failed:\n{stdout}\n{stderr}\n{}",
        String::from_utf8_lossy(&logs.0.lock().unwrap())
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("client ({scenario}): {out:#}");
    out
}

/// The messages in `maildir` (new and cur).
fn delivered(maildir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for entry in entries.flatten() {
                if let Ok(bytes) = std::fs::read(entry.path()) {
                    out.push(bytes);
                }
            }
        }
    }
    out
}

fn relay_config(
    servers: &MailServers,
    acceptor: tokio_rustls::TlsAcceptor,
    listen_tls: ListenTls,
    upstream_tls: UpstreamTls,
    port: u16,
) -> Arc<SmtpRelayConfig> {
    Arc::new(SmtpRelayConfig {
        listen_tls,
        acceptor,
        upstream: format!("{}:{port}", servers.host),
        upstream_tls,
        upstream_name: ServerName::try_from("localhost").unwrap(),
        connector: relay::upstream_client_config(&servers.ca_pem)
            .unwrap()
            .into(),
        helo_name: "proxy.hopital.test".to_owned(),
        tracer: Arc::new(TracerConfig {
            mail_domain: Some("hopital.test".to_owned()),
            ..TracerConfig::default()
        }),
        limits: Limits::default(),
    })
}

fn summary(t: &Value) -> Value {
    json!([
        t["action"],
        t["actor"]["id"],
        t["actor"]["auth"],
        t["response"]["status"],
        t["outcome"]
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submission_through_the_relay_is_traced_without_content() {
    let Some(servers) = tokio::task::block_in_place(|| {
        MailServers::start_with_users(&[(USER, PASSWORD), (RECIPIENT, "pw-durand")])
    }) else {
        return;
    };
    let logs = Capture::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mss = ClassName::new("mss").unwrap();
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::block_in_place(|| {
            EmbeddedStore::open(&data, EmbeddedOptions::new(vec![mss.clone()]))
        })
        .unwrap(),
    );
    let journal = Arc::new(Switch {
        store: store.clone(),
        down: AtomicBool::new(false),
    });

    let (cert, key) = servers.issue(&["localhost", "127.0.0.1"]);
    let (cert_file, key_file) = (tmp.path().join("proxy.pem"), tmp.path().join("proxy.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    let server_tls = registre_intake::tls::server_config(&registre_intake::tls::TlsOptions {
        cert: cert_file,
        key: key_file,
        client_ca: None,
        require_client_cert: false,
    })
    .unwrap();
    let mut server_tls = (*server_tls).clone();
    server_tls.alpn_protocols.clear();
    let acceptor: tokio_rustls::TlsAcceptor = Arc::new(server_tls).into();

    let mut stops = Vec::new();
    let mut relays = Vec::new();
    let mut ports = Vec::new();
    for (listen, upstream, port) in [
        (
            ListenTls::Implicit,
            UpstreamTls::Starttls,
            servers.submission,
        ),
        (
            ListenTls::Starttls,
            UpstreamTls::Implicit,
            servers.submissions,
        ),
    ] {
        let config = relay_config(&servers, acceptor.clone(), listen, upstream, port);
        let proxy_port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", proxy_port))
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        relays.push(tokio::spawn(smtp_relay::serve(
            listener,
            config,
            journal.clone(),
            async {
                let _ = stopped.await;
            },
        )));
        stops.push(stop);
        ports.push(proxy_port);
    }
    let (implicit, starttls) = (ports[0], ports[1]);

    let run_id = std::process::id();
    let cfg = json!({
        "host": "localhost",
        "implicit": implicit,
        "starttls": starttls,
        "ca": servers.ca_pem,
        "user": USER,
        "password": PASSWORD,
        "recipient": RECIPIENT,
        "refused": servers.refused,
        "canary": CANARY,
        "run": run_id,
    });
    let out = python("main", &cfg, &logs).await;

    // What the clients saw.
    assert_eq!(out["implicit_login"], 235);
    assert_eq!(out["sent_1"], json!({}));
    let refused = &out["refused_only"][&servers.refused];
    assert_eq!(refused[0], REFUSED_CODE, "{out}");
    assert!(refused[1].as_str().unwrap().contains(REFUSED_TEXT));
    assert_eq!(out["sent_3"][&servers.refused][0], REFUSED_CODE);
    let features = |key: &str| -> Vec<String> {
        out[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect()
    };
    let (implicit_features, plain, tls) = (
        features("implicit_features"),
        features("plain_features"),
        features("tls_features"),
    );
    assert!(
        implicit_features.contains(&"auth".to_owned()),
        "{implicit_features:?}"
    );
    assert!(!implicit_features.contains(&"starttls".to_owned()));
    assert!(!implicit_features.contains(&"burl".to_owned()));
    assert!(plain.contains(&"starttls".to_owned()), "{plain:?}");
    assert!(!plain.contains(&"auth".to_owned()), "{plain:?}");
    assert!(tls.contains(&"auth".to_owned()) && !tls.contains(&"starttls".to_owned()));
    assert_eq!(out["starttls"], 220);
    assert_eq!(out["bad_login"], 535);
    assert_eq!(out["starttls_login"], 235);
    assert_eq!(out["sent_4"], json!({}));
    assert_eq!(
        out["injection_starttls"],
        json!(["220 2.0.0 Ready to start TLS"])
    );
    // In step after TLS: the injected commands were never answered.
    let ehlo = out["injection_ehlo_after_tls"].as_array().unwrap();
    assert!(
        ehlo[0].as_str().unwrap().starts_with("250-")
            && ehlo
                .iter()
                .any(|l| l.as_str().unwrap().starts_with("250-AUTH")),
        "the injected commands were answered: {out}"
    );
    assert!(
        out["injection_noop"][0]
            .as_str()
            .unwrap()
            .starts_with("250 ")
    );
    assert_eq!(
        out["injection_quit"][0].as_str().unwrap().get(..3),
        Some("221")
    );

    // curl, when installed: implicit TLS and STARTTLS.
    let mut curl_msgids = Vec::new();
    if which("curl").is_some() {
        for (n, url) in [
            (5, format!("smtps://localhost:{implicit}/proxy.test")),
            (6, format!("smtp://localhost:{starttls}/proxy.test")),
        ] {
            let msgid = format!("<c{n}-{run_id}@hopital.test>");
            let file = tmp.path().join(format!("curl-{n}.eml"));
            std::fs::write(
                &file,
                format!(
                    "From: {USER}\r\nTo: {RECIPIENT}\r\nSubject: {CANARY} curl {n}\r\n\
                     Message-ID: {msgid}\r\n\r\n{CANARY} body by curl\r\n"
                ),
            )
            .unwrap();
            let (ok, stdout, stderr) = run(
                "curl",
                vec![
                    "-sS".into(),
                    "--ssl-reqd".into(),
                    "--url".into(),
                    url.clone(),
                    "--cacert".into(),
                    servers.ca_pem.display().to_string(),
                    "--user".into(),
                    format!("{USER}:{PASSWORD}"),
                    "--mail-from".into(),
                    USER.into(),
                    "--mail-rcpt".into(),
                    RECIPIENT.into(),
                    "--upload-file".into(),
                    file.display().to_string(),
                ],
            )
            .await;
            assert!(ok, "curl {url}: {stdout}\n{stderr}");
            curl_msgids.push(msgid);
        }
    } else {
        eprintln!("SKIP: curl is not installed: the curl sends are not run");
    }

    // The journal down: AUTH and MAIL FROM refused by the proxy, nothing
    // traced, nothing sent.
    let postfix_before = std::fs::read(&servers.postfix_log).unwrap_or_default();
    journal.down.store(true, Ordering::SeqCst);
    let down = python("down", &cfg, &logs).await;
    journal.down.store(false, Ordering::SeqCst);
    assert_eq!(down["auth"][0], 454, "{down}");
    assert_eq!(
        down["mail"],
        json!([451, "4.3.0 journal unavailable, try again later"])
    );
    assert_eq!(down["rcpt"][0], 503);
    assert_eq!(down["data"][0], 503);
    assert_eq!(down["noop"], 250);

    for stop in stops {
        let _ = stop.send(());
    }
    for relay in relays {
        relay.await.unwrap().unwrap();
    }

    // The traces, oldest first.
    let page = store
        .search(Query {
            class: Some(mss),
            limit: 1000,
            ..Query::default()
        })
        .await
        .unwrap();
    let mut traces: Vec<Value> = page
        .traces
        .iter()
        .map(|r| serde_json::to_value(&r.trace).unwrap())
        .collect();
    traces.reverse();
    let n = Value::Null;
    let mut expected = vec![
        // implicit TLS → STARTTLS upstream
        json!(["connexion", USER, "plain", "235", "success"]),
        json!(["envoi", USER, "plain", "250", "success"]),
        json!(["envoi", USER, "plain", "550", "failure"]),
        json!(["envoi", USER, "plain", "250", "success"]),
        json!(["deconnexion", USER, "plain", "221", "success"]),
        // STARTTLS → implicit TLS upstream: smtplib tries PLAIN then LOGIN
        json!(["connexion", USER, "plain", "535", "failure"]),
        json!(["connexion", USER, "login", "535", "failure"]),
        json!(["connexion", USER, "plain", "235", "success"]),
        json!(["envoi", USER, "plain", "250", "success"]),
        json!(["deconnexion", USER, "plain", "221", "success"]),
    ];
    for _ in &curl_msgids {
        expected.extend([
            json!(["connexion", USER, n, "235", "success"]),
            json!(["envoi", USER, n, "250", "success"]),
            json!(["deconnexion", USER, n, "221", "success"]),
        ]);
    }
    let mut got: Vec<Value> = traces.iter().map(summary).collect();
    // curl picks its own mechanism: compare it apart.
    let curl_mechanisms: Vec<Value> = got
        .iter_mut()
        .skip(10)
        .map(|s| std::mem::take(&mut s[2]))
        .collect();
    assert_eq!(got, expected, "traces: {traces:#?}");
    assert!(
        curl_mechanisms
            .iter()
            .all(|m| matches!(m.as_str(), Some("plain" | "login"))),
        "{curl_mechanisms:?}"
    );
    for t in &traces {
        assert_eq!(t["class"], "mss");
        assert_eq!(t["actor"]["id_type"], "login", "{t}");
        assert_eq!(t["target"]["mailbox"], USER, "{t}");
        assert!(t["occurred_at"].as_str().unwrap().len() >= 29, "{t}");
        assert!(
            t["source"]["ip"].as_str().unwrap().starts_with("127."),
            "{t}"
        );
        assert_eq!(t["source"]["software"], "registre-proxy");
    }

    // The envoi traces in detail.
    let envois: Vec<&Value> = traces.iter().filter(|t| t["action"] == "envoi").collect();
    let refused = &servers.refused;
    assert_eq!(envois[0]["target"]["recipients"], json!([RECIPIENT]));
    assert_eq!(envois[1]["target"]["recipients"], json!([refused]));
    let refused_request = envois[1]["request"].as_str().unwrap();
    assert!(
        refused_request.starts_with(&format!("MAIL FROM:<{USER}>"))
            && refused_request.contains(&format!("RCPT TO:<{refused}> → {REFUSED_CODE} 5.7.1"))
            && refused_request.contains(REFUSED_TEXT)
            && refused_request.ends_with("; reset before the message"),
        "{refused_request}"
    );
    assert!(envois[1]["target"]["size"].is_null());
    assert_eq!(
        envois[2]["target"]["recipients"],
        json!([RECIPIENT, refused])
    );
    assert!(
        envois[2]["request"]
            .as_str()
            .unwrap()
            .contains(&format!("RCPT TO:<{refused}> → {REFUSED_CODE}"))
    );
    let delivered_envois: Vec<&&Value> = envois
        .iter()
        .filter(|t| t["outcome"] == "success")
        .collect();
    assert_eq!(delivered_envois.len(), 3 + curl_msgids.len());
    let mut queue_ids = Vec::new();
    for t in &delivered_envois {
        assert!(t["target"]["size"].as_u64().unwrap() > 100, "{t}");
        assert!(t["request"].as_str().unwrap().ends_with("; DATA"), "{t}");
        let text = t["response"]["text"].as_str().unwrap();
        let id = text
            .split("queued as ")
            .nth(1)
            .unwrap_or_else(|| panic!("no queue id in {t}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        queue_ids.push(id);
    }

    // Every message reached the recipient's Maildir, intact; each queue id
    // is the one Postfix logged for that message.
    let mut msgids: Vec<String> = out["msgids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    msgids.extend(curl_msgids.iter().cloned());
    let maildir = servers.maildir(RECIPIENT);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let messages = delivered(&maildir);
        let arrived = msgids
            .iter()
            .filter(|m| messages.iter().any(|b| contains(b, m)))
            .count();
        if arrived == msgids.len() {
            for m in &messages {
                assert!(contains(m, CANARY), "the message came through intact");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{arrived} of {} messages delivered\n{}",
            msgids.len(),
            servers.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let postfix_log =
        String::from_utf8_lossy(&std::fs::read(&servers.postfix_log).unwrap()).into_owned();
    for (id, msgid) in queue_ids.iter().zip(&msgids) {
        assert!(
            postfix_log
                .lines()
                .any(|l| l.contains(&format!("{id}: message-id={msgid}"))),
            "queue id {id} is not {msgid}'s in the Postfix log:\n{postfix_log}"
        );
    }
    // The journal-down session sent nothing to Postfix.
    let postfix_after = std::fs::read(&servers.postfix_log).unwrap_or_default();
    let during_down =
        String::from_utf8_lossy(&postfix_after[postfix_before.len().min(postfix_after.len())..])
            .into_owned();
    // (Deliveries of earlier messages may still log: only a new
    // transaction at smtpd would mean a MAIL FROM went through.)
    assert!(
        !during_down
            .lines()
            .any(|l| l.contains("postfix/smtpd") && l.contains(": client=")),
        "a MAIL FROM went through while the journal was down:\n{during_down}"
    );

    // Canaries: nowhere in the journal (raw bytes, decrypted traces) nor in
    // the proxy's log output.
    drop(store);
    let mut all = Vec::new();
    files(&data, &mut all);
    assert!(!all.is_empty());
    let logged = logs.0.lock().unwrap().clone();
    for canary in [CANARY, PASSWORD] {
        for (path, bytes) in &all {
            assert!(!contains(bytes, canary), "{canary} in {path}");
        }
        for t in &traces {
            assert!(!t.to_string().contains(canary), "{canary} in {t}");
        }
        assert!(!contains(&logged, canary), "{canary} in the proxy's logs");
    }
    eprintln!("proxy log:\n{}", String::from_utf8_lossy(&logged));
}
