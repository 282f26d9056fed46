//! PostgreSQL peer: COPY in batches of 1000 (each its own durable
//! transaction, synchronous_commit as configured), same indexes.

use std::time::Instant;

use futures_util::SinkExt;
use registre_model::Trace;

use super::{PeerResult, cols, now_micros};

pub async fn run(
    url: &str,
    traces: &[Trace],
    json: &[String],
    actors: &[String],
) -> Result<PeerResult, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(
            "DROP TABLE IF EXISTS registre_bench_traces;
             CREATE TABLE registre_bench_traces(
               id bigserial PRIMARY KEY, class text NOT NULL, received_at bigint NOT NULL,
               actor text NOT NULL, mailbox text, patient text, action text NOT NULL, doc text NOT NULL);
             CREATE INDEX registre_bench_actor ON registre_bench_traces(actor, received_at);
             CREATE INDEX registre_bench_mailbox ON registre_bench_traces(mailbox, received_at);
             CREATE INDEX registre_bench_time ON registre_bench_traces(received_at);",
        )
        .await?;
    let start = Instant::now();
    let mut buf = String::with_capacity(1 << 20);
    for (tb, jb) in traces.chunks(1000).zip(json.chunks(1000)) {
        buf.clear();
        let now = now_micros();
        for (t, j) in tb.iter().zip(jb) {
            let c = cols(t);
            let opt = |o: Option<&str>| o.map_or("\\N".to_owned(), escape);
            buf.push_str(&format!(
                "{}\t{now}\t{}\t{}\t{}\t{}\t{}\n",
                escape(c.class),
                escape(c.actor),
                opt(c.mailbox),
                opt(c.patient),
                escape(c.action),
                escape(j)
            ));
        }
        let sink = client
            .copy_in(
                "COPY registre_bench_traces(class, received_at, actor, mailbox, patient, action, doc) FROM STDIN",
            )
            .await?;
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from(buf.clone())).await?;
        sink.finish().await?;
    }
    let rate = traces.len() as f64 / start.elapsed().as_secs_f64();
    let stmt = client
        .prepare(
            "SELECT doc FROM registre_bench_traces WHERE actor = $1 ORDER BY received_at DESC LIMIT 50",
        )
        .await?;
    let mut lat = Vec::with_capacity(actors.len());
    for a in actors {
        let t = Instant::now();
        let rows = client.query(&stmt, &[a]).await?;
        lat.push(t.elapsed());
        std::hint::black_box(rows);
    }
    client
        .batch_execute("VACUUM ANALYZE registre_bench_traces")
        .await?;
    let bytes: i64 = client
        .query_one(
            "SELECT pg_total_relation_size('registre_bench_traces')",
            &[],
        )
        .await?
        .get(0);
    client
        .batch_execute("DROP TABLE registre_bench_traces")
        .await?;
    let (p50, p99) = crate::percentiles(&mut lat);
    Ok(PeerResult {
        rate,
        search_p50_ms: p50,
        search_p99_ms: p99,
        bytes_per_trace: bytes as f64 / traces.len() as f64,
    })
}

/// PostgreSQL COPY text format escaping.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            c => o.push(c),
        }
    }
    o
}
