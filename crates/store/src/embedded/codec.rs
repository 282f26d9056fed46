//! Record compression (segment format 3).
//!
//! A record's plaintext is `salt (16) ‖ JCS(trace)`, the bytes its
//! commitment hashes. Format 3 stores `salt ‖ zstd(JCS)` instead (then seals
//! it as format 2 does), compressed with a dictionary built into the binary
//! (`records-v1.zdict`, trained on synthetic traces by
//! `scripts/dictionary/make_dictionary.py`: it holds no personal data). Each
//! record is compressed alone, so any record is read with one `pread` and
//! one decompression, and a purge or shredding never depends on another
//! record. The zstd frame has no checksum (AES-GCM authenticates it) and no
//! dictionary id (the segment header names the dictionary); it keeps its
//! content size, which bounds the decompression.
//!
//! Commitments do not change: they hash the uncompressed plaintext, so
//! proofs, tiles, exports and bundles are the same in every format.

use std::cell::RefCell;
use std::sync::OnceLock;

use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// The dictionary of segment header dictionary id 1.
pub const DICTIONARY_V1: &[u8] = include_bytes!("records-v1.zdict");
/// The dictionary id format-3 segments are written with.
pub const DICTIONARY: u8 = 1;
/// zstd level: 3 measured best for size per CPU on traces.
const LEVEL: i32 = 3;
/// Largest JCS a record may decompress to (a trace is bounded far below).
pub const MAX_JCS: usize = 1 << 20;

fn encoder_dict() -> &'static EncoderDictionary<'static> {
    static D: OnceLock<EncoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| EncoderDictionary::copy(DICTIONARY_V1, LEVEL))
}

fn decoder_dict() -> &'static DecoderDictionary<'static> {
    static D: OnceLock<DecoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| DecoderDictionary::copy(DICTIONARY_V1))
}

/// A compressor of records, one per writing thread.
pub struct Packer {
    c: zstd::bulk::Compressor<'static>,
}

impl Packer {
    pub fn new() -> std::io::Result<Packer> {
        use zstd::zstd_safe::CParameter;
        let mut c = zstd::bulk::Compressor::with_prepared_dictionary(encoder_dict())?;
        c.set_parameter(CParameter::ChecksumFlag(false))?;
        c.set_parameter(CParameter::DictIdFlag(false))?;
        c.set_parameter(CParameter::ContentSizeFlag(true))?;
        Ok(Packer { c })
    }

    /// Appends the compressed form of `jcs` to `out`.
    pub fn pack(&mut self, jcs: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        let start = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(jcs.len()));
        // Compress into the spare capacity through a temporary: the bulk
        // API writes to a slice.
        out.resize(start + zstd::zstd_safe::compress_bound(jcs.len()), 0);
        let n = self.c.compress_to_buffer(jcs, &mut out[start..])?;
        out.truncate(start + n);
        Ok(())
    }
}

thread_local! {
    static UNPACKER: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Decompresses a record's JCS, appending it to `out`.
pub fn unpack(packed: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    UNPACKER.with(|u| {
        let mut u = u.borrow_mut();
        if u.is_none() {
            *u = Some(
                zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dict())
                    .map_err(|e| format!("cannot start the decompressor: {e}"))?,
            );
        }
        let d = u
            .as_mut()
            .ok_or_else(|| "cannot start the decompressor".to_owned())?;
        let size = zstd::zstd_safe::get_frame_content_size(packed)
            .ok()
            .flatten()
            .ok_or_else(|| "compressed record without its size".to_owned())?;
        let size = usize::try_from(size)
            .ok()
            .filter(|s| *s <= MAX_JCS)
            .ok_or_else(|| "compressed record larger than any trace".to_owned())?;
        let start = out.len();
        out.resize(start + size, 0);
        let n = d.decompress_to_buffer(packed, &mut out[start..]);
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(format!("compressed record does not decompress: {e}"));
            }
        };
        if n != size {
            out.truncate(start);
            return Err("compressed record shorter than its stated size".into());
        }
        Ok(())
    })
}

/// The plaintext (`salt ‖ JCS`) of an opened record of a segment of format
/// `version`: `opened` itself for format 2, decompressed into `scratch` for
/// format 3.
pub fn plaintext<'a>(
    opened: &'a [u8],
    version: u8,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], String> {
    if version < 3 {
        return Ok(opened);
    }
    if opened.len() < 16 {
        return Err("record shorter than its salt".into());
    }
    // salt ‖ JCS, decompressed in place after the salt (no second buffer
    // on the read path).
    scratch.clear();
    scratch.extend_from_slice(&opened[..16]);
    unpack(&opened[16..], scratch)?;
    Ok(scratch)
}

/// A format-3 record's stored plaintext (`salt ‖ zstd(JCS)`) from its
/// plaintext (`salt ‖ JCS`): for tools that build records (tests, `migrate`).
pub fn pack_plaintext(plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let salt = plain.len().min(16);
    let mut out = plain[..salt].to_vec();
    Packer::new()?.pack(&plain[salt..], &mut out)?;
    Ok(out)
}

/// The plaintext (`salt ‖ JCS`) of a format-3 record's stored plaintext.
pub fn unpack_plaintext(stored: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    plaintext(stored, 3, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let mut p = Packer::new().expect("packer");
        let jcs = br#"{"action":"consultation","actor":{"id":"810001234567"},"class":"mss","id":"01a2529f-f92d-7064-851d-012594b09918","index":5,"log":"mss","occurred_at":"2026-12-07T22:29:05.445+00:00","received_at":"2026-12-07T22:29:05.453499Z","request":"UID FETCH 4 (BODY.PEEK[])"}"#;
        let mut out = b"salt".to_vec();
        p.pack(jcs, &mut out).expect("pack");
        assert!(out.len() - 4 < jcs.len() / 2, "{} bytes", out.len());
        let mut back = Vec::new();
        unpack(&out[4..], &mut back).expect("unpack");
        assert_eq!(back, jcs);
        // Any damage is an error, never a panic.
        for i in 4..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x55;
            let _ = unpack(&bad[4..], &mut back);
        }
        assert!(unpack(b"", &mut back).is_err());
        let mut salted = vec![7u8; 16];
        salted.extend_from_slice(&out[4..]);
        let mut scratch = Vec::new();
        let plain = plaintext(&salted, 3, &mut scratch).expect("plaintext");
        assert_eq!(&plain[16..], jcs);
        assert_eq!(
            plaintext(&salted, 2, &mut Vec::new()).expect("v2"),
            &salted[..]
        );
    }
}
