//! Search: one SQL statement per page in the common case, prepared once per
//! connection.
//!
//! A log's traces live in units: its live partitions (disjoint index
//! ranges, newer partitions higher, each a leaf table with its own index
//! key) and, below all of them, the traces legal holds kept (`held`, one
//! key per hold generation). Blind values depend on the key, so each
//! partition is one branch of the statement with its own blind values as
//! parameters, and the held traces one more with every generation's:
//!
//! ```sql
//! (SELECT 0 AS u, idx, received_at, 0::int8 AS aux, record
//!  FROM traces_1_1767225600 WHERE TRUE AND actor = $3
//!  AND idx < $1 ORDER BY idx DESC LIMIT $2)        -- a log with one unit
//! UNION ALL
//! (SELECT u, idx, received_at, aux, record FROM (
//!    (SELECT 1 AS u, … FROM traces_2_1767225600 WHERE TRUE AND actor = $6 …)
//!    UNION ALL (SELECT 2 AS u, idx, received_at, gen::int8 AS aux, record
//!               FROM held WHERE log = 2 AND actor = ANY($7::int8[]) …))
//!  s ORDER BY idx DESC LIMIT $5)                  -- a log with several
//! UNION ALL (SELECT -1, id::int8, size, hold_gen::int8, NULL::bytea
//!            FROM logs WHERE id IN (1, 2))
//! UNION ALL (SELECT -2, log::int8, max(first_index), count(*), NULL::bytea
//!            FROM partitions WHERE log IN (1, 2) GROUP BY log)
//! ```
//!
//! Table names and log ids are written in the text (they are not
//! personal); everything else is a parameter. Each partition's branch is
//! an index scan backwards on `(actor, idx)`, `(mailbox, idx)`,
//! `(patient, idx)` (no other condition competes with it) or, without a
//! blind value, on the primary key, that stops after its `LIMIT`; each
//! log's rows are cut to its batch, newest first. A first search reads at
//! most [`FIRST_WINDOW`] partitions per log.
//!
//! The last two branches read, in the same snapshot, each log's size (the
//! bound a first page starts from, as before) and a signature of its units
//! (newest partition, number of partitions, newest hold generation): this
//! node builds the statement from the units it last saw
//! ([`UnitCache`]); when the signature differs (an append opened a
//! partition, a purge dropped one or wrote a hold generation, on any node),
//! or a table it names was dropped, it reads the units again and re-runs
//! the statement. So a page costs one round trip, and one more after such
//! a change.
//!
//! Rows are opened lazily: logs are merged by reception time (newest first,
//! then the order of the logs, then the index) from each log's next
//! matching trace, each candidate opened and checked exactly
//! ([`Query::matches`]: a blind value collision costs a read, never a wrong
//! answer) only when the merge reaches it. A log whose candidates run out
//! before its next match is known is read further (below its last
//! candidate, with a growing batch and window of partitions) in the next
//! statement, with the other logs that need it. The page and the cursor are
//! those of the previous per-log search (each log's first `limit + 1`
//! matches merged): a log keeps a bound when it has a match left after the
//! page. At most [`SCAN_BUDGET`] candidates per log are opened per call,
//! then the cursor resumes where it stopped.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use registre_store::at_rest::{self, Key};
use registre_store::crypto::SegmentKeys;
use registre_store::{Cursor, Page, Query, SearchError, StoredRecord};
use tokio_postgres::IsolationLevel;
use tokio_postgres::types::ToSql;

use crate::PgError;
use crate::pool::{Conn, quote_ident};
use crate::store::{Inner, LogMeta, hold_label, partition_label};

/// Most candidate records one search opens in one log before it returns a
/// page with a cursor to go on (as the embedded store's budget): a query
/// whose filters rarely match cannot hold a connection for long.
pub(crate) const SCAN_BUDGET: usize = 20_000;
/// Partitions of a log the first statement of a search reads; each further
/// statement of the same search reads four times more, up to [`MAX_WINDOW`].
const FIRST_WINDOW: usize = 4;
const MAX_WINDOW: usize = 64;
/// Most candidate rows of one log per statement (the first reads the
/// page's size plus one; each further one twice the previous).
const MAX_BATCH: usize = 4096;
/// How many times one statement is re-run after the units changed under it.
const MAX_REFRESH: usize = 4;

/// The units of a log this node last read, shared by its searches.
#[derive(Default)]
pub(crate) struct UnitCache(Mutex<Option<Arc<Units>>>);

impl UnitCache {
    fn get(&self) -> Option<Arc<Units>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, units: Arc<Units>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(units);
    }
}

/// A log's live partitions and hold generations, with their keys.
pub(crate) struct Units {
    sig: Sig,
    /// Newest first (first index descending).
    parts: Vec<Part>,
    gens: Vec<Gen>,
}

/// What tells whether a log's units changed: appends only add partitions
/// above every other (a larger newest first index), purges drop partitions
/// (fewer) and write hold generations (a newer `hold_gen`). A generation
/// deleted with no new one leaves only an empty branch behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sig {
    hold_gen: i64,
    /// The newest partition's first index (-1: none).
    newest: i64,
    count: i64,
}

struct Part {
    /// The partition's table, quoted.
    relname: String,
    log: i16,
    period: i64,
    first: i64,
    keys: Arc<SegmentKeys>,
}

struct Gen {
    gen_: i32,
    keys: Arc<SegmentKeys>,
}

/// A row read, not opened yet.
struct Candidate {
    idx: i64,
    received_at: i64,
    record: Vec<u8>,
    keys: Arc<SegmentKeys>,
}

/// A matching trace with its reception time (for merging logs).
struct Hit {
    received_at: i64,
    record: StoredRecord,
}

/// One log's part of a search.
struct Run<'a> {
    log: &'a LogMeta,
    units: Arc<Units>,
    /// Where this page starts in this log: the cursor's bound, else the
    /// log's size (known from the first statement).
    prior: Option<u64>,
    /// Exclusive upper bound of the indexes not read yet (`None`: nothing
    /// read and no cursor, the top of the log).
    below: Option<u64>,
    /// Whether the database may hold candidates below `below`.
    more: bool,
    window: usize,
    batch: usize,
    fetched: VecDeque<Candidate>,
    /// The next matching trace, not taken yet.
    head: Option<Hit>,
    examined: usize,
    /// Stopped by the scan budget: the bound to resume from.
    budget: Option<u64>,
    last_taken: Option<u64>,
}

impl Run<'_> {
    /// Opens candidates until the next match; `true` when more candidates
    /// must be read first.
    fn advance(&mut self, q: &Query) -> Result<bool, PgError> {
        while self.head.is_none() && self.budget.is_none() {
            let Some(c) = self.fetched.pop_front() else {
                if !self.more {
                    return Ok(false);
                }
                if self.examined >= SCAN_BUDGET {
                    self.budget = Some(self.below.or(self.prior).unwrap_or(0));
                    return Ok(false);
                }
                return Ok(true);
            };
            if self.examined >= SCAN_BUDGET {
                // Bounded work per request: the caller pages on.
                self.budget = Some(c.idx as u64 + 1);
                return Ok(false);
            }
            self.examined += 1;
            let Candidate {
                idx,
                received_at,
                mut record,
                keys,
            } = c;
            let name = self.log.name.as_str();
            let plain = keys.open(name, idx as u64, &mut record).ok_or_else(|| {
                PgError::Corrupt(format!(
                    "record {idx} of log {name} does not open with its data key"
                ))
            })?;
            let rec = at_rest::decode_record(plain)
                .map_err(|why| PgError::Corrupt(format!("record {idx} of log {name}: {why}")))?;
            if q.matches(&rec.trace) {
                self.head = Some(Hit {
                    received_at,
                    record: rec,
                });
            }
        }
        Ok(false)
    }
}

fn unavailable(e: PgError) -> SearchError {
    match e {
        PgError::Corrupt(why) => SearchError::Unavailable(format!("inconsistent data: {why}")),
        e => SearchError::Unavailable(e.to_string()),
    }
}

/// One statement: its text, parameters, and what its rows mean.
struct Plan {
    sql: String,
    params: Vec<Param>,
    /// Per branch (`u`): the run it reads and its partition's keys (`None`:
    /// the log's held traces, opened with their generation's keys).
    branches: Vec<(usize, Option<Arc<SegmentKeys>>)>,
    logs: Vec<LogPlan>,
}

enum Param {
    One(i64),
    Many(Vec<i64>),
}

impl Plan {
    fn push(&mut self, p: Param) -> usize {
        self.params.push(p);
        self.params.len()
    }
}

struct LogPlan {
    run: usize,
    /// Most rows this log returns.
    n: usize,
    branches: usize,
    /// The window reaches the log's oldest unit.
    end: bool,
    /// The first index of the oldest partition in the window.
    oldest: Option<i64>,
}

impl Plan {
    fn build(q: &Query, runs: &[Run<'_>], need: &[usize]) -> Plan {
        let mut plan = Plan {
            sql: String::with_capacity(1024),
            params: Vec::new(),
            branches: Vec::new(),
            logs: Vec::with_capacity(need.len()),
        };
        let mut time = String::new();
        if let Some(s) = q.since {
            let k = plan.push(Param::One(s));
            let _ = write!(time, " AND received_at >= ${k}");
        }
        if let Some(u) = q.until {
            let k = plan.push(Param::One(u));
            let _ = write!(time, " AND received_at < ${k}");
        }
        let mut parts_sql: Vec<String> = Vec::new();
        for &li in need {
            let r = &runs[li];
            let below = r.below.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
            let live: Vec<&Part> = r.units.parts.iter().filter(|p| p.first < below).collect();
            let window = &live[..live.len().min(r.window)];
            let end = live.len() <= r.window;
            let gens: &[Gen] = if end { &r.units.gens } else { &[] };
            let lp = LogPlan {
                run: li,
                n: r.batch,
                branches: window.len() + usize::from(!gens.is_empty()),
                end,
                oldest: window.last().map(|p| p.first),
            };
            if lp.branches == 0 {
                plan.logs.push(lp);
                continue;
            }
            // The limit is in the text and a first page has no index bound:
            // with them as parameters, PostgreSQL's generic plan guesses a
            // tenth of the rows and a third of the indexes, looks dearer
            // than each custom plan, and every execution is planned again.
            let n = r.batch;
            let bound = match r.below {
                Some(_) => format!(" AND idx < ${}", plan.push(Param::One(below))),
                None => String::new(),
            };
            let tail = format!("{time}{bound} ORDER BY idx DESC LIMIT {n})");
            let mut branches = Vec::with_capacity(lp.branches);
            for p in window {
                let u = plan.branches.len();
                plan.branches.push((li, Some(p.keys.clone())));
                let mut conds = String::new();
                for (column, blind) in blinds(q, &p.keys) {
                    let k = plan.push(Param::One(blind));
                    let _ = write!(conds, " AND {column} = ${k}");
                }
                // The leaf itself: PostgreSQL plans one table. With a blind
                // value, no (log, period) condition, so the only index that
                // fits is the blind value's `(value, idx)` (those two
                // conditions, always true in a leaf, would look selective
                // to the planner before the leaf is analysed, and tempt it
                // into reading the leaf through its primary key); without
                // one, they let the primary key give the order.
                let from = if conds.is_empty() {
                    format!(
                        "{} WHERE log = {} AND period = {}",
                        p.relname, p.log, p.period
                    )
                } else {
                    format!("{} WHERE TRUE", p.relname)
                };
                branches.push(format!(
                    "(SELECT {u} AS u, idx, received_at, 0::int8 AS aux, record \
                     FROM {from}{conds}{tail}"
                ));
            }
            if !gens.is_empty() {
                // Every generation in one branch, newest first by the
                // primary key: each filter takes the blind values under
                // every generation's key (a row matching another
                // generation's value is a collision, which the exact check
                // rejects); `aux` says which key opens the row.
                let u = plan.branches.len();
                plan.branches.push((li, None));
                let mut columns: Vec<(&'static str, Vec<i64>)> = Vec::new();
                for g in gens {
                    for (i, (column, blind)) in blinds(q, &g.keys).into_iter().enumerate() {
                        match columns.get_mut(i) {
                            Some((_, v)) => v.push(blind),
                            None => columns.push((column, vec![blind])),
                        }
                    }
                }
                let mut conds = String::new();
                for (column, mut values) in columns {
                    values.sort_unstable();
                    values.dedup();
                    let k = plan.push(Param::Many(values));
                    let _ = write!(conds, " AND {column} = ANY(${k}::int8[])");
                }
                branches.push(format!(
                    "(SELECT {u} AS u, idx, received_at, gen::int8 AS aux, record FROM held \
                     WHERE log = {}{conds}{tail}",
                    r.log.id
                ));
            }
            if branches.len() == 1 {
                parts_sql.append(&mut branches);
            } else {
                parts_sql.push(format!(
                    "(SELECT u, idx, received_at, aux, record FROM ({}) s \
                     ORDER BY idx DESC LIMIT {n})",
                    branches.join(" UNION ALL ")
                ));
            }
            plan.logs.push(lp);
        }
        let ids = need
            .iter()
            .map(|&li| runs[li].log.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        parts_sql.push(format!(
            "(SELECT -1, id::int8, size, hold_gen::int8, NULL::bytea FROM logs \
             WHERE id IN ({ids}))"
        ));
        parts_sql.push(format!(
            "(SELECT -2, log::int8, max(first_index), count(*), NULL::bytea FROM partitions \
             WHERE log IN ({ids}) GROUP BY log)"
        ));
        plan.sql = parts_sql.join(" UNION ALL ");
        plan
    }
}

/// The query's blind values under one unit's keys, by column (bit-for-bit
/// casts, as stored).
fn blinds(q: &Query, keys: &SegmentKeys) -> Vec<(&'static str, i64)> {
    let mut out = Vec::with_capacity(4);
    if let Some(a) = &q.actor {
        out.push(("actor", at_rest::key_hash(keys, Key::Actor, a) as i64));
    }
    if let Some(m) = &q.mailbox {
        out.push(("mailbox", at_rest::key_hash(keys, Key::Mailbox, m) as i64));
    }
    if let Some(p) = &q.patient {
        out.push(("patient", at_rest::key_hash(keys, Key::Patient, p) as i64));
    }
    if let Some(a) = &q.action {
        out.push((
            "action",
            at_rest::key_hash(keys, Key::Action, a.as_str()) as i64,
        ));
    }
    out
}

impl Inner {
    pub(crate) async fn search(&self, q: Query) -> Result<Page, SearchError> {
        let logs: Vec<&LogMeta> = match &q.class {
            Some(c) => vec![
                self.logs
                    .get(c.as_str())
                    .ok_or_else(|| SearchError::UnknownClass(c.as_str().to_owned()))?,
            ],
            None => self.logs.values().collect(),
        };
        let limit = q.limit.clamp(1, 10_000);
        let mut conn = self.conn().await.map_err(unavailable)?;
        self.search_on(&mut conn, &q, &logs, limit)
            .await
            .map_err(unavailable)
    }

    async fn search_on(
        &self,
        conn: &mut Conn,
        q: &Query,
        logs: &[&LogMeta],
        limit: usize,
    ) -> Result<Page, PgError> {
        let mut runs = Vec::with_capacity(logs.len());
        for log in logs {
            let units = match log.units.get() {
                Some(u) => u,
                None => self.refresh(conn, log).await?,
            };
            let bound = q.cursor.as_ref().and_then(|c| c.bound(log.name.as_str()));
            runs.push(Run {
                log,
                units,
                prior: bound,
                below: bound,
                more: bound != Some(0),
                window: FIRST_WINDOW,
                batch: limit + 1,
                fetched: VecDeque::new(),
                head: None,
                examined: 0,
                budget: None,
                last_taken: None,
            });
        }
        let mut traces = Vec::with_capacity(limit);
        loop {
            // Every log's next match, reading what is missing in one
            // statement for all the logs that need it.
            loop {
                let mut need = Vec::new();
                for (li, r) in runs.iter_mut().enumerate() {
                    if r.advance(q)? {
                        need.push(li);
                    }
                }
                if need.is_empty() {
                    break;
                }
                self.fetch(conn, q, &mut runs, &need).await?;
            }
            if traces.len() >= limit {
                break;
            }
            // Newest reception first; then the order of the logs.
            let best = runs
                .iter()
                .enumerate()
                .filter_map(|(li, r)| r.head.as_ref().map(|h| (li, h.received_at)))
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
            let Some((li, _)) = best else {
                break;
            };
            if let Some(hit) = runs[li].head.take() {
                runs[li].last_taken = Some(hit.record.trace.index);
                traces.push(hit.record);
            }
        }
        let mut more = false;
        let mut bounds = Vec::with_capacity(runs.len());
        for r in &runs {
            let prior = r.prior.unwrap_or(0);
            let bound = if r.head.is_some() {
                // A match left out of this page: resume just below the
                // last one shown (or where this page started).
                more = true;
                r.last_taken.unwrap_or(prior)
            } else if let Some(resume) = r.budget {
                more = true;
                resume.min(r.last_taken.unwrap_or(resume))
            } else {
                // Everything this log had below its bound was returned.
                0
            };
            bounds.push((r.log.name.as_str().to_owned(), bound));
        }
        Ok(Page {
            traces,
            next: more.then_some(Cursor { bounds }),
        })
    }

    /// Reads the next candidates of the runs in `need`: one statement,
    /// re-run after reading the units again if they changed.
    async fn fetch(
        &self,
        conn: &mut Conn,
        q: &Query,
        runs: &mut [Run<'_>],
        need: &[usize],
    ) -> Result<(), PgError> {
        for _ in 0..MAX_REFRESH {
            let plan = Plan::build(q, runs, need);
            let params: Vec<&(dyn ToSql + Sync)> = plan
                .params
                .iter()
                .map(|p| match p {
                    Param::One(v) => v as &(dyn ToSql + Sync),
                    Param::Many(v) => v as &(dyn ToSql + Sync),
                })
                .collect();
            let rows = match conn.query_cached(&plan.sql, &params).await {
                Ok(rows) => rows,
                Err(PgError::Db(e))
                    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) =>
                {
                    // A purge dropped a partition this node still knew.
                    for &li in need {
                        runs[li].units = self.refresh(conn, runs[li].log).await?;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let mut sizes: HashMap<i64, (i64, i64)> = HashMap::new();
            let mut parts: HashMap<i64, (i64, i64)> = HashMap::new();
            let mut found: Vec<Vec<Candidate>> = (0..runs.len()).map(|_| Vec::new()).collect();
            let mut unknown = None;
            for row in rows {
                let u: i32 = row.try_get(0)?;
                let a: i64 = row.try_get(1)?;
                let b: i64 = row.try_get(2)?;
                match u {
                    -1 => {
                        sizes.insert(a, (b, row.try_get(3)?));
                    }
                    -2 => {
                        parts.insert(a, (b, row.try_get(3)?));
                    }
                    u => {
                        let (li, keys) = usize::try_from(u)
                            .ok()
                            .and_then(|u| plan.branches.get(u))
                            .ok_or_else(|| PgError::Corrupt(format!("unexpected branch {u}")))?;
                        let keys = match keys {
                            Some(k) => k.clone(),
                            None => {
                                let g: i64 = row.try_get(3)?;
                                let gens = &runs[*li].units.gens;
                                match gens.binary_search_by_key(&g, |x| i64::from(x.gen_)) {
                                    Ok(i) => gens[i].keys.clone(),
                                    Err(_) => {
                                        // Unknown: the units changed (the
                                        // signature tells) or a key is gone.
                                        unknown.get_or_insert((runs[*li].log, a, g));
                                        continue;
                                    }
                                }
                            }
                        };
                        found[*li].push(Candidate {
                            idx: a,
                            received_at: b,
                            record: row.try_get(4)?,
                            keys,
                        });
                    }
                }
            }
            let mut stale = Vec::new();
            let mut sizes_of = Vec::with_capacity(need.len());
            for &li in need {
                let log = runs[li].log;
                let &(size, hold_gen) = sizes.get(&i64::from(log.id)).ok_or_else(|| {
                    PgError::Corrupt(format!("log {} has no row in logs", log.name))
                })?;
                let (newest, count) = parts.get(&i64::from(log.id)).copied().unwrap_or((-1, 0));
                let sig = Sig {
                    hold_gen,
                    newest,
                    count,
                };
                if sig != runs[li].units.sig {
                    stale.push(li);
                }
                sizes_of.push((li, size));
            }
            if !stale.is_empty() {
                for li in stale {
                    runs[li].units = self.refresh(conn, runs[li].log).await?;
                }
                continue;
            }
            if let Some((log, idx, g)) = unknown {
                return Err(PgError::Corrupt(format!(
                    "held trace {idx} of log {} is in hold generation {g}, which has no key",
                    log.name
                )));
            }
            // The size in the snapshot the rows come from.
            for (li, size) in sizes_of {
                runs[li].prior.get_or_insert(size.max(0) as u64);
            }
            for lp in &plan.logs {
                let r = &mut runs[lp.run];
                let mut got = std::mem::take(&mut found[lp.run]);
                got.sort_by_key(|c| std::cmp::Reverse(c.idx));
                let last = got.last().map(|c| c.idx);
                let full = got.len() >= lp.n;
                r.fetched.extend(got);
                if lp.branches == 0 {
                    r.more = false;
                } else if full {
                    r.below = last.map(|i| i as u64);
                } else if lp.end {
                    r.more = false;
                } else {
                    r.below = lp.oldest.map(|f| f as u64);
                }
                r.window = (r.window * 4).min(MAX_WINDOW);
                r.batch = r.batch.max((r.batch * 2).min(MAX_BATCH));
            }
            return Ok(());
        }
        Err(PgError::Unavailable(
            "the journal's partitions kept changing during the search; try again".into(),
        ))
    }

    /// Reads a log's units and their keys (one snapshot) into this node's
    /// cache.
    async fn refresh(&self, conn: &mut Conn, log: &LogMeta) -> Result<Arc<Units>, PgError> {
        let tx = conn
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let hold_gen: i32 = tx
            .query_one("SELECT hold_gen FROM logs WHERE id = $1", &[&log.id])
            .await?
            .get(0);
        let mut parts = Vec::new();
        for r in tx
            .query(
                "SELECT period, first_index, relname FROM partitions WHERE log = $1 \
                 ORDER BY first_index DESC",
                &[&log.id],
            )
            .await?
        {
            let (period, first): (i64, i64) = (r.get(0), r.get(1));
            let keys = self
                .keys(&tx, &partition_label(&log.name, period, first))
                .await?;
            parts.push(Part {
                relname: quote_ident(r.get(2)),
                log: log.id,
                period,
                first,
                keys,
            });
        }
        let mut gens = Vec::new();
        for r in tx
            .query(
                "SELECT DISTINCT gen FROM held WHERE log = $1 ORDER BY gen",
                &[&log.id],
            )
            .await?
        {
            let gen_: i32 = r.get(0);
            let keys = self.keys(&tx, &hold_label(&log.name, gen_)).await?;
            gens.push(Gen { gen_, keys });
        }
        tx.commit().await?;
        let units = Arc::new(Units {
            sig: Sig {
                hold_gen: i64::from(hold_gen),
                newest: parts.first().map_or(-1, |p| p.first),
                count: parts.len() as i64,
            },
            parts,
            gens,
        });
        log.units.set(units.clone());
        Ok(units)
    }
}
