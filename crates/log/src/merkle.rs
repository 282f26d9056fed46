//! RFC 6962 Merkle tree hashing, proof generation and proof verification.
//!
//! * Hashing is RFC 6962 §2.1 with SHA-256: a leaf is `SHA-256(0x00 ‖ entry)`,
//!   an interior node `SHA-256(0x01 ‖ left ‖ right)`, the empty tree
//!   `SHA-256("")` ([`EMPTY_ROOT`]). For `n > 1` leaves, `MTH(D[n])` splits at
//!   `k`, the largest power of two smaller than `n`.
//! * Proofs are generated as RFC 6962 §2.1.1 `PATH` (inclusion) and §2.1.2
//!   `PROOF`/`SUBPROOF` (consistency) define them.
//! * Proofs are verified with the algorithms of RFC 9162 §2.1.3.2
//!   (inclusion) and §2.1.4.2 (consistency), after a length check that names
//!   the expected length. Like github.com/transparency-dev/merkle, a
//!   consistency proof from the empty tree is refused as meaningless, and a
//!   proof between two equal sizes must be empty with equal roots.
//!
//! A tree is read through [`HashReader`], which hands out the hash of a
//! complete, aligned subtree: `node(level, index)` covers the `2^level`
//! leaves starting at leaf `index · 2^level`. A reader may keep only some
//! levels (for example the tile levels 0, 8, 16, … of c2sp.org/tlog-tiles):
//! a node it does not have is computed from its two children, down to the
//! leaves, at the cost of hashing. [`MemoryTree`] keeps every level.

use sha2::{Digest, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree, `SHA-256("")` (RFC 6962 §2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 ‖ entry)`: the hash of one log entry (RFC 6962 §2.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The 32-byte hashes a byte string holds back to back (a trailing partial
/// hash is ignored: callers check the length).
pub fn hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect()
}

/// Read access to the hashes of a Merkle tree.
pub trait HashReader {
    /// The hash of the complete, aligned subtree of `2^level` leaves starting
    /// at leaf `index · 2^level` (`level` 0 is the leaf hashes), or `None`
    /// if the reader does not have it.
    fn node(&self, level: u32, index: u64) -> Option<Hash>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        (**self).node(level, index)
    }
}

/// Why a tree hash could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The range's start is after its end.
    #[error("invalid leaf range [{lo}, {hi})")]
    InvalidRange { lo: u64, hi: u64 },
    /// The reader has neither this node nor (recursively) its children.
    #[error("the tree has no node at level {level}, index {index}")]
    MissingNode { level: u32, index: u64 },
}

/// Why a proof could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    OldSizeExceedsNew { old_size: u64, new_size: u64 },
    /// A consistency proof from the empty tree (RFC 6962 defines none).
    #[error("a consistency proof from the empty tree is meaningless")]
    EmptyOldTree,
    /// The reader lacks a hash the proof needs.
    #[error("the tree has no node at level {level}, index {index}")]
    MissingNode { level: u32, index: u64 },
}

/// Why a proof failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// The old tree is larger than the new one.
    #[error("old tree size {old_size} exceeds new tree size {new_size}")]
    OldSizeExceedsNew { old_size: u64, new_size: u64 },
    /// A consistency proof from the empty tree proves nothing.
    #[error("a consistency proof from the empty tree is meaningless")]
    EmptyOldTree,
    /// The proof does not have the number of hashes the sizes call for.
    #[error("the proof has {actual} hashes, {expected} expected")]
    WrongProofLength { expected: usize, actual: usize },
    /// The inclusion proof leads to another root.
    #[error("the proof leads to root {}, not {}", crate::b64(.computed), crate::b64(.expected))]
    RootMismatch { expected: Hash, computed: Hash },
    /// The consistency proof leads to another old root.
    #[error("the proof leads to old root {}, not {}", crate::b64(.computed), crate::b64(.expected))]
    OldRootMismatch { expected: Hash, computed: Hash },
    /// The consistency proof leads to another new root (for equal sizes: the
    /// two roots differ).
    #[error("the proof leads to new root {}, not {}", crate::b64(.computed), crate::b64(.expected))]
    NewRootMismatch { expected: Hash, computed: Hash },
}

/// A node neither the reader nor its children could supply.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Missing {
    pub(crate) level: u32,
    pub(crate) index: u64,
}

impl From<Missing> for HashError {
    fn from(Missing { level, index }: Missing) -> Self {
        HashError::MissingNode { level, index }
    }
}

impl From<Missing> for ProofError {
    fn from(Missing { level, index }: Missing) -> Self {
        ProofError::MissingNode { level, index }
    }
}

/// The hash of a complete, aligned subtree, from the reader or, failing
/// that, from its two children.
pub(crate) fn complete_node<R: HashReader + ?Sized>(
    r: &R,
    level: u32,
    index: u64,
) -> Result<Hash, Missing> {
    if let Some(h) = r.node(level, index) {
        return Ok(h);
    }
    let missing = Missing { level, index };
    if level == 0 {
        return Err(missing);
    }
    let left = index.checked_mul(2).ok_or(missing)?;
    let right = left.checked_add(1).ok_or(missing)?;
    let l = complete_node(r, level - 1, left)?;
    let rr = complete_node(r, level - 1, right)?;
    Ok(node_hash(&l, &rr))
}

/// The largest power of two strictly smaller than `n` (`n ≥ 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[lo:hi])` for `lo ≤ hi`.
fn mth<R: HashReader + ?Sized>(r: &R, lo: u64, hi: u64) -> Result<Hash, Missing> {
    let n = hi - lo;
    if n == 0 {
        return Ok(EMPTY_ROOT);
    }
    if n.is_power_of_two() && lo.is_multiple_of(n) {
        return complete_node(r, n.trailing_zeros(), lo / n);
    }
    let k = split_point(n);
    let left = mth(r, lo, lo + k)?;
    let right = mth(r, lo + k, hi)?;
    Ok(node_hash(&left, &right))
}

/// `MTH(D[lo:hi])`: the RFC 6962 hash of the leaves `lo..hi` taken as a tree
/// of their own. Aligned power-of-two ranges are one node lookup; a range
/// that starts on a boundary (as every range of a proof does) costs
/// O(log(hi − lo)) lookups.
pub fn subtree_hash<R: HashReader + ?Sized>(r: &R, lo: u64, hi: u64) -> Result<Hash, HashError> {
    if lo > hi {
        return Err(HashError::InvalidRange { lo, hi });
    }
    Ok(mth(r, lo, hi)?)
}

/// `MTH(D[0:size])`: the root of the tree's first `size` leaves.
pub fn root<R: HashReader + ?Sized>(r: &R, size: u64) -> Result<Hash, HashError> {
    Ok(mth(r, 0, size)?)
}

/// The inclusion proof of leaf `index` in the tree of size `size`: RFC 6962
/// §2.1.1 `PATH(index, D[size])`, from the leaf's sibling up to the root's
/// child.
pub fn inclusion_proof<R: HashReader + ?Sized>(
    r: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk down from the root; siblings are collected top first.
    let mut path = Vec::with_capacity(inclusion_proof_len(index, size));
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            path.push(mth(r, lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(mth(r, lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof from the tree of size `old_size` to the tree of
/// size `new_size`: RFC 6962 §2.1.2 `PROOF(old_size, D[new_size])`. Empty
/// when the sizes are equal.
pub fn consistency_proof<R: HashReader + ?Sized>(
    r: &R,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNew { old_size, new_size });
    }
    if old_size == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    // SUBPROOF(m, D[lo:hi], b), walked from the top; the terminal element
    // (if any) is pushed last, so reversing gives RFC order.
    let mut proof = Vec::with_capacity(consistency_proof_len(old_size, new_size));
    let (mut lo, mut hi, mut whole) = (0u64, new_size, true);
    loop {
        if old_size == hi {
            if !whole {
                proof.push(mth(r, lo, hi)?);
            }
            break;
        }
        let k = split_point(hi - lo);
        if old_size <= lo + k {
            proof.push(mth(r, lo + k, hi)?);
            hi = lo + k;
        } else {
            proof.push(mth(r, lo, lo + k)?);
            lo += k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The number of hashes in the inclusion proof of `index` in a tree of
/// `size` leaves (`index < size`): the levels below the point where the
/// paths to `index` and to the last leaf part, plus the left siblings above.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = decompose(index, size);
    inner + border
}

fn decompose(index: u64, size: u64) -> (usize, usize) {
    let inner = (64 - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

/// The number of hashes in the consistency proof from `old_size` to
/// `new_size` (`0 < old_size ≤ new_size`).
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    if old_size == new_size {
        return 0;
    }
    let (inner, border) = decompose(old_size - 1, new_size);
    let shift = old_size.trailing_zeros() as usize;
    let seed = usize::from(!old_size.is_power_of_two());
    inner - shift + border + seed
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of size `size`
/// and root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(VerifyError::RootMismatch {
            expected: *root,
            computed: r,
        });
    }
    Ok(())
}

/// Verifies that the tree of size `old_size` and root `old_root` is a
/// prefix of the tree of size `new_size` and root `new_root` (RFC 9162
/// §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if old_size > new_size {
        return Err(VerifyError::OldSizeExceedsNew { old_size, new_size });
    }
    if old_size == 0 {
        return Err(VerifyError::EmptyOldTree);
    }
    let expected = consistency_proof_len(old_size, new_size);
    let wrong_length = VerifyError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(VerifyError::NewRootMismatch {
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    // Step 2: an old tree that is a complete subtree is its own first hash.
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return Err(wrong_length),
        }
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(VerifyError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(VerifyError::NewRootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}

/// A Merkle tree held in memory, every level stored: level 0 is the leaf
/// hashes, level `l` the hashes of the complete subtrees of `2^l` leaves.
/// Appending is O(1) amortised (O(log n) worst case); every complete node is
/// one lookup, so proofs cost O(log n).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash (see [`leaf_hash`]) and returns its index.
    pub fn push(&mut self, leaf_hash: Hash) -> u64 {
        let index = self.size();
        let mut level = 0;
        let mut hash = leaf_hash;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let row = &mut self.levels[level];
            row.push(hash);
            let n = row.len();
            if n % 2 == 1 {
                break;
            }
            hash = node_hash(&row[n - 2], &row[n - 1]);
            level += 1;
        }
        index
    }

    /// The number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |leaves| leaves.len() as u64)
    }

    /// The root of the whole tree ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        self.root_at(self.size()).unwrap_or(EMPTY_ROOT)
    }

    /// The root of the tree's first `size` leaves, or `None` if the tree is
    /// smaller than `size`.
    pub fn root_at(&self, size: u64) -> Option<Hash> {
        if size > self.size() {
            return None;
        }
        // The complete subtrees of the first `size` leaves, left to right,
        // one per set bit of `size`; the root folds them right to left.
        let mut peaks = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u32).rev() {
            if size >> level & 1 == 1 {
                peaks.push(self.node(level, start >> level)?);
                start += 1 << level;
            }
        }
        let mut acc = peaks.pop().unwrap_or(EMPTY_ROOT);
        while let Some(left) = peaks.pop() {
            acc = node_hash(&left, &acc);
        }
        Some(acc)
    }
}

impl HashReader for MemoryTree {
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader holding only the leaves: every other node is recomputed.
    struct Leaves(Vec<Hash>);
    impl HashReader for Leaves {
        fn node(&self, level: u32, index: u64) -> Option<Hash> {
            if level != 0 {
                return None;
            }
            self.0.get(usize::try_from(index).ok()?).copied()
        }
    }

    fn tree(n: u64) -> (MemoryTree, Leaves) {
        let mut t = MemoryTree::new();
        let mut l = Vec::new();
        for i in 0..n {
            let h = leaf_hash(&i.to_be_bytes());
            t.push(h);
            l.push(h);
        }
        (t, Leaves(l))
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
        assert_eq!(MemoryTree::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn memory_tree_agrees_with_a_leaves_only_reader() {
        for n in 0..70u64 {
            let (t, l) = tree(n);
            assert_eq!(t.root(), root(&l, n).unwrap(), "size {n}");
            for m in 0..=n {
                assert_eq!(t.root_at(m), Some(root(&l, m).unwrap()));
            }
            for i in 0..n {
                assert_eq!(inclusion_proof(&t, i, n), inclusion_proof(&l, i, n));
            }
        }
    }

    #[test]
    fn proof_lengths_match_generated_proofs() {
        let (t, _) = tree(130);
        for n in 1..=130 {
            for i in 0..n {
                let p = inclusion_proof(&t, i, n).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(i, n));
            }
            for m in 1..=n {
                let p = consistency_proof(&t, m, n).unwrap();
                assert_eq!(p.len(), consistency_proof_len(m, n), "{m} -> {n}");
            }
        }
    }

    #[test]
    fn missing_nodes_are_reported() {
        let (t, _) = tree(5);
        assert_eq!(
            root_at_missing(&t),
            HashError::MissingNode { level: 0, index: 5 }
        );
        assert_eq!(
            inclusion_proof(&t, 5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(consistency_proof(&t, 0, 3), Err(ProofError::EmptyOldTree));
        assert_eq!(
            consistency_proof(&t, 4, 3),
            Err(ProofError::OldSizeExceedsNew {
                old_size: 4,
                new_size: 3
            })
        );
        assert_eq!(t.root_at(6), None);
        assert_eq!(
            subtree_hash(&t, 3, 2),
            Err(HashError::InvalidRange { lo: 3, hi: 2 })
        );
    }

    fn root_at_missing(t: &MemoryTree) -> HashError {
        match root(t, 6) {
            Err(e) => e,
            Ok(_) => HashError::InvalidRange { lo: 0, hi: 0 },
        }
    }

    #[test]
    fn unaligned_ranges_follow_the_mth_definition() {
        let (t, l) = tree(9);
        // MTH(D[1:4]) splits at k = 2: H(H(D1, D2), D3).
        let want = node_hash(&node_hash(&l.0[1], &l.0[2]), &l.0[3]);
        assert_eq!(subtree_hash(&t, 1, 4).unwrap(), want);
    }
}
