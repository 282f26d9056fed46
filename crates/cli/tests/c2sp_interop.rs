//! The served checkpoint and tiles verify with an independent C2SP
//! implementation, not ours: Cloudflare's `signed_note` checks the
//! checkpoint's signature with the verifier key `registre keys show` prints,
//! and `tlog_tiles` parses the checkpoint, authenticates every tile fetched
//! over HTTP against its root (its `TileHashReader`), recomputes the root
//! from the level-0 tiles with its own tree code, and checks the server's
//! inclusion proofs. Entry bundles are decoded from the C2SP text (2-byte
//! big-endian length, then the entry) and hashed with `tlog_tiles`.
//!
//! `tlog_tiles` 0.2 speaks Go sumdb paths (`tile/8/<L>/<N>[.p/<W>]`, `data`
//! for entries); C2SP fixed the height at 8 and renamed `data` to `entries`.
//! `c2sp_path` maps one to the other.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::{Server, free_port, trace_json};
use serde_json::Value;
use sha2::Digest;
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Hash, HashReader, Tile, TileHashReader, TileReader};

const MSS_TRACES: u64 = 700;

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Http {
    /// GET without credentials.
    fn get(&self, path: &str) -> Got {
        self.send(self.client.get(format!("{}{path}", self.base)))
    }

    fn get_auth(&self, path: &str, token: &str) -> Got {
        self.send(
            self.client
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Got {
        self.rt.block_on(async {
            let r = req.send().await.expect("request");
            Got {
                status: r.status().as_u16(),
                headers: r.headers().clone(),
                body: r.bytes().await.expect("body").to_vec(),
            }
        })
    }
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// The C2SP path of a `tlog_tiles` (Go sumdb) tile path.
fn c2sp_path(go: &str) -> String {
    let rest = go.strip_prefix("tile/8/").expect("height-8 tile path");
    match rest.strip_prefix("data/") {
        Some(n) => format!("tile/entries/{n}"),
        None => format!("tile/{rest}"),
    }
}

/// Tiles fetched over HTTP, on demand, as `tlog_tiles` asks for them.
struct HttpTiles<'a> {
    http: &'a Http,
    log: &'a str,
    fetched: RefCell<BTreeSet<String>>,
}

impl HttpTiles<'_> {
    fn fetch(&self, tile: &Tile) -> Vec<u8> {
        let path = c2sp_path(&tile.path());
        let got = self.http.get(&format!("/logs/{}/{path}", self.log));
        assert_eq!(
            got.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&got.body)
        );
        // Tiles never change: cached for a year, immutable.
        let cc = got.header("cache-control");
        assert!(
            cc.contains("immutable") && cc.contains("max-age=31536000"),
            "{path}: Cache-Control {cc:?}"
        );
        self.fetched.borrow_mut().insert(path);
        got.body
    }
}

impl TileReader for HttpTiles<'_> {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        Ok(tiles.iter().map(|t| self.fetch(t)).collect())
    }

    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

/// `tlog_tiles`' own hash storage, filled with its `stored_hashes_*`.
struct Stored(Vec<Hash>);

impl HashReader for Stored {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.0
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Entries of a C2SP entry bundle: each a 2-byte big-endian length, then
/// the bytes (decoded here from the specification, not with our code).
fn decode_bundle(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        out.push(b[2..2 + n].to_vec());
        b = &b[2 + n..];
    }
    out
}

/// RFC 8785 for the ASCII-only JSON of a trace: keys sorted, no spaces.
fn jcs(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let fields: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), jcs(v)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(jcs).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn b64_hash(s: &Value) -> Hash {
    let v = STANDARD
        .decode(s.as_str().expect("base64 string"))
        .expect("base64");
    Hash(v.try_into().expect("32 bytes"))
}

#[test]
fn served_log_verifies_with_signed_note_and_tlog_tiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, free_port());
    let http = Http {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        client: reqwest::Client::new(),
        base: server.url.clone(),
    };

    // 700 mss traces (two full tiles and a partial), a few applicative.
    let mut body = String::from("[");
    for i in 0..MSS_TRACES + 5 {
        if i > 0 {
            body.push(',');
        }
        let class = if i >= MSS_TRACES {
            "applicative"
        } else {
            "mss"
        };
        body.push_str(&trace_json(
            &format!("8100000000{:02}", i % 7),
            &format!("u{i}"),
            class,
        ));
    }
    body.push(']');
    let r = http.send(
        http.client
            .post(format!("{}/v1/traces", http.base))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(body),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // The verifier key, as an operator hands it out.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_registre"))
        .args(["keys", "show", "--data"])
        .arg(&data)
        .output()
        .expect("keys show");
    assert!(out.status.success());
    let vkey = String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let logs = http.get_auth("/v1/logs", &server.token).json();
    assert_eq!(logs["verifier_key"], vkey.as_str());
    let origin = logs["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .find(|l| l["log"] == "mss")
        .and_then(|l| l["origin"].as_str())
        .expect("mss origin")
        .to_owned();

    // A checkpoint covering every trace: a proof of the newest one issues it.
    let proof = http
        .get_auth(
            &format!("/v1/proofs/inclusion?log=mss&index={}", MSS_TRACES - 1),
            &server.token,
        )
        .json();
    assert_eq!(proof["size"], MSS_TRACES, "{proof}");

    // The checkpoint, without credentials.
    let cp = http.get("/logs/mss/checkpoint");
    assert_eq!(cp.status, 200);
    assert_eq!(cp.header("cache-control"), "no-cache");
    assert!(
        cp.header("content-type").starts_with("text/plain"),
        "{:?}",
        cp.headers
    );
    assert_eq!(
        proof["checkpoint"].as_str().map(str::as_bytes),
        Some(&cp.body[..]),
        "the proof's checkpoint is the served one"
    );

    // signed_note verifies its signature with the key `keys show` printed.
    let note = Note::from_bytes(&cp.body).expect("signed_note parses the checkpoint");
    let known = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&vkey).expect("signed_note parses our verifier key"),
    )]);
    let (verified, unverified) = note.verify(&known).expect("signed_note verifies it");
    assert_eq!((verified.len(), unverified.len()), (1, 0));
    // … and rejects it under another key of the same name.
    let other = registre_log::note::Signer::new(vkey.split('+').next().expect("name"), &[3; 32])
        .expect("signer")
        .verifier_key();
    let strangers = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&other).expect("other key"),
    )]);
    assert!(note.verify(&strangers).is_err());

    // tlog_tiles parses the body.
    let checkpoint = tlog_tiles::Checkpoint::from_bytes(note.text()).expect("tlog_tiles parses it");
    assert_eq!(checkpoint.origin(), origin);
    assert_eq!(checkpoint.size(), MSS_TRACES);
    let size = checkpoint.size();
    let root = *checkpoint.hash();

    // Every tile of the tree, fetched by the paths tlog_tiles computes.
    let tiles = HttpTiles {
        http: &http,
        log: "mss",
        fetched: RefCell::default(),
    };
    let all = Tile::new_tiles(8, 0, size);
    let wanted: BTreeSet<String> = all.iter().map(|t| c2sp_path(&t.path())).collect();
    assert_eq!(
        wanted,
        [
            "tile/0/000",
            "tile/0/001",
            "tile/0/002.p/188",
            "tile/1/000.p/2"
        ]
        .into_iter()
        .map(str::to_owned)
        .collect()
    );
    let mut leaves: Vec<Hash> = Vec::new();
    let mut by_path = BTreeMap::new();
    for t in &all {
        let bytes = tiles.fetch(t);
        assert_eq!(bytes.len(), 32 * t.width() as usize, "{}", t.path());
        if t.level() == 0 {
            leaves.extend(
                bytes
                    .chunks_exact(32)
                    .map(|h| Hash(h.try_into().expect("32"))),
            );
        }
        by_path.insert(c2sp_path(&t.path()), bytes);
    }
    assert_eq!(leaves.len() as u64, size);

    // The root, recomputed from the level-0 tiles by tlog_tiles' tree code.
    let mut stored = Stored(Vec::new());
    for (i, leaf) in leaves.iter().enumerate() {
        let new = tlog_tiles::stored_hashes_for_record_hash(i as u64, *leaf, &stored)
            .expect("stored hashes");
        stored.0.extend(new);
    }
    assert_eq!(
        tlog_tiles::tree_hash(size, &stored).expect("tree hash"),
        root,
        "the level-0 tiles lead to the checkpoint's root"
    );
    // The served level-1 tile is what tlog_tiles computes from level 0.
    let level1 = Tile::new(8, 1, 0, 2, false);
    assert_eq!(
        level1.read_data(&stored).expect("their level-1 tile"),
        by_path["tile/1/000.p/2"]
    );
    // And its authenticating reader accepts the served tiles against the root.
    let reader = TileHashReader::new(size, root, &tiles);
    assert_eq!(
        tlog_tiles::tree_hash(size, &reader).expect("authenticated"),
        root
    );

    // Entry bundles: each entry's record hash is the level-0 tile's hash.
    for t in &all {
        if t.level() != 0 {
            continue;
        }
        let mut b = *t;
        b.set_is_data();
        let path = c2sp_path(&b.path());
        assert!(path.starts_with("tile/entries/"), "{path}");
        let got = http.get(&format!("/logs/mss/{path}"));
        assert_eq!(got.status, 200, "{path}");
        assert!(got.header("cache-control").contains("immutable"), "{path}");
        let entries = decode_bundle(&got.body);
        assert_eq!(entries.len(), t.width() as usize, "{path}");
        for (i, e) in entries.iter().enumerate() {
            let index = t.level_index() * 256 + i as u64;
            assert_eq!(e.len(), 32, "{path}: a commitment");
            assert_eq!(
                tlog_tiles::record_hash(e),
                leaves[index as usize],
                "entry {index}"
            );
        }
    }

    // An entry is SHA-256(salt ‖ RFC 8785 JSON of the trace without salt).
    let newest = http
        .get_auth("/v1/traces?class=mss&limit=1", &server.token)
        .json();
    let mut t = newest["traces"][0].clone();
    assert_eq!(t["index"], MSS_TRACES - 1);
    let salt = unhex(
        t.as_object_mut()
            .expect("object")
            .remove("salt")
            .expect("salt")
            .as_str()
            .expect("hex"),
    );
    let mut h = sha2::Sha256::new();
    h.update(&salt);
    h.update(jcs(&t).as_bytes());
    let commitment: [u8; 32] = h.finalize().into();
    assert_eq!(
        tlog_tiles::record_hash(&commitment),
        leaves[(MSS_TRACES - 1) as usize],
        "commitment of the newest trace"
    );

    // The server's inclusion proofs pass tlog_tiles' check, and equal its
    // own proofs read through the authenticated tiles.
    for index in [0, 1, 255, 256, 300, 511, 512, 600, MSS_TRACES - 1] {
        let p = http
            .get_auth(
                &format!("/v1/proofs/inclusion?log=mss&index={index}&size={size}"),
                &server.token,
            )
            .json();
        let hashes: Vec<Hash> = p["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(b64_hash)
            .collect();
        tlog_tiles::check_record(&hashes, size, root, index, leaves[index as usize])
            .unwrap_or_else(|e| panic!("tlog_tiles rejects the proof of {index}: {e}"));
        let theirs = tlog_tiles::prove_record(size, index, &reader).expect("their proof");
        assert_eq!(theirs, hashes, "proof of {index}");
        // The wrong leaf fails.
        assert!(
            tlog_tiles::check_record(
                &hashes,
                size,
                root,
                index,
                leaves[(index as usize + 1) % 700]
            )
            .is_err()
        );
    }
    // Consistency proofs too, from an older size.
    for old in [1, 256, 300, 512] {
        let p = http
            .get_auth(
                &format!("/v1/proofs/consistency?log=mss&from={old}&to={size}"),
                &server.token,
            )
            .json();
        let hashes: Vec<Hash> = p["hashes"]
            .as_array()
            .expect("hashes")
            .iter()
            .map(b64_hash)
            .collect();
        let old_root = tlog_tiles::tree_hash(old, &stored).expect("old root");
        tlog_tiles::check_tree(&hashes, size, root, old, old_root)
            .unwrap_or_else(|e| panic!("tlog_tiles rejects the consistency proof {old}: {e}"));
    }

    // Our own client agrees: `registre verify --server`, key pinned, twice
    // (the second run checks consistency with the checkpoints it kept).
    let state = tempfile::tempdir().expect("state dir");
    let verify_server = |key: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_registre"))
            .args(["verify", "--quiet", "--server", &server.url, "--vkey", key])
            .env("XDG_STATE_HOME", state.path())
            .env("REGISTRE_LOG", "warn")
            .env_remove("REGISTRE_TOKEN")
            .output()
            .expect("verify --server");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = verify_server(&vkey);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("log mss: checkpoint of size {size} verified")),
        "{err}"
    );
    let (code, err) = verify_server(&vkey);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "log mss: consistent with the checkpoint of size {size} seen before"
        )),
        "{err}"
    );
    let (code, err) = verify_server(&other);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/logs/mss/checkpoint: "), "{err}");
    drop(server);
}

#[test]
fn public_routes_need_no_credentials_and_bad_paths_are_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = Server::start(&data, free_port());
    let http = Http {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        client: reqwest::Client::new(),
        base: server.url.clone(),
    };
    let mut body = String::from("[");
    for i in 0..300 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&trace_json("810000000001", &format!("v{i}"), "mss"));
    }
    body.push(']');
    let r = http.send(
        http.client
            .post(format!("{}/v1/traces", http.base))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(body),
    );
    assert_eq!(r.status, 201);

    // /v1 needs the token; /logs does not.
    assert_eq!(http.get("/v1/logs").status, 401);
    for path in [
        "/logs/mss/checkpoint",
        "/logs/mss/tile/0/000",
        "/logs/mss/tile/0/001.p/44",
        "/logs/mss/tile/entries/000",
        "/logs/mss/tile/entries/001.p/44",
        "/logs/technique/checkpoint",
    ] {
        let got = http.get(path);
        assert_eq!(
            got.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&got.body)
        );
    }
    // A partial tile is a prefix of the tile it grows into.
    let p10 = http.get("/logs/mss/tile/0/001.p/10").body;
    let p44 = http.get("/logs/mss/tile/0/001.p/44").body;
    assert_eq!(p10.len(), 320);
    assert_eq!(&p44[..320], &p10[..]);

    // Bad paths: 404 with an RFC 9457 problem.
    for (path, kind) in [
        ("/logs/mss/tile/0/x001", "bad-tile-path"),
        ("/logs/mss/tile/0/001.p/0", "bad-tile-path"),
        ("/logs/mss/tile/0/001.p/256", "bad-tile-path"),
        ("/logs/mss/tile/0/1", "bad-tile-path"),
        ("/logs/mss/tile/64/000", "bad-tile-path"),
        ("/logs/mss/tile/0/000.p/", "bad-tile-path"),
        ("/logs/mss/tile/0/x000/000", "bad-tile-path"),
        ("/logs/mss/tile/entries/abc", "bad-tile-path"),
        // Well-formed, beyond the tree (300 leaves).
        ("/logs/mss/tile/0/002", "no-such-tile"),
        ("/logs/mss/tile/0/001.p/45", "no-such-tile"),
        ("/logs/mss/tile/1/000", "no-such-tile"),
        ("/logs/mss/tile/9/000", "no-such-tile"),
        ("/logs/mss/tile/entries/001", "no-such-tile"),
        ("/logs/nope/checkpoint", "unknown-log"),
        ("/logs/nope/tile/0/000", "unknown-log"),
    ] {
        let got = http.get(path);
        assert_eq!(
            got.status,
            404,
            "{path}: {}",
            String::from_utf8_lossy(&got.body)
        );
        assert_eq!(
            got.header("content-type"),
            "application/problem+json",
            "{path}"
        );
        let p = got.json();
        assert_eq!(p["status"], 404, "{path}: {p}");
        assert_eq!(
            p["type"],
            format!("urn:registre:problem:{kind}").as_str(),
            "{path}: {p}"
        );
        assert!(
            p["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{path}: {p}"
        );
        // Nothing to cache forever about an error.
        assert!(!got.header("cache-control").contains("immutable"), "{path}");
    }
    drop(server);
}
