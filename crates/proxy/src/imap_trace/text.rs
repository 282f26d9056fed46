//! Small text helpers for the traces: strings the content guard accepts
//! (no control character, bounded, no IMAP literal marker in a request), UID
//! sets, modified UTF-7 mailbox names, the RFC 3339 local timestamp.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::imap::{ResponseCode, SequenceSet};
// Shared with the SMTP tracer; named here for this module's users and tests.
pub(super) use crate::trace_common::{clean, defang_literals, rfc3339_millis};

/// At most this many numbers are expanded from a sequence set.
pub(super) const MAX_EXPANDED: usize = 10_000;

/// A sorted, deduplicated UID list as a compact set: `1:3,7`.
pub(super) fn compress(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// A UID set cut to at most `max` bytes at a comma, `,…` marking the cut.
pub(super) fn bound_set(set: &str, max: usize) -> String {
    if set.len() <= max {
        return set.to_owned();
    }
    let room = max.saturating_sub(",…".len());
    let cut = set[..room].rfind(',').unwrap_or(0);
    format!("{},…", &set[..cut])
}

/// Every number of a set, when it has no `*`, no `$` and at most
/// [`MAX_EXPANDED`] numbers.
pub(super) fn expand(set: &SequenceSet) -> Option<Vec<u32>> {
    if set.as_str() == "$" {
        return None;
    }
    let mut out = Vec::new();
    for (low, high) in set.ranges() {
        let (low, high) = (low?, high?);
        let (low, high) = (low.min(high), low.max(high));
        if (high - low) as usize >= MAX_EXPANDED.saturating_sub(out.len()) {
            return None;
        }
        out.extend(low..=high);
    }
    Some(out)
}

/// Whether `uid` is in `set` (`*` taken as the largest UID).
pub(super) fn contains(set: &SequenceSet, uid: u32) -> bool {
    set.ranges().any(|(low, high)| {
        let low = low.unwrap_or(u32::MAX);
        let high = high.unwrap_or(u32::MAX);
        (low.min(high)..=low.max(high)).contains(&uid)
    })
}

/// A response code as the server wrote it (a capability list abbreviated).
pub(super) fn render_code(code: &ResponseCode) -> String {
    match code {
        ResponseCode::Capability(_) => "[CAPABILITY …]".to_owned(),
        ResponseCode::CopyUid {
            uid_validity,
            source,
            destination,
        } => format!("[COPYUID {uid_validity} {source} {destination}]"),
        ResponseCode::AppendUid { uid_validity, uids } => {
            format!("[APPENDUID {uid_validity} {uids}]")
        }
        ResponseCode::UidNext(n) => format!("[UIDNEXT {n}]"),
        ResponseCode::UidValidity(n) => format!("[UIDVALIDITY {n}]"),
        ResponseCode::Other { name } => format!("[{name}]"),
    }
}

const MUTF7: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// A mailbox name as people read it: modified UTF-7 (RFC 3501 §5.1.3)
/// decoded, `INBOX` in any case written `INBOX`. A name that is not valid
/// modified UTF-7 (a UTF8=ACCEPT client's UTF-8, say) is kept as sent.
pub(super) fn mailbox_name(wire: &str) -> String {
    if wire.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    decode_mutf7(wire).unwrap_or_else(|| wire.to_owned())
}

fn decode_mutf7(wire: &str) -> Option<String> {
    let mut out = String::with_capacity(wire.len());
    let mut rest = wire;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = MUTF7.decode(encoded).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> SequenceSet {
        SequenceSet::parse(s).expect("valid")
    }

    #[test]
    fn clean_removes_controls_and_bounds() {
        assert_eq!(clean("a\tb\r\nc\u{7f}", 100), "a b  c ");
        assert_eq!(clean("éééé", 6), "é…");
        assert!(clean(&"x".repeat(2000), 1024).len() <= 1024);
    }

    #[test]
    fn literal_markers_are_broken_placeholders_kept() {
        assert_eq!(
            defang_literals("SELECT \"a{5}\" {3+} {12 bytes}"),
            "SELECT \"a{ 5}\" { 3+} {12 bytes}"
        );
        for s in ["x {1}", "{22+}", "~{3}", "{1}{2}"] {
            assert!(!registre_model::request_literal(&defang_literals(s)), "{s}");
        }
    }

    #[test]
    fn uid_sets() {
        assert_eq!(compress(&[7, 1, 2, 3, 3, 9, 10]), "1:3,7,9:10");
        assert_eq!(compress(&[]), "");
        assert_eq!(expand(&set("3,5:7")), Some(vec![3, 5, 6, 7]));
        assert_eq!(expand(&set("1:*")), None);
        assert_eq!(expand(&set("1:4000000000")), None);
        assert!(contains(&set("1:3,9:*"), 10) && !contains(&set("1:3"), 4));
        let long = compress(&(1..2000).step_by(2).collect::<Vec<_>>());
        let bounded = bound_set(&long, 1024);
        assert!(bounded.len() <= 1024 && bounded.ends_with(",…"));
    }

    #[test]
    fn mailbox_names() {
        assert_eq!(mailbox_name("inbox"), "INBOX");
        assert_eq!(
            mailbox_name("&AMk-l&AOk-ments envoy&AOk-s"),
            "Éléments envoyés"
        );
        assert_eq!(mailbox_name("A&-B"), "A&B");
        assert_eq!(mailbox_name("bad&@@@-"), "bad&@@@-");
        assert_eq!(mailbox_name("Corbeille"), "Corbeille");
    }

    #[test]
    fn timestamp_format() {
        let tz = jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(1));
        let ts: jiff::Timestamp = "2026-11-28T14:42:07.123456Z".parse().expect("valid");
        assert_eq!(
            rfc3339_millis(&ts.to_zoned(tz)),
            "2026-11-28T15:42:07.123+01:00"
        );
        let tz = jiff::tz::TimeZone::fixed(
            jiff::tz::Offset::from_seconds(-(3 * 3600 + 1800)).expect("ok"),
        );
        assert_eq!(
            rfc3339_millis(&ts.to_zoned(tz)),
            "2026-11-28T11:12:07.123-03:30"
        );
    }
}
