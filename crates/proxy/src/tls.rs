//! How each side of a proxy listener speaks TLS (issue 6):
//! `--listen-tls implicit|starttls` toward mail clients,
//! `--upstream-tls implicit|starttls|none` toward the mail server.

use std::fmt;
use std::str::FromStr;

/// TLS toward mail clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListenTls {
    /// TLS from the first byte (IMAPS 993, submissions 465).
    #[default]
    Implicit,
    /// Plain text until the client's STARTTLS (IMAP 143, submission 587).
    /// Anything the client sends after STARTTLS and before the handshake is
    /// discarded (command injection, RFC 3501 §6.2.1, RFC 3207 §5).
    Starttls,
}

/// TLS toward the mail server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UpstreamTls {
    /// TLS from the first byte.
    #[default]
    Implicit,
    /// The proxy issues STARTTLS itself before relaying the client.
    Starttls,
    /// Plain text (a server on the same host or a private network only).
    None,
}

/// A TLS mode name that is not one of the accepted ones.
#[derive(Debug, thiserror::Error)]
#[error("unknown TLS mode {0:?}: expected {1}")]
pub struct ModeError(String, &'static str);

impl FromStr for ListenTls {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Self, ModeError> {
        match s {
            "implicit" => Ok(Self::Implicit),
            "starttls" => Ok(Self::Starttls),
            _ => Err(ModeError(s.to_owned(), "implicit or starttls")),
        }
    }
}

impl FromStr for UpstreamTls {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Self, ModeError> {
        match s {
            "implicit" => Ok(Self::Implicit),
            "starttls" => Ok(Self::Starttls),
            "none" => Ok(Self::None),
            _ => Err(ModeError(s.to_owned(), "implicit, starttls or none")),
        }
    }
}

impl fmt::Display for ListenTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Implicit => "implicit",
            Self::Starttls => "starttls",
        })
    }
}

impl fmt::Display for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Implicit => "implicit",
            Self::Starttls => "starttls",
            Self::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip_and_refuse_others() {
        for m in [ListenTls::Implicit, ListenTls::Starttls] {
            assert_eq!(m.to_string().parse::<ListenTls>().unwrap(), m);
        }
        for m in [
            UpstreamTls::Implicit,
            UpstreamTls::Starttls,
            UpstreamTls::None,
        ] {
            assert_eq!(m.to_string().parse::<UpstreamTls>().unwrap(), m);
        }
        assert!("none".parse::<ListenTls>().is_err());
        assert!("TLS".parse::<UpstreamTls>().is_err());
    }
}
