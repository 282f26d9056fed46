//! Segment file format (see `docs/format.md`, which this code must match).
//!
//! ```text
//! segment  = header frame*
//! header   = 64 bytes:
//!   0  8  magic "RGSEG\0\0\x03" (format 3; "…\x02" format 2)
//!   8  8  first_index       u64 LE   index of the segment's first record
//!   16 8  period_start      i64 LE   µs since the Unix epoch, UTC
//!   24 1  class name length u8 (1..=32)
//!   25 32 class name        ASCII, zero padded
//!   57 1  kind            0 = a segment of the log, 1 = a hold segment
//!   58 1  record dictionary (format 3: 1 = records-v1; format 2: zero)
//!   59 1  zero
//!   60 4  crc32c of bytes 0..60, u32 LE
//! frame    = 40-byte frame header, then body:
//!   0  4  magic "RGFR"
//!   4  4  body_len          u32 LE   bytes after the frame header
//!   8  4  crc32c            u32 LE   of bytes 12..40+body_len
//!   12 4  count             u32 LE   records in the body (≥ 1)
//!   16 8  first_index       u64 LE
//!   24 8  received_at       i64 LE   µs since the Unix epoch, UTC
//!   32 8  synced_upto       u64 LE   file offset up to which every byte was
//!                                    known durable when this frame was encoded
//!   body = count × (len u32 LE, record)
//!   record = nonce (12) ‖ AES-256-GCM(data key of the segment, nonce,
//!            aad = "registre record v1\0" ‖ log (32, zero padded) ‖ index
//!            u64 LE ‖ 5 zero bytes, plaintext = salt (16) ‖ JCS bytes of
//!            the stored trace (salt excluded)) ‖ tag (16); in format 3
//!            the JCS bytes are zstd-compressed with the record dictionary
//!            (`codec.rs`), the salt is not
//! ```
//!
//! A frame is the unit of atomicity: one group commit writes one or more
//! whole frames, then syncs. Recovery accepts a frame only when its magic,
//! length, CRC, index continuity and record lengths all check out.
//! A hold segment (kind 1) holds the traces a legal hold kept when their
//! segment was purged, re-sealed under a new data key: one record per frame,
//! indexes increasing but not contiguous.
//! `synced_upto` tells a torn tail from corruption: a damaged frame at offset
//! B followed by an intact frame whose `synced_upto` > B had been durable
//! before that frame was written, so its damage is not a torn write.

pub const SEGMENT_MAGIC: &[u8; 8] = b"RGSEG\0\0\x03";
/// Format 2: records not compressed (read, never written).
const SEGMENT_MAGIC_V2: &[u8; 8] = b"RGSEG\0\0\x02";
/// The segment format written.
pub const FORMAT: u8 = 3;
/// The unencrypted development format, refused with a clear message.
const SEGMENT_MAGIC_V1: &[u8; 8] = b"RGSEG\0\0\x01";
/// Smallest record: nonce, salt, tag.
pub const MIN_RECORD: usize = crate::crypto::SEAL_OVERHEAD + 16;
pub const FRAME_MAGIC: &[u8; 4] = b"RGFR";
pub const HEADER_LEN: usize = 64;
pub const FRAME_HEADER_LEN: usize = 40;
/// Larger frames are split; also the bound recovery trusts.
pub const MAX_FRAME_BODY: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    pub first_index: u64,
    pub period_start: i64,
    pub class: String,
    /// A hold segment (traces kept by a legal hold past their purge).
    pub hold: bool,
    /// Segment format: 3 (records compressed) or 2.
    pub version: u8,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        if self.version == 2 {
            h[0..8].copy_from_slice(SEGMENT_MAGIC_V2);
        } else {
            h[0..8].copy_from_slice(SEGMENT_MAGIC);
            h[58] = super::codec::DICTIONARY;
        }
        h[8..16].copy_from_slice(&self.first_index.to_le_bytes());
        h[16..24].copy_from_slice(&self.period_start.to_le_bytes());
        let name = self.class.as_bytes();
        let n = name.len().min(32);
        h[24] = n as u8;
        h[25..25 + n].copy_from_slice(&name[..n]);
        h[57] = u8::from(self.hold);
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    pub fn decode(h: &[u8]) -> Result<SegmentHeader, &'static str> {
        if h.len() < HEADER_LEN {
            return Err("segment header is truncated");
        }
        if &h[0..8] == SEGMENT_MAGIC_V1 {
            return Err(
                "segment written by an unencrypted development build (format 1); not readable by this version",
            );
        }
        let version = match &h[0..8] {
            m if m == SEGMENT_MAGIC => 3,
            m if m == SEGMENT_MAGIC_V2 => 2,
            _ => return Err("not a registre segment (bad magic)"),
        };
        if crc32c::crc32c(&h[0..60]) != u32_at(h, 60) {
            return Err("segment header checksum mismatch");
        }
        let n = h[24] as usize;
        if n == 0 || n > 32 {
            return Err("bad class name length in segment header");
        }
        let class = std::str::from_utf8(&h[25..25 + n])
            .map_err(|_| "class name in segment header is not UTF-8")?
            .to_owned();
        let hold = match h[57] {
            0 => false,
            1 => true,
            _ => return Err("unknown segment kind in segment header"),
        };
        if version == 3 && h[58] != super::codec::DICTIONARY {
            return Err("segment compressed with a record dictionary this version does not know");
        }
        Ok(SegmentHeader {
            first_index: u64_at(h, 8),
            period_start: u64_at(h, 16) as i64,
            class,
            hold,
            version,
        })
    }
}

/// Builds frames in a reusable buffer.
pub struct FrameWriter {
    pub buf: Vec<u8>,
    start: usize,
    count: u32,
}

impl FrameWriter {
    pub fn new() -> FrameWriter {
        FrameWriter {
            buf: Vec::with_capacity(1 << 20),
            start: 0,
            count: 0,
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.count = 0;
    }

    pub fn begin(&mut self, first_index: u64, received_at: i64, synced_upto: u64) {
        self.start = self.buf.len();
        self.count = 0;
        self.buf.extend_from_slice(FRAME_MAGIC);
        self.buf.extend_from_slice(&[0; 8]);
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&first_index.to_le_bytes());
        self.buf.extend_from_slice(&received_at.to_le_bytes());
        self.buf.extend_from_slice(&synced_upto.to_le_bytes());
    }

    pub fn body_len(&self) -> usize {
        self.buf.len() - self.start - FRAME_HEADER_LEN
    }

    /// Starts a record: the caller appends its bytes to `buf`, then calls
    /// [`FrameWriter::close_record`] with the returned start.
    pub fn open_record(&mut self) -> usize {
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.len()
    }

    /// Ends the record begun at `rec_start`; returns its (offset in `buf`,
    /// length).
    pub fn close_record(&mut self, rec_start: usize) -> (usize, u32) {
        let len = (self.buf.len() - rec_start) as u32;
        self.buf[rec_start - 4..rec_start].copy_from_slice(&len.to_le_bytes());
        self.count += 1;
        (rec_start, len)
    }

    /// Fills the frame header (length, count, CRC).
    pub fn finish(&mut self) {
        let s = self.start;
        let body_len = self.body_len() as u32;
        self.buf[s + 4..s + 8].copy_from_slice(&body_len.to_le_bytes());
        self.buf[s + 12..s + 16].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf[s + 12..]);
        self.buf[s + 8..s + 12].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A frame read back from disk.
#[derive(Debug)]
pub struct FrameHeader {
    pub body_len: u32,
    pub crc: u32,
    pub count: u32,
    pub first_index: u64,
    pub received_at: i64,
    pub synced_upto: u64,
}

impl FrameHeader {
    pub fn decode(h: &[u8; FRAME_HEADER_LEN]) -> Result<FrameHeader, &'static str> {
        if &h[0..4] != FRAME_MAGIC {
            return Err("bad frame magic");
        }
        let body_len = u32_at(h, 4);
        if body_len as usize > MAX_FRAME_BODY {
            return Err("frame length out of bounds");
        }
        let count = u32_at(h, 12);
        if count == 0 {
            return Err("empty frame");
        }
        Ok(FrameHeader {
            body_len,
            crc: u32_at(h, 8),
            count,
            first_index: u64_at(h, 16),
            received_at: u64_at(h, 24) as i64,
            synced_upto: u64_at(h, 32),
        })
    }

    /// Checks the CRC of header bytes 12..32 plus `body`.
    pub fn check(&self, header: &[u8; FRAME_HEADER_LEN], body: &[u8]) -> bool {
        let mut crc = crc32c::crc32c(&header[12..]);
        crc = crc32c::crc32c_append(crc, body);
        crc == self.crc
    }

    /// Splits a checked body into records (offsets relative to the body).
    pub fn records(&self, body: &[u8]) -> Result<Vec<(usize, u32)>, &'static str> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut p = 0usize;
        for _ in 0..self.count {
            if p + 4 > body.len() {
                return Err("record length runs past the frame");
            }
            let len = u32_at(body, p);
            p += 4;
            if (len as usize) < MIN_RECORD || p + len as usize > body.len() {
                return Err("record runs past the frame");
            }
            out.push((p, len));
            p += len as usize;
        }
        if p != body.len() {
            return Err("trailing bytes in frame");
        }
        Ok(out)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = SegmentHeader {
            first_index: 41,
            period_start: 1_700_000_000_000_000,
            class: "mss".into(),
            hold: true,
            version: FORMAT,
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(h));
        let mut bad = bytes;
        bad[9] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
    }

    #[test]
    fn frame_round_trip() {
        let mut w = FrameWriter::new();
        w.begin(7, 99, 64);
        for fill in [1u8, 2] {
            let at = w.open_record();
            w.buf.extend_from_slice(&[fill; MIN_RECORD + 2]);
            w.close_record(at);
        }
        w.finish();
        let mut hdr = [0u8; FRAME_HEADER_LEN];
        hdr.copy_from_slice(&w.buf[..FRAME_HEADER_LEN]);
        let fh = FrameHeader::decode(&hdr).expect("header");
        let body = &w.buf[FRAME_HEADER_LEN..];
        assert!(fh.check(&hdr, body));
        assert_eq!((fh.count, fh.first_index, fh.received_at), (2, 7, 99));
        let recs = fh.records(body).expect("records");
        assert_eq!(recs[1].1 as usize, MIN_RECORD + 2);
        assert_eq!(body[recs[1].0], 2);
        let mut flipped = body.to_vec();
        flipped[20] ^= 0x40;
        assert!(!fh.check(&hdr, &flipped));
    }
}
