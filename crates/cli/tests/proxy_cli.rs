//! `registre proxy imap` as an operator runs it: the real binary in front of
//! real Dovecot (the proxy crate's mail-server harness), a Python imaplib
//! client through it, then the traces read back from the journal.

#[path = "../../proxy/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use registre_model::ClassName;
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};
use support::mail::{MailServers, free_port};

const CANARY: &str = "CANARY-proxy-cli-7d1f";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registre_proxy_imap_traces_a_session_through_real_dovecot() {
    let Some(servers) = MailServers::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = servers.issue(&["localhost", "127.0.0.1"]);
    let cert_file = dir.path().join("proxy.pem");
    let key_file = dir.path().join("proxy.key");
    std::fs::write(&cert_file, cert).expect("cert");
    std::fs::write(&key_file, key).expect("key");
    let data = dir.path().join("data");
    let port = free_port();
    let api_port = free_port();
    let mut proxy = Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(["proxy", "imap", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(&cert_file)
        .arg("--tls-key")
        .arg(&key_file)
        .args(["--upstream", &format!("{}:{}", servers.host, servers.imaps)])
        .arg("--upstream-ca")
        .arg(&servers.ca_pem)
        .args([
            "--upstream-name",
            "localhost",
            "--mail-domain",
            "hopital.test",
        ])
        .arg("--data")
        .arg(&data)
        .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
        .env("REGISTRE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start registre proxy");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

    let user = &servers.users[0];
    let script = format!(
        r#"
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
m = imaplib.IMAP4_SSL("localhost", int(sys.argv[2]), ssl_context=ctx)
try:
    m.login(sys.argv[3], "wrong-{CANARY}")
except imaplib.IMAP4.error:
    pass
m = imaplib.IMAP4_SSL("localhost", int(sys.argv[2]), ssl_context=ctx)
m.login(sys.argv[3], sys.argv[4])
m.append("INBOX", None, None, b"Subject: {CANARY}\r\n\r\nbody {CANARY}\r\n")
m.select("INBOX")
typ, data = m.uid("SEARCH", None, "ALL")
uid = data[0].split()[-1].decode()
m.uid("FETCH", uid, "(BODY.PEEK[])")
m.logout()
"#
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&servers.ca_pem)
        .arg(port.to_string())
        .arg(&user.address)
        .arg(&user.password)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "client through the proxy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The HTTP API from the proxy's process: the traces are there already.
    let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token");
    let api = Command::new("curl")
        .args([
            "-sf",
            "-H",
            &format!("Authorization: Bearer {}", token.trim()),
        ])
        .arg(format!(
            "http://127.0.0.1:{api_port}/v1/traces?class=mss&limit=100"
        ))
        .output()
        .expect("curl");
    let page: serde_json::Value = serde_json::from_slice(&api.stdout).expect("json from the API");
    assert_eq!(
        page["traces"].as_array().map(Vec::len),
        Some(5),
        "five traces through --api-listen: {page}"
    );

    // A graceful stop (SIGINT), then the journal is read back.
    let _ = Command::new("kill")
        .args(["-INT", &proxy.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if proxy.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the proxy did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut log = String::new();
    if let Some(mut e) = proxy.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut log);
    }
    assert!(!log.contains(CANARY), "the proxy logged a canary: {log}");

    let classes = [ClassName::MSS, ClassName::TECHNIQUE, ClassName::APPLICATIVE]
        .iter()
        .filter_map(|c| ClassName::new(c).ok())
        .collect();
    let store =
        tokio::task::block_in_place(|| EmbeddedStore::open(&data, EmbeddedOptions::new(classes)))
            .expect("open the journal");
    let page = store
        .search(Query {
            limit: 100,
            // Not the `recherche` trace of the API read above.
            class: ClassName::new(ClassName::MSS).ok(),
            ..Query::default()
        })
        .await
        .expect("search");
    let mut actions: Vec<(String, String)> = page
        .traces
        .iter()
        .map(|r| {
            (
                r.trace.action.as_str().to_owned(),
                r.trace
                    .response
                    .as_ref()
                    .map(|x| x.status.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    actions.reverse();
    assert_eq!(
        actions,
        [
            ("connexion".to_owned(), "NO".to_owned()),
            ("connexion".to_owned(), "OK".to_owned()),
            ("depot".to_owned(), "OK".to_owned()),
            ("consultation".to_owned(), "OK".to_owned()),
            ("deconnexion".to_owned(), "OK".to_owned()),
        ],
        "{:#?}",
        page.traces
    );
    for r in &page.traces {
        assert_eq!(r.trace.actor.id, user.address);
        assert_eq!(r.trace.class.as_str(), "mss");
        let json = serde_json::to_string(&r.trace).expect("json");
        assert!(!json.contains(CANARY), "a canary reached a trace: {json}");
    }
    // Nothing in clear on disk either.
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                assert!(
                    !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
                    "canary in {}",
                    p.display()
                );
            }
        }
    }
}
