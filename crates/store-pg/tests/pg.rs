//! What only the PostgreSQL store has: several nodes on one database,
//! PostgreSQL going away, schema versions, partitions dropped by purge,
//! master key checks and rotation, TLS. Needs `REGISTRE_TEST_DATABASE_URL`
//! (TLS also `REGISTRE_TEST_DATABASE_TLS_URL`).

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use registre_log::merkle;
use registre_log::note::Verifier;
use registre_model::{ClassName, Retention};
use registre_store::clock::ManualClock;
use registre_store::conformance::{all, commitment_of, trace};
use registre_store::crypto::{MasterKey, SegmentKeys};
use registre_store::{AppendError, PurgeRequest, Query, Store};
use registre_store_pg::{PgOpenError, PgOptions, PgStore, rotate_master};
use tokio::net::{TcpListener, TcpStream};

fn mss() -> Query {
    Query {
        class: Some(ClassName::new("mss").expect("class")),
        ..Query::default()
    }
}

/// Two nodes append concurrently to one log: every acknowledged trace is
/// there exactly once, indexes are dense, both nodes serve one tree, and
/// checkpoints signed by either verify against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_log() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    let a = Arc::new(
        PgStore::open(h.options(clock.clone()))
            .await
            .expect("node a"),
    );
    let b = Arc::new(
        PgStore::open(h.options(clock.clone()))
            .await
            .expect("node b"),
    );
    assert_eq!(a.verifier_key(), b.verifier_key(), "one signing key");
    let mut tasks = Vec::new();
    for t in 0..8 {
        let node = if t % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for c in 0..20 {
                let batch = (0..5)
                    .map(|i| trace("mss", &format!("n{t}-{c}-{i}")))
                    .collect();
                got.extend(node.append(batch).await.expect("append"));
            }
            got
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.extend(t.await.expect("task"));
    }
    let indexes: BTreeSet<u64> = receipts.iter().map(|r| r.index).collect();
    assert_eq!(indexes.len(), 800, "each index acknowledged once");
    assert_eq!(
        indexes.into_iter().collect::<Vec<_>>(),
        (0..800).collect::<Vec<_>>()
    );
    // Every ack is there exactly once, as either node sees it.
    for node in [&a, &b] {
        let found = all(&**node, mss()).await;
        assert_eq!(found.len(), 800);
        let ids: BTreeSet<_> = found.iter().map(|r| (r.trace.index, r.trace.id)).collect();
        for r in &receipts {
            assert!(ids.contains(&(r.index, r.id)), "ack {} missing", r.index);
        }
    }
    let mut recs = all(&*a, mss()).await;
    recs.sort_by_key(|r| r.trace.index);
    let cs: Vec<_> = recs.iter().map(commitment_of).collect();
    let mut tree = merkle::MemoryTree::new();
    for c in &cs {
        tree.push(merkle::leaf_hash(c));
    }
    let verifier = Verifier::parse(&a.verifier_key()).expect("verifier");
    let cp_a = a.checkpoint("mss", true).await.expect("cp").expect("some");
    assert_eq!((cp_a.size, cp_a.root), (800, tree.root()));
    registre_log::checkpoint::open_checkpoint(
        cp_a.note.as_bytes(),
        std::slice::from_ref(&verifier),
    )
    .expect("a's checkpoint verifies");
    // B saw no new trace: same checkpoint, not a second signature.
    assert_eq!(
        b.checkpoint("mss", true).await.expect("cp"),
        Some(cp_a.clone())
    );
    b.append(vec![trace("mss", "after")]).await.expect("append");
    let cp_b = b.checkpoint("mss", true).await.expect("cp").expect("some");
    assert_eq!(cp_b.size, 801);
    registre_log::checkpoint::open_checkpoint(cp_b.note.as_bytes(), &[verifier])
        .expect("b's checkpoint verifies");
    // Proofs from either node against the other's checkpoints.
    let p = a
        .consistency_proof("mss", cp_a.size, cp_b.size)
        .await
        .expect("proof");
    merkle::verify_consistency(cp_a.size, cp_b.size, &cp_a.root, &cp_b.root, &p)
        .expect("consistent");
    for i in [0u64, 399, 799] {
        let p = b.inclusion_proof("mss", i, cp_a.size).await.expect("proof");
        merkle::verify_inclusion(
            &merkle::leaf_hash(&cs[i as usize]),
            i,
            cp_a.size,
            &p,
            &cp_a.root,
        )
        .expect("inclusion");
    }
    assert_eq!(
        a.checkpoint_history("mss").await.expect("h"),
        b.checkpoint_history("mss").await.expect("h")
    );
}

/// Forwards TCP to PostgreSQL until dropped (then every connection dies).
async fn forwarder(to: std::net::SocketAddr) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = l.accept().await {
            conns.spawn(async move {
                if let Ok(mut out) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (port, task)
}

/// PostgreSQL going away mid-life: appends answer an error (the HTTP layer
/// makes it a 503), never a receipt; and a store cannot open on a database
/// it cannot reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_means_append_errors() {
    let Some(h) = support::harness().await else {
        return;
    };
    let cfg: tokio_postgres::Config = h.url.parse().expect("url");
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let (fport, fwd) = forwarder(target).await;
    let user = cfg.get_user().unwrap_or("postgres");
    let db = cfg.get_dbname().unwrap_or("postgres");
    let via = format!("postgres://{user}@127.0.0.1:{fport}/{db}?connect_timeout=2");
    let clock = Arc::new(ManualClock::starting_now());
    let store = PgStore::open(PgOptions {
        url: via.clone(),
        ..h.options(clock.clone())
    })
    .await
    .expect("open through the forwarder");
    store
        .append(vec![trace("mss", "up")])
        .await
        .expect("append while up");
    fwd.abort();
    let _ = fwd.await;
    for i in 0..3 {
        let r = store.append(vec![trace("mss", &format!("down{i}"))]).await;
        assert!(
            matches!(r, Err(AppendError::Unavailable(_))),
            "append {i} while PostgreSQL is unreachable: {r:?}"
        );
    }
    assert!(store.search(mss()).await.is_err());
    assert!(store.stats().await.is_err());
    drop(store);
    // Nothing of what failed was stored.
    let store = PgStore::open(h.options(clock.clone())).await.expect("open");
    let found = all(&store, mss()).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].trace.actor.id, "actor-up");
    let err = PgStore::open(PgOptions {
        url: "postgres://postgres@127.0.0.1:1/test?connect_timeout=2".into(),
        ..h.options(clock)
    })
    .await
    .err()
    .expect("unreachable");
    assert!(matches!(err, PgOpenError::Connect(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    drop(PgStore::open(h.options(clock.clone())).await.expect("open"));
    let c = h.client().await;
    let v: i32 = c
        .query_one("SELECT max(version) FROM registre_schema", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(v, registre_store_pg::LATEST_VERSION);
    c.execute(
        "INSERT INTO registre_schema (version, name) VALUES (999, 'from the future')",
        &[],
    )
    .await
    .expect("insert");
    let err = PgStore::open(h.options(clock))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(err, PgOpenError::NewerSchema { found: 999, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_is_refused() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    let s = PgStore::open(h.options(clock.clone())).await.expect("open");
    s.append(vec![trace("mss", "k")]).await.expect("append");
    drop(s);
    let (other, _) = MasterKey::generate().expect("key");
    let err = PgStore::open(PgOptions {
        master_key: Arc::new(other),
        ..h.options(clock)
    })
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, PgOpenError::Key(_)), "{err}");
    assert!(err.to_string().contains("Nothing was touched"), "{err}");
}

/// Purge drops the partitions past retention and deletes their key rows
/// first: a copy of a purged partition's records opens with no key left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_drops_partitions_and_shreds_their_keys() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(0));
    let store = PgStore::open(h.options(clock.clone())).await.expect("open");
    clock.set(
        "2025-01-01T10:00:00Z"
            .parse::<jiff::Timestamp>()
            .expect("t")
            .as_microsecond(),
    );
    for m in 0..12 {
        store
            .append(vec![trace("mss", &format!("m{m}"))])
            .await
            .expect("append");
        clock.advance_secs(30 * 86_400);
    }
    let c = h.client().await;
    let parts_before: Vec<(String, String)> = c
        .query(
            "SELECT p.relname, 'mss/p' || p.period || '-' || p.first_index FROM partitions p \
             JOIN logs l ON l.id = p.log WHERE l.name = 'mss' ORDER BY p.period",
            &[],
        )
        .await
        .expect("partitions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(parts_before.len(), 12, "one partition per period");
    let (oldest, oldest_label) = parts_before[0].clone();
    let copy: Vec<(i64, Vec<u8>)> = c
        .query(&format!("SELECT idx, record FROM {oldest}"), &[])
        .await
        .expect("copy")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(copy.len(), 1);
    let report = store
        .purge(PurgeRequest {
            retention: vec![(
                ClassName::new("mss").expect("class"),
                Retention::parse("6 months").expect("retention"),
            )],
            ..PurgeRequest::default()
        })
        .await
        .expect("purge");
    let purged = report.logs[0].segments as usize;
    assert!(purged >= 5, "{purged} partitions purged");
    let exists = |name: String| {
        let c = &c;
        async move {
            c.query_opt("SELECT to_regclass($1)::text", &[&name])
                .await
                .expect("regclass")
                .and_then(|r| r.get::<_, Option<String>>(0))
                .is_some()
        }
    };
    for (i, (rel, label)) in parts_before.iter().enumerate() {
        let gone = i < purged;
        assert_eq!(!exists(rel.clone()).await, gone, "{rel}");
        let key = c
            .query_opt("SELECT 1 FROM data_keys WHERE label = $1", &[label])
            .await
            .expect("key");
        assert_eq!(key.is_none(), gone, "{label}");
    }
    assert_ne!(oldest_label, "");
    let records: i64 = c
        .query_one("SELECT count(*) FROM purges", &[])
        .await
        .expect("purges")
        .get(0);
    assert_eq!(records as usize, purged);
    // No key left in the journal opens the copied record.
    for r in c
        .query("SELECT label, wrapped FROM data_keys", &[])
        .await
        .expect("keys")
    {
        let label: String = r.get(0);
        let wrapped: Vec<u8> = r.get(1);
        let keys = SegmentKeys::from_bytes(
            &h.master
                .unwrap(std::path::Path::new("k"), &label, &wrapped)
                .expect("unwrap"),
        );
        for (idx, rec) in &copy {
            assert!(
                keys.open("mss", *idx as u64, &mut rec.clone()).is_none(),
                "{label}"
            );
        }
    }
    assert_eq!(all(&store, mss()).await.len(), 12 - purged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_rewraps_every_key() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    let store = PgStore::open(h.options(clock.clone())).await.expect("open");
    for i in 0..5 {
        store
            .append(vec![
                trace("mss", &format!("r{i}")),
                trace("technique", &format!("r{i}")),
            ])
            .await
            .expect("append");
        clock.advance_secs(86_400);
    }
    store
        .add_hold(registre_store::Hold {
            id: "h".into(),
            reason: "r".into(),
            filter: registre_store::HoldFilter::default(),
            created_by: "dpo".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            released_by: None,
            released_at: None,
        })
        .await
        .expect("hold");
    let key = store.verifier_key();
    drop(store);
    let (new, _) = MasterKey::generate().expect("key");
    let r = rotate_master(&h.url, &h.schema, None, &h.master, &new)
        .await
        .expect("rotate");
    assert!(r.rewrapped >= 10 + 3 + 2, "{r:?}");
    let again = rotate_master(&h.url, &h.schema, None, &h.master, &new)
        .await
        .expect("again");
    assert_eq!(again.rewrapped, 0, "resumable, idempotent");
    let new = Arc::new(new);
    let store = PgStore::open(PgOptions {
        master_key: new.clone(),
        ..h.options(clock.clone())
    })
    .await
    .expect("reopen with the new key");
    assert_eq!(store.verifier_key(), key);
    assert_eq!(all(&store, Query::default()).await.len(), 10);
    assert_eq!(store.holds().await.expect("holds").len(), 1);
    drop(store);
    assert!(matches!(
        PgStore::open(h.options(clock)).await.err(),
        Some(PgOpenError::Key(_))
    ));
}

/// TLS to PostgreSQL with the server certificate verified. Needs
/// `REGISTRE_TEST_DATABASE_TLS_URL` (`…?sslmode=require&sslrootcert=<CA>`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_verified_server_certificate() {
    let Some(h) = support::harness().await else {
        return;
    };
    let Ok(tls_url) = std::env::var("REGISTRE_TEST_DATABASE_TLS_URL") else {
        eprintln!("SKIP: REGISTRE_TEST_DATABASE_TLS_URL not set");
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    let store = PgStore::open(PgOptions {
        url: tls_url.clone(),
        ..h.options(clock.clone())
    })
    .await
    .expect("open over TLS");
    store
        .append(vec![trace("mss", "tls")])
        .await
        .expect("append");
    let c = h.client().await;
    let ssl: bool = c
        .query_one(
            "SELECT bool_or(ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'registre'",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl, "registre's connections use TLS");
    drop(store);
    // Trusting another CA only (the first of the system's bundle): refused.
    let Ok(bundle) = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt") else {
        return;
    };
    let end = "-----END CERTIFICATE-----";
    let Some(at) = bundle.find(end) else {
        return;
    };
    let other_ca = std::env::temp_dir().join(format!("{}-other-ca.pem", h.schema));
    std::fs::write(&other_ca, &bundle[..at + end.len()]).expect("write CA");
    let (base, _) = tls_url.split_once("sslrootcert=").unwrap_or((&tls_url, ""));
    let err = PgStore::open(PgOptions {
        url: base.trim_end_matches('&').to_owned(),
        tls_root_cert: Some(other_ca.clone()),
        ..h.options(clock)
    })
    .await
    .err()
    .expect("an unknown certificate is refused");
    let _ = std::fs::remove_file(other_ca);
    assert!(matches!(err, PgOpenError::Connect(_)), "{err}");
}

/// Rough figures, not a benchmark (`cargo test -p registre-store-pg --test
/// pg -- --ignored --nocapture`): 4 clients appending batches of 1,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn rough_throughput() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(PgStore::open(h.options(clock)).await.expect("open"));
    let start = std::time::Instant::now();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..10 {
                let batch = (0..1000)
                    .map(|i| trace("mss", &format!("{t}-{b}-{i}")))
                    .collect();
                store.append(batch).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "append: 40000 traces in {secs:.2} s = {:.0} traces/s",
        40_000.0 / secs
    );
    let mut lat = Vec::new();
    for i in 0..200 {
        let t = std::time::Instant::now();
        let p = store
            .search(Query {
                actor: Some(format!("actor-{}-{}-{}", i % 4, i % 10, i)),
                limit: 20,
                ..Query::default()
            })
            .await
            .expect("search");
        assert_eq!(p.traces.len(), 1);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "search by actor, first page: p50 {:.2} ms, p99 {:.2} ms",
        lat[100], lat[197]
    );
    let t = std::time::Instant::now();
    let cp = store
        .checkpoint("mss", true)
        .await
        .expect("cp")
        .expect("some");
    eprintln!(
        "first checkpoint of {} traces: {:.0} ms",
        cp.size,
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = std::time::Instant::now();
    for i in 0..100 {
        store
            .inclusion_proof("mss", i * 37, cp.size)
            .await
            .expect("proof");
    }
    eprintln!(
        "inclusion proof: {:.2} ms each",
        t.elapsed().as_secs_f64() * 10.0
    );
    let c = h.client().await;
    let bytes: i64 = c
        .query_one(
            "SELECT sum(pg_total_relation_size(c.oid))::int8 FROM pg_class c JOIN pg_namespace n \
             ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            &[&h.schema],
        )
        .await
        .expect("size")
        .get(0);
    eprintln!(
        "{:.0} bytes per trace at rest, all tables",
        bytes as f64 / 40_000.0
    );
}
