//! c2sp.org/tlog-proof: an offline-verifiable proof that an entry is in a log.
//!
//! The format (§"Format") is lines separated by newlines:
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional, opaque, unauthenticated)
//! index <n>                 (decimal, no leading zeros)
//! <base64 hash>             (zero or more: the RFC 6962 inclusion proof,
//! …                          leaf's sibling first)
//!
//! <the signed checkpoint note, verbatim, to the end>
//! ```
//!
//! [`TlogProof::parse`] accepts exactly what [`TlogProof::encode`] writes:
//! each hash is canonical base64 of 32 bytes, there are at most 64 of them,
//! and the checkpoint must be a well-formed signed note whose text is a
//! checkpoint (its signatures are checked only by [`verify`]).
//!
//! [`verify`] follows §"Verifying a tlog proof": the checkpoint must be
//! signed by a known key (see [`crate::note::open`]), carry the expected
//! origin, and the inclusion proof must bind the caller's leaf hash to its
//! root. Witness cosignatures of unknown keys are ignored and returned for
//! the caller's policy.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::merkle::{Hash, VerifyError, verify_inclusion};
use crate::note::{self, NoteError, Opened, Verifier};

/// The first line of a proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// The most inclusion-proof hashes a proof may hold (a 2^64-leaf tree needs 64).
pub const MAX_PROOF_HASHES: usize = 64;

/// A parsed tlog proof. Its checkpoint is well formed but unverified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    extra: Option<Vec<u8>>,
    index: u64,
    inclusion: Vec<Hash>,
    checkpoint: String,
}

/// Why a proof is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofFormatError {
    /// The first line is not `c2sp.org/tlog-proof@v1`.
    #[error("the first line is not {HEADER:?}")]
    MissingHeader,
    /// The `extra` payload is not canonical standard base64.
    #[error("the extra line is not \"extra <base64>\"")]
    InvalidExtra,
    /// No `index <n>` line where one is due.
    #[error("line {line}: expected \"index <n>\"")]
    MissingIndex { line: usize },
    /// The index is not a decimal without leading zeros within 64 bits.
    #[error("line {line}: the index is not a decimal without leading zeros below 2^64")]
    InvalidIndex { line: usize },
    /// An inclusion-proof line is not canonical base64 of 32 bytes.
    #[error("line {line}: not standard base64 of a 32-byte hash")]
    InvalidHash { line: usize },
    /// More than [`MAX_PROOF_HASHES`] proof hashes.
    #[error("more than {MAX_PROOF_HASHES} inclusion proof hashes")]
    TooManyHashes,
    /// The proof ends before the blank line and the checkpoint.
    #[error("the proof ends before the blank line and the checkpoint")]
    MissingCheckpoint,
    /// The checkpoint is not a well-formed signed note.
    #[error("checkpoint note: {0}")]
    Note(NoteError),
    /// The checkpoint's text is not a checkpoint.
    #[error("checkpoint text: {0}")]
    Checkpoint(CheckpointError),
}

/// Why a proof does not prove inclusion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofVerifyError {
    /// The checkpoint note is not signed by a known key, or badly signed.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The signed text is not a checkpoint.
    #[error("checkpoint text: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint is from another log.
    #[error("checkpoint origin {found:?}, expected {expected:?}")]
    OriginMismatch { expected: String, found: String },
    /// The inclusion proof does not lead to the checkpoint's root.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] VerifyError),
}

/// The outcome of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    index: u64,
    checkpoint: Checkpoint,
    note: Opened,
}

impl VerifiedProof {
    /// The entry's index in the log.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The size of the checkpointed tree.
    pub fn size(&self) -> u64 {
        self.checkpoint.size()
    }

    /// The verified checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The opened checkpoint note: verified signatures and the unknown ones
    /// (for example witness cosignatures, for the caller's policy).
    pub fn note(&self) -> &Opened {
        &self.note
    }
}

impl TlogProof {
    /// A proof of entry `index` with its inclusion hashes, the signed
    /// checkpoint note, and optional extra data.
    pub fn new(
        index: u64,
        inclusion: Vec<Hash>,
        checkpoint_note: String,
        extra: Option<Vec<u8>>,
    ) -> Result<Self, ProofFormatError> {
        if inclusion.len() > MAX_PROOF_HASHES {
            return Err(ProofFormatError::TooManyHashes);
        }
        check_checkpoint_note(&checkpoint_note)?;
        Ok(Self {
            extra,
            index,
            inclusion,
            checkpoint: checkpoint_note,
        })
    }

    /// The unauthenticated extra data, if any.
    pub fn extra(&self) -> Option<&[u8]> {
        self.extra.as_deref()
    }

    /// The entry's index.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The inclusion proof, leaf's sibling first.
    pub fn inclusion(&self) -> &[Hash] {
        &self.inclusion
    }

    /// The signed checkpoint note, verbatim.
    pub fn checkpoint_note(&self) -> &str {
        &self.checkpoint
    }

    /// The text form.
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(64 + self.inclusion.len() * 45 + self.checkpoint.len());
        s.push_str(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&STANDARD.encode(extra));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.inclusion {
            s.push_str(&STANDARD.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses the text form, strictly.
    pub fn parse(text: &str) -> Result<Self, ProofFormatError> {
        let mut lines = Lines {
            rest: text,
            number: 0,
        };
        match lines.next() {
            Some((l, _)) if l == HEADER => {}
            _ => return Err(ProofFormatError::MissingHeader),
        }
        let (mut current, mut number) = lines
            .next()
            .ok_or(ProofFormatError::MissingIndex { line: 2 })?;
        let mut extra = None;
        if let Some(b64) = current.strip_prefix("extra ") {
            let data = STANDARD
                .decode(b64)
                .map_err(|_| ProofFormatError::InvalidExtra)?;
            extra = Some(data);
            (current, number) = lines
                .next()
                .ok_or(ProofFormatError::MissingIndex { line: 3 })?;
        }
        let digits = current
            .strip_prefix("index ")
            .ok_or(ProofFormatError::MissingIndex { line: number })?;
        let index = parse_index(digits).ok_or(ProofFormatError::InvalidIndex { line: number })?;

        let mut inclusion = Vec::new();
        loop {
            let (l, number) = lines.next().ok_or(ProofFormatError::MissingCheckpoint)?;
            if l.is_empty() {
                break;
            }
            if inclusion.len() == MAX_PROOF_HASHES {
                return Err(ProofFormatError::TooManyHashes);
            }
            let h = STANDARD
                .decode(l)
                .ok()
                .and_then(|h| Hash::try_from(h).ok())
                .ok_or(ProofFormatError::InvalidHash { line: number })?;
            inclusion.push(h);
        }
        let checkpoint = lines.rest;
        if checkpoint.is_empty() {
            return Err(ProofFormatError::MissingCheckpoint);
        }
        check_checkpoint_note(checkpoint)?;
        Ok(Self {
            extra,
            index,
            inclusion,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// Newline-terminated lines with their 1-based numbers; `rest` is what
/// follows the last line read.
struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Option<(&'a str, usize)> {
        let (line, tail) = self.rest.split_once('\n')?;
        self.rest = tail;
        self.number += 1;
        Some((line, self.number))
    }
}

fn parse_index(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return None;
    }
    s.parse().ok()
}

/// The checkpoint is a well-formed note whose text is a checkpoint.
fn check_checkpoint_note(note: &str) -> Result<(), ProofFormatError> {
    let (text, _) = note::split(note.as_bytes()).map_err(ProofFormatError::Note)?;
    Checkpoint::parse(text).map_err(ProofFormatError::Checkpoint)?;
    Ok(())
}

/// Verifies that the entry whose leaf hash is `leaf_hash` is in the log
/// `origin`: the checkpoint is signed by one of `verifiers`, carries
/// `origin`, and the inclusion proof leads from the leaf to its root.
pub fn verify(
    proof: &TlogProof,
    leaf_hash: &Hash,
    origin: &str,
    verifiers: &[Verifier],
) -> Result<VerifiedProof, ProofVerifyError> {
    let note = note::open(proof.checkpoint.as_bytes(), verifiers)?;
    let checkpoint = Checkpoint::parse(note.text())?;
    if checkpoint.origin() != origin {
        return Err(ProofVerifyError::OriginMismatch {
            expected: origin.to_owned(),
            found: checkpoint.origin().to_owned(),
        });
    }
    verify_inclusion(
        leaf_hash,
        proof.index,
        checkpoint.size(),
        &proof.inclusion,
        checkpoint.root(),
    )?;
    Ok(VerifiedProof {
        index: proof.index,
        checkpoint,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{MemoryTree, inclusion_proof, leaf_hash};
    use crate::note::Signer;

    fn fixture() -> (TlogProof, Hash, Signer) {
        let signer = Signer::new("example.com/log", &[3u8; 32]).unwrap();
        let mut tree = MemoryTree::new();
        for i in 0..11u32 {
            tree.push(leaf_hash(&i.to_be_bytes()));
        }
        let cp = Checkpoint::new("example.com/log", 11, tree.root()).unwrap();
        let note = signer.sign(&cp.body()).unwrap();
        let path = inclusion_proof(&tree, 6, 11).unwrap();
        let proof = TlogProof::new(6, path, note, Some(b"ctx".to_vec())).unwrap();
        (proof, leaf_hash(&6u32.to_be_bytes()), signer)
    }

    #[test]
    fn encode_parse_verify() {
        let (proof, leaf, signer) = fixture();
        let text = proof.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra Y3R4\nindex 6\n"));
        let parsed = TlogProof::parse(&text).unwrap();
        assert_eq!(parsed, proof);
        let ok = verify(&parsed, &leaf, "example.com/log", &[signer.verifier()]).unwrap();
        assert_eq!((ok.size(), ok.index()), (11, 6));
        assert_eq!(
            verify(&parsed, &leaf, "other.example/log", &[signer.verifier()]),
            Err(ProofVerifyError::OriginMismatch {
                expected: "other.example/log".into(),
                found: "example.com/log".into()
            })
        );
        let wrong_leaf = leaf_hash(b"other");
        assert!(matches!(
            verify(
                &parsed,
                &wrong_leaf,
                "example.com/log",
                &[signer.verifier()]
            ),
            Err(ProofVerifyError::Inclusion(
                VerifyError::RootMismatch { .. }
            ))
        ));
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        use ProofFormatError as E;
        let (proof, _, _) = fixture();
        let text = proof.encode();
        let p = |s: &str| TlogProof::parse(s).unwrap_err();
        assert_eq!(p(""), E::MissingHeader);
        assert_eq!(p("c2sp.org/tlog-proof@v2\n"), E::MissingHeader);
        assert_eq!(p("c2sp.org/tlog-proof@v1\n"), E::MissingIndex { line: 2 });
        assert_eq!(p("c2sp.org/tlog-proof@v1\nextra ???\n"), E::InvalidExtra);
        assert_eq!(
            p("c2sp.org/tlog-proof@v1\nextra \n"),
            E::MissingIndex { line: 3 }
        );
        assert_eq!(
            p("c2sp.org/tlog-proof@v1\nindex 01\n"),
            E::InvalidIndex { line: 2 }
        );
        assert_eq!(p("c2sp.org/tlog-proof@v1\nindex 1\n"), E::MissingCheckpoint);
        assert_eq!(
            p("c2sp.org/tlog-proof@v1\nindex 1\n\n"),
            E::MissingCheckpoint
        );
        assert_eq!(
            p("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n"),
            E::InvalidHash { line: 3 }
        );
        let no_extra = text.replace("extra Y3R4\n", "");
        assert_eq!(
            TlogProof::parse(&no_extra).map(|p| p.extra().is_none()),
            Ok(true)
        );
        let crlf = text.replacen("index 6\n", "index 6\r\n", 1);
        assert_eq!(p(&crlf), E::InvalidIndex { line: 3 });
        let unsigned = text.split("\u{2014}").next().unwrap_or_default();
        assert!(matches!(p(unsigned), E::Note(NoteError::NoSignatures)));
        let bad_cp = text.replace("\n11\n", "\n011\n");
        assert!(matches!(
            p(&bad_cp),
            E::Checkpoint(CheckpointError::InvalidSize { .. })
        ));
    }
}
