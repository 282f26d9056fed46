#!/usr/bin/env python3
"""An independent reader of a registre data directory (docs/format.md, appendix A).

    python3 read_journal.py DATA_DIR [MASTER_KEY_FILE] [--vkey KEY]... [--quiet]

Written from docs/format.md alone, never from registre's code, so that it can
disagree with it. It reads a stopped data directory (or a copy) read-only and
checks, for every log (= class) of DATA_DIR/logs/:

- the master key against keys/master.id (§14.1), every key file it needs
  (§14.2) and the sealed legal holds (§14.4);
- the purge history `purged` (§15.1): CRC and MAC of every record, the purged
  range and the live hold segments; a live hold segment must exist;
- every segment: header (magic, CRC32C, class, kind, first index, §2.1),
  every frame (magic, length, CRC32C, count, index continuity, synced_upto,
  §2.2), every record opened with AES-256-GCM under its segment's data key
  and the record aad of its log and index (§2.3), its plaintext a stored
  trace in canonical JSON (§3) at its own log and index, with the frame's
  reception time and a UUIDv7 of it; indexes dense from the purged range to
  the end of the log; a torn tail of the newest segment told from damage as
  registre does (§5.2); held traces matched by a hold of holds.sealed;
- `entries` (§11.1): the commitment SHA-256(plaintext) of every record read
  (§10), no commitment beyond the last trace, none missing below the latest
  checkpoint;
- `checkpoints` (§11.3, §12): record CRCs, the note's origin, size and root,
  its Ed25519 signature by the journal's key (keys/checkpoint.key, or the
  --vkey keys), sizes never decreasing, and each root equal to the RFC 6962
  Merkle root recomputed from `entries` at that size (§10);
- the tiles (§11.2), one file per level `tiles-<L>` (or the `tiles` file of
  integrity files 1): record CRCs and places, every hash equal to the node
  recomputed from `entries`, and every full tile under the latest checkpoint
  present.

Standard output: every trace read, one JSON line each, its stored members in
stored order followed by "salt" (as the HTTP API shows it, §9.1), unless
--quiet. Standard error: what was read ("# ..."), what a crash can leave and
the next start repairs ("note: ..."), failures ("FAIL <where>: <what>"), one
summary line per log ("log <class>: <n> traces ...") and a last line
("OK: ..." or "FAILED: ..."). Exit status: 0 when nothing failed, 1 when
anything did, 2 when the reader cannot run (arguments, missing package).

Needs Python 3.8+ and the `cryptography` package (AES-256-GCM, Ed25519):
`pip install cryptography` or the distribution's `python3-cryptography`.

Layout of this file: generic helpers (CRC32C, reporting, keys, purge history,
holds), then the segment formats, found by their magic in SEGMENT_FORMATS
(format 2 is the `format2_*` functions; a later format goes beside them with
its own functions and entry), then the integrity files (`entries`,
`checkpoints` and the tiles: `integrity1_*` functions for integrity files 1,
`integrity2_tile_records` for the per-level tile files of integrity files 2,
and the layout-independent `check_tiles` and `MerkleTree`),
then the per-log walk and main().
"""

import argparse
import base64
import collections
import hashlib
import hmac
import json
import mmap
import os
import re
import struct
import sys

try:
    from cryptography.exceptions import InvalidSignature, InvalidTag
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
except ImportError:
    sys.stderr.write(
        "read_journal.py needs the `cryptography` package "
        "(pip install cryptography, or apt-get install python3-cryptography)\n"
    )
    sys.exit(2)


# ---------------------------------------------------------------------------
# Generic helpers

def _crc32c_table():
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
        table.append(n)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), §4. `crc32c(b, crc32c(a)) == crc32c(a + b)`."""
    table = CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC32C self-test"


def sha256(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


class Findings:
    """Failures, notes and progress, all on standard error."""

    def __init__(self):
        self.failures = 0
        self.notes = 0

    def fail(self, where, what):
        self.failures += 1
        print(f"FAIL {where}: {what}", file=sys.stderr, flush=True)

    def note(self, where, what):
        self.notes += 1
        print(f"note: {where}: {what}", file=sys.stderr, flush=True)

    @staticmethod
    def info(text):
        print(f"# {text}", file=sys.stderr, flush=True)


class Stop(Exception):
    """Nothing more can be read (e.g. the master key is not this journal's)."""


def read_file(path):
    """The bytes of `path`, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def map_file(path):
    """A read-only view of a (possibly large) file's bytes."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def micros_to_rfc3339(us):
    """§3.2: `YYYY-MM-DDTHH:MM:SS.ffffffZ`, UTC, exactly 6 fractional digits."""
    days, rest = divmod(us, 86_400_000_000)
    secs, frac = divmod(rest, 1_000_000)
    y, m, d = civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (
        y, m, d, secs // 3600, secs // 60 % 60, secs % 60, frac)


def civil_from_days(z):
    """Proleptic Gregorian date of day `z` since 1970-01-01 (H. Hinnant)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)$")


def rfc3339_to_micros(text):
    """An RFC 3339 date-time with an offset, as µs since the epoch (UTC)."""
    m = RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 date-time: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = int((m.group(7) or ".0")[1:7].ljust(6, "0"))
    off = 0
    if m.group(8) not in ("Z", "z"):
        sign = -1 if m.group(8)[0] == "-" else 1
        off = sign * (int(m.group(8)[1:3]) * 3600 + int(m.group(8)[4:6]) * 60)
    secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - off
    return secs * 1_000_000 + frac


# ---------------------------------------------------------------------------
# Keys (§14): the master key, key files, sealed blobs

KEY_ID_PREFIX = b"registre master key id v1\0"
KEY_FILE_MAGIC = b"RGKEY\0\0\x01"
KEY_WRAP_AAD = b"registre key wrap v1\0"
BLOB_MAGIC = b"RGBLB\0\0\x01"


def parse_master_key(raw):
    """§14.1: 64 hex digits (`#` lines and whitespace ignored), or 32 raw bytes."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if len(raw) == 32:
            return raw
        raise ValueError("neither 64 hexadecimal digits nor 32 raw bytes")
    digits = "".join("".join(line.split()) for line in text.splitlines()
                     if not line.lstrip().startswith("#"))
    if not re.fullmatch(r"[0-9a-fA-F]{64}", digits):
        raise ValueError("expected 64 hexadecimal digits")
    return bytes.fromhex(digits)


def master_key_id(master):
    return sha256(KEY_ID_PREFIX, master)[:8]


class KeyRing:
    """The master key and the key files of keys/data/ it unwraps (§14.2)."""

    def __init__(self, data, master):
        self.data = data
        self.master = master
        self.mid = master_key_id(master)
        self.aead = AESGCM(master)

    def unwrap(self, log, stem):
        """(data key, index key) of keys/data/<log>/<stem>.key; ValueError says why not."""
        path = os.path.join(self.data, "keys", "data", log, stem + ".key")
        kf = read_file(path)
        if kf is None:
            raise ValueError(f"keys/data/{log}/{stem}.key is missing")
        if kf[:8] != KEY_FILE_MAGIC:
            raise ValueError(f"keys/data/{log}/{stem}.key is destroyed or not a registre key file")
        if len(kf) != 108:
            raise ValueError(f"keys/data/{log}/{stem}.key has {len(kf)} bytes, not 108")
        if kf[8:16] != self.mid:
            raise ValueError(
                f"keys/data/{log}/{stem}.key is wrapped by another master key "
                f"(id {kf[8:16].hex()}): an interrupted rotation, or another journal's file")
        aad = KEY_WRAP_AAD + self.mid + f"{log}/{stem}".encode()
        try:
            keys = self.aead.decrypt(kf[16:28], kf[28:], aad)
        except InvalidTag:
            raise ValueError(
                f"keys/data/{log}/{stem}.key does not open with the master key "
                "(altered, or renamed or copied from another segment)") from None
        return keys[:32], keys[32:]

    def open_blob(self, blob, label):
        """§14.4: a sealed blob (holds.sealed) with its label."""
        if len(blob) < 44 or blob[:8] != BLOB_MAGIC:
            raise ValueError("not a sealed blob (magic RGBLB 1 expected)")
        if blob[8:16] != self.mid:
            raise ValueError(f"sealed by another master key (id {blob[8:16].hex()})")
        try:
            return self.aead.decrypt(blob[16:28], blob[28:], KEY_WRAP_AAD + self.mid + label)
        except InvalidTag:
            raise ValueError("does not open with the master key (altered)") from None


def load_master_key(data, key_file, findings):
    path = key_file or os.path.join(data, "keys", "master.key")
    raw = read_file(path)
    if raw is None:
        raise Stop(f"the master key file {path} does not exist")
    try:
        master = parse_master_key(raw)
    except ValueError as e:
        raise Stop(f"the master key file {path}: {e}")
    mid = master_key_id(master)
    stored = read_file(os.path.join(data, "keys", "master.id"))
    if stored is None:
        findings.note("keys/master.id", "absent: the master key is checked by the key files it must open")
    elif stored.decode("ascii", "replace").strip() != mid.hex():
        raise Stop(
            f"the master key of {path} (id {mid.hex()}) is not the key of this data directory "
            f"(keys/master.id: {stored.decode('ascii', 'replace').strip()})")
    if os.path.exists(os.path.join(data, "keys", "master.key.next")):
        findings.note("keys/master.key.next", "a master key rotation was interrupted (§14.3)")
    Findings.info(f"master key id {mid.hex()}")
    return KeyRing(data, master)


# ---------------------------------------------------------------------------
# Legal holds (§14.4, §15.2)

HOLD_FILTER_MEMBERS = {"class", "actor", "patient", "mailbox", "action", "since", "until"}


def load_holds(ring, findings):
    """The holds of holds.sealed (a list, possibly empty), or None if unreadable."""
    blob = read_file(os.path.join(ring.data, "holds.sealed"))
    if blob is None:
        return []
    try:
        holds = json.loads(ring.open_blob(blob, b"registre holds v1"))
        if not isinstance(holds, list) or not all(isinstance(h, dict) for h in holds):
            raise ValueError("the plaintext is not a JSON array of holds")
    except ValueError as e:
        findings.fail("holds.sealed", str(e))
        return None
    active = sum(1 for h in holds if "released_at" not in h)
    Findings.info(f"holds.sealed: {len(holds)} holds ({active} active)")
    return holds


def hold_matches(hold, trace, received_at):
    """§15.3 step 4: class, actor, mailbox, patient, action, since/until."""
    f = hold.get("filter") or {}
    if set(f) - HOLD_FILTER_MEMBERS:
        raise ValueError(f"hold {hold.get('id')} has unknown filter members {sorted(set(f) - HOLD_FILTER_MEMBERS)}")
    target = trace.get("target") or {}
    checks = {
        "class": trace.get("class"),
        "actor": (trace.get("actor") or {}).get("id"),
        "patient": (target.get("patient") or {}).get("id"),
        "action": trace.get("action"),
    }
    for member, value in checks.items():
        if member in f and f[member] != value:
            return False
    if "mailbox" in f:
        mailbox = target.get("mailbox")
        if mailbox is None or ascii_lower(mailbox) != ascii_lower(f["mailbox"]):
            return False
    if "since" in f and received_at < rfc3339_to_micros(f["since"]):
        return False
    if "until" in f and received_at >= rfc3339_to_micros(f["until"]):
        return False
    return True


def ascii_lower(s):
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in s)


# ---------------------------------------------------------------------------
# Purge history (§15.1)

PURGE_MAGIC = b"RGPG"
PURGE_RECORD_LEN = 64
PURGE_MAC_PREFIX = b"registre mac v1\0"
PurgeRecord = collections.namedtuple(
    "PurgeRecord", "offset first end at dropped new_hold old_hold")


class PurgeHistory:
    def __init__(self):
        self.records = []
        self.purged_upto = 0
        self.live_holds = set()
        self.authenticated = 0
        self.trusted = True     # False when a record or the history key does not authenticate


def read_purge_history(ring, log, log_dir, findings):
    where = f"logs/{log}/purged"
    hist = read_file(os.path.join(log_dir, "purged"))
    h = PurgeHistory()
    if hist is None:
        findings.fail(where, "missing (created empty when the log opens)")
        return h
    if not hist:
        return h
    try:
        mac_key = ring.unwrap(log, "purged")[1]      # the index-key half is the history key
    except ValueError as e:
        findings.fail(where, f"the purge history cannot be authenticated: {e}; "
                             "the segments it calls purged are checked as missing")
        mac_key = None
    forged = 0
    for p in range(0, len(hist), PURGE_RECORD_LEN):
        r = hist[p:p + PURGE_RECORD_LEN]
        if (len(r) < PURGE_RECORD_LEN or r[:4] != PURGE_MAGIC
                or crc32c(r[:60]) != struct.unpack_from("<I", r, 60)[0]):
            if p + PURGE_RECORD_LEN >= len(hist):
                findings.note(where, f"a torn last record at byte {p} (the next append overwrites it)")
            else:
                findings.fail(where, f"byte {p}: a damaged record with {len(hist) - p - PURGE_RECORD_LEN} "
                                     "bytes after it (only the last record can be torn)")
            break
        if mac_key is not None:
            mac = hmac.new(mac_key, PURGE_MAC_PREFIX + r[:44], hashlib.sha256).digest()[:16]
            if hmac.compare_digest(mac, r[44:60]):
                h.authenticated += 1
            else:
                forged += 1
                findings.fail(where, f"byte {p}: the purge record does not authenticate "
                                     "with the log's history key (forged or altered)")
        h.records.append(PurgeRecord(p, *struct.unpack_from("<QQqQII", r, 4)))
    if mac_key is None or forged:
        h.purged_upto = 0    # an unauthenticated history excuses nothing
        h.trusted = False
    else:
        h.purged_upto = max([r.end for r in h.records if r.old_hold == 0], default=0)
    h.live_holds = ({r.new_hold for r in h.records if r.new_hold}
                    - {r.old_hold for r in h.records if r.old_hold})
    return h


# ---------------------------------------------------------------------------
# Segment formats, found by the segment magic (§2.1).
#
# Each entry gives: `header(buf)` -> SegmentHeader (ValueError if invalid);
# `frame_at(buf, pos)` -> Frame (BadFrame if none starts there);
# `next_intact_frame(buf, start)` -> the first Frame at or after `start`, or
# None; `open_record(data_key, log, index, sealed)` -> the record's
# plaintext (salt ‖ JCS), InvalidTag if it does not open. Everything after
# (the trace, its commitment, the indexes) is format-independent.

SegmentHeader = collections.namedtuple(
    "SegmentHeader", "format first_index period_start log kind length")
Frame = collections.namedtuple(
    "Frame", "offset end count first_index received_at synced_upto records")
KIND_LOG, KIND_HOLD = 0, 1


class BadFrame(Exception):
    """No valid frame at this offset. `checksummed`: its CRC matched, so it is
    never a torn write (§5.2 step 3)."""

    def __init__(self, reason, checksummed=False):
        super().__init__(reason)
        self.checksummed = checksummed


# --- segment format 2 (sealed records, hold segments) with frame format 1

FORMAT2_MAGIC = b"RGSEG\0\0\x02"
FORMAT2_HEADER_LEN = 64
FORMAT2_FRAME_MAGIC = b"RGFR"
FORMAT2_FRAME_HEADER_LEN = 40
FORMAT2_MAX_BODY = 16 * 1024 * 1024
FORMAT2_RECORD_AAD = b"registre record v1\0"
FORMAT2_MIN_RECORD = 12 + 16 + 16        # nonce, salt, tag


def format2_header(buf):
    """§2.1: the 64-byte header of a format-2 segment."""
    if len(buf) < FORMAT2_HEADER_LEN:
        raise ValueError(f"file of {len(buf)} bytes, shorter than a segment header")
    h = bytes(buf[:FORMAT2_HEADER_LEN])
    if crc32c(h[:60]) != struct.unpack_from("<I", h, 60)[0]:
        raise ValueError("segment header checksum mismatch")
    first, period = struct.unpack_from("<Qq", h, 8)
    name_len, kind = h[24], h[57]
    if not 1 <= name_len <= 32:
        raise ValueError(f"class name length {name_len}")
    if any(h[25 + name_len:57]) or any(h[58:60]):
        raise ValueError("non-zero padding or reserved bytes")
    try:
        log = h[25:25 + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("class name is not UTF-8") from None
    if kind not in (KIND_LOG, KIND_HOLD):
        raise ValueError(f"unknown segment kind {kind} in segment header")
    return SegmentHeader("segment format 2", first, period, log, kind, FORMAT2_HEADER_LEN)


def format2_frame_at(buf, pos):
    """§2.2: the frame at `pos`, with its records as (index, sealed bytes)."""
    end_of_file = len(buf)
    if end_of_file - pos < FORMAT2_FRAME_HEADER_LEN:
        raise BadFrame(f"{end_of_file - pos} bytes left, fewer than a frame header")
    fh = bytes(buf[pos:pos + FORMAT2_FRAME_HEADER_LEN])
    if fh[:4] != FORMAT2_FRAME_MAGIC:
        raise BadFrame("no frame magic")
    body_len, crc, count, first, received_at, synced_upto = struct.unpack_from("<IIIQqQ", fh, 4)
    if body_len > FORMAT2_MAX_BODY:
        raise BadFrame(f"body length {body_len} above 16 MiB")
    if count == 0:
        raise BadFrame("a frame of 0 records")
    end = pos + FORMAT2_FRAME_HEADER_LEN + body_len
    if end > end_of_file:
        raise BadFrame(f"the body ({body_len} bytes) runs past the end of the file")
    body = buf[pos + FORMAT2_FRAME_HEADER_LEN:end]
    if crc32c(body, crc32c(fh[12:])) != crc:
        raise BadFrame(f"frame checksum mismatch (it claims indexes {first}..{first + count})")
    records, p = [], 0
    for i in range(count):
        if p + 4 > body_len:
            raise BadFrame(f"checksummed, but its body holds fewer than {count} records", True)
        (rlen,) = struct.unpack_from("<I", body, p)
        if rlen < FORMAT2_MIN_RECORD or p + 4 + rlen > body_len:
            raise BadFrame(f"checksummed, but record {i} has an impossible length {rlen}", True)
        records.append((first + i, bytes(body[p + 4:p + 4 + rlen])))
        p += 4 + rlen
    if p != body_len:
        raise BadFrame(f"checksummed, but {body_len - p} bytes follow its {count} records", True)
    return Frame(pos, end, count, first, received_at, synced_upto, records)


def format2_next_intact_frame(buf, start):
    """§5.2: the first intact frame (magic, header, body, CRC) at any byte offset ≥ start."""
    pos = start
    while True:
        pos = buf.find(FORMAT2_FRAME_MAGIC, pos)
        if pos < 0:
            return None
        try:
            return format2_frame_at(buf, pos)
        except BadFrame:
            pos += 1


def format2_open_record(data_key, log, index, sealed):
    """§2.3: nonce ‖ ciphertext ‖ tag under the segment's data key and the 64-byte aad."""
    aad = (FORMAT2_RECORD_AAD + log.encode().ljust(32, b"\0")
           + struct.pack("<Q", index) + bytes(5))
    return AESGCM(data_key).decrypt(sealed[:12], sealed[12:], aad)


# --- segment format 3: format 2 with each record's JCS compressed (zstd, with
# the record dictionary named in header byte 58: 1 = records-v1.zdict, which
# ships in the repository beside the store's code, §2.3)

FORMAT3_MAGIC = b"RGSEG\0\0\x03"
FORMAT3_DICTIONARIES = {1: "records-v1.zdict"}
DICTIONARY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "..", "..", "crates", "store", "src", "embedded")
MAX_JCS = 1 << 20
_decompressors = {}


def format3_header(buf):
    """§2.1: as format 2, byte 58 names the record dictionary."""
    if len(buf) < FORMAT2_HEADER_LEN:
        raise ValueError(f"file of {len(buf)} bytes, shorter than a segment header")
    h = bytearray(buf[:FORMAT2_HEADER_LEN])
    dictionary = h[58]
    if dictionary not in FORMAT3_DICTIONARIES:
        raise ValueError(f"unknown record dictionary {dictionary}")
    if crc32c(bytes(h[:60])) != struct.unpack_from("<I", h, 60)[0]:
        raise ValueError("segment header checksum mismatch")
    # The rest is format 2's header: check it with byte 58 as format 2 has it.
    h[58] = 0
    h[0:8] = FORMAT2_MAGIC
    struct.pack_into("<I", h, 60, crc32c(bytes(h[:60])))
    hd = format2_header(h)
    return hd._replace(format="segment format 3")


def format3_open_record(data_key, log, index, sealed, dictionary=1):
    """§2.3: format 2's record; its plaintext is salt ‖ zstd(JCS), returned as salt ‖ JCS."""
    packed = format2_open_record(data_key, log, index, sealed)
    d = _decompressors.get(dictionary)
    if d is None:
        try:
            import zstandard
        except ImportError:
            raise ValueError("format-3 records need Python's zstandard (pip install zstandard)") from None
        with open(os.path.join(DICTIONARY_DIR, FORMAT3_DICTIONARIES[dictionary]), "rb") as f:
            d = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(f.read()))
        _decompressors[dictionary] = d
    jcs = d.decompress(packed[SALT_LEN:], max_output_size=MAX_JCS)
    return packed[:SALT_LEN] + jcs


SegmentFormat = collections.namedtuple(
    "SegmentFormat", "name header frame_at next_intact_frame open_record")
SEGMENT_FORMATS = {
    FORMAT2_MAGIC: SegmentFormat("segment format 2", format2_header, format2_frame_at,
                                 format2_next_intact_frame, format2_open_record),
    FORMAT3_MAGIC: SegmentFormat("segment format 3", format3_header, format2_frame_at,
                                 format2_next_intact_frame, format3_open_record),
}
REFUSED_MAGICS = {
    b"RGSEG\0\0\x01": "segment written by an unencrypted development build (format 1); "
                      "not readable by this version",
}


def segment_format(buf):
    magic = bytes(buf[:8])
    fmt = SEGMENT_FORMATS.get(magic)
    if fmt is not None:
        return fmt
    if magic in REFUSED_MAGICS:
        raise ValueError(REFUSED_MAGICS[magic])
    if magic[:5] == b"RGSEG":
        raise ValueError(f"unknown segment format version {magic[7]} (a newer registre?)")
    raise ValueError("not a registre segment (no RGSEG magic)")


# ---------------------------------------------------------------------------
# Traces (§3), format-independent

SALT_LEN = 16
UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def no_float(text):
    raise ValueError(f"number {text} is not an integer")


def decode_trace(plaintext, log, index, received_at):
    """The stored trace of a record's plaintext; ValueError names the rule broken."""
    if len(plaintext) <= SALT_LEN:
        raise ValueError("the plaintext is shorter than a salt")
    text = plaintext[SALT_LEN:].decode("utf-8")
    trace = json.loads(text, parse_float=no_float)
    if not isinstance(trace, dict):
        raise ValueError("the record is not a JSON object")
    if json.dumps(trace, sort_keys=True, separators=(",", ":"), ensure_ascii=False) != text:
        raise ValueError("the record's JSON is not in canonical form (RFC 8785, §3.3)")
    if trace.get("log") != log or type(trace.get("index")) is not int or trace["index"] != index:
        raise ValueError(f"the record says log {trace.get('log')!r} index {trace.get('index')!r}: "
                         "out of place")
    if trace.get("class") != log:
        raise ValueError(f"class {trace.get('class')!r} differs from its log")
    if trace.get("received_at") != micros_to_rfc3339(received_at):
        raise ValueError(f"received_at {trace.get('received_at')!r} differs from its frame's "
                         f"{micros_to_rfc3339(received_at)}")
    tid = trace.get("id")
    if not isinstance(tid, str) or not UUID7.match(tid) or int(tid[:8] + tid[9:13], 16) != received_at // 1000:
        raise ValueError(f"id {tid!r} is not a UUIDv7 of its reception millisecond")
    return trace


# ---------------------------------------------------------------------------
# Integrity files (§10, §11, §12): entries, checkpoints, tiles (layouts 1 and 2)

COMMITMENT_LEN = 32
TILE_RECORD_LEN = 8208
TILE_WIDTH = 256
Checkpoint = collections.namedtuple("Checkpoint", "origin size root")


def leaf_hash(commitment):
    return sha256(b"\x00", commitment)


def node_hash(left, right):
    return sha256(b"\x01", left, right)


class MerkleTree:
    """Every level of the RFC 6962 tree over the commitments of `entries` (§10)."""

    def __init__(self, entries, n):
        level = [leaf_hash(entries[i * COMMITMENT_LEN:(i + 1) * COMMITMENT_LEN]) for i in range(n)]
        self.levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)
        self.size = n

    def node(self, height, index):
        """The root of the perfect subtree of 2^height leaves starting at leaf index·2^height."""
        if height < len(self.levels) and index < len(self.levels[height]):
            return self.levels[height][index]
        return None

    def root(self, size):
        """MTH of the first `size` leaves: the perfect subtrees of `size`'s bits, folded from the right."""
        if size == 0:
            return sha256(b"")
        parts, start = [], 0
        for height in range(size.bit_length() - 1, -1, -1):
            if size >> height & 1:
                parts.append(self.node(height, start >> height))
                start += 1 << height
        acc = parts.pop()
        while parts:
            acc = node_hash(parts.pop(), acc)
        return acc


def integrity1_read_checkpoints(log, log_dir, findings):
    """§11.3: the records of `checkpoints` (CRC checked), oldest first."""
    where = f"logs/{log}/checkpoints"
    buf = read_file(os.path.join(log_dir, "checkpoints"))
    if buf is None:
        findings.fail(where, "missing (created empty when the log opens)")
        return []
    notes, p = [], 0
    while p < len(buf):
        if len(buf) - p < 8:
            findings.note(where, f"a torn last record at byte {p} (the next start drops it)")
            break
        note_len, note_crc = struct.unpack_from("<II", buf, p)
        end = p + 8 + note_len
        if end > len(buf):
            findings.note(where, f"a torn last record at byte {p} (the next start drops it)")
            break
        note = buf[p + 8:end]
        if crc32c(note) != note_crc:
            if end == len(buf):
                findings.note(where, f"a torn last record at byte {p} (the next start drops it)")
            else:
                findings.fail(where, f"byte {p}: checkpoint record checksum mismatch")
            break
        notes.append((p, note))
        p = end
    return notes


def integrity1_parse_note(note, log, trusted):
    """§12.1: (origin, size, root) of a signed checkpoint; ValueError if it does not open."""
    text_end = note.find(b"\n\n")
    if text_end < 0:
        raise ValueError("no blank line between the checkpoint and its signatures")
    text = note[:text_end + 1]
    lines = text.decode("utf-8").split("\n")[:-1]
    if len(lines) < 3:
        raise ValueError("fewer than 3 lines of checkpoint")
    origin, size, root = lines[0], lines[1], lines[2]
    if not origin.endswith(f"/registre/{log}"):
        raise ValueError(f"origin {origin!r} is not <instance>/registre/{log}")
    if not re.fullmatch(r"0|[1-9][0-9]*", size):
        raise ValueError(f"size {size!r} is not a decimal without leading zeros")
    root = base64.b64decode(root, validate=True)
    if len(root) != 32:
        raise ValueError("the root is not 32 bytes")
    if trusted:
        ours = 0
        for line in note[text_end + 2:].decode("utf-8").split("\n"):
            if not line:
                continue
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != "\u2014":
                raise ValueError(f"malformed signature line {line!r}")
            sig = base64.b64decode(parts[2], validate=True)
            for name, key_id, public in trusted:
                if parts[1] == name and sig[:4] == key_id:
                    try:
                        public.verify(sig[4:], text)
                    except InvalidSignature:
                        raise ValueError(f"the signature of {name} does not verify") from None
                    ours += 1
        if not ours:
            raise ValueError("not signed by a trusted key")
    return Checkpoint(origin, int(size), root)


TileRecord = collections.namedtuple("TileRecord", "place data expect tolerant")
TILE_LEVELS = 8


def tile_records(log, log_dir, checkpoint_size, findings):
    """The log's stored tiles, in whichever layout it has (§11.2)."""
    if os.path.exists(os.path.join(log_dir, "tiles")):
        return integrity1_tile_records(log, log_dir, findings)
    return integrity2_tile_records(log, log_dir, checkpoint_size, findings)


def integrity1_tile_records(log, log_dir, findings):
    """Integrity files 1: one `tiles` file, records of every level in issuance order."""
    where = f"logs/{log}/tiles"
    others = sorted(n for n in os.listdir(log_dir) if re.fullmatch(r"tiles-\d+", n))
    if others:
        findings.note(where, f"{', '.join(others)} beside it: a split into per-level files was "
                             "interrupted (the next start does it again from `tiles`)")
    buf = read_file(os.path.join(log_dir, "tiles")) or b""
    whole = len(buf) - len(buf) % TILE_RECORD_LEN
    if whole != len(buf):
        findings.note(where, f"{len(buf) - whole} bytes of a torn last record (the next start drops them)")
    return [TileRecord(f"{where} byte {p}", buf[p:p + TILE_RECORD_LEN], None, False)
            for p in range(0, whole, TILE_RECORD_LEN)]


def integrity2_tile_records(log, log_dir, checkpoint_size, findings):
    """Integrity files 2: `tiles-<L>`, tile N of level L at offset 8208·N. The
    tiles a checkpoint covers were synced before it; the ones after it can be
    unfinished by a crash (the next start recomputes them)."""
    records = []
    for name in sorted(os.listdir(log_dir)):
        m = re.fullmatch(r"tiles-(\d+)", name)
        if m and int(m.group(1)) >= TILE_LEVELS:
            findings.fail(f"logs/{log}/{name}", f"tile level {m.group(1)} is out of range (0..{TILE_LEVELS - 1})")
    for level in range(TILE_LEVELS):
        where = f"logs/{log}/tiles-{level}"
        buf = read_file(os.path.join(log_dir, f"tiles-{level}"))
        if buf is None:
            continue
        covered = checkpoint_size >> (8 * (level + 1))
        whole = len(buf) // TILE_RECORD_LEN
        if whole * TILE_RECORD_LEN != len(buf):
            what = f"{len(buf) - whole * TILE_RECORD_LEN} bytes of a torn last record"
            if whole >= covered:
                findings.note(where, f"{what} (the next start drops them)")
            else:
                findings.fail(where, f"{what}, a tile that checkpoint {checkpoint_size} covers")
        records += [TileRecord(f"{where} byte {n * TILE_RECORD_LEN}",
                               buf[n * TILE_RECORD_LEN:(n + 1) * TILE_RECORD_LEN], (level, n), n >= covered)
                    for n in range(whole)]
    return records


def check_tiles(log, records, tree, size, checkpoint_size, findings):
    """Every stored tile (§11.2) against the tree rebuilt from `entries`, and
    every full tile under the latest checkpoint present; returns how many
    were checked. `size` is the number of traces of the log."""
    seen = set()
    for rec in records:
        r = rec.data
        crash = findings.note if rec.tolerant else findings.fail
        after = (" (a tile written after the latest checkpoint and unfinished by a crash: "
                 "the next start recomputes it)" if rec.tolerant else "")
        if rec.expect is not None and not rec.tolerant:
            seen.add(rec.expect)    # reported here if damaged, not again as missing
        if crc32c(r[:8204]) != struct.unpack_from("<I", r, 8204)[0]:
            crash(rec.place, "tile record checksum mismatch" + after)
            continue
        level, index = r[0], struct.unpack_from("<Q", r, 4)[0]
        if rec.expect is not None and (level, index) != rec.expect:
            crash(rec.place, f"holds tile {level}/{index}, not tile {rec.expect[0]}/{rec.expect[1]}" + after)
            continue
        if any(r[1:4]):
            findings.fail(rec.place, "non-zero reserved bytes")
        for j in range(TILE_WIDTH):
            want = tree.node(8 * level, TILE_WIDTH * index + j)
            if want is None:
                if rec.tolerant and (TILE_WIDTH * index + TILE_WIDTH) << (8 * level) <= size:
                    findings.note(rec.place, f"tile {level}/{index} lies beyond the commitments of entries "
                                             "but within the log (the next start recomputes them)")
                else:
                    findings.fail(rec.place, f"tile {level}/{index} lies beyond the log ({size} traces): "
                                             "the log was truncated")
                break
            if r[12 + 32 * j:44 + 32 * j] != want:
                findings.fail(rec.place, f"tile {level}/{index}, hash {j}, differs from the tree of entries")
                break
        seen.add((level, index))
    # The tiles a checkpoint covers are synced before it is written (§12.4).
    level = 0
    while checkpoint_size >> (8 * (level + 1)):
        for index in range(checkpoint_size >> (8 * (level + 1))):
            if (level, index) not in seen:
                findings.fail(f"logs/{log}", f"tile {level}/{index} is missing, although checkpoint "
                                             f"{checkpoint_size} covers it")
        level += 1
    return len(records)


def load_trusted_keys(data, vkeys, findings):
    """(name, key ID, public key) of every key trusted to sign checkpoints (§12.2, §12.3)."""
    trusted = []
    for vkey in vkeys:
        try:
            name, key_id, key = vkey.strip().split("+", 2)
            key = base64.b64decode(key, validate=True)
            if len(key) != 33 or key[0] != 1 or sha256(name.encode(), b"\n", key)[:4].hex() != key_id:
                raise ValueError("bad key type, length or key ID")
            trusted.append((name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(key[1:])))
        except ValueError as e:
            raise Stop(f"--vkey {vkey!r} is not a verifier key: {e}")
    if trusted:
        return trusted
    path = os.path.join(data, "keys", "checkpoint.key")
    raw = read_file(path)
    if raw is None:
        findings.note("keys/checkpoint.key", "missing, and no --vkey: no checkpoint can be verified "
                                             "(a failure for every log that has one)")
        return []
    lines = raw.decode("utf-8", "replace").split("\n")
    try:
        if len(lines) < 3 or lines[0] != "registre checkpoint key v1" or not lines[1].startswith("name ") \
                or not lines[2].startswith("ed25519 "):
            raise ValueError("malformed")
        seed = base64.b64decode(lines[2][len("ed25519 "):], validate=True)
        if len(seed) != 32:
            raise ValueError("the secret key is not 32 bytes")
    except ValueError as e:
        findings.fail("keys/checkpoint.key", f"{e}: checkpoint signatures cannot be checked")
        return []
    name = lines[1][len("name "):]
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw_public = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = sha256(name.encode(), b"\n\x01", raw_public)[:4]
    vkey = f"{name}+{key_id.hex()}+{base64.b64encode(bytes([1]) + raw_public).decode()}"
    Findings.info(f"checkpoint key {vkey} (from keys/checkpoint.key: "
                  "pass --vkey to trust a key obtained elsewhere)")
    return [(name, key_id, public)]


# ---------------------------------------------------------------------------
# One log

SEGMENT_NAME = re.compile(r"(\d{20})\.seg$")
HOLD_NAME = re.compile(r"hold-(\d{6})\.seg$")
CLASS_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}$")


class LogResult:
    def __init__(self, log):
        self.log = log
        self.traces = self.held = self.frames = self.segments = self.holds = 0
        self.commitments_ok = self.uncommitted = 0
        self.size = 0
        self.checkpoints = self.latest = self.tiles = 0
        self.purge_records = self.purge_macs = self.purged_upto = 0


class SegmentWalk:
    """What one segment contributes: the index after its last record, None
    when damage hid the end of the segment."""

    def __init__(self, end):
        self.end = end


def read_segment(ctx, log, name, path, kind, expected_first, newest, res):
    """Reads one segment; every record goes through `ctx.record`. Returns a SegmentWalk or None."""
    where = f"logs/{log}/{name}"
    buf = map_file(path)
    try:
        return walk_segment(ctx, log, name, where, buf, kind, expected_first, newest, res)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def walk_segment(ctx, log, name, where, buf, kind, expected_first, newest, res):
    f = ctx.findings
    try:
        fmt = segment_format(buf)
        header = fmt.header(buf)
    except ValueError as e:
        if newest and kind == KIND_LOG and len(buf) <= 104:
            f.note(where, f"{e}: a segment half-created by a crash (the next start deletes it)")
            return SegmentWalk(expected_first)
        f.fail(where, f"bad segment header: {e}")
        return None
    if header.log != log:
        f.fail(where, f"the header names log {header.log!r}")
    if header.kind != kind:
        f.fail(where, "not a hold segment of log " + log if kind == KIND_HOLD else "a hold segment's header")
    stem = name[:-4]
    if kind == KIND_LOG and header.first_index != int(stem):
        f.fail(where, f"the header starts at index {header.first_index}, not at its name's")
    try:
        data_key = ctx.ring.unwrap(log, stem)[0]
    except ValueError as e:
        f.fail(where, f"its data key cannot be read: {e}; without it the segment is unreadable")
        return None
    Findings.info(f"{where}: {'hold segment' if kind == KIND_HOLD else 'segment'} ({header.format}) "
                  f"from index {header.first_index}, period start {header.period_start} µs")
    pos, next_index, last_synced, last_index = header.length, header.first_index, 0, -1
    first_record = None
    while pos < len(buf):
        try:
            frame = fmt.frame_at(buf, pos)
        except BadFrame as bad:
            # §5.2: in the newest segment of the log, a bad frame is a torn
            # tail unless an intact frame after it was encoded once these
            # bytes were durable (its synced_upto is beyond them).
            resume = fmt.next_intact_frame(buf, pos + 1)
            proof = resume
            if newest and kind == KIND_LOG and not bad.checksummed:
                while proof is not None and proof.synced_upto <= pos:
                    proof = fmt.next_intact_frame(buf, proof.offset + 1)
                if proof is None:
                    f.note(where, f"offset {pos}: {bad}: a torn tail (never acknowledged), "
                                  f"{len(buf) - pos} bytes the next start truncates")
                    break
            why = (f"; the intact frame at offset {proof.offset} has synced_upto {proof.synced_upto}: "
                   "these bytes were durable, this is damage"
                   if proof is not None and proof.synced_upto > pos else "")
            lost = (f"indexes {next_index}..{resume.first_index}" if resume and kind == KIND_LOG
                    else "the rest of the segment")
            f.fail(where, f"offset {pos}: {bad}{why}; {lost} unreadable")
            if resume is None:
                return SegmentWalk(None)
            pos, next_index = resume.offset, resume.first_index
            continue
        res.frames += 1
        if kind == KIND_LOG:
            if frame.first_index != next_index:
                f.fail(where, f"offset {pos}: the frame starts at index {frame.first_index}, "
                              f"{next_index} expected (indexes must be dense)")
            if not (64 <= frame.synced_upto <= pos) or frame.synced_upto < last_synced:
                f.fail(where, f"offset {pos}: synced_upto {frame.synced_upto} out of bounds "
                              f"(64..{pos}, not below {last_synced})")
            last_synced = frame.synced_upto
        else:
            if frame.count != 1 or frame.first_index <= last_index or frame.synced_upto != 0:
                f.fail(where, f"offset {pos}: a hold segment's frame holds one trace, at an index above "
                              "the previous one, with synced_upto 0")
            if first_record is None:
                first_record = frame.first_index
        if frame.received_at < header.period_start:
            f.fail(where, f"offset {pos}: received_at {frame.received_at} before the segment's period")
        for index, sealed in frame.records:
            ctx.record(log, where, kind, index, frame.received_at, data_key, fmt, sealed, res)
        last_index = frame.first_index + frame.count - 1
        next_index = frame.first_index + frame.count
        pos = frame.end
    if kind == KIND_HOLD and first_record is not None and header.first_index != first_record:
        f.fail(where, f"the header's first index {header.first_index} is not its first record's ({first_record})")
    return SegmentWalk(next_index)


class Context:
    def __init__(self, data, ring, trusted, holds, findings, quiet):
        self.data = data
        self.ring = ring
        self.trusted = trusted
        self.holds = holds
        self.findings = findings
        self.quiet = quiet
        self.entries = b""
        self.n = 0
        self.max_checkpoint = 0
        self.last_time = None

    def record(self, log, where, kind, index, received_at, data_key, fmt, sealed, res):
        f = self.findings
        place = f"{where} index {index}"
        try:
            plain = fmt.open_record(data_key, log, index, sealed)
        except InvalidTag:
            f.fail(place, "the record does not open with its key (altered, or moved from another place)")
            return
        except Exception as e:       # a format-3 record that does not decompress
            f.fail(place, f"the record does not decompress: {e}")
            return
        try:
            trace = decode_trace(plain, log, index, received_at)
        except ValueError as e:      # UnicodeDecodeError and JSONDecodeError included
            f.fail(place, f"not a valid stored trace: {e}")
            return
        if kind == KIND_LOG:
            if self.last_time is not None and received_at < self.last_time:
                f.fail(place, "received_at goes back along the log")
            self.last_time = received_at
        else:
            res.held += 1
            if self.holds is not None:
                self.check_held(trace, received_at, place)
        res.traces += 1
        commitment = self.entries[index * COMMITMENT_LEN:(index + 1) * COMMITMENT_LEN]
        if sha256(plain) == commitment:
            res.commitments_ok += 1
        elif index >= self.n:
            if index < self.max_checkpoint:
                f.fail(place, f"no commitment in entries although checkpoint {self.max_checkpoint} "
                              "covers it (the entries file was truncated)")
            else:
                res.uncommitted += 1
                f.note(place, "no commitment in entries yet (a crash after the last checkpoint; "
                              "the next start recomputes it)")
        elif commitment == bytes(COMMITMENT_LEN) and index >= self.max_checkpoint:
            res.uncommitted += 1
            f.note(place, "an all-zero commitment after the latest checkpoint (the next start recomputes it)")
        else:
            f.fail(place, "the trace does not match its commitment in entries "
                          "(the trace or the entries file was altered)")
        if not self.quiet:
            print(json.dumps(dict(trace, salt=plain[:SALT_LEN].hex()), ensure_ascii=False,
                             separators=(",", ":")))

    def check_held(self, trace, received_at, place):
        """A held trace was kept by a hold, which stays in holds.sealed once released (§14.4)."""
        try:
            if not any(hold_matches(h, trace, received_at) for h in self.holds):
                self.findings.fail(place, "a held trace that no hold of holds.sealed matches")
        except ValueError as e:
            self.findings.fail(place, f"cannot tell which hold keeps it: {e}")


def check_log(ctx, log):
    f = ctx.findings
    log_dir = os.path.join(ctx.data, "logs", log)
    res = LogResult(log)
    if not CLASS_NAME.match(log):
        f.fail(f"logs/{log}", "not a valid class name")
        return res

    entries = read_file(os.path.join(log_dir, "entries"))
    if entries is None:
        f.fail(f"logs/{log}/entries", "missing (created empty when the log opens)")
        entries = b""
    if len(entries) % COMMITMENT_LEN:
        f.fail(f"logs/{log}/entries", f"length {len(entries)} is not a multiple of 32")
    ctx.entries, ctx.n = entries, len(entries) // COMMITMENT_LEN
    ctx.last_time = None

    notes = integrity1_read_checkpoints(log, log_dir, f)
    ctx.max_checkpoint = 0
    for _, note in notes:     # the largest size tells which commitments must be on disk
        m = re.match(rb"[^\n]*\n(0|[1-9][0-9]*)\n", note)
        if m:
            ctx.max_checkpoint = max(ctx.max_checkpoint, int(m.group(1)))

    history = read_purge_history(ctx.ring, log, log_dir, f)
    res.purge_records, res.purge_macs, res.purged_upto = (
        len(history.records), history.authenticated, history.purged_upto)

    names = sorted(os.listdir(log_dir))
    holds, segments = {}, []
    for name in names:
        m = HOLD_NAME.match(name)
        if m:
            holds[int(m.group(1))] = name
        elif SEGMENT_NAME.match(name):
            segments.append(name)
        elif name.endswith(".seg"):
            f.note(f"logs/{log}/{name}", "ignored: not a segment name")

    # Hold segments first (§5.2 step 1): their traces lie below the purged range.
    for gen in sorted(history.live_holds - set(holds)):
        f.fail(f"logs/{log}/hold-{gen:06d}.seg", "missing, although the purge history names it live")
    held = []
    for gen, name in sorted(holds.items()):
        if gen not in history.live_holds:
            f.note(f"logs/{log}/{name}", "no purge record names it live: left by an interrupted purge "
                                         "(the next start removes it), skipped")
            continue
        held.append(name)
    for name in held:
        walk = read_segment(ctx, log, name, os.path.join(log_dir, name), KIND_HOLD, None, False, res)
        res.holds += 1
        if history.trusted and walk and walk.end is not None and walk.end > history.purged_upto:
            f.fail(f"logs/{log}/{name}", f"holds index {walk.end - 1}, above the purged range "
                                         f"(below {history.purged_upto})")

    # Then the segments of the log, in name order; the last one is the newest.
    live = []
    for name in segments:
        if int(name[:20]) < history.purged_upto:
            f.note(f"logs/{log}/{name}", f"below the purged range ({history.purged_upto}): left by an "
                                         "interrupted purge (the next start removes it), skipped")
        else:
            live.append(name)
    expected = history.purged_upto
    ctx.last_time = None
    for i, name in enumerate(live):
        first = int(name[:20])
        if expected is None:
            pass    # the previous segment's end is unknown: its damage is reported
        elif first > expected:
            f.fail(f"logs/{log}", f"indexes {expected}..{first} are missing from the segments "
                                  "(records or whole segments were deleted)")
        elif first < expected:
            f.fail(f"logs/{log}/{name}", f"starts at {first}, inside the previous segment (ends at {expected})")
        walk = read_segment(ctx, log, name, os.path.join(log_dir, name), KIND_LOG, first,
                            i == len(live) - 1, res)
        res.segments += 1
        expected = walk.end if walk else None
    size = expected
    res.size = size if size is not None else ctx.n

    # entries against the log (§11.1, §13.4 step 2).
    if size is not None and ctx.n > size:
        f.fail(f"logs/{log}/entries", f"{ctx.n - size} commitments beyond the last trace ({size}): "
                                      "the log was truncated")
    if ctx.n < history.purged_upto:
        f.fail(f"logs/{log}/entries", f"{ctx.n} commitments, fewer than the purged range ({history.purged_upto})")

    # The tree, the checkpoints and the tiles (§10, §11.2, §11.3, §12).
    tree = MerkleTree(entries, ctx.n)
    previous = 0
    if notes and not ctx.trusted:
        f.fail(f"logs/{log}/checkpoints", f"{len(notes)} checkpoints, and no trusted key to verify them")
    for offset, note in notes:
        where = f"logs/{log}/checkpoints byte {offset}"
        try:
            cp = integrity1_parse_note(note, log, ctx.trusted)
        except (ValueError, UnicodeDecodeError) as e:
            f.fail(where, f"not a valid signed checkpoint: {e}")
            continue
        res.checkpoints += 1
        if cp.size < previous:
            f.fail(where, f"size {cp.size} is smaller than the previous checkpoint's {previous}")
        previous = max(previous, cp.size)
        if cp.size > ctx.n:
            f.fail(where, f"covers {cp.size} traces but entries holds {ctx.n}: truncated behind this checkpoint")
        elif tree.root(cp.size) != cp.root:
            f.fail(where, f"its root differs from the tree of entries at size {cp.size}: history was rewritten")
        else:
            res.latest = max(res.latest, cp.size)
    if size is not None and ctx.max_checkpoint > size:
        f.fail(f"logs/{log}", f"the latest checkpoint covers {ctx.max_checkpoint} traces but the log holds "
                              f"{size}: acknowledged traces are missing")
    covered = min(ctx.max_checkpoint, ctx.n)
    res.tiles = check_tiles(log, tile_records(log, log_dir, covered, f), tree, res.size, covered, f)

    # Key files without a segment (§5.2 step 5b).
    key_dir = os.path.join(ctx.data, "keys", "data", log)
    stems = {n[:-4] for n in names if n.endswith(".seg")}
    for key in sorted(os.listdir(key_dir)) if os.path.isdir(key_dir) else []:
        if key.endswith(".tmp"):
            f.note(f"keys/data/{log}/{key}", "left by an interrupted rotation (the next start removes it)")
        elif key.endswith(".key") and key != "purged.key" and key[:-4] not in stems:
            f.note(f"keys/data/{log}/{key}", "a key file without its segment (the next start shreds it)")
    return res


def main(argv):
    parser = argparse.ArgumentParser(
        description="Read and check a registre data directory without registre (docs/format.md, appendix A).")
    parser.add_argument("data", help="the data directory (stopped server, or a copy)")
    parser.add_argument("master_key_file", nargs="?",
                        help="the master key (default: DATA/keys/master.key)")
    parser.add_argument("--vkey", action="append", default=[],
                        help="a checkpoint verifier key to trust (§12.2), repeatable; "
                             "default: the key of DATA/keys/checkpoint.key")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the traces")
    args = parser.parse_args(argv)

    findings = Findings()
    try:
        if not os.path.isdir(os.path.join(args.data, "logs")):
            raise Stop(f"{args.data} is not a registre data directory (no logs/)")
        ring = load_master_key(args.data, args.master_key_file, findings)
        trusted = load_trusted_keys(args.data, args.vkey, findings)
        holds = load_holds(ring, findings)
        ctx = Context(args.data, ring, trusted, holds, findings, args.quiet)
        results = [check_log(ctx, log) for log in sorted(os.listdir(os.path.join(args.data, "logs")))
                   if os.path.isdir(os.path.join(args.data, "logs", log))]
    except Stop as e:
        findings.fail("stopped", str(e))
        print(f"FAILED: {findings.failures} failure(s)", file=sys.stderr)
        return 1
    except OSError as e:
        findings.fail("stopped", f"cannot read: {e}")
        print(f"FAILED: {findings.failures} failure(s)", file=sys.stderr)
        return 1

    for r in results:
        print(f"log {r.log}: {r.traces} traces ({r.held} held), size {r.size}, "
              f"purged below {r.purged_upto} ({r.purge_records} purge records, {r.purge_macs} MACs OK), "
              f"{r.segments} segments + {r.holds} hold segments, {r.frames} frames, "
              f"{r.commitments_ok} commitments OK, {r.uncommitted} not yet in entries, "
              f"{r.checkpoints} checkpoints (latest verified size {r.latest}), {r.tiles} tiles",
              file=sys.stderr)
    traces = sum(r.traces for r in results)
    ok = sum(r.commitments_ok for r in results)
    print(f"{traces} traces in {len(results)} logs, {ok} commitments OK, "
          f"{sum(r.uncommitted for r in results)} not yet in entries, "
          f"{findings.notes} note(s), {findings.failures} failure(s)", file=sys.stderr)
    if findings.failures:
        print(f"FAILED: {findings.failures} failure(s)", file=sys.stderr)
        return 1
    print("OK: every trace opens at its place and matches its commitment; every checkpoint "
          "is signed and its root matches entries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
