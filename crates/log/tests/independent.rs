//! Cross-checks against independent implementations: Cloudflare's
//! `signed_note` (c2sp.org/signed-note) and `tlog_tiles` (Go-sumdb-style
//! tlog, tiles and c2sp.org/tlog-checkpoint), both BSD-3-Clause, used as
//! dev-dependencies only.
//!
//! `tlog_tiles` 0.2 writes Go sumdb tile paths, `tile/<H>/<L>/<N>[.p/<W>]`
//! with the tile height as an extra segment and `data` for entry tiles;
//! C2SP fixed the height at 8 and renamed `data` to `entries`. The checks
//! below map one form to the other, and fail on any other difference.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use registre_log::checkpoint::{Checkpoint, open_checkpoint};
use registre_log::merkle::{
    Hash, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, verify_consistency,
    verify_inclusion,
};
use registre_log::note::{self, Signer};
use registre_log::tile::{self, BundleId, TileId, TilePath};
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};

const SKEY: &str = "PRIVATE+KEY+astra+cad5a3d2+ASgwwenlc0uuYcdy7kI44pQvuz1fw8cS5NqS8RkZBXoy";

fn registre_signer() -> Signer {
    Signer::new("registre.example/mss", &[42u8; 32]).expect("signer")
}

fn tree(n: u64) -> MemoryTree {
    let mut t = MemoryTree::new();
    for i in 0..n {
        t.push(leaf_hash(format!("entry {i}").as_bytes()));
    }
    t
}

#[test]
fn signed_note_verifies_our_signed_checkpoints() {
    let signer = registre_signer();
    let theirs =
        StandardVerifier::new(&signer.verifier_key()).expect("their verifier parses our vkey");
    assert_eq!(
        signed_note::key_id("registre.example/mss", &{
            let mut k = vec![note::ED25519];
            k.extend_from_slice(&signer.public_key());
            k
        }),
        signer.key_id()
    );
    let known = VerifierList::new(vec![Box::new(theirs)]);
    let t = tree(1000);
    for size in [0u64, 1, 2, 255, 256, 257, 999, 1000] {
        let root = t.root_at(size).expect("root");
        let cp = Checkpoint::new("registre.example/mss", size, root).expect("checkpoint");
        let signed = signer.sign(&cp.body()).expect("sign");
        let note = Note::from_bytes(signed.as_bytes()).expect("their parser accepts our note");
        let (verified, unverified) = note
            .verify(&known)
            .expect("their verifier accepts our signature");
        assert_eq!((verified.len(), unverified.len()), (1, 0));
        assert_eq!(note.text(), cp.body().as_bytes());

        // Their checkpoint parser reads our body the same way.
        let parsed =
            tlog_tiles::Checkpoint::from_bytes(note.text()).expect("their checkpoint parser");
        assert_eq!(parsed.origin(), cp.origin());
        assert_eq!(parsed.size(), size);
        assert_eq!(&parsed.hash().0, cp.root());
    }
}

#[test]
fn we_verify_signed_note_signatures() {
    use signed_note::Signer as _;
    let theirs = StandardSigner::new(SKEY).expect("their signer");
    let ours = Signer::parse_skey(SKEY).expect("our signer");
    assert_eq!(
        (theirs.name(), theirs.key_id()),
        (ours.name(), ours.key_id())
    );
    let t = tree(37);
    let cp = Checkpoint::new("example.com/testdata", 37, t.root()).expect("checkpoint");
    let mut note = Note::new(cp.body().as_bytes(), &[]).expect("their note");
    note.add_sigs(&[&theirs]).expect("their signature");
    let bytes = note.to_bytes();
    // Ed25519 is deterministic: both sign byte for byte alike.
    assert_eq!(
        ours.sign(&cp.body()).map(String::into_bytes),
        Ok(bytes.clone())
    );
    let (opened_cp, opened) = open_checkpoint(&bytes, &[ours.verifier()]).expect("we open theirs");
    assert_eq!(opened_cp, cp);
    assert!(opened.is_signed_by("astra"));
}

#[test]
fn tampered_notes_are_rejected_by_both() {
    let signer = registre_signer();
    let theirs = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&signer.verifier_key()).expect("vkey"),
    )]);
    let cp = Checkpoint::new("registre.example/mss", 5, tree(5).root()).expect("checkpoint");
    let signed = signer.sign(&cp.body()).expect("sign").into_bytes();
    for i in 0..cp.body().len() {
        let mut bad = signed.clone();
        bad[i] ^= 0x01;
        let ours = note::open(&bad, &[signer.verifier()]);
        let theirs = Note::from_bytes(&bad).and_then(|n| n.verify(&theirs).map(|_| ()));
        assert!(
            ours.is_err() && theirs.is_err(),
            "byte {i}: ours {ours:?}, theirs {theirs:?}"
        );
    }
}

/// `tlog_tiles`' Go-style path for a C2SP path: insert the height segment,
/// rename `entries` to `data`.
fn go_path(c2sp: &str) -> String {
    let rest = c2sp.strip_prefix("tile/").expect("tile path");
    match rest.strip_prefix("entries/") {
        Some(n) => format!("tile/8/data/{n}"),
        None => format!("tile/8/{rest}"),
    }
}

#[test]
fn tlog_tiles_agrees_on_tile_paths() {
    let indexes = [
        0u64,
        1,
        999,
        1000,
        1_234_067,
        123_456_078,
        3_057_500,
        u64::MAX / 2,
        u64::MAX,
    ];
    let mut checked = 0;
    for &index in &indexes {
        for width in [1u16, 2, 112, 255, 256] {
            for level in [0u8, 1, 5, 63] {
                let ours = TileId::new(level, index, width).expect("tile");
                let theirs = tlog_tiles::Tile::new(8, level, index, u32::from(width), false);
                assert_eq!(theirs.path(), go_path(&ours.path()));
                let back =
                    tlog_tiles::Tile::from_path(&go_path(&ours.path())).expect("their parser");
                assert_eq!(
                    (
                        back.level(),
                        back.level_index(),
                        back.width(),
                        back.is_data()
                    ),
                    (level, index, u32::from(width), false)
                );
                assert_eq!(tile::parse_path(&ours.path()), Ok(TilePath::Hashes(ours)));
                checked += 1;
            }
            let ours = BundleId::new(index, width).expect("bundle");
            let theirs = tlog_tiles::Tile::new(8, 0, index, u32::from(width), true);
            assert_eq!(theirs.path(), go_path(&ours.path()));
            assert_eq!(tile::parse_path(&ours.path()), Ok(TilePath::Entries(ours)));
        }
    }
    assert_eq!(checked, indexes.len() * 5 * 4);
}

#[test]
fn tlog_tiles_agrees_on_tiles_for_size() {
    for size in [
        1u64,
        2,
        255,
        256,
        257,
        65_535,
        65_536,
        65_537,
        70_000,
        16_777_216,
        123_456_789,
    ] {
        let ours: Vec<String> = tile::tiles_for_size(size)
            .map(|t| go_path(&t.path()))
            .collect();
        let theirs: Vec<String> = tlog_tiles::Tile::new_tiles(8, 0, size)
            .iter()
            .map(tlog_tiles::Tile::path)
            .collect();
        assert_eq!(ours, theirs, "size {size}");
    }
}

/// A `tlog_tiles` hash store, filled through its own `stored_hashes`.
struct Store(Vec<tlog_tiles::Hash>);

impl tlog_tiles::HashReader for Store {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.0.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

fn to_theirs(h: &Hash) -> tlog_tiles::Hash {
    tlog_tiles::Hash(*h)
}

#[test]
fn tlog_tiles_agrees_on_roots_and_proofs() {
    const N: u64 = 300;
    let mut store = Store(Vec::new());
    let mut ours = MemoryTree::new();
    for i in 0..N {
        let data = format!("entry {i}");
        let new = tlog_tiles::stored_hashes(i, data.as_bytes(), &store).expect("stored hashes");
        store.0.extend(new);
        ours.push(leaf_hash(data.as_bytes()));
    }
    for size in 1..=N {
        let root = ours.root_at(size).expect("root");
        let their_root = tlog_tiles::tree_hash(size, &store).expect("their root");
        assert_eq!(their_root.0, root, "root at {size}");
        for index in (0..size).step_by(7).chain([size - 1]) {
            let leaf = leaf_hash(format!("entry {index}").as_bytes());
            // Our proof passes their checker, theirs passes ours.
            let p = inclusion_proof(&ours, index, size).expect("our proof");
            let p_theirs: Vec<_> = p.iter().map(to_theirs).collect();
            tlog_tiles::check_record(&p_theirs, size, their_root, index, to_theirs(&leaf))
                .unwrap_or_else(|e| panic!("their check of our proof {index}/{size}: {e}"));
            let q = tlog_tiles::prove_record(size, index, &store).expect("their proof");
            let q: Vec<Hash> = q.iter().map(|h| h.0).collect();
            assert_eq!(q, p);
            verify_inclusion(&leaf, index, size, &q, &root).expect("our check of their proof");
        }
        for old in (1..=size).step_by(11).chain([size]) {
            let old_root = ours.root_at(old).expect("old root");
            let p = consistency_proof(&ours, old, size).expect("our proof");
            let p_theirs: Vec<_> = p.iter().map(to_theirs).collect();
            tlog_tiles::check_tree(&p_theirs, size, their_root, old, to_theirs(&old_root))
                .unwrap_or_else(|e| panic!("their check of our proof {old}->{size}: {e}"));
            let q = tlog_tiles::prove_tree(size, old, &store).expect("their proof");
            let q: Vec<Hash> = q.iter().map(|h| h.0).collect();
            assert_eq!(q, p);
            verify_consistency(old, size, &old_root, &root, &q).expect("our check of their proof");
        }
    }
}
