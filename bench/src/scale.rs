//! Scale mode (issue 13): one embedded journal grown to each target size in
//! turn (`--scale 1000000,10000000,100000000`), with what matters at that
//! size measured on the real `registre` binary and in process.
//!
//! For each target N, in ascending order, on one data directory:
//! 1. **grow**: traces of the bench workload (`Gen::scale_trace`: the
//!    side-by-side bench's traces, plus a patient on one trace in four, with
//!    the action time set to when the batch is made) are generated on one
//!    thread while 4 tasks append them through `EmbeddedStore` in batches of
//!    1,000, until the journal holds N traces; a progress line every 5 s.
//!    Before growing, the free space of the file system is checked against
//!    the bytes per trace of the previous step (700 B before the first).
//!    Then the store is checkpointed and closed (its threads joined).
//! 2. **bytes per trace**: every file under the data directory, recursively,
//!    over the traces it holds.
//! 3. **start-up**: `registre serve` (the binary next to this one) on the
//!    directory, from spawn to the first 200 of `GET /healthz`; three times
//!    (SIGTERM and exit between), median.
//! 4. **RSS** of that process (`VmRSS`, `/proc/<pid>/status`): right after
//!    the third start-up, and after searches by actor over HTTP with the
//!    admin token (each search is itself appended as an applicative trace,
//!    as in production); the peak (`VmHWM`) then.
//! 5. **first page in process**: the server stopped, the directory opened by
//!    `EmbeddedStore` in this process (that open is timed too), then the
//!    first page (100, the API's default) of ~1,000 searches each by actor,
//!    by patient, by mailbox and by time range, values drawn from the traces
//!    the journal holds (so every query hits). The time range is on the
//!    action time (`Query::occurred_since/occurred_until`; the first scale
//!    run, in BENCHMARKS.md, used the reception time): `time_range_query` is
//!    the one place to switch it.
//! 6. **inclusion proofs**: 10,000 at random indexes of the `mss` log at its
//!    current size.
//! 7. **`registre verify --data`**: the binary, with the directory's master
//!    key, timed whole: traces/s.
//!
//! Then a markdown table (one row per N), the ratio of every figure to the
//! first N's, and the targets checked on the largest N. The data
//! directory is removed at the end unless `--keep`; an existing one (kept
//! from an earlier run) is grown further, not replaced.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use registre_model::{Limits, Trace, parse_trace};
use registre_store::{EmbeddedOptions, EmbeddedStore, Query, Store};

use crate::workload::Gen;

/// The first page a client gets: the API's default `limit`
/// (`registre_intake`'s `search::DEFAULT_LIMIT`).
const PAGE: usize = 100;
/// Bytes per trace assumed for the disk check before anything is measured.
const FIRST_BYTES_PER_TRACE: f64 = 700.0;
/// Traces the query values are drawn from (the first ones of the stream).
const PROBE_POOL: u64 = 100_000;
/// Width of a time-range query.
const WINDOW_MICROS: i64 = 1_000_000;

pub struct ScaleOpts {
    /// Journal sizes to reach and measure, ascending.
    pub targets: Vec<u64>,
    /// Where the data directory goes (default: `.tmp-scale` at the
    /// workspace root).
    pub dir: Option<PathBuf>,
    /// Keep the data directory at the end.
    pub keep: bool,
    /// Searches per kind, in process.
    pub searches: usize,
    /// Searches over HTTP before the second RSS reading.
    pub http_searches: usize,
}

/// `--scale`'s list: sizes separated by commas, `_` allowed in numbers.
pub fn parse_targets(list: &str) -> Option<Vec<u64>> {
    let mut v: Vec<u64> = list
        .split(',')
        .map(|n| n.trim().replace('_', "").parse().ok().filter(|&n| n > 0))
        .collect::<Option<_>>()?;
    v.sort_unstable();
    v.dedup();
    (!v.is_empty()).then_some(v)
}

/// The default scale directory: `.tmp-scale` at the workspace root (git
/// ignores `/.tmp*`), else in the current directory.
pub fn default_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if root.join("Cargo.toml").exists() {
        root.join(".tmp-scale")
    } else {
        PathBuf::from(".tmp-scale")
    }
}

/// The time-range query: on the action time (`occurred_at`); `since` and
/// `until` instead would bound the reception time (then change `TIME_RANGE`
/// and the column's heading). The scale traces' action time is when their
/// batch was made, a moment before their reception: the same windows select
/// nearly the same traces either way.
fn time_range_query(since: i64, until: i64) -> Query {
    Query {
        occurred_since: Some(since),
        occurred_until: Some(until),
        limit: PAGE,
        ..Query::default()
    }
}
const TIME_RANGE: &str = "action-time range (1 s)";

/// Everything measured at one size.
struct Step {
    traces: u64,
    grow_rate: Option<f64>,
    bytes_per_trace: f64,
    startup_s: f64,
    rss_start: f64,
    rss_after: f64,
    rss_peak: f64,
    open_s: f64,
    /// By actor, patient, mailbox, time range: p50, p99 (ms).
    search: [(f64, f64); 4],
    proof: (f64, f64),
    verify_rate: Option<f64>,
}

/// One column of the table: its heading and its one or two values.
struct Column {
    head: &'static str,
    get: fn(&Step) -> Vec<Option<f64>>,
    /// Decimals shown.
    decimals: usize,
}

const COLUMNS: &[Column] = &[
    Column {
        head: "grow, generation included (traces/s)",
        get: |s| vec![s.grow_rate],
        decimals: 0,
    },
    Column {
        head: "B/trace, all files",
        get: |s| vec![Some(s.bytes_per_trace)],
        decimals: 0,
    },
    Column {
        head: "start-up, median of 3 (s)",
        get: |s| vec![Some(s.startup_s)],
        decimals: 3,
    },
    Column {
        head: "RSS started / after HTTP searches / peak (MB)",
        get: |s| vec![Some(s.rss_start), Some(s.rss_after), Some(s.rss_peak)],
        decimals: 0,
    },
    Column {
        head: "open in process (s)",
        get: |s| vec![Some(s.open_s)],
        decimals: 3,
    },
    Column {
        head: "by actor p50 / p99 (ms)",
        get: |s| vec![Some(s.search[0].0), Some(s.search[0].1)],
        decimals: 3,
    },
    Column {
        head: "by patient p50 / p99 (ms)",
        get: |s| vec![Some(s.search[1].0), Some(s.search[1].1)],
        decimals: 3,
    },
    Column {
        head: "by mailbox p50 / p99 (ms)",
        get: |s| vec![Some(s.search[2].0), Some(s.search[2].1)],
        decimals: 3,
    },
    Column {
        head: "by action-time range p50 / p99 (ms)",
        get: |s| vec![Some(s.search[3].0), Some(s.search[3].1)],
        decimals: 3,
    },
    Column {
        head: "inclusion proof p50 / p99 (µs)",
        get: |s| vec![Some(s.proof.0), Some(s.proof.1)],
        decimals: 2,
    },
    Column {
        head: "verify --data (traces/s)",
        get: |s| vec![s.verify_rate],
        decimals: 0,
    },
];

/// Values the in-process searches ask for, drawn from traces the journal
/// holds.
struct Probes {
    actors: Vec<String>,
    patients: Vec<String>,
    mailboxes: Vec<String>,
}

/// The `registre` binary built next to this one.
pub fn registre_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no directory", exe.display()))?;
    let bin = dir.join("registre");
    if !bin.exists() {
        let release = if cfg!(debug_assertions) {
            ""
        } else {
            " --release"
        };
        return Err(format!(
            "the scale mode runs the real server, but {} does not exist: build it with \
             `cargo build{release} -p registre` (the package of the `registre` binary), then rerun",
            bin.display()
        ));
    }
    Ok(bin)
}

pub async fn run(o: &ScaleOpts) -> Result<(), String> {
    let bin = registre_binary()?;
    let root = o.dir.clone().unwrap_or_else(default_dir);
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    // Absolute: the server runs in this directory.
    let root = std::fs::canonicalize(&root)
        .map_err(|e| format!("cannot resolve {}: {e}", root.display()))?;
    let data = root.join("registre-data");
    if data.exists() && !registre_store::crypto::default_master_path(&data).exists() {
        return Err(format!(
            "{} exists but is not a journal this mode made (no keys/master.key): remove it or \
             choose another --scale-dir",
            data.display()
        ));
    }
    let machine = crate::machine();
    eprintln!(
        "scale: {} in {}; registre binary {}",
        o.targets
            .iter()
            .map(|&n| thousands(n))
            .collect::<Vec<_>>()
            .join(", "),
        data.display(),
        bin.display()
    );
    let first = o.targets.first().copied().unwrap_or(0);
    let mut scale = Scale {
        o,
        probes: probes(first.min(PROBE_POOL))?,
        bin,
        root: root.clone(),
        data: data.clone(),
        stream: Gen::new(42),
        windows: Vec::new(),
    };
    let mut steps: Vec<Step> = Vec::new();
    for &target in &o.targets {
        let bpt = steps
            .last()
            .map_or(FIRST_BYTES_PER_TRACE, |s| s.bytes_per_trace);
        let step = scale.step(target, bpt).await.map_err(|e| {
            format!(
                "{e}\n(the data directory {} is left in place; rerun to grow it further, or \
                 delete it)",
                data.display()
            )
        })?;
        steps.push(step);
        print_steps(&steps, &machine);
    }
    print_targets(&steps);
    if o.keep {
        eprintln!("kept {}", data.display());
    } else {
        std::fs::remove_dir_all(&data)
            .map_err(|e| format!("cannot remove {}: {e}", data.display()))?;
        let _ = std::fs::remove_file(root.join("serve.log"));
        // Only when empty: the directory may be the user's.
        let _ = std::fs::remove_dir(&root);
    }
    Ok(())
}

/// One run of the mode: where, with what, and what carries over between
/// sizes.
struct Scale<'a> {
    o: &'a ScaleOpts,
    bin: PathBuf,
    root: PathBuf,
    data: PathBuf,
    probes: Probes,
    /// The trace stream, continued from one size to the next.
    stream: Gen,
    /// When traces were appended (µs): where time ranges are drawn.
    windows: Vec<(i64, i64)>,
}

impl Scale<'_> {
    /// Grows the journal to `target` traces and measures it.
    async fn step(&mut self, target: u64, bytes_per_trace: f64) -> Result<Step, String> {
        let data = self.data.clone();
        let store = Arc::new(open(&data)?.0);
        let have = journal_size(&store);
        let grow_rate = if have < target {
            check_disk(&self.root, target - have, bytes_per_trace)?;
            eprintln!(
                "scale: growing the journal from {} to {} traces…",
                thousands(have),
                thousands(target)
            );
            let t0 = crate::peers::now_micros();
            let stream = std::mem::replace(&mut self.stream, Gen::new(0));
            let (rate, stream) = grow(store.clone(), stream, target - have).await?;
            self.stream = stream;
            self.windows.push((t0, crate::peers::now_micros()));
            Some(rate)
        } else {
            eprintln!(
                "scale: the journal already holds {} traces (≥ {}): measuring it as it is",
                thousands(have),
                thousands(target)
            );
            None
        };
        store
            .checkpoint_all()
            .map_err(|e| format!("checkpoint: {e}"))?;
        close(store)?;
        let files = dir_bytes(&data).map_err(|e| format!("cannot size {}: {e}", data.display()))?;

        eprintln!("scale: start-up of `registre serve`, 3 times…");
        let served = self.serve_figures().await?;

        eprintln!("scale: searches and proofs in process…");
        let (store, open_s) = open(&data)?;
        let store = Arc::new(store);
        let traces = journal_size(&store);
        if self.windows.is_empty() {
            self.windows.push(newest_window(&store).await?);
        }
        let search = searches(&store, self.o.searches, &self.probes, &self.windows).await?;
        let mss = store
            .stats()
            .iter()
            .find(|s| s.log.as_str() == "mss")
            .map_or(0, |s| s.size);
        let proof = tokio::task::block_in_place(|| crate::proof_latency(&store, mss))?;
        close(store)?;

        eprintln!("scale: registre verify --data…");
        let verify_rate = match verify(&self.bin, &data, traces) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("scale: verify failed: {e}");
                None
            }
        };
        Ok(Step {
            traces,
            grow_rate,
            bytes_per_trace: files as f64 / traces.max(1) as f64,
            startup_s: served.startup_s,
            rss_start: served.rss_start,
            rss_after: served.rss_after,
            rss_peak: served.rss_peak,
            open_s,
            search,
            proof,
            verify_rate,
        })
    }

    /// Three start-ups (median), then RSS after the last one, and after
    /// `o.http_searches` searches by actor over HTTP.
    async fn serve_figures(&self) -> Result<Served, String> {
        let (bin, root, data) = (&self.bin, &self.root, &self.data);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let mut times = Vec::new();
        let mut last = None;
        for run in 1..=3 {
            let (server, secs) = Server::start(bin, root, data, &client).await?;
            eprintln!("  start-up {run}: {secs:.3} s");
            times.push(secs);
            if run < 3 {
                server.stop().await?;
            } else {
                last = Some(server);
            }
        }
        let server = last.ok_or("no start-up measured")?;
        let (rss_start, _) = server.rss()?;
        let token = std::fs::read_to_string(data.join("admin-token"))
            .map_err(|e| format!("cannot read the admin token: {e}"))?;
        let url = format!("{}/v1/traces", server.url);
        let limit = PAGE.to_string();
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..self.o.http_searches {
            let r = client
                .get(&url)
                .bearer_auth(token.trim())
                .query(&[
                    ("actor", rng.pick(&self.probes.actors)),
                    ("limit", limit.as_str()),
                ])
                .send()
                .await
                .map_err(|e| format!("search over HTTP: {e}"))?;
            if r.status() != reqwest::StatusCode::OK {
                return Err(format!("search over HTTP answered {}", r.status()));
            }
            let _ = r.bytes().await;
        }
        let (rss_after, rss_peak) = server.rss()?;
        server.stop().await?;
        times.sort_by(f64::total_cmp);
        Ok(Served {
            startup_s: times.get(1).copied().unwrap_or_default(),
            rss_start,
            rss_after,
            rss_peak,
        })
    }
}

fn open(data: &Path) -> Result<(EmbeddedStore, f64), String> {
    let t = Instant::now();
    let store = tokio::task::block_in_place(|| {
        EmbeddedStore::open(data, EmbeddedOptions::new(crate::classes()))
    })
    .map_err(|e| format!("cannot open the journal in {}: {e}", data.display()))?;
    Ok((store, t.elapsed().as_secs_f64()))
}

/// Drops the store and waits for its threads (the directory's lock goes
/// with them).
fn close(store: Arc<EmbeddedStore>) -> Result<(), String> {
    let store = Arc::try_unwrap(store)
        .map_err(|_| "the store is still shared at close (a task kept it)".to_owned())?;
    tokio::task::block_in_place(|| drop(store));
    Ok(())
}

fn journal_size(store: &EmbeddedStore) -> u64 {
    store.stats().iter().map(|s| s.size).sum()
}

/// Stops with a clear message when growing by `traces` would not fit.
fn check_disk(root: &Path, traces: u64, bytes_per_trace: f64) -> Result<(), String> {
    let need = (traces as f64 * bytes_per_trace * 1.15) as u64;
    let free = free_bytes(root)?;
    if need > free {
        return Err(format!(
            "not enough disk: {} more traces at ~{bytes_per_trace:.0} B each (+15 %) need {}, \
             the file system of {} has {} free; free space or give --scale-dir on a larger one",
            thousands(traces),
            gigabytes(need),
            root.display(),
            gigabytes(free)
        ));
    }
    eprintln!(
        "scale: disk check: ~{} needed, {} free",
        gigabytes(need),
        gigabytes(free)
    );
    Ok(())
}

/// Free bytes of `dir`'s file system, from `df -Pk`.
fn free_bytes(dir: &Path) -> Result<u64, String> {
    let out = Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run df: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| {
            format!(
                "cannot read the free space of {} from df: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        })
}

/// Every file under `dir`, recursively, in bytes.
fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        n += if meta.is_dir() {
            dir_bytes(&e.path())?
        } else {
            meta.len()
        };
    }
    Ok(n)
}

/// Appends `count` scale traces from 4 tasks while one thread makes them;
/// traces/s, and the generator to go on with.
async fn grow(
    store: Arc<EmbeddedStore>,
    mut stream: Gen,
    count: u64,
) -> Result<(f64, Gen), String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Trace>>(16);
    let maker = std::thread::spawn(move || -> Result<Gen, String> {
        let mut left = count;
        while left > 0 {
            let n = left.min(1000);
            let at = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.3f+00:00")
                .to_string();
            let batch = (0..n)
                .map(|_| {
                    parse_trace(stream.scale_trace(&at).as_bytes(), &Limits::default())
                        .map_err(|e| format!("a generated trace was refused: {e}"))
                })
                .collect::<Result<Vec<Trace>, String>>()?;
            if tx.blocking_send(batch).is_err() {
                break; // the appenders stopped: their error is reported
            }
            left -= n;
        }
        Ok(stream)
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (rx, store, done) = (rx.clone(), store.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(batch) = next else {
                    return Ok(());
                };
                let n = batch.len() as u64;
                store
                    .append(batch)
                    .await
                    .map_err(|e| format!("append: {e}"))?;
                done.fetch_add(n, Ordering::Relaxed);
            }
        });
    }
    drop(rx);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    let mut last = (Instant::now(), 0u64);
    let result: Result<(), String> = loop {
        tokio::select! {
            r = tasks.join_next() => match r {
                None => break Ok(()),
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => break Err(e),
                Some(Err(e)) => break Err(format!("an append task failed: {e}")),
            },
            _ = tick.tick() => {
                let n = done.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), n);
                eprintln!(
                    "  {:>13} / {} traces ({:.0} %), {:.0} traces/s over the last 5 s",
                    thousands(n),
                    thousands(count),
                    n as f64 * 100.0 / count as f64,
                    rate
                );
            }
        }
    };
    // Stops the appenders on error, so that the maker's sends fail.
    tasks.abort_all();
    drop(tasks);
    let stream = tokio::task::block_in_place(|| maker.join())
        .map_err(|_| "the trace generator panicked".to_owned())??;
    result?;
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "  grown by {} traces at {rate:.0} traces/s",
        thousands(count)
    );
    Ok((rate, stream))
}

/// Query values from the first `n` traces of the stream every journal of
/// this mode starts with.
fn probes(n: u64) -> Result<Probes, String> {
    let mut g = Gen::new(42);
    let mut p = Probes {
        actors: Vec::new(),
        patients: Vec::new(),
        mailboxes: Vec::new(),
    };
    for _ in 0..n {
        let t = parse_trace(
            g.scale_trace("2026-11-28T15:42:07.123+01:00").as_bytes(),
            &Limits::default(),
        )
        .map_err(|e| format!("a generated trace was refused: {e}"))?;
        let c = crate::peers::cols(&t);
        p.actors.push(c.actor.to_owned());
        p.patients.extend(c.patient.map(str::to_owned));
        p.mailboxes.extend(c.mailbox.map(str::to_owned));
    }
    for v in [&mut p.actors, &mut p.patients, &mut p.mailboxes] {
        v.sort_unstable();
        v.dedup();
    }
    Ok(p)
}

/// A deterministic pseudo-random sequence (xorshift64).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> &'a str {
        v.get(self.below(v.len() as u64) as usize)
            .map_or("", String::as_str)
    }
}

const SEARCH_KINDS: [&str; 4] = [
    "by actor",
    "by patient",
    "by mailbox",
    "by action-time range",
];

/// First pages in process: by actor, patient, mailbox and time range.
async fn searches(
    store: &EmbeddedStore,
    n: usize,
    p: &Probes,
    windows: &[(i64, i64)],
) -> Result<[(f64, f64); 4], String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = [(0.0, 0.0); 4];
    for (kind, slot) in out.iter_mut().enumerate() {
        let queries: Vec<Query> = (0..n)
            .map(|_| match kind {
                0 => crate::actor_query(rng.pick(&p.actors), PAGE),
                1 => Query {
                    patient: Some(rng.pick(&p.patients).to_owned()),
                    limit: PAGE,
                    ..Query::default()
                },
                2 => Query {
                    mailbox: Some(rng.pick(&p.mailboxes).to_owned()),
                    limit: PAGE,
                    ..Query::default()
                },
                _ => {
                    let (a, b) = windows[rng.below(windows.len() as u64) as usize];
                    let span = (b - a - WINDOW_MICROS).max(1);
                    let since = a + rng.below(span as u64) as i64;
                    time_range_query(since, since + WINDOW_MICROS)
                }
            })
            .collect();
        let s = crate::time_searches(store, queries).await?;
        if s.empty > 0 {
            eprintln!(
                "  note: {} of {n} searches {} found nothing",
                s.empty, SEARCH_KINDS[kind]
            );
        }
        *slot = (s.p50_ms, s.p99_ms);
    }
    Ok(out)
}

/// When nothing was appended in this run: the second before the newest
/// trace's action time.
async fn newest_window(store: &EmbeddedStore) -> Result<(i64, i64), String> {
    let page = store
        .search(Query {
            limit: 1,
            ..Query::default()
        })
        .await
        .map_err(|e| format!("search: {e}"))?;
    let at = page
        .traces
        .first()
        .and_then(|r| r.trace.occurred_at.parse::<jiff::Timestamp>().ok())
        .ok_or("the journal is empty")?
        .as_microsecond();
    Ok((at - WINDOW_MICROS, at + 1))
}

/// What was measured on the real server.
struct Served {
    startup_s: f64,
    rss_start: f64,
    rss_after: f64,
    rss_peak: f64,
}

/// A running `registre serve`, killed if dropped before `stop`.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `registre serve` on `data`: the server and the time from spawn
    /// to the first 200 of /healthz.
    async fn start(
        bin: &Path,
        root: &Path,
        data: &Path,
        client: &reqwest::Client,
    ) -> Result<(Server, f64), String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free loopback port: {e}"))?;
        let log_path = root.join("serve.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--master-key-file")
            .arg(registre_store::crypto::default_master_path(data))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // No registre.toml: the scale directory has none.
            .current_dir(root)
            .env("REGISTRE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for var in [
            "REGISTRE_CONFIG",
            "REGISTRE_DATA",
            "REGISTRE_STORE",
            "REGISTRE_STORE_SCHEMA",
            "REGISTRE_LISTEN",
            "REGISTRE_MASTER_KEY_FILE",
        ] {
            cmd.env_remove(var);
        }
        let t = Instant::now();
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let health = format!("{}/healthz", server.url);
        let deadline = t + Duration::from_secs(3600);
        loop {
            if let Ok(r) = client.get(&health).send().await
                && r.status() == reqwest::StatusCode::OK
            {
                return Ok((server, t.elapsed().as_secs_f64()));
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "registre serve exited ({status}) before answering /healthz; see {}",
                    log_path.display()
                ));
            }
            if Instant::now() > deadline {
                return Err("registre serve did not answer /healthz within an hour".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 5 minutes).
    async fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed"));
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(None) => return Err(format!("registre serve ({pid}) ignored SIGTERM")),
                Err(e) => return Err(format!("cannot wait for registre serve: {e}")),
            }
        }
    }

    /// `VmRSS` and `VmHWM`, MB.
    fn rss(&self) -> Result<(f64, f64), String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map(|kb| kb / 1024.0)
                .ok_or_else(|| format!("no {name} in {path}"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }
}

/// `registre verify --data`, timed whole: traces/s.
fn verify(bin: &Path, data: &Path, traces: u64) -> Result<f64, String> {
    let t = Instant::now();
    let out = tokio::task::block_in_place(|| {
        Command::new(bin)
            .args(["verify", "--quiet", "--data"])
            .arg(data)
            .arg("--master-key-file")
            .arg(registre_store::crypto::default_master_path(data))
            .env_remove("REGISTRE_MASTER_KEY_FILE")
            .output()
    })
    .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!(
            "registre verify --data exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(traces as f64 / secs)
}

fn cells(c: &Column, s: &Step, mut f: impl FnMut(Option<f64>, usize) -> String) -> String {
    (c.get)(s)
        .into_iter()
        .map(|v| f(v, c.decimals))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_steps(steps: &[Step], machine: &str) {
    println!();
    println!(
        "registre scale — {machine}; embedded store; first page = {PAGE} traces; time range = {TIME_RANGE}"
    );
    let heads: Vec<&str> = COLUMNS.iter().map(|c| c.head).collect();
    println!("| traces | {} |", heads.join(" | "));
    println!("|---:|{}", "---:|".repeat(COLUMNS.len()));
    let value = |v: Option<f64>, d: usize| v.map_or("—".to_owned(), |v| format!("{v:.d$}"));
    for s in steps {
        let row: Vec<String> = COLUMNS.iter().map(|c| cells(c, s, value)).collect();
        println!("| {} | {} |", thousands(s.traces), row.join(" | "));
    }
    let Some(base) = steps.first() else { return };
    if steps.len() < 2 {
        return;
    }
    println!();
    println!(
        "ratios to the first size ({} traces): figure(N) / figure(first)",
        thousands(base.traces)
    );
    println!("| traces | × traces | {} |", heads.join(" | "));
    println!("|---:|---:|{}", "---:|".repeat(COLUMNS.len()));
    for s in &steps[1..] {
        let row: Vec<String> = COLUMNS
            .iter()
            .map(|c| {
                let b = (c.get)(base);
                let mut i = 0;
                cells(c, s, |v, _| {
                    let r = match (v, b.get(i).copied().flatten()) {
                        (Some(v), Some(b)) if b > 0.0 => format!("{:.2}×", v / b),
                        _ => "—".to_owned(),
                    };
                    i += 1;
                    r
                })
            })
            .collect();
        println!(
            "| {} | {:.1}× | {} |",
            thousands(s.traces),
            s.traces as f64 / base.traces.max(1) as f64,
            row.join(" | ")
        );
    }
}

/// The targets, on the largest size measured.
fn print_targets(steps: &[Step]) {
    let Some(last) = steps.last() else { return };
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!();
    println!(
        "targets (stated at 100 M traces; checked here at {}):",
        thousands(last.traces)
    );
    println!(
        "- ≤ 200 B per trace, all files: {:.0} B — {}",
        last.bytes_per_trace,
        verdict(last.bytes_per_trace <= 200.0)
    );
    println!(
        "- start-up ≤ 1 s: {:.3} s — {}",
        last.startup_s,
        verdict(last.startup_s <= 1.0)
    );
    println!(
        "- RSS ≤ 512 MB: {:.0} MB after searches, peak {:.0} MB — {}",
        last.rss_after,
        last.rss_peak,
        verdict(last.rss_peak <= 512.0)
    );
    if let Some(prev) = steps.len().checked_sub(2).and_then(|i| steps.get(i)) {
        let growth = last.rss_peak / prev.rss_peak - 1.0;
        println!(
            "- RSS within 20 % of the previous size's ({} traces: peak {:.0} MB): {:+.0} % — {}",
            thousands(prev.traces),
            prev.rss_peak,
            growth * 100.0,
            verdict(growth <= 0.20)
        );
    }
    let worst = last.search.iter().map(|s| s.1).fold(0.0, f64::max);
    println!(
        "- first page p99 ≤ 5 ms in process: worst of the four {worst:.3} ms — {}",
        verdict(worst <= 5.0)
    );
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn gigabytes(b: u64) -> String {
    format!("{:.1} GB", b as f64 / 1e9)
}
