//! The identities inside SASL responses (PLAIN, XOAUTH2, OAUTHBEARER, LOGIN),
//! read from base64 without keeping the password: the decoded buffer is
//! zeroed on drop and only the identities (and a bearer token, as a
//! [`Secret`]) leave this module. Same rules and types as the IMAP side
//! (RFC 4954 carries the same SASL responses as RFC 9051 AUTHENTICATE);
//! kept here because `imap::sasl` is private to its module.

use base64::Engine as _;
use zeroize::Zeroizing;

use super::frame::bounded_text;
use crate::imap::{SaslIdentity, Secret};

const MAX_IDENTITY: usize = 256;

/// Which step of a mechanism a response line is.
pub(crate) fn identity(mechanism: &str, step: usize, line: &[u8]) -> Option<SaslIdentity> {
    if line == b"=" {
        return None;
    }
    let decoded = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(line)
            .ok()?,
    );
    let text = |bytes: &[u8]| (!bytes.is_empty()).then(|| bounded_text(bytes, MAX_IDENTITY));
    match (mechanism, step) {
        ("PLAIN", 0) => {
            let mut parts = decoded.split(|&b| b == 0);
            let authzid = parts.next()?;
            let authcid = parts.next()?;
            parts.next()?; // the password: checked present, never kept
            Some(SaslIdentity {
                authzid: text(authzid),
                authcid: text(authcid),
                bearer: None,
            })
        }
        ("LOGIN", 0) => Some(SaslIdentity {
            authcid: text(&decoded),
            ..SaslIdentity::default()
        }),
        ("XOAUTH2", 0) => {
            let mut identity = SaslIdentity::default();
            for field in decoded.split(|&b| b == 1) {
                if let Some(user) = field.strip_prefix(b"user=") {
                    identity.authcid = text(user);
                } else if let Some(auth) = field.strip_prefix(b"auth=") {
                    identity.bearer = bearer(auth);
                }
            }
            Some(identity)
        }
        ("OAUTHBEARER", 0) => {
            let mut fields = decoded.split(|&b| b == 1);
            // gs2-header: "n,a=authzid," (or "y," / "p=…")
            let header = fields.next()?;
            let mut identity = SaslIdentity::default();
            for part in header.split(|&b| b == b',') {
                if let Some(authzid) = part.strip_prefix(b"a=") {
                    identity.authzid = text(&unescape_saslname(authzid));
                }
            }
            for field in fields {
                if let Some(auth) = field.strip_prefix(b"auth=") {
                    identity.bearer = bearer(auth);
                }
            }
            Some(identity)
        }
        _ => None,
    }
}

fn bearer(auth: &[u8]) -> Option<Secret> {
    let scheme = auth.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"Bearer ")
        .then(|| Secret::new(&auth[7..]))
}

/// RFC 5801 saslname: `=2C` is `,`, `=3D` is `=`.
fn unescape_saslname(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        match name.get(i..i + 3) {
            Some(b"=2C" | b"=2c") => {
                out.push(b',');
                i += 3;
            }
            Some(b"=3D" | b"=3d") => {
                out.push(b'=');
                i += 3;
            }
            _ => {
                out.push(name[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    #[test]
    fn plain_keeps_identities_drops_password() {
        let id = identity("PLAIN", 0, &b64(b"\0dr.martin\0pw-canary")).expect("parses");
        assert_eq!(id.authcid.as_deref(), Some("dr.martin"));
        assert_eq!(id.authzid, None);
        assert!(!format!("{id:?}").contains("pw-canary"));
        assert!(identity("PLAIN", 0, &b64(b"no nul")).is_none());
    }

    #[test]
    fn bearer_mechanisms() {
        let x = identity(
            "XOAUTH2",
            0,
            &b64(b"user=a@b.fr\x01auth=Bearer tok.canary\x01\x01"),
        )
        .expect("parses");
        assert_eq!(x.authcid.as_deref(), Some("a@b.fr"));
        assert_eq!(
            x.bearer.as_ref().map(Secret::expose),
            Some(&b"tok.canary"[..])
        );
        assert!(!format!("{x:?}").contains("canary"));
        let o = identity(
            "OAUTHBEARER",
            0,
            &b64(b"n,a=u=2Cx@b.fr,\x01host=imap\x01auth=bearer T\x01\x01"),
        )
        .expect("parses");
        assert_eq!(o.authzid.as_deref(), Some("u,x@b.fr"));
        assert_eq!(o.bearer.as_ref().map(Secret::expose), Some(&b"T"[..]));
    }
}
