//! The MSSanté proxy as a new user deploys it (issue 6): real Dovecot and
//! Postfix (the proxy crate's harness), `registre serve` as the journal,
//! `registre proxy --config registre.toml` with four listeners (IMAP
//! implicit and STARTTLS, submission STARTTLS and implicit) sending its
//! traces over HTTP with a producer key and a spool. Real clients through
//! it: Python imaplib and smtplib (`proxy_scenarios.py`), curl (imaps,
//! smtps) and mbsync. Then, trace by trace:
//!
//! - every scenario (failed login, log in, read, mark read, move to Trash,
//!   delete + expunge, APPEND to Sent, IDLE, send, failed AUTH, send to a
//!   refused recipient, log out) produces exactly its traces with the
//!   author, the local time, the request and the server's answer;
//! - deletions and moves are cross-checked with Dovecot's `mail_log`;
//! - a journal outage is absorbed by the spool and flushed in order;
//! - hostile input (garbage, a 100 MB literal, a literal over the bound, a
//!   literal never sent, a vanishing client, STARTTLS injection, LOGIN in
//!   clear) leaves the proxy serving;
//! - the canaries (subject, body, attachment, password) are nowhere in the
//!   journal's data directory, the spool, or either process's logs.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../proxy/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::canary::contains;
use support::mail::{MailServers, REFUSED_RECIPIENT, free_port};

const CANARY: &str = "CANARY-scenario-4be1d07a";
const PASSWORD: &str = "pw-CANARY-9f3c2e71";
const MARTIN: &str = "dr.martin@hopital.test";
const DURAND: &str = "dr.durand@hopital.test";
const SECRETARIAT: &str = "secretariat@hopital.test";
const HOSTILE: &str = "hostile@hopital.test";

fn registre(args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(args)
        .env("REGISTRE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start registre")
}

fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn python(phase: &str, cfg: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/proxy_scenarios.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(phase)
        .arg(cfg.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "phase {phase} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "phase {phase}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every mss trace of `actor`, oldest first, read through the API.
fn traces(api: &str, token: &str, actor: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!(
            "{api}/v1/traces?class=mss&actor={actor}&limit=1000"
        ))
        .output()
        .expect("curl");
    assert!(out.status.success(), "search failed");
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut list = page["traces"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

fn session(port: &Value) -> String {
    format!("127.0.0.1:{}", port.as_u64().expect("a port"))
}

/// (action, response status) of the traces of one connection.
fn of_session(all: &[Value], session: &str) -> Vec<(String, String)> {
    all.iter()
        .filter(|t| t["source"]["session"] == session)
        .map(|t| {
            (
                t["action"].as_str().unwrap_or_default().to_owned(),
                t["response"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
        .collect()
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_new_user_puts_the_proxy_in_front_of_real_mail_servers() {
    let Some(servers) = MailServers::start_with_users(&[
        (MARTIN, PASSWORD),
        (DURAND, "pw-durand"),
        (SECRETARIAT, "pw-secretariat"),
        (HOSTILE, "pw-hostile"),
    ]) else {
        return;
    };
    for tool in ["curl", "mbsync"] {
        if support::mail::which(tool).is_none() {
            eprintln!(
                "SKIP proxy scenarios: `{tool}` is not installed (apt-get install curl isync)"
            );
            return;
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();

    // The journal.
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let data = dir.join("journal");
    let serve_log = dir.join("serve.log");
    let serve_args = [
        "serve",
        "--data",
        data.to_str().expect("utf-8"),
        "--listen",
        &format!("127.0.0.1:{api_port}"),
    ];
    let mut serve = registre(&serve_args, &serve_log);
    wait_port(api_port, "registre serve");
    let admin = std::fs::read_to_string(data.join("admin-token"))
        .expect("admin token")
        .trim()
        .to_owned();
    let key = Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(["keys", "create", "--server", &api, "--token-file"])
        .arg(data.join("admin-token"))
        .args([
            "--role",
            "producteur",
            "--name",
            "mssante-proxy",
            "--trusted-proxy",
        ])
        .output()
        .expect("keys create");
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let secret = String::from_utf8_lossy(&key.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("rgk_") || w.len() >= 40)
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no key in {}", String::from_utf8_lossy(&key.stdout)));
    let token_file = dir.join("producer.token");
    std::fs::write(&token_file, format!("{secret}\n")).expect("token");

    // The proxy, configured by file.
    let (cert, key) = servers.issue(&["localhost", "127.0.0.1"]);
    let (cert_file, key_file) = (dir.join("proxy.pem"), dir.join("proxy.key"));
    std::fs::write(&cert_file, cert).expect("cert");
    std::fs::write(&key_file, key).expect("key");
    let ports: BTreeMap<&str, u16> = [
        "imap_implicit",
        "imap_starttls",
        "smtp_starttls",
        "smtp_implicit",
    ]
    .into_iter()
    .map(|n| (n, free_port()))
    .collect();
    let spool = dir.join("spool");
    let listener = |port: u16, listen_tls: &str, upstream: u16, upstream_tls: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\nlisten_tls = \"{listen_tls}\"\n\
             tls_cert = {cert:?}\ntls_key = {key:?}\n\
             upstream = \"localhost:{upstream}\"\nupstream_tls = \"{upstream_tls}\"\n\
             upstream_ca = {ca:?}\n",
            cert = cert_file,
            key = key_file,
            ca = servers.ca_pem,
        )
    };
    let config = format!(
        "# registre proxy, as in docs/fr/proxy-mssante.md\n\
         [proxy]\njournal = \"{api}\"\ntoken_file = {token_file:?}\nspool = {spool:?}\n\
         spool_max_mib = 16\nmail_domain = \"hopital.test\"\n\n\
         [[proxy.imap]]\n{}\n[[proxy.imap]]\n{}\n[[proxy.smtp]]\n{}\n[[proxy.smtp]]\n{}",
        listener(
            ports["imap_implicit"],
            "implicit",
            servers.imaps,
            "implicit"
        ),
        listener(ports["imap_starttls"], "starttls", servers.imap, "starttls"),
        listener(
            ports["smtp_starttls"],
            "starttls",
            servers.submission,
            "starttls"
        ),
        listener(
            ports["smtp_implicit"],
            "implicit",
            servers.submissions,
            "implicit"
        ),
    );
    let config_file = dir.join("registre.toml");
    std::fs::write(&config_file, config).expect("config");
    let proxy_log = dir.join("proxy.log");
    let mut proxy = registre(
        &["proxy", "--config", config_file.to_str().expect("utf-8")],
        &proxy_log,
    );
    for port in ports.values() {
        wait_port(*port, "registre proxy");
    }

    let cfg = json!({
        "ca": servers.ca_pem,
        "canary": CANARY,
        "user": MARTIN,
        "password": PASSWORD,
        "refused": REFUSED_RECIPIENT,
        "hostile_user": HOSTILE,
        "hostile_password": "pw-hostile",
        "imap_implicit": ports["imap_implicit"],
        "imap_starttls": ports["imap_starttls"],
        "smtp_starttls": ports["smtp_starttls"],
        "smtp_implicit": ports["smtp_implicit"],
    });

    // --- submission: failed AUTH, three sends, a refused recipient -------
    let smtp = python("smtp", &cfg);
    assert_eq!(smtp["bad_auth"], 535, "{smtp}");
    assert_eq!(smtp["refused"], 550, "{smtp}");
    // Delivered (Postfix → LMTP) before the IMAP phase reads them.
    let inbox = servers.maildir(MARTIN).join("new");
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_in(&inbox) < 3 {
        assert!(
            Instant::now() < deadline,
            "the three messages were not delivered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // --- IMAP: the session through the STARTTLS listener, IDLE -----------
    let imap = python("imap", &cfg);
    assert!(
        imap["pre_tls_caps"]
            .as_array()
            .expect("caps")
            .iter()
            .any(|c| c == "STARTTLS"),
        "{imap}"
    );
    let caps: Vec<&str> = imap["caps"]
        .as_array()
        .expect("caps")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!caps.iter().any(|c| c.contains("COMPRESS")), "{caps:?}");
    assert!(!caps.contains(&"STARTTLS"), "{caps:?}");
    for step in ["login", "mark", "move", "delete", "expunge", "append"] {
        assert_eq!(imap[step], "OK", "{step}: {imap}");
    }
    assert_eq!(imap["logout"], "BYE", "{imap}");
    assert_eq!(imap["idle_heard_exists"], true);
    assert_eq!(imap["idle_done"], "OK");
    assert!(imap["fetched_bytes"].as_u64().expect("bytes") > 500);

    // --- curl (imaps fetch, smtps send) and mbsync -----------------------
    let curl_fetch = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&servers.ca_pem)
        .arg(format!(
            "imaps://localhost:{}/INBOX;UID={}",
            ports["imap_implicit"],
            imap["uids"][3].as_str().unwrap_or("4")
        ))
        .args(["-u", &format!("{MARTIN}:{PASSWORD}")])
        .output()
        .expect("curl imaps");
    assert!(
        curl_fetch.status.success() && contains(&curl_fetch.stdout, CANARY),
        "curl imaps: {}",
        String::from_utf8_lossy(&curl_fetch.stderr)
    );
    let upload = dir.join("curl-message.eml");
    std::fs::write(
        &upload,
        format!(
            "From: {DURAND}\r\nTo: {MARTIN}\r\nSubject: curl {CANARY}\r\n\r\nbody {CANARY}\r\n"
        ),
    )
    .expect("message");
    let curl_send = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&servers.ca_pem)
        .arg(format!("smtps://localhost:{}", ports["smtp_implicit"]))
        .args([
            "--mail-from",
            DURAND,
            "--mail-rcpt",
            MARTIN,
            "--upload-file",
        ])
        .arg(&upload)
        .args(["-u", &format!("{DURAND}:pw-durand")])
        .output()
        .expect("curl smtps");
    assert!(
        curl_send.status.success(),
        "curl smtps: {}",
        String::from_utf8_lossy(&curl_send.stderr)
    );
    // mbsync pulls the secretariat's mailbox (one message sent to it first).
    let to_secretariat = dir.join("to-secretariat.eml");
    std::fs::write(
        &to_secretariat,
        format!("From: {DURAND}\r\nTo: {SECRETARIAT}\r\nSubject: {CANARY}\r\n\r\n{CANARY}\r\n"),
    )
    .expect("message");
    let sent = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&servers.ca_pem)
        .arg(format!("smtps://localhost:{}", ports["smtp_implicit"]))
        .args([
            "--mail-from",
            DURAND,
            "--mail-rcpt",
            SECRETARIAT,
            "--upload-file",
        ])
        .arg(&to_secretariat)
        .args(["-u", &format!("{DURAND}:pw-durand")])
        .status()
        .expect("curl");
    assert!(sent.success());
    let secretariat_new = servers.maildir(SECRETARIAT).join("new");
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_in(&secretariat_new) < 1 {
        assert!(
            Instant::now() < deadline,
            "not delivered to the secretariat"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let local = dir.join("mbsync-maildir");
    std::fs::create_dir_all(&local).expect("maildir");
    let mbsyncrc = dir.join("mbsyncrc");
    std::fs::write(
        &mbsyncrc,
        format!(
            "IMAPAccount proxy\nHost localhost\nPort {port}\nUser {SECRETARIAT}\nPass pw-secretariat\n\
             SSLType IMAPS\nCertificateFile {ca}\n\n\
             IMAPStore remote\nAccount proxy\n\n\
             MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n\
             Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nSync Pull\nCreate Near\nSyncState *\n",
            port = ports["imap_implicit"],
            ca = servers.ca_pem.display(),
            local = local.display(),
        ),
    )
    .expect("mbsyncrc");
    let mbsync = Command::new("mbsync")
        .arg("-c")
        .arg(&mbsyncrc)
        .arg("-a")
        .output()
        .expect("mbsync");
    assert!(
        mbsync.status.success(),
        "mbsync: {}{}",
        String::from_utf8_lossy(&mbsync.stdout),
        String::from_utf8_lossy(&mbsync.stderr)
    );
    let synced =
        files_in(&local.join("INBOX").join("new")) + files_in(&local.join("INBOX").join("cur"));
    assert_eq!(synced, 1, "mbsync fetched the message");

    // --- hostile input ----------------------------------------------------
    let hostile = python("hostile", &cfg);
    assert_eq!(hostile["garbage"], true, "{hostile}");
    assert_eq!(hostile["big_append"], "OK", "{hostile}");
    assert_eq!(hostile["over_bound"], "closed", "{hostile}");
    assert_eq!(hostile["injected_answered"], false, "{hostile}");
    assert!(
        hostile["plaintext_login"]
            .as_str()
            .is_some_and(|s| s.contains("P1 NO [PRIVACYREQUIRED]")),
        "{hostile}"
    );
    assert_eq!(hostile["still_serving"], true);

    // --- a journal outage: the spool absorbs it, flushed in order --------
    stop(&mut serve);
    let outage = python("outage", &cfg);
    assert_eq!(outage["fetch"], "OK", "{outage}");
    let mut spooled = Vec::new();
    files(&spool, &mut spooled);
    assert!(
        spooled
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "spool")),
        "nothing spooled: {spooled:?}"
    );
    let mut serve = registre(&serve_args, &dir.join("serve-2.log"));
    wait_port(api_port, "registre serve (again)");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut left = Vec::new();
        files(&spool, &mut left);
        if !left
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "spool"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the spool was not flushed: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // --- the traces, session by session -----------------------------------
    // The last submission's deconnexion may still be in flight.
    std::thread::sleep(Duration::from_millis(500));
    let martin = traces(&api, &admin, MARTIN);
    // smtplib tries PLAIN, then LOGIN: two refused attempts, two traces.
    let refused: Vec<&str> = martin
        .iter()
        .filter(|t| t["source"]["session"] == session(&smtp["bad_auth_port"]))
        .map(|t| {
            assert_eq!(t["action"], "connexion");
            assert_eq!(t["outcome"], "failure");
            assert_eq!(t["response"]["status"], "535");
            t["request"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(refused, ["AUTH PLAIN", "AUTH LOGIN"], "failed AUTH");
    let sends = of_session(&martin, &session(&smtp["send_port"]));
    assert_eq!(
        sends,
        pairs(&[
            ("connexion", "235"),
            ("envoi", "250"),
            ("envoi", "250"),
            ("envoi", "250"),
            ("envoi", "550"),
            ("deconnexion", "221"),
        ]),
        "sends: {martin:#?}"
    );
    // Each accepted send names its queue id, the one the MTA logged.
    let mta_log = servers.logs();
    for t in martin
        .iter()
        .filter(|t| t["action"] == "envoi" && t["response"]["status"] == "250")
    {
        let text = t["response"]["text"].as_str().unwrap_or_default();
        let id = text
            .split_once("queued as ")
            .map(|(_, id)| id.trim())
            .unwrap_or_else(|| panic!("no queue id in {t}"));
        assert!(
            mta_log.contains(&format!("{id}: ")),
            "queue id {id} not in the MTA log"
        );
    }
    let refused = martin
        .iter()
        .find(|t| t["action"] == "envoi" && t["response"]["status"] == "550")
        .expect("the refused send");
    assert_eq!(refused["outcome"], "failure");
    assert!(
        refused["request"]
            .as_str()
            .is_some_and(|r| r.contains(REFUSED_RECIPIENT))
    );
    assert_eq!(
        of_session(&martin, &session(&imap["bad_login_port"])),
        pairs(&[("connexion", "NO")]),
        "failed login"
    );
    assert_eq!(
        of_session(&martin, &session(&imap["session_port"])),
        pairs(&[
            ("connexion", "OK"),
            ("consultation", "OK"),
            ("marquage", "OK"),
            ("deplacement", "OK"),
            ("suppression", "OK"),
            ("suppression", "OK"),
            ("depot", "OK"),
            ("deconnexion", "OK"),
        ]),
        "the IMAP session (IDLE itself is no trace): {martin:#?}"
    );
    assert_eq!(
        of_session(&martin, &session(&imap["depositor_port"])),
        pairs(&[("connexion", "OK"), ("depot", "OK"), ("deconnexion", "OK")]),
    );
    assert_eq!(
        of_session(&martin, &session(&outage["port"])),
        pairs(&[
            ("connexion", "OK"),
            ("consultation", "OK"),
            ("deconnexion", "OK")
        ]),
        "traces spooled during the outage, flushed in order"
    );
    // Five fields on every trace.
    for t in &martin {
        assert_eq!(t["actor"]["id"], MARTIN, "{t}");
        assert!(
            t["occurred_at"].as_str().is_some_and(|s| s.len() >= 20),
            "{t}"
        );
        assert!(t["action"].is_string(), "{t}");
        assert!(t["request"].is_string(), "{t}");
        assert!(t["response"]["status"].is_string(), "{t}");
    }
    // The UIDs of the move and the deletion are Dovecot's.
    let events = servers.wait_mail_log("the expunge", |e| e.event == "expunge");
    let expunged: Vec<&str> = events
        .iter()
        .filter(|e| e.user == MARTIN && e.event == "expunge" && e.field("box") == Some("INBOX"))
        .filter_map(|e| e.field("uid"))
        .collect();
    for uid in [&imap["moved"], &imap["deleted"]] {
        let uid = uid.as_str().expect("uid");
        assert!(
            expunged.contains(&uid),
            "uid {uid} not expunged per mail_log: {events:#?}"
        );
    }
    let session_traces: Vec<&Value> = martin
        .iter()
        .filter(|t| t["source"]["session"] == session(&imap["session_port"]))
        .collect();
    let text = |action: &str| {
        session_traces
            .iter()
            .filter(|t| t["action"] == action)
            .map(|t| t.to_string())
            .collect::<String>()
    };
    assert!(text("deplacement").contains(imap["moved"].as_str().expect("uid")));
    assert!(text("suppression").contains(imap["deleted"].as_str().expect("uid")));

    let durand = traces(&api, &admin, DURAND);
    let actions: Vec<&str> = durand.iter().filter_map(|t| t["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "connexion",
            "envoi",
            "deconnexion",
            "connexion",
            "envoi",
            "deconnexion"
        ],
        "curl smtps twice: {durand:#?}"
    );
    let secretariat = traces(&api, &admin, SECRETARIAT);
    let actions: Vec<&str> = secretariat
        .iter()
        .filter_map(|t| t["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["connexion", "consultation", "deconnexion"],
        "mbsync: {secretariat:#?}"
    );
    let curl_session: Vec<&str> = martin
        .iter()
        .filter(|t| {
            t["request"].as_str().is_some_and(|r| {
                r.contains(&format!("UID={}", imap["uids"][3].as_str().unwrap_or("4")))
                    || r.contains("FETCH")
            })
        })
        .filter_map(|t| t["action"].as_str())
        .collect();
    assert!(
        curl_session.contains(&"consultation"),
        "curl imaps fetch traced"
    );
    let hostile_traces = traces(&api, &admin, HOSTILE);
    assert!(
        hostile_traces
            .iter()
            .any(|t| t["action"] == "depot" && t.to_string().contains("100000000")),
        "the 100 MB APPEND is a depot of its size: {hostile_traces:#?}"
    );
    // The injected LOGIN never reached the server: no session traced it.
    assert!(
        of_session(&hostile_traces, &session(&hostile["injection_port"]))
            .iter()
            .all(|(a, _)| a != "connexion"),
        "{hostile_traces:#?}"
    );

    // --- canaries ----------------------------------------------------------
    stop(&mut proxy);
    stop(&mut serve);
    let mut all = Vec::new();
    files(&data, &mut all);
    files(&spool, &mut all);
    all.extend([
        proxy_log.clone(),
        serve_log.clone(),
        dir.join("serve-2.log"),
    ]);
    assert!(all.len() > 10);
    for path in &all {
        let bytes = std::fs::read(path).unwrap_or_default();
        for needle in [
            CANARY,
            PASSWORD,
            "pw-durand",
            "pw-secretariat",
            "pw-hostile",
        ] {
            assert!(!contains(&bytes, needle), "{needle} in {}", path.display());
        }
    }
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(
        log.contains("imap_starttls") || log.contains("IMAP on"),
        "{log}"
    );
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Without a spool, a journal outage refuses traceable commands before they
/// reach the mail server (IMAP `NO [UNAVAILABLE]`, SMTP `451`/`454`), and
/// the proxy serves again as soon as the journal answers.
#[test]
fn without_a_spool_the_proxy_fails_closed() {
    let Some(servers) = MailServers::start_with_users(&[(MARTIN, PASSWORD)]) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let api_port = free_port();
    let api = format!("http://127.0.0.1:{api_port}");
    let data = dir.join("journal");
    let serve_args = [
        "serve",
        "--data",
        data.to_str().expect("utf-8"),
        "--listen",
        &format!("127.0.0.1:{api_port}"),
    ];
    let mut serve = registre(&serve_args, &dir.join("serve.log"));
    wait_port(api_port, "registre serve");
    // The admin token is a trusted proxy too (the bootstrap key).
    let token_file = data.join("admin-token");
    let (cert, key) = servers.issue(&["localhost", "127.0.0.1"]);
    let (cert_file, key_file) = (dir.join("proxy.pem"), dir.join("proxy.key"));
    std::fs::write(&cert_file, cert).expect("cert");
    std::fs::write(&key_file, key).expect("key");
    let (imap_port, smtp_port) = (free_port(), free_port());
    let config = format!(
        "[proxy]\njournal = \"{api}\"\ntoken_file = {token_file:?}\n\n\
         [[proxy.imap]]\nlisten = \"127.0.0.1:{imap_port}\"\ntls_cert = {cert_file:?}\n\
         tls_key = {key_file:?}\nupstream = \"localhost:{}\"\nupstream_ca = {:?}\n\n\
         [[proxy.smtp]]\nlisten = \"127.0.0.1:{smtp_port}\"\ntls_cert = {cert_file:?}\n\
         tls_key = {key_file:?}\nupstream = \"localhost:{}\"\nupstream_ca = {:?}\n",
        servers.imaps, servers.ca_pem, servers.submissions, servers.ca_pem,
    );
    let config_file = dir.join("registre.toml");
    std::fs::write(&config_file, config).expect("config");
    let proxy_log = dir.join("proxy.log");
    let mut proxy = registre(
        &["proxy", "--config", config_file.to_str().expect("utf-8")],
        &proxy_log,
    );
    wait_port(imap_port, "registre proxy");
    wait_port(smtp_port, "registre proxy");

    let script = r#"
import imaplib, smtplib, ssl, sys, json
ca, imap_port, smtp_port, user, pw = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
out = {}
m = imaplib.IMAP4_SSL("localhost", int(imap_port), ssl_context=ctx)
try:
    m.login(user, pw)
    out["login"] = "OK"
except imaplib.IMAP4.error as e:
    out["login"] = str(e)
m.logout()
s = smtplib.SMTP_SSL("localhost", int(smtp_port), context=ctx, timeout=30)
try:
    s.login(user, pw)
    out["auth"] = 235
except smtplib.SMTPException as e:
    out["auth"] = getattr(e, "smtp_code", str(e))
s.quit()
print(json.dumps(out))
"#;
    let run = || -> Value {
        let out = Command::new("python3")
            .args(["-c", script])
            .arg(&servers.ca_pem)
            .args([imap_port.to_string(), smtp_port.to_string()])
            .args([MARTIN, PASSWORD])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };

    // Up: works, and the proxy learns the journal answers.
    let up = run();
    assert_eq!(up["login"], "OK", "{up}");
    assert_eq!(up["auth"], 235, "{up}");
    // Down: the first failure marks the journal down (that run's LOGIN was
    // forwarded, its answer refused to the client); from then on nothing
    // traceable reaches the server.
    stop(&mut serve);
    let first = run();
    assert_ne!(first["login"], "OK", "{first}");
    std::thread::sleep(Duration::from_millis(300));
    let logins_before = servers.logs().matches("Login: user=<").count();
    let down = run();
    assert!(
        down["login"]
            .as_str()
            .is_some_and(|s| s.contains("[UNAVAILABLE]") && s.contains("not performed")),
        "{down}"
    );
    assert_eq!(down["auth"], 454, "{down}");
    std::thread::sleep(Duration::from_millis(300));
    let logins_during = servers.logs().matches("Login: user=<").count();
    assert_eq!(
        logins_during, logins_before,
        "a login reached the mail server while the journal was down"
    );

    // Back: served again once the probe sees the journal.
    let mut serve = registre(&serve_args, &dir.join("serve-2.log"));
    wait_port(api_port, "registre serve (again)");
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        let r = run();
        if r["login"] == "OK" || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(again["login"], "OK", "{again}");
    assert_eq!(again["auth"], 235, "{again}");
    stop(&mut proxy);
    stop(&mut serve);
    let log = std::fs::read(&proxy_log).unwrap_or_default();
    assert!(!contains(&log, PASSWORD), "password in the proxy's log");
}
