//! Search: per log, newest first, partition by partition (each with its
//! own blind values), then the held traces; every row opened and checked
//! exactly (a blind value collision costs a read, never a wrong answer);
//! logs merged by reception time; the cursor freezes each log's bound.

use registre_store::at_rest::{self, Key};
use registre_store::crypto::SegmentKeys;
use registre_store::{Cursor, Page, Query, SearchError, StoredRecord};

use crate::PgError;
use crate::store::{Inner, LogMeta, hold_label, partition_label};

/// A hit with its reception time (for merging logs).
struct Hit {
    received_at: i64,
    record: StoredRecord,
}

fn unavailable(e: PgError) -> SearchError {
    match e {
        PgError::Corrupt(why) => SearchError::Unavailable(format!("inconsistent data: {why}")),
        e => SearchError::Unavailable(e.to_string()),
    }
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
        let conn = self.conn().await.map_err(unavailable)?;
        let mut hits: Vec<(usize, Hit)> = Vec::new();
        let mut prior = Vec::with_capacity(logs.len());
        for (li, log) in logs.iter().enumerate() {
            let bound = match q.cursor.as_ref().and_then(|c| c.bound(log.name.as_str())) {
                Some(b) => b,
                None => {
                    let size: i64 = conn
                        .query_one("SELECT size FROM logs WHERE id = $1", &[&log.id])
                        .await
                        .map_err(|e| unavailable(e.into()))?
                        .get(0);
                    size as u64
                }
            };
            prior.push(bound);
            if bound == 0 {
                continue;
            }
            // One more than a page: tells whether this log has more.
            let found = self
                .search_log(&conn, log, &q, limit + 1, bound)
                .await
                .map_err(unavailable)?;
            hits.extend(found.into_iter().map(|h| (li, h)));
        }
        hits.sort_by(|a, b| {
            b.1.received_at
                .cmp(&a.1.received_at)
                .then_with(|| a.0.cmp(&b.0))
                .then_with(|| b.1.record.trace.index.cmp(&a.1.record.trace.index))
        });
        let returned: Vec<usize> = (0..logs.len())
            .map(|li| hits.iter().filter(|h| h.0 == li).count())
            .collect();
        let mut taken = vec![0usize; logs.len()];
        let mut last_taken: Vec<Option<u64>> = vec![None; logs.len()];
        let mut traces = Vec::with_capacity(limit.min(hits.len()));
        for (li, h) in hits.into_iter().take(limit) {
            taken[li] += 1;
            last_taken[li] = Some(h.record.trace.index);
            traces.push(h.record);
        }
        let mut more = false;
        let mut bounds = Vec::with_capacity(logs.len());
        for li in 0..logs.len() {
            let bound = if taken[li] < returned[li] {
                more = true;
                last_taken[li].unwrap_or(prior[li])
            } else {
                // Everything this log had below its bound was returned.
                0
            };
            bounds.push((logs[li].name.as_str().to_owned(), bound));
        }
        Ok(Page {
            traces,
            next: more.then_some(Cursor { bounds }),
        })
    }

    /// Up to `want` matching traces of `log` below index `bound`, newest
    /// first.
    async fn search_log(
        &self,
        conn: &tokio_postgres::Client,
        log: &LogMeta,
        q: &Query,
        want: usize,
        bound: u64,
    ) -> Result<Vec<Hit>, PgError> {
        let mut hits = Vec::new();
        let parts = conn
            .query(
                "SELECT period, relname, first_index FROM partitions WHERE log = $1 \
                 AND first_index < $2 ORDER BY period DESC",
                &[&log.id, &(bound as i64)],
            )
            .await?;
        for p in parts {
            let period: i64 = p.get(0);
            let relname: String = p.get(1);
            let first: i64 = p.get(2);
            let keys = self
                .keys(conn, &partition_label(&log.name, period, first))
                .await?;
            self.scan(
                conn, log, &keys, &relname, "TRUE", q, want, bound, &mut hits,
            )
            .await?;
            if hits.len() >= want {
                return Ok(hits);
            }
        }
        // Held traces: older than every live partition.
        let gens: Vec<i32> = conn
            .query(
                "SELECT gen FROM held WHERE log = $1 AND idx < $2 GROUP BY gen \
                 ORDER BY max(idx) DESC",
                &[&log.id, &(bound as i64)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut held = Vec::new();
        for g in gens {
            let keys = self.keys(conn, &hold_label(&log.name, g)).await?;
            let cond = format!("log = {} AND gen = {g}", log.id);
            self.scan(conn, log, &keys, "held", &cond, q, want, bound, &mut held)
                .await?;
        }
        held.sort_by_key(|h| std::cmp::Reverse(h.record.trace.index));
        hits.extend(held.into_iter().take(want - hits.len()));
        Ok(hits)
    }

    /// Reads the matching rows of one table (a partition, or one hold
    /// generation of `held`) below `bound`, newest first, until `want` hits.
    #[allow(clippy::too_many_arguments)]
    async fn scan(
        &self,
        conn: &tokio_postgres::Client,
        log: &LogMeta,
        keys: &SegmentKeys,
        table: &str,
        cond: &str,
        q: &Query,
        want: usize,
        bound: u64,
        hits: &mut Vec<Hit>,
    ) -> Result<(), PgError> {
        let mut params: Vec<i64> = Vec::new();
        let mut sql = format!("SELECT idx, received_at, record FROM {table} WHERE {cond}");
        let mut add = |column: &str, op: &str, v: i64, params: &mut Vec<i64>| {
            params.push(v);
            sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
        };
        // Bit-for-bit casts, as stored.
        if let Some(a) = &q.actor {
            add(
                "actor",
                "=",
                at_rest::key_hash(keys, Key::Actor, a) as i64,
                &mut params,
            );
        }
        if let Some(m) = &q.mailbox {
            add(
                "mailbox",
                "=",
                at_rest::key_hash(keys, Key::Mailbox, m) as i64,
                &mut params,
            );
        }
        if let Some(p) = &q.patient {
            add(
                "patient",
                "=",
                at_rest::key_hash(keys, Key::Patient, p) as i64,
                &mut params,
            );
        }
        if let Some(a) = &q.action {
            add(
                "action",
                "=",
                at_rest::key_hash(keys, Key::Action, a.as_str()) as i64,
                &mut params,
            );
        }
        if let Some(s) = q.since {
            add("received_at", ">=", s, &mut params);
        }
        if let Some(u) = q.until {
            add("received_at", "<", u, &mut params);
        }
        let mut below = bound as i64;
        loop {
            let batch = (want - hits.len()).max(16) as i64;
            let text = format!(
                "{sql} AND idx < ${} ORDER BY idx DESC LIMIT {batch}",
                params.len() + 1
            );
            let mut refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                params.iter().map(|p| p as _).collect();
            refs.push(&below);
            let rows = conn.query(text.as_str(), &refs).await?;
            let n = rows.len() as i64;
            for r in rows {
                let idx: i64 = r.get(0);
                let received_at: i64 = r.get(1);
                let mut record: Vec<u8> = r.get(2);
                below = idx;
                let plain = keys
                    .open(log.name.as_str(), idx as u64, &mut record)
                    .ok_or_else(|| {
                        PgError::Corrupt(format!(
                            "record {idx} of log {} does not open with its data key",
                            log.name
                        ))
                    })?;
                let rec = at_rest::decode_record(plain).map_err(|why| {
                    PgError::Corrupt(format!("record {idx} of log {}: {why}", log.name))
                })?;
                if q.matches(&rec.trace) {
                    hits.push(Hit {
                        received_at,
                        record: rec,
                    });
                    if hits.len() >= want {
                        return Ok(());
                    }
                }
            }
            if n < batch {
                return Ok(());
            }
        }
    }
}
