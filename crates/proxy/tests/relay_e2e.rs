//! The IMAP relay end to end: real Dovecot (support::mail), the embedded
//! journal in a temporary directory, the relay on a free port with a
//! certificate from the harness CA, and Python's imaplib through it
//! (`relay_e2e.py`). Checks every trace, cross-checks the expunge and the
//! move against Dovecot's `mail_log`, and searches the journal's data
//! directory, its decrypted traces and the proxy's own log output for the
//! canaries (message subject/body, password).
//!
//! Without the servers (or not as root) the test prints a `SKIP` line.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use registre_model::ClassName;
use registre_proxy::imap::Limits;
use registre_proxy::imap_trace::TracerConfig;
use registre_proxy::relay::{self, RelayConfig};
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use support::canary::{Capture, contains, files};
use support::mail::{MailLogEvent, MailServers, free_port};

const USER: &str = "dr.martin@hopital.test";
const PASSWORD: &str = "pw-canary-5b1e0c9d";
const CANARY: &str = "canary-7d41f2a8";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn imap_through_the_relay_is_traced_without_content() {
    let Some(servers) = tokio::task::block_in_place(|| {
        MailServers::start_with_users(&[(USER, PASSWORD), ("dr.durand@hopital.test", "pw-d")])
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
    let config = Arc::new(RelayConfig {
        acceptor: Arc::new(server_tls).into(),
        listen_tls: registre_proxy::tls::ListenTls::Implicit,
        upstream_tls: registre_proxy::tls::UpstreamTls::Implicit,
        upstream: format!("{}:{}", servers.host, servers.imaps),
        upstream_name: ServerName::try_from("localhost").unwrap(),
        connector: relay::upstream_client_config(&servers.ca_pem)
            .unwrap()
            .into(),
        tracer: Arc::new(TracerConfig {
            mail_domain: Some("hopital.test".to_owned()),
            ..TracerConfig::default()
        }),
        limits: Limits::default(),
    });
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay::serve(
        listener,
        config,
        Arc::new(store.clone()),
        async {
            let _ = stopped.await;
        },
    ));

    let cfg = json!({
        "host": "localhost",
        "direct": servers.imaps,
        "proxy": port,
        "ca": servers.ca_pem,
        "user": USER,
        "password": PASSWORD,
        "canary": CANARY,
        "run": std::process::id(),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/relay_e2e.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(cfg.to_string())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "relay_e2e.py failed:\n{stdout}\n{stderr}\n{}",
        String::from_utf8_lossy(&logs.0.lock().unwrap())
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("client: {out:#}");
    let _ = stop.send(());
    relay.await.unwrap().unwrap();

    // The client saw the server's answers through the proxy.
    for step in [
        "login", "select", "fetch", "store", "expunge", "move", "append",
    ] {
        assert_eq!(out[step], "OK", "{step}: {out}");
    }
    assert_eq!(
        out["fetched_canary"], true,
        "the message came through intact"
    );
    assert!(
        out["bad_login"]
            .as_str()
            .unwrap()
            .contains("AUTHENTICATIONFAILED"),
        "{out}"
    );
    let capabilities: Vec<&str> = out["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(capabilities.contains(&"IMAP4REV1"), "{capabilities:?}");
    assert!(!capabilities.iter().any(|c| c.contains("COMPRESS")));
    let uid1 = out["uids"][0].as_str().unwrap();
    let uid2 = out["uids"][1].as_str().unwrap();

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
    let summary: Vec<Value> = traces
        .iter()
        .map(|t| {
            json!([
                t["action"],
                t["actor"]["id"],
                t["target"]["folder"],
                t["target"]["destination"],
                t["target"]["uids"],
                t["response"]["status"],
                t["outcome"],
            ])
        })
        .collect();
    let n = Value::Null;
    assert_eq!(
        summary,
        vec![
            json!(["connexion", USER, n, n, n, "NO", "failure"]),
            json!(["connexion", USER, n, n, n, "OK", "success"]),
            json!(["consultation", USER, "INBOX", n, uid1, "OK", "success"]),
            json!(["suppression", USER, "INBOX", n, uid1, "OK", "success"]),
            json!(["suppression", USER, "INBOX", n, uid1, "OK", "success"]),
            json!(["deplacement", USER, "INBOX", "Trash", uid2, "OK", "success"]),
            json!(["depot", USER, "Sent", n, out["append_uid"], "OK", "success"]),
            json!(["deconnexion", USER, n, n, n, "OK", "success"]),
        ],
        "traces: {traces:#?}"
    );
    for t in &traces {
        assert_eq!(t["class"], "mss");
        assert_eq!(t["target"]["mailbox"], USER, "{t}");
        assert!(t["occurred_at"].as_str().unwrap().len() >= 20, "{t}");
        assert!(
            t["source"]["ip"].as_str().unwrap().starts_with("127."),
            "{t}"
        );
    }

    // Dovecot's own account of the expunge and the move.
    let msgid = |n: u32| format!("<m{n}-{}@hopital.test>", std::process::id());
    let (mid1, mid2) = (msgid(1), msgid(2));
    let events = servers.wait_mail_log("expunge of the first message", |e: &MailLogEvent| {
        e.user == USER && e.event == "expunge" && e.field("msgid") == Some(&mid1)
    });
    let expunge = events
        .iter()
        .find(|e| e.event == "expunge" && e.field("msgid") == Some(&mid1))
        .unwrap();
    assert_eq!(
        (expunge.field("box"), expunge.field("uid")),
        (Some("INBOX"), Some(uid1))
    );
    let events = servers.wait_mail_log("the move to Trash", |e: &MailLogEvent| {
        e.user == USER && e.field("box") == Some("Trash") && e.field("msgid") == Some(&mid2)
    });
    assert!(
        events.iter().any(|e| e.event == "expunge"
            && e.field("msgid") == Some(&mid2)
            && e.field("uid") == Some(uid2)),
        "the move expunged uid {uid2} from INBOX: {events:#?}"
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
