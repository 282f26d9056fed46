//! registre's PostgreSQL backend (`registre-store-pg`, issue 8): the same
//! traces appended through `PgStore` by one node, then by two nodes on one
//! schema (two `PgStore`s in this process, each with its own connection
//! pool and group-commit tasks: they take the log's advisory lock in turn,
//! as two `registre serve` processes do), and the search latency on the
//! one-node journal. Each run uses its own schema, dropped afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_model::{ClassName, Trace};
use registre_store::Store;
use registre_store::crypto::MasterKey;
use registre_store_pg::{PgOptions, PgStore};

/// What the PostgreSQL backend measured.
pub struct PgStoreResult {
    pub one_node: f64,
    pub two_nodes: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    pub size: u64,
}

async fn open(url: &str, schema: &str, classes: &[ClassName], master: &Arc<MasterKey>) -> PgStore {
    let mut opts = PgOptions::new(url, classes.to_vec(), master.clone());
    opts.schema = schema.to_owned();
    PgStore::open(opts)
        .await
        .expect("open the PostgreSQL store")
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await;
    }
}

/// Appends `traces` in batches of 1000 from `tasks` tasks spread over
/// `stores`; traces/s.
async fn append(stores: &[Arc<PgStore>], traces: &[Trace], tasks: usize) -> f64 {
    let batches: Vec<Vec<Trace>> = traces.chunks(1000).map(<[Trace]>::to_vec).collect();
    let per_task = batches.len().div_ceil(tasks);
    let mut it = batches.into_iter();
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..tasks {
        let group: Vec<Vec<Trace>> = it.by_ref().take(per_task).collect();
        let store = stores[i % stores.len()].clone();
        handles.push(tokio::spawn(async move {
            for b in group {
                store.append(b).await.expect("append");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    traces.len() as f64 / start.elapsed().as_secs_f64()
}

/// `search_at`: the one-node journal is grown to this many traces (the same
/// traces again, in order) before the searches are timed.
pub async fn run(
    url: &str,
    traces: &[Trace],
    classes: &[ClassName],
    actors: &[String],
    search_at: usize,
) -> PgStoreResult {
    let (master, _) = MasterKey::generate().expect("master key");
    let master = Arc::new(master);
    let suffix = std::process::id();
    let (one, two) = (
        format!("registre_bench_pg1_{suffix}"),
        format!("registre_bench_pg2_{suffix}"),
    );
    drop_schema(url, &one).await;
    drop_schema(url, &two).await;

    eprintln!("registre on PostgreSQL, 1 node: {} traces…", traces.len());
    let node = Arc::new(open(url, &one, classes, &master).await);
    let one_node = append(std::slice::from_ref(&node), traces, 4).await;
    let mut size = traces.len();
    while size < search_at {
        let take = traces.len().min(search_at - size);
        let rate = append(std::slice::from_ref(&node), &traces[..take], 4).await;
        size += take;
        eprintln!("  grown to {size} traces ({rate:.0} traces/s)");
    }

    let searched = crate::time_searches(&*node, actors.iter().map(|a| crate::actor_query(a, 50)))
        .await
        .expect("search");
    let (search_p50_ms, search_p99_ms) = (searched.p50_ms, searched.p99_ms);
    drop(node);

    eprintln!("registre on PostgreSQL, 2 nodes: {} traces…", traces.len());
    let a = Arc::new(open(url, &two, classes, &master).await);
    let b = Arc::new(open(url, &two, classes, &master).await);
    let two_nodes = append(&[a.clone(), b.clone()], traces, 4).await;
    drop((a, b));
    // Let the nodes' background tasks end before the schemas go.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop_schema(url, &one).await;
    drop_schema(url, &two).await;
    PgStoreResult {
        one_node,
        two_nodes,
        search_p50_ms,
        search_p99_ms,
        size: size as u64,
    }
}
