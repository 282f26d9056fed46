//! The independent reader of docs/format.md appendix A
//! (`scripts/readers/read_journal.py`: Python, written from the format
//! document alone) run on a data directory written by the real binary:
//! four classes (`imagerie` added by the configuration), 300 `technique`
//! traces in one request (a full tile), a legal hold and a purge that keeps
//! one trace in a hold segment, the master key kept outside the data
//! directory. The reader must pass, print exactly the traces the test wrote
//! that are still there (plus the ones the server traced itself: the hold,
//! the purge), and agree with `registre verify --data` on every log's counts.
//! Then, on copies: a flipped record byte (frame CRC left as is, then
//! recomputed), a flipped commitment and an altered purge record must each
//! make it exit 1 naming the problem.
//!
//! Without `python3` or its `cryptography` package the test prints a `SKIP:`
//! line and passes, unless `REGISTRE_REQUIRE_INDEPENDENT_READER=1` (set by
//! `.ci/run`), which makes it fail instead.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Server, free_port};
use serde_json::Value;

const CONFIG: &str = r#"
[store]
checkpoint_interval = "1 second"

[retention]
purge_interval = "off"

[classes.mss]
retention = "3 seconds"
segment_period = "1 second"

[classes.imagerie]
retention = "10 years"
description = "a class added by the configuration"
"#;

/// Test master key, kept outside the data directory (64 hex digits).
const MASTER_KEY: &str = "5a17c0ffee0ddba11ab1e5eedcafef00d5a17c0ffee0ddba11ab1e5eedcafef0";

fn reader_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/readers/read_journal.py")
}

/// Whether `python3` with `cryptography` and `zstandard` is here; says SKIP (or fails, when
/// required) otherwise.
fn python_ready() -> bool {
    let require = std::env::var("REGISTRE_REQUIRE_INDEPENDENT_READER").is_ok_and(|v| v == "1");
    let probe = Command::new("python3")
        .args([
            "-c",
            "import sys, zstandard; from cryptography.hazmat.primitives.ciphers.aead import AESGCM; \
             sys.exit(sys.version_info < (3, 8))",
        ])
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return true,
        Ok(o) => format!(
            "python3 cannot import `cryptography` or `zstandard` (or is older than 3.8): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("no error message")
        ),
        Err(e) => format!("python3 cannot be run: {e}"),
    };
    assert!(
        !require,
        "REGISTRE_REQUIRE_INDEPENDENT_READER=1 but {why}; `.ci/run` installs it"
    );
    eprintln!(
        "SKIP: independent reader: {why}; `.ci/run` installs them (pip install cryptography zstandard)"
    );
    println!("SKIP: independent reader: {why}");
    false
}

fn registre(server: &Server, args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(args)
        .env("REGISTRE_LOG", "warn")
        .env("REGISTRE_SERVER", &server.url)
        .env("REGISTRE_TOKEN_FILE", server.data.join("admin-token"))
        .output()
        .expect("run registre")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// One trace of the test: its actor and request carry `tag`, so the test
/// finds it again in the reader's output.
fn trace(class: &str, tag: &str) -> String {
    format!(
        r#"{{"class":"{class}","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{{"id":"reader-{tag}","id_type":"rpps"}},"action":"consultation","target":{{"mailbox":"Box-{tag}@hopital.mssante.fr","patient":{{"id":"patient-{tag}"}}}},"request":"UID FETCH 7 (BODY.PEEK[]) req-{tag}","response":{{"status":"OK","text":"Fetch « ok » ✓"}},"outcome":"success"}}"#
    )
}

/// Appends `lines` (JSON Lines) with `registre append`, as one request.
fn append(server: &Server, dir: &Path, lines: &[String]) {
    let file = dir.join("batch.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write batch");
    let out = ok(&registre(
        server,
        &[
            os("append"),
            os("--quiet"),
            os("--batch"),
            os("10000"),
            file.as_os_str(),
        ],
    ));
    assert!(
        out.contains(&format!("{} accepted (durable), 0 refused", lines.len())),
        "{out}"
    );
}

/// Size in the last whole record of a log's `checkpoints` file (§11.3), 0 if none.
fn latest_checkpoint_size(log_dir: &Path) -> u64 {
    let buf = std::fs::read(log_dir.join("checkpoints")).unwrap_or_default();
    let (mut p, mut size) = (0usize, 0u64);
    while buf.len() >= p + 8 {
        let len = u32::from_le_bytes(buf[p..p + 4].try_into().expect("4 bytes")) as usize;
        let Some(note) = buf.get(p + 8..p + 8 + len) else {
            break;
        };
        if let Some(s) = String::from_utf8_lossy(note).lines().nth(1) {
            size = s.parse().unwrap_or(size);
        }
        p += 8 + len;
    }
    size
}

/// Waits until every log's latest checkpoint covers every commitment.
fn wait_for_checkpoints(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs: Vec<PathBuf> = std::fs::read_dir(data.join("logs"))
            .expect("logs")
            .flatten()
            .map(|e| e.path())
            .collect();
        let behind: Vec<String> = logs
            .iter()
            .filter(|d| {
                let n = std::fs::metadata(d.join("entries")).map_or(0, |m| m.len()) / 32;
                latest_checkpoint_size(d) != n
            })
            .map(|d| d.display().to_string())
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers the whole log: {behind:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

struct ReaderRun {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_reader(data: &Path, key: &Path) -> ReaderRun {
    let out = Command::new("python3")
        .arg(reader_script())
        .arg(data)
        .arg(key)
        .output()
        .expect("run python3");
    ReaderRun {
        status: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    }
}

/// The integer right after `word` in `line` (e.g. `num_after(l, ", size ")`).
fn num_after(line: &str, word: &str) -> u64 {
    let rest = &line[line
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {line}"))
        + word.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("a number after {word:?} in {line}"))
}

/// The integer right before `word` in `line` (e.g. `num_before(l, " tiles")`).
fn num_before(line: &str, word: &str) -> u64 {
    let head = &line[..line
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {line}"))];
    let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    head[head.len() - digits..]
        .parse()
        .unwrap_or_else(|_| panic!("a number before {word:?} in {line}"))
}

/// Per log: (traces, held, size, latest verified checkpoint size, tiles) from the reader's summary lines.
fn reader_summary(stderr: &str) -> BTreeMap<String, [u64; 5]> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("log "))
        .map(|l| {
            let (log, rest) = l.split_once(": ").expect("log: …");
            (
                log.to_owned(),
                [
                    num_before(rest, " traces"),
                    num_after(rest, "traces ("),
                    num_after(rest, ", size "),
                    num_after(rest, "latest verified size "),
                    num_before(rest, " tiles"),
                ],
            )
        })
        .collect()
}

/// Per log: (traces, commitments, tiles, latest verified size) from `registre verify --data`.
fn verify_summary(out: &str) -> BTreeMap<String, [u64; 4]> {
    out.lines()
        .filter_map(|l| l.strip_prefix("log "))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let n = |i: usize| -> u64 {
                t[i].trim_end_matches(')')
                    .parse()
                    .unwrap_or_else(|_| panic!("a number at {i} in {l}"))
            };
            assert_eq!(
                (t[2], t[4], t[6], t[11]),
                ("traces", "commitments", "tiles", "size"),
                "{l}"
            );
            (t[0].to_owned(), [n(1), n(3), n(5), n(12)])
        })
        .collect()
}

fn flip(path: &Path, offset: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[offset] ^= 0x01;
    std::fs::write(path, &bytes).expect("write");
    bytes
}

fn assert_fails(run: &ReaderRun, what: &[&str]) {
    assert_eq!(run.status, Some(1), "the reader passed:\n{}", run.stderr);
    let fails: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("FAIL "))
        .collect();
    for w in what {
        assert!(
            fails.iter().any(|l| l.contains(w)),
            "no FAIL line with {w:?}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn the_independent_reader_reads_what_registre_wrote() {
    if !python_ready() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let config = dir.path().join("registre.toml");
    let key = dir.path().join("master.key");
    std::fs::write(&config, CONFIG).expect("config");
    std::fs::write(&key, format!("{MASTER_KEY}\n")).expect("master key");
    let server = Server::start_with(
        &data,
        free_port(),
        &[
            os("--config"),
            config.as_os_str(),
            os("--master-key-file"),
            key.as_os_str(),
        ],
    );
    assert!(
        !data.join("keys/master.key").exists(),
        "the master key was given: none is created in the data directory"
    );

    // mss: three traces (three frames) that will be past retention; a hold
    // keeps the second.
    for i in 0..3 {
        append(&server, dir.path(), &[trace("mss", &format!("mss-{i}"))]);
    }
    let old_mss = Instant::now();
    let out = ok(&registre(
        &server,
        &[
            os("hold"),
            os("add"),
            os("--reason"),
            os("réquisition 2026-118"),
            os("--actor"),
            os("reader-mss-1"),
        ],
    ));
    assert!(out.contains("h-"), "{out}");

    // The other classes meanwhile: a batch across three logs, two more
    // imagerie requests, 300 technique traces in one request (a full tile).
    append(
        &server,
        dir.path(),
        &[
            trace("applicative", "applicative-0"),
            trace("imagerie", "imagerie-0"),
            trace("technique", "technique-0"),
            trace("applicative", "applicative-1"),
        ],
    );
    append(&server, dir.path(), &[trace("imagerie", "imagerie-1")]);
    let bulk: Vec<String> = (1..=300)
        .map(|i| trace("technique", &format!("technique-{i}")))
        .collect();
    append(&server, dir.path(), &bulk);
    append(&server, dir.path(), &[trace("imagerie", "imagerie-2")]);

    // Past retention (3 s, one-second segments): purge; the hold keeps one.
    let wait = Duration::from_millis(4500).saturating_sub(old_mss.elapsed());
    std::thread::sleep(wait);
    append(&server, dir.path(), &[trace("mss", "mss-3")]);
    let out = ok(&registre(&server, &[os("purge")]));
    assert!(
        out.contains("purged 2 traces past retention (1 kept"),
        "{out}"
    );
    append(
        &server,
        dir.path(),
        &[trace("imagerie", "imagerie-3"), trace("mss", "mss-4")],
    );
    wait_for_checkpoints(&data);
    drop(server);

    let written: BTreeSet<String> = (0..=4)
        .filter(|i| *i != 0 && *i != 2)
        .map(|i| format!("mss-{i}"))
        .chain((0..2).map(|i| format!("applicative-{i}")))
        .chain((0..4).map(|i| format!("imagerie-{i}")))
        .chain((0..=300).map(|i| format!("technique-{i}")))
        .collect();

    // The reference: registre's own checker.
    let verified = ok(&Command::new(env!("CARGO_BIN_EXE_registre"))
        .args([os("verify"), os("--data"), data.as_os_str()])
        .args([os("--master-key-file"), key.as_os_str()])
        .env("REGISTRE_LOG", "warn")
        .output()
        .expect("run registre verify"));
    let verified = verify_summary(&verified);

    let read_started = Instant::now();
    let run = run_reader(&data, &key);
    let read_time = read_started.elapsed();
    assert_eq!(
        run.status,
        Some(0),
        "the reader failed:\n{}\n{}",
        run.stderr,
        run.stdout.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(
        run.stderr.lines().any(|l| l.starts_with("OK: ")),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.lines().any(|l| l.starts_with("FAIL ")),
        "{}",
        run.stderr
    );

    // Every printed trace: one the test wrote, field for field, or one the
    // server traced itself (the hold, the purge).
    let mut per_log: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut server_traces: BTreeMap<(String, String), u64> = BTreeMap::new();
    for line in run.stdout.lines() {
        let t: Value = serde_json::from_str(line).expect("a JSON line per trace");
        let log = t["log"].as_str().expect("log").to_owned();
        *per_log.entry(log.clone()).or_default() += 1;
        assert_eq!(t["salt"].as_str().map(str::len), Some(32), "{line}");
        let actor = t["actor"]["id"].as_str().expect("actor");
        if let Some(tag) = actor.strip_prefix("reader-") {
            let mut sent: Value = serde_json::from_str(&trace(&log, tag)).expect("trace");
            for member in ["id", "index", "log", "received_at", "salt"] {
                sent[member] = t[member].clone();
            }
            assert_eq!(t, sent, "trace {tag} did not come back as written");
            assert!(seen.insert(tag.to_owned()), "{tag} printed twice");
        } else {
            let action = t["action"].as_str().expect("action").to_owned();
            *server_traces.entry((log, action)).or_default() += 1;
        }
    }
    assert_eq!(
        seen, written,
        "the traces read are not the traces written and kept"
    );
    assert_eq!(
        server_traces.get(&("applicative".into(), "politique".into())),
        Some(&1),
        "{server_traces:?}"
    );
    assert!(
        server_traces.contains_key(&("technique".into(), "purge".into())),
        "{server_traces:?}"
    );

    // The summary agrees with what was printed and with registre's checker.
    let summary = reader_summary(&run.stderr);
    assert_eq!(
        summary.keys().collect::<Vec<_>>(),
        ["applicative", "imagerie", "mss", "technique"],
        "{}",
        run.stderr
    );
    assert_eq!(
        summary.keys().collect::<Vec<_>>(),
        verified.keys().collect::<Vec<_>>()
    );
    for (log, [traces, held, size, latest, tiles]) in &summary {
        let [v_traces, v_commitments, v_tiles, v_latest] = verified[log];
        assert_eq!(per_log.get(log).copied().unwrap_or(0), *traces, "log {log}");
        assert_eq!(
            (*traces, *size, *tiles, *latest),
            (v_traces, v_commitments, v_tiles, v_latest),
            "log {log}: the reader and `registre verify --data` disagree\n{}",
            run.stderr
        );
        assert_eq!(
            latest, size,
            "log {log}: the latest checkpoint covers the log"
        );
        assert_eq!(*held, u64::from(log == "mss"), "log {log}");
    }
    assert_eq!(
        summary["mss"][..3],
        [3, 1, 5],
        "mss: 5 written, 2 purged, 1 held"
    );
    assert_eq!(summary["imagerie"][0], 4);
    assert_eq!(summary["technique"][4], 1, "one full tile");
    assert!(
        run.stderr
            .contains("log mss: 3 traces (1 held), size 5, purged below "),
        "{}",
        run.stderr
    );

    // Damage, each on its own copy.
    let seg = |d: &Path| d.join("logs/imagerie/00000000000000000000.seg");
    // (1) A ciphertext byte of the first record (frame at 64, length at 104,
    // nonce at 108): the frame CRC catches it.
    let copy = dir.path().join("flip-record");
    copy_dir(&data, &copy);
    flip(&seg(&copy), 64 + 40 + 4 + 12);
    assert_fails(
        &run_reader(&copy, &key),
        &["logs/imagerie/00000000000000000000.seg: offset 64: frame checksum mismatch"],
    );
    // (2) The same with the frame CRC recomputed: AES-GCM catches it.
    let copy = dir.path().join("flip-record-crc");
    copy_dir(&data, &copy);
    let mut bytes = flip(&seg(&copy), 64 + 40 + 4 + 12);
    let body_len = u32::from_le_bytes(bytes[68..72].try_into().expect("4 bytes")) as usize;
    let crc = crc32c::crc32c(&bytes[64 + 12..64 + 40 + body_len]);
    bytes[72..76].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(seg(&copy), &bytes).expect("write");
    assert_fails(
        &run_reader(&copy, &key),
        &["seg index 0: the record does not open with its key"],
    );
    // (3) A commitment: the trace no longer matches it, nor the checkpoints.
    let copy = dir.path().join("flip-entries");
    copy_dir(&data, &copy);
    flip(&copy.join("logs/imagerie/entries"), 32 + 7);
    assert_fails(
        &run_reader(&copy, &key),
        &[
            "index 1: the trace does not match its commitment in entries",
            "history was rewritten",
        ],
    );
    // (4) A purge record's `dropped` count, its CRC recomputed: the MAC
    // catches it, and the purged segments count as deleted.
    let copy = dir.path().join("forged-purge");
    copy_dir(&data, &copy);
    let purged = copy.join("logs/mss/purged");
    let mut bytes = flip(&purged, 28);
    let crc = crc32c::crc32c(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&purged, &bytes).expect("write");
    assert_fails(
        &run_reader(&copy, &key),
        &[
            "logs/mss/purged: byte 0: the purge record does not authenticate",
            "are missing from the segments",
        ],
    );

    eprintln!(
        "independent reader: {} traces read in {:.2} s; whole test {:.1} s",
        run.stdout.lines().count(),
        read_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
