//! Several `registre serve` nodes over one PostgreSQL, on the real binary:
//! concurrent ingest through two nodes, a node `SIGKILL`ed and restarted,
//! PostgreSQL itself stopped and restarted under load (a private cluster,
//! never the shared one), and retention (purge by partition, a legal hold,
//! key rotation). After each, every acknowledged trace is found exactly
//! once, checkpoints from either node verify against one tree, and
//! `registre verify --store` passes.
//!
//! Needs `REGISTRE_TEST_DATABASE_URL` (`.ci/run` sets it); without it each
//! test prints a `SKIP` line. Each test works in its own schema, dropped at
//! the end.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, free_port, trace_json};
use registre_log::merkle;
use registre_log::note::Verifier;
use serde_json::Value;

fn database_url() -> Option<String> {
    match std::env::var("REGISTRE_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIP: REGISTRE_TEST_DATABASE_URL not set");
            None
        }
    }
}

/// A fresh schema, dropped when the guard goes (even on a panic).
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, what: &str) -> Schema {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).expect("random");
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        Schema {
            url: url.to_owned(),
            name: format!("registre_nodes_{what}_{hex}"),
        }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path TO {}", self.name))
            .await
            .expect("search path");
        client
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Its own runtime: the test's may be gone or busy.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn master_key(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).expect("random");
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&p, format!("{hex}\n")).expect("master key");
    p
}

/// A node: `registre serve --store URL` with its own data dir (admin token).
fn node(
    dir: &Path,
    name: &str,
    port: u16,
    url: &str,
    schema: &str,
    key: &Path,
    config: &Path,
) -> Server {
    Server::start_with(
        &dir.join(name),
        port,
        &[
            os("--store"),
            os(url),
            os("--store-schema"),
            os(schema),
            os("--master-key-file"),
            key.as_os_str(),
            os("--config"),
            config.as_os_str(),
        ],
    )
}

fn registre(args: &[&OsStr], env: &[(&str, &OsStr)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_registre"));
    c.args(args).env("REGISTRE_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
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

fn verify_store(url: &str, schema: &str, key: &Path) -> String {
    ok(&registre(
        &[
            os("verify"),
            os("--store"),
            os(url),
            os("--store-schema"),
            os(schema),
            os("--master-key-file"),
            key.as_os_str(),
            os("-q"),
        ],
        &[],
    ))
}

const CONFIG: &str = r#"
[retention]
purge_interval = "off"

[store]
checkpoint_interval = "1 second"
pool_size = 4
"#;

/// Every trace of `actor`, through `server`, by tag (`target.uids`).
async fn found_by_tag(
    client: &reqwest::Client,
    server: &Server,
    actor: &str,
    into: &mut HashMap<String, usize>,
) {
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("actor", actor.to_owned()), ("limit", "1000".into())];
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let r = client
            .get(format!("{}/v1/traces", server.url))
            .bearer_auth(&server.token)
            .query(&q)
            .send()
            .await
            .expect("search");
        assert_eq!(r.status().as_u16(), 200, "search through {}", server.url);
        let v: Value = r.json().await.expect("page");
        for t in v["traces"].as_array().expect("traces") {
            let tag = t["target"]["uids"]
                .as_str()
                .expect("whole trace")
                .to_owned();
            assert_eq!(t["response"]["text"], "Fetch completed");
            *into.entry(tag).or_default() += 1;
        }
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
    }
}

/// Asserts every acknowledged tag is found exactly once through `server`,
/// and nothing found was never sent.
async fn exactly_once(
    client: &reqwest::Client,
    server: &Server,
    actors: &[String],
    acked: &HashSet<String>,
    sent: &HashSet<String>,
) {
    let mut found = HashMap::new();
    for a in actors {
        found_by_tag(client, server, a, &mut found).await;
    }
    let missing: Vec<&String> = acked.iter().filter(|t| !found.contains_key(*t)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged traces missing through {}, e.g. {:?}",
        missing.len(),
        server.url,
        &missing[..missing.len().min(5)]
    );
    let dups: Vec<_> = found.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "traces found twice: {dups:?}");
    for t in found.keys() {
        assert!(sent.contains(t), "found a trace nobody sent: {t}");
    }
}

/// What the clients sent and what was acknowledged with a 201.
#[derive(Default)]
struct Ledger {
    sent: Mutex<HashSet<String>>,
    acked: Mutex<HashSet<String>>,
    /// The status and problem detail of every refused batch.
    refused: Mutex<Vec<String>>,
}

/// A batch of `n` traces of `actor`, tagged `prefix-k`.
fn batch(actor: &str, prefix: &str, first: usize, n: usize) -> (String, Vec<String>) {
    let mut tags = Vec::with_capacity(n);
    let mut body = String::from("[");
    for i in 0..n {
        let k = first + i;
        let tag = format!("{prefix}-{k}");
        if i > 0 {
            body.push(',');
        }
        let class = if k.is_multiple_of(3) {
            "applicative"
        } else {
            "mss"
        };
        body.push_str(&trace_json(actor, &tag, class));
        tags.push(tag);
    }
    body.push(']');
    (body, tags)
}

/// POSTs a batch; `Ok(status)` or `Err` when the node did not answer.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: String,
    tags: &[String],
    ledger: &Ledger,
) -> Result<u16, ()> {
    ledger
        .sent
        .lock()
        .expect("lock")
        .extend(tags.iter().cloned());
    let r = client
        .post(format!("{url}/v1/traces"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .map_err(|_| ())?;
    let status = r.status().as_u16();
    if status == 201 {
        let v: Value = r.json().await.map_err(|_| ())?;
        assert_eq!(
            v["accepted"].as_array().map_or(0, Vec::len),
            tags.len(),
            "one receipt per trace"
        );
        ledger
            .acked
            .lock()
            .expect("lock")
            .extend(tags.iter().cloned());
    } else {
        let text = r.text().await.unwrap_or_default();
        ledger
            .refused
            .lock()
            .expect("lock")
            .push(format!("{status}: {text}"));
    }
    Ok(status)
}

async fn get_json(client: &reqwest::Client, server: &Server, path: &str) -> Value {
    let r = client
        .get(format!("{}{path}", server.url))
        .bearer_auth(&server.token)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200, "{path} on {}", server.url);
    r.json().await.expect("json")
}

async fn checkpoint_note(client: &reqwest::Client, server: &Server, log: &str) -> String {
    client
        .get(format!("{}/logs/{log}/checkpoint", server.url))
        .send()
        .await
        .expect("checkpoint")
        .text()
        .await
        .expect("checkpoint text")
}

fn b64(hashes: &Value) -> Vec<merkle::Hash> {
    use base64::Engine;
    hashes
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(h.as_str().expect("hash"))
                .expect("base64");
            merkle::Hash::try_from(b.as_slice()).expect("32 bytes")
        })
        .collect()
}

/// A checkpoint from node `a` and a fresh one from node `b` verify with the
/// one key of the journal, and `b`'s tree extends `a`'s (consistency proof
/// served by `a`).
async fn one_tree(client: &reqwest::Client, a: &Server, b: &Server, log: &str) {
    let vkey_a = get_json(client, a, "/v1/logs").await["verifier_key"]
        .as_str()
        .expect("vkey")
        .to_owned();
    let vkey_b = get_json(client, b, "/v1/logs").await["verifier_key"]
        .as_str()
        .expect("vkey")
        .to_owned();
    assert_eq!(vkey_a, vkey_b, "both nodes sign with the journal's one key");
    let v = [Verifier::parse(&vkey_a).expect("vkey")];
    let note_a = checkpoint_note(client, a, log).await;
    let (cp_a, _) =
        registre_log::checkpoint::open_checkpoint(note_a.as_bytes(), &v).expect("A's checkpoint");
    // A fresh checkpoint through B: the inclusion proof of its newest trace.
    let logs = get_json(client, b, "/v1/logs").await;
    let size = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .find(|l| l["log"] == log)
        .and_then(|l| l["size"].as_u64())
        .expect("size");
    let incl = get_json(
        client,
        b,
        &format!("/v1/proofs/inclusion?log={log}&index={}", size - 1),
    )
    .await;
    let note_b = incl["checkpoint"].as_str().expect("checkpoint").to_owned();
    let (cp_b, _) =
        registre_log::checkpoint::open_checkpoint(note_b.as_bytes(), &v).expect("B's checkpoint");
    assert_eq!(cp_a.origin(), cp_b.origin());
    assert!(cp_b.size() >= cp_a.size());
    if cp_a.size() > 0 && cp_b.size() > cp_a.size() {
        let c = get_json(
            client,
            a,
            &format!(
                "/v1/proofs/consistency?log={log}&from={}&to={}",
                cp_a.size(),
                cp_b.size()
            ),
        )
        .await;
        merkle::verify_consistency(
            cp_a.size(),
            cp_b.size(),
            cp_a.root(),
            cp_b.root(),
            &b64(&c["hashes"]),
        )
        .expect("B's checkpoint extends A's");
    } else {
        assert_eq!(cp_a.root(), cp_b.root());
    }
    // Each node's tiles lead to its checkpoint (trust pinned to the key).
    let state = tempfile::tempdir().expect("state dir");
    for s in [a, b] {
        ok(&registre(
            &[
                os("verify"),
                os("--server"),
                os(&s.url),
                os("--vkey"),
                os(&vkey_a),
                os("--log"),
                os(log),
                os("-q"),
            ],
            &[("XDG_STATE_HOME", state.path().as_os_str())],
        ));
    }
}

/// `clients` tasks posting batches to `url` until `stop`; each gets its own
/// actor. Returns the tasks (each yields the statuses it saw).
fn clients(
    client: &reqwest::Client,
    server: &Server,
    names: &[String],
    ledger: &Arc<Ledger>,
    stop: &Arc<AtomicBool>,
    stop_on_error: bool,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    names
        .iter()
        .enumerate()
        .map(|(c, actor)| {
            let (client, url, token) = (client.clone(), server.url.clone(), server.token.clone());
            let (ledger, stop, actor) = (ledger.clone(), stop.clone(), actor.clone());
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut k = 0usize;
                let mut round = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let n = 1 + (c * 7 + round) % 25;
                    round += 1;
                    let (body, tags) = batch(&actor, &actor, k, n);
                    k += n;
                    match post(&client, &url, &token, body, &tags, &ledger).await {
                        Ok(s) => statuses.push(s),
                        Err(()) if stop_on_error => break,
                        Err(()) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                statuses
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_take_traffic_together() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "two");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = master_key(dir.path(), "master.key");
    let config = dir.path().join("registre.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let a = node(
        dir.path(),
        "a",
        free_port(),
        &url,
        &schema.name,
        &key,
        &config,
    );
    let b = node(
        dir.path(),
        "b",
        free_port(),
        &url,
        &schema.name,
        &key,
        &config,
    );
    let client = reqwest::Client::new();
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let names_a: Vec<String> = (0..3).map(|c| format!("two-a{c}")).collect();
    let names_b: Vec<String> = (0..3).map(|c| format!("two-b{c}")).collect();
    let mut tasks = clients(&client, &a, &names_a, &ledger, &stop, false);
    tasks.extend(clients(&client, &b, &names_b, &ledger, &stop, false));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A verification while both nodes write: one consistent snapshot.
    let (u, n, k) = (url.clone(), schema.name.clone(), key.clone());
    let live = tokio::task::spawn_blocking(move || verify_store(&u, &n, &k))
        .await
        .expect("verify during ingest");
    assert!(live.contains("OK: every trace is in place"), "{live}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let statuses = t.await.expect("client");
        assert!(!statuses.is_empty());
        assert!(
            statuses.iter().all(|s| *s == 201),
            "both nodes up: every batch is acknowledged ({:?})",
            ledger.refused.lock().expect("lock")
        );
    }
    let acked = ledger.acked.lock().expect("lock").clone();
    let sent = ledger.sent.lock().expect("lock").clone();
    assert_eq!(acked, sent);
    assert!(acked.len() > 200, "too little traffic: {}", acked.len());
    let actors: Vec<String> = names_a.iter().chain(&names_b).cloned().collect();
    exactly_once(&client, &a, &actors, &acked, &sent).await;
    exactly_once(&client, &b, &actors, &acked, &sent).await;

    // One log per class: indexes dense across both nodes' appends.
    let db = schema.client().await;
    for log in ["mss", "applicative"] {
        let row = db
            .query_one(
                "SELECT l.size, count(e.idx), coalesce(max(e.idx), -1) FROM logs l \
                 LEFT JOIN entries e ON e.log = l.id WHERE l.name = $1 GROUP BY l.size",
                &[&log],
            )
            .await
            .expect("sizes");
        let (size, n, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(size, n, "log {log}");
        assert_eq!(max, size - 1, "log {log}");
    }
    one_tree(&client, &a, &b, "mss").await;
    one_tree(&client, &b, &a, "applicative").await;
    drop((a, b));
    let out = verify_store(&url, &schema.name, &key);
    assert!(out.contains("OK: every trace is in place"), "{out}");
    eprintln!("two nodes: {} traces acknowledged", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_ingest_loses_nothing_and_rejoins() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "kill");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = master_key(dir.path(), "master.key");
    let config = dir.path().join("registre.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let port_a = free_port();
    let mut a = node(dir.path(), "a", port_a, &url, &schema.name, &key, &config);
    let b = node(
        dir.path(),
        "b",
        free_port(),
        &url,
        &schema.name,
        &key,
        &config,
    );
    let client = reqwest::Client::new();
    let ledger = Arc::new(Ledger::default());
    let stop_a = Arc::new(AtomicBool::new(false));
    let stop_b = Arc::new(AtomicBool::new(false));
    let names_a: Vec<String> = (0..3).map(|c| format!("kill-a{c}")).collect();
    let names_b: Vec<String> = (0..3).map(|c| format!("kill-b{c}")).collect();
    let tasks_a = clients(&client, &a, &names_a, &ledger, &stop_a, true);
    let tasks_b = clients(&client, &b, &names_b, &ledger, &stop_b, false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill9();
    let acked_at_kill = ledger.acked.lock().expect("lock").len();
    for t in tasks_a {
        t.await.expect("client of A");
    }
    // B keeps answering 201 while A is dead.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        ledger.acked.lock().expect("lock").len() > acked_at_kill,
        "B acknowledged nothing after A died"
    );
    // A restarts on the same port and rejoins.
    let a = node(dir.path(), "a", port_a, &url, &schema.name, &key, &config);
    let rejoin: Vec<String> = vec!["kill-a-rejoin".into()];
    let stop_r = Arc::new(AtomicBool::new(false));
    let tasks_r = clients(&client, &a, &rejoin, &ledger, &stop_r, false);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_r.store(true, Ordering::Relaxed);
    stop_b.store(true, Ordering::Relaxed);
    for t in tasks_b.into_iter().chain(tasks_r) {
        let statuses = t.await.expect("client");
        assert!(!statuses.is_empty());
        assert!(
            statuses.iter().all(|s| *s == 201),
            "a live node answers 201 ({:?})",
            ledger.refused.lock().expect("lock")
        );
    }
    // Both serve the same log: same size, same checkpoint once settled.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let size_of = |v: &Value| {
        v["logs"]
            .as_array()
            .expect("logs")
            .iter()
            .find(|l| l["log"] == "mss")
            .and_then(|l| l["size"].as_u64())
            .expect("size")
    };
    let size_a = size_of(&get_json(&client, &a, "/v1/logs").await);
    let size_b = size_of(&get_json(&client, &b, "/v1/logs").await);
    assert_eq!(size_a, size_b, "the restarted node serves the same log");
    assert_eq!(
        checkpoint_note(&client, &a, "mss").await,
        checkpoint_note(&client, &b, "mss").await
    );
    let acked = ledger.acked.lock().expect("lock").clone();
    let sent = ledger.sent.lock().expect("lock").clone();
    let actors: Vec<String> = names_a
        .iter()
        .chain(&names_b)
        .chain(&rejoin)
        .cloned()
        .collect();
    exactly_once(&client, &a, &actors, &acked, &sent).await;
    exactly_once(&client, &b, &actors, &acked, &sent).await;
    one_tree(&client, &b, &a, "mss").await;
    drop((a, b));
    let out = verify_store(&url, &schema.name, &key);
    assert!(out.contains("OK"), "{out}");
    eprintln!(
        "kill: {} acknowledged ({} when A died), {} sent",
        acked.len(),
        acked_at_kill,
        sent.len()
    );
}

// ------------------------------------------------- a private PostgreSQL

/// A PostgreSQL cluster of this test's own, in a temporary directory, run
/// as the `postgres` OS user when the tests run as root.
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_root: bool,
}

fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

impl PrivatePg {
    fn start() -> Option<PrivatePg> {
        let Some(bin) = pg_bin() else {
            eprintln!("SKIP: no initdb under /usr/lib/postgresql/*/bin");
            return None;
        };
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().expect("tempdir");
        if as_root {
            let s = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(s.success(), "chown to postgres");
        }
        let pg = PrivatePg {
            dir,
            bin,
            port: free_port(),
            as_root,
        };
        let data = pg.data();
        let out = pg.run(
            "initdb",
            &[
                os("-D"),
                data.as_os_str(),
                os("-U"),
                os("postgres"),
                os("--auth=trust"),
                os("--no-sync"),
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.pg_ctl_start();
        Some(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("pg")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&OsStr]) -> Output {
        let exe = self.bin.join(tool);
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args).output().expect("run a PostgreSQL tool")
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let data = self.data();
        let log = self.dir.path().join("pg.log");
        let out = self.run(
            "pg_ctl",
            &[
                os("-D"),
                data.as_os_str(),
                os("-o"),
                os(&opts),
                os("-l"),
                log.as_os_str(),
                os("-w"),
                os("start"),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn pg_ctl_stop(&self, mode: &str) {
        let data = self.data();
        let out = self.run(
            "pg_ctl",
            &[
                os("-D"),
                data.as_os_str(),
                os("-m"),
                os(mode),
                os("-w"),
                os("stop"),
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &[
                os("-D"),
                data.as_os_str(),
                os("-m"),
                os("immediate"),
                os("stop"),
            ],
        );
    }
}

/// Phases of the outage, as the clients see them.
const UP: u8 = 0;
const STOPPING: u8 = 1;
const DOWN: u8 = 2;
const RESTARTING: u8 = 3;
const AGAIN: u8 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_answers_503_then_resumes() {
    if database_url().is_none() {
        return;
    }
    let Some(pg) = tokio::task::block_in_place(PrivatePg::start) else {
        return;
    };
    let url = pg.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = master_key(dir.path(), "master.key");
    let config = dir.path().join("registre.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = node(
        dir.path(),
        "a",
        free_port(),
        &url,
        "registre",
        &key,
        &config,
    );
    let client = reqwest::Client::new();
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(AtomicU8::new(UP));
    // (phase when sent, phase when answered, status)
    let seen: Arc<Mutex<Vec<(u8, u8, u16)>>> = Arc::default();
    let names: Vec<String> = (0..3).map(|c| format!("pgrestart-{c}")).collect();
    let mut tasks = Vec::new();
    for (c, actor) in names.iter().enumerate() {
        let (client, url, token) = (client.clone(), server.url.clone(), server.token.clone());
        let (ledger, stop, phase, seen, actor) = (
            ledger.clone(),
            stop.clone(),
            phase.clone(),
            seen.clone(),
            actor.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut k = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let n = 1 + (c * 5 + k) % 20;
                let (body, tags) = batch(&actor, &actor, k, n);
                k += n;
                let before = phase.load(Ordering::SeqCst);
                let status = post(&client, &url, &token, body, &tags, &ledger)
                    .await
                    .expect("the node itself stays up");
                let after = phase.load(Ordering::SeqCst);
                seen.lock().expect("lock").push((before, after, status));
                if status != 201 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    phase.store(STOPPING, Ordering::SeqCst);
    tokio::task::block_in_place(|| pg.pg_ctl_stop("fast"));
    phase.store(DOWN, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    phase.store(RESTARTING, Ordering::SeqCst);
    tokio::task::block_in_place(|| pg.pg_ctl_start());
    phase.store(AGAIN, Ordering::SeqCst);
    // Ingest resumes: a 201 sent after the restart, within seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resumed = seen
            .lock()
            .expect("lock")
            .iter()
            .any(|(b, _, s)| *b == AGAIN && *s == 201);
        if resumed {
            break;
        }
        assert!(Instant::now() < deadline, "ingest did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    let seen = seen.lock().expect("lock").clone();
    let down: Vec<u16> = seen
        .iter()
        .filter(|(b, a, _)| *b == DOWN && *a == DOWN)
        .map(|(_, _, s)| *s)
        .collect();
    assert!(
        !down.is_empty(),
        "no request was answered while PostgreSQL was down"
    );
    assert!(
        down.iter().all(|s| *s == 503),
        "while PostgreSQL is down every append answers 503, never 201: {down:?}"
    );
    assert!(
        seen.iter().all(|(_, _, s)| *s == 201 || *s == 503),
        "only 201 or 503: {seen:?}"
    );
    let again: Vec<u16> = seen
        .iter()
        .filter(|(b, _, _)| *b == AGAIN)
        .map(|(_, _, s)| *s)
        .collect();
    assert!(
        again.iter().rev().take(5).all(|s| *s == 201),
        "after the restart appends succeed again: {again:?}"
    );
    let acked = ledger.acked.lock().expect("lock").clone();
    let sent = ledger.sent.lock().expect("lock").clone();
    exactly_once(&client, &server, &names, &acked, &sent).await;
    drop(server);
    let out = verify_store(&url, "registre", &key);
    assert!(out.contains("OK"), "{out}");
    eprintln!(
        "PostgreSQL restart: {} answers ({} while down, all 503), {} traces acknowledged",
        seen.len(),
        down.len(),
        acked.len()
    );
}

// ------------------------------------------------------------- retention

const RETENTION_CONFIG: &str = r#"
[retention]
purge_interval = "off"

[store]
checkpoint_interval = "1 second"

[classes.mss]
retention = "3 seconds"
segment_period = "1 second"

[classes.applicative]
retention = "20 years"
"#;

fn retention_trace(class: &str, tag: &str) -> String {
    format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"actor-{tag}"}},"action":"consultation","target":{{"mailbox":"box-{tag}@hopital.mssante.fr","patient":{{"id":"patient-{tag}"}}}},"request":"UID FETCH 7 (BODY.PEEK[]) req-{tag}","response":{{"status":"OK"}}}}"#
    )
}

async fn search(client: &reqwest::Client, server: &Server, query: &str) -> Vec<Value> {
    get_json(client, server, &format!("/v1/traces?limit=1000&{query}")).await["traces"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn actors(ts: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = ts
        .iter()
        .map(|t| t["actor"]["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    v.sort();
    v
}

async fn mss_partitions(db: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    let id: i16 = db
        .query_one("SELECT id FROM logs WHERE name = 'mss'", &[])
        .await
        .expect("mss log")
        .get(0);
    db.query(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2 \
         ORDER BY 1",
        &[&schema, &format!("traces\\_{id}\\_%")],
    )
    .await
    .expect("pg_tables")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres_purges_partitions_keeps_holds_and_rotates_keys() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "ret");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = master_key(dir.path(), "master.key");
    let config = dir.path().join("registre.toml");
    std::fs::write(&config, RETENTION_CONFIG).expect("config");
    let port = free_port();
    let server = node(dir.path(), "a", port, &url, &schema.name, &key, &config);
    let client = reqwest::Client::new();
    let env = |s: &Server| {
        vec![
            ("REGISTRE_SERVER", OsStr::new(&s.url).to_owned()),
            (
                "REGISTRE_TOKEN_FILE",
                s.data.join("admin-token").into_os_string(),
            ),
        ]
    };
    let run = |s: &Server, args: &[&OsStr]| {
        let e = env(s);
        let e: Vec<(&str, &OsStr)> = e.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        registre(args, &e)
    };
    for i in 0..4 {
        let body = format!(
            "[{},{}]",
            retention_trace("mss", &format!("old{i}")),
            retention_trace("applicative", &format!("old{i}"))
        );
        let r = client
            .post(format!("{}/v1/traces", server.url))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 201);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = ok(&run(
        &server,
        &[
            os("hold"),
            os("add"),
            os("--reason"),
            os("réquisition 2026-118"),
            os("--actor"),
            os("actor-old2"),
        ],
    ));
    assert!(
        out.lines().next().is_some_and(|l| l.starts_with("h-")),
        "{out}"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r = client
        .post(format!("{}/v1/traces", server.url))
        .bearer_auth(&server.token)
        .header("content-type", "application/json")
        .body(retention_trace("mss", "fresh"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);

    let db = schema.client().await;
    let before = mss_partitions(&db, &schema.name).await;
    assert!(before.len() >= 2, "one partition per second: {before:?}");

    let out = ok(&run(&server, &[os("purge"), os("--dry-run")]));
    assert!(
        out.contains("dry run: 3 traces would be destroyed, 1 kept"),
        "{out}"
    );
    assert_eq!(mss_partitions(&db, &schema.name).await, before);
    let out = ok(&run(&server, &[os("purge")]));
    assert!(
        out.contains("purged 3 traces past retention (1 kept"),
        "{out}"
    );
    // Purge by partition: every old partition dropped, only the fresh one left.
    let after = mss_partitions(&db, &schema.name).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after.last(), before.last());
    let held: i64 = db
        .query_one("SELECT count(*) FROM held", &[])
        .await
        .expect("held")
        .get(0);
    assert_eq!(held, 1);
    // The held trace: still searchable, still provable (export + offline verify).
    assert_eq!(
        actors(&search(&client, &server, "class=mss").await),
        ["actor-fresh", "actor-old2"]
    );
    assert_eq!(
        search(&client, &server, "class=applicative&action=consultation")
            .await
            .len(),
        4
    );
    let bundle = dir.path().join("bundle");
    ok(&run(
        &server,
        &[
            os("export"),
            os("--actor"),
            os("actor-old2"),
            os("--out"),
            bundle.as_os_str(),
            os("--reason"),
            os("test"),
            os("-q"),
        ],
    ));
    ok(&registre(&[os("verify"), bundle.as_os_str()], &[]));
    let purges = search(&client, &server, "class=technique&action=purge").await;
    assert_eq!(purges.len(), 1, "{purges:?}");
    // The verifier key to hand over, read from the database.
    let vkey = get_json(&client, &server, "/v1/logs").await["verifier_key"]
        .as_str()
        .expect("vkey")
        .to_owned();
    let shown = registre(
        &[
            os("keys"),
            os("show"),
            os("--store"),
            os(&url),
            os("--store-schema"),
            os(&schema.name),
            os("--master-key-file"),
            key.as_os_str(),
        ],
        &[],
    );
    ok(&shown);
    assert_eq!(String::from_utf8_lossy(&shown.stdout).trim(), vkey);
    drop(server);
    let out = verify_store(&url, &schema.name, &key);
    assert!(out.contains("OK"), "{out}");
    assert!(out.contains("were purged past retention"), "{out}");

    // Nothing personal in clear in the database.
    let rows = db
        .query(
            "SELECT record FROM held UNION ALL SELECT value FROM meta \
             UNION ALL SELECT wrapped FROM data_keys",
            &[],
        )
        .await
        .expect("rows");
    for r in rows {
        let b: Vec<u8> = r.get(0);
        for c in ["actor-old", "patient-old", "box-old", "UID FETCH"] {
            assert!(
                !b.windows(c.len()).any(|w| w == c.as_bytes()),
                "{c} in clear"
            );
        }
    }

    // Master key rotation, every node stopped; the old key is refused after.
    let new_key = dir.path().join("master-2027.key");
    let out = ok(&registre(
        &[
            os("keys"),
            os("rotate-master"),
            os("--store"),
            os(&url),
            os("--store-schema"),
            os(&schema.name),
            os("--master-key-file"),
            key.as_os_str(),
            os("--new-master-key-file"),
            new_key.as_os_str(),
        ],
        &[],
    ));
    assert!(out.contains("master key rotated"), "{out}");
    let refused = registre(
        &[
            os("serve"),
            os("--data"),
            dir.path().join("a").as_os_str(),
            os("--listen"),
            os(&format!("127.0.0.1:{}", free_port())),
            os("--store"),
            os(&url),
            os("--store-schema"),
            os(&schema.name),
            os("--master-key-file"),
            key.as_os_str(),
            os("--config"),
            config.as_os_str(),
        ],
        &[],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("wrong master key"), "{err}");
    let server = node(dir.path(), "a", port, &url, &schema.name, &new_key, &config);
    assert_eq!(
        actors(&search(&client, &server, "class=mss").await),
        ["actor-fresh", "actor-old2"]
    );
    drop(server);
    let out = verify_store(&url, &schema.name, &new_key);
    assert!(out.contains("OK"), "{out}");
}

// ------------------------------------------------------------ tampering

fn verify_fails(url: &str, schema: &str, key: &Path, expect: &str) {
    let out = registre(
        &[
            os("verify"),
            os("--store"),
            os(url),
            os("--store-schema"),
            os(schema),
            os("--master-key-file"),
            key.as_os_str(),
            os("-q"),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "verify must fail: {err}");
    assert!(err.contains(expect), "expected `{expect}` in:\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_store_finds_what_was_altered_in_the_database() {
    let Some(url) = database_url() else { return };
    let schema = Schema::new(&url, "tamper");
    let dir = tempfile::tempdir().expect("tempdir");
    let key = master_key(dir.path(), "master.key");
    let config = dir.path().join("registre.toml");
    std::fs::write(&config, CONFIG).expect("config");
    let server = node(
        dir.path(),
        "a",
        free_port(),
        &url,
        &schema.name,
        &key,
        &config,
    );
    let client = reqwest::Client::new();
    let ledger = Ledger::default();
    let (body, tags) = batch("tamper", "tamper", 1, 20);
    let s = post(&client, &server.url, &server.token, body, &tags, &ledger)
        .await
        .expect("post");
    assert_eq!(s, 201);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(server);
    let out = verify_store(&url, &schema.name, &key);
    assert!(out.contains("OK"), "{out}");

    let db = schema.client().await;
    let (id, relname): (i16, String) = {
        let r = db
            .query_one(
                "SELECT l.id, p.relname FROM logs l JOIN partitions p ON p.log = l.id \
                 WHERE l.name = 'mss'",
                &[],
            )
            .await
            .expect("mss partition");
        (r.get(0), r.get(1))
    };
    // One bit of one sealed record.
    let original: Vec<u8> = db
        .query_one(&format!("SELECT record FROM {relname} WHERE idx = 3"), &[])
        .await
        .expect("record")
        .get(0);
    let mut altered = original.clone();
    altered[20] ^= 1;
    db.execute(
        &format!("UPDATE {relname} SET record = $1 WHERE idx = 3"),
        &[&altered],
    )
    .await
    .expect("alter");
    verify_fails(&url, &schema.name, &key, "does not open with its data key");
    db.execute(
        &format!("UPDATE {relname} SET record = $1 WHERE idx = 3"),
        &[&original],
    )
    .await
    .expect("restore");
    verify_store(&url, &schema.name, &key);

    // A commitment rewritten: the record, the tree and the checkpoints disagree.
    db.execute(
        "UPDATE entries SET commitment = sha256(commitment) WHERE log = $1 AND idx = 2",
        &[&id],
    )
    .await
    .expect("rewrite a commitment");
    verify_fails(&url, &schema.name, &key, "history was rewritten");

    // A partition dropped by hand, without a purge record.
    db.batch_execute(&format!(
        "DROP TABLE {relname}; DELETE FROM partitions WHERE relname = '{relname}'"
    ))
    .await
    .expect("drop");
    verify_fails(&url, &schema.name, &key, "traces were deleted");
}
