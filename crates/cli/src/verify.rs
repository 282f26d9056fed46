//! `registre verify`: a data directory, an export bundle, or a server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use registre_log::TlogProof;
use registre_log::merkle::{self, Hash, HashReader, MemoryTree};
use registre_log::note::Verifier;
use serde_json::Value;

use crate::CliError;

const VERIFY_HELP: &str = "\
Examples:
  registre verify --data /var/lib/registre
      Everything in a data directory: every record against its commitment,
      the Merkle tree against the stored tiles, every checkpoint's signature,
      root and consistency with the one before.
  registre verify --store postgres://registre@db:5432/registre --master-key-file /etc/registre/master.key
      A PostgreSQL journal (read-only, one consistent snapshot; the nodes may
      keep running): the same checks, plus the partitions against the purge
      history and the held traces.
  registre verify requisition-2026-118
      An export bundle, offline, from its files alone.
  registre verify --server https://registre.hopital.fr --vkey 'hopital/registre+1a2b3c4d+AW…'
      A running server: fetch its checkpoints and tiles, recompute the roots,
      and check consistency with the checkpoints seen on the previous run
      (remembered in ~/.local/state/registre).

Each failure names what and where; the exit status is 1 when anything fails.";

/// Check the journal's integrity.
#[derive(Args)]
#[command(after_help = VERIFY_HELP)]
pub struct VerifyArgs {
    /// An export bundle directory to check offline.
    bundle: Option<PathBuf>,
    /// Check a data directory.
    #[arg(long, conflicts_with_all = ["bundle", "server", "store"])]
    data: Option<PathBuf>,
    /// Check a PostgreSQL journal: `postgres://user@host:5432/db` (with
    /// `?sslmode=require` for TLS).
    #[arg(long, value_name = "URL", conflicts_with_all = ["bundle", "server"])]
    store: Option<String>,
    /// The PostgreSQL schema of the journal (default `registre`).
    #[arg(long, value_name = "NAME", requires = "store")]
    store_schema: Option<String>,
    /// Check a running server (public tiles and checkpoints).
    #[arg(long, conflicts_with = "bundle")]
    server: Option<String>,
    /// Trusted verifier key(s); by default the data directory's own key, the
    /// bundle's keys/verifier.txt, or (for --server, trust on first use) the
    /// key the server announces.
    #[arg(long)]
    vkey: Vec<String>,
    /// Logs to check with --server (default: all the server lists, or
    /// mss, technique, applicative).
    #[arg(long)]
    log: Vec<String>,
    /// The master key that opens the records of --data (default:
    /// <data>/keys/master.key when present) or --store.
    #[arg(long, env = "REGISTRE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(a: VerifyArgs) -> Result<ExitCode, CliError> {
    let pinned: Vec<Verifier> = a
        .vkey
        .iter()
        .map(|k| Verifier::parse(k).map_err(|e| CliError::with(format!("bad --vkey {k}"), &e)))
        .collect::<Result<_, _>>()?;
    let failures = if let Some(data) = &a.data {
        verify_data(data, pinned, a.master_key_file.as_deref(), a.quiet)?
    } else if let Some(url) = &a.store {
        verify_store(
            url,
            a.store_schema.as_deref(),
            pinned,
            a.master_key_file.as_deref(),
            a.quiet,
        )
        .await?
    } else if let Some(server) = &a.server {
        verify_server(server, pinned, &a.log, a.quiet).await?
    } else if let Some(bundle) = &a.bundle {
        verify_bundle(bundle, pinned)?
    } else {
        return Err(CliError::new(
            "say what to verify: a bundle directory, --data DIR, --store URL or --server URL \
             (see --help)",
        ));
    };
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("FAILED: {} problem(s)", failures.len());
        for f in failures.iter().take(1000) {
            eprintln!("  {f}");
        }
        Ok(ExitCode::from(1))
    }
}

fn verify_data(
    data: &Path,
    mut verifiers: Vec<Verifier>,
    master_file: Option<&Path>,
    quiet: bool,
) -> Result<Vec<String>, CliError> {
    let default = registre_store::crypto::default_master_path(data);
    let master = match master_file {
        Some(f) => Some(f.to_path_buf()),
        None => default.exists().then_some(default),
    }
    .map(|f| {
        registre_store::crypto::MasterKey::read(&f)
            .map_err(|e| CliError::with("cannot read the master key", &e))
    })
    .transpose()?;
    if verifiers.is_empty() {
        let signer = registre_store::keys::load(data).map_err(|e| {
            CliError::with("cannot load the data directory's key (pass --vkey)", &e)
        })?;
        verifiers.push(signer.verifier());
    }
    let total = registre_store::data_dir_bytes(data);
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        crate::client::progress(Some(total))
    };
    let start = Instant::now();
    let report =
        registre_store::verify_data_dir(data, &verifiers, master.as_ref(), &mut |n| bar.inc(n))
            .map_err(|e| CliError::with(format!("cannot read {}", data.display()), &e))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    for l in &report.logs {
        eprintln!(
            "log {:<12} {:>10} traces  {:>10} commitments  {:>6} tiles  {:>5} checkpoints (latest verified: size {})",
            l.log, l.traces, l.commitments, l.tiles, l.checkpoints, l.verified_size
        );
    }
    eprintln!(
        "verified {} traces in {:.2} s ({:.0} traces/s)",
        report.traces(),
        secs,
        report.traces() as f64 / secs
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if report.ok() {
        eprintln!("OK: every trace is in place and every checkpoint verifies");
    }
    Ok(report.failures.iter().map(ToString::to_string).collect())
}

/// Checks a PostgreSQL journal (read-only, one snapshot).
async fn verify_store(
    url: &str,
    schema: Option<&str>,
    verifiers: Vec<Verifier>,
    master_file: Option<&Path>,
    quiet: bool,
) -> Result<Vec<String>, CliError> {
    let (url, schema) = match crate::config::StoreConfig::default().backend(Some(url), schema) {
        Ok(crate::config::Backend::Postgres { url, schema }) => (url, schema),
        Ok(crate::config::Backend::Embedded) => {
            return Err(CliError::new(
                "--store takes a postgres:// URL; for a data directory use --data DIR",
            ));
        }
        Err(m) => return Err(CliError::new(m)),
    };
    let master = match master_file {
        Some(f) => Some(std::sync::Arc::new(crate::serve::pg_master_key(Some(f))?)),
        None => None,
    };
    if master.is_none() && verifiers.is_empty() {
        return Err(CliError::new(format!(
            "give the journal's master key (--master-key-file, to open every record and use the \
             journal's own checkpoint key) or at least its verifier key (--vkey, for the tree \
             and checkpoints only); {}",
            crate::serve::MAKE_MASTER_KEY
        )));
    }
    let opts = registre_store_pg::verify::VerifyOptions {
        url: url.clone(),
        schema: schema.clone(),
        tls_root_cert: None,
        master_key: master,
        verifiers,
    };
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let bar = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} traces ({per_sec}, eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar
    };
    let start = Instant::now();
    let mut tick = |done: u64, total: u64| {
        if bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    };
    let report = registre_store_pg::verify::verify_journal(&opts, &mut tick)
        .await
        .map_err(|e| crate::serve::pg_open_error(&url, &schema, e))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    for l in &report.logs {
        eprintln!(
            "log {:<12} {:>10} traces  {:>10} commitments  {:>4} partitions  {:>3} purges  {:>6} tiles  {:>5} checkpoints (latest verified: size {})",
            l.log,
            l.traces,
            l.commitments,
            l.partitions,
            l.purges,
            l.tiles,
            l.checkpoints,
            l.verified_size
        );
    }
    eprintln!(
        "verified {} traces in {:.2} s ({:.0} traces/s)",
        report.traces(),
        secs,
        report.traces() as f64 / secs
    );
    for n in &report.notes {
        eprintln!("note: {n}");
    }
    if report.ok() {
        eprintln!("OK: every trace is in place and every checkpoint verifies");
    }
    Ok(report.failures.iter().map(ToString::to_string).collect())
}

/// Checks a bundle from its files alone.
pub fn verify_bundle(dir: &Path, pinned: Vec<Verifier>) -> Result<Vec<String>, CliError> {
    let mut failures = Vec::new();
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .map_err(|e| CliError::with(format!("cannot read {}/{name}", dir.display()), &e))
    };
    let manifest: Value = serde_json::from_slice(&read("manifest.json")?)
        .map_err(|e| CliError::with("manifest.json is not JSON", &e))?;
    // 1. Every file against the manifest.
    let listed = manifest["files"].as_object().cloned().unwrap_or_default();
    let actual = crate::export::file_hashes(dir)
        .map_err(|e| CliError::with("cannot read the bundle", &e))?;
    for (name, want) in &listed {
        match actual.get(name) {
            Some(got) if Some(got.as_str()) == want.as_str() => {}
            Some(_) => failures.push(format!(
                "{name}: SHA-256 differs from manifest.json: the file was altered"
            )),
            None => failures.push(format!("{name}: listed in manifest.json but missing")),
        }
    }
    for name in actual.keys() {
        if !listed.contains_key(name) {
            failures.push(format!(
                "{name}: not listed in manifest.json (added after the export)"
            ));
        }
    }
    // 2. Keys.
    let mut verifiers = pinned;
    if verifiers.is_empty() {
        let text = String::from_utf8_lossy(&read("keys/verifier.txt")?).into_owned();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match Verifier::parse(line.trim()) {
                Ok(v) => verifiers.push(v),
                Err(e) => failures.push(format!("keys/verifier.txt: {e}")),
            }
        }
        eprintln!("note: trusting the bundle's own key (pass --vkey to pin the journal's key)");
    }
    let origins = manifest["origins"].as_object().cloned().unwrap_or_default();
    // 3. Every trace: commitment → proof → signed checkpoint.
    let jsonl = String::from_utf8_lossy(&read("traces.jsonl")?).into_owned();
    let csv = String::from_utf8_lossy(&read("traces.csv")?).into_owned();
    let mut csv_lines = csv.split("\r\n");
    let header = csv_lines.next().unwrap_or_default();
    if header != crate::csv::CSV_COLUMNS.join(",") {
        failures.push("traces.csv line 1: the header was altered".into());
    }
    let mut n = 0u64;
    let mut untrusted: Vec<String> = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        let line_no = i + 1;
        n += 1;
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                failures.push(format!("traces.jsonl line {line_no}: not JSON"));
                continue;
            }
        };
        let log = v["log"].as_str().unwrap_or_default().to_owned();
        let index = v["index"].as_u64().unwrap_or(u64::MAX);
        let at = format!("traces.jsonl line {line_no} (log {log} index {index})");
        match csv_lines.next() {
            Some(row) if row == crate::csv::csv_row(&v) => {}
            Some(_) => failures.push(format!(
                "traces.csv line {}: differs from {at}: one of them was altered",
                line_no + 1
            )),
            None => failures.push(format!("traces.csv: no line for {at}")),
        }
        let leaf = match leaf_of(&v) {
            Ok(h) => h,
            Err(why) => {
                failures.push(format!("{at}: {why}"));
                continue;
            }
        };
        let proof_path = format!("proofs/{log}/{index}.tlog-proof");
        let proof = match std::fs::read_to_string(dir.join(&proof_path))
            .ok()
            .and_then(|t| TlogProof::parse(&t).ok())
        {
            Some(p) => p,
            None => {
                failures.push(format!("{proof_path}: missing or malformed"));
                continue;
            }
        };
        let origin = origins
            .get(&log)
            .and_then(Value::as_str)
            .unwrap_or_default();
        // A checkpoint not signed by a trusted key says nothing about the
        // lines under it: report the key once, not every line as altered.
        let note = proof.checkpoint_note().to_owned();
        if let Err(e) = registre_log::checkpoint::open_checkpoint(note.as_bytes(), &verifiers) {
            if !untrusted.contains(&note) {
                failures.push(format!(
                    "{proof_path}: its checkpoint is not signed by a trusted key ({e}); \
                     the traces under it cannot be vouched for (wrong --vkey, or a forged checkpoint)"
                ));
                untrusted.push(note);
            }
            continue;
        }
        if let Err(e) = registre_log::proof::verify(&proof, &leaf, origin, &verifiers) {
            failures.push(format!(
                "{at}: not in the journal as exported ({e}): the line was altered"
            ));
        }
    }
    if csv_lines.any(|l| !l.is_empty()) {
        failures.push("traces.csv: more lines than traces.jsonl".into());
    }
    if manifest["traces"].as_u64() != Some(n) {
        failures.push(format!(
            "traces.jsonl: {n} traces, manifest.json says {}",
            manifest["traces"]
        ));
    }
    // 4. The checkpoints themselves.
    if let Ok(logs) = std::fs::read_dir(dir.join("checkpoints")) {
        for l in logs.flatten() {
            for f in std::fs::read_dir(l.path()).into_iter().flatten().flatten() {
                let p = f.path();
                let text = std::fs::read(&p).unwrap_or_default();
                if let Err(e) = registre_log::checkpoint::open_checkpoint(&text, &verifiers) {
                    failures.push(format!(
                        "{}: {e}",
                        p.strip_prefix(dir).unwrap_or(&p).display()
                    ));
                }
            }
        }
    }
    if failures.is_empty() {
        eprintln!(
            "OK: {n} traces, each in the journal under a checkpoint signed by a trusted key; no file altered"
        );
    }
    Ok(failures)
}

/// The leaf hash of an exported trace: SHA-256(0x00 ‖ SHA-256(salt ‖ JCS(trace without salt))).
fn leaf_of(v: &Value) -> Result<Hash, String> {
    use sha2::Digest;
    let mut t = v.clone();
    let obj = t.as_object_mut().ok_or("not a JSON object")?;
    let salt = obj
        .remove("salt")
        .and_then(|s| s.as_str().map(str::to_owned))
        .ok_or("no salt")?;
    let salt = unhex(&salt).ok_or("malformed salt")?;
    let jcs = registre_model::jcs::to_canonical_vec(&t).map_err(|e| e.to_string())?;
    let mut h = sha2::Sha256::new();
    h.update(&salt);
    h.update(&jcs);
    let commitment: Hash = h.finalize().into();
    Ok(merkle::leaf_hash(&commitment))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Fetches a server's checkpoints and tiles and recomputes every root.
async fn verify_server(
    server: &str,
    mut verifiers: Vec<Verifier>,
    logs: &[String],
    quiet: bool,
) -> Result<Vec<String>, CliError> {
    let client = crate::client::http_client()?;
    let base = server.trim_end_matches('/');
    let mut logs: Vec<String> = logs.to_vec();
    if logs.is_empty() || verifiers.is_empty() {
        // /v1/logs needs a token; without one, fall back to the defaults.
        let token = crate::client::ServerArgs {
            server: base.to_owned(),
            token_file: None,
        }
        .token()
        .ok();
        let listed = match token {
            Some(t) => client
                .get(format!("{base}/v1/logs"))
                .bearer_auth(t)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success()),
            None => None,
        };
        let listed: Option<Value> = match listed {
            Some(r) => r.json().await.ok(),
            None => None,
        };
        if logs.is_empty() {
            logs = listed
                .as_ref()
                .and_then(|v| v["logs"].as_array().cloned())
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l["log"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_else(|| vec!["mss".into(), "technique".into(), "applicative".into()]);
        }
        let remembered = std::fs::read_to_string(state_dir(base).join("verifier.txt")).ok();
        if verifiers.is_empty()
            && let Some(k) = remembered.as_deref().map(str::trim)
        {
            eprintln!("note: using the key remembered from the first run ({k})");
            verifiers.push(
                Verifier::parse(k)
                    .map_err(|e| CliError::with("the remembered key is malformed", &e))?,
            );
        }
        if verifiers.is_empty() {
            let k = listed
                .as_ref()
                .and_then(|v| v["verifier_key"].as_str().map(str::to_owned))
                .ok_or_else(|| CliError::new("pass --vkey: the server's verifier key is needed"))?;
            eprintln!(
                "note: trusting the key the server announces ({k}) and remembering it for next \
                 time; pin it with --vkey"
            );
            let dir = state_dir(base);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("verifier.txt"), format!("{k}\n"));
            verifiers.push(
                Verifier::parse(&k)
                    .map_err(|e| CliError::with("the server's key is malformed", &e))?,
            );
        }
    }
    let state_dir = state_dir(base);
    let mut failures = Vec::new();
    for log in &logs {
        let failed_before = failures.len();
        let url = format!("{base}/logs/{log}/checkpoint");
        let note = fetch(&client, &url).await?;
        let (cp, _) = match registre_log::checkpoint::open_checkpoint(&note, &verifiers) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        let size = cp.size();
        let bar = if quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(size)
        };
        // Level-0 tiles hold every leaf hash: rebuild the tree from them.
        let mut tree = MemoryTree::new();
        let mut ok = true;
        for tile in registre_log::tile::tiles_for_size(size).filter(|t| t.level() == 0) {
            let turl = format!("{base}/logs/{log}/{}", tile.path());
            let bytes = fetch(&client, &turl).await?;
            if bytes.len() != 32 * usize::from(tile.width()) {
                failures.push(format!(
                    "{turl}: {} bytes, expected {}",
                    bytes.len(),
                    32 * usize::from(tile.width())
                ));
                ok = false;
                break;
            }
            for h in bytes.chunks_exact(32) {
                let mut x = [0u8; 32];
                x.copy_from_slice(h);
                tree.push(x);
            }
            bar.inc(u64::from(tile.width()));
        }
        bar.finish_and_clear();
        if !ok {
            continue;
        }
        if tree.root_at(size).as_ref() != Some(cp.root()) {
            failures.push(format!(
                "log {log}: the tiles do not lead to the root of checkpoint {size}: the server's tiles and checkpoint disagree"
            ));
            continue;
        }
        // Higher tiles must agree with the tree.
        for tile in registre_log::tile::tiles_for_size(size).filter(|t| t.level() > 0) {
            let turl = format!("{base}/logs/{log}/{}", tile.path());
            let bytes = fetch(&client, &turl).await?;
            let start = tile.index() * 256;
            let good = bytes.chunks_exact(32).enumerate().all(|(i, h)| {
                tree.node(tile.tree_level(), start + i as u64)
                    .as_ref()
                    .map(|x| x.as_slice())
                    == Some(h)
            });
            if !good {
                failures.push(format!("{turl}: differs from the tree built from level 0"));
            }
        }
        // Consistency with what we saw last time.
        let seen = state_dir.join(format!("{log}.checkpoint"));
        if let Ok(old) = std::fs::read(&seen)
            && let Ok((old_cp, _)) = registre_log::checkpoint::open_checkpoint(&old, &verifiers)
        {
            if old_cp.size() > size {
                failures.push(format!(
                    "log {log}: the server's checkpoint ({size}) is older than one seen before ({}): rollback",
                    old_cp.size()
                ));
            } else if tree.root_at(old_cp.size()).as_ref() != Some(old_cp.root()) {
                failures.push(format!(
                    "log {log}: not consistent with the checkpoint of size {} seen before: history was rewritten",
                    old_cp.size()
                ));
            } else {
                eprintln!(
                    "log {log}: consistent with the checkpoint of size {} seen before",
                    old_cp.size()
                );
            }
        }
        if failures.len() == failed_before {
            let _ = std::fs::create_dir_all(&state_dir);
            let _ = std::fs::write(&seen, &note);
            eprintln!(
                "log {log}: checkpoint of size {size} verified from {} tiles",
                size.div_ceil(256)
            );
        }
    }
    Ok(failures)
}

async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, CliError> {
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| CliError::with(format!("cannot reach {url}"), &e))?;
    if !r.status().is_success() {
        return Err(CliError::new(format!("{url} answered {}", r.status())));
    }
    Ok(r.bytes()
        .await
        .map_err(|e| CliError::with(format!("cannot read {url}"), &e))?
        .to_vec())
}

fn state_dir(server: &str) -> PathBuf {
    let name: String = server
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    crate::user_state_dir().join(name)
}
