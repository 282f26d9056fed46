//! Formats outlive code: a PostgreSQL journal created by schema version 1
//! (`tests/fixtures/schema1/`: a plain-SQL `pg_dump` of its schema and its
//! master key, written by `generate_schema1_fixture` at the commit that
//! introduced it) must open with this version (its migrations applied),
//! verify, search, prove, take new traces and purge.
//!
//! The fixture: three logs over four days (a partition per day), 300 `mss`
//! traces (a full tile), a legal hold on one patient, day 0 of `mss`
//! purged (its held traces re-sealed).

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_log::merkle;
use registre_model::{ClassName, Limits, Retention, parse_trace};
use registre_store::clock::ManualClock;
use registre_store::conformance::{all, classes};
use registre_store::crypto::MasterKey;
use registre_store::{Hold, HoldFilter, PurgeRequest, Query, Store};
use registre_store_pg::{PgOptions, PgStore};

const DAY: i64 = 86_400;
/// 2026-11-01T08:00:00Z.
const START: i64 = 1_793_520_000_000_000;
const MSS_PER_DAY: usize = 75;
const DAYS: usize = 4;
const HELD: &str = "patient-held";
const FIXTURE_SCHEMA: &str = "registre_fixture_schema1";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schema1")
}

fn trace(class: &str, d: usize, i: usize) -> registre_model::Trace {
    let patient = if i.is_multiple_of(10) {
        HELD.to_owned()
    } else {
        format!("patient-p{}", i % 13)
    };
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-0{}T09:{:02}:{:02}.000+01:00","actor":{{"id":"actor-a{}"}},"action":"{}","target":{{"mailbox":"box-m{}@hopital.fr","patient":{{"id":"{patient}"}}}},"request":"req d{d} i{i}"}}"#,
        d + 1,
        i / 60 % 60,
        i % 60,
        i % 7,
        ["consultation", "envoi", "suppression"][i % 3],
        i % 5,
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

fn options(url: &str, schema: &str, master: Arc<MasterKey>, clock: Arc<ManualClock>) -> PgOptions {
    PgOptions {
        schema: schema.to_owned(),
        clock,
        pool_size: 2,
        instance: "fixture.example".to_owned(),
        ..PgOptions::new(url, classes(), master)
    }
}

fn mss_retention(r: &str) -> Vec<(ClassName, Retention)> {
    vec![(
        ClassName::new("mss").expect("class"),
        Retention::parse(r).expect("retention"),
    )]
}

/// Writes the fixture, by the schema-1 store only:
/// `REGISTRE_WRITE_FIXTURE=1 REGISTRE_TEST_DATABASE_URL=… cargo test -p
/// registre-store-pg --test compat_schema1 -- --ignored generate`.
#[tokio::test]
#[ignore = "writes tests/fixtures/schema1 (schema-1 store only)"]
async fn generate_schema1_fixture() {
    if std::env::var_os("REGISTRE_WRITE_FIXTURE").is_none() {
        return;
    }
    let Some(url) = support::database_url() else {
        return;
    };
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let (master, text) = MasterKey::generate().expect("master key");
    std::fs::write(dir.join("master.key"), text.as_bytes()).expect("master key file");
    let client = connect(&url).await;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {FIXTURE_SCHEMA} CASCADE"))
        .await
        .expect("drop");
    let clock = Arc::new(ManualClock::new(START));
    {
        let store = PgStore::open(options(
            &url,
            FIXTURE_SCHEMA,
            Arc::new(master),
            clock.clone(),
        ))
        .await
        .expect("open");
        store
            .add_hold(Hold {
                id: "hold-1".into(),
                reason: "enquête".into(),
                filter: HoldFilter {
                    patient: Some(HELD.into()),
                    ..HoldFilter::default()
                },
                created_by: "dpo".into(),
                created_at: "2026-11-01T08:00:00Z".into(),
                released_by: None,
                released_at: None,
            })
            .await
            .expect("hold");
        for d in 0..DAYS {
            clock.set(START + d as i64 * DAY * 1_000_000);
            for chunk in (0..MSS_PER_DAY).collect::<Vec<_>>().chunks(25) {
                let mut batch: Vec<_> = chunk.iter().map(|&i| trace("mss", d, i)).collect();
                batch.push(trace("technique", d, chunk[0]));
                batch.push(trace("applicative", d, chunk[0]));
                store.append(batch).await.expect("append");
                clock.advance_secs(60);
            }
            for c in ["mss", "technique", "applicative"] {
                store.checkpoint(c, true).await.expect("checkpoint");
            }
        }
        let report = store
            .purge(PurgeRequest {
                retention: mss_retention("3 days"),
                holds: Vec::new(),
                dry_run: false,
                progress: None,
            })
            .await
            .expect("purge");
        assert_eq!(
            report.purged(),
            (MSS_PER_DAY - MSS_PER_DAY.div_ceil(10)) as u64
        );
    }
    let out = std::process::Command::new("pg_dump")
        .args([
            "--no-owner",
            "--no-privileges",
            "--schema",
            FIXTURE_SCHEMA,
            &url,
        ])
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("schema1.sql"), &out.stdout).expect("dump");
    client
        .batch_execute(&format!("DROP SCHEMA {FIXTURE_SCHEMA} CASCADE"))
        .await
        .expect("drop");
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// Loads the dump into a fresh schema of its own; returns its name.
async fn restore(url: &str) -> String {
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).expect("random");
    let schema = format!("registre_compat_{}", registre_store::crypto::hex(&r));
    let sql = std::fs::read_to_string(fixture().join("schema1.sql")).expect("the schema-1 dump");
    let sql = sql.replace(FIXTURE_SCHEMA, &schema);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("restore.sql");
    std::fs::write(&file, sql).expect("write");
    let out = std::process::Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
        .arg(&file)
        .arg(url)
        .output()
        .expect("psql (PostgreSQL's client) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    schema
}

#[tokio::test]
async fn a_schema1_journal_opens_verifies_searches_and_purges() {
    let Some(url) = support::database_url() else {
        return;
    };
    let schema = restore(&url).await;
    let master = Arc::new(MasterKey::read(&fixture().join("master.key")).expect("master key"));
    let check = async {
        // verify, as `registre verify --store` does.
        let v = registre_store_pg::verify::VerifyOptions {
            url: url.clone(),
            schema: schema.clone(),
            tls_root_cert: None,
            master_key: Some(master.clone()),
            verifiers: Vec::new(),
        };
        let report = registre_store_pg::verify::verify_journal(&v, &mut |_, _| {})
            .await
            .expect("verify");
        assert!(report.ok(), "{:#?}", report.failures);

        let clock = Arc::new(ManualClock::new(START + DAYS as i64 * DAY * 1_000_000));
        let store = PgStore::open(options(&url, &schema, master.clone(), clock.clone()))
            .await
            .expect("the schema-1 journal opens");
        let mss = Some(ClassName::new("mss").expect("class"));
        let held_day0 = MSS_PER_DAY.div_ceil(10);
        let got = all(
            &store,
            Query {
                class: mss.clone(),
                ..Query::default()
            },
        )
        .await;
        assert_eq!(got.len(), (DAYS - 1) * MSS_PER_DAY + held_day0);
        let by_patient = all(
            &store,
            Query {
                patient: Some(HELD.into()),
                class: mss.clone(),
                ..Query::default()
            },
        )
        .await;
        assert_eq!(by_patient.len(), DAYS * held_day0);
        let by_actor = all(
            &store,
            Query {
                actor: Some("actor-a3".into()),
                class: mss.clone(),
                ..Query::default()
            },
        )
        .await;
        assert!(by_actor.iter().all(|r| r.trace.actor.id == "actor-a3"));
        assert!(!by_actor.is_empty());

        // A proof of the newest trace against the fixture's checkpoint.
        let cp = store
            .checkpoint("mss", false)
            .await
            .expect("checkpoint")
            .expect("the fixture has checkpoints");
        assert_eq!(cp.size, (DAYS * MSS_PER_DAY) as u64);
        let newest = &got[0];
        let proof = store
            .inclusion_proof("mss", newest.trace.index, cp.size)
            .await
            .expect("proof");
        let mut rec = newest.salt.to_vec();
        newest.trace.write_canonical(&mut rec);
        let leaf = merkle::leaf_hash(&registre_store::commitment(&rec));
        merkle::verify_inclusion(&leaf, newest.trace.index, cp.size, &proof, &cp.root)
            .expect("the proof verifies");

        // New traces, then a purge of day 1 (its held traces kept).
        clock.set(START + (DAYS as i64 + 1) * DAY * 1_000_000);
        let r = store
            .append((0..5).map(|i| trace("mss", DAYS, i)).collect())
            .await
            .expect("append");
        assert_eq!(r[0].index, (DAYS * MSS_PER_DAY) as u64);
        let report = store
            .purge(PurgeRequest {
                retention: mss_retention("3 days"),
                holds: Vec::new(),
                dry_run: false,
                progress: None,
            })
            .await
            .expect("purge");
        assert_eq!(report.purged(), (MSS_PER_DAY - held_day0) as u64);
        store.checkpoint("mss", true).await.expect("checkpoint");
        drop(store);
        let report = registre_store_pg::verify::verify_journal(&v, &mut |_, _| {})
            .await
            .expect("verify");
        assert!(report.ok(), "{:#?}", report.failures);
    };
    check.await;
    let client = connect(&url).await;
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop");
}
