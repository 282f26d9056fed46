//! The `Store` conformance suite: the behaviour every backend must show,
//! written once against the [`Store`] trait and instantiated per backend
//! (as rustls runs its tests once per crypto provider) with
//! [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! registre_store::conformance_tests!(my_backend::harness);
//! ```
//!
//! where `harness` is an `async fn() -> Option<H>` with `H:` [`Harness`]
//! (`None`: the backend is not available here, the tests pass as skipped).
//!
//! Every test gets a fresh backend (its own directory or database schema),
//! three classes (`mss`, `technique`, `applicative`), one-day segments or
//! partitions, and a [`ManualClock`] so retention can jump months.
//! Panics are the failures (this is test code).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use registre_log::merkle::{self, Hash, MemoryTree};
use registre_log::note::Verifier;
use registre_log::tile::{BundleId, TileId, TilePath};
use registre_model::{ClassName, Limits, Retention, Trace, parse_trace};

use crate::clock::ManualClock;
use crate::{
    AppendError, BoxFuture, Hold, HoldError, HoldFilter, PurgeRequest, Query, Store, StoredRecord,
};

/// One backend under test.
pub trait Harness: Send + Sync + Sized + 'static {
    type S: Store;

    /// Opens the backend's store: the same data again after the previous
    /// store was dropped (reopen). Classes `mss`, `technique`,
    /// `applicative`; one-day segments or partitions; reception times and
    /// retention read from `clock`.
    fn open(&self, clock: Arc<ManualClock>) -> BoxFuture<'_, Self::S>;

    /// Every byte the backend holds at rest, each chunk named by where it
    /// is (a file, a table's rows), for the "nothing in clear" test.
    fn at_rest(&self) -> BoxFuture<'_, Vec<(String, Vec<u8>)>>;

    /// Releases what the harness created (a directory, a schema).
    fn finish(self) -> BoxFuture<'static, ()>;
}

/// Instantiates every conformance test as a `#[tokio::test]` of the calling
/// test crate, each with a harness from `$harness` (an `async fn() ->
/// Option<impl Harness>`).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:path) => {
        $crate::conformance_tests!(@each $harness;
            append_receipts_in_order,
            concurrent_appends_are_dense,
            unknown_classes_are_refused,
            search_filters,
            action_time_search,
            pagination_sees_each_trace_once,
            checkpoints_and_proofs_verify,
            tiles_and_bundles_match_the_tree,
            purge_with_holds,
            holds_add_release_and_protect,
            reopen_keeps_everything,
            no_personal_value_in_clear_at_rest
        );
    };
    (@each $harness:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(h) = $harness().await else {
                    return;
                };
                $crate::conformance::$name(&h).await;
                $crate::conformance::Harness::finish(h).await;
            }
        )*
    };
}

const DAY: i64 = 86_400;

/// The classes every harness opens.
pub fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("valid"))
        .collect()
}

fn micros(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_microsecond()
}

/// A trace whose every personal value carries `tag`.
pub fn trace(class: &str, tag: &str) -> Trace {
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"actor-{tag}"}},"action":"consultation","target":{{"mailbox":"box-{tag}@hopital.fr","patient":{{"id":"patient-{tag}"}}}},"request":"UID FETCH 4 (BODY.PEEK[]) req-{tag}"}}"#
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

fn trace_with(class: &str, actor: &str, mailbox: &str, patient: &str, action: &str) -> Trace {
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"{actor}"}},"action":"{action}","target":{{"mailbox":"{mailbox}","patient":{{"id":"{patient}"}}}}}}"#
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

fn policy(mss: &str, technique: &str, applicative: &str) -> Vec<(ClassName, Retention)> {
    [
        ("mss", mss),
        ("technique", technique),
        ("applicative", applicative),
    ]
    .iter()
    .map(|(c, r)| {
        (
            ClassName::new(c).expect("class"),
            Retention::parse(r).expect("retention"),
        )
    })
    .collect()
}

/// Every trace a query finds, paging to the end.
pub async fn all<S: Store>(store: &S, q: Query) -> Vec<StoredRecord> {
    let mut q = Query { limit: 1000, ..q };
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let page = store.search(q.clone()).await.expect("search");
        out.extend(page.traces);
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("paging does not end");
}

fn class_q(c: &str) -> Query {
    Query {
        class: Some(ClassName::new(c).expect("class")),
        ..Query::default()
    }
}

fn actor_q(a: &str) -> Query {
    Query {
        actor: Some(a.into()),
        ..Query::default()
    }
}

/// A record's commitment, recomputed from what a search returned.
pub fn commitment_of(r: &StoredRecord) -> Hash {
    let mut rec = r.salt.to_vec();
    r.trace.write_canonical(&mut rec);
    crate::commitment(&rec)
}

/// The commitments of a log, by index, from its searchable traces.
async fn commitments<S: Store>(store: &S, log: &str) -> Vec<Hash> {
    let mut recs = all(store, class_q(log)).await;
    recs.sort_by_key(|r| r.trace.index);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.trace.index, i as u64, "dense indexes");
    }
    recs.iter().map(commitment_of).collect()
}

fn tree_of(cs: &[Hash]) -> MemoryTree {
    let mut t = MemoryTree::new();
    for c in cs {
        t.push(merkle::leaf_hash(c));
    }
    t
}

/// Once a month for 12 months from 2025-01-01, one trace per class tagged
/// `<class>-m<month>`.
async fn a_year_of_traces<S: Store>(store: &S, clock: &ManualClock) {
    clock.set(micros("2025-01-01T10:00:00Z"));
    for m in 0..12 {
        let batch = ["mss", "technique", "applicative"]
            .iter()
            .map(|c| trace(c, &format!("{c}-m{m}")))
            .collect();
        store.append(batch).await.expect("append");
        clock.advance_secs(30 * DAY);
    }
}

fn hold(id: &str, filter: HoldFilter) -> Hold {
    Hold {
        id: id.into(),
        reason: "réquisition judiciaire".into(),
        filter,
        created_by: "dpo".into(),
        created_at: "2025-12-01T00:00:00Z".into(),
        released_by: None,
        released_at: None,
    }
}

fn now_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::starting_now())
}

// ---------------------------------------------------------------- append

/// Receipts come in the order of the input, with each trace's log, dense
/// indexes per log from 0, and distinct ids; the traces are then visible.
pub async fn append_receipts_in_order<H: Harness>(h: &H) {
    let store = h.open(now_clock()).await;
    let order = [
        "mss",
        "applicative",
        "mss",
        "technique",
        "mss",
        "applicative",
    ];
    let batch: Vec<Trace> = (0..30)
        .map(|i| trace(order[i % order.len()], &format!("r{i}")))
        .collect();
    let receipts = store.append(batch).await.expect("append");
    assert_eq!(receipts.len(), 30);
    let mut next = std::collections::BTreeMap::<String, u64>::new();
    let mut ids = BTreeSet::new();
    for (i, r) in receipts.iter().enumerate() {
        assert_eq!(r.log.as_str(), order[i % order.len()], "receipt {i}");
        let n = next.entry(r.log.as_str().to_owned()).or_default();
        assert_eq!(r.index, *n, "receipt {i}: dense, in input order");
        *n += 1;
        assert!(ids.insert(r.id), "ids are distinct");
    }
    // A second call continues each log.
    let more = store
        .append(vec![trace("technique", "t"), trace("mss", "m")])
        .await
        .expect("append");
    assert_eq!((more[0].log.as_str(), more[0].index), ("technique", 5));
    assert_eq!((more[1].log.as_str(), more[1].index), ("mss", 15));
    // Acknowledged ⇒ visible, with what the receipt says.
    for (i, r) in receipts.iter().enumerate() {
        let found = all(&store, actor_q(&format!("actor-r{i}"))).await;
        assert_eq!(found.len(), 1, "trace {i}");
        assert_eq!(found[0].trace.log, r.log);
        assert_eq!(found[0].trace.index, r.index);
        assert_eq!(found[0].trace.id, r.id);
    }
    let stats = store.stats().await.expect("stats");
    let size = |l: &str| stats.iter().find(|s| s.log.as_str() == l).map(|s| s.size);
    assert_eq!(size("mss"), Some(16));
    assert_eq!(size("technique"), Some(6));
    assert_eq!(size("applicative"), Some(10));
    assert_eq!(store.classes().len(), 3);
}

/// Concurrent appends (group commit): every acknowledged trace has its own
/// index, indexes stay dense, each call's receipts increase.
pub async fn concurrent_appends_are_dense<H: Harness>(h: &H) {
    let store = Arc::new(h.open(now_clock()).await);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for c in 0..10 {
                let batch = (0..5)
                    .map(|i| trace("mss", &format!("c{t}-{c}-{i}")))
                    .collect();
                let r = store.append(batch).await.expect("append");
                assert!(r.windows(2).all(|w| w[0].index < w[1].index));
                got.extend(r);
            }
            got
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        indexes.extend(t.await.expect("task").into_iter().map(|r| r.index));
    }
    indexes.sort_unstable();
    assert_eq!(indexes, (0..400).collect::<Vec<u64>>());
    assert_eq!(all(&*store, class_q("mss")).await.len(), 400);
    let cs = commitments(&*store, "mss").await;
    let cp = store
        .checkpoint("mss", true)
        .await
        .expect("checkpoint")
        .expect("some");
    assert_eq!(cp.size, 400);
    assert_eq!(cp.root, tree_of(&cs).root());
}

/// A trace of a class the store does not have is refused, and nothing of
/// its call is acknowledged; searching that class is an error.
pub async fn unknown_classes_are_refused<H: Harness>(h: &H) {
    let store = h.open(now_clock()).await;
    let err = store
        .append(vec![trace("mss", "a"), trace("autre", "b")])
        .await
        .expect_err("unknown class");
    assert!(matches!(err, AppendError::UnknownClass(c) if c == "autre"));
    assert!(
        store
            .search(class_q("autre"))
            .await
            .is_err_and(|e| matches!(e, crate::SearchError::UnknownClass(_)))
    );
    assert!(store.checkpoint("autre", true).await.is_err());
    assert!(store.checkpoint_history("autre").await.is_err());
    assert!(store.inclusion_proof("autre", 0, 1).await.is_err());
}

// ---------------------------------------------------------------- search

/// 60 traces in three receptions 10 s apart: each filter alone and
/// combined, newest first.
async fn search_fixture<S: Store>(store: &S, clock: &ManualClock) -> [i64; 3] {
    let mut at = [0i64; 3];
    for (b, slot) in at.iter_mut().enumerate() {
        *slot = clock.now();
        let batch = (b * 20..b * 20 + 20)
            .map(|i| {
                trace_with(
                    if i % 2 == 0 { "mss" } else { "applicative" },
                    &format!("a{}", i % 3),
                    &format!("Box{}@Hopital.FR", i % 4),
                    &format!("p{}", i % 5),
                    if i % 2 == 0 { "consultation" } else { "envoi" },
                )
            })
            .collect();
        store.append(batch).await.expect("append");
        clock.advance_secs(10);
    }
    at
}

pub async fn search_filters<H: Harness>(h: &H) {
    let clock = now_clock();
    let store = h.open(clock.clone()).await;
    let at = search_fixture(&store, &clock).await;
    let n = |f: &dyn Fn(usize) -> bool| (0..60).filter(|&i| f(i)).count();

    let a1 = all(&store, actor_q("a1")).await;
    assert_eq!(a1.len(), n(&|i| i % 3 == 1));
    assert!(a1.iter().all(|r| r.trace.actor.id == "a1"));
    // Newest first: reception time never increases along the results.
    assert!(
        a1.windows(2)
            .all(|w| micros(&w[0].trace.received_at) >= micros(&w[1].trace.received_at))
    );
    let mailbox = all(
        &store,
        Query {
            mailbox: Some("box2@hopital.fr".into()),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(mailbox.len(), n(&|i| i % 4 == 2), "mailboxes ignore case");
    let patient = all(
        &store,
        Query {
            patient: Some("p3".into()),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(patient.len(), n(&|i| i % 5 == 3));
    assert!(
        all(
            &store,
            Query {
                patient: Some("P3".into()),
                ..Query::default()
            }
        )
        .await
        .is_empty(),
        "patient ids are exact"
    );
    let envoi = all(
        &store,
        Query {
            action: registre_model::Action::parse("envoi"),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(envoi.len(), 30);
    assert!(
        envoi
            .iter()
            .all(|r| r.trace.class.as_str() == "applicative")
    );
    assert_eq!(all(&store, class_q("mss")).await.len(), 30);
    let combined = all(
        &store,
        Query {
            actor: Some("a0".into()),
            patient: Some("p0".into()),
            class: Some(ClassName::new("mss").expect("class")),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(
        combined.len(),
        n(&|i| i % 3 == 0 && i % 5 == 0 && i % 2 == 0)
    );
    // Time bounds: since inclusive, until exclusive.
    let middle = all(
        &store,
        Query {
            since: Some(at[1]),
            until: Some(at[2]),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(middle.len(), 20);
    let newest = all(
        &store,
        Query {
            since: Some(at[2]),
            actor: Some("a2".into()),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(newest.len(), (40..60).filter(|i| i % 3 == 2).count());
    assert!(all(&store, actor_q("nobody")).await.is_empty());
    let bad = Query {
        cursor: Some(crate::Cursor {
            bounds: vec![("mss".into(), 1)],
        }),
        ..Query::default()
    };
    assert!(store.search(bad).await.is_ok());
    assert!(crate::Cursor::decode("v1.!!").is_err());
}

fn occurred_trace(class: &str, actor: &str, occurred_at: &str) -> Trace {
    let j = format!(
        r#"{{"class":"{class}","occurred_at":"{occurred_at}","actor":{{"id":"{actor}"}},"action":"consultation"}}"#
    );
    parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
}

/// Searches by action time (`occurred_since`/`occurred_until`): the instant
/// each `occurred_at` names, whatever its offset, inclusive since and
/// exclusive until; a trace received days after its action is found by a
/// search with an upper bound; combined with other filters and paging.
pub async fn action_time_search<H: Harness>(h: &H) {
    let clock = now_clock();
    let store = h.open(clock.clone()).await;
    // Day 1: actions of that morning, in Paris time and in UTC.
    let times = [
        "2026-11-02T08:00:00+01:00", // 07:00Z
        "2026-11-02T07:30:00Z",
        "2026-11-02T09:59:59.999+01:00", // 08:59:59.999Z
        "2026-11-02T10:00:00+01:00",     // 09:00Z
        "2026-11-02T12:00:00-03:00",     // 15:00Z
    ];
    for (i, t) in times.iter().enumerate() {
        let actor = if i % 2 == 0 { "even" } else { "odd" };
        store
            .append(vec![occurred_trace("mss", actor, t)])
            .await
            .expect("append");
        clock.advance_secs(60);
    }
    // Three days later, an action of day 1 arrives late, in another log.
    clock.advance_secs(3 * DAY);
    store
        .append(vec![
            occurred_trace("technique", "late", "2026-11-02T08:15:00+01:00"),
            occurred_trace("mss", "today", "2026-11-05T08:15:00+01:00"),
        ])
        .await
        .expect("append");
    let range = |since: &str, until: &str| Query {
        occurred_since: Some(micros(since)),
        occurred_until: Some(micros(until)),
        ..Query::default()
    };
    let actors = |rs: &[StoredRecord]| -> Vec<String> {
        let mut v: Vec<String> = rs
            .iter()
            .map(|r| format!("{}@{}", r.trace.actor.id, r.trace.occurred_at))
            .collect();
        v.sort();
        v
    };
    // 07:00Z ≤ t < 09:00Z: three of day 1 and the late one.
    let got = all(
        &store,
        range("2026-11-02T07:00:00Z", "2026-11-02T09:00:00Z"),
    )
    .await;
    assert_eq!(
        actors(&got),
        [
            "even@2026-11-02T08:00:00+01:00",
            "even@2026-11-02T09:59:59.999+01:00",
            "late@2026-11-02T08:15:00+01:00",
            "odd@2026-11-02T07:30:00Z",
        ]
    );
    // Newest first by reception, across logs: the late one first.
    assert_eq!(got[0].trace.actor.id, "late");
    // With another filter, one log, and small pages.
    let mut q = Query {
        actor: Some("even".into()),
        class: Some(ClassName::new("mss").expect("class")),
        limit: 1,
        ..range("2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z")
    };
    let mut pages = Vec::new();
    loop {
        let page = store.search(q.clone()).await.expect("search");
        pages.extend(page.traces);
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|r| r.trace.actor.id == "even"));
    // Only a lower bound; only an upper bound.
    let since = all(
        &store,
        Query {
            occurred_since: Some(micros("2026-11-02T15:00:00Z")),
            ..Query::default()
        },
    )
    .await;
    assert_eq!(
        actors(&since),
        [
            "even@2026-11-02T12:00:00-03:00",
            "today@2026-11-05T08:15:00+01:00"
        ]
    );
    let until = all(
        &store,
        Query {
            occurred_until: Some(micros("2026-11-02T07:00:00Z")),
            ..Query::default()
        },
    )
    .await;
    assert!(until.is_empty(), "{:?}", actors(&until));
    // After a restart (sealed segments, indexes read from disk), the same.
    drop(store);
    let store = h.open(clock.clone()).await;
    let again = all(
        &store,
        range("2026-11-02T07:00:00Z", "2026-11-02T09:00:00Z"),
    )
    .await;
    assert_eq!(actors(&again), actors(&got));
}

/// Small pages: every trace exactly once, newest first across logs, and the
/// view frozen at the first page (traces appended while paging are not
/// shown by that paging).
pub async fn pagination_sees_each_trace_once<H: Harness>(h: &H) {
    let clock = now_clock();
    let store = h.open(clock.clone()).await;
    search_fixture(&store, &clock).await;
    for filter in [Query::default(), actor_q("a1")] {
        let expected = all(&store, filter.clone()).await.len();
        let mut q = Query {
            limit: 7,
            ..filter.clone()
        };
        let mut seen = BTreeSet::new();
        let mut times = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.search(q.clone()).await.expect("search");
            assert!(page.traces.len() <= 7);
            for r in &page.traces {
                assert!(
                    seen.insert((r.trace.log.as_str().to_owned(), r.trace.index)),
                    "seen twice"
                );
                times.push(micros(&r.trace.received_at));
            }
            pages += 1;
            if pages == 2 {
                // Arrives while the client pages.
                store
                    .append(vec![trace_with(
                        "mss",
                        "a1",
                        "box1@hopital.fr",
                        "p1",
                        "consultation",
                    )])
                    .await
                    .expect("append");
            }
            match page.next {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
            assert!(pages < 100);
        }
        assert_eq!(seen.len(), expected, "frozen view");
        assert!(pages >= expected / 7, "pages of at most 7");
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    }
}

// ------------------------------------------------------- integrity surface

/// Checkpoints are signed notes that verify with the store's verifier key,
/// commit to the tree of the searchable traces' commitments; inclusion and
/// consistency proofs verify against them; the history keeps them all.
pub async fn checkpoints_and_proofs_verify<H: Harness>(h: &H) {
    let store = h.open(now_clock()).await;
    for b in 0..3 {
        let batch = (0..100)
            .map(|i| trace("mss", &format!("{b}-{i}")))
            .collect();
        store.append(batch).await.expect("append");
    }
    let verifier = Verifier::parse(&store.verifier_key()).expect("verifier key");
    let cp1 = store
        .checkpoint("mss", true)
        .await
        .expect("checkpoint")
        .expect("some");
    let (body, _) = registre_log::checkpoint::open_checkpoint(cp1.note.as_bytes(), &[verifier])
        .expect("the note verifies");
    assert!(
        body.origin().ends_with("/registre/mss"),
        "{}",
        body.origin()
    );
    assert_eq!((body.size(), *body.root()), (cp1.size, cp1.root));
    let cs = commitments(&store, "mss").await;
    assert_eq!(cp1.size, 300);
    assert_eq!(
        cp1.root,
        tree_of(&cs).root(),
        "the checkpoint commits to the traces"
    );
    for i in [0u64, 1, 127, 255, 256, 299] {
        let proof = store
            .inclusion_proof("mss", i, cp1.size)
            .await
            .expect("proof");
        merkle::verify_inclusion(
            &merkle::leaf_hash(&cs[i as usize]),
            i,
            cp1.size,
            &proof,
            &cp1.root,
        )
        .expect("inclusion");
    }
    // Without growth, no new checkpoint.
    let again = store
        .checkpoint("mss", true)
        .await
        .expect("cp")
        .expect("some");
    assert_eq!(again, cp1);
    store
        .append((0..20).map(|i| trace("mss", &format!("late{i}"))).collect())
        .await
        .expect("append");
    let cp2 = store
        .checkpoint("mss", true)
        .await
        .expect("cp")
        .expect("some");
    assert_eq!(cp2.size, 320);
    assert_eq!(
        store.checkpoint("mss", false).await.expect("cp"),
        Some(cp2.clone())
    );
    let proof = store
        .consistency_proof("mss", cp1.size, cp2.size)
        .await
        .expect("consistency");
    merkle::verify_consistency(cp1.size, cp2.size, &cp1.root, &cp2.root, &proof)
        .expect("consistent");
    let history = store.checkpoint_history("mss").await.expect("history");
    assert!(history.contains(&cp1) && history.last() == Some(&cp2));
    assert!(history.windows(2).all(|w| w[0].size < w[1].size));
    let info = store.logs().await.expect("logs");
    let mss = info.iter().find(|l| l.log.as_str() == "mss").expect("mss");
    assert_eq!((mss.size, mss.checkpoint_size), (320, 320));
    assert!(mss.origin.ends_with("/registre/mss"));
    // Out of range and unknown.
    assert!(store.inclusion_proof("mss", 320, 320).await.is_err());
    assert!(store.inclusion_proof("mss", 0, 321).await.is_err());
    assert!(store.consistency_proof("mss", 10, 5).await.is_err());
    assert!(store.consistency_proof("mss", 1, 999).await.is_err());
    // An empty log has no checkpoint until asked for a fresh one... of size 0
    // at most: never one larger than the log.
    let tech = store.checkpoint("technique", false).await.expect("cp");
    assert!(tech.is_none_or(|c| c.size == 0));
}

/// Tiles are the tree's hashes, entry bundles its commitments (C2SP
/// tlog-tiles), full and partial.
pub async fn tiles_and_bundles_match_the_tree<H: Harness>(h: &H) {
    let store = h.open(now_clock()).await;
    store
        .append((0..300).map(|i| trace("mss", &format!("t{i}"))).collect())
        .await
        .expect("append");
    let cs = commitments(&store, "mss").await;
    let tree = tree_of(&cs);
    let tile = |level: u8, index: u64, width: u16| {
        TilePath::Hashes(TileId::new(level, index, width).expect("tile id"))
    };
    let expect = |level: u32, from: u64, n: u64| -> Vec<u8> {
        (from..from + n)
            .flat_map(|i| merkle::HashReader::node(&tree, level, i).expect("node"))
            .collect()
    };
    assert_eq!(
        store.tile("mss", tile(0, 0, 256)).await.expect("full tile"),
        expect(0, 0, 256)
    );
    assert_eq!(
        store
            .tile("mss", tile(0, 1, 44))
            .await
            .expect("partial tile"),
        expect(0, 256, 44)
    );
    assert_eq!(
        store.tile("mss", tile(1, 0, 1)).await.expect("level 1"),
        expect(8, 0, 1)
    );
    let bundle = store
        .tile(
            "mss",
            TilePath::Entries(BundleId::new(0, 256).expect("bundle id")),
        )
        .await
        .expect("bundle");
    let entries = registre_log::tile::decode_bundle(&bundle).expect("decodes");
    assert_eq!(entries.len(), 256);
    for (e, c) in entries.iter().zip(&cs) {
        assert_eq!(*e, &c[..]);
    }
    let partial = store
        .tile(
            "mss",
            TilePath::Entries(BundleId::new(1, 44).expect("bundle id")),
        )
        .await
        .expect("partial bundle");
    assert_eq!(
        registre_log::tile::decode_bundle(&partial)
            .expect("decodes")
            .len(),
        44
    );
    assert!(store.tile("mss", tile(0, 1, 45)).await.is_err(), "beyond");
    assert!(store.tile("mss", tile(0, 2, 1)).await.is_err(), "beyond");
    assert!(store.tile("mss", tile(1, 0, 2)).await.is_err(), "beyond");
    assert!(store.tile("autre", tile(0, 0, 1)).await.is_err());
}

// ------------------------------------------------------------- retention

/// Purge by class with a legal hold: what is past retention goes, whole
/// periods in order, except the held trace, which stays searchable (by its
/// blind index) and provable; the other classes are untouched; a later
/// purge without the hold takes it; appends go on.
pub async fn purge_with_holds<H: Harness>(h: &H) {
    let clock = Arc::new(ManualClock::new(0));
    let store = h.open(clock.clone()).await;
    a_year_of_traces(&store, &clock).await;
    let now = clock.now();
    let mss_cutoff = Retention::months(6).cutoff(now);
    let held_actor = "actor-mss-m1";
    let hold_q = actor_q(held_actor);
    let before = all(&store, class_q("mss")).await;
    assert_eq!(before.len(), 12);
    let held_index = before
        .iter()
        .find(|r| r.trace.actor.id == held_actor)
        .map(|r| r.trace.index)
        .expect("held trace");
    let held_commitment = commitments(&store, "mss").await[held_index as usize];

    let dry = store
        .purge(PurgeRequest {
            retention: policy("6 months", "1 year", "20 years"),
            holds: vec![hold_q.clone()],
            dry_run: true,
            progress: None,
        })
        .await
        .expect("dry run");
    assert!(dry.purged() > 0);
    assert_eq!(all(&store, class_q("mss")).await.len(), 12, "dry run");

    let report = store
        .purge(PurgeRequest {
            retention: policy("6 months", "1 year", "20 years"),
            holds: vec![hold_q.clone()],
            dry_run: false,
            progress: None,
        })
        .await
        .expect("purge");
    assert_eq!(report.purged(), dry.purged(), "the dry run said the truth");
    let mss = report.logs.iter().find(|l| l.log == "mss").expect("mss");
    assert_eq!(mss.held, 1);
    let expired: Vec<_> = before
        .iter()
        .filter(|r| micros(&r.trace.received_at) < mss_cutoff)
        .collect();
    assert!(expired.len() >= 5, "{} expired", expired.len());
    assert_eq!(mss.purged as usize, expired.len() - 1);
    assert!(mss.segments >= expired.len() as u64 - 1);
    let after = all(&store, class_q("mss")).await;
    assert_eq!(after.len(), before.len() - expired.len() + 1);
    for r in &after {
        assert!(
            micros(&r.trace.received_at) >= mss_cutoff || r.trace.actor.id == held_actor,
            "{} should be gone",
            r.trace.actor.id
        );
    }
    for r in &expired {
        if r.trace.actor.id != held_actor {
            assert!(all(&store, actor_q(&r.trace.actor.id)).await.is_empty());
        }
    }
    assert_eq!(all(&store, class_q("applicative")).await.len(), 12);
    assert_eq!(all(&store, class_q("technique")).await.len(), 12);
    // The held trace: found by its blind index, same commitment, provable.
    let found = all(&store, hold_q.clone()).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].trace.index, held_index);
    assert_eq!(commitment_of(&found[0]), held_commitment);
    let cp = store
        .checkpoint("mss", true)
        .await
        .expect("cp")
        .expect("some");
    assert_eq!(cp.size, 12, "commitments survive the purge");
    let proof = store
        .inclusion_proof("mss", held_index, cp.size)
        .await
        .expect("proof");
    merkle::verify_inclusion(
        &merkle::leaf_hash(&held_commitment),
        held_index,
        cp.size,
        &proof,
        &cp.root,
    )
    .expect("inclusion");
    // Proofs of purged traces still exist (their commitments stay).
    assert!(store.inclusion_proof("mss", 0, cp.size).await.is_ok());

    // Six months on, no hold: the held trace and a year of technique go.
    clock.advance_secs(183 * DAY);
    let report = store
        .purge(PurgeRequest {
            retention: policy("6 months", "1 year", "20 years"),
            ..PurgeRequest::default()
        })
        .await
        .expect("purge");
    let tech = report
        .logs
        .iter()
        .find(|l| l.log == "technique")
        .expect("technique");
    assert!(tech.purged >= 5, "technique purged {}", tech.purged);
    assert!(all(&store, hold_q).await.is_empty());
    assert_eq!(all(&store, class_q("applicative")).await.len(), 12);
    let r = store
        .append(vec![trace("mss", "late")])
        .await
        .expect("append after purge");
    assert_eq!(r[0].index, 12, "indexes go on after a purge");
    assert_eq!(all(&store, actor_q("actor-late")).await.len(), 1);
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        stats
            .iter()
            .find(|s| s.log.as_str() == "mss")
            .map(|s| s.size),
        Some(13)
    );
    drop(store);
    let store = h.open(clock.clone()).await;
    assert_eq!(all(&store, actor_q("actor-late")).await.len(), 1);
    assert!(all(&store, actor_q(held_actor)).await.is_empty());
}

/// Legal holds of the store: added, listed, released (once), kept across a
/// reopen; an active one protects its traces from a purge, a released one
/// no longer does.
pub async fn holds_add_release_and_protect<H: Harness>(h: &H) {
    let clock = Arc::new(ManualClock::new(0));
    let store = h.open(clock.clone()).await;
    let h1 = hold(
        "h1",
        HoldFilter {
            actor: Some("actor-mss-m0".into()),
            ..HoldFilter::default()
        },
    );
    let h3 = hold(
        "h3",
        HoldFilter {
            class: Some("mss".into()),
            patient: Some("patient-mss-m3".into()),
            ..HoldFilter::default()
        },
    );
    store.add_hold(h1.clone()).await.expect("add");
    store.add_hold(h3.clone()).await.expect("add");
    assert!(matches!(
        store.add_hold(h1.clone()).await,
        Err(HoldError::Duplicate(_))
    ));
    let mut bad = hold("h4", HoldFilter::default());
    bad.reason = " ".into();
    assert!(matches!(
        store.add_hold(bad).await,
        Err(HoldError::Invalid(_))
    ));
    let mut bad = hold("h5", HoldFilter::default());
    bad.filter.since = Some("yesterday".into());
    assert!(matches!(
        store.add_hold(bad).await,
        Err(HoldError::Invalid(_))
    ));
    let listed = store.holds().await.expect("holds");
    assert_eq!(listed, vec![h1.clone(), h3.clone()]);

    let released = store
        .release_hold("h1".into(), "dpo".into(), "2025-12-02T00:00:00Z".into())
        .await
        .expect("release");
    assert!(!released.active());
    assert_eq!(released.released_by.as_deref(), Some("dpo"));
    assert!(matches!(
        store
            .release_hold("h1".into(), "dpo".into(), "2025-12-03T00:00:00Z".into())
            .await,
        Err(HoldError::Released(_))
    ));
    assert!(matches!(
        store
            .release_hold("nope".into(), "dpo".into(), "2025-12-03T00:00:00Z".into())
            .await,
        Err(HoldError::Unknown(_))
    ));

    a_year_of_traces(&store, &clock).await;
    let report = store
        .purge(PurgeRequest {
            retention: policy("6 months", "1 year", "20 years"),
            ..PurgeRequest::default()
        })
        .await
        .expect("purge");
    let mss = report.logs.iter().find(|l| l.log == "mss").expect("mss");
    assert_eq!(mss.held, 1, "h3 holds, h1 was released");
    assert_eq!(all(&store, actor_q("actor-mss-m3")).await.len(), 1);
    assert!(all(&store, actor_q("actor-mss-m0")).await.is_empty());
    drop(store);

    let store = h.open(clock.clone()).await;
    let listed = store.holds().await.expect("holds");
    assert_eq!(listed.len(), 2, "holds survive a reopen");
    assert!(!listed[0].active() && listed[1].active());
    assert_eq!(all(&store, actor_q("actor-mss-m3")).await.len(), 1);
    store
        .release_hold("h3".into(), "dpo".into(), "2025-12-30T00:00:00Z".into())
        .await
        .expect("release");
    clock.advance_secs(DAY);
    store
        .purge(PurgeRequest {
            retention: policy("6 months", "1 year", "20 years"),
            ..PurgeRequest::default()
        })
        .await
        .expect("purge");
    assert!(all(&store, actor_q("actor-mss-m3")).await.is_empty());
}

// ------------------------------------------------------------- durability

/// Everything acknowledged survives a reopen: traces (same ids, salts,
/// commitments), sizes, checkpoints and their history, holds, the signing
/// key; indexes continue.
pub async fn reopen_keeps_everything<H: Harness>(h: &H) {
    let clock = now_clock();
    let store = h.open(clock.clone()).await;
    for b in 0..5 {
        store
            .append(
                (0..10)
                    .map(|i| {
                        trace(
                            if i % 2 == 0 { "mss" } else { "technique" },
                            &format!("{b}-{i}"),
                        )
                    })
                    .collect(),
            )
            .await
            .expect("append");
    }
    let cp = store
        .checkpoint("mss", true)
        .await
        .expect("cp")
        .expect("some");
    store
        .add_hold(hold(
            "keep",
            HoldFilter {
                actor: Some("actor-0-0".into()),
                ..HoldFilter::default()
            },
        ))
        .await
        .expect("hold");
    let key = store.verifier_key();
    let mut before = all(&store, Query::default()).await;
    let history = store.checkpoint_history("mss").await.expect("history");
    drop(store);

    let store = h.open(clock.clone()).await;
    assert_eq!(store.verifier_key(), key, "the same signing key");
    let mut after = all(&store, Query::default()).await;
    let key_of = |r: &StoredRecord| (r.trace.log.as_str().to_owned(), r.trace.index);
    before.sort_by_key(key_of);
    after.sort_by_key(key_of);
    assert_eq!(before, after, "same traces, salts and ids");
    assert_eq!(
        store.checkpoint_history("mss").await.expect("history"),
        history
    );
    assert_eq!(store.checkpoint("mss", false).await.expect("cp"), Some(cp));
    assert_eq!(store.holds().await.expect("holds").len(), 1);
    let r = store
        .append(vec![trace("mss", "next"), trace("technique", "next")])
        .await
        .expect("append");
    assert_eq!((r[0].index, r[1].index), (25, 25));
    let cs = commitments(&store, "mss").await;
    let cp2 = store
        .checkpoint("mss", true)
        .await
        .expect("cp")
        .expect("some");
    assert_eq!(cp2.root, tree_of(&cs).root());
}

/// Nothing personal at rest: actor ids, mailboxes, patient ids, request
/// text and the hold filters never appear in clear in any byte the backend
/// keeps (files, or every row of every table).
pub async fn no_personal_value_in_clear_at_rest<H: Harness>(h: &H) {
    let store = h.open(now_clock()).await;
    let tags: Vec<String> = (0..20).map(|i| format!("CANARY{i:03}x")).collect();
    for t in &tags {
        store
            .append(vec![trace("mss", t), trace("applicative", t)])
            .await
            .expect("append");
    }
    store
        .add_hold(hold(
            "canary-hold",
            HoldFilter {
                actor: Some("actor-CANARYHOLDx".into()),
                ..HoldFilter::default()
            },
        ))
        .await
        .expect("hold");
    for c in classes() {
        store
            .checkpoint(c.as_str(), true)
            .await
            .expect("checkpoint");
    }
    // Searches happened too (nothing they compute may be kept in clear).
    assert_eq!(all(&store, actor_q("actor-CANARY001x")).await.len(), 2);
    drop(store);
    let canaries: Vec<String> = tags
        .iter()
        .flat_map(|t| {
            [
                format!("actor-{t}"),
                format!("box-{t}@hopital.fr"),
                format!("patient-{t}"),
                format!("req-{t}"),
                t.clone(),
            ]
        })
        .chain([
            "CANARYHOLDx".to_owned(),
            "UID FETCH".to_owned(),
            "consultation".to_owned(),
        ])
        .collect();
    let chunks = h.at_rest().await;
    assert!(chunks.len() > 3, "{} chunks at rest", chunks.len());
    assert!(chunks.iter().map(|(_, b)| b.len()).sum::<usize>() > 10_000);
    for (place, bytes) in chunks {
        for c in &canaries {
            assert!(
                !bytes.windows(c.len()).any(|w| w == c.as_bytes()),
                "{c:?} in clear in {place}"
            );
        }
    }
}
