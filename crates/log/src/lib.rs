//! The transparency-log vocabulary of registre, to the public specifications,
//! so that third-party tools can verify registre's logs:
//!
//! * [`merkle`]: RFC 6962 §2.1 hashing, inclusion and consistency proofs
//!   (generated as RFC 6962 §2.1.1–2.1.2 define them, verified with the
//!   RFC 9162 §2.1.3.2 and §2.1.4.2 algorithms), and an in-memory tree;
//! * [`tile`]: c2sp.org/tlog-tiles tile and entry-bundle coordinates, paths,
//!   contents and the bundle encoding;
//! * [`note`]: c2sp.org/signed-note with Ed25519 keys;
//! * [`checkpoint`]: c2sp.org/tlog-checkpoint note texts;
//! * [`proof`]: the c2sp.org/tlog-proof offline inclusion proof;
//! * [`tiled`]: a tree of any size with only its right edge in memory, the
//!   rest read from full tiles through the storage driver.
//!
//! Pure code: no I/O, no clock, no randomness. Keys are given as bytes by
//! the caller. Every parser is strict (it accepts exactly what the matching
//! encoder writes) and every failure is a typed error saying what is wrong.
//!
//! ```
//! use registre_log::{Checkpoint, MemoryTree, Signer, TlogProof, leaf_hash, merkle, proof};
//!
//! // A log of three entries, its signed checkpoint, and a proof for entry 1.
//! let mut tree = MemoryTree::new();
//! for entry in [&b"a"[..], b"b", b"c"] {
//!     tree.push(leaf_hash(entry));
//! }
//! let signer = Signer::new("registre.example/mss", &[7; 32])?; // 32-byte Ed25519 seed
//! let checkpoint = Checkpoint::new("registre.example/mss", tree.size(), tree.root())?;
//! let note = signer.sign(&checkpoint.body())?;
//! let path = merkle::inclusion_proof(&tree, 1, tree.size())?;
//! let text = TlogProof::new(1, path, note, None)?.encode();
//!
//! // A third party holding only the verifier key checks it offline.
//! let verifier = registre_log::Verifier::parse(&signer.verifier_key())?;
//! let parsed = TlogProof::parse(&text)?;
//! let ok = proof::verify(&parsed, &leaf_hash(b"b"), "registre.example/mss", &[verifier])?;
//! assert_eq!((ok.index(), ok.size()), (1, 3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tile;
pub mod tiled;

pub use checkpoint::Checkpoint;
pub use merkle::{EMPTY_ROOT, Hash, HashReader, MemoryTree, leaf_hash, node_hash};
pub use note::{Opened, Signer, Verifier};
pub use proof::TlogProof;
pub use tile::{BundleId, TileId, TilePath};

/// Standard base64, for hashes in error messages.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
