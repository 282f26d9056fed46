//! `registre verify --data` against tampering: a real data directory, built
//! by the real binary (mss and technique past two full tiles each, several
//! checkpoints per log, then SIGKILL), is copied once per case; each copy
//! gets ONE alteration, and verify must exit 1 naming the place — segment
//! file and byte, index, tile path or checkpoint size. Alterations that fix
//! up the checksums they break (frame CRC, tile record CRC, checkpoint
//! record CRC) show that the semantic checks, not only the checksums, catch
//! them.
//!
//! Records are sealed (AES-256-GCM under their segment's data key, the log
//! and index as associated data), so the cases come in two kinds: what an
//! attacker WITHOUT the keys can do to the ciphertext (alter, delete, swap:
//! the record no longer opens at its place), and what one WITH the keys
//! (the master key in `keys/master.key`) can do: open a record, edit the
//! trace and seal it again, so only the commitments, tiles and checkpoints
//! tell.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Server, free_port, trace_json};
use registre_log::checkpoint::Checkpoint;
use registre_log::note::Signer;
use registre_store::crypto::{self, MasterKey, NONCE_LEN, SegmentKeys};

const LOGS: [&str; 2] = ["mss", "technique"];
/// Traces per class per request: one frame per log per request.
const BATCH: usize = 50;
/// Requests per phase; between phases a pause lets the checkpointer (1 s)
/// run and the segments roll (segment period 1 s).
const PHASES: [usize; 3] = [5, 4, 4];
const PER_LOG: u64 = (BATCH * (PHASES[0] + PHASES[1] + PHASES[2])) as u64;
const FRAME_HEADER: usize = 40;
const SEGMENT_HEADER: usize = 64;
const TILE_RECORD: usize = 12 + 256 * 32 + 4;

struct Fixture {
    data: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(build_fixture)
}

/// The shared data directory (under the target's tmp dir, one per test
/// process; leftovers of dead processes are removed).
fn build_fixture() -> Fixture {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(dirs) = std::fs::read_dir(&tmp) {
        for d in dirs.flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("tamper-fixture-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(d.path());
            }
        }
    }
    let root = tmp.join(format!("tamper-fixture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("fixture dir");
    let config = root.join("registre.toml");
    std::fs::write(
        &config,
        "[server]\ninstance = \"tamper.test\"\n\
         [store]\ncheckpoint_interval = \"1 second\"\nsegment_period = \"1 second\"\n",
    )
    .expect("config");
    let data = root.join("data");
    let port = free_port();
    let mut server = Server::start_with(&data, port, &["--config".as_ref(), config.as_ref()]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::new();
        let post = |round: usize| {
            let mut body = String::from("[");
            for i in 0..BATCH {
                for (k, class) in LOGS.iter().enumerate() {
                    if i + k > 0 {
                        body.push(',');
                    }
                    body.push_str(&trace_json(
                        &format!("actor{}", i % 5),
                        &format!("r{round}n{i}"),
                        class,
                    ));
                }
            }
            body.push(']');
            client
                .post(format!("{}/v1/traces", server.url))
                .bearer_auth(&server.token)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let mut round = 0;
        for (phase, rounds) in PHASES.into_iter().enumerate() {
            if phase > 0 {
                // A checkpoint of each log, and a new segment.
                tokio::time::sleep(Duration::from_millis(1200)).await;
            }
            for _ in 0..rounds {
                let r = post(round).await.expect("post");
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
                round += 1;
            }
        }
        // A proof of the newest trace issues a checkpoint covering the log.
        for log in LOGS {
            let r = client
                .get(format!(
                    "{}/v1/proofs/inclusion?log={log}&index={}",
                    server.url,
                    PER_LOG - 1
                ))
                .bearer_auth(&server.token)
                .send()
                .await
                .expect("inclusion");
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            let note = client
                .get(format!("{}/logs/{log}/checkpoint", server.url))
                .send()
                .await
                .expect("checkpoint")
                .text()
                .await
                .expect("checkpoint text");
            assert!(
                note.starts_with(&format!("tamper.test/registre/{log}\n{PER_LOG}\n")),
                "{note}"
            );
        }
    });
    server.kill9();
    for log in LOGS {
        let segs = segments(&data, log).len();
        assert!(segs >= 3, "{log}: want a segment per phase, have {segs}");
        let cps = checkpoint_records(
            &std::fs::read(log_dir(&data, log).join("checkpoints")).expect("checkpoints"),
        );
        assert!(
            cps.len() >= 2,
            "{log}: want several checkpoints, have {}",
            cps.len()
        );
        let tiles = std::fs::read(log_dir(&data, log).join("tiles-0")).expect("tiles");
        assert_eq!(
            tiles.len(),
            2 * TILE_RECORD,
            "{log}: two full level-0 tiles"
        );
    }
    Fixture { data }
}

// ---------------------------------------------------------------------------
// Files.

fn log_dir(data: &Path, log: &str) -> PathBuf {
    data.join("logs").join(log)
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

/// A fresh copy of the fixture's data directory.
fn copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    copy_dir(&fixture().data, &data);
    (dir, data)
}

fn segments(data: &Path, log: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(log_dir(data, log))
        .expect("log dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

fn file_name(p: &Path) -> String {
    p.file_name().expect("name").to_string_lossy().into_owned()
}

#[derive(Debug, Clone)]
struct Frame {
    /// Byte offset of the frame header in the segment.
    pos: usize,
    count: u32,
    first_index: u64,
    /// Each record's bytes (nonce ‖ sealed salt ‖ JCS ‖ tag), with the byte
    /// offset of the record (after its length prefix) in the segment.
    records: Vec<(usize, Vec<u8>)>,
}

impl Frame {
    fn end(&self) -> usize {
        self.pos + FRAME_HEADER + self.records.iter().map(|(_, r)| 4 + r.len()).sum::<usize>()
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn frames(seg: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER;
    while pos + FRAME_HEADER <= seg.len() {
        assert_eq!(&seg[pos..pos + 4], b"RGFR", "frame magic at {pos}");
        let body_len = u32_at(seg, pos + 4) as usize;
        let count = u32_at(seg, pos + 12);
        let first_index = u64_at(seg, pos + 16);
        let mut records = Vec::new();
        let mut p = pos + FRAME_HEADER;
        for _ in 0..count {
            let n = u32_at(seg, p) as usize;
            records.push((p + 4, seg[p + 4..p + 4 + n].to_vec()));
            p += 4 + n;
        }
        assert_eq!(p, pos + FRAME_HEADER + body_len, "frame at {pos}");
        out.push(Frame {
            pos,
            count,
            first_index,
            records,
        });
        pos = p;
    }
    assert_eq!(pos, seg.len(), "no trailing bytes after the last frame");
    out
}

/// Replaces `f`'s records in `seg` by `records`, with a correct body length,
/// count and CRC32C: only the semantic checks can tell.
fn rewrite_frame(seg: &mut Vec<u8>, f: &Frame, records: &[Vec<u8>]) {
    let mut body = Vec::new();
    for r in records {
        body.extend_from_slice(&(r.len() as u32).to_le_bytes());
        body.extend_from_slice(r);
    }
    let mut header = seg[f.pos..f.pos + FRAME_HEADER].to_vec();
    header[4..8].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[12..16].copy_from_slice(&(records.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[12..]), &body);
    header[8..12].copy_from_slice(&crc.to_le_bytes());
    header.extend_from_slice(&body);
    seg.splice(f.pos..f.end(), header);
}

/// A frame in the middle of `log` with at least `min` records, followed by
/// another frame in the same segment: (segment path, its bytes, the frame).
fn middle_frame(data: &Path, log: &str, min: u32) -> (PathBuf, Vec<u8>, Frame) {
    let mut all = Vec::new();
    for s in segments(data, log) {
        let raw = std::fs::read(&s).expect("segment");
        for f in frames(&raw) {
            all.push((s.clone(), f));
        }
    }
    let candidates: Vec<_> = all
        .windows(2)
        .filter(|w| w[0].1.count >= min && w[0].0 == w[1].0)
        .map(|w| &w[0])
        .collect();
    assert!(
        !candidates.is_empty(),
        "no frame of {min}+ records followed by another in its segment in {log}"
    );
    let (s, f) = candidates[candidates.len() / 2].clone();
    let raw = std::fs::read(&s).expect("segment");
    (s, raw, f)
}

/// The frame of `seg` (as rewritten) that starts at byte `pos`, and the one
/// after it.
fn frame_and_next(seg: &[u8], pos: usize) -> (Frame, Frame) {
    let all = frames(seg);
    let k = all.iter().position(|x| x.pos == pos).expect("frame");
    (all[k].clone(), all[k + 1].clone())
}

// ---------------------------------------------------------------------------
// Keys: what an attacker holding the master key can do.

/// The data key of segment `seg` of `log`, unwrapped with the data
/// directory's master key.
fn segment_keys(data: &Path, log: &str, seg: &Path) -> SegmentKeys {
    let master = MasterKey::read(&crypto::default_master_path(data)).expect("master key");
    let stem = seg.file_stem().expect("stem").to_string_lossy();
    let key_path = crypto::data_key_dir(data, log).join(format!("{stem}.key"));
    let raw = std::fs::read(&key_path).expect("data key file");
    let bytes = master
        .unwrap(&key_path, &crypto::key_label(log, &key_path), &raw)
        .expect("data key unwraps");
    SegmentKeys::from_bytes(&bytes)
}

/// The plaintext (salt ‖ JCS) of `record`, sealed for `log` at `index`.
fn open_record(keys: &SegmentKeys, log: &str, index: u64, record: &[u8]) -> Vec<u8> {
    let mut r = record.to_vec();
    let stored = keys
        .open(log, index, &mut r)
        .unwrap_or_else(|| panic!("record of {log} index {index} opens"));
    // Format 3: salt ‖ zstd(JCS) at rest.
    registre_store::at_rest::unpack_plaintext(stored).expect("decompresses")
}

/// `plain` (salt ‖ JCS) compressed and sealed for `log` at `index` under a
/// fresh nonce: nonce ‖ ciphertext ‖ tag, as the store writes it.
fn seal_record(keys: &SegmentKeys, log: &str, index: u64, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    crypto::random(&mut nonce).expect("nonce");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&registre_store::at_rest::pack_plaintext(plain).expect("compresses"));
    let tag = keys.seal(log, index, nonce, &mut out[NONCE_LEN..]);
    out.extend_from_slice(&tag);
    out
}

/// Changes one character of a trace's plaintext (salt ‖ JCS): the first
/// letter of its `uids`, `r` → `s`. Still valid JSON, still the same log
/// and index.
fn alter_trace(plain: &mut [u8]) {
    let json = std::str::from_utf8(&plain[16..]).expect("utf-8");
    let at = 16 + json.find("\"uids\":\"r").expect("uids") + "\"uids\":\"".len();
    assert_eq!(plain[at], b'r');
    plain[at] = b's';
}

/// Records of a `checkpoints` file: (byte offset, note).
fn checkpoint_records(raw: &[u8]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut p = 0;
    while p + 8 <= raw.len() {
        let n = u32_at(raw, p) as usize;
        assert_eq!(
            crc32c::crc32c(&raw[p + 8..p + 8 + n]),
            u32_at(raw, p + 4),
            "checkpoint record at {p}"
        );
        out.push((
            p,
            String::from_utf8(raw[p + 8..p + 8 + n].to_vec()).expect("utf-8"),
        ));
        p += 8 + n;
    }
    assert_eq!(p, raw.len());
    out
}

fn checkpoint_size(note: &str) -> u64 {
    note.lines()
        .nth(1)
        .expect("size line")
        .parse()
        .expect("size")
}

// ---------------------------------------------------------------------------
// Running verify.

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

fn verify(data: &Path) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(["verify", "--data"])
        .arg(data)
        .env("REGISTRE_LOG", "warn")
        .output()
        .expect("run registre verify");
    Outcome {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Outcome {
    /// Exit status 1, each `needle` in stderr.
    fn fails_naming(&self, needles: &[&str]) {
        assert_eq!(self.code, Some(1), "exit status; stderr:\n{}", self.stderr);
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "stderr does not name `{n}`:\n{}",
                self.stderr
            );
        }
    }

    /// The failure lines (`  log …`) after `FAILED:`.
    fn problems(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .skip_while(|l| !l.starts_with("FAILED:"))
            .skip(1)
            .map(str::trim)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Cases.

#[test]
fn untampered_copy_verifies() {
    let (_keep, data) = copy();
    let out = verify(&data);
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr
            .contains("OK: every trace is in place and every checkpoint verifies"),
        "{}",
        out.stderr
    );
    // Plus the applicative traces of the fixture's own reads (proof
    // requests are traced).
    let line = out
        .stderr
        .lines()
        .find(|l| {
            l.strip_prefix("verified ")
                .and_then(|r| r.split_once(' '))
                .and_then(|(n, _)| n.parse::<u64>().ok())
                .is_some_and(|n| n >= 2 * PER_LOG)
        })
        .unwrap_or_else(|| panic!("no throughput line:\n{}", out.stderr));
    assert!(line.ends_with(" traces/s)"), "{line}");
    let rate: f64 = line
        .rsplit_once('(')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {line}"));
    assert!(rate > 0.0, "{line}");
    for log in LOGS {
        let l = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("log {log} ")))
            .unwrap_or_else(|| panic!("no line for {log}:\n{}", out.stderr));
        assert!(
            l.contains(&format!("{PER_LOG} traces"))
                && l.contains(&format!("{PER_LOG} commitments"))
                && l.contains("2 tiles")
                && l.ends_with(&format!("(latest verified: size {PER_LOG})")),
            "{l}"
        );
    }
    // verify is read-only: the copy is byte for byte the fixture.
    for log in LOGS {
        for name in ["entries", "tiles-0", "checkpoints"] {
            assert_eq!(
                std::fs::read(log_dir(&data, log).join(name)).expect("copy"),
                std::fs::read(log_dir(&fixture().data, log).join(name)).expect("fixture"),
                "{log}/{name}"
            );
        }
    }
}

/// (a) One byte flipped inside a record: the frame checksum names the
/// segment file, the frame's byte offset and the traces it holds.
#[test]
fn flipped_byte_in_a_record_names_segment_and_byte() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 2);
    let (at, rec) = &f.records[1];
    let target = at + 16 + rec.len() / 2;
    raw[target] ^= 0x04;
    std::fs::write(&seg, &raw).expect("write");
    let out = verify(&data);
    let name = file_name(&seg);
    out.fails_naming(&[
        &format!(
            "log mss: mss/{name} byte {}: frame checksum mismatch",
            f.pos
        ),
        &format!(
            "the bytes of traces {}..{} were altered",
            f.first_index,
            f.first_index + u64::from(f.count)
        ),
    ]);
    assert!(
        out.problems().iter().all(|p| p.starts_with("log mss: ")),
        "only mss was altered:\n{}",
        out.stderr
    );
}

/// (a′) With the keys: one character of a trace changed, the record sealed
/// again at its place and the frame CRC fixed. The record opens and
/// decodes, but no longer matches its commitment, at its index.
#[test]
fn altered_record_with_fixed_crc_names_the_index() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 2);
    let keys = segment_keys(&data, "mss", &seg);
    let index = f.first_index + 1;
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    let mut plain = open_record(&keys, "mss", index, &recs[1]);
    alter_trace(&mut plain);
    recs[1] = seal_record(&keys, "mss", index, &plain);
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "log mss: index {index}: the trace does not match its commitment"
    )]);
    assert_eq!(out.problems().len(), 1, "{}", out.stderr);
}

/// (a″) Without the keys: one byte of a record's ciphertext changed and the
/// frame CRC fixed. The record no longer opens: named by index and by its
/// segment byte, and nothing else (its commitment is not recomputed from
/// bytes that do not open).
#[test]
fn altered_ciphertext_with_fixed_crc_names_the_record() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 2);
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    let rec = &mut recs[1];
    let mid = NONCE_LEN + (rec.len() - NONCE_LEN) / 2;
    rec[mid] ^= 0x20;
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let (after, _) = frame_and_next(&raw, f.pos);
    let out = verify(&data);
    let index = f.first_index + 1;
    out.fails_naming(&[&format!(
        "log mss: mss/{} byte {}: record of index {index} does not open with its data key: altered, or moved from another place",
        file_name(&seg),
        after.records[1].0
    )]);
    assert_eq!(out.problems().len(), 1, "{}", out.stderr);
}

/// (b) Without the keys: a record removed from the middle of a frame, the
/// frame's length, count and CRC fixed. Every later record of the frame now
/// sits one index early and does not open there (the first names the index
/// the deleted one left empty), the frame's last index is missing, and the
/// next frame no longer follows on.
#[test]
fn deleted_record_names_the_index() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "technique", 3);
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    recs.remove(1);
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let (shifted, next) = frame_and_next(&raw, f.pos);
    let out = verify(&data);
    let name = file_name(&seg);
    let gone = f.first_index + 1;
    let end = f.first_index + u64::from(f.count);
    let mut needles = Vec::new();
    for (k, (at, _)) in shifted.records.iter().enumerate().skip(1) {
        needles.push(format!(
            "log technique: technique/{name} byte {at}: record of index {} does not open with its data key: altered, or moved from another place",
            f.first_index + k as u64
        ));
    }
    assert!(needles[0].contains(&format!("record of index {gone} ")));
    needles.push(format!(
        "log technique: indexes {}..{end}: 1 committed traces are missing from the segments",
        end - 1
    ));
    needles.push(format!(
        "log technique: technique/{name} byte {}: frame starts at index {end}, expected {}: traces missing or reordered",
        next.pos,
        end - 1
    ));
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    out.fails_naming(&needles);
    assert_eq!(out.problems().len(), needles.len(), "{}", out.stderr);
}

/// (b′) The last record of a frame removed (length, count, CRC fixed): no
/// record shifts, but the gap is named by the next frame's index.
#[test]
fn deleted_last_record_of_a_frame_names_the_gap() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 2);
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    recs.pop();
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let out = verify(&data);
    let gone = f.first_index + u64::from(f.count) - 1;
    out.fails_naming(&[
        &format!(
            "frame starts at index {}, expected {gone}: traces missing or reordered",
            gone + 1
        ),
        &format!(
            "indexes {gone}..{}: 1 committed traces are missing from the segments",
            gone + 1
        ),
    ]);
}

/// (c) Without the keys: two records swapped within a frame (CRC fixed).
/// Neither opens at its new place: both indexes named, each by the segment
/// byte of the record that now sits there.
#[test]
fn swapped_records_name_both_indexes() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 3);
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    recs.swap(0, 2);
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let (after, _) = frame_and_next(&raw, f.pos);
    let out = verify(&data);
    let (i, j) = (f.first_index, f.first_index + 2);
    let name = file_name(&seg);
    out.fails_naming(&[
        &format!(
            "log mss: mss/{name} byte {}: record of index {i} does not open with its data key: altered, or moved from another place",
            after.records[0].0
        ),
        &format!(
            "log mss: mss/{name} byte {}: record of index {j} does not open with its data key: altered, or moved from another place",
            after.records[2].0
        ),
    ]);
    assert_eq!(out.problems().len(), 2, "{}", out.stderr);
}

/// (c′) With the keys: two records swapped within a frame and each sealed
/// again at its new place (CRC fixed). Both open, but each claims the other's
/// index: both named by segment byte, and both indexes by their commitment.
#[test]
fn swapped_and_resealed_records_name_both_indexes() {
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 3);
    let keys = segment_keys(&data, "mss", &seg);
    let (i, j) = (f.first_index, f.first_index + 2);
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    let (pi, pj) = (
        open_record(&keys, "mss", i, &recs[0]),
        open_record(&keys, "mss", j, &recs[2]),
    );
    recs[0] = seal_record(&keys, "mss", i, &pj);
    recs[2] = seal_record(&keys, "mss", j, &pi);
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let (after, _) = frame_and_next(&raw, f.pos);
    let out = verify(&data);
    let name = file_name(&seg);
    out.fails_naming(&[
        &format!("log mss: index {i}: the trace does not match its commitment"),
        &format!("log mss: index {j}: the trace does not match its commitment"),
        &format!(
            "log mss: mss/{name} byte {}: record claims log `mss` index {j}, but sits at index {i}",
            after.records[0].0
        ),
        &format!(
            "log mss: mss/{name} byte {}: record claims log `mss` index {i}, but sits at index {j}",
            after.records[2].0
        ),
    ]);
    assert_eq!(out.problems().len(), 4, "{}", out.stderr);
}

fn tile_record(data: &Path, log: &str, k: usize) -> (Vec<u8>, String) {
    let raw = std::fs::read(log_dir(data, log).join("tiles-0")).expect("tiles");
    let rec = &raw[k * TILE_RECORD..(k + 1) * TILE_RECORD];
    assert_eq!(rec[0], 0, "level 0");
    let n = u64_at(rec, 4);
    (raw, format!("tile/0/{n:03}"))
}

/// (d) One hash of a stored tile altered: the tile record's checksum, by
/// file, tile path and byte.
#[test]
fn altered_tile_hash_names_the_tile() {
    let (_keep, data) = copy();
    let (mut raw, path) = tile_record(&data, "mss", 1);
    raw[TILE_RECORD + 12 + 32 * 5 + 3] ^= 0x80;
    std::fs::write(log_dir(&data, "mss").join("tiles-0"), &raw).expect("write");
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "log mss: mss/tiles-0 ({path}): tile record checksum mismatch at byte {TILE_RECORD}: altered"
    )]);
    assert_eq!(out.problems().len(), 1, "{}", out.stderr);
}

/// (d′) The same with the tile record's CRC fixed: the hash comparison
/// alone names the tile and the hash.
#[test]
fn altered_tile_hash_with_fixed_crc_names_the_tile() {
    let (_keep, data) = copy();
    let (mut raw, path) = tile_record(&data, "technique", 0);
    raw[12 + 32 * 200] ^= 0x01;
    let crc = crc32c::crc32c(&raw[..TILE_RECORD - 4]);
    raw[TILE_RECORD - 4..TILE_RECORD].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(log_dir(&data, "technique").join("tiles-0"), &raw).expect("write");
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "log technique: technique/tiles-0 ({path}), hash 200: stored tile hash differs from the tree rebuilt from the commitments"
    )]);
    assert_eq!(out.problems().len(), 1, "{}", out.stderr);
}

/// (e) The latest checkpoint replaced by one of the same origin, size and
/// root, signed by another key under the same key name (record length and
/// CRC correct): named by size, the signature does not verify.
#[test]
fn checkpoint_signed_by_another_key_is_named() {
    let (_keep, data) = copy();
    let path = log_dir(&data, "mss").join("checkpoints");
    let raw = std::fs::read(&path).expect("checkpoints");
    let records = checkpoint_records(&raw);
    let (at, note) = records.last().expect("a checkpoint").clone();
    let body = &note[..note.find("\n\n").expect("signature block") + 1];
    let cp = Checkpoint::parse(body).expect("checkpoint body");
    let size = cp.size();
    assert_eq!(size, PER_LOG);
    let forger = Signer::new("tamper.test/registre", &[0x5a; 32]).expect("signer");
    let forged = forger
        .sign(
            &Checkpoint::new(cp.origin(), size, *cp.root())
                .expect("cp")
                .body(),
        )
        .expect("sign");
    assert_ne!(forged, note);
    let mut out_raw = raw[..at].to_vec();
    out_raw.extend_from_slice(&(forged.len() as u32).to_le_bytes());
    out_raw.extend_from_slice(&crc32c::crc32c(forged.as_bytes()).to_le_bytes());
    out_raw.extend_from_slice(forged.as_bytes());
    std::fs::write(&path, &out_raw).expect("write");
    assert_eq!(checkpoint_records(&out_raw).len(), records.len());
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "log mss: checkpoint of size {size} (mss/checkpoints byte"
    )]);
    assert_eq!(out.problems().len(), 1, "{}", out.stderr);
}

/// Cuts `log` at the start of its newest frame: segment and `entries`.
fn truncate_newest_frame(data: &Path, log: &str, entries_too: bool) -> u64 {
    let seg = segments(data, log).pop().expect("a segment");
    let raw = std::fs::read(&seg).expect("segment");
    let last = frames(&raw).pop().expect("a frame");
    std::fs::write(&seg, &raw[..last.pos]).expect("truncate segment");
    if entries_too {
        let ep = log_dir(data, log).join("entries");
        let e = std::fs::read(&ep).expect("entries");
        std::fs::write(&ep, &e[..last.first_index as usize * 32]).expect("truncate entries");
    }
    last.first_index
}

/// (f) The log truncated behind its latest checkpoint (segment and
/// `entries` both cut, consistently): the checkpoint names it.
#[test]
fn truncation_behind_the_latest_checkpoint_is_named() {
    let (_keep, data) = copy();
    let cps = checkpoint_records(
        &std::fs::read(log_dir(&data, "technique").join("checkpoints")).expect("checkpoints"),
    );
    let latest = checkpoint_size(&cps.last().expect("checkpoint").1);
    let left = truncate_newest_frame(&data, "technique", true);
    assert!(left < latest && left >= 512);
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "the log holds only {left} traces: it was truncated behind this checkpoint"
    )]);
    // Older checkpoints within what is left still verify.
    let older: BTreeSet<u64> = cps
        .iter()
        .map(|(_, n)| checkpoint_size(n))
        .filter(|s| *s <= left)
        .collect();
    assert!(!older.is_empty());
    for s in &older {
        assert!(
            !out.stderr.contains(&format!("checkpoint of size {s}:")),
            "{}",
            out.stderr
        );
    }
}

/// (f′) Only the segment cut (its commitments left behind): the traces
/// with a commitment but no record are named as truncated.
#[test]
fn truncated_segment_alone_is_named() {
    let (_keep, data) = copy();
    let left = truncate_newest_frame(&data, "mss", false);
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "log mss: index {left}: {} commitments beyond the last trace: the log was truncated",
        PER_LOG - left
    )]);
}

/// (g) History rewritten below the checkpoints, with the keys: a trace
/// altered and its record sealed again, its frame CRC fixed AND its
/// commitment in `entries` recomputed (from the new plaintext), so records
/// and commitments agree. The stored tile and every checkpoint covering the
/// index still tell, by tile path and hash, and by checkpoint size.
#[test]
fn rewritten_history_is_caught_by_tiles_and_checkpoints() {
    use sha2::Digest;
    let (_keep, data) = copy();
    let (seg, mut raw, f) = middle_frame(&data, "mss", 2);
    let keys = segment_keys(&data, "mss", &seg);
    let index = f.first_index + 1;
    let mut recs: Vec<Vec<u8>> = f.records.iter().map(|(_, r)| r.clone()).collect();
    let mut plain = open_record(&keys, "mss", index, &recs[1]);
    alter_trace(&mut plain);
    recs[1] = seal_record(&keys, "mss", index, &plain);
    rewrite_frame(&mut raw, &f, &recs);
    std::fs::write(&seg, &raw).expect("write");
    let ep = log_dir(&data, "mss").join("entries");
    let mut entries = std::fs::read(&ep).expect("entries");
    let c: [u8; 32] = sha2::Sha256::digest(&plain).into();
    entries[index as usize * 32..index as usize * 32 + 32].copy_from_slice(&c);
    std::fs::write(&ep, &entries).expect("write");

    let out = verify(&data);
    let tile = format!(
        "mss/tiles-0 (tile/0/{:03}), hash {}",
        index / 256,
        index % 256
    );
    let mut needles = vec![format!(
        "log mss: {tile}: stored tile hash differs from the tree rebuilt from the commitments"
    )];
    let cps = checkpoint_records(
        &std::fs::read(log_dir(&data, "mss").join("checkpoints")).expect("checkpoints"),
    );
    let covering: Vec<u64> = cps
        .iter()
        .map(|(_, n)| checkpoint_size(n))
        .filter(|s| *s > index)
        .collect();
    assert!(!covering.is_empty());
    for s in &covering {
        needles.push(format!(
            "log mss: checkpoint of size {s} (mss/checkpoints byte"
        ));
    }
    needles.push(
        "root differs from the tree rebuilt from the commitments: history was rewritten".into(),
    );
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    out.fails_naming(&needles);
    assert!(
        !out.stderr.contains("does not match its commitment"),
        "records and commitments agree:\n{}",
        out.stderr
    );
}

/// (e′) One byte of an OLDER checkpoint record altered (its CRC left
/// wrong). A later, intact record follows it, so this is no torn write:
/// verify must report it, by file and byte, rather than silently stop
/// reading the history there.
#[test]

fn damaged_older_checkpoint_record_is_reported() {
    let (_keep, data) = copy();
    let path = log_dir(&data, "mss").join("checkpoints");
    let mut raw = std::fs::read(&path).expect("checkpoints");
    let records = checkpoint_records(&raw);
    assert!(records.len() >= 2);
    let (at, note) = records[0].clone();
    let size = checkpoint_size(&note);
    // A digit of the size line: 350 → 351, say.
    let digit = at + 8 + note.find('\n').expect("origin line") + 1;
    raw[digit] ^= 0x01;
    std::fs::write(&path, &raw).expect("write");
    let out = verify(&data);
    assert_eq!(
        std::fs::read(&path).expect("checkpoints"),
        raw,
        "verify is read-only"
    );
    out.fails_naming(&["mss/checkpoints", &format!("byte {at}")]);
    // The intact latest checkpoint is still checked.
    assert!(
        out.stderr
            .contains(&format!("(latest verified: size {PER_LOG})")),
        "{} (older was {size})",
        out.stderr
    );
}

/// (e″) The latest checkpoint record replaced by a note that is not a
/// checkpoint (length and CRC correct): a failure named by file and byte,
/// exit status 1, and the other logs still verified — not an abort.
#[test]

fn non_checkpoint_record_is_a_named_failure() {
    let (_keep, data) = copy();
    let path = log_dir(&data, "mss").join("checkpoints");
    let raw = std::fs::read(&path).expect("checkpoints");
    let (at, _) = checkpoint_records(&raw)
        .last()
        .expect("a checkpoint")
        .clone();
    let junk = "not a checkpoint\n\n— forged\n";
    let mut out_raw = raw[..at].to_vec();
    out_raw.extend_from_slice(&(junk.len() as u32).to_le_bytes());
    out_raw.extend_from_slice(&crc32c::crc32c(junk.as_bytes()).to_le_bytes());
    out_raw.extend_from_slice(junk.as_bytes());
    std::fs::write(&path, &out_raw).expect("write");
    let out = verify(&data);
    out.fails_naming(&["log mss: ", "mss/checkpoints", &format!("byte {at}")]);
    assert!(
        out.stderr.contains("log technique"),
        "the other logs are verified too:\n{}",
        out.stderr
    );
}

/// The server, opening a data directory whose OLDER checkpoint record is
/// damaged (an intact one follows), must not silently cut the checkpoint
/// history there: either it refuses to open, or it keeps the intact later
/// records. Either way the `checkpoints` file keeps its bytes.
#[test]

fn serve_keeps_checkpoints_after_a_damaged_one() {
    let (_keep, data) = copy();
    let path = log_dir(&data, "mss").join("checkpoints");
    let mut raw = std::fs::read(&path).expect("checkpoints");
    let (at, note) = checkpoint_records(&raw)[0].clone();
    raw[at + 8 + note.find('\n').expect("origin line") + 1] ^= 0x01;
    std::fs::write(&path, &raw).expect("write");
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(["serve", "--data"])
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("REGISTRE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if child.try_wait().expect("wait").is_some()
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve neither started nor stopped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let now = std::fs::read(&path).expect("checkpoints");
    assert!(
        now.len() >= raw.len() && now[..raw.len()] == raw[..],
        "the checkpoints file went from {} to {} bytes: intact checkpoints after byte {at} were destroyed",
        raw.len(),
        now.len()
    );
}

/// (h) A whole segment in the middle of the log deleted: the next segment
/// is named, with the indexes that no longer follow on.
#[test]
fn deleted_middle_segment_is_named() {
    let (_keep, data) = copy();
    let segs = segments(&data, "mss");
    let middle = &segs[segs.len() / 2];
    let next = &segs[segs.len() / 2 + 1];
    let first = |p: &Path| u64_at(&std::fs::read(p).expect("segment"), 8);
    let (gone, after) = (first(middle), first(next));
    std::fs::remove_file(middle).expect("remove");
    let out = verify(&data);
    out.fails_naming(&[&format!(
        "log mss: mss/{} byte 0: segment starts at index {after}, but the previous one ends at {gone}: traces are missing or duplicated",
        file_name(next)
    )]);
}

/// (i) The OLDEST segment deleted. Nothing in registre deletes segments yet
/// (retention purge is a later feature, and would be recorded as a trace),
/// so traces 0..k with their commitments in `entries` and signed into the
/// checkpoints but absent from the segments are missing traces: verify must
/// not print "every trace is in place".
#[test]

fn deleted_oldest_segment_is_reported() {
    let (_keep, data) = copy();
    let segs = segments(&data, "technique");
    let next = u64_at(&std::fs::read(&segs[1]).expect("segment"), 8);
    std::fs::remove_file(&segs[0]).expect("remove");
    let out = verify(&data);
    out.fails_naming(&["log technique: ", &format!("{next}")]);
    assert!(
        !out.stderr.contains("every trace is in place"),
        "{}",
        out.stderr
    );
}

/// (j) Not a tamper: the state a crash leaves between the syncer's record
/// sync and its `entries` write (commitments are written after the records
/// are durable and synced only before each checkpoint, ARCHITECTURE.md
/// "Commitments are not synced in the group commit"). Here: the newest
/// frame's records on disk, their commitments not in `entries`, no
/// checkpoint covering them. The server recovers this without loss (it
/// recomputes the commitments at open), so `verify --data` on the dead
/// server's directory must not report tampering.
#[test]

fn crash_before_entries_write_is_not_tampering() {
    let (_keep, data) = copy();
    let dir = log_dir(&data, "mss");
    // Drop the checkpoint that covers the newest frame…
    let cpp = dir.join("checkpoints");
    let raw = std::fs::read(&cpp).expect("checkpoints");
    let (at, _) = checkpoint_records(&raw).last().expect("checkpoint").clone();
    std::fs::write(&cpp, &raw[..at]).expect("write");
    // …and the newest frame's commitments.
    let seg = segments(&data, "mss").pop().expect("segment");
    let last = frames(&std::fs::read(&seg).expect("segment"))
        .pop()
        .expect("frame");
    let ep = dir.join("entries");
    let e = std::fs::read(&ep).expect("entries");
    std::fs::write(&ep, &e[..last.first_index as usize * 32]).expect("write");
    let out = verify(&data);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
