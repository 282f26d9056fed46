//! Opaque paging cursor: for each log searched, the index below which the
//! next page continues. Taken on the first page, it also freezes the view, so
//! traces arriving while a client pages do not shift its pages.
//!
//! Wire form: `v1.` then base64url (no padding) of `log=bound` pairs joined
//! by `;`, e.g. `mss=41;technique=0`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::SearchError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// (log name, exclusive upper bound of the next page's indexes).
    pub bounds: Vec<(String, u64)>,
}

impl Cursor {
    pub fn bound(&self, log: &str) -> Option<u64> {
        self.bounds.iter().find(|(l, _)| l == log).map(|(_, b)| *b)
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        for (i, (log, b)) in self.bounds.iter().enumerate() {
            if i > 0 {
                s.push(';');
            }
            s.push_str(log);
            s.push('=');
            s.push_str(&b.to_string());
        }
        format!("v1.{}", URL_SAFE_NO_PAD.encode(s))
    }

    pub fn decode(s: &str) -> Result<Cursor, SearchError> {
        let body = s
            .strip_prefix("v1.")
            .ok_or(SearchError::BadCursor("not a registre cursor"))?;
        if body.len() > 4096 {
            return Err(SearchError::BadCursor("too long"));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SearchError::BadCursor("not base64url"))?;
        let text = String::from_utf8(raw).map_err(|_| SearchError::BadCursor("not UTF-8"))?;
        let mut bounds = Vec::new();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let (log, b) = pair
                .split_once('=')
                .ok_or(SearchError::BadCursor("malformed"))?;
            let b = b
                .parse::<u64>()
                .map_err(|_| SearchError::BadCursor("malformed bound"))?;
            registre_model::ClassName::new(log)
                .map_err(|_| SearchError::BadCursor("malformed log name"))?;
            bounds.push((log.to_owned(), b));
        }
        Ok(Cursor { bounds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Cursor {
            bounds: vec![("mss".into(), 41), ("technique".into(), 0)],
        };
        assert_eq!(Cursor::decode(&c.encode()).expect("decodes"), c);
        for bad in ["", "v2.x", "v1.!!", "v1.bXNz"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
