//! The proxy's test bed itself, with no proxy yet: real Dovecot and Postfix
//! started by `support::mail` on loopback, driven directly by real clients.
//!
//! - Python `imaplib`/`smtplib` (`support/mail_client.py smoke`): IMAP
//!   STARTTLS and IMAPS logins trusting the test CA, a failed login, a send
//!   by submission (STARTTLS) and submissions (implicit TLS) to another test
//!   user, a refused recipient, delivery seen by IMAP, COPY to Trash, STORE
//!   \Deleted + EXPUNGE; then Dovecot's own `mail_log` lines are checked for
//!   the save, copy and expunge.
//! - `curl` (imaps:// and imap:// with STARTTLS) and `mbsync` (isync), the
//!   other clients the proxy tests use: detected, and run against the
//!   servers when present.
//!
//! Without the servers (or not as root) the test prints a `SKIP` line.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use support::mail::{MailLogEvent, MailServers, REFUSED_CODE, REFUSED_TEXT, which};

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `support/mail_client.py SCENARIO` against `cfg`; its JSON outcome.
fn mail_client(scenario: &str, cfg: &Value) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mail_client.py");
    let (ok, stdout, stderr) = run(Command::new("python3")
        .arg(&script)
        .arg(scenario)
        .arg(cfg.to_string()));
    assert!(ok, "mail_client.py {scenario} failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("mail_client.py output ({e}):\n{stdout}"))
}

#[test]
fn real_clients_against_real_mail_servers() {
    let Some(servers) = MailServers::start() else {
        return;
    };
    assert!(
        which("python3").is_some(),
        "python3 is required by the mail tests"
    );
    let martin = &servers.users[0];
    let durand = &servers.users[1];
    let cfg = json!({
        "host": servers.host,
        "imap": servers.imap,
        "imaps": servers.imaps,
        "submission": servers.submission,
        "submissions": servers.submissions,
        "ca": servers.ca_pem,
        "sender": [durand.address, durand.password],
        "recipient": [martin.address, martin.password],
        "refused": servers.refused,
    });
    let t0 = Instant::now();
    let out = mail_client("smoke", &cfg);
    eprintln!("python smoke scenario: {:.2?}\n{out:#}", t0.elapsed());

    assert!(out["imap_greeting"].as_str().unwrap().starts_with("* OK"));
    // Dovecot treats 127.0.0.1 → 127.0.0.1 as secured: no LOGINDISABLED
    // before STARTTLS on loopback (see support/mail.rs, `ssl = required`).
    assert!(out["imap_greeting"].as_str().unwrap().contains("STARTTLS"));
    assert_eq!(out["imap_starttls"][0], "OK");
    assert_eq!(out["imap_login"][0], "OK");
    assert_eq!(out["imap_select"][0], "OK");
    assert!(
        out["imap_bad_login"]
            .as_str()
            .unwrap()
            .contains("AUTHENTICATIONFAILED"),
        "{}",
        out["imap_bad_login"]
    );
    assert_eq!(out["imaps_login"][0], "OK");
    assert_eq!(out["imaps_cert_cn"], "localhost");
    assert_eq!(out["smtp_starttls"], 220);
    assert_eq!(out["smtp_login"], 235);
    assert_eq!(out["smtp_send_refused"], json!({}));
    assert_eq!(out["smtps_login"], 235);
    assert_eq!(out["smtps_send_refused"], json!({}));
    // Postfix's refusal comes back through Dovecot submission unchanged.
    assert_eq!(out["smtp_refused_rcpt"][0], REFUSED_CODE);
    assert!(
        out["smtp_refused_rcpt"][1]
            .as_str()
            .unwrap()
            .contains(REFUSED_TEXT),
        "{}",
        out["smtp_refused_rcpt"]
    );
    assert_eq!(out["smtp_unknown_rcpt"][0], 550);
    assert_eq!(out["fetch"], "OK");
    assert_eq!(out["fetch_header_has_msgid"], true);
    assert_eq!(out["copy"], "OK");
    assert_eq!(out["store_deleted"], "OK");
    assert_eq!(out["expunge"][0], "OK");
    assert_eq!(out["after_expunge"], "");

    // Dovecot's own account of it (the cross-check the proxy tests use).
    let mid1 = out["msgids"][0].as_str().unwrap();
    let mid2 = out["msgids"][1].as_str().unwrap();
    let uid1 = out["uids"][mid1].as_str().unwrap();
    let user = martin.address.as_str();
    let is = |event: &'static str, mid: &str| {
        let mid = mid.to_owned();
        move |e: &MailLogEvent| e.user == user && e.event == event && e.field("msgid") == Some(&mid)
    };
    servers.wait_mail_log("delivery of the first message", is("save", mid1));
    let events = servers.wait_mail_log("expunge", is("expunge", mid1));
    let find = |event: &'static str, mid: &str| {
        let pred = is(event, mid);
        events.iter().find(|e| pred(e)).cloned()
    };
    let save = find("save", mid1).unwrap();
    assert_eq!(
        (save.service.as_str(), save.field("box")),
        ("lmtp", Some("INBOX"))
    );
    let expunge = find("expunge", mid1).unwrap();
    assert_eq!(expunge.service, "imap");
    assert_eq!(expunge.field("box"), Some("INBOX"));
    assert_eq!(expunge.field("uid"), Some(uid1));
    let delete = find("delete", mid1).expect("STORE \\Deleted is logged as delete");
    assert_eq!(delete.field("uid"), Some(uid1));
    let copy = find("copy", mid2).expect("the copy to Trash");
    assert_eq!(copy.from.as_deref(), Some("INBOX"));
    assert_eq!(copy.field("box"), Some("Trash"));
    eprintln!("mail_log events: {events:#?}");
    // The password never reaches Dovecot's logs.
    let logs = std::fs::read_to_string(&servers.mail_log).unwrap()
        + &std::fs::read_to_string(&servers.dovecot_log).unwrap_or_default();
    assert!(!logs.contains(&martin.password) && !logs.contains(&durand.password));

    // curl: IMAP over implicit TLS and STARTTLS (a LIST).
    match which("curl") {
        None => eprintln!("SKIP: curl is not installed; `.ci/run` installs it"),
        Some(curl) => {
            let (_, version, _) = run(Command::new(&curl).arg("--version"));
            assert!(
                version.contains("imaps") && version.contains("smtps"),
                "{version}"
            );
            for url in [
                format!("imaps://localhost:{}/", servers.imaps),
                format!("imap://localhost:{}/", servers.imap),
            ] {
                let (ok, stdout, stderr) = run(Command::new(&curl)
                    .args(["-sS", "--ssl-reqd", "--max-time", "10", "--cacert"])
                    .arg(&servers.ca_pem)
                    .arg("-u")
                    .arg(format!("{}:{}", martin.address, martin.password))
                    .arg(&url));
                assert!(
                    ok && stdout.contains("INBOX"),
                    "curl {url}: {stdout}{stderr}"
                );
                assert!(stdout.contains("Trash"), "curl {url}: {stdout}");
            }
        }
    }

    // mbsync (isync): a full pull of dr.martin's mailboxes into a Maildir
    // (Host localhost: isync 1.4 checks DNS names only, not IP addresses).
    match which("mbsync") {
        None => eprintln!("SKIP: mbsync is not installed; `.ci/run` installs isync"),
        Some(mbsync) => {
            let local = servers.dir.join("mbsync");
            std::fs::create_dir_all(local.join("mail")).unwrap();
            let pass_file = local.join("pass");
            std::fs::write(&pass_file, &martin.password).unwrap();
            let rc = local.join("mbsyncrc");
            std::fs::write(
                &rc,
                format!(
                    "IMAPAccount test\nHost localhost\nPort {port}\nUser {user}\n\
                     PassCmd \"cat {pass}\"\nSSLType IMAPS\nCertificateFile {ca}\n\n\
                     IMAPStore remote\nAccount test\n\n\
                     MaildirStore local\nPath {local}/mail/\nInbox {local}/mail/INBOX\n\
                     SubFolders Verbatim\n\n\
                     Channel test\nFar :remote:\nNear :local:\nPatterns *\nCreate Near\n\
                     Sync Pull\nSyncState *\n",
                    port = servers.imaps,
                    user = martin.address,
                    pass = pass_file.display(),
                    ca = servers.ca_pem.display(),
                    local = local.display(),
                ),
            )
            .unwrap();
            let (ok, stdout, stderr) =
                run(Command::new(&mbsync).arg("-c").arg(&rc).arg("-a").arg("-V"));
            assert!(ok, "mbsync failed:\n{stdout}\n{stderr}");
            // The message left in INBOX and its copy in Trash arrived as
            // files (unseen: in new/).
            let count = |b: &str| {
                ["new", "cur"]
                    .iter()
                    .filter_map(|d| std::fs::read_dir(local.join("mail").join(b).join(d)).ok())
                    .map(|d| d.count())
                    .sum::<usize>()
            };
            assert_eq!(
                (count("INBOX"), count("Trash")),
                (1, 1),
                "mbsync pulled:\n{stdout}\n{stderr}"
            );
        }
    }
    eprintln!(
        "mail servers started in {:.2?}; whole test {:.2?}",
        servers.startup,
        t0.elapsed() + servers.startup
    );
}
