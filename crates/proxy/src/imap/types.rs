//! Small values shared by both directions.

use std::fmt;

use zeroize::Zeroizing;

/// An event with the stream positions of the bytes it was decoded from:
/// `start..end` counts bytes since the decoder was created or reset, so the
/// relay can locate a line (to rewrite a CAPABILITY, or to drop what a client
/// sent after STARTTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// Position of the first byte of the line.
    pub start: u64,
    /// Position just after its final line feed.
    pub end: u64,
    /// What the line meant.
    pub event: T,
}

/// A string argument (astring, mailbox name, user name) as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An atom or a quoted string, unquoted (lossy UTF-8; mailbox names
    /// stay in modified UTF-7 as on the wire).
    Text(String),
    /// A literal: its bytes were skipped, only the length is known.
    Literal {
        /// Announced (and skipped) length in bytes.
        len: u64,
    },
}

impl Arg {
    /// The text, if the argument was not sent as a literal.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Literal { .. } => None,
        }
    }
}

/// A sequence set or UID set (`1:4,7,9:*`, `$`), checked to hold only the
/// characters of RFC 9051 `sequence-set`, kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceSet(String);

impl SequenceSet {
    /// Checks the syntax: non-empty comma-separated `seq-number` or
    /// `seq-number:seq-number` where a seq-number is a non-zero number or
    /// `*`; or `$` (RFC 5182 saved result).
    pub fn parse(text: &str) -> Option<Self> {
        if text == "$" {
            return Some(Self(text.to_owned()));
        }
        if text.is_empty() || text.len() > 16 * 1024 {
            return None;
        }
        let number = |part: &str| {
            part == "*"
                || (!part.is_empty()
                    && !part.starts_with('0')
                    && part.len() <= 10
                    && part.bytes().all(|b| b.is_ascii_digit())
                    && part.parse::<u32>().is_ok())
        };
        let valid = text.split(',').all(|range| match range.split_once(':') {
            Some((low, high)) => number(low) && number(high),
            None => number(range),
        });
        valid.then(|| Self(text.to_owned()))
    }

    /// The set as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ranges `(low, high)` of the set, `*` as `None`, in the order sent
    /// (`$` has none).
    pub fn ranges(&self) -> impl Iterator<Item = (Option<u32>, Option<u32>)> + '_ {
        let number = |part: &str| part.parse::<u32>().ok();
        self.0
            .split(',')
            .filter(|r| *r != "$")
            .map(move |range| match range.split_once(':') {
                Some((low, high)) => (number(low), number(high)),
                None => (number(range), number(range)),
            })
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The status of a tagged or untagged status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`
    No,
    /// `BAD`
    Bad,
    /// `PREAUTH` (greeting only)
    PreAuth,
    /// `BYE`
    Bye,
}

impl Status {
    pub(crate) fn parse(atom: &[u8]) -> Option<Self> {
        Some(match atom.to_ascii_uppercase().as_slice() {
            b"OK" => Self::Ok,
            b"NO" => Self::No,
            b"BAD" => Self::Bad,
            b"PREAUTH" => Self::PreAuth,
            b"BYE" => Self::Bye,
            _ => return None,
        })
    }

    /// The keyword, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::No => "NO",
            Self::Bad => "BAD",
            Self::PreAuth => "PREAUTH",
            Self::Bye => "BYE",
        }
    }
}

/// A credential (a bearer token) the caller may need to read (a JWT's
/// subject) but that must never be stored or logged: `Debug` shows only its
/// length and the bytes are zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// The secret bytes, for verification only (never store or log them).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Lossy UTF-8 of `bytes`, cut to at most `max` bytes on a character
/// boundary (with `…` when cut).
pub(crate) fn bounded_text(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets() {
        for ok in ["1", "1:4,7,9:*", "*", "$", "4294967295", "2:1"] {
            assert!(SequenceSet::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "0", "1,", ":", "1:", "a", "4294967296", "01", "1 2"] {
            assert!(SequenceSet::parse(bad).is_none(), "{bad}");
        }
        let set = SequenceSet::parse("3,5:7,9:*").expect("valid");
        assert_eq!(
            set.ranges().collect::<Vec<_>>(),
            [(Some(3), Some(3)), (Some(5), Some(7)), (Some(9), None)]
        );
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new(b"eyJhbGciOi.canary");
        assert_eq!(format!("{secret:?}"), "Secret(<17 bytes redacted>)");
        assert_eq!(secret.expose(), b"eyJhbGciOi.canary");
    }

    #[test]
    fn bounded_text_cuts_on_a_boundary() {
        assert_eq!(bounded_text("éé".as_bytes(), 3), "é…");
        assert_eq!(bounded_text(b"ok", 3), "ok");
    }
}
