//! `registre migrate` end to end: an embedded journal (several classes, a
//! purge with a legal hold, several checkpoints) moved to PostgreSQL with
//! the real binary, read back there (every trace, roots, checkpoints,
//! verifier key, proofs, the PostgreSQL checker), moved back to a new data
//! directory that `registre verify --data` passes with identical files of
//! the Merkle log; no personal value in clear anywhere on the way.
//!
//! Needs `REGISTRE_TEST_DATABASE_URL` (prints `SKIP` without it); each test
//! works in its own schema, dropped at the end.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use registre_log::merkle;
use registre_model::{ClassName, Limits, Retention, parse_trace};
use registre_store::clock::ManualClock;
use registre_store::crypto::MasterKey;
use registre_store::{
    EmbeddedOptions, EmbeddedStore, Hold, HoldFilter, PurgeRequest, Query, Store, StoredRecord,
};
use registre_store_pg::{PgOptions, PgStore};

const DAY: i64 = 86_400;
/// Values that must never be found in clear at rest.
const CANARY_ACTOR: &str = "canary-actor-5f1e9";
const CANARY_PATIENT: &str = "canary-patient-77c3";

fn database_url() -> Option<String> {
    match std::env::var("REGISTRE_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIP: REGISTRE_TEST_DATABASE_URL not set");
            None
        }
    }
}

/// A schema dropped when the test ends (even on a panic).
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str) -> Schema {
        let mut r = [0u8; 6];
        getrandom::fill(&mut r).expect("random");
        Schema {
            url: url.to_owned(),
            name: format!("registre_migrate_{}", registre_store::crypto::hex(&r)),
        }
    }

    async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn classes() -> Vec<ClassName> {
    ["applicative", "mss", "technique"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect()
}

fn trace(class: &str, actor: &str, patient: &str, tag: &str) -> registre_model::Trace {
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"2026-01-05T10:00:00.000+01:00","actor":{{"id":"{actor}"}},"action":"consultation","target":{{"mailbox":"box-{tag}@hopital.fr","patient":{{"id":"{patient}"}}}},"request":"req-{tag}"}}"#
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

async fn all<S: Store>(store: &S, class: &str) -> Vec<StoredRecord> {
    let mut q = Query {
        class: Some(ClassName::new(class).expect("class")),
        limit: 1000,
        ..Query::default()
    };
    let mut out = Vec::new();
    loop {
        let page = store.search(q.clone()).await.expect("search");
        out.extend(page.traces);
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    out.sort_by_key(|r| r.trace.index);
    out
}

/// A retained trace: index, id, `salt ‖ JCS`.
type Retained = (u64, String, Vec<u8>);
/// A log: size, checkpoint notes, retained traces.
type LogSnapshot = (u64, Vec<String>, Vec<Retained>);

/// What a journal holds, to compare both sides.
#[derive(Debug, PartialEq)]
struct Snapshot {
    verifier_key: String,
    /// Per log: size, every checkpoint note, every retained (index, id,
    /// salt, canonical bytes).
    logs: BTreeMap<String, LogSnapshot>,
    holds: Vec<Hold>,
}

async fn snapshot<S: Store>(store: &S) -> Snapshot {
    let mut logs = BTreeMap::new();
    let infos = store.logs().await.expect("logs");
    for info in infos {
        let name = info.log.as_str().to_owned();
        let notes = store
            .checkpoint_history(&name)
            .await
            .expect("history")
            .into_iter()
            .map(|c| c.note)
            .collect();
        let recs = all(store, &name)
            .await
            .into_iter()
            .map(|r| {
                let mut plain = r.salt.to_vec();
                r.trace.write_canonical(&mut plain);
                (r.trace.index, r.trace.id.to_string(), plain)
            })
            .collect();
        logs.insert(name, (info.size, notes, recs));
    }
    Snapshot {
        verifier_key: store.verifier_key(),
        logs,
        holds: store.holds().await.expect("holds"),
    }
}

/// An embedded journal: three classes over 20 days, a purge of `mss` past
/// 10 days keeping one actor's traces (a hold), checkpoints along the way.
async fn build_embedded(dir: &Path) -> (Snapshot, Arc<ManualClock>) {
    // 2026-01-01T00:00:00Z
    let clock = Arc::new(ManualClock::new(1_767_225_600_000_000));
    let mut opts = EmbeddedOptions::new(classes());
    opts.clock = clock.clone();
    opts.checkpoint_interval = std::time::Duration::from_secs(3600);
    // Small segments: several per day (one PostgreSQL partition each day).
    opts.max_segment_bytes = 16 * 1024;
    let store = EmbeddedStore::open(dir, opts).expect("open embedded");
    for day in 0..20 {
        let mut batch = Vec::new();
        for i in 0..7 {
            let tag = format!("d{day}-{i}");
            let actor = if i == 0 {
                CANARY_ACTOR.to_owned()
            } else {
                format!("actor-{tag}")
            };
            batch.push(trace("mss", &actor, CANARY_PATIENT, &tag));
            if i % 3 == 0 {
                batch.push(trace("technique", &actor, &format!("p-{tag}"), &tag));
            }
        }
        batch.push(trace("applicative", "app", "p-app", &format!("a{day}")));
        if day == 5 {
            // Enough for full tiles, in several segments of one day.
            for b in 0..3 {
                let bulk = (0..100)
                    .map(|i| trace("applicative", "bulk", "p-bulk", &format!("b{b}-{i}")))
                    .collect();
                store.append(bulk).await.expect("append");
            }
        }
        store.append(batch).await.expect("append");
        if day % 4 == 3 {
            store.checkpoint_all().expect("checkpoint");
        }
        clock.advance_secs(DAY);
    }
    let hold = Hold {
        id: "h1".into(),
        reason: "réquisition".into(),
        filter: HoldFilter {
            actor: Some(CANARY_ACTOR.into()),
            ..HoldFilter::default()
        },
        created_by: "dpo".into(),
        created_at: "2026-01-15T00:00:00Z".into(),
        released_by: None,
        released_at: None,
    };
    store.add_hold(hold).await.expect("hold");
    let report = store
        .purge(PurgeRequest {
            retention: vec![(
                ClassName::new("mss").expect("class"),
                Retention::parse("10 days").expect("retention"),
            )],
            ..PurgeRequest::default()
        })
        .await
        .expect("purge");
    assert!(report.purged() > 0, "something was purged");
    assert!(report.held() > 0, "the hold kept something");
    // After the purge: more traces and another checkpoint.
    store
        .append(vec![trace("mss", "late", "p-late", "late")])
        .await
        .expect("append");
    store.checkpoint_all().expect("checkpoint");
    let snap = snapshot(&store).await;
    drop(store);
    (snap, clock)
}

fn registre(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(args)
        .env("REGISTRE_LOG", "warn")
        .output()
        .expect("run registre")
}

fn pg_options(url: &str, schema: &str, master: Arc<MasterKey>) -> PgOptions {
    PgOptions {
        schema: schema.to_owned(),
        pool_size: 2,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..PgOptions::new(url, classes(), master)
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every file of a directory and its bytes.
fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files(dir)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect()
}

fn assert_no_canary(what: &str, bytes: &[u8]) {
    for c in [CANARY_ACTOR, CANARY_PATIENT] {
        assert!(
            !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
            "{c} in clear in {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_to_pg_and_back() {
    let Some(url) = database_url() else {
        return;
    };
    let schema = Schema::new(&url);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    let (before, _clock) = build_embedded(&src).await;
    let key_file = src.join("keys").join("master.key");
    let master = Arc::new(MasterKey::read(&key_file).expect("master key"));
    let mss = &before.logs["mss"];
    assert!(mss.2.len() < mss.0 as usize, "mss has a purged range");

    let segments = files(&src.join("logs").join("applicative"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .count();
    assert!(
        segments > 20,
        "several segments in a day ({segments} for 20 days)"
    );
    let untouched = tree_bytes(&src);
    // 1. Directory → PostgreSQL, with the real binary.
    let out = registre(&[
        "migrate",
        "--from",
        src.to_str().expect("path"),
        "--to",
        &url,
        "--schema",
        &schema.name,
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "migrate failed: {stdout}\n{stderr}");
    eprintln!("{stdout}{stderr}");
    assert!(stdout.contains("✓"), "summary: {stdout}");
    assert!(!stdout.contains("✗"), "summary: {stdout}");
    assert!(stdout.contains(&before.verifier_key), "summary: {stdout}");
    assert_no_canary("the output of migrate", out.stdout.as_slice());
    assert_no_canary("the log of migrate", out.stderr.as_slice());

    assert!(
        tree_bytes(&src) == untouched,
        "the source directory was written"
    );
    let pg = PgStore::open(pg_options(&url, &schema.name, master.clone()))
        .await
        .expect("open the target");
    let on_pg = snapshot(&pg).await;
    assert_eq!(
        on_pg, before,
        "the PostgreSQL journal holds what the directory held"
    );

    // Proofs from PostgreSQL, against the copied checkpoints.
    for (log, (size, notes, recs)) in &before.logs {
        let history = pg.checkpoint_history(log).await.expect("history");
        assert_eq!(history.len(), notes.len());
        let latest = history.last().expect("a checkpoint");
        assert_eq!(latest.size, *size, "the latest checkpoint covers the log");
        for (index, _, plain) in recs.iter().step_by(5) {
            let c = registre_store::commitment(plain);
            let proof = pg
                .inclusion_proof(log, *index, latest.size)
                .await
                .expect("inclusion proof");
            merkle::verify_inclusion(
                &merkle::leaf_hash(&c),
                *index,
                latest.size,
                &proof,
                &latest.root,
            )
            .expect("the trace is in the copied checkpoint");
        }
        let first = history.iter().find(|c| c.size > 0).expect("a first");
        let proof = pg
            .consistency_proof(log, first.size, latest.size)
            .await
            .expect("consistency proof");
        merkle::verify_consistency(first.size, latest.size, &first.root, &latest.root, &proof)
            .expect("old and new checkpoints are consistent");
    }
    drop(pg);

    // The PostgreSQL checker.
    let report = registre_store_pg::verify::verify_journal(
        &registre_store_pg::verify::VerifyOptions {
            url: url.clone(),
            schema: schema.name.clone(),
            tls_root_cert: None,
            master_key: Some(master.clone()),
            verifiers: vec![
                registre_log::note::Verifier::parse(&before.verifier_key).expect("vkey"),
            ],
        },
        &mut |_, _| {},
    )
    .await
    .expect("verify");
    assert!(report.ok(), "PostgreSQL verify: {:?}", report.failures);

    // Canary: nothing personal in any table.
    let client = schema.client().await;
    let tables: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = $1",
            &[&schema.name],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(tables.len() > 8, "tables: {tables:?}");
    for t in &tables {
        // Every row as text: text columns as they are, bytea as hex.
        let rows = client
            .query(&format!("SELECT r::text FROM {}.{t} r", schema.name), &[])
            .await
            .expect("rows");
        let mut bytes = Vec::new();
        for r in rows {
            bytes.extend_from_slice(r.get::<_, String>(0).as_bytes());
        }
        assert_no_canary(&format!("table {t}"), &bytes);
        for c in [CANARY_ACTOR, CANARY_PATIENT] {
            let hex = registre_store::crypto::hex(c.as_bytes());
            assert!(
                !bytes.windows(hex.len()).any(|w| w == hex.as_bytes()),
                "{c} in clear (bytea) in table {t}"
            );
        }
    }

    // 2. A non-empty target is refused, and left as it was.
    let again = registre(&[
        "migrate",
        "--from",
        src.to_str().expect("path"),
        "--to",
        &url,
        "--schema",
        &schema.name,
        "--quiet",
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("DROP SCHEMA"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // 3. PostgreSQL → a new directory.
    let back = tmp.path().join("back");
    let out = registre(&[
        "migrate",
        "--from",
        &url,
        "--schema",
        &schema.name,
        "--to",
        back.to_str().expect("path"),
        "--master-key-file",
        key_file.to_str().expect("path"),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "migrate back failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tmp.path().join(".back.migrating").exists());
    let out = registre(&[
        "verify",
        "--data",
        back.to_str().expect("path"),
        "--master-key-file",
        key_file.to_str().expect("path"),
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "verify --data failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The Merkle log's files are the source's, byte for byte.
    for log in before.logs.keys() {
        for f in ["entries", "checkpoints", "purged"] {
            let a = std::fs::read(src.join("logs").join(log).join(f)).expect("source file");
            let b = std::fs::read(back.join("logs").join(log).join(f)).expect("target file");
            assert!(a == b, "logs/{log}/{f} differs after the round trip");
        }
    }
    for p in files(&back) {
        let bytes = std::fs::read(&p).expect("read");
        assert_no_canary(&p.display().to_string(), &bytes);
    }
    // Opened by the embedded store: the same journal.
    let mut opts = EmbeddedOptions::new(classes());
    opts.master_key = Some(master.clone());
    opts.checkpoint_interval = std::time::Duration::from_secs(3600);
    let store = EmbeddedStore::open(&back, opts).expect("open the round trip");
    let after = snapshot(&store).await;
    assert_eq!(after, before, "the round trip is lossless");
    // It keeps working: an append lands at the next index.
    let r = store
        .append(vec![trace("mss", "next", "p-next", "next")])
        .await
        .expect("append after the round trip");
    assert_eq!(r[0].index, before.logs["mss"].0);
}

/// A non-empty directory target is refused and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_non_empty_directory() {
    let Some(url) = database_url() else {
        return;
    };
    let schema = Schema::new(&url);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    build_embedded(&src).await;
    let out = registre(&[
        "migrate",
        "--from",
        src.to_str().expect("path"),
        "--to",
        &url,
        "--schema",
        &schema.name,
        "--quiet",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).expect("dir");
    std::fs::write(busy.join("something"), b"x").expect("file");
    let out = registre(&[
        "migrate",
        "--from",
        &url,
        "--schema",
        &schema.name,
        "--to",
        busy.to_str().expect("path"),
        "--master-key-file",
        src.join("keys/master.key").to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(&busy).len(), 1, "nothing written");
    // A wrong master key is refused before anything is read.
    let (other, text) = MasterKey::generate().expect("key");
    let other_file = tmp.path().join("other.key");
    std::fs::write(&other_file, text.as_bytes()).expect("write key");
    let out = registre(&[
        "migrate",
        "--from",
        &url,
        "--schema",
        &schema.name,
        "--to",
        tmp.path().join("new").to_str().expect("path"),
        "--master-key-file",
        other_file.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&other.id()),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tmp.path().join("new").exists());
}
