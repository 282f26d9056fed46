//! Retention as a new user meets it, on the real binary with real time:
//! a class kept 3 seconds with 1-second segments, a legal hold, `registre
//! purge` (dry run, then for real), the purge trace, `registre verify`, no
//! personal value in clear on disk, a wrong master key refused, and a
//! master key rotation.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Server, free_port};
use serde_json::Value;

fn registre(server: Option<&Server>, args: &[&OsStr]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_registre"));
    c.args(args).env("REGISTRE_LOG", "warn");
    if let Some(s) = server {
        c.env("REGISTRE_SERVER", &s.url)
            .env("REGISTRE_TOKEN_FILE", s.data.join("admin-token"));
    }
    c.output().expect("run registre")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn trace(class: &str, tag: &str) -> String {
    format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"actor-{tag}"}},"action":"consultation","target":{{"mailbox":"box-{tag}@hopital.mssante.fr","patient":{{"id":"patient-{tag}"}}}},"request":"UID FETCH 7 (BODY.PEEK[]) req-{tag}","response":{{"status":"OK"}}}}"#
    )
}

async fn post(server: &Server, body: String) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/traces", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status().as_u16(),
        201,
        "{}",
        r.text().await.unwrap_or_default()
    );
}

async fn search(server: &Server, query: &str) -> Vec<Value> {
    let r = reqwest::Client::new()
        .get(format!("{}/v1/traces?limit=1000&{query}", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("search");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("json");
    v["traces"].as_array().cloned().unwrap_or_default()
}

fn actors(ts: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = ts
        .iter()
        .map(|t| t["actor"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

const CONFIG: &str = r#"
[retention]
purge_interval = "off"

[classes.mss]
retention = "3 seconds"
segment_period = "1 second"

[classes.applicative]
retention = "20 years"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn short_retention_purge_with_a_hold_verify_and_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("registre.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let port = free_port();
    let server = Server::start_with(&data, port, &[os("--config"), config.as_os_str()]);

    // Old traces: mss (3 s retention) and applicative (20 years).
    for i in 0..4 {
        post(
            &server,
            format!(
                "[{},{}]",
                trace("mss", &format!("old{i}")),
                trace("applicative", &format!("old{i}"))
            ),
        )
        .await;
    }
    let out = ok(&registre(
        Some(&server),
        &[
            os("hold"),
            os("add"),
            os("--reason"),
            os("réquisition 2026-118"),
            os("--actor"),
            os("actor-old2"),
        ],
    ));
    let hold_id = out.lines().next().expect("hold id").trim().to_owned();
    assert!(hold_id.starts_with("h-"), "{out}");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    post(&server, trace("mss", "fresh")).await;

    // Dry run: says what would go, changes nothing.
    let out = ok(&registre(Some(&server), &[os("purge"), os("--dry-run")]));
    assert!(
        out.contains("dry run: 3 traces would be destroyed, 1 kept"),
        "{out}"
    );
    assert_eq!(search(&server, "class=mss").await.len(), 5);

    let out = ok(&registre(Some(&server), &[os("purge")]));
    assert!(
        out.contains("purged 3 traces past retention (1 kept"),
        "{out}"
    );
    assert_eq!(
        actors(&search(&server, "class=mss").await),
        ["actor-fresh", "actor-old2"]
    );
    assert_eq!(
        search(&server, "class=applicative&action=consultation")
            .await
            .len(),
        4
    );
    // The purge is in the journal, class technique, before anything went.
    let purges = search(&server, "class=technique&action=purge").await;
    assert_eq!(purges.len(), 1, "{purges:?}");
    let text = purges[0]["response"]["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("log mss") && text.contains("3 traces past retention"),
        "{text}"
    );

    // Released, the held trace goes at the next purge.
    let out = ok(&registre(Some(&server), &[os("hold"), os("list")]));
    assert!(out.contains(&hold_id) && out.contains("active"), "{out}");
    ok(&registre(
        Some(&server),
        &[os("hold"), os("release"), os(&hold_id)],
    ));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let out = ok(&registre(Some(&server), &[os("purge")]));
    assert!(out.contains("purged 2 traces"), "{out}");
    assert!(search(&server, "class=mss").await.is_empty());
    // Hold changes are traced too.
    let politique = search(&server, "class=applicative&action=politique").await;
    assert_eq!(politique.len(), 2, "{politique:?}");
    drop(server);

    // Integrity still proven; nothing personal in clear on disk.
    ok(&registre(
        None,
        &[os("verify"), os("--data"), data.as_os_str(), os("-q")],
    ));
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).expect("read");
        for c in [
            "actor-old",
            "box-old",
            "patient-old",
            "req-old",
            "actor-fresh",
            "UID FETCH",
        ] {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "{c} in clear in {}",
                f.display()
            );
        }
    }

    // A wrong master key: refused at start, nothing touched.
    let wrong = dir.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).expect("key");
    let before: Vec<(PathBuf, Vec<u8>)> = files_under(&data)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    let out = registre(
        None,
        &[
            os("serve"),
            os("--data"),
            data.as_os_str(),
            os("--listen"),
            os(&format!("127.0.0.1:{}", free_port())),
            os("--master-key-file"),
            wrong.as_os_str(),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not the key of this data directory"),
        "{err}"
    );
    let after: Vec<(PathBuf, Vec<u8>)> = files_under(&data)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    assert_eq!(before, after, "a refused start touched the data directory");

    // Rotation of the master key, offline; the journal reopens with it.
    let old = std::fs::read(data.join("keys/master.key")).expect("old key");
    let out = ok(&registre(
        None,
        &[
            os("keys"),
            os("rotate-master"),
            os("--data"),
            data.as_os_str(),
        ],
    ));
    assert!(out.contains("master key rotated"), "{out}");
    assert_ne!(
        std::fs::read(data.join("keys/master.key")).expect("new key"),
        old
    );
    let server = Server::start_with(&data, free_port(), &[os("--config"), config.as_os_str()]);
    assert_eq!(
        search(&server, "class=applicative&action=consultation")
            .await
            .len(),
        4
    );
    drop(server);
    ok(&registre(
        None,
        &[os("verify"), os("--data"), data.as_os_str(), os("-q")],
    ));
}
