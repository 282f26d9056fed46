//! `registre export`: the bundle for a judicial request or an incident.
//!
//! ```text
//! <out>/README.txt                      how to check this bundle
//! <out>/manifest.json                   SHA-256 of every file, filters, exporter, time
//! <out>/traces.jsonl                    the traces, clear text, with salt, log, index
//! <out>/traces.csv                      the same for people (columns: docs/format.md)
//! <out>/proofs/<log>/<index>.tlog-proof one C2SP tlog-proof per trace
//! <out>/checkpoints/<log>/<size>.checkpoint   the signed checkpoints they lead to
//! <out>/keys/verifier.txt               the verifier key(s)
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use registre_log::TlogProof;
use serde_json::{Value, json};

use crate::CliError;
use crate::client::{ServerArgs, http_client, problem_detail};

const EXPORT_HELP: &str = "\
Examples:
  registre export --actor 810001234567 --since 2026-06-01 --out requisition-2026-118
  registre export --mailbox dr.martin@hopital.mssante.fr --out incident-42

The bundle holds the traces in clear (JSON Lines and CSV), one inclusion proof
per trace, the signed checkpoints and the verifier key. Anyone can check it
offline, without registre's server:  registre verify requisition-2026-118
The export itself is recorded in the journal (class applicative, action export).";

/// Export traces with their proofs, for a judge or an investigation.
#[derive(Args)]
#[command(after_help = EXPORT_HELP)]
pub struct ExportArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Output directory (created; must not exist or be empty).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    filters: crate::client::Filters,
    /// Who exports (recorded in the manifest and in the export trace).
    #[arg(long, env = "REGISTRE_EXPORTER", default_value_t = default_exporter())]
    exporter: String,
    /// Why (e.g. the requisition's reference); recorded with the export.
    #[arg(long)]
    reason: Option<String>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn default_exporter() -> String {
    std::env::var("USER").unwrap_or_else(|_| "unknown".into())
}

pub async fn run(a: ExportArgs) -> Result<(), CliError> {
    prepare_dir(&a.out)?;
    let token = a.server.token()?;
    let client = http_client()?;
    let filters = a.filters.params();

    let logs: Value = get_json(&client, &a.server.url("/v1/logs"), &token, &[]).await?;
    let vkey = logs["verifier_key"].as_str().unwrap_or_default().to_owned();
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new_spinner();
        if let Ok(s) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {pos} traces exported ({per_sec}) {msg}",
        ) {
            b.set_style(s);
        }
        b
    };

    let io = |what: &str, e: std::io::Error| CliError::with(format!("cannot write {what}"), &e);
    let mut jsonl = std::io::BufWriter::new(
        std::fs::File::create(a.out.join("traces.jsonl")).map_err(|e| io("traces.jsonl", e))?,
    );
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(a.out.join("traces.csv")).map_err(|e| io("traces.csv", e))?,
    );
    write!(csv, "{}\r\n", crate::csv::CSV_COLUMNS.join(",")).map_err(|e| io("traces.csv", e))?;
    let mut checkpoints: BTreeMap<(String, u64), String> = BTreeMap::new();
    let mut count = 0u64;
    let mut cursor: Option<String> = None;
    loop {
        let mut q = filters.clone();
        q.push(("limit", "1000".into()));
        q.push(("proofs", "true".into()));
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let page = get_json(&client, &a.server.url("/v1/traces"), &token, &q).await?;
        let traces = page["traces"].as_array().cloned().unwrap_or_default();
        for t in &traces {
            let mut t = t.clone();
            let proof = t
                .as_object_mut()
                .and_then(|o| o.remove("proof"))
                .ok_or_else(|| CliError::new("the server sent a trace without its proof"))?;
            let log = t["log"].as_str().unwrap_or_default().to_owned();
            let index = t["index"].as_u64().unwrap_or_default();
            let size = proof["size"].as_u64().unwrap_or_default();
            let note = page["checkpoints"][&log]
                .as_str()
                .ok_or_else(|| CliError::new("the server sent a proof without its checkpoint"))?
                .to_owned();
            let hashes = proof["hashes"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .filter_map(|x| x.as_str())
                        .filter_map(decode_hash)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let tp = TlogProof::new(index, hashes, note.clone(), None)
                .map_err(|e| CliError::with("the server sent a malformed proof", &e))?;
            let dir = a.out.join("proofs").join(&log);
            std::fs::create_dir_all(&dir).map_err(|e| io("proofs", e))?;
            std::fs::write(dir.join(format!("{index}.tlog-proof")), tp.encode())
                .map_err(|e| io("a proof", e))?;
            checkpoints.insert((log, size), note);
            writeln!(jsonl, "{t}").map_err(|e| io("traces.jsonl", e))?;
            write!(csv, "{}\r\n", crate::csv::csv_row(&t)).map_err(|e| io("traces.csv", e))?;
            count += 1;
        }
        bar.set_position(count);
        match page["next"].as_str() {
            // A page may be empty yet have a next one (the server bounds
            // the work per request); stop only if the cursor stops moving.
            Some(c) if cursor.as_deref() != Some(c) => cursor = Some(c.to_owned()),
            _ => break,
        }
    }
    jsonl.flush().map_err(|e| io("traces.jsonl", e))?;
    csv.flush().map_err(|e| io("traces.csv", e))?;
    for ((log, size), note) in &checkpoints {
        let dir = a.out.join("checkpoints").join(log);
        std::fs::create_dir_all(&dir).map_err(|e| io("checkpoints", e))?;
        std::fs::write(dir.join(format!("{size}.checkpoint")), note)
            .map_err(|e| io("a checkpoint", e))?;
    }
    std::fs::create_dir_all(a.out.join("keys")).map_err(|e| io("keys", e))?;
    std::fs::write(a.out.join("keys/verifier.txt"), format!("{vkey}\n"))
        .map_err(|e| io("keys/verifier.txt", e))?;
    std::fs::write(a.out.join("README.txt"), README).map_err(|e| io("README.txt", e))?;
    bar.finish_and_clear();

    let mut origins = serde_json::Map::new();
    for l in logs["logs"].as_array().cloned().unwrap_or_default() {
        if let (Some(name), Some(origin)) = (l["log"].as_str(), l["origin"].as_str()) {
            origins.insert(name.to_owned(), json!(origin));
        }
    }
    let exported_at = jiff::Timestamp::now().to_string();
    let manifest = json!({
        "format": "registre-export/1",
        "exported_at": exported_at,
        "exporter": a.exporter,
        "reason": a.reason,
        "server": a.server.server,
        "filters": filters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "traces": count,
        "origins": origins,
        "verifier_keys": [vkey],
        "files": file_hashes(&a.out).map_err(|e| io("the manifest", e))?,
    });
    let manifest_text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| CliError::with("cannot encode the manifest", &e))?;
    std::fs::write(a.out.join("manifest.json"), &manifest_text)
        .map_err(|e| io("manifest.json", e))?;

    record_export(&a, &client, &token, &filters, count, &manifest_text).await?;
    eprintln!(
        "{count} traces exported to {} with their proofs; check with: registre verify {}",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

/// The export is itself a trace (class applicative, action export), written
/// by the server under the authenticated caller's name.
async fn record_export(
    a: &ExportArgs,
    client: &reqwest::Client,
    token: &str,
    filters: &[(&str, String)],
    count: u64,
    manifest: &str,
) -> Result<(), CliError> {
    use sha2::Digest;
    let digest = hex(&sha2::Sha256::digest(manifest.as_bytes()));
    let query: String = form_query(filters);
    let body = json!({
        "filters": query,
        "traces": count,
        "manifest_sha256": digest,
        "reason": a.reason,
    });
    let resp = client
        .post(a.server.url("/v1/exports"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| CliError::with("cannot record the export in the journal", &e))?;
    if resp.status().as_u16() != 201 {
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        return Err(CliError::new(format!(
            "the bundle is written but the export could not be recorded in the journal ({status}: {})",
            problem_detail(&text)
        )));
    }
    Ok(())
}

fn form_query(filters: &[(&str, String)]) -> String {
    filters
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn prepare_dir(out: &Path) -> Result<(), CliError> {
    if out.exists() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            return Err(CliError::new(format!(
                "{} exists and is not empty; choose a new directory for the bundle",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::with(format!("cannot create {}", out.display()), &e))
}

async fn get_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    q: &[(&str, String)],
) -> Result<Value, CliError> {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .query(q)
        .send()
        .await
        .map_err(|e| CliError::with(format!("cannot reach {url}"), &e))?;
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .map_err(|e| CliError::with("cannot read the answer", &e))?;
    if status != 200 {
        return Err(CliError::new(format!(
            "{url} answered {status}: {}",
            problem_detail(&text)
        )));
    }
    serde_json::from_str(&text).map_err(|e| CliError::with("the answer is not JSON", &e))
}

fn decode_hash(s: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    v.try_into().ok()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of every file of the bundle but the manifest, by relative path.
pub fn file_hashes(root: &Path) -> std::io::Result<BTreeMap<String, String>> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().replace('\\', "/"))
                .unwrap_or_default();
            if rel == "manifest.json" {
                continue;
            }
            let bytes = std::fs::read(&p)?;
            out.insert(rel, hex(&sha2::Sha256::digest(&bytes)));
        }
    }
    Ok(out)
}

const README: &str = "This directory is an export of the registre traceability journal.

traces.jsonl   the traces, one JSON object per line, clear text
traces.csv     the same traces as a table (one line per trace)
proofs/        for each trace, a C2SP tlog-proof: its inclusion proof in the
               journal's Merkle log and the signed checkpoint it leads to
checkpoints/   the signed checkpoints (C2SP tlog-checkpoint, signed-note)
keys/          the public verifier key of the journal's checkpoint signer
manifest.json  SHA-256 of every file, the filters, who exported and when

To check that nothing was altered since the export:
    registre verify <this directory> [--vkey <the journal's verifier key>]
Each trace's commitment is SHA-256(salt || RFC 8785 canonical JSON of the trace
without its salt); its leaf hash SHA-256(0x00 || commitment) must lead, through
its proof, to the root of a checkpoint signed by the journal's key (RFC 6962).
";
