//! The one rewrite the proxy makes: `COMPRESS=DEFLATE` leaves the
//! capability lists (a compressed stream could not be traced).

/// Given one complete server line (CRLF included or not) that advertises
/// capabilities — `* CAPABILITY …`, or a status response with a
/// `[CAPABILITY …]` code (greeting, LOGIN/AUTHENTICATE completion) — returns
/// the same bytes without any `COMPRESS=DEFLATE` (any case); `None` when
/// there is nothing to remove, and the line must then be forwarded as is.
pub fn without_compress_deflate(line: &[u8]) -> Option<Vec<u8>> {
    without_capabilities(line, &["COMPRESS=DEFLATE"])
}

/// Like [`without_compress_deflate`] for any capability names (compared
/// without case): the relay also removes `STARTTLS`, since its clients are
/// already on TLS with the proxy.
pub fn without_capabilities(line: &[u8], remove: &[&str]) -> Option<Vec<u8>> {
    let range = capability_list(line)?;
    let list = &line[range.clone()];
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut removed = false;
    for word in list.split(|&b| b == b' ') {
        if remove
            .iter()
            .any(|r| word.eq_ignore_ascii_case(r.as_bytes()))
        {
            removed = true;
        } else {
            kept.push(word);
        }
    }
    if !removed {
        return None;
    }
    let mut out = Vec::with_capacity(line.len());
    out.extend_from_slice(&line[..range.start]);
    out.extend_from_slice(&kept.join(&b' '));
    out.extend_from_slice(&line[range.end..]);
    Some(out)
}

/// The greeting `line` without its `[CAPABILITY …]` code (`None` when it
/// has none): a greeting read before STARTTLS advertises what the server
/// offers *without* TLS, which the proxy's clients must not cache.
pub fn without_capability_code(line: &[u8]) -> Option<Vec<u8>> {
    let range = capability_list(line)?;
    if line.get(..2) == Some(b"* ") && line.to_ascii_uppercase().starts_with(b"* CAPABILITY ") {
        return None;
    }
    let open = range.start - b"[CAPABILITY ".len();
    let mut close = range.end + 1;
    while line.get(close) == Some(&b' ') {
        close += 1;
    }
    let mut out = line[..open].to_vec();
    out.extend_from_slice(&line[close..]);
    Some(out)
}

/// Byte range of the capability words (after `CAPABILITY `).
fn capability_list(line: &[u8]) -> Option<std::ops::Range<usize>> {
    let upper = line.to_ascii_uppercase();
    let end_of_line = upper
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(upper.len());
    if upper.starts_with(b"* CAPABILITY ") {
        return Some(b"* CAPABILITY ".len()..end_of_line);
    }
    // `tag|* OK|NO|BAD|PREAUTH|BYE [CAPABILITY …] text`
    let mut words = upper.splitn(3, |&b| b == b' ');
    words.next()?;
    words.next()?;
    let rest = words.next()?;
    if !rest.starts_with(b"[CAPABILITY ") {
        return None;
    }
    let start = upper.len() - rest.len() + b"[CAPABILITY ".len();
    let close = upper[start..end_of_line].iter().position(|&b| b == b']')?;
    Some(start..start + close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_compress_deflate() {
        assert_eq!(
            without_compress_deflate(b"* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE IDLE\r\n")
                .as_deref(),
            Some(&b"* CAPABILITY IMAP4rev1 IDLE\r\n"[..])
        );
        assert_eq!(
            without_compress_deflate(
                b"* OK [CAPABILITY IMAP4rev1 SASL-IR compress=deflate] Dovecot ready.\r\n"
            )
            .as_deref(),
            Some(&b"* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready.\r\n"[..])
        );
        assert_eq!(
            without_compress_deflate(b"a1 OK [CAPABILITY COMPRESS=DEFLATE] Logged in\r\n")
                .as_deref(),
            Some(&b"a1 OK [CAPABILITY ] Logged in\r\n"[..])
        );
        assert_eq!(
            without_compress_deflate(b"* CAPABILITY IMAP4rev1 IDLE\r\n"),
            None
        );
        assert_eq!(
            without_compress_deflate(b"* OK COMPRESS=DEFLATE is in the text only\r\n"),
            None
        );
        assert_eq!(
            without_compress_deflate(b"* CAPABILITY COMPRESS=DEFLATEX\r\n"),
            None
        );
    }

    #[test]
    fn removes_starttls_and_capability_codes() {
        assert_eq!(
            without_capabilities(
                b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n",
                &["COMPRESS=DEFLATE", "STARTTLS"]
            )
            .as_deref(),
            Some(&b"* CAPABILITY IMAP4rev1 LOGINDISABLED\r\n"[..])
        );
        assert_eq!(
            without_capability_code(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n")
                .as_deref(),
            Some(&b"* OK Dovecot ready.\r\n"[..])
        );
        assert_eq!(without_capability_code(b"* OK Dovecot ready.\r\n"), None);
        assert_eq!(without_capability_code(b"* CAPABILITY IMAP4rev1\r\n"), None);
    }
}
