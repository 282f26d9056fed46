//! c2sp.org/tlog-checkpoint note texts.
//!
//! A checkpoint (§"Note text") is at least three non-empty lines, each ended
//! by a newline:
//!
//! 1. the **origin**, non-empty (the spec recommends a schema-less URL
//!    without spaces or `+`, but clients must not rely on it);
//! 2. the **tree size** in ASCII decimal, without leading zeros (`0` for the
//!    empty tree);
//! 3. the **root hash**, standard base64 of the 32-byte RFC 6962 root;
//! 4. optional **extension lines**, opaque and non-empty.
//!
//! Being a signed-note text, a checkpoint holds no ASCII control character
//! but newline. [`Checkpoint::parse`] accepts exactly the bodies
//! [`Checkpoint::body`] writes. [`open_checkpoint`] opens a signed
//! checkpoint and parses its text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::note::{self, NoteError, Opened, Verifier};

/// A log's tree head: origin, size, root and extension lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

/// Why a checkpoint is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The body does not end in a newline.
    #[error("the checkpoint does not end in a newline")]
    MissingFinalNewline,
    /// Fewer than the three mandatory lines.
    #[error("a checkpoint has at least 3 lines (origin, size, root), found {lines}")]
    TooFewLines { lines: usize },
    /// An ASCII control character other than newline.
    #[error("control character U+{code:04X} on line {line}")]
    ControlCharacter { line: usize, code: u32 },
    /// The origin line is empty.
    #[error("the origin line is empty")]
    EmptyOrigin,
    /// The size is not a canonical decimal (digits only, no leading zeros).
    #[error("tree size {line:?} is not a decimal without leading zeros")]
    InvalidSize { line: String },
    /// The size exceeds 2^64 − 1.
    #[error("tree size {line:?} does not fit in 64 bits")]
    SizeOverflow { line: String },
    /// The root is not canonical standard base64 of 32 bytes.
    #[error("root hash {line:?} is not standard base64 of 32 bytes")]
    InvalidRoot { line: String },
    /// An extension line is empty.
    #[error("extension line {line} is empty")]
    EmptyExtension { line: usize },
    /// A line (origin or extension) holds a newline.
    #[error("line {line} holds a newline")]
    EmbeddedNewline { line: usize },
}

/// Line numbers are 1-based: origin 1, size 2, root 3, extensions from 4.
fn check_line(text: &str, line: usize) -> Result<(), CheckpointError> {
    if let Some(c) = text.chars().find(|c| *c < ' ') {
        if c == '\n' {
            return Err(CheckpointError::EmbeddedNewline { line });
        }
        return Err(CheckpointError::ControlCharacter {
            line,
            code: u32::from(c),
        });
    }
    Ok(())
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        Self::with_extensions(origin, size, root, Vec::new())
    }

    /// A checkpoint with extension lines (each non-empty, without newline).
    pub fn with_extensions(
        origin: &str,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        check_line(origin, 1)?;
        for (i, e) in extensions.iter().enumerate() {
            if e.is_empty() {
                return Err(CheckpointError::EmptyExtension { line: 4 + i });
            }
            check_line(e, 4 + i)?;
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The tree size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The tree root.
    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The extension lines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n`, then each
    /// extension line and a newline.
    pub fn body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint note text, strictly.
    pub fn parse(body: &str) -> Result<Self, CheckpointError> {
        let Some(body) = body.strip_suffix('\n') else {
            return Err(CheckpointError::MissingFinalNewline);
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines { lines: lines.len() });
        };
        for (i, l) in lines.iter().enumerate() {
            check_line(l, i + 1)?;
        }
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        let root = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or_else(|| CheckpointError::InvalidRoot {
                line: (*root).to_owned(),
            })?;
        if let Some(i) = extensions.iter().position(|e| e.is_empty()) {
            return Err(CheckpointError::EmptyExtension { line: 4 + i });
        }
        Ok(Self {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        })
    }
}

fn parse_size(line: &str) -> Result<u64, CheckpointError> {
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if !canonical {
        return Err(CheckpointError::InvalidSize {
            line: line.to_owned(),
        });
    }
    line.parse().map_err(|_| CheckpointError::SizeOverflow {
        line: line.to_owned(),
    })
}

/// Why a signed checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenCheckpointError {
    /// The note is malformed or not signed by a known key.
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    /// The signed text is not a checkpoint.
    #[error("checkpoint text: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// Opens a signed checkpoint (see [`note::open`]) and parses its text.
pub fn open_checkpoint(
    note: &[u8],
    verifiers: &[Verifier],
) -> Result<(Checkpoint, Opened), OpenCheckpointError> {
    let opened = note::open(note, verifiers)?;
    let checkpoint = Checkpoint::parse(opened.text())?;
    Ok((checkpoint, opened))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips() {
        let c = Checkpoint::with_extensions("example.com/log", 42, [9; 32], vec!["ext a".into()])
            .unwrap();
        assert_eq!(Checkpoint::parse(&c.body()), Ok(c));
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        use CheckpointError as E;
        let root = STANDARD.encode([1u8; 32]);
        let p = |s: &str| Checkpoint::parse(s).unwrap_err();
        assert_eq!(p(&format!("o\n1\n{root}")), E::MissingFinalNewline);
        assert_eq!(p("o\n1\n"), E::TooFewLines { lines: 2 });
        assert_eq!(p(&format!("\n1\n{root}\n")), E::EmptyOrigin);
        assert!(matches!(
            p(&format!("o\n01\n{root}\n")),
            E::InvalidSize { .. }
        ));
        assert!(matches!(
            p(&format!("o\n+1\n{root}\n")),
            E::InvalidSize { .. }
        ));
        assert!(matches!(
            p(&format!("o\n\n{root}\n")),
            E::InvalidSize { .. }
        ));
        assert!(matches!(
            p(&format!("o\n18446744073709551616\n{root}\n")),
            E::SizeOverflow { .. }
        ));
        assert!(matches!(p("o\n1\nAAAA\n"), E::InvalidRoot { .. }));
        assert_eq!(
            p(&format!("o\n1\n{root}\na\n\n")),
            E::EmptyExtension { line: 5 }
        );
        assert_eq!(
            p(&format!("o\t\n1\n{root}\n")),
            E::ControlCharacter { line: 1, code: 9 }
        );
        assert_eq!(
            Checkpoint::new("a\nb", 0, [0; 32]),
            Err(E::EmbeddedNewline { line: 1 })
        );
        assert_eq!(Checkpoint::new("", 0, [0; 32]), Err(E::EmptyOrigin));
        assert_eq!(
            Checkpoint::parse(&format!("o\n0\n{root}\n")).map(|c| c.size()),
            Ok(0)
        );
    }
}
