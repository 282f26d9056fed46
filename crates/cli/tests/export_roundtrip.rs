//! `registre export` → `registre verify <bundle>`: a bundle made by the real
//! binary from a real server verifies offline; one alteration per copy
//! (a JSON Lines field, a CSV cell, a deleted proof, the wrong pinned key)
//! fails with exit status 1 naming the file and line; and the export is
//! itself recorded in the journal.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{Server, free_port, trace_json};
use serde_json::Value;

/// The exported actor, and another with enough traces to page.
const ACTOR: &str = "810000000001";
const BIG_ACTOR: &str = "810000000002";
const OTHER: &str = "810000000003";
const ACTOR_TRACES: usize = 30;
const BIG_TRACES: usize = 1050;
const EXPORTER: &str = "auditeur.dpo";
const REASON: &str = "requisition-2026-118";

struct Fixture {
    /// Keeps the bundles' directory alive.
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    big_bundle: PathBuf,
    export_stderr: String,
    /// The server's verifier key (`registre keys show`).
    vkey: String,
    /// `GET /v1/traces?action=export` after both exports, oldest first.
    export_traces: Vec<Value>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build)
}

fn registre(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(args)
        .env("REGISTRE_LOG", "warn")
        .env_remove("REGISTRE_TOKEN")
        .env_remove("REGISTRE_TOKEN_FILE")
        .env_remove("REGISTRE_SERVER")
        .output()
        .expect("run registre")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn build() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, free_port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut body = String::from("[");
        let mut n = 0;
        let mut push = |actor: &str, class: &str| {
            if n > 0 {
                body.push(',');
            }
            body.push_str(&trace_json(actor, &format!("t{n}"), class));
            n += 1;
        };
        for i in 0..BIG_TRACES {
            push(BIG_ACTOR, if i % 3 == 0 { "applicative" } else { "mss" });
            if i < ACTOR_TRACES {
                push(ACTOR, if i % 2 == 0 { "applicative" } else { "mss" });
                push(OTHER, "mss");
            }
        }
        body.push(']');
        let r = client
            .post(format!("{}/v1/traces", server.url))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    });

    let token_file = data.join("admin-token");
    let bundle = dir.path().join("bundle");
    let big_bundle = dir.path().join("big-bundle");
    let export = |actor: &str, out: &Path| {
        registre(&[
            "export".as_ref(),
            "--server".as_ref(),
            server.url.as_ref(),
            "--token-file".as_ref(),
            token_file.as_ref(),
            "--actor".as_ref(),
            actor.as_ref(),
            "--exporter".as_ref(),
            EXPORTER.as_ref(),
            "--reason".as_ref(),
            REASON.as_ref(),
            "--out".as_ref(),
            out.as_ref(),
            "--quiet".as_ref(),
        ])
    };
    let o = export(ACTOR, &bundle);
    assert!(o.status.success(), "export failed:\n{}", stderr(&o));
    let export_stderr = stderr(&o);
    let o = export(BIG_ACTOR, &big_bundle);
    assert!(o.status.success(), "export failed:\n{}", stderr(&o));

    let o = registre(&[
        "keys".as_ref(),
        "show".as_ref(),
        "--data".as_ref(),
        data.as_ref(),
    ]);
    assert!(o.status.success(), "keys show: {}", stderr(&o));
    let vkey = String::from_utf8(o.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();

    let export_traces = rt.block_on(async {
        let v: Value = reqwest::Client::new()
            .get(format!("{}/v1/traces?action=export", server.url))
            .bearer_auth(&server.token)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        let mut t = v["traces"].as_array().cloned().unwrap_or_default();
        t.reverse();
        t
    });
    drop(server);
    Fixture {
        _dir: dir,
        bundle,
        big_bundle,
        export_stderr,
        vkey,
        export_traces,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("readdir").flatten() {
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).expect("copy");
        }
    }
}

fn copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = dir.path().join("bundle");
    copy_dir(&fixture().bundle, &b);
    (dir, b)
}

fn verify(bundle: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["verify".as_ref(), bundle.as_ref()];
    args.extend(extra.iter().map(|s| std::ffi::OsStr::new(*s)));
    let o = registre(&args);
    (o.status.code(), stderr(&o))
}

fn fails_naming(bundle: &Path, extra: &[&str], needles: &[&str]) -> String {
    let (code, err) = verify(bundle, extra);
    assert_eq!(code, Some(1), "exit status; stderr:\n{err}");
    for n in needles {
        assert!(err.contains(n), "stderr does not name `{n}`:\n{err}");
    }
    err
}

fn lines(bundle: &Path, name: &str, sep: &str) -> Vec<String> {
    std::fs::read_to_string(bundle.join(name))
        .expect("read")
        .split(sep)
        .map(str::to_owned)
        .collect()
}

/// Rewrites `manifest.json`'s hash of `name` to the file's new SHA-256, as a
/// forger would: the manifest is not signed.
fn fix_manifest(bundle: &Path, name: &str) {
    use sha2::Digest;
    let mp = bundle.join("manifest.json");
    let mut m: Value =
        serde_json::from_slice(&std::fs::read(&mp).expect("manifest")).expect("json");
    let hex: String = sha2::Sha256::digest(std::fs::read(bundle.join(name)).expect("file"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m["files"][name] = Value::String(hex);
    std::fs::write(&mp, serde_json::to_string_pretty(&m).expect("json")).expect("write");
}

#[test]
fn bundle_is_complete_and_verifies() {
    let f = fixture();
    assert!(
        f.export_stderr
            .contains(&format!("{ACTOR_TRACES} traces exported to")),
        "{}",
        f.export_stderr
    );
    let jsonl = lines(&f.bundle, "traces.jsonl", "\n");
    let traces: Vec<Value> = jsonl
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(traces.len(), ACTOR_TRACES);
    for t in &traces {
        assert_eq!(t["actor"]["id"], ACTOR, "{t}");
        assert_eq!(t["salt"].as_str().map(str::len), Some(32), "{t}");
        let proof = f.bundle.join(format!(
            "proofs/{}/{}.tlog-proof",
            t["log"].as_str().expect("log"),
            t["index"]
        ));
        assert!(proof.is_file(), "{}", proof.display());
    }
    let logs: std::collections::BTreeSet<&str> =
        traces.iter().filter_map(|t| t["log"].as_str()).collect();
    assert_eq!(logs.into_iter().collect::<Vec<_>>(), ["applicative", "mss"]);
    let csv = lines(&f.bundle, "traces.csv", "\r\n");
    assert_eq!(
        csv.iter().filter(|l| !l.is_empty()).count(),
        ACTOR_TRACES + 1
    );
    assert_eq!(
        std::fs::read_to_string(f.bundle.join("keys/verifier.txt"))
            .expect("verifier")
            .trim(),
        f.vkey
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(f.bundle.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["traces"], ACTOR_TRACES);
    assert_eq!(manifest["filters"]["actor"], ACTOR);
    assert_eq!(manifest["exporter"], EXPORTER);
    assert_eq!(manifest["reason"], REASON);
    assert_eq!(manifest["verifier_keys"][0], f.vkey.as_str());

    let (code, err) = verify(&f.bundle, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("OK: {ACTOR_TRACES} traces")), "{err}");
    assert!(err.contains("trusting the bundle's own key"), "{err}");
    // Pinned to the journal's key (registre keys show): OK too.
    let (code, err) = verify(&f.bundle, &["--vkey", &f.vkey]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("trusting the bundle's own key"), "{err}");
}

/// More traces than a search page (1000): the paged export verifies.
#[test]
fn paged_export_verifies() {
    let f = fixture();
    let n = lines(&f.big_bundle, "traces.jsonl", "\n")
        .iter()
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(n, BIG_TRACES);
    let (code, err) = verify(&f.big_bundle, &["--vkey", &f.vkey]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(&format!("OK: {BIG_TRACES} traces")), "{err}");
}

/// One field of one JSON line changed: named by line (with log and index),
/// also when the forger fixes the (unsigned) manifest.
#[test]
fn altered_jsonl_line_is_named() {
    for fix in [false, true] {
        let (_keep, b) = copy();
        let mut l = lines(&b, "traces.jsonl", "\n");
        let t: Value = serde_json::from_str(&l[2]).expect("line 3");
        assert!(l[2].contains(r#""outcome":"success""#), "{}", l[2]);
        l[2] = l[2].replacen(r#""outcome":"success""#, r#""outcome":"failure""#, 1);
        std::fs::write(b.join("traces.jsonl"), l.join("\n")).expect("write");
        if fix {
            fix_manifest(&b, "traces.jsonl");
        }
        let at = format!(
            "traces.jsonl line 3 (log {} index {}): not in the journal as exported",
            t["log"].as_str().expect("log"),
            t["index"]
        );
        let err = fails_naming(&b, &[], &[&at]);
        let manifest_msg = "traces.jsonl: SHA-256 differs from manifest.json";
        assert_eq!(err.contains(manifest_msg), !fix, "{err}");
        // Only that line: outcome is not a CSV column, the CSV still agrees.
        assert!(!err.contains("traces.csv"), "{err}");
        assert!(
            err.contains(&format!("FAILED: {} problem(s)", 1 + usize::from(!fix))),
            "{err}"
        );
    }
}

/// One CSV cell changed: named by CSV line, against its JSON line.
#[test]
fn altered_csv_cell_is_named() {
    for fix in [false, true] {
        let (_keep, b) = copy();
        let mut l = lines(&b, "traces.csv", "\r\n");
        // Line 5 of the file (header is line 1).
        assert!(l[4].contains(",consultation,"), "{}", l[4]);
        l[4] = l[4].replacen(",consultation,", ",suppression,", 1);
        std::fs::write(b.join("traces.csv"), l.join("\r\n")).expect("write");
        if fix {
            fix_manifest(&b, "traces.csv");
        }
        let err = fails_naming(
            &b,
            &[],
            &["traces.csv line 5: differs from traces.jsonl line 4"],
        );
        assert_eq!(
            err.contains("traces.csv: SHA-256 differs from manifest.json"),
            !fix,
            "{err}"
        );
        assert!(!err.contains("not in the journal"), "{err}");
    }
}

/// A proof file deleted: named by its path.
#[test]
fn deleted_proof_is_named() {
    let (_keep, b) = copy();
    let l = lines(&b, "traces.jsonl", "\n");
    let t: Value = serde_json::from_str(&l[1]).expect("line 2");
    let proof = format!(
        "proofs/{}/{}.tlog-proof",
        t["log"].as_str().expect("log"),
        t["index"]
    );
    std::fs::remove_file(b.join(&proof)).expect("remove");
    fails_naming(
        &b,
        &[],
        &[
            &format!("{proof}: missing or malformed"),
            &format!("{proof}: listed in manifest.json but missing"),
        ],
    );
}

/// Pinned to another key (same name, as a forger would choose): every
/// checkpoint fails, and the traces are reported as not vouched for, not as
/// altered.
#[test]
fn wrong_pinned_key_fails() {
    let f = fixture();
    let name = f.vkey.split('+').next().expect("key name");
    let other = registre_log::note::Signer::new(name, &[9; 32])
        .expect("signer")
        .verifier_key();
    assert_ne!(other, f.vkey);
    let err = fails_naming(
        &f.bundle,
        &["--vkey", &other],
        &["checkpoints/", "not signed by a trusted key"],
    );
    assert_eq!(
        err.matches("not in the journal as exported").count(),
        0,
        "{err}"
    );
}

/// Each export is a trace: class applicative, action export, by the
/// authenticated caller (here the bootstrap admin key), with the filters,
/// the reason and the manifest's SHA-256.
#[test]
fn export_is_recorded_in_the_journal() {
    use sha2::Digest;
    let f = fixture();
    assert_eq!(f.export_traces.len(), 2, "{:?}", f.export_traces);
    for (t, (actor, bundle, n)) in f.export_traces.iter().zip([
        (ACTOR, &f.bundle, ACTOR_TRACES),
        (BIG_ACTOR, &f.big_bundle, BIG_TRACES),
    ]) {
        assert_eq!(t["class"], "applicative", "{t}");
        assert_eq!(t["log"], "applicative", "{t}");
        assert_eq!(t["action"], "export", "{t}");
        assert_eq!(t["actor"]["id"], "admin", "{t}");
        assert_eq!(t["actor"]["auth"], "apikey", "{t}");
        assert_eq!(
            t["request"],
            format!("/v1/exports?actor={actor}&reason={REASON}").as_str(),
            "{t}"
        );
        let digest: String =
            sha2::Sha256::digest(std::fs::read(bundle.join("manifest.json")).expect("manifest"))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
        assert_eq!(
            t["response"]["text"],
            format!("{n} traces; manifest sha256 {digest}").as_str(),
            "{t}"
        );
    }
}

/// With the wrong key pinned, nothing in the bundle was altered: the
/// failures must say the checkpoints are not signed by the pinned key, not
/// that each line "was altered" (a reader of the report — a judge — must not
/// be told 30 untouched traces were falsified).
#[test]

fn wrong_pinned_key_is_not_reported_as_altered_lines() {
    let f = fixture();
    let name = f.vkey.split('+').next().expect("key name");
    let other = registre_log::note::Signer::new(name, &[9; 32])
        .expect("signer")
        .verifier_key();
    let err = fails_naming(&f.bundle, &["--vkey", &other], &["checkpoints/"]);
    assert!(!err.contains("the line was altered"), "{err}");
}
