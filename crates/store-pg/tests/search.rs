//! Search on PostgreSQL beyond the conformance suite: pages across logs,
//! many partitions and held traces against a reference computed from what
//! was appended; partitions opened and dropped by another node while this
//! one keeps its statements; the scan budget. Needs
//! `REGISTRE_TEST_DATABASE_URL`.

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::sync::Arc;

use registre_model::{Action, ClassName, Limits, Retention, Trace, parse_trace};
use registre_store::clock::ManualClock;
use registre_store::{PurgeRequest, Query, Store, StoredRecord};
use registre_store_pg::PgStore;

const HOUR: i64 = 3_600;

fn micros(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_microsecond()
}

fn trace(class: &str, actor: &str, action: &str, occurred_at: &str) -> Trace {
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"{occurred_at}","actor":{{"id":"{actor}"}},"action":"{action}","target":{{"mailbox":"box-{actor}@hopital.fr","patient":{{"id":"patient-{actor}"}}}}}}"#
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

/// What the test appended: enough to say what each query must find.
#[derive(Clone)]
struct Sent {
    log: String,
    index: u64,
    received_at: i64,
    actor: String,
    action: String,
    occurred_at: i64,
}

impl Sent {
    fn matches(&self, q: &Query) -> bool {
        q.class.as_ref().is_none_or(|c| c.as_str() == self.log)
            && q.actor.as_deref().is_none_or(|a| a == self.actor)
            && q.action.as_ref().is_none_or(|a| a.as_str() == self.action)
            && q.since.is_none_or(|s| self.received_at >= s)
            && q.until.is_none_or(|u| self.received_at < u)
            && q.occurred_since.is_none_or(|s| self.occurred_at >= s)
            && q.occurred_until.is_none_or(|u| self.occurred_at < u)
    }
}

/// Newest reception first, then the logs in name order, then the index.
fn expected(sent: &[Sent], q: &Query) -> Vec<(String, u64)> {
    let mut v: Vec<&Sent> = sent.iter().filter(|s| s.matches(q)).collect();
    v.sort_by(|a, b| {
        b.received_at
            .cmp(&a.received_at)
            .then_with(|| a.log.cmp(&b.log))
            .then_with(|| b.index.cmp(&a.index))
    });
    v.iter().map(|s| (s.log.clone(), s.index)).collect()
}

fn ids(rs: &[StoredRecord]) -> Vec<(String, u64)> {
    rs.iter()
        .map(|r| (r.trace.log.as_str().to_owned(), r.trace.index))
        .collect()
}

/// Every page of `q` at `limit` per page: the traces in order, and how
/// many pages.
async fn paged(store: &PgStore, q: &Query, limit: usize) -> (Vec<(String, u64)>, usize) {
    let mut q = Query { limit, ..q.clone() };
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.search(q.clone()).await.expect("search");
        pages += 1;
        assert!(page.traces.len() <= limit);
        out.extend(ids(&page.traces));
        match page.next {
            Some(c) => {
                // Round trip through the wire form, as a client does.
                q.cursor = Some(registre_store::Cursor::decode(&c.encode()).expect("cursor"));
            }
            None => break,
        }
        assert!(pages < 10_000, "paging does not end");
    }
    (out, pages)
}

async fn append(
    store: &PgStore,
    clock: &ManualClock,
    sent: &mut Vec<Sent>,
    traces: Vec<(Trace, i64)>,
) {
    let now = clock.now();
    let (traces, occurred): (Vec<Trace>, Vec<i64>) = traces.into_iter().unzip();
    let receipts = store.append(traces.clone()).await.expect("append");
    for ((t, r), occurred_at) in traces.iter().zip(receipts).zip(occurred) {
        sent.push(Sent {
            log: r.log.as_str().to_owned(),
            index: r.index,
            received_at: now,
            actor: t.actor.id.clone(),
            action: t.action.as_str().to_owned(),
            occurred_at,
        });
    }
}

/// Twelve hourly partitions per log, two receptions an hour (traces of
/// one reception share its time, across logs), the oldest partitions of
/// two logs purged with a hold keeping one actor's traces: every query,
/// at every page size, pages through exactly the reference, in order,
/// with no empty page; a single page of everything is the same list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_across_logs_partitions_and_holds() {
    let Some(h) = support::harness().await else {
        return;
    };
    let t0 = micros("2026-01-05T00:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let mut opts = h.options(clock.clone());
    opts.partition_period_secs = HOUR as u64;
    let store = PgStore::open(opts).await.expect("open");
    let classes = ["mss", "technique", "applicative"];
    let actions = ["consultation", "envoi", "suppression"];
    let mut sent = Vec::new();
    // An actor seen only in the oldest partition of one log: found through
    // several windows of partitions.
    append(
        &store,
        &clock,
        &mut sent,
        vec![(
            trace("applicative", "rare", "envoi", "2026-01-05T00:00:00Z"),
            t0,
        )],
    )
    .await;
    for hour in 0..12i64 {
        for half in 0..2i64 {
            let n = 3 + ((hour * 7 + half * 5) % 11) as usize;
            let batch = (0..n)
                .map(|i| {
                    let k = hour as usize * 31 + half as usize * 17 + i;
                    let class = classes[k % 3];
                    let actor = format!("a{}", (k / 3) % 4);
                    // Action times scattered over two days.
                    let occurred = t0 + ((k * 7_919) % 48) as i64 * HOUR * 1_000_000;
                    let at = jiff::Timestamp::from_microsecond(occurred).expect("t");
                    (
                        trace(class, &actor, actions[k % 3], &at.to_string()),
                        occurred,
                    )
                })
                .collect();
            append(&store, &clock, &mut sent, batch).await;
            clock.advance_secs(HOUR / 2);
        }
    }
    // Purge the partitions of mss and technique older than six hours; a
    // hold keeps actor a1's traces (re-sealed into `held`).
    let now = clock.now();
    let cutoff = Retention::parse("6 hours").expect("r").cutoff(now);
    let report = store
        .purge(PurgeRequest {
            retention: vec![
                (
                    ClassName::new("mss").expect("c"),
                    Retention::parse("6 hours").expect("r"),
                ),
                (
                    ClassName::new("technique").expect("c"),
                    Retention::parse("6 hours").expect("r"),
                ),
            ],
            holds: vec![Query {
                actor: Some("a1".into()),
                ..Query::default()
            }],
            dry_run: false,
            progress: None,
        })
        .await
        .expect("purge");
    assert!(report.purged() > 0);
    let held = sent
        .iter()
        .filter(|s| s.log != "applicative" && s.received_at < cutoff && s.actor == "a1")
        .count();
    assert!(held > 0);
    sent.retain(|s| s.log == "applicative" || s.received_at >= cutoff || s.actor == "a1");

    let log = |c: &str| Some(ClassName::new(c).expect("class"));
    let queries = vec![
        Query::default(),
        Query {
            actor: Some("a1".into()),
            ..Query::default()
        },
        Query {
            actor: Some("a2".into()),
            class: log("mss"),
            ..Query::default()
        },
        Query {
            action: Action::parse("envoi"),
            ..Query::default()
        },
        Query {
            since: Some(t0 + 3 * HOUR * 1_000_000),
            until: Some(t0 + 9 * HOUR * 1_000_000),
            ..Query::default()
        },
        // Action time: most candidates fail the exact check.
        Query {
            occurred_since: Some(t0 + 5 * HOUR * 1_000_000),
            occurred_until: Some(t0 + 7 * HOUR * 1_000_000),
            ..Query::default()
        },
        Query {
            actor: Some("a1".into()),
            occurred_until: Some(t0 + 20 * HOUR * 1_000_000),
            class: log("technique"),
            ..Query::default()
        },
        Query {
            actor: Some("rare".into()),
            ..Query::default()
        },
        Query {
            actor: Some("nobody".into()),
            ..Query::default()
        },
    ];
    for q in &queries {
        let want = expected(&sent, q);
        let one = store
            .search(Query {
                limit: 10_000,
                ..q.clone()
            })
            .await
            .expect("search");
        assert_eq!(ids(&one.traces), want, "one page of {q:?}");
        assert!(one.next.is_none(), "{q:?}");
        for limit in [1, 2, 3, 7, 50] {
            let (got, pages) = paged(&store, q, limit).await;
            assert_eq!(got, want, "{q:?} by {limit}");
            assert_eq!(pages, want.len().div_ceil(limit).max(1), "{q:?} by {limit}");
        }
    }
    // The same after a restart (no units cached, statements prepared again).
    drop(store);
    let mut opts = h.options(clock.clone());
    opts.partition_period_secs = HOUR as u64;
    let store = PgStore::open(opts).await.expect("reopen");
    for q in &queries {
        let (got, _) = paged(&store, q, 5).await;
        assert_eq!(got, expected(&sent, q), "after reopening, {q:?}");
    }
}

/// A node keeps its partitions and statements between searches; another
/// node opens a partition, purges one (with a hold), and appends again:
/// the first node's searches see each change at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_partitions_and_purges_are_seen() {
    let Some(h) = support::harness().await else {
        return;
    };
    let t0 = micros("2026-01-05T00:00:00Z");
    let clock = Arc::new(ManualClock::new(t0));
    let open = || {
        let mut opts = h.options(clock.clone());
        opts.partition_period_secs = HOUR as u64;
        PgStore::open(opts)
    };
    let a = open().await.expect("open a");
    let b = open().await.expect("open b");
    let mut sent = Vec::new();
    let occurred = micros("2026-01-04T12:00:00Z");
    let at = "2026-01-04T12:00:00Z";
    let batch = |actor: &str| -> Vec<(Trace, i64)> {
        (0..4)
            .map(|_| (trace("mss", actor, "consultation", at), occurred))
            .collect()
    };
    append(&a, &clock, &mut sent, batch("x")).await;
    append(&a, &clock, &mut sent, batch("held")).await;
    check(&sent, &a).await;
    // B opens the next hour's partition.
    clock.advance_secs(HOUR);
    append(&b, &clock, &mut sent, batch("y")).await;
    check(&sent, &a).await;
    // B purges the first hour (A's statements still name its table),
    // keeping actor `held`.
    clock.advance_secs(HOUR);
    let retention = Retention::parse(&format!("{} seconds", HOUR + 1)).expect("r");
    let cutoff = retention.cutoff(clock.now());
    b.purge(PurgeRequest {
        retention: vec![(ClassName::new("mss").expect("c"), retention)],
        holds: vec![Query {
            actor: Some("held".into()),
            ..Query::default()
        }],
        dry_run: false,
        progress: None,
    })
    .await
    .expect("purge");
    sent.retain(|s| s.received_at >= cutoff || s.actor == "held");
    assert_eq!(sent.len(), 8);
    check(&sent, &a).await;
    let held = a
        .search(Query {
            actor: Some("held".into()),
            limit: 100,
            ..Query::default()
        })
        .await
        .expect("search");
    assert_eq!(
        held.traces.len(),
        4,
        "held traces found by their blind values"
    );
    // And B appends again in a new hour: A sees it.
    clock.advance_secs(HOUR);
    append(&b, &clock, &mut sent, batch("z")).await;
    check(&sent, &a).await;
    check(&sent, &b).await;
}

/// Every trace, pages of 3, is what was sent.
async fn check(sent: &[Sent], store: &PgStore) {
    let (got, _) = paged(store, &Query::default(), 3).await;
    assert_eq!(got, expected(sent, &Query::default()));
}

/// A query whose filters rarely match reads at most the scan budget per
/// log per call: a page may come back short (even empty) with a cursor,
/// and paging on finds every match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_budget_bounds_each_call() {
    let Some(h) = support::harness().await else {
        return;
    };
    let clock = Arc::new(ManualClock::new(micros("2026-01-05T00:00:00Z")));
    let store = PgStore::open(h.options(clock.clone())).await.expect("open");
    let mut sent = Vec::new();
    let early = micros("2026-01-01T00:00:00Z");
    append(
        &store,
        &clock,
        &mut sent,
        vec![(
            trace("technique", "t", "consultation", "2026-01-01T00:00:00Z"),
            early,
        )],
    )
    .await;
    let late = micros("2026-01-04T00:00:00Z");
    for _ in 0..5 {
        clock.advance_secs(1);
        let batch = (0..5_000)
            .map(|_| {
                (
                    trace("technique", "t", "consultation", "2026-01-04T00:00:00Z"),
                    late,
                )
            })
            .collect();
        append(&store, &clock, &mut sent, batch).await;
    }
    let q = Query {
        occurred_until: Some(micros("2026-01-02T00:00:00Z")),
        limit: 10,
        ..Query::default()
    };
    let first = store.search(q.clone()).await.expect("search");
    assert!(first.traces.is_empty(), "past the budget");
    let cursor = first.next.expect("a cursor to go on");
    assert!(
        cursor
            .bound("technique")
            .is_some_and(|b| b > 0 && b < 25_001)
    );
    let (got, pages) = paged(&store, &q, 10).await;
    assert_eq!(got, expected(&sent, &q));
    assert_eq!(got.len(), 1);
    assert_eq!(pages, 2);
}

/// Rough figures, not a benchmark (`cargo test -p registre-store-pg --test
/// search -- --ignored --nocapture`; `REGISTRE_PG_SEARCH_TRACES`, default
/// 200,000, of `REGISTRE_PG_SEARCH_ACTORS`, default 10,000): first pages by
/// actor, before and after `ANALYZE`, each next to a bare prepared
/// statement reading another actor's rows from the leaf table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn search_latency() {
    let Some(h) = support::harness().await else {
        return;
    };
    let n: usize = std::env::var("REGISTRE_PG_SEARCH_TRACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let actors: u64 = std::env::var("REGISTRE_PG_SEARCH_ACTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(PgStore::open(h.options(clock)).await.expect("open"));
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut done = 0;
    while done < n {
        let batch: Vec<Trace> = (0..1000.min(n - done))
            .map(|_| {
                // About the bench's traces (430 B of JSON).
                let j = format!(
                    r#"{{"class":"mss","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"8100{:08}","id_type":"rpps","auth":"psc"}},"action":"consultation","target":{{"mailbox":"prenom.nom{:05}@hopital-01.mssante.fr","folder":"INBOX","uids":"4242"}},"request":"UID FETCH 4242 (BODY.PEEK[] FLAGS)","response":{{"status":"OK","text":"Completed (0.001 + 0.000 secs)."}},"outcome":"success","source":{{"ip":"10.1.2.3","software":"MonLPS 4.2","session":"{:016x}"}}}}"#,
                    next() % actors,
                    next() % 20_000,
                    next()
                );
                parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
            })
            .collect();
        done += batch.len();
        store.append(batch).await.expect("append");
    }
    // Interleaved with the store's searches, the bare leaf: one prepared
    // index scan by a blind value of an existing row, nothing opened.
    let c = h.client().await;
    let leaf: String = c
        .query_one("SELECT relname FROM partitions LIMIT 1", &[])
        .await
        .expect("leaf")
        .get(0);
    let bare = c
        .prepare(&format!(
            "SELECT idx, received_at, record FROM {leaf} WHERE actor = $1 \
             ORDER BY idx DESC LIMIT 51"
        ))
        .await
        .expect("prepare");
    let p = |lat: &mut Vec<f64>, f: f64| {
        lat.sort_by(f64::total_cmp);
        lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)]
    };
    for analysed in [false, true] {
        if analysed {
            c.batch_execute("ANALYZE traces").await.expect("analyze");
        }
        let blinds: Vec<i64> = c
            .query(
                &format!("SELECT actor FROM {leaf} ORDER BY random() LIMIT 2000"),
                &[],
            )
            .await
            .expect("blinds")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (mut store_lat, mut bare_lat) = (Vec::new(), Vec::new());
        let mut found = 0;
        for (i, b) in blinds.iter().enumerate() {
            let q = Query {
                actor: Some(format!("8100{:08}", next() % actors)),
                limit: 50,
                ..Query::default()
            };
            let t = std::time::Instant::now();
            let page = store.search(q).await.expect("search");
            let store_t = t.elapsed().as_secs_f64() * 1e3;
            found += page.traces.len();
            let t = std::time::Instant::now();
            let rows = c.query(&bare, &[b]).await.expect("query");
            let bare_t = t.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(rows);
            if i >= 100 {
                store_lat.push(store_t);
                bare_lat.push(bare_t);
            }
        }
        eprintln!(
            "{n} traces{}, first page by actor ({} found per page): store p50 {:.3} ms, \
             p99 {:.3} ms; bare leaf p50 {:.3} ms, p99 {:.3} ms",
            if analysed { ", analysed" } else { "" },
            found / blinds.len().max(1),
            p(&mut store_lat, 0.5),
            p(&mut store_lat, 0.99),
            p(&mut bare_lat, 0.5),
            p(&mut bare_lat, 0.99)
        );
    }
}
