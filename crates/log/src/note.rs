//! c2sp.org/signed-note with Ed25519 signatures.
//!
//! * A note (§"Format") is a text ending in a newline, a blank line, then one
//!   or more signature lines `— <key name> <base64(key ID ‖ signature)>\n`
//!   (U+2014 EM DASH). The text is separated from the signatures by the
//!   *last* blank line. The whole note is UTF-8 without ASCII control
//!   characters other than newline.
//! * Key names are non-empty, without Unicode spaces or `+`.
//! * The key ID of an Ed25519 key (§"Ed25519 signatures") is the first four
//!   bytes, big-endian, of `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)`.
//! * A verifier key (§"Verifier keys") is
//!   `<name>+<8 lowercase hex digits of the key ID>+<base64(0x01 ‖ public key)>`.
//! * Opening (§"Signatures"): signatures whose (name, key ID) matches no
//!   known key are ignored; a known key's signature that fails to verify
//!   rejects the whole note; a note with no verified signature is rejected.
//!   At most [`MAX_SIGNATURES`] signature lines are read (the spec asks for
//!   at least 16; 100 is golang.org/x/mod/sumdb/note's limit).
//!
//! Signatures are checked with Ed25519 "strict" verification (RFC 8032 with
//! canonical encodings and no small-order keys or nonces).
//!
//! Signing keys can also be read from the `PRIVATE+KEY+<name>+<hex key
//! ID>+<base64(0x01 ‖ seed)>` form of golang.org/x/mod/sumdb/note
//! ([`Signer::parse_skey`]); the crate never writes one.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature type byte of Ed25519 note signatures.
pub const ED25519: u8 = 0x01;
/// The most signature lines [`open`] reads.
pub const MAX_SIGNATURES: usize = 100;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The key ID of an Ed25519 key:
/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[..4]`, big-endian.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519]);
    h.update(public_key);
    let digest: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Whether `name` may name a key: non-empty, no Unicode space, no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Why a key could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is empty or holds a space, a `+` or a control character.
    #[error("invalid key name {name:?}: non-empty, without spaces or '+'")]
    InvalidName { name: String },
    /// The string is not `<name>+<hex key ID>+<base64 key>` (with the
    /// `PRIVATE+KEY+` prefix for a signing key).
    #[error("malformed key: expected {expected}")]
    Malformed { expected: &'static str },
    /// The key ID is not 8 lowercase hex digits.
    #[error("key ID {key_id:?} is not 8 lowercase hex digits")]
    InvalidKeyId { key_id: String },
    /// The key material is not canonical standard base64.
    #[error("key material is not canonical standard base64")]
    InvalidBase64,
    /// The key is of another signature type than Ed25519.
    #[error("unsupported signature type 0x{alg:02x} (only 0x01, Ed25519)")]
    UnsupportedAlgorithm { alg: u8 },
    /// An Ed25519 key is 32 bytes.
    #[error("Ed25519 key material is {len} bytes, 32 expected")]
    WrongKeyLength { len: usize },
    /// The stated key ID is not the one the name and key give.
    #[error("key ID {stated:08x} does not match the name and key ({computed:08x})")]
    KeyIdMismatch { stated: u32, computed: u32 },
    /// The bytes are not an Ed25519 public key (not a curve point).
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
}

fn check_name(name: &str) -> Result<(), KeyError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(KeyError::InvalidName {
            name: name.to_owned(),
        })
    }
}

fn parse_hex_key_id(s: &str) -> Result<u32, KeyError> {
    let ok = s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let invalid = || KeyError::InvalidKeyId {
        key_id: s.to_owned(),
    };
    if !ok {
        return Err(invalid());
    }
    u32::from_str_radix(s, 16).map_err(|_| invalid())
}

/// `<name>+<hex>+<base64(0x01 ‖ 32 bytes)>` → (name, stated key ID, key bytes).
fn split_key<'a>(s: &'a str, expected: &'static str) -> Result<(&'a str, u32, [u8; 32]), KeyError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyError::Malformed { expected });
    };
    check_name(name)?;
    let id = parse_hex_key_id(id)?;
    let material = STANDARD.decode(b64).map_err(|_| KeyError::InvalidBase64)?;
    let Some((&alg, key)) = material.split_first() else {
        return Err(KeyError::WrongKeyLength { len: 0 });
    };
    if alg != ED25519 {
        return Err(KeyError::UnsupportedAlgorithm { alg });
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| KeyError::WrongKeyLength { len: key.len() })?;
    Ok((name, id, key))
}

/// An Ed25519 note signing key with its name.
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// The signer `name` with the 32-byte Ed25519 secret key (seed) `secret_key`.
    pub fn new(name: &str, secret_key: &[u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(secret_key);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// Reads a `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 ‖ seed)>` key
    /// (golang.org/x/mod/sumdb/note), checking its key ID.
    pub fn parse_skey(skey: &str) -> Result<Self, KeyError> {
        const EXPECTED: &str = "PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>";
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(KeyError::Malformed { expected: EXPECTED })?;
        let (name, stated, seed) = split_key(rest, EXPECTED)?;
        let signer = Self::new(name, &seed)?;
        if signer.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The verifier key string, `<name>+<hex key ID>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        self.verifier().verifier_key()
    }

    /// Signs `text` (which must end in a newline): the text, a blank line,
    /// and this key's signature line.
    pub fn sign(&self, text: &str) -> Result<String, SignError> {
        sign(text, &[self])
    }

    fn signature_line(&self, text: &str) -> String {
        use ed25519_dalek::Signer as _;
        let sig = self.key.sign(text.as_bytes());
        let mut bytes = Vec::with_capacity(4 + 64);
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(bytes)
        )
    }
}

/// An Ed25519 note verification key with its name.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.verifier_key())
    }
}

impl Verifier {
    /// The verifier `name` for the 32-byte Ed25519 public key `public_key`.
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, KeyError> {
        check_name(name)?;
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| KeyError::InvalidPublicKey)?;
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, public_key),
            key,
        })
    }

    /// Reads a verifier key `<name>+<hex key ID>+<base64(0x01 ‖ public key)>`,
    /// checking its key ID.
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        let (name, stated, key) =
            split_key(vkey, "<name>+<hex key ID>+<base64(0x01 || public key)>")?;
        let verifier = Self::new(name, &key)?;
        if verifier.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string, `<name>+<hex key ID>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ED25519);
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(material)
        )
    }

    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.key
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
            .is_ok()
    }
}

/// Why a text could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A note text ends in a newline.
    #[error("the note text does not end in a newline")]
    MissingFinalNewline,
    /// Notes hold no ASCII control character but newline.
    #[error("control character U+{code:04X} at byte {offset} of the note text")]
    ControlCharacter { offset: usize, code: u32 },
    /// A note has at least one signature.
    #[error("no signer given")]
    NoSigners,
    /// More signatures than [`open`] accepts.
    #[error("{count} signers: a note carries at most {MAX_SIGNATURES} signatures")]
    TooManySigners { count: usize },
}

fn control_character(s: &str) -> Option<(usize, u32)> {
    s.char_indices()
        .find(|&(_, c)| c < ' ' && c != '\n')
        .map(|(i, c)| (i, u32::from(c)))
}

/// Signs `text` (which must end in a newline) with each signer in turn:
/// the text, a blank line, then one signature line per signer.
pub fn sign(text: &str, signers: &[&Signer]) -> Result<String, SignError> {
    if !text.ends_with('\n') {
        return Err(SignError::MissingFinalNewline);
    }
    if let Some((offset, code)) = control_character(text) {
        return Err(SignError::ControlCharacter { offset, code });
    }
    if signers.is_empty() {
        return Err(SignError::NoSigners);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(SignError::TooManySigners {
            count: signers.len(),
        });
    }
    let mut note = String::with_capacity(text.len() + 1 + signers.len() * 110);
    note.push_str(text);
    note.push('\n');
    for s in signers {
        note.push_str(&s.signature_line(text));
    }
    Ok(note)
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    name: String,
    key_id: u32,
    signature: Vec<u8>,
}

impl NoteSignature {
    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature bytes (after the key ID).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// A note whose signatures were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    text: String,
    verified: Vec<NoteSignature>,
    unverified: Vec<NoteSignature>,
}

impl Opened {
    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signatures verified by a known key, one per key, in note order.
    pub fn verified(&self) -> &[NoteSignature] {
        &self.verified
    }

    /// The signatures of unknown keys (ignored for trust), without
    /// duplicates, in note order: for example witness cosignatures.
    pub fn unverified(&self) -> &[NoteSignature] {
        &self.unverified
    }

    /// Whether a signature by the key named `name` was verified.
    pub fn is_signed_by(&self, name: &str) -> bool {
        self.verified.iter().any(|s| s.name == name)
    }
}

/// Why a note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// Notes are UTF-8.
    #[error("the note is not valid UTF-8 (byte {offset})")]
    InvalidUtf8 { offset: usize },
    /// Notes hold no ASCII control character but newline.
    #[error("control character U+{code:04X} at byte {offset}")]
    ControlCharacter { offset: usize, code: u32 },
    /// No blank line separates the text from the signatures.
    #[error("no blank line separates the text from the signatures")]
    MissingSignatureBlock,
    /// A blank line, then nothing.
    #[error("the note has no signature lines")]
    NoSignatures,
    /// The last signature line does not end in a newline.
    #[error("the last signature line does not end in a newline")]
    MissingFinalNewline,
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("more than {max} signature lines")]
    TooManySignatures { max: usize },
    /// A line of the signature block does not start with "— ".
    #[error("line {line} is not a signature line (\"\u{2014} <name> <base64>\")")]
    NotASignatureLine { line: usize },
    /// The key name of a signature line is invalid.
    #[error("line {line}: invalid key name")]
    InvalidKeyName { line: usize },
    /// The signature is not canonical base64 of a key ID and signature.
    #[error("line {line}: the signature is not base64 of a 4-byte key ID and a signature")]
    InvalidSignatureEncoding { line: usize },
    /// Two verifiers given share a name and key ID but not their key.
    #[error("two verifiers named {name} share key ID {key_id:08x}")]
    AmbiguousVerifiers { name: String, key_id: u32 },
    /// A known key's signature does not verify.
    #[error("the signature of {name} (key ID {key_id:08x}) does not verify")]
    BadSignature { name: String, key_id: u32 },
    /// No signature by a known key.
    #[error("no signature by a known key ({unknown} signatures by unknown keys)")]
    NoKnownSignature { unknown: usize },
}

/// The text of a note and its signature lines, unverified.
pub(crate) fn split(note: &[u8]) -> Result<(&str, Vec<NoteSignature>), NoteError> {
    let note = std::str::from_utf8(note).map_err(|e| NoteError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    if let Some((offset, code)) = control_character(note) {
        return Err(NoteError::ControlCharacter { offset, code });
    }
    let sep = note.rfind("\n\n").ok_or(NoteError::MissingSignatureBlock)?;
    let (text, block) = (&note[..=sep], &note[sep + 2..]);
    if block.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    let Some(block) = block.strip_suffix('\n') else {
        return Err(NoteError::MissingFinalNewline);
    };
    let first_line = text.matches('\n').count() + 2;
    let mut sigs = Vec::new();
    for (i, line) in block.split('\n').enumerate() {
        if i == MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        sigs.push(parse_signature_line(line, first_line + i)?);
    }
    Ok((text, sigs))
}

fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(NoteError::NotASignatureLine { line: number })?;
    let bad_encoding = NoteError::InvalidSignatureEncoding { line: number };
    let (name, b64) = rest.split_once(' ').ok_or(bad_encoding.clone())?;
    if !is_valid_key_name(name) {
        return Err(NoteError::InvalidKeyName { line: number });
    }
    let bytes = STANDARD.decode(b64).map_err(|_| bad_encoding.clone())?;
    let Some((id, signature)) = bytes.split_first_chunk::<4>() else {
        return Err(bad_encoding);
    };
    if signature.is_empty() {
        return Err(bad_encoding);
    }
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes(*id),
        signature: signature.to_vec(),
    })
}

/// Opens a signed note: checks its form, verifies the signatures of the
/// known keys among `verifiers`, and returns the text with the verified and
/// unknown signatures.
pub fn open(note: &[u8], verifiers: &[Verifier]) -> Result<Opened, NoteError> {
    let (text, sigs) = split(note)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    for sig in sigs {
        let mut known = verifiers
            .iter()
            .filter(|v| v.name == sig.name && v.key_id == sig.key_id);
        let Some(verifier) = known.next() else {
            if !unverified.contains(&sig) {
                unverified.push(sig);
            }
            continue;
        };
        if known.any(|other| other.key != verifier.key) {
            return Err(NoteError::AmbiguousVerifiers {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if !verifier.verifies(text, &sig.signature) {
            return Err(NoteError::BadSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if !verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            verified.push(sig);
        }
    }
    if verified.is_empty() {
        return Err(NoteError::NoKnownSignature {
            unknown: unverified.len(),
        });
    }
    Ok(Opened {
        text: text.to_owned(),
        verified,
        unverified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str) -> Signer {
        Signer::new(name, &[7u8; 32]).unwrap()
    }

    #[test]
    fn key_names() {
        assert!(is_valid_key_name("example.com/log"));
        assert!(!is_valid_key_name(""));
        assert!(!is_valid_key_name("a b"));
        assert!(!is_valid_key_name("a+b"));
        assert!(!is_valid_key_name("a\u{a0}b"));
        assert!(!is_valid_key_name("a\u{3000}b"));
        assert!(matches!(
            Signer::new("a b", &[0; 32]),
            Err(KeyError::InvalidName { .. })
        ));
    }

    #[test]
    fn sign_then_open() {
        let s = signer("registre.example/log");
        let note = s.sign("hello\n\nworld\n").unwrap();
        let opened = open(note.as_bytes(), &[s.verifier()]).unwrap();
        assert_eq!(opened.text(), "hello\n\nworld\n");
        assert!(opened.is_signed_by("registre.example/log"));
        assert_eq!(Verifier::parse(&s.verifier_key()).unwrap(), s.verifier());
    }

    #[test]
    fn sign_refuses_bad_texts() {
        let s = signer("n");
        assert_eq!(s.sign("no newline"), Err(SignError::MissingFinalNewline));
        assert_eq!(
            s.sign("tab\there\n"),
            Err(SignError::ControlCharacter { offset: 3, code: 9 })
        );
        assert_eq!(sign("x\n", &[]), Err(SignError::NoSigners));
    }

    #[test]
    fn open_reports_what_is_wrong() {
        let s = signer("n");
        let v = [s.verifier()];
        let note = s.sign("t\n").unwrap();
        let line = |n: &str| open(n.as_bytes(), &v).unwrap_err();
        assert_eq!(line("t\n"), NoteError::MissingSignatureBlock);
        assert_eq!(line("t\n\n"), NoteError::NoSignatures);
        assert_eq!(
            line(note.trim_end_matches('\n')),
            NoteError::MissingFinalNewline
        );
        assert_eq!(line("t\n\nx\n"), NoteError::NotASignatureLine { line: 3 });
        assert_eq!(
            line("t\n\n\u{2014} a+b AAAAAAA=\n"),
            NoteError::InvalidKeyName { line: 3 }
        );
        assert_eq!(
            line("t\n\n\u{2014} n AAAA\n"),
            NoteError::InvalidSignatureEncoding { line: 3 }
        );
        assert_eq!(
            line("t\n\n\u{2014} n\n"),
            NoteError::InvalidSignatureEncoding { line: 3 }
        );
        assert_eq!(
            line("t\r\n\n"),
            NoteError::ControlCharacter {
                offset: 1,
                code: 13
            }
        );
        let other = Signer::new("n", &[8u8; 32]).unwrap();
        let foreign = other.sign("t\n").unwrap();
        assert_eq!(line(&foreign), NoteError::NoKnownSignature { unknown: 1 });
        let forged = note.replace("t\n\n", "u\n\n");
        assert_eq!(
            open(forged.as_bytes(), &v),
            Err(NoteError::BadSignature {
                name: "n".into(),
                key_id: s.key_id()
            })
        );
    }
}
