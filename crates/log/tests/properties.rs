//! Property tests: generated proofs verify and any single flipped bit breaks
//! them; notes break under any flipped bit; every encoder/parser pair round
//! trips and every parser accepts only canonical input.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use registre_log::checkpoint::Checkpoint;
use registre_log::merkle::{
    Hash, MemoryTree, consistency_proof, inclusion_proof, leaf_hash, verify_consistency,
    verify_inclusion,
};
use registre_log::note::{self, Signer};
use registre_log::proof::{self, TlogProof};
use registre_log::tile::{self, BundleId, TileId, TilePath};

const MAX_SIZE: u64 = 2000;

/// One 2000-leaf tree: its first `n` leaves are the tree of size `n`.
fn big_tree() -> &'static MemoryTree {
    static TREE: OnceLock<MemoryTree> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut t = MemoryTree::new();
        for i in 0..MAX_SIZE {
            t.push(leaf(i));
        }
        t
    })
}

fn leaf(i: u64) -> Hash {
    leaf_hash(format!("leaf {i}").as_bytes())
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut h = *h;
    h[bit / 8 % 32] ^= 1 << (bit % 8);
    h
}

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| Signer::new("registre.example/log", &[5u8; 32]).expect("signer"))
}

/// (size, index < size)
fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX_SIZE).prop_flat_map(|size| (Just(size), 0..size))
}

/// (old, new) with 1 ≤ old ≤ new
fn old_and_new() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX_SIZE).prop_flat_map(|new| (1..=new, Just(new)))
}

proptest! {
    #[test]
    fn inclusion_proofs_verify_and_any_flipped_bit_breaks_them(
        (size, index) in size_and_index(),
        which in any::<prop::sample::Index>(),
        bit in 0usize..256,
    ) {
        let t = big_tree();
        let root = t.root_at(size).expect("root");
        let proof = inclusion_proof(t, index, size).expect("proof");
        let leaf = leaf(index);
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

        prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &proof, &root).is_err());
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root, bit)).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let i = which.index(bad.len());
            bad[i] = flip(&bad[i], bit);
            prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            // Dropping or adding a hash is a length error.
            prop_assert!(verify_inclusion(&leaf, index, size, &proof[1..], &root).is_err());
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root).is_err());
        // Another index or size does not verify.
        if index + 1 < size {
            prop_assert!(verify_inclusion(&leaf, index + 1, size, &proof, &root).is_err());
        }
    }

    #[test]
    fn consistency_proofs_verify_and_any_flipped_bit_breaks_them(
        (old, new) in old_and_new(),
        which in any::<prop::sample::Index>(),
        bit in 0usize..256,
    ) {
        let t = big_tree();
        let (old_root, new_root) = (t.root_at(old).expect("old"), t.root_at(new).expect("new"));
        let proof = consistency_proof(t, old, new).expect("proof");
        prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));

        prop_assert!(verify_consistency(old, new, &flip(&old_root, bit), &new_root, &proof).is_err());
        prop_assert!(verify_consistency(old, new, &old_root, &flip(&new_root, bit), &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let i = which.index(bad.len());
            bad[i] = flip(&bad[i], bit);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[1..]).is_err());
        }
    }

    #[test]
    fn memory_tree_roots_are_stable_prefixes(size in 0..=MAX_SIZE) {
        // The root at `size` does not depend on later leaves.
        let mut t = MemoryTree::new();
        for i in 0..size {
            t.push(leaf(i));
        }
        prop_assert_eq!(Some(t.root()), big_tree().root_at(size));
        prop_assert_eq!(t.size(), size);
    }

    #[test]
    fn any_flipped_bit_in_a_signed_note_is_rejected(
        size in 0..=MAX_SIZE,
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let s = signer();
        let cp = Checkpoint::new("registre.example/log", size, big_tree().root_at(size).expect("root"))
            .expect("checkpoint");
        let signed = s.sign(&cp.body()).expect("sign").into_bytes();
        prop_assert!(note::open(&signed, &[s.verifier()]).is_ok());
        let mut bad = signed.clone();
        let i = position.index(bad.len());
        bad[i] ^= 1 << bit;
        prop_assert!(note::open(&bad, &[s.verifier()]).is_err(), "byte {} bit {}", i, bit);
    }

    #[test]
    fn any_flipped_bit_in_a_note_signature_is_rejected(
        size in 0..=MAX_SIZE,
        bit in 0usize..(64 * 8),
    ) {
        let s = signer();
        let cp = Checkpoint::new("registre.example/log", size, big_tree().root_at(size).expect("root"))
            .expect("checkpoint");
        let signed = s.sign(&cp.body()).expect("sign");
        let (text, line) = signed.rsplit_once("\n\n").expect("blank line");
        let b64 = line.trim_end().rsplit_once(' ').expect("signature").1;
        let mut sig = STANDARD.decode(b64).expect("base64");
        sig[4 + bit / 8] ^= 1 << (bit % 8);
        let bad = format!("{text}\n\n\u{2014} registre.example/log {}\n", STANDARD.encode(sig));
        prop_assert_eq!(
            note::open(bad.as_bytes(), &[s.verifier()]),
            Err(note::NoteError::BadSignature { name: "registre.example/log".into(), key_id: s.key_id() })
        );
    }

    #[test]
    fn tile_paths_round_trip(level in 0u8..=63, index in any::<u64>(), width in 1u16..=256) {
        let t = TileId::new(level, index, width).expect("tile");
        prop_assert_eq!(tile::parse_path(&t.path()), Ok(TilePath::Hashes(t)));
        let b = BundleId::new(index, width).expect("bundle");
        prop_assert_eq!(tile::parse_path(&b.path()), Ok(TilePath::Entries(b)));
    }

    #[test]
    fn small_tile_indexes_round_trip(level in 0u8..=63, index in 0u64..5_000_000, width in 1u16..=256) {
        let t = TileId::new(level, index, width).expect("tile");
        prop_assert_eq!(tile::parse_path(&t.path()), Ok(TilePath::Hashes(t)));
    }

    #[test]
    fn tile_paths_that_parse_are_canonical(s in "tile/(entries|[0-9]{1,3})(/x?[0-9]{1,4}){1,8}(\\.p/[0-9]{1,4})?") {
        if let Ok(t) = tile::parse_path(&s) {
            prop_assert_eq!(t.path(), s);
        }
    }

    #[test]
    fn tile_path_parser_never_panics(s in "\\PC*") {
        if let Ok(t) = tile::parse_path(&s) {
            prop_assert_eq!(t.path(), s);
        }
    }

    #[test]
    fn checkpoints_round_trip(
        origin in "[!-~]([ -~]{0,40})",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in prop::collection::vec("[ -~]{1,20}", 0..4),
    ) {
        let c = Checkpoint::with_extensions(&origin, size, root, extensions).expect("checkpoint");
        prop_assert_eq!(Checkpoint::parse(&c.body()), Ok(c));
    }

    #[test]
    fn checkpoint_bodies_that_parse_are_canonical(s in "[a-z]{1,5}\n[0-9]{1,5}\n[A-Za-z0-9+/=]{42,46}\n([a-z ]{0,3}\n){0,2}") {
        if let Ok(c) = Checkpoint::parse(&s) {
            prop_assert_eq!(c.body(), s);
        }
    }

    #[test]
    fn tlog_proofs_round_trip_and_verify(
        (size, index) in size_and_index(),
        extra in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) {
        let s = signer();
        let t = big_tree();
        let cp = Checkpoint::new("registre.example/log", size, t.root_at(size).expect("root"))
            .expect("checkpoint");
        let note = s.sign(&cp.body()).expect("sign");
        let path = inclusion_proof(t, index, size).expect("proof");
        let p = TlogProof::new(index, path, note, extra).expect("tlog-proof");
        let text = p.encode();
        let parsed = TlogProof::parse(&text).expect("parse");
        prop_assert_eq!(&parsed, &p);
        let ok = proof::verify(&parsed, &leaf(index), "registre.example/log", &[s.verifier()])
            .expect("verify");
        prop_assert_eq!((ok.size(), ok.index()), (size, index));
        prop_assert!(proof::verify(&parsed, &flip(&leaf(index), 3), "registre.example/log", &[s.verifier()]).is_err());
    }

    #[test]
    fn tlog_proof_parser_never_panics(s in "c2sp.org/tlog-proof@v1\n(extra [A-Za-z0-9+/=]{0,8}\n)?(index [0-9]{1,3}\n)?([A-Za-z0-9+/=]{44}\n){0,2}\n?\\PC{0,80}") {
        if let Ok(p) = TlogProof::parse(&s) {
            prop_assert_eq!(p.encode(), s);
        }
    }

    #[test]
    fn bundles_round_trip(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..=256)) {
        let b = tile::encode_bundle(&entries).expect("encode");
        let decoded = tile::decode_bundle(&b).expect("decode");
        prop_assert_eq!(decoded.len(), entries.len());
        for (d, e) in decoded.iter().zip(&entries) {
            prop_assert_eq!(*d, e.as_slice());
        }
    }

    #[test]
    fn bundle_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(entries) = tile::decode_bundle(&bytes) {
            prop_assert_eq!(tile::encode_bundle(&entries).expect("re-encode"), bytes);
        }
    }
}
