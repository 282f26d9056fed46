//! Model-based test of the embedded segment log.
//!
//! Random sequences of operations run against an [`EmbeddedStore`] on a
//! [`FaultyVfs`] and, side by side, against a reference model that is just,
//! per log, the list of traces the store must show. Operations: appends of
//! batches spread over the three classes, paged searches with one filter,
//! injected fsync failures (from the next sync or after a few more) and
//! short writes, power losses keeping a random
//! fraction of the unsynced bytes followed by a reopen, and process restarts
//! (no power loss: whatever is in the page cache survives).
//!
//! The model per log:
//! - `visible`: the traces a search must find, in index order. A trace joins
//!   when its append is acknowledged, or when its log committed it within a
//!   call that failed because of *another* log (the contract allows that).
//! - `limbo`: the *parts* (one call's traces for this log) that were written
//!   but whose write or sync failed. They must stay invisible in the running
//!   process; after a restart the log holds `visible` followed by whole parts
//!   from `limbo` (a frame is atomic and holds whole requests), never a
//!   piece of one, never anything else.
//! - `poisoned`: after a failed write or sync the log refuses every append
//!   until reopened; refused traces must never appear, even after a restart.
//!
//! Invariants checked: every visible trace is found exactly once by a full
//! paged search with a filter that matches it, and nothing else is found;
//! results are newest first (indexes decrease within a log, reception times
//! never increase); indexes of every log are dense from 0; receipts give
//! consecutive indexes in input order; an append fails only under an
//! injected fault or on a poisoned log.
//!
//! An append operation issues one call, or several calls at once (so the
//! writer groups them, and writes group *n+1* while group *n* syncs). A
//! failed call may return as soon as one of its logs fails, while another
//! log is still committing its part. Before looking at such a log the
//! harness sends it a one-trace "barrier" append: replies come in queue
//! order, so once the barrier is answered everything before it is settled.
//! The harness then reads the log's new records and places every part:
//! acknowledged parts at their receipts' indexes, the others whole or not
//! at all.

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use registre_model::{ClassName, Limits, Trace, parse_trace};
use registre_store::vfs::FaultyVfs;
use registre_store::{AppendError, EmbeddedOptions, EmbeddedStore, Query, Store, StoredRecord};
use uuid::Uuid;

const CLASSES: [&str; 3] = ["mss", "technique", "applicative"];
const ACTORS: [&str; 4] = ["dr.martin", "dr.durand", "ide.petit", "sec.moreau"];
const MAILBOXES: [&str; 3] = [
    "martin@hopital.fr",
    "secretariat@hopital.fr",
    "urgences@clinique.fr",
];
const PATIENTS: [&str; 3] = ["p-001", "p-002", "p-003"];
const ACTIONS: [&str; 3] = ["consultation", "envoi", "suppression"];

type Check<T = ()> = Result<T, TestCaseError>;

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// One trace of a batch, as indexes into the pools above.
#[derive(Debug, Clone)]
struct Spec {
    class: usize,
    actor: usize,
    /// Mailbox, and whether the producer sent it in upper case (mailbox
    /// search ignores ASCII case).
    mailbox: Option<(usize, bool)>,
    patient: Option<usize>,
    action: usize,
}

#[derive(Debug, Clone)]
enum Filter {
    All,
    Actor(usize),
    /// The mailbox, queried in upper case if `true`.
    Mailbox(usize, bool),
    Patient(usize),
    Action(usize),
    Class(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// One call, or several calls issued at once.
    Append(Vec<Vec<Spec>>),
    Search(Filter, usize),
    /// Power loss keeping this many thousandths of each file's unsynced
    /// bytes, then reopen (faults cleared).
    CrashAndReopen(u16),
    /// Process restart without power loss: the page cache survives.
    Restart,
    /// Every sync fails after this many more succeed (0: from the next one).
    FailSyncsAfter(u64),
    ShortWriteNext(usize),
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..CLASSES.len(),
        0..ACTORS.len(),
        prop::option::weighted(0.85, (0..MAILBOXES.len(), any::<bool>())),
        prop::option::of(0..PATIENTS.len()),
        0..ACTIONS.len(),
    )
        .prop_map(|(class, actor, mailbox, patient, action)| Spec {
            class,
            actor,
            mailbox,
            patient,
            action,
        })
}

fn filter() -> impl Strategy<Value = Filter> {
    prop_oneof![
        Just(Filter::All),
        (0..ACTORS.len()).prop_map(Filter::Actor),
        (0..MAILBOXES.len(), any::<bool>()).prop_map(|(m, up)| Filter::Mailbox(m, up)),
        (0..PATIENTS.len()).prop_map(Filter::Patient),
        (0..ACTIONS.len()).prop_map(Filter::Action),
        (0..CLASSES.len()).prop_map(Filter::Class),
    ]
}

fn torn() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0u16), Just(1000u16), 0..=1000u16]
}

fn short_len() -> impl Strategy<Value = usize> {
    // Inside a segment or frame header, or anywhere in a batch's frame.
    prop_oneof![0..100usize, 0..30_000usize]
}

fn calls() -> impl Strategy<Value = Vec<Vec<Spec>>> {
    prop_oneof![
        3 => prop::collection::vec(spec(), 1..50).prop_map(|c| vec![c]),
        1 => prop::collection::vec(prop::collection::vec(spec(), 1..20), 2..5),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => calls().prop_map(Op::Append),
        2 => (filter(), 1..20usize).prop_map(|(f, l)| Op::Search(f, l)),
        2 => torn().prop_map(Op::CrashAndReopen),
        2 => Just(Op::Restart),
        2 => prop_oneof![3 => Just(0u64), 2 => 1..5u64].prop_map(Op::FailSyncsAfter),
        1 => short_len().prop_map(Op::ShortWriteNext),
    ]
}

/// Segment size limits: roll at every group, every few groups, never.
fn rolling_limit() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1u64), Just(6_000u64), Just(NO_ROLL)]
}

/// Larger than anything a case writes: one segment per log (the daily
/// period roll aside).
const NO_ROLL: u64 = 1 << 30;

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Entry {
    marker: u64,
    spec: Spec,
    /// Known once a receipt or a search has shown it.
    id: Option<Uuid>,
}

#[derive(Debug, Default)]
struct LogModel {
    visible: Vec<Entry>,
    limbo: Vec<Vec<Entry>>,
    poisoned: bool,
}

/// Finds `region` (records in index order) as a run of whole parts taken
/// from `parts`, each at most once; returns the parts used, in order, and
/// leaves the others in `parts`. `fixed` maps an index of the region to a
/// part that must start there (acknowledged parts, by their receipts).
fn place(
    region: &[(u64, StoredRecord)],
    parts: &mut Vec<Vec<Entry>>,
    fixed: &HashMap<u64, Vec<Entry>>,
    what: &str,
) -> Check<Vec<Entry>> {
    let mut placed = Vec::new();
    let mut i = 0;
    while i < region.len() {
        let (index, r) = &region[i];
        let m = marker_of(r)?;
        let part = match fixed.get(index) {
            Some(p) => p.clone(),
            None => {
                let Some(k) = parts.iter().position(|p| p[0].marker == m) else {
                    return Err(TestCaseError::fail(format!(
                        "{what}: index {index} holds marker {m}, which starts no pending part"
                    )));
                };
                parts.remove(k)
            }
        };
        prop_assert!(
            i + part.len() <= region.len(),
            "{}: part from index {} cut short",
            what,
            index
        );
        for (j, e) in part.iter().enumerate() {
            let (index, r) = &region[i + j];
            prop_assert_eq!(marker_of(r)?, e.marker, "{}: index {}", what, index);
            if let Some(id) = e.id {
                prop_assert_eq!(id, r.trace.id, "{}: index {}", what, index);
            }
            check_record(r, e)?;
            placed.push(Entry {
                id: Some(r.trace.id),
                ..e.clone()
            });
        }
        i += part.len();
    }
    Ok(placed)
}

impl Spec {
    fn trace(&self, marker: u64) -> Trace {
        let mut target = Vec::new();
        if let Some((m, upper)) = self.mailbox {
            let m = if upper {
                MAILBOXES[m].to_ascii_uppercase()
            } else {
                MAILBOXES[m].to_owned()
            };
            target.push(format!(r#""mailbox":"{m}""#));
        }
        if let Some(p) = self.patient {
            target.push(format!(r#""patient":{{"id":"{}"}}"#, PATIENTS[p]));
        }
        let j = format!(
            r#"{{"class":"{}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"{}"}},"action":"{}","target":{{{}}},"source":{{"session":"m{marker}"}}}}"#,
            CLASSES[self.class],
            ACTORS[self.actor],
            ACTIONS[self.action],
            target.join(",")
        );
        parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace")
    }

    fn matches(&self, f: &Filter) -> bool {
        match *f {
            Filter::All => true,
            Filter::Actor(a) => self.actor == a,
            Filter::Mailbox(m, _) => self.mailbox.is_some_and(|(x, _)| x == m),
            Filter::Patient(p) => self.patient == Some(p),
            Filter::Action(a) => self.action == a,
            Filter::Class(c) => self.class == c,
        }
    }
}

impl Filter {
    fn query(&self, limit: usize) -> Query {
        let mut q = Query {
            limit,
            ..Query::default()
        };
        match *self {
            Filter::All => {}
            Filter::Actor(a) => q.actor = Some(ACTORS[a].to_owned()),
            Filter::Mailbox(m, upper) => {
                q.mailbox = Some(if upper {
                    MAILBOXES[m].to_ascii_uppercase()
                } else {
                    MAILBOXES[m].to_owned()
                });
            }
            Filter::Patient(p) => q.patient = Some(PATIENTS[p].to_owned()),
            Filter::Action(a) => {
                q.action = Some(registre_model::Action::parse(ACTIONS[a]).expect("action"));
            }
            Filter::Class(c) => q.class = Some(ClassName::new(CLASSES[c]).expect("class")),
        }
        q
    }
}

fn marker_of(r: &StoredRecord) -> Check<u64> {
    let s = r
        .trace
        .source
        .as_ref()
        .and_then(|s| s.session.as_deref())
        .ok_or_else(|| TestCaseError::fail("record without marker"))?;
    s.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| TestCaseError::fail(format!("bad marker {s}")))
}

fn class_of(r: &StoredRecord) -> Check<usize> {
    CLASSES
        .iter()
        .position(|c| *c == r.trace.log.as_str())
        .ok_or_else(|| TestCaseError::fail(format!("unknown log {}", r.trace.log)))
}

/// The record holds what the spec sent.
fn check_record(r: &StoredRecord, e: &Entry) -> Check {
    let s = &e.spec;
    prop_assert_eq!(r.trace.class.as_str(), CLASSES[s.class]);
    prop_assert_eq!(r.trace.log.as_str(), CLASSES[s.class]);
    prop_assert_eq!(r.trace.actor.id.as_str(), ACTORS[s.actor]);
    prop_assert_eq!(r.trace.action.as_str(), ACTIONS[s.action]);
    prop_assert_eq!(
        r.trace.mailbox().map(str::to_ascii_lowercase),
        s.mailbox.map(|(m, _)| MAILBOXES[m].to_owned())
    );
    prop_assert_eq!(r.trace.patient_id(), s.patient.map(|p| PATIENTS[p]));
    Ok(())
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

struct Harness {
    vfs: FaultyVfs,
    opts: EmbeddedOptions,
    store: Option<Arc<EmbeddedStore>>,
    logs: [LogModel; 3],
    /// `fail_syncs_after(0)` is armed: every sync fails until reopen.
    sync_armed: bool,
    /// `fail_syncs_after(k > 0)` is armed: syncs fail from some point on.
    sync_later: bool,
    /// A short write is armed and no write has consumed it yet.
    short_pending: bool,
    next_marker: u64,
}

fn data_dir() -> &'static Path {
    Path::new("/registre-model")
}

impl Harness {
    fn new(max_segment_bytes: u64) -> Check<Harness> {
        let opts = EmbeddedOptions {
            max_segment_bytes,
            master_key: Some(Arc::new(
                registre_store::crypto::MasterKey::generate()
                    .map_err(|e| TestCaseError::fail(e.to_string()))?
                    .0,
            )),
            ..EmbeddedOptions::new(
                CLASSES
                    .iter()
                    .map(|c| ClassName::new(c).expect("class"))
                    .collect(),
            )
        };
        let mut h = Harness {
            vfs: FaultyVfs::new(),
            opts,
            store: None,
            logs: Default::default(),
            sync_armed: false,
            sync_later: false,
            short_pending: false,
            next_marker: 0,
        };
        h.open()?;
        Ok(h)
    }

    fn open(&mut self) -> Check {
        let s =
            EmbeddedStore::open_with_vfs(data_dir(), self.opts.clone(), Arc::new(self.vfs.clone()))
                .map_err(|e| TestCaseError::fail(format!("reopen failed: {e}")))?;
        self.store = Some(Arc::new(s));
        Ok(())
    }

    fn store(&self) -> &EmbeddedStore {
        self.store.as_ref().expect("store open")
    }

    fn size(&self, class: usize) -> u64 {
        self.store()
            .stats()
            .into_iter()
            .find(|s| s.log.as_str() == CLASSES[class])
            .map_or(0, |s| s.size)
    }

    fn entry(&mut self, spec: Spec) -> Entry {
        self.next_marker += 1;
        Entry {
            marker: self.next_marker,
            spec,
            id: None,
        }
    }

    async fn run(&mut self, op: &Op) -> Check {
        match op {
            Op::Append(calls) => self.append(calls).await?,
            Op::Search(f, limit) => self.search(f, *limit).await?,
            Op::CrashAndReopen(torn) => {
                let torn = usize::from(*torn);
                self.reopen(|vfs| vfs.crash(|_, extra| extra * torn / 1000))
                    .await?;
            }
            Op::Restart => self.reopen(|_| {}).await?,
            Op::FailSyncsAfter(k) => {
                self.vfs.fail_syncs_after(*k);
                if *k == 0 {
                    self.sync_armed = true;
                } else {
                    // Replaces any earlier arming.
                    self.sync_armed = false;
                    self.sync_later = true;
                }
            }
            Op::ShortWriteNext(n) => {
                self.vfs.short_write_next(*n);
                self.short_pending = true;
            }
        }
        // In the running process a log shows exactly its visible traces.
        for (c, name) in CLASSES.iter().enumerate() {
            prop_assert_eq!(
                self.size(c),
                self.logs[c].visible.len() as u64,
                "log {} size after {:?}",
                name,
                op
            );
        }
        Ok(())
    }

    async fn append(&mut self, calls: &[Vec<Spec>]) -> Check {
        let calls: Vec<Vec<Entry>> = calls
            .iter()
            .map(|c| c.iter().map(|s| self.entry(s.clone())).collect())
            .collect();
        let involved: BTreeSet<usize> = calls.iter().flatten().map(|e| e.spec.class).collect();
        let old: Vec<u64> = (0..CLASSES.len()).map(|c| self.size(c)).collect();
        let poisoned_before: Vec<bool> = self.logs.iter().map(|l| l.poisoned).collect();
        let faulty = self.sync_armed || self.sync_later || self.short_pending;
        // Faults that must fail a lone call: every sync fails, or the next
        // write is cut short.
        let strict = self.sync_armed || self.short_pending;

        // Issue every call at once; each resolves on its own.
        let tasks: Vec<_> = calls
            .iter()
            .map(|entries| {
                let store = self.store.clone().expect("store open");
                let traces: Vec<Trace> = entries.iter().map(|e| e.spec.trace(e.marker)).collect();
                tokio::spawn(async move { store.append(traces).await })
            })
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await.map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        if involved.iter().any(|&c| !poisoned_before[c]) {
            // A healthy log always writes (a segment header or a frame)
            // before anything can fail: the short write is consumed.
            self.short_pending = false;
        }

        // Per log: parts placed by their receipts, parts of failed calls.
        let mut fixed: Vec<HashMap<u64, Vec<Entry>>> = vec![HashMap::new(); CLASSES.len()];
        let mut unsure: Vec<Vec<Vec<Entry>>> = vec![Vec::new(); CLASSES.len()];
        let mut any_failed = false;
        for (entries, result) in calls.iter().zip(results) {
            let mine: BTreeSet<usize> = entries.iter().map(|e| e.spec.class).collect();
            let on_poisoned = mine.iter().any(|&c| poisoned_before[c]);
            match result {
                Ok(receipts) => {
                    prop_assert!(!on_poisoned, "a poisoned log acknowledged an append");
                    prop_assert!(!self.sync_armed, "acknowledged despite failing syncs");
                    if calls.len() == 1 {
                        prop_assert!(!strict, "acknowledged despite an armed fault");
                    }
                    prop_assert_eq!(receipts.len(), entries.len());
                    for &c in &mine {
                        let part: Vec<(Entry, u64)> = entries
                            .iter()
                            .zip(&receipts)
                            .filter(|(e, _)| e.spec.class == c)
                            .map(|(e, r)| {
                                (
                                    Entry {
                                        id: Some(r.id),
                                        ..e.clone()
                                    },
                                    r.index,
                                )
                            })
                            .collect();
                        for (k, (_, index)) in part.iter().enumerate() {
                            prop_assert_eq!(
                                *index,
                                part[0].1 + k as u64,
                                "receipts not consecutive"
                            );
                        }
                        for (e, r) in entries.iter().zip(&receipts) {
                            prop_assert_eq!(r.log.as_str(), CLASSES[e.spec.class]);
                        }
                        fixed[c].insert(part[0].1, part.into_iter().map(|(e, _)| e).collect());
                    }
                }
                Err(e) => {
                    prop_assert!(
                        matches!(e, AppendError::Unavailable(_)),
                        "unexpected error {}",
                        e
                    );
                    prop_assert!(
                        faulty || on_poisoned,
                        "append failed without a fault: {}",
                        e
                    );
                    any_failed = true;
                    for &c in &mine {
                        if poisoned_before[c] {
                            // Refused before writing: never to appear.
                            continue;
                        }
                        unsure[c].push(
                            entries
                                .iter()
                                .filter(|e| e.spec.class == c)
                                .cloned()
                                .collect(),
                        );
                    }
                }
            }
        }

        for c in involved {
            if poisoned_before[c] {
                prop_assert_eq!(self.size(c), old[c], "poisoned log {} grew", CLASSES[c]);
                continue;
            }
            let what = format!("log {} after append", CLASSES[c]);
            if any_failed {
                // Settle: a barrier is answered only after everything queued
                // before it in this log.
                let spec = Spec {
                    class: c,
                    actor: 0,
                    mailbox: None,
                    patient: None,
                    action: 0,
                };
                let barrier = self.entry(spec);
                let r = self
                    .store()
                    .append(vec![barrier.spec.trace(barrier.marker)])
                    .await;
                match r {
                    Ok(rc) => {
                        fixed[c].insert(
                            rc[0].index,
                            vec![Entry {
                                id: Some(rc[0].id),
                                ..barrier
                            }],
                        );
                    }
                    Err(_) => {
                        self.logs[c].poisoned = true;
                        unsure[c].push(vec![barrier]);
                    }
                }
            }
            let size = self.size(c);
            let region = self.region(c, old[c], size).await?;
            let placed = place(&region, &mut unsure[c], &fixed[c], &what)?;
            let fixed_total: usize = fixed[c].values().map(Vec::len).sum();
            let placed_markers: HashSet<u64> = placed.iter().map(|e| e.marker).collect();
            for part in fixed[c].values() {
                prop_assert!(
                    placed_markers.contains(&part[0].marker),
                    "{}: acknowledged part missing",
                    what
                );
            }
            prop_assert!(placed.len() >= fixed_total);
            let log = &mut self.logs[c];
            if !log.poisoned {
                prop_assert!(unsure[c].is_empty(), "{}: healthy log lost a part", what);
            }
            log.visible.extend(placed);
            log.limbo.append(&mut unsure[c]);
        }
        Ok(())
    }

    /// Records `from..to` of log `c`, in index order, checked dense.
    async fn region(&self, c: usize, from: u64, to: u64) -> Check<Vec<(u64, StoredRecord)>> {
        if to <= from {
            prop_assert_eq!(to, from);
            return Ok(Vec::new());
        }
        let page = self
            .store()
            .search(Query {
                class: Some(ClassName::new(CLASSES[c]).expect("class")),
                limit: (to - from) as usize,
                ..Query::default()
            })
            .await
            .map_err(|e| TestCaseError::fail(format!("search failed: {e}")))?;
        let mut recs: Vec<(u64, StoredRecord)> = page
            .traces
            .into_iter()
            .map(|r| (r.trace.index, r))
            .collect();
        recs.reverse();
        prop_assert_eq!(recs.len() as u64, to - from);
        for (k, (index, _)) in recs.iter().enumerate() {
            prop_assert_eq!(*index, from + k as u64, "log {} not dense", CLASSES[c]);
        }
        Ok(recs)
    }

    async fn all_pages(&self, mut q: Query) -> Check<Vec<StoredRecord>> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let page = self
                .store()
                .search(q.clone())
                .await
                .map_err(|e| TestCaseError::fail(format!("search failed: {e}")))?;
            prop_assert!(page.traces.len() <= q.limit, "page larger than its limit");
            out.extend(page.traces);
            match page.next {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
        Err(TestCaseError::fail("paging does not terminate"))
    }

    async fn search(&mut self, f: &Filter, limit: usize) -> Check {
        let got = self.all_pages(f.query(limit)).await?;
        let mut seen = HashSet::new();
        for r in &got {
            let c = class_of(r)?;
            let m = marker_of(r)?;
            prop_assert!(
                seen.insert((c, r.trace.index)),
                "found twice: {:?}",
                r.trace
            );
            let e = self.logs[c].visible.get_mut(r.trace.index as usize);
            let Some(e) = e else {
                return Err(TestCaseError::fail(format!(
                    "invisible trace found: log {} index {} marker {m}",
                    CLASSES[c], r.trace.index
                )));
            };
            prop_assert_eq!(e.marker, m, "log {} index {}", CLASSES[c], r.trace.index);
            prop_assert!(e.spec.matches(f), "{:?} does not match {:?}", e.spec, f);
            match e.id {
                Some(id) => prop_assert_eq!(id, r.trace.id),
                None => e.id = Some(r.trace.id),
            }
            check_record(r, e)?;
        }
        // Newest first: reception times never increase; per log, indexes
        // strictly decrease.
        let mut last_index: [Option<u64>; 3] = [None; 3];
        for (i, r) in got.iter().enumerate() {
            if i > 0 {
                prop_assert!(
                    got[i - 1].trace.received_at >= r.trace.received_at,
                    "not newest-first by reception"
                );
            }
            let c = class_of(r)?;
            if let Some(prev) = last_index[c] {
                prop_assert!(prev > r.trace.index, "log {} not newest-first", CLASSES[c]);
            }
            last_index[c] = Some(r.trace.index);
        }
        let want: usize = self
            .logs
            .iter()
            .map(|l| l.visible.iter().filter(|e| e.spec.matches(f)).count())
            .sum();
        prop_assert_eq!(got.len(), want, "{:?} limit {}: count", f, limit);
        Ok(())
    }

    /// Drops the store (joining its writers), applies `disaster` to the
    /// files, clears the faults, reopens and reconciles the model.
    async fn reopen(&mut self, disaster: impl FnOnce(&FaultyVfs)) -> Check {
        self.store = None;
        disaster(&self.vfs);
        self.vfs.clear_faults();
        self.sync_armed = false;
        self.sync_later = false;
        self.short_pending = false;
        self.open()?;
        for (c, name) in CLASSES.iter().enumerate() {
            let mut recs = self
                .all_pages(Query {
                    class: Some(ClassName::new(name).expect("class")),
                    limit: 1000,
                    ..Query::default()
                })
                .await?;
            recs.reverse();
            for (i, r) in recs.iter().enumerate() {
                prop_assert_eq!(r.trace.index, i as u64, "log {} not dense", CLASSES[c]);
            }
            let log = &mut self.logs[c];
            let v = log.visible.len();
            let l: usize = log.limbo.iter().map(Vec::len).sum();
            prop_assert!(
                recs.len() >= v,
                "log {}: {} acknowledged traces, {} after reopen",
                CLASSES[c],
                v,
                recs.len()
            );
            prop_assert!(
                recs.len() <= v + l,
                "log {}: {} traces after reopen, at most {} + {} possible",
                CLASSES[c],
                recs.len(),
                v,
                l
            );
            for (r, e) in recs.iter().zip(log.visible.iter_mut()) {
                prop_assert_eq!(
                    marker_of(r)?,
                    e.marker,
                    "log {} index {}",
                    CLASSES[c],
                    r.trace.index
                );
                match e.id {
                    Some(id) => prop_assert_eq!(id, r.trace.id),
                    None => e.id = Some(r.trace.id),
                }
                check_record(r, e)?;
            }
            // What follows must be whole failed parts, never a piece.
            let extra: Vec<(u64, StoredRecord)> = recs
                .into_iter()
                .skip(v)
                .map(|r| (r.trace.index, r))
                .collect();
            let mut limbo = std::mem::take(&mut log.limbo);
            let what = format!("log {} after reopen", CLASSES[c]);
            let surfaced = place(&extra, &mut limbo, &HashMap::new(), &what)?;
            log.visible.extend(surfaced);
            log.poisoned = false;
        }
        Ok(())
    }

    /// The end of every case: one more power loss keeping all unsynced bytes,
    /// then every log takes a new trace at its next index.
    async fn finish(&mut self) -> Check {
        self.reopen(|vfs| vfs.crash(|_, extra| extra)).await?;
        let specs: Vec<Spec> = (0..CLASSES.len())
            .map(|class| Spec {
                class,
                actor: 0,
                mailbox: None,
                patient: None,
                action: 0,
            })
            .collect();
        self.append(&[specs]).await?;
        self.search(&Filter::All, 17).await
    }
}

fn run_case(max_segment_bytes: u64, ops: &[Op]) -> Check {
    // Two workers: concurrent calls really race, so the writer splits them
    // into several groups and writes one while the previous one syncs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    rt.block_on(async {
        let mut h = Harness::new(max_segment_bytes)?;
        for op in ops {
            h.run(op).await?;
        }
        h.finish().await
    })
}

proptest! {
    // 64 cases keep the debug suite fast; `PROPTEST_CASES=5000` soaks.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(64),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    /// Appends, searches, fsync failures, short writes, power losses and
    /// restarts, on one segment per log.
    #[test]
    fn segment_log_matches_model(ops in prop::collection::vec(op(), 1..30)) {
        run_case(NO_ROLL, &ops)?;
    }

    /// The same with segments rolled by size: at every group, every few
    /// groups, or never.
    #[test]
    fn segment_log_with_rolling_matches_model(
        max_segment_bytes in rolling_limit(),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        run_case(max_segment_bytes, &ops)?;
    }
}
