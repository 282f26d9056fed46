//! What the IMAP and SMTP tracers share (DESIGN §2, §9): the listener's
//! [`TracerConfig`] and a connection's [`ConnectionInfo`], the author of a
//! SASL or LOGIN authentication, and the text rules every trace field
//! follows (no control character, bounded, no IMAP literal marker in a
//! request, local time with its UTC offset, class `mss`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use registre_model::{Actor, ClassName, Source};

use crate::imap::Secret;

/// The proxy host's local time (with its time zone, hence its UTC offset).
pub type Clock = Arc<dyn Fn() -> jiff::Zoned + Send + Sync>;

/// Reads the subject of a bearer token (XOAUTH2, OAUTHBEARER) when it is a
/// JWT from a configured issuer whose signature checks; `None` otherwise.
/// The token must not be kept or logged.
pub type BearerSubject = Arc<dyn Fn(&Secret) -> Option<String> + Send + Sync>;

/// What every connection of one proxy listener shares.
#[derive(Clone)]
pub struct TracerConfig {
    /// Domain of the mailbox addresses: a login without `@` becomes
    /// `login@domain` in `target.mailbox`.
    pub mail_domain: Option<String>,
    /// `source.software` (default `registre-proxy`).
    pub software: String,
    /// The local clock (default [`jiff::Zoned::now`]).
    pub clock: Clock,
    /// Resolves a bearer token to its subject (default none: the login named
    /// in the SASL response is the actor).
    pub bearer_subject: Option<BearerSubject>,
}

impl Default for TracerConfig {
    fn default() -> Self {
        Self {
            mail_domain: None,
            software: "registre-proxy".to_owned(),
            clock: Arc::new(jiff::Zoned::now),
            bearer_subject: None,
        }
    }
}

impl fmt::Debug for TracerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracerConfig")
            .field("mail_domain", &self.mail_domain)
            .field("software", &self.software)
            .field("bearer_subject", &self.bearer_subject.is_some())
            .finish_non_exhaustive()
    }
}

/// Where one connection comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The mail client's address.
    pub client_ip: Option<IpAddr>,
    /// An identifier of this connection (`source.session`).
    pub session: Option<String>,
}

/// `request` (DESIGN §2: at most 2 KiB).
pub(crate) const MAX_REQUEST: usize = 2048;
/// `response.text`.
pub(crate) const MAX_RESPONSE_TEXT: usize = 1024;
/// Identifiers, mailboxes and other short strings.
pub(crate) const MAX_SHORT: usize = 256;
/// Folders, UID sets.
pub(crate) const MAX_LONG: usize = 1024;

/// Who authenticated on a connection, and the mailbox that names.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub actor: Actor,
    pub mailbox: Option<String>,
}

/// The author of a LOGIN or SASL exchange: the bearer token's subject when
/// the configured hook reads one (`id_type` `oidc`), else the login
/// (`login`), else `inconnu`; `auth` names the method. The mailbox is the
/// authorization identity when one was given, else the login, completed
/// with [`TracerConfig::mail_domain`]. The token is only handed to the hook.
pub(crate) fn sasl_user(
    config: &TracerConfig,
    auth: String,
    login: Option<String>,
    authzid: Option<String>,
    bearer: Option<&Secret>,
) -> User {
    let login = login.filter(|l| !l.trim().is_empty());
    let subject = bearer
        .zip(config.bearer_subject.as_ref())
        .and_then(|(token, hook)| hook(token))
        .filter(|s| !s.trim().is_empty());
    let actor = match (subject, &login) {
        (Some(subject), _) => Actor {
            auth: Some(auth),
            id: clean(&subject, MAX_SHORT),
            id_type: Some("oidc".to_owned()),
        },
        (None, Some(login)) => Actor {
            auth: Some(auth),
            id: clean(login, MAX_SHORT),
            id_type: Some("login".to_owned()),
        },
        (None, None) => Actor {
            auth: Some(auth),
            id: "inconnu".to_owned(),
            id_type: Some("inconnu".to_owned()),
        },
    };
    let mailbox = authzid
        .filter(|a| !a.trim().is_empty())
        .or(login)
        .map(|name| address(config, &name));
    User { actor, mailbox }
}

/// A login as a mailbox address: `login@mail_domain` when it has no `@`.
pub(crate) fn address(config: &TracerConfig, login: &str) -> String {
    let address = match &config.mail_domain {
        Some(domain) if !login.contains('@') => format!("{login}@{domain}"),
        _ => login.to_owned(),
    };
    clean(&address, MAX_SHORT)
}

/// `source` of every trace of a connection.
pub(crate) fn source(config: &TracerConfig, connection: ConnectionInfo) -> Source {
    Source {
        host: None,
        ip: connection.client_ip.map(|ip| ip.to_string()),
        session: connection.session.map(|s| clean(&s, MAX_SHORT)),
        software: Some(clean(&config.software, MAX_SHORT)),
    }
}

/// The class of every proxy trace.
pub(crate) fn mss() -> ClassName {
    ClassName::mss()
}

/// `occurred_at`: now on the configured clock.
pub(crate) fn now(config: &TracerConfig) -> String {
    rfc3339_millis(&(config.clock)())
}

/// `s` without control characters (each becomes a space) and cut to at most
/// `max` bytes on a character boundary, `…` included when cut.
pub(crate) fn clean(s: &str, max: usize) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.len() <= max {
        return cleaned;
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !cleaned.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &cleaned[..cut])
}

/// Breaks anything the content guard would read as an IMAP literal marker
/// (`{12}`, `{12+}`, inside a quoted mailbox name say) by writing `{ 12}`;
/// the `{12 bytes}` placeholders are left as they are.
pub(crate) fn defang_literals(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for i in 0..b.len() {
        if b[i] != b'{' {
            continue;
        }
        let mut j = i + 1;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j == i + 1 {
            continue;
        }
        if j < b.len() && b[j] == b'+' {
            j += 1;
        }
        if j < b.len() && b[j] == b'}' {
            out.push_str(&s[last..=i]);
            out.push(' ');
            last = i + 1;
        }
    }
    out.push_str(&s[last..]);
    out
}

/// RFC 3339 with milliseconds and the UTC offset:
/// `2026-11-28T15:42:07.123+01:00`.
pub(crate) fn rfc3339_millis(now: &jiff::Zoned) -> String {
    let dt = now.datetime();
    let offset = now.offset().seconds();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 1_000_000,
        offset / 3600,
        offset % 3600 / 60,
    )
}
