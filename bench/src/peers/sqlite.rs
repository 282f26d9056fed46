//! SQLite peer: WAL, synchronous=FULL, the same secondary indexes
//! (actor+time, mailbox+time, time), transactions of 1000 traces.

use std::time::Instant;

use registre_model::Trace;

use super::{PeerResult, cols, now_micros};

pub fn run(traces: &[Trace], json: &[String], actors: &[String]) -> PeerResult {
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let path = dir.path().join("bench.sqlite");
    let mut db = rusqlite::Connection::open(&path).expect("open sqlite");
    db.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE traces(
           id INTEGER PRIMARY KEY, class TEXT NOT NULL, received_at INTEGER NOT NULL,
           actor TEXT NOT NULL, mailbox TEXT, patient TEXT, action TEXT NOT NULL, doc TEXT NOT NULL);
         CREATE INDEX traces_actor ON traces(actor, received_at);
         CREATE INDEX traces_mailbox ON traces(mailbox, received_at);
         CREATE INDEX traces_time ON traces(received_at);",
    )
    .expect("schema");
    let start = Instant::now();
    for (tb, jb) in traces.chunks(1000).zip(json.chunks(1000)) {
        let tx = db.transaction().expect("tx");
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO traces(class, received_at, actor, mailbox, patient, action, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .expect("prepare");
            let now = now_micros();
            for (t, j) in tb.iter().zip(jb) {
                let c = cols(t);
                st.execute(rusqlite::params![
                    c.class, now, c.actor, c.mailbox, c.patient, c.action, j
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let rate = traces.len() as f64 / start.elapsed().as_secs_f64();
    let mut lat = Vec::with_capacity(actors.len());
    {
        let mut st = db
            .prepare("SELECT doc FROM traces WHERE actor = ?1 ORDER BY received_at DESC LIMIT 50")
            .expect("prepare search");
        for a in actors {
            let t = Instant::now();
            let rows: Vec<String> = st
                .query_map([a], |r| r.get(0))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            lat.push(t.elapsed());
            std::hint::black_box(rows);
        }
    }
    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .expect("checkpoint");
    drop(db);
    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let (p50, p99) = crate::percentiles(&mut lat);
    PeerResult {
        rate,
        search_p50_ms: p50,
        search_p99_ms: p99,
        bytes_per_trace: bytes as f64 / traces.len() as f64,
    }
}
