//! The content guard's rules: names that mean message content, and request
//! text that carries a literal.
//!
//! The schema has no place for content, so any such field is already refused
//! as unknown; these rules exist to refuse it *anywhere* (even inside an
//! unknown object) with a message that says why.

/// If a field name means message content, the kind of content it names.
/// Names are compared lowercased, with `_`, `-`, `.` and spaces removed and
/// accents folded, so `Piece-Jointe`, `mail_body` and `bodyHtml` all match.
pub fn content_field_reason(name: &str) -> Option<&'static str> {
    // Fast path: the schema's own field names are never content.
    if SCHEMA_FIELDS.contains(&name) {
        return None;
    }
    let norm = normalise(name);
    const CONTAINS: &[(&str, &str)] = &[
        ("body", "message body"),
        ("corps", "message body"),
        ("contenu", "message content"),
        ("content", "message content"),
        ("subject", "subject line"),
        ("objet", "subject line"),
        ("sujet", "subject line"),
        ("attachment", "attachment"),
        ("piecejointe", "attachment"),
        ("piecesjointes", "attachment"),
        ("payload", "message content"),
        ("rawmessage", "message content"),
        ("html", "message content"),
    ];
    const EQUALS: &[(&str, &str)] = &[
        ("message", "message content"),
        ("pj", "attachment"),
        ("pjs", "attachment"),
        ("data", "message content"),
        ("raw", "message content"),
        ("mime", "message content"),
        ("texte", "message content"),
        ("eml", "message content"),
        ("literal", "message content"),
    ];
    for (needle, what) in CONTAINS {
        if norm.contains(needle) {
            return Some(what);
        }
    }
    EQUALS.iter().find(|(n, _)| *n == norm).map(|(_, w)| *w)
}

/// Every field name of the trace schema (all levels).
const SCHEMA_FIELDS: &[&str] = &[
    "action",
    "actor",
    "auth",
    "class",
    "destination",
    "document",
    "folder",
    "host",
    "id",
    "id_type",
    "ip",
    "mailbox",
    "message_id",
    "occurred_at",
    "outcome",
    "patient",
    "recipients",
    "request",
    "resource",
    "response",
    "session",
    "size",
    "software",
    "source",
    "status",
    "system",
    "target",
    "text",
    "uids",
];

/// True when request text carries a literal: an IMAP literal marker
/// (`{123}`, `{123+}`, `~{123}`) or more than one line. Summaries write
/// literals as `{123 bytes}`, which is allowed.
pub fn request_literal(s: &str) -> bool {
    if s.contains(['\r', '\n']) {
        return true;
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 1 {
                if j < b.len() && b[j] == b'+' {
                    j += 1;
                }
                if j < b.len() && b[j] == b'}' {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

fn normalise(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = match c {
            'à' | 'â' | 'ä' | 'À' | 'Â' | 'Ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
            'î' | 'ï' | 'Î' | 'Ï' => 'i',
            'ô' | 'ö' | 'Ô' | 'Ö' => 'o',
            'ù' | 'û' | 'ü' | 'Ù' | 'Û' | 'Ü' => 'u',
            'ç' | 'Ç' => 'c',
            '_' | '-' | '.' | ' ' => continue,
            c => c.to_ascii_lowercase(),
        };
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_names() {
        for name in [
            "body",
            "Body",
            "mail_body",
            "bodyHtml",
            "content",
            "contenu",
            "subject",
            "Subject",
            "objet",
            "sujet",
            "attachment",
            "attachments",
            "piece_jointe",
            "pièce-jointe",
            "pieces_jointes",
            "pj",
            "message",
            "html_part",
            "corps",
        ] {
            assert!(content_field_reason(name).is_some(), "{name}");
        }
        for name in [
            "action",
            "actor",
            "id",
            "mailbox",
            "folder",
            "message_id",
            "request",
            "response",
            "text",
            "status",
            "target",
            "document",
            "resource",
            "recipients",
            "size",
            "uids",
            "patient",
            "system",
        ] {
            assert_eq!(content_field_reason(name), None, "{name}");
        }
    }

    #[test]
    fn literals() {
        assert!(request_literal("A1 APPEND INBOX {310}"));
        assert!(request_literal("A1 APPEND INBOX {310+}"));
        assert!(request_literal("A1 APPEND INBOX ~{310}"));
        assert!(request_literal("A1 LOGIN a b\r\nA2 x"));
        assert!(request_literal("DATA\nSubject: hi"));
        assert!(!request_literal("A1 APPEND INBOX {310 bytes}"));
        assert!(!request_literal("UID STORE 42 +FLAGS (\\Deleted)"));
        assert!(!request_literal("A1 SEARCH {}"));
        assert!(!request_literal("{"));
    }
}
