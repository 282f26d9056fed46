//! registre's benchmark: registre and its peers side by side, in one run, on
//! the same generated traces, all durable (fsync before acknowledging).
//!
//! ```text
//! cargo run --release -p registre-bench -- [--traces N] [--http-traces N] [--quick]
//! cargo run --release -p registre-bench -- --only proxy [--quick]
//! cargo build --release -p registre-bench -p registre
//! target/release/registre-bench --scale 1_000_000,10_000_000,100_000_000 [--scale-dir DIR] [--keep]
//! REGISTRE_TEST_DATABASE_URL=… target/release/registre-bench --scale-pg 10_000_000
//! ```
//!
//! `--scale` (issue 13, `scale.rs`) grows one embedded journal to each size
//! in turn and measures, at each, the real server's start-up time and RSS,
//! the bytes per trace of all its files, first-page searches by actor,
//! patient, mailbox and time range and inclusion proofs in process, and
//! `registre verify --data`: one table row per size, plus ratios to the
//! first. It needs the `registre` binary built next to the bench's.
//! `--scale-pg N` is `--only postgres --pg-search-traces N`: registre's
//! PostgreSQL backend grown to N traces, searched next to the bare table.
//! `--smoke` ends with a `--scale 20000` run when the `registre` binary is
//! there (a visible SKIP line otherwise).
//!
//! PostgreSQL runs when REGISTRE_TEST_DATABASE_URL is set. The IMAP/SMTP proxy
//! section (`proxy.rs`) needs root, Dovecot and Postfix (the proxy crate's
//! test harness), and nginx with its mail module for the nginx peer.

mod peers;
mod proxy;
mod scale;
mod workload;

// The proxy crate's real mail servers (Dovecot, Postfix), for `proxy.rs`.
#[path = "../../crates/proxy/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use registre_model::{ClassName, Limits, Trace, parse_trace};
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};

pub struct Opts {
    traces: usize,
    http_traces: usize,
    single_requests: usize,
    searches: usize,
    purge_traces: usize,
    /// `--only proxy`: the IMAP/SMTP proxy section alone.
    only_proxy: bool,
    /// `--only postgres`: raw COPY and registre's PostgreSQL backend alone.
    only_postgres: bool,
    /// `--pg-search-traces N`: with `--only postgres`, grow the one-node
    /// journal to N traces before timing searches.
    pg_search_traces: usize,
    /// `--no-proxy`: everything but the IMAP/SMTP proxy section.
    no_proxy: bool,
    proxy: proxy::ProxyOpts,
    /// `--scale 1000000,10000000`: the scale mode alone (then `--scale-pg`).
    scale: Option<scale::ScaleOpts>,
    /// `--smoke`: the side-by-side bench, then a tiny scale run.
    smoke: bool,
}

fn parse_args() -> Opts {
    let mut o = Opts {
        traces: 1_000_000,
        http_traces: 300_000,
        single_requests: 20_000,
        searches: 2_000,
        purge_traces: 10_000_000,
        only_proxy: false,
        only_postgres: false,
        pg_search_traces: 0,
        no_proxy: false,
        proxy: proxy::ProxyOpts::full(),
        scale: None,
        smoke: false,
    };
    let (mut scale_dir, mut scale_keep, mut scale_pg) = (None, false, false);
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Applied after the presets (--quick, --smoke), whatever the order.
    let (mut proxy_secs, mut proxy_sessions, mut proxy_rounds) = (None, None, None);
    let mut i = 0;
    while i < args.len() {
        let val = |i: usize| -> usize {
            args.get(i + 1)
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| {
                    eprintln!("{} needs a number", args[i]);
                    std::process::exit(2)
                })
        };
        match args[i].as_str() {
            "--traces" => {
                o.traces = val(i);
                i += 1;
            }
            "--http-traces" => {
                o.http_traces = val(i);
                i += 1;
            }
            "--pg-search-traces" => {
                o.pg_search_traces = val(i);
                i += 1;
            }
            "--purge-traces" => {
                o.purge_traces = val(i);
                i += 1;
            }
            "--only" => {
                match args.get(i + 1).map(String::as_str) {
                    Some("proxy") => o.only_proxy = true,
                    Some("postgres") => o.only_postgres = true,
                    _ => {
                        eprintln!("--only needs a section: proxy or postgres");
                        std::process::exit(2)
                    }
                }
                i += 1;
            }
            "--no-proxy" => o.no_proxy = true,
            "--scale" => {
                let Some(targets) = args.get(i + 1).and_then(|v| scale::parse_targets(v)) else {
                    eprintln!("--scale needs sizes like 1_000_000,10_000_000,100_000_000");
                    std::process::exit(2)
                };
                o.scale = Some(scale::ScaleOpts {
                    targets,
                    dir: None,
                    keep: false,
                    searches: 1_000,
                    http_searches: 200,
                });
                i += 1;
            }
            "--scale-dir" => {
                let Some(d) = args.get(i + 1) else {
                    eprintln!("--scale-dir needs a directory");
                    std::process::exit(2)
                };
                scale_dir = Some(std::path::PathBuf::from(d));
                i += 1;
            }
            "--keep" => scale_keep = true,
            "--scale-pg" => {
                o.pg_search_traces = val(i);
                scale_pg = true;
                i += 1;
            }
            "--proxy-secs" => {
                proxy_secs = Some(Duration::from_secs(val(i) as u64));
                i += 1;
            }
            "--proxy-rounds" => {
                proxy_rounds = Some(val(i).max(1));
                i += 1;
            }
            "--proxy-sessions" => {
                let list: Option<Vec<usize>> = args.get(i + 1).and_then(|v| {
                    v.split(',')
                        .map(|n| n.trim().parse().ok().filter(|&n| n > 0))
                        .collect()
                });
                match list {
                    Some(l) if !l.is_empty() => proxy_sessions = Some(l),
                    _ => {
                        eprintln!("--proxy-sessions needs a list like 1,8,32");
                        std::process::exit(2)
                    }
                }
                i += 1;
            }
            "--smoke" => {
                o.smoke = true;
                o.proxy = proxy::ProxyOpts::smoke();
                o.purge_traces = 20_000;
                o.traces = 3_000;
                o.http_traces = 2_000;
                o.single_requests = 200;
                o.searches = 50;
            }
            "--quick" => {
                o.proxy = proxy::ProxyOpts::quick();
                o.purge_traces = 1_000_000;
                o.traces = 100_000;
                o.http_traces = 50_000;
                o.single_requests = 5_000;
                o.searches = 500;
            }
            "--help" | "-h" => {
                println!(
                    "registre-bench [--traces N (1000000)] [--http-traces N (300000)] [--purge-traces N (10000000)] [--quick | --smoke]\n\
                     \x20              [--only proxy | --no-proxy] [--proxy-secs N (10)] [--proxy-rounds N (5)]\n\
                     \x20              [--proxy-sessions 1,8,32]\n\
                     Runs registre (library and HTTP), SQLite and PostgreSQL (when\n\
                     REGISTRE_TEST_DATABASE_URL is set) on the same traces and prints a table;\n\
                     then the IMAP/SMTP proxy section: direct to Dovecot, through nginx's mail proxy\n\
                     and through registre's relay (needs root, Dovecot, Postfix; nginx and\n\
                     libnginx-mod-mail for the nginx peer). --only proxy runs that section alone.\n\
                     \n\
                     registre-bench --scale 1_000_000,10_000_000[,100_000_000] [--scale-dir DIR] [--keep]\n\
                     \x20              [--scale-pg N]\n\
                     Scale mode (issue 13): grows one embedded journal (DIR/registre-data; DIR\n\
                     defaults to .tmp-scale at the workspace root) to each size in turn, through\n\
                     the library (4 tasks, batches of 1000), and at each size measures: bytes per\n\
                     trace (all files); `registre serve` start-up to the first 200 of /healthz\n\
                     (median of 3); the server's RSS after start-up, after HTTP searches, and its\n\
                     peak; first-page searches in process by actor, patient, mailbox and time range\n\
                     (p50/p99); inclusion proofs (p50/p99); `registre verify --data` (traces/s).\n\
                     Needs the registre binary next to this one: cargo build --release -p registre.\n\
                     Checks free disk space before growing; the directory is removed at the end\n\
                     unless --keep, and grown further when it already exists.\n\
                     --scale-pg N: the same as --only postgres --pg-search-traces N (registre on\n\
                     PostgreSQL grown to N, searched next to the bare table; needs\n\
                     REGISTRE_TEST_DATABASE_URL); after --scale when both are given."
                );
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}; see --help");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    if let Some(d) = proxy_secs {
        o.proxy.measure = d;
    }
    if let Some(s) = proxy_sessions {
        o.proxy.sessions = s;
    }
    if let Some(r) = proxy_rounds {
        o.proxy.rounds = r;
    }
    if let Some(s) = &mut o.scale {
        s.dir = scale_dir;
        s.keep = scale_keep;
    } else if scale_dir.is_some() || scale_keep {
        eprintln!("--scale-dir and --keep go with --scale");
        std::process::exit(2);
    }
    o.only_postgres |= scale_pg;
    o
}

/// One measured figure.
pub struct Row {
    pub what: String,
    pub registre: Option<f64>,
    pub sqlite: Option<f64>,
    pub postgres: Option<f64>,
    pub unit: &'static str,
    /// Higher is better (throughput) or lower is better (latency, bytes).
    pub higher_better: bool,
}

fn main() {
    let o = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if o.only_proxy {
        rt.block_on(proxy::run(&o.proxy, &machine()));
        return;
    }
    if let Some(s) = &o.scale {
        if let Err(e) = rt.block_on(scale::run(s)) {
            eprintln!("scale: {e}");
            std::process::exit(1);
        }
        if !o.only_postgres {
            return;
        }
    }
    if o.only_postgres {
        rt.block_on(postgres_only(&o));
        return;
    }
    rt.block_on(async {
        run(&o).await;
        if !o.no_proxy {
            proxy::run(&o.proxy, &machine()).await;
        }
        if o.smoke {
            scale_smoke().await;
        }
    });
}

/// `--smoke`'s scale run: 20,000 traces, when the `registre` binary is built.
async fn scale_smoke() {
    if let Err(e) = scale::registre_binary() {
        eprintln!("SKIP scale smoke: {e}");
        return;
    }
    let dir = match tempfile::Builder::new()
        .prefix(".tmp-scale-smoke")
        .tempdir_in(".")
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("scale smoke: cannot make a directory: {e}");
            std::process::exit(1)
        }
    };
    let o = scale::ScaleOpts {
        targets: vec![20_000],
        dir: Some(dir.path().to_owned()),
        keep: false,
        searches: 100,
        http_searches: 20,
    };
    if let Err(e) = scale::run(&o).await {
        eprintln!("scale smoke: {e}");
        std::process::exit(1);
    }
}

/// `--only postgres`: raw COPY next to registre's PostgreSQL backend with
/// 1 and 2 nodes, same traces.
async fn postgres_only(o: &Opts) {
    let Ok(url) = std::env::var("REGISTRE_TEST_DATABASE_URL") else {
        eprintln!("SKIP: REGISTRE_TEST_DATABASE_URL is not set");
        return;
    };
    eprintln!("generating {} traces…", o.traces);
    let mut g = workload::Gen::new(42);
    let json: Vec<String> = (0..o.traces).map(|_| g.trace()).collect();
    let traces: Vec<Trace> = json
        .iter()
        .map(|j| parse_trace(j.as_bytes(), &Limits::default()).expect("valid trace"))
        .collect();
    let mut probe = workload::Gen::new(7);
    let actors: Vec<String> = (0..o.searches).map(|_| probe.actor()).collect();
    eprintln!("registre embedded, library: {} traces…", o.traces);
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let store =
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes())).expect("open"));
    let embedded = append_library(&store, &traces, 4).await;
    let (emb_p50, emb_p99) = search_latency(&store, &actors).await;
    drop(store);
    drop(dir);
    eprintln!("PostgreSQL: COPY of {} traces…", o.traces);
    let raw = peers::postgres::run(&url, &traces, &json, &actors)
        .await
        .expect("PostgreSQL COPY");
    let p = peers::pgstore::run(&url, &traces, &classes(), &actors, o.pg_search_traces).await;
    println!(
        "registre bench (postgres) — {}; {} traces (searches at {} traces)",
        machine(),
        o.traces,
        p.size
    );
    println!("| figure | registre on PostgreSQL | raw COPY | ratio | registre embedded |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| append, 1 node, 4 tasks × 1000 (traces/s) | {:.0} | {:.0} | {:.2}× | {embedded:.0} |",
        p.one_node,
        raw.rate,
        p.one_node / raw.rate
    );
    println!(
        "| append, 2 nodes, one log (traces/s) | {:.0} | {:.0} | {:.2}× | — |",
        p.two_nodes,
        raw.rate,
        p.two_nodes / raw.rate
    );
    println!(
        "| search first page p50 / p99 (ms) | {:.3} / {:.3} | {:.3} / {:.3} | | {emb_p50:.3} / {emb_p99:.3} |",
        p.search_p50_ms, p.search_p99_ms, raw.search_p50_ms, raw.search_p99_ms
    );
}

fn classes() -> Vec<ClassName> {
    ["mss", "technique", "applicative"]
        .iter()
        .map(|c| ClassName::new(c).expect("class"))
        .collect()
}

async fn run(o: &Opts) {
    eprintln!("generating {} traces…", o.traces);
    let mut g = workload::Gen::new(42);
    let json: Vec<String> = (0..o.traces).map(|_| g.trace()).collect();
    let avg = json.iter().map(String::len).sum::<usize>() as f64 / json.len() as f64;
    let traces: Vec<Trace> = json
        .iter()
        .map(|j| parse_trace(j.as_bytes(), &Limits::default()).expect("generated trace is valid"))
        .collect();
    let mut probe = workload::Gen::new(7);
    let probe_actors: Vec<String> = (0..o.searches).map(|_| probe.actor()).collect();
    let mut rows: Vec<Row> = Vec::new();
    let machine = machine();
    eprintln!("machine: {machine}; average trace JSON {avg:.0} B");

    // 0. registre, library level, Merkle log off: what the log costs.
    let nolog_rate = {
        let dir = tempfile::tempdir_in(".").expect("tempdir");
        let mut opts = EmbeddedOptions::new(classes());
        opts.merkle = false;
        let store = Arc::new(EmbeddedStore::open(dir.path(), opts).expect("open store"));
        eprintln!("registre library, Merkle log off: {} traces…", o.traces);
        append_library(&store, &traces, 4).await
    };

    // 0b. Encryption at rest and blind indexes off: what they cost.
    let nocrypto_rate = {
        let dir = tempfile::tempdir_in(".").expect("tempdir");
        let mut opts = EmbeddedOptions::new(classes());
        opts.at_rest_crypto = false;
        let store = Arc::new(EmbeddedStore::open(dir.path(), opts).expect("open store"));
        eprintln!(
            "registre library, encryption at rest OFF: {} traces…",
            o.traces
        );
        append_library(&store, &traces, 4).await
    };

    // 1. registre, library level.
    let dir = tempfile::tempdir_in(".").expect("tempdir");
    let store = Arc::new(
        EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes())).expect("open store"),
    );
    eprintln!(
        "registre library: appending {} traces in batches of 1000 (4 tasks)…",
        o.traces
    );
    let lib_rate = append_library(&store, &traces, 4).await;
    store.checkpoint_all().expect("checkpoint");
    let bytes: u64 = registre_store::data_dir_bytes(dir.path());
    let disk_per_trace = bytes as f64 / o.traces as f64;
    let heap_per_trace = store.index_heap_bytes() as f64 / o.traces as f64;
    if std::env::var_os("REGISTRE_BENCH_LIBRARY_ONLY").is_some() {
        println!("library: {lib_rate:.0} traces/s");
        return;
    }
    let (lib_p50, lib_p99) = search_latency(&store, &probe_actors).await;
    let (proof_p50, proof_p99) = proof_latency(&store, o.traces as u64).expect("proof");
    store.checkpoint_all().expect("checkpoint");
    let vkey = registre_log::Verifier::parse(&store.verifier_key()).expect("verifier key");
    // Reopen: recovery scan + index rebuild, as after a restart.
    drop(store);
    let t = Instant::now();
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::new(classes())).expect("reopen");
    let reopen_s = t.elapsed().as_secs_f64();
    drop(store);
    let t = Instant::now();
    let master = registre_store::crypto::MasterKey::read(
        &registre_store::crypto::default_master_path(dir.path()),
    )
    .expect("master key");
    let report = registre_store::verify_data_dir(dir.path(), &[vkey], Some(&master), &mut |_| {})
        .expect("verify");
    assert!(report.ok(), "verify found problems: {:?}", report.failures);
    let verify_rate = report.traces() as f64 / t.elapsed().as_secs_f64();

    // 2. registre over HTTP, batches of 1000, 2 client tasks.
    let http = peers::http::run(
        &json[..o.http_traces.min(json.len())],
        o.single_requests,
        &probe_actors,
    )
    .await;

    // 2b. Health-IT intake: FHIR, syslog TLS, ITI-81.
    let health = {
        let (singles, bundles, syslog) = match o.traces {
            n if n <= 3_000 => (200, 10, 2_000),
            n if n <= 100_000 => (5_000, 200, 20_000),
            _ => (20_000, 1_000, 100_000),
        };
        peers::health::run(singles, bundles, syslog, o.traces, o.searches).await
    };

    // 3. SQLite and 4. PostgreSQL, same traces, same indexes.
    eprintln!("SQLite: inserting {} traces…", o.traces);
    let sqlite = peers::sqlite::run(&traces, &json, &probe_actors);
    let pg = match std::env::var("REGISTRE_TEST_DATABASE_URL") {
        Ok(url) => {
            eprintln!("PostgreSQL: COPY of {} traces…", o.traces);
            match peers::postgres::run(&url, &traces, &json, &probe_actors).await {
                Ok(r) => Some(r),
                Err(e) => {
                    eprintln!("PostgreSQL skipped: {e}");
                    None
                }
            }
        }
        Err(_) => {
            eprintln!("PostgreSQL skipped: REGISTRE_TEST_DATABASE_URL is not set");
            None
        }
    };

    // 5. registre's PostgreSQL backend, 1 and 2 nodes, next to raw COPY.
    let pg_store = match (&pg, std::env::var("REGISTRE_TEST_DATABASE_URL")) {
        (Some(_), Ok(url)) => {
            Some(peers::pgstore::run(&url, &traces, &classes(), &probe_actors, 0).await)
        }
        _ => None,
    };

    rows.push(Row {
        what: "durable append, library, batches of 1000 (traces/s)".into(),
        registre: Some(lib_rate),
        sqlite: Some(sqlite.rate),
        postgres: pg.as_ref().map(|p| p.rate),
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: "durable append, HTTP, batches of 1000, 2 clients (traces/s)".into(),
        registre: Some(http.batch_rate),
        sqlite: Some(sqlite.rate),
        postgres: pg.as_ref().map(|p| p.rate),
        unit: "/s",
        higher_better: true,
    });
    if let Some(p) = &pg_store {
        rows.push(Row {
            what: "registre on PostgreSQL, 1 node, 4 tasks × batches of 1000 (traces/s)".into(),
            registre: Some(p.one_node),
            sqlite: None,
            postgres: pg.as_ref().map(|p| p.rate),
            unit: "/s",
            higher_better: true,
        });
        rows.push(Row {
            what: "registre on PostgreSQL, 2 nodes, one log (traces/s)".into(),
            registre: Some(p.two_nodes),
            sqlite: None,
            postgres: pg.as_ref().map(|p| p.rate),
            unit: "/s",
            higher_better: true,
        });
        rows.push(Row {
            what: format!(
                "registre on PostgreSQL: search first page p99 at {} traces (ms)",
                p.size
            ),
            registre: Some(p.search_p99_ms),
            sqlite: None,
            postgres: pg.as_ref().map(|p| p.search_p99_ms),
            unit: "ms",
            higher_better: false,
        });
        println!(
            "PostgreSQL backend: 1 node {:.0} traces/s, 2 nodes {:.0} traces/s, search p50/p99 {:.3}/{:.3} ms (embedded library: {lib_rate:.0} traces/s)",
            p.one_node, p.two_nodes, p.search_p50_ms, p.search_p99_ms
        );
    }
    rows.push(Row {
        what: "FHIR AuditEvent, batch Bundles of 100, 2 clients (events/s)".into(),
        registre: Some(health.fhir_bundle_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: "FHIR AuditEvent, one per request, 64 clients (events/s)".into(),
        registre: Some(health.fhir_single_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: "FHIR AuditEvent, one per request: p50 / p99 (ms)".into(),
        registre: Some(health.fhir_single_p50_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "  … p99 (ms)".into(),
        registre: Some(health.fhir_single_p99_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "syslog TLS, DICOM audit messages, 1 sender (msgs/s)".into(),
        registre: Some(health.syslog_1_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: "syslog TLS, DICOM audit messages, 8 senders (msgs/s)".into(),
        registre: Some(health.syslog_8_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: format!(
            "ITI-81 search (patient, date) over HTTP at {} traces: p50 (ms)",
            health.iti81_traces
        ),
        registre: Some(health.iti81_p50_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "ITI-81 search: p99 (ms)".into(),
        registre: Some(health.iti81_p99_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "one trace per request, 64 clients: p50 (ms)".into(),
        registre: Some(http.single_p50_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "one trace per request, 64 clients: p99 (ms)".into(),
        registre: Some(http.single_p99_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "one trace per request, 64 clients (traces/s)".into(),
        registre: Some(http.single_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: format!(
            "search by actor, first page, in process, at {} traces: p50 (ms)",
            o.traces
        ),
        registre: Some(lib_p50),
        sqlite: Some(sqlite.search_p50_ms),
        postgres: pg.as_ref().map(|p| p.search_p50_ms),
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "search by actor, first page: p99 (ms)".into(),
        registre: Some(lib_p99),
        sqlite: Some(sqlite.search_p99_ms),
        postgres: pg.as_ref().map(|p| p.search_p99_ms),
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: format!(
            "search by actor over HTTP at {} traces: p50 (ms)",
            o.http_traces
        ),
        registre: Some(http.search_p50_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "search by actor over HTTP: p99 (ms)".into(),
        registre: Some(http.search_p99_ms),
        sqlite: None,
        postgres: None,
        unit: "ms",
        higher_better: false,
    });
    rows.push(Row {
        what: "bytes per trace on disk (all files)".into(),
        registre: Some(disk_per_trace),
        sqlite: Some(sqlite.bytes_per_trace),
        postgres: pg.as_ref().map(|p| p.bytes_per_trace),
        unit: "B",
        higher_better: false,
    });
    rows.push(Row {
        what: "registre: index bytes per trace in memory (rebuilt at open)".into(),
        registre: Some(heap_per_trace),
        sqlite: None,
        postgres: None,
        unit: "B",
        higher_better: false,
    });
    rows.push(Row {
        what: "durable append, library, Merkle log OFF (traces/s; cost of the log)".into(),
        registre: Some(nolog_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: "durable append, library, encryption + blind indexes OFF (traces/s; their cost)"
            .into(),
        registre: Some(nocrypto_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    let (purge_rate, purge_held_rate, purged) = purge_bench(&traces, o.purge_traces).await;
    rows.push(Row {
        what: format!(
            "purge, {purged} of {} traces past retention (traces/s)",
            o.purge_traces
        ),
        registre: Some(purge_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: "purge with a legal hold on one actor: every record opened (traces/s)".into(),
        registre: Some(purge_held_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: format!("inclusion proof at {} traces: p50 (µs)", o.traces),
        registre: Some(proof_p50),
        sqlite: None,
        postgres: None,
        unit: "µs",
        higher_better: false,
    });
    rows.push(Row {
        what: "inclusion proof: p99 (µs)".into(),
        registre: Some(proof_p99),
        sqlite: None,
        postgres: None,
        unit: "µs",
        higher_better: false,
    });
    rows.push(Row {
        what: "registre verify --data (traces/s)".into(),
        registre: Some(verify_rate),
        sqlite: None,
        postgres: None,
        unit: "/s",
        higher_better: true,
    });
    rows.push(Row {
        what: format!(
            "registre: open after restart (recovery + index rebuild) at {} traces (s)",
            o.traces
        ),
        registre: Some(reopen_s),
        sqlite: None,
        postgres: None,
        unit: "s",
        higher_better: false,
    });
    print_table(&rows, &machine, o, avg);
}

/// Ingests `n` traces (cycling through `traces`) one simulated hour per
/// batch of 10,000, into 1-hour segments; then purges everything older than
/// the last hour: returns the purge rate, the rate of a second store purged
/// under a legal hold, and the traces purged.
async fn purge_bench(traces: &[Trace], n: usize) -> (f64, f64, u64) {
    use registre_store::clock::ManualClock;
    let mut out = Vec::new();
    for with_hold in [false, true] {
        let dir = tempfile::tempdir_in(".").expect("tempdir");
        let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
        let mut opts = EmbeddedOptions::new(classes());
        opts.clock = clock.clone();
        opts.segment_period_secs = 3600;
        let store = Arc::new(EmbeddedStore::open(dir.path(), opts).expect("open store"));
        // Smaller on the second run: opening every record is slower.
        let n = if with_hold { (n / 10).max(1000) } else { n };
        eprintln!(
            "purge{}: ingesting {n} traces over {} simulated hours…",
            if with_hold { " under a legal hold" } else { "" },
            n.div_ceil(10_000)
        );
        let mut done = 0;
        while done < n {
            let batch: Vec<Trace> = (done..(done + 10_000).min(n))
                .map(|i| traces[i % traces.len()].clone())
                .collect();
            done += batch.len();
            append_library(&store, &batch, 2).await;
            clock.advance_secs(3600);
        }
        let mut holds = Vec::new();
        if with_hold {
            holds.push(Query {
                actor: traces.first().map(|t| t.actor.id.clone()),
                ..Query::default()
            });
        }
        let retention: Vec<(ClassName, registre_model::Retention)> = classes()
            .into_iter()
            .map(|c| {
                (
                    c,
                    registre_model::Retention::parse("1 hour").expect("retention"),
                )
            })
            .collect();
        let t = Instant::now();
        let report = store
            .purge(registre_store::PurgeRequest {
                retention,
                holds,
                dry_run: false,
                progress: None,
            })
            .await
            .expect("purge");
        let secs = t.elapsed().as_secs_f64();
        let gone = report.purged() + report.held();
        eprintln!(
            "  purged {} traces, {} held, in {secs:.2} s",
            report.purged(),
            report.held()
        );
        out.push((gone as f64 / secs, report.purged()));
    }
    (out[0].0, out[1].0, out[0].1)
}

async fn append_library(store: &Arc<EmbeddedStore>, traces: &[Trace], tasks: usize) -> f64 {
    let batches: Vec<Vec<Trace>> = traces.chunks(1000).map(<[Trace]>::to_vec).collect();
    let per_task = batches.len().div_ceil(tasks);
    let mut groups: Vec<Vec<Vec<Trace>>> = Vec::new();
    let mut it = batches.into_iter();
    for _ in 0..tasks {
        groups.push(it.by_ref().take(per_task).collect());
    }
    let start = Instant::now();
    let mut handles = Vec::new();
    for g in groups {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for b in g {
                store.append(b).await.expect("append");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    traces.len() as f64 / start.elapsed().as_secs_f64()
}

async fn search_latency(store: &Arc<EmbeddedStore>, actors: &[String]) -> (f64, f64) {
    let s = time_searches(&**store, actors.iter().map(|a| actor_query(a, 50)))
        .await
        .expect("search");
    (s.p50_ms, s.p99_ms)
}

/// The first page (`limit` traces) of one actor's traces.
pub fn actor_query(actor: &str, limit: usize) -> Query {
    Query {
        actor: Some(actor.to_owned()),
        limit,
        ..Query::default()
    }
}

/// What `time_searches` measured.
pub struct Searched {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Queries whose first page was empty.
    pub empty: usize,
}

/// Runs each query once, in order, timing its first page.
pub async fn time_searches<S: Store + ?Sized>(
    store: &S,
    queries: impl IntoIterator<Item = Query>,
) -> Result<Searched, String> {
    let mut lat = Vec::new();
    let mut empty = 0;
    for q in queries {
        let t = Instant::now();
        let page = store.search(q).await.map_err(|e| format!("search: {e}"))?;
        lat.push(t.elapsed());
        empty += usize::from(page.traces.is_empty());
        std::hint::black_box(page);
    }
    let (p50_ms, p99_ms) = percentiles(&mut lat);
    Ok(Searched {
        p50_ms,
        p99_ms,
        empty,
    })
}

/// 10,000 inclusion proofs in the `mss` log at `size`, at pseudo-random
/// indexes: p50 and p99 (µs).
pub fn proof_latency(store: &EmbeddedStore, size: u64) -> Result<(f64, f64), String> {
    let mut lat = Vec::with_capacity(10_000);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..10_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let index = x % size.max(1);
        let t = Instant::now();
        let p = store
            .inclusion_proof("mss", index, size)
            .map_err(|e| format!("inclusion proof of {index} at {size}: {e}"))?;
        lat.push(t.elapsed());
        std::hint::black_box(p);
    }
    let (p50, p99) = percentiles(&mut lat);
    Ok((p50 * 1000.0, p99 * 1000.0))
}

pub fn percentiles(lat: &mut [Duration]) -> (f64, f64) {
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.50), at(0.99))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "/s" => format!("{:.0}", v),
        "ms" => format!("{v:.3}"),
        "s" => format!("{v:.2}"),
        "µs" => format!("{v:.2}"),
        _ => format!("{v:.0}"),
    }
}

fn print_table(rows: &[Row], machine: &str, o: &Opts, avg: f64) {
    println!();
    println!(
        "registre bench — {machine}; {} traces (avg {avg:.0} B JSON), HTTP {} traces; all durable (fsync)",
        o.traces, o.http_traces
    );
    println!(
        "| {:<70} | {:>12} | {:>12} | {:>12} | {:>10} | {:>10} |",
        "figure", "registre", "SQLite", "PostgreSQL", "reg/SQLite", "reg/PG"
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|",
        "-".repeat(72),
        "-".repeat(14),
        "-".repeat(14),
        "-".repeat(14),
        "-".repeat(12),
        "-".repeat(12)
    );
    for r in rows {
        let cell = |v: Option<f64>| v.map_or("—".into(), |v| fmt(v, r.unit));
        let ratio = |peer: Option<f64>| match (r.registre, peer) {
            (Some(a), Some(b)) if b > 0.0 && a > 0.0 => {
                let x = if r.higher_better { a / b } else { b / a };
                format!("{x:.2}×")
            }
            _ => "—".into(),
        };
        println!(
            "| {:<70} | {:>12} | {:>12} | {:>12} | {:>10} | {:>10} |",
            r.what,
            cell(r.registre),
            cell(r.sqlite),
            cell(r.postgres),
            ratio(r.sqlite),
            ratio(r.postgres)
        );
    }
    println!("(ratios: how many times better registre is; > 1 means registre wins)");
}
