//! `registre.toml`: the configuration file. Every field has a default, so a
//! missing file means the defaults; an unknown key is an error (a typo must
//! not silently change a retention).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use registre_model::{ClassName, Retention};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub access: AccessConfig,
    pub retention: RetentionConfig,
    /// `[syslog]`: the syslog listeners (all off by default).
    pub syslog: SyslogConfig,
    /// Classes by name; the built-in three are added when absent.
    pub classes: BTreeMap<String, ClassConfig>,
    /// `[proxy]`, `[[proxy.imap]]`, `[[proxy.smtp]]`: the MSSanté tracing
    /// proxy (`registre proxy`).
    pub proxy: ProxyConfig,
}

/// `[proxy]`: where the proxy writes its traces, and its listeners.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// A registre server's URL (`https://journal.example:7380`): traces are
    /// sent there with `token_file`'s producer key. Unset: the embedded
    /// journal in `[server] data`, opened by the proxy itself.
    pub journal: Option<String>,
    /// The producer key for `journal` (a file holding the token).
    pub token_file: Option<PathBuf>,
    /// CA certificate(s) of the journal's HTTPS certificate (PEM).
    pub journal_ca: Option<PathBuf>,
    /// Spool directory absorbing journal outages (with `journal` only).
    pub spool: Option<PathBuf>,
    /// The spool's bound, MiB; past it commands are refused.
    pub spool_max_mib: u64,
    /// Serve the HTTP API from the proxy's process too (embedded journal
    /// only), e.g. `127.0.0.1:7380`.
    pub api_listen: Option<SocketAddr>,
    /// Domain appended to logins without `@` for `target.mailbox`.
    pub mail_domain: Option<String>,
    /// `[[proxy.oidc]]`: issuers whose JWTs (XOAUTH2, OAUTHBEARER logins)
    /// name the author by their subject; role rules do not apply.
    pub oidc: Vec<registre_access::OidcIssuer>,
    /// IMAP listeners.
    pub imap: Vec<ProxyListener>,
    /// Submission (SMTP) listeners.
    pub smtp: Vec<ProxyListener>,
}

impl Default for ProxyConfig {
    fn default() -> ProxyConfig {
        ProxyConfig {
            journal: None,
            token_file: None,
            journal_ca: None,
            spool: None,
            spool_max_mib: 64,
            api_listen: None,
            mail_domain: None,
            oidc: Vec::new(),
            imap: Vec::new(),
            smtp: Vec::new(),
        }
    }
}

/// One `[[proxy.imap]]` or `[[proxy.smtp]]` listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyListener {
    /// Where mail clients connect.
    pub listen: SocketAddr,
    /// `implicit` (993, 465; default) or `starttls` (143, 587).
    #[serde(default = "implicit")]
    pub listen_tls: String,
    /// The proxy's certificate chain and key (PEM).
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The mail server, `host:port`.
    pub upstream: String,
    /// `implicit` (default), `starttls` or `none`.
    #[serde(default = "implicit")]
    pub upstream_tls: String,
    /// CA certificate(s) of the mail server (PEM); required unless `none`.
    #[serde(default)]
    pub upstream_ca: Option<PathBuf>,
    /// The name its certificate must carry (default: the host of `upstream`).
    #[serde(default)]
    pub upstream_name: Option<String>,
}

fn implicit() -> String {
    "implicit".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// Instance name: checkpoints of class C have origin
    /// `<instance>/registre/<C>`; the signing key is `<instance>/registre`.
    pub instance: String,
    /// HTTPS: certificate chain and key (PEM).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: the CA that signs client certificates.
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS
    /// reverse proxy or on a protected network; prefer `tls_cert`).
    pub allow_plain_http: bool,
}

/// `[access]`: credentials besides API keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// `[[access.certificates]]`: client certificate → principal rules.
    pub certificates: Vec<registre_intake::tls::CertRule>,
    /// `[[access.oidc]]`: OIDC issuers whose bearer tokens are accepted
    /// (Pro Santé Connect and others).
    pub oidc: Vec<registre_access::OidcIssuer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (default: a data directory) or `postgres` (several nodes
    /// on one PostgreSQL database; needs `url` and `master_key_file`).
    pub kind: String,
    /// `postgres://user@host:5432/db` (add `?sslmode=require` for TLS, with
    /// `&sslrootcert=/path/ca.pem` for a private CA). `registre serve
    /// --store URL` (or `REGISTRE_STORE`) overrides it and selects PostgreSQL.
    /// A password is better in `~/.pgpass`-like secrets than here: it can be
    /// given in the URL, which is never logged.
    pub url: Option<String>,
    /// The PostgreSQL schema holding the journal (default `registre`): one
    /// database can hold several journals.
    pub schema: String,
    /// Most PostgreSQL connections each node opens (default 8).
    pub pool_size: usize,
    /// Segments roll when reception time enters a new period: `1 day`,
    /// `1 hour`, `7 days`…
    pub segment_period: String,
    pub max_segment_mib: u64,
    /// A signed checkpoint is issued this often while a log grows.
    pub checkpoint_interval: String,
    /// The master key that wraps every data key (default:
    /// `<data>/keys/master.key`, generated with the data directory).
    /// Required with `kind = "postgres"`: the key never goes to the database.
    pub master_key_file: Option<PathBuf>,
}

/// Which backend a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Postgres { url: String, schema: String },
}

/// True for a `postgres://` or `postgresql://` URL.
pub fn is_postgres_url(s: &str) -> bool {
    let l = s.trim().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// The URL without its password (`user:***@`, `password=***`), for messages.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (auth, host) = match rest.rsplit_once('@') {
                Some((a, h)) => (Some(a), h),
                None => (None, rest),
            };
            match auth {
                Some(a) => match a.split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                    None => format!("{scheme}://{a}@{host}"),
                },
                None => format!("{scheme}://{host}"),
            }
        }
        None => base.to_owned(),
    };
    if let Some(q) = query {
        let kept: Vec<String> = q
            .split('&')
            .map(|p| {
                if p.to_ascii_lowercase().starts_with("password=") {
                    "password=***".to_owned()
                } else {
                    p.to_owned()
                }
            })
            .collect();
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    out
}

impl StoreConfig {
    /// The backend: `--store` (a PostgreSQL URL, or `embedded`) first, then
    /// `[store] kind`/`url`; `--store-schema` over `[store] schema`.
    pub fn backend(&self, store: Option<&str>, schema: Option<&str>) -> Result<Backend, String> {
        let schema = schema.unwrap_or(&self.schema).to_owned();
        let url = match store.map(str::trim) {
            Some("embedded") => return Ok(Backend::Embedded),
            Some(u) if is_postgres_url(u) => u.to_owned(),
            Some(other) => {
                return Err(format!(
                    "--store `{}`: expected a postgres:// or postgresql:// URL, or `embedded`",
                    redact_url(other)
                ));
            }
            None if self.kind == "postgres" => self.url.clone().ok_or_else(|| {
                "[store] kind = \"postgres\" needs [store] url = \"postgres://user@host:5432/db\" \
                 (or --store URL)"
                    .to_owned()
            })?,
            None => return Ok(Backend::Embedded),
        };
        if !is_postgres_url(&url) {
            return Err(format!(
                "[store] url `{}` is not a postgres:// or postgresql:// URL",
                redact_url(&url)
            ));
        }
        if !valid_schema(&schema) {
            return Err(format!(
                "schema `{schema}` must be a plain lowercase identifier (letters, digits, _)"
            ));
        }
        Ok(Backend::Postgres { url, schema })
    }
}

/// A PostgreSQL schema name registre accepts.
pub fn valid_schema(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `[retention]`: when the purge runs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// `1 hour` (default), any period, or `off` (purge on demand only).
    pub purge_interval: String,
}

impl Default for RetentionConfig {
    fn default() -> RetentionConfig {
        RetentionConfig {
            purge_interval: "1 hour".into(),
        }
    }
}

/// `[syslog]`: RFC 5424 syslog listeners for DICOM audit messages (IHE
/// ATNA) and JSON traces. Each address is off unless set (or given by
/// `--syslog-udp`, `--syslog-tls`, `--syslog-tcp`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    /// UDP (RFC 5426), one message per datagram.
    pub udp: Option<SocketAddr>,
    /// TLS (RFC 5425, octet counting; IANA port 6514) with the server's
    /// certificate (`[server] tls_cert`/`tls_key`).
    pub tls: Option<SocketAddr>,
    /// Plain TCP (RFC 6587: octet counting or one message per line).
    pub tcp: Option<SocketAddr>,
    /// Largest frame on a stream, bytes.
    pub max_frame: usize,
    /// Open connections per stream listener.
    pub max_connections: usize,
    /// An idle connection is closed after this long.
    pub idle_timeout: String,
    /// A frame, once started, must arrive within this.
    pub frame_timeout: String,
    /// TLS: refuse senders without a client certificate signed by
    /// `[server] client_ca`.
    pub require_client_cert: bool,
    /// TLS: when not empty, only these client certificates (common name or
    /// subjectAltName) may send.
    pub allowed_clients: Vec<String>,
    /// Allow UDP and plain TCP on a non-loopback address (no encryption, no
    /// authentication: a protected network only).
    pub allow_plain: bool,
}

impl Default for SyslogConfig {
    fn default() -> SyslogConfig {
        SyslogConfig {
            udp: None,
            tls: None,
            tcp: None,
            max_frame: registre_intake::syslog::DEFAULT_MAX_FRAME,
            max_connections: 256,
            idle_timeout: "10 minutes".into(),
            frame_timeout: "30 seconds".into(),
            require_client_cert: false,
            allowed_clients: Vec::new(),
            allow_plain: false,
        }
    }
}

/// Smallest `max_frame`: RFC 5425 §4.3.1 receivers must take 2048 octets.
pub const MIN_SYSLOG_FRAME: usize = 2048;
/// Largest `max_frame` (bounded memory per connection).
pub const MAX_SYSLOG_FRAME: usize = 16 << 20;

impl SyslogConfig {
    /// The listeners' options, or what is wrong with the section.
    pub fn options(&self) -> Result<registre_intake::syslog::SyslogOptions, String> {
        if !(MIN_SYSLOG_FRAME..=MAX_SYSLOG_FRAME).contains(&self.max_frame) {
            return Err(format!(
                "max_frame must be from {MIN_SYSLOG_FRAME} (RFC 5425's minimum) to {MAX_SYSLOG_FRAME} bytes"
            ));
        }
        if self.max_connections == 0 {
            return Err("max_connections must be positive".into());
        }
        let idle = parse_period(&self.idle_timeout).map_err(|m| format!("idle_timeout: {m}"))?;
        let frame = parse_period(&self.frame_timeout).map_err(|m| format!("frame_timeout: {m}"))?;
        if self.allowed_clients.iter().any(|c| c.trim().is_empty()) {
            return Err("allowed_clients: an entry is empty".into());
        }
        Ok(registre_intake::syslog::SyslogOptions {
            max_frame: self.max_frame,
            max_connections: self.max_connections,
            idle_timeout: std::time::Duration::from_secs(idle),
            frame_timeout: std::time::Duration::from_secs(frame),
            allowed_clients: self.allowed_clients.clone(),
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    pub retention: Retention,
    #[serde(default)]
    pub description: Option<String>,
    /// This class's segment period (default: `[store] segment_period`).
    #[serde(default)]
    pub segment_period: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7380)),
            data: PathBuf::from("registre-data"),
            instance: "localhost".into(),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            require_client_cert: false,
            allow_plain_http: false,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            kind: "embedded".into(),
            url: None,
            schema: "registre".into(),
            pool_size: 8,
            segment_period: "1 day".into(),
            max_segment_mib: 32,
            checkpoint_interval: "10 seconds".into(),
            master_key_file: None,
        }
    }
}

/// A class with its policy, as the server runs it.
#[derive(Debug, Clone)]
pub struct ClassPolicy {
    pub name: ClassName,
    pub retention: Retention,
    pub description: String,
    /// Set when the retention is outside the recommended range.
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        cfg.check(path)?;
        Ok(cfg)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        match self.store.kind.as_str() {
            "embedded" => {}
            "postgres" => {
                if self.store.url.is_none() {
                    return Err(invalid(
                        "[store] kind = \"postgres\" needs url = \"postgres://user@host:5432/db\""
                            .into(),
                    ));
                }
            }
            other => {
                return Err(invalid(format!(
                    "[store] kind = \"{other}\" is not supported; use \"embedded\" or \"postgres\""
                )));
            }
        }
        if let Some(u) = &self.store.url
            && !is_postgres_url(u)
        {
            return Err(invalid(format!(
                "[store] url `{}` is not a postgres:// or postgresql:// URL",
                redact_url(u)
            )));
        }
        if !valid_schema(&self.store.schema) {
            return Err(invalid(format!(
                "[store] schema `{}` must be a plain lowercase identifier (letters, digits, _)",
                self.store.schema
            )));
        }
        if self.store.pool_size == 0 {
            return Err(invalid("[store] pool_size must be positive".into()));
        }
        self.segment_period_secs()
            .map_err(|m| invalid(format!("[store] segment_period: {m}")))?;
        parse_period(&self.store.checkpoint_interval)
            .map_err(|m| invalid(format!("[store] checkpoint_interval: {m}")))?;
        let name = format!("{}/registre", self.server.instance);
        if self.server.instance.is_empty()
            || name.contains(|c: char| c.is_whitespace() || c == '+' || c.is_control())
        {
            return Err(invalid(
                "[server] instance must be non-empty, without spaces or '+' (e.g. hopital-nord.example)"
                    .into(),
            ));
        }
        for (name, c) in &self.classes {
            ClassName::new(name).map_err(|e| invalid(format!("[classes.{name}]: {e}")))?;
            if let Some(p) = &c.segment_period {
                parse_period(p)
                    .map_err(|m| invalid(format!("[classes.{name}] segment_period: {m}")))?;
            }
        }
        self.purge_interval()
            .map_err(|m| invalid(format!("[retention] purge_interval: {m}")))?;
        self.syslog
            .options()
            .map_err(|m| invalid(format!("[syslog] {m}")))?;
        Ok(())
    }

    /// `None` when the scheduled purge is off.
    pub fn purge_interval(&self) -> Result<Option<u64>, String> {
        match self.retention.purge_interval.trim() {
            "off" | "never" | "none" => Ok(None),
            p => parse_period(p).map(Some),
        }
    }

    /// Per-class segment periods (seconds) that differ from the default.
    pub fn segment_periods(&self) -> BTreeMap<String, u64> {
        self.classes
            .iter()
            .filter_map(|(n, c)| {
                let p = parse_period(c.segment_period.as_deref()?).ok()?;
                Some((n.clone(), p))
            })
            .collect()
    }

    pub fn segment_period_secs(&self) -> Result<u64, String> {
        parse_period(&self.store.segment_period)
    }

    /// The classes with their policies: the configured ones plus the three
    /// built-in classes with their default retentions.
    pub fn class_policies(&self) -> Vec<ClassPolicy> {
        let builtin = [
            (
                ClassName::MSS,
                Retention::months(6),
                "MSSanté functional traces (SC.MSS/CONF.18)",
            ),
            (
                ClassName::TECHNIQUE,
                Retention::years(1),
                "technical traces: errors, system events, registre's own operations",
            ),
            (
                ClassName::APPLICATIVE,
                Retention::years(20),
                "applicative traces: access to patient records, business actions",
            ),
        ];
        let mut out = Vec::new();
        for (name, retention, description) in builtin {
            let c = self.classes.get(name);
            out.push(policy(
                name,
                c.map_or(retention, |c| c.retention),
                c.and_then(|c| c.description.clone())
                    .unwrap_or_else(|| description.to_owned()),
            ));
        }
        for (name, c) in &self.classes {
            if out.iter().any(|p| p.name.as_str() == name) {
                continue;
            }
            out.push(policy(
                name,
                c.retention,
                c.description.clone().unwrap_or_default(),
            ));
        }
        out
    }
}

fn policy(name: &str, retention: Retention, description: String) -> ClassPolicy {
    ClassPolicy {
        // Checked in `Config::check` (custom) or a constant (built-in).
        name: ClassName::new(name)
            .unwrap_or_else(|_| unreachable!("class names are checked at load")),
        retention,
        description,
        warning: registre_policy::recommended_warning(name, retention),
    }
}

/// `1 day`, `6 hours`, `30 minutes`, `10 seconds` → seconds.
pub fn parse_period(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| "expected a number and a unit, e.g. `1 day`".to_owned())?;
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| "expected a number and a unit, e.g. `1 day`".to_owned())?;
    let unit = match s[split..].trim() {
        "s" | "sec" | "second" | "seconds" => 1,
        "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        other => {
            return Err(format!(
                "unknown unit `{other}` (seconds, minutes, hours, days, weeks)"
            ));
        }
    };
    if n == 0 {
        return Err("must be positive".into());
    }
    Ok(n * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../registre.toml");
        let cfg = Config::load(Some(&path)).expect("the shipped example loads");
        let p = cfg.class_policies();
        assert_eq!(p[0].name.as_str(), "mss");
        assert_eq!(p[0].retention, Retention::months(6));
        assert_eq!(p[2].retention, Retention::years(20));
        assert!(p.iter().all(|c| c.warning.is_none()));
    }

    #[test]
    fn typos_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.toml");
        std::fs::write(&path, "[classes.mss]\nretension = \"6 months\"\n").expect("write");
        let e = Config::load(Some(&path)).expect_err("typo");
        assert!(e.to_string().contains("retension"), "{e}");
    }

    #[test]
    fn warnings() {
        let mut cfg = Config::default();
        cfg.classes.insert(
            "mss".into(),
            ClassConfig {
                retention: Retention::years(5),
                description: None,
                segment_period: None,
            },
        );
        assert!(cfg.class_policies()[0].warning.is_some());
    }

    #[test]
    fn retention_section_and_class_periods() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.toml");
        std::fs::write(
            &path,
            "[retention]\npurge_interval = \"off\"\n[classes.mss]\nretention = \"10 seconds\"\nsegment_period = \"1 second\"\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("load");
        assert_eq!(cfg.purge_interval(), Ok(None));
        assert_eq!(cfg.segment_periods().get("mss"), Some(&1));
        std::fs::write(&path, "[retention]\npurge_interval = \"soon\"\n").expect("write");
        assert!(Config::load(Some(&path)).is_err());
        assert_eq!(Config::default().purge_interval(), Ok(Some(3600)));
    }

    #[test]
    fn syslog_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.toml");
        std::fs::write(
            &path,
            "[syslog]\nudp = \"127.0.0.1:5514\"\ntls = \"0.0.0.0:6514\"\nmax_frame = 8192\nrequire_client_cert = true\nallowed_clients = [\"rsyslog-dpi\"]\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("load");
        assert_eq!(
            cfg.syslog.udp,
            Some(SocketAddr::from(([127, 0, 0, 1], 5514)))
        );
        assert_eq!(cfg.syslog.tcp, None);
        let o = cfg.syslog.options().expect("options");
        assert_eq!(o.max_frame, 8192);
        assert_eq!(o.frame_timeout, std::time::Duration::from_secs(30));
        std::fs::write(&path, "[syslog]\nmax_frame = 100\n").expect("write");
        let e = Config::load(Some(&path)).expect_err("too small");
        assert!(e.to_string().contains("max_frame"), "{e}");
        std::fs::write(&path, "[syslog]\nudp_port = 514\n").expect("write");
        assert!(Config::load(Some(&path)).is_err());
        assert_eq!(Config::default().syslog.udp, None);
    }

    #[test]
    fn store_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.toml");
        std::fs::write(
            &path,
            "[store]\nkind = \"postgres\"\nurl = \"postgres://u:secret@db:5432/j\"\nschema = \"hopital\"\nmaster_key_file = \"/etc/registre/master.key\"\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path)).expect("load");
        assert_eq!(
            cfg.store.backend(None, None),
            Ok(Backend::Postgres {
                url: "postgres://u:secret@db:5432/j".into(),
                schema: "hopital".into()
            })
        );
        assert_eq!(
            cfg.store.backend(Some("embedded"), None),
            Ok(Backend::Embedded)
        );
        assert!(cfg.store.backend(Some("mysql://x"), None).is_err());
        assert!(
            cfg.store
                .backend(Some("postgresql://h/db"), Some("Bad-Name"))
                .is_err()
        );
        assert_eq!(
            Config::default()
                .store
                .backend(Some("postgresql://h/db"), None),
            Ok(Backend::Postgres {
                url: "postgresql://h/db".into(),
                schema: "registre".into()
            })
        );
        std::fs::write(&path, "[store]\nkind = \"postgres\"\n").expect("write");
        let e = Config::load(Some(&path)).expect_err("no url");
        assert!(e.to_string().contains("url"), "{e}");
        std::fs::write(&path, "[store]\nkind = \"sqlite\"\n").expect("write");
        assert!(Config::load(Some(&path)).is_err());
        assert_eq!(
            redact_url("postgres://u:secret@db:5432/j?sslmode=require&password=x"),
            "postgres://u:***@db:5432/j?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://u@db/j"), "postgres://u@db/j");
    }

    #[test]
    fn periods() {
        assert_eq!(parse_period("1 day"), Ok(86_400));
        assert_eq!(parse_period("10 seconds"), Ok(10));
        assert!(parse_period("1 fortnight").is_err());
    }
}
