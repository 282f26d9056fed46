//! Real mail servers for the proxy's tests, started from a private directory
//! on free loopback ports; nothing under `/etc` or `/var` is touched.
//!
//! - **Dovecot 2.3** (`dovecot -F -c DIR/dovecot.conf`, a child process):
//!   IMAP (STARTTLS), IMAPS (implicit TLS), submission (STARTTLS, AUTH
//!   PLAIN/LOGIN), submissions (implicit TLS) and LMTP (local delivery).
//!   Users come from a private passwd-file, mail goes to
//!   `DIR/mail/<domain>/<user>/Maildir`. The `mail_log` plugin logs
//!   delete/undelete/expunge/save/copy/flag_change/mailbox_delete/
//!   mailbox_rename events (fields `uid box msgid size`) to
//!   [`MailServers::mail_log`], together with the `imap_command_finished`
//!   events as `stats: Info: {json}` lines.
//! - **Postfix 3** (a private instance: `postfix -c DIR/postfix/etc start`,
//!   own queue directory, no chroot): Dovecot's submission service cannot
//!   deliver by itself, so it relays to this Postfix, which delivers the
//!   test domain to Dovecot LMTP and refuses [`MailServers::refused`] at
//!   RCPT time (`550 5.7.1`), and unknown users too (`550 5.1.1`).
//!
//! Mail flow: client → Dovecot submission (AUTH) → Postfix (relay, port
//! [`MailServers::smtp`], no auth, loopback only) → Dovecot LMTP → Maildir.
//!
//! TLS: a test CA made with rcgen ([`MailServers::ca_pem`]); the server
//! certificate is for `localhost` and `127.0.0.1`. [`MailServers::issue`]
//! signs more certificates with the same CA (for the proxy's listeners), so
//! a client trusts one CA for both.
//!
//! Needs root (both servers switch users) and the Debian packages
//! `dovecot-core dovecot-imapd dovecot-submissiond dovecot-lmtpd postfix`
//! (`.ci/run` installs them). Without them [`MailServers::start`] prints a
//! `SKIP` line and returns `None`. Dropping the value stops both servers and
//! removes the directory (`REGISTRE_KEEP_MAIL_DIR=1` keeps it, to read the
//! logs after a failure).

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The test domain: every user lives there, Postfix delivers it to LMTP.
pub const DOMAIN: &str = "hopital.test";

/// The default users (address, password).
pub const DEFAULT_USERS: &[(&str, &str)] = &[
    ("dr.martin@hopital.test", "secret-martin-1"),
    ("dr.durand@hopital.test", "secret-durand-2"),
    ("secretariat@hopital.test", "secret-secretariat-3"),
];

/// A recipient Postfix refuses at RCPT time: `550 5.7.1 <refuse@hopital.test>:
/// Recipient address rejected: Recipient refused by the test server`.
pub const REFUSED_RECIPIENT: &str = "refuse@hopital.test";
pub const REFUSED_CODE: u16 = 550;
pub const REFUSED_TEXT: &str = "Recipient refused by the test server";

/// How long to wait for the servers' ports and greetings.
const START_TIMEOUT: Duration = Duration::from_secs(30);

const DOVECOT_BINARIES: &[&str] = &[
    "/usr/lib/dovecot/imap",
    "/usr/lib/dovecot/imap-login",
    "/usr/lib/dovecot/submission",
    "/usr/lib/dovecot/submission-login",
    "/usr/lib/dovecot/lmtp",
];

const PACKAGES: &str = "dovecot-core dovecot-imapd dovecot-submissiond dovecot-lmtpd postfix";

/// One mailbox user.
#[derive(Clone, Debug)]
pub struct User {
    pub address: String,
    pub password: String,
}

/// Dovecot and Postfix, running; stopped when dropped.
pub struct MailServers {
    /// Always `127.0.0.1`.
    pub host: &'static str,
    /// Dovecot IMAP, plaintext greeting, STARTTLS (LOGINDISABLED before it).
    pub imap: u16,
    /// Dovecot IMAP over implicit TLS.
    pub imaps: u16,
    /// Dovecot submission, STARTTLS then AUTH PLAIN/LOGIN.
    pub submission: u16,
    /// Dovecot submission over implicit TLS.
    pub submissions: u16,
    /// Dovecot LMTP (plaintext, local delivery).
    pub lmtp: u16,
    /// The private Postfix's smtpd: plaintext, no AUTH, accepts the test
    /// domain from loopback only (the relay behind `submission`).
    pub smtp: u16,
    /// The test CA (PEM), to trust in clients.
    pub ca_pem: PathBuf,
    /// The servers' certificate chain (leaf then CA) and key (PEM).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub users: Vec<User>,
    /// Refused by Postfix at RCPT time ([`REFUSED_CODE`], [`REFUSED_TEXT`]).
    pub refused: String,
    /// Dovecot's info log: `mail_log` plugin lines (`… Info: expunge:
    /// box=INBOX, uid=1, msgid=<…>, size=…`) and `stats: Info: {json}` lines
    /// for `imap_command_finished`.
    pub mail_log: PathBuf,
    /// Dovecot's error log, Postfix's log.
    pub dovecot_log: PathBuf,
    pub postfix_log: PathBuf,
    /// `DIR/mail`: `<domain>/<local part>/Maildir` per user.
    pub mail_root: PathBuf,
    /// The private directory holding everything.
    pub dir: PathBuf,
    /// From the call to `start` until every port answered.
    pub startup: Duration,
    issuer: Issuer<'static, KeyPair>,
    dovecot: Child,
    postfix_conf: PathBuf,
    postfix_pid: PathBuf,
    tmp: Option<tempfile::TempDir>,
}

/// Prints the reason to skip and returns `None`.
fn skip<T>(why: &str) -> Option<T> {
    eprintln!("SKIP: {why}; `.ci/run` installs the mail servers (apt-get install -y {PACKAGES})");
    None
}

/// The first of `names` found in PATH or the sbin directories.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A free TCP port on 127.0.0.1 (bound then released: a small race other
/// tests in the same process could lose, never a wrong result).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// (uid, gid) of a system user, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The last `n` lines of a file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "----- {} (last {n} lines)\n{}",
        path.display(),
        lines[lines.len().saturating_sub(n)..].join("\n")
    )
}

/// Reads the first line a server sends on a plaintext port.
fn greeting(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut line = String::new();
    BufReader::new(&mut s).read_line(&mut line).ok()?;
    let _ = s.write_all(b"QUIT\r\n");
    Some(line.trim_end().to_owned())
}

/// CA and leaf certificate generation.
fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "registre mail tests");
    params
        .distinguished_name
        .push(DnType::CommonName, "registre mail test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let ca = params.self_signed(&key).expect("CA");
    (ca.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, sans: &[&str]) -> (String, String) {
    let mut p = CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        .expect("leaf params");
    p.distinguished_name.push(
        DnType::CommonName,
        sans.first().copied().unwrap_or("localhost"),
    );
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    let k = KeyPair::generate().expect("leaf key");
    let c = p.signed_by(&k, issuer).expect("leaf");
    (c.pem(), k.serialize_pem())
}

impl MailServers {
    /// Starts the servers with [`DEFAULT_USERS`].
    pub fn start() -> Option<Self> {
        Self::start_with_users(DEFAULT_USERS)
    }

    /// Starts the servers with these users (addresses in [`DOMAIN`]).
    /// `None` (after a `SKIP` line) when the servers are not installed or
    /// the tests do not run as root; panics, with the servers' logs, when
    /// they are installed but fail to start.
    pub fn start_with_users(users: &[(&str, &str)]) -> Option<Self> {
        let t0 = Instant::now();
        let (Some(dovecot), Some(postfix)) = (which("dovecot"), which("postfix")) else {
            return skip("dovecot or postfix is not installed");
        };
        if let Some(missing) = DOVECOT_BINARIES.iter().find(|b| !Path::new(b).exists()) {
            return skip(&format!("{missing} is missing"));
        }
        if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
            eprintln!(
                "SKIP: the mail servers need root (they switch users); these tests run unprivileged"
            );
            return None;
        }
        let (Some(mail_ids), Some(postfix_ids)) = (system_user("mail"), system_user("postfix"))
        else {
            return skip("system users `mail` or `postfix` are missing");
        };
        for u in users {
            assert!(
                u.0.ends_with(&format!("@{DOMAIN}")),
                "user {} must be in {DOMAIN}",
                u.0
            );
        }

        // Short path: Dovecot's unix sockets live below it (sun_path is 108
        // bytes), and the postfix/dovecot users must traverse it.
        let tmp = tempfile::Builder::new()
            .prefix("registre-mail.")
            .tempdir_in("/tmp")
            .expect("private mail dir");
        let dir = tmp.path().to_path_buf();
        mkdir(&dir, 0o755);
        let log = dir.join("log");
        let tls = dir.join("tls");
        let mail_root = dir.join("mail");
        let pf_conf = dir.join("postfix/etc");
        let pf_queue = dir.join("postfix/spool");
        let pf_data = dir.join("postfix/data");
        for (d, mode) in [
            (&log, 0o755),
            (&tls, 0o755),
            (&dir.join("run"), 0o755),
            (&dir.join("state"), 0o755),
            (&dir.join("dovecot"), 0o755),
            (&mail_root, 0o700),
            (&pf_conf, 0o755),
            (&pf_queue, 0o755),
            (&pf_data, 0o700),
        ] {
            mkdir(d, mode);
        }
        std::os::unix::fs::chown(&mail_root, Some(mail_ids.0), Some(mail_ids.1)).expect("chown");
        std::os::unix::fs::chown(&pf_data, Some(postfix_ids.0), Some(postfix_ids.1))
            .expect("chown");

        // TLS
        let (ca_text, issuer) = test_ca();
        let (cert, key) = leaf(&issuer, &["localhost", "127.0.0.1"]);
        let ca_pem = tls.join("ca.pem");
        let server_cert = tls.join("server-chain.pem");
        let server_key = tls.join("server.key");
        write(&ca_pem, &ca_text, 0o644);
        write(&server_cert, &format!("{cert}{ca_text}"), 0o644);
        write(&server_key, &key, 0o600);

        // Users
        let users: Vec<User> = users
            .iter()
            .map(|(a, p)| User {
                address: (*a).to_owned(),
                password: (*p).to_owned(),
            })
            .collect();
        let passwd_file = dir.join("dovecot/users");
        let passwd: String = users
            .iter()
            .map(|u| format!("{}:{{PLAIN}}{}::::::\n", u.address, u.password))
            .collect();
        write(&passwd_file, &passwd, 0o644);
        let vmailbox: String = users
            .iter()
            .map(|u| format!("{} OK\n", u.address))
            .collect();
        write(&pf_conf.join("vmailbox"), &vmailbox, 0o644);
        write(
            &pf_conf.join("refused"),
            &format!("{REFUSED_RECIPIENT} {REFUSED_CODE} 5.7.1 {REFUSED_TEXT}\n"),
            0o644,
        );

        let (imap, imaps, submission, submissions, lmtp, smtp) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let mail_log = log.join("dovecot-info.log");
        let dovecot_log = log.join("dovecot.log");
        let postfix_log = log.join("postfix.log");
        let d = dir.display();
        let (muid, mgid) = mail_ids;
        let conf = format!(
            r#"# Generated by registre's test support (crates/proxy/tests/support/mail.rs).
instance_name = registre-test-{imap}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap submission lmtp
listen = 127.0.0.1
hostname = localhost
log_path = {dovecot_log}
info_log_path = {mail_log}
debug_log_path = {d}/log/dovecot-debug.log
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes

# No authentication without TLS. Dovecot exempts a client whose address is
# the server's own (127.0.0.1 to 127.0.0.1): on loopback, LOGIN is allowed
# (and LOGINDISABLED not advertised) before STARTTLS.
ssl = required
ssl_cert = <{server_cert}
ssl_key = <{server_key}
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login
# A failed login answers at once (default: 2 s), to keep the tests fast.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%Lu {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%Lu {passwd}
  default_fields = uid={muid} gid={mgid} home={d}/mail/%Ld/%Ln
}}
first_valid_uid = {muid}
first_valid_gid = {mgid}
mail_location = maildir:~/Maildir
mail_max_userip_connections = 1000
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \Trash
    auto = subscribe
  }}
}}

mail_plugins = $mail_plugins notify mail_log
plugin {{
  mail_log_events = delete undelete expunge save copy mailbox_delete mailbox_rename flag_change
  mail_log_fields = uid box msgid size
}}

# imap_command_finished events through the log transport: 'stats: Info:
# {{json}}' lines in info_log_path (Dovecot 2.3 has no file transport).
event_exporter testlog {{
  format = json
  format_args = time-rfc3339
  transport = log
}}
metric imap_command_finished {{
  exporter = testlog
  exporter_include = name hostname timestamps categories fields
  filter = event=imap_command_finished
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {submission}
  }}
  inet_listener submissions {{
    address = 127.0.0.1
    port = {submissions}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {smtp}
submission_relay_ssl = no
protocol lmtp {{
  postmaster_address = postmaster@{DOMAIN}
}}
"#,
            dovecot_log = dovecot_log.display(),
            mail_log = mail_log.display(),
            server_cert = server_cert.display(),
            server_key = server_key.display(),
            passwd = passwd_file.display(),
        );
        let dovecot_conf = dir.join("dovecot.conf");
        write(&dovecot_conf, &conf, 0o644);

        let pc = pf_conf.display();
        let main_cf = format!(
            r#"# Generated by registre's test support: a private Postfix, the relay
# behind Dovecot submission; delivers {DOMAIN} to Dovecot LMTP, nothing else.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{DOMAIN}
mydomain = {DOMAIN}
myorigin = $mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtputf8_enable = no
maillog_file = {postfix_log}
maillog_file_prefixes = {d}
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{pc}/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:{lmtp}
local_transport = error:local delivery disabled in the tests
default_transport = error:outbound mail disabled in the tests
relay_transport = error:outbound mail disabled in the tests
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = check_recipient_access texthash:{pc}/refused, reject_unlisted_recipient, reject_unauth_destination
smtpd_reject_unlisted_recipient = yes
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 30s
maximal_queue_lifetime = 1h
bounce_queue_lifetime = 1h
"#,
            queue = pf_queue.display(),
            data = pf_data.display(),
            postfix_log = postfix_log.display(),
        );
        write(&pf_conf.join("main.cf"), &main_cf, 0o644);
        let master_cf = format!(
            "# Generated by registre's test support: no chroot, only what the tests need.
127.0.0.1:{smtp} inet n - n - - smtpd
pickup    unix  n  -  n  60    1  pickup
cleanup   unix  n  -  n  -     0  cleanup
qmgr      unix  n  -  n  300   1  qmgr
rewrite   unix  -  -  n  -     -  trivial-rewrite
bounce    unix  -  -  n  -     0  bounce
defer     unix  -  -  n  -     0  bounce
trace     unix  -  -  n  -     0  bounce
verify    unix  -  -  n  -     1  verify
flush     unix  n  -  n  1000? 0  flush
proxymap  unix  -  -  n  -     -  proxymap
proxywrite unix -  -  n  -     1  proxymap
smtp      unix  -  -  n  -     -  smtp
relay     unix  -  -  n  -     -  smtp
showq     unix  n  -  n  -     -  showq
error     unix  -  -  n  -     -  error
retry     unix  -  -  n  -     -  error
discard   unix  -  -  n  -     -  discard
lmtp      unix  -  -  n  -     -  lmtp
anvil     unix  -  -  n  -     1  anvil
scache    unix  -  -  n  -     1  scache
postlog   unix-dgram n - n -   1  postlogd
"
        );
        write(&pf_conf.join("master.cf"), &master_cf, 0o644);
        // Postfix's table reader waits until a file's mtime is in the past
        // (a race guard): back-date the fresh files, saves ~2 s per start.
        let past = SystemTime::now() - Duration::from_secs(60);
        for f in ["main.cf", "master.cf", "vmailbox", "refused"] {
            fs::File::options()
                .append(true)
                .open(pf_conf.join(f))
                .and_then(|f| f.set_modified(past))
                .expect("back-date postfix file");
        }

        // Check the configuration first: a clear message beats a dead master.
        let check = Command::new(which("doveconf").unwrap_or_else(|| "doveconf".into()))
            .arg("-c")
            .arg(&dovecot_conf)
            .arg("-n")
            .output()
            .expect("run doveconf");
        assert!(
            check.status.success(),
            "invalid Dovecot configuration:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );

        // stdout and stderr share one file (one open file description).
        let out = |name: &str| {
            let f = fs::File::create(log.join(name)).expect("start log");
            let g = f.try_clone().expect("dup start log");
            (Stdio::from(f), Stdio::from(g))
        };
        let (o, e) = out("dovecot-start.log");
        let dovecot_child = Command::new(&dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&dovecot_conf)
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .expect("spawn dovecot");
        // No auth penalty: after a failed login, Dovecot delays the next
        // logins from that address by 2 s, 4 s, … up to 15 s (anvil's
        // PENALTY-GET), and every test connects from 127.0.0.1. There is no
        // setting for it (login_trusted_networks does not lift it in 2.3.19);
        // the auth process disables it silently when the anvil-auth-penalty
        // socket is missing at its start, so remove the socket before the
        // first connection starts the auth process.
        let penalty = dir.join("run/anvil-auth-penalty");
        while !penalty.exists() && t0.elapsed() < START_TIMEOUT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = fs::remove_file(&penalty);
        let mut servers = MailServers {
            host: "127.0.0.1",
            imap,
            imaps,
            submission,
            submissions,
            lmtp,
            smtp,
            ca_pem,
            server_cert,
            server_key,
            users,
            refused: REFUSED_RECIPIENT.to_owned(),
            mail_log,
            dovecot_log,
            postfix_log,
            mail_root,
            dir: dir.clone(),
            startup: Duration::ZERO,
            issuer,
            dovecot: dovecot_child,
            postfix_conf: pf_conf.clone(),
            postfix_pid: pf_queue.join("pid/master.pid"),
            tmp: Some(tmp),
        };
        // `postfix start` daemonizes the master (pid file in the queue
        // directory); `Drop` runs `postfix stop`.
        let (o, e) = out("postfix-start.log");
        let status = Command::new(&postfix)
            .arg("-c")
            .arg(&pf_conf)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .status()
            .expect("run postfix start");
        if !status.success() {
            panic!("postfix failed to start\n{}", servers.logs());
        }
        servers.wait_ready(t0);
        servers.startup = t0.elapsed();
        eprintln!(
            "mail servers up in {:.2?} from {}: imap {} imaps {} submission {} submissions {} lmtp {} smtp {}",
            servers.startup, d, imap, imaps, submission, submissions, lmtp, smtp
        );
        Some(servers)
    }

    fn wait_ready(&mut self, t0: Instant) {
        let ports = [
            self.imap,
            self.imaps,
            self.submission,
            self.submissions,
            self.lmtp,
            self.smtp,
        ];
        loop {
            if let Ok(Some(status)) = self.dovecot.try_wait() {
                panic!("dovecot exited at start ({status})\n{}", self.logs());
            }
            let pending: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| TcpStream::connect(("127.0.0.1", *p)).is_err())
                .collect();
            if pending.is_empty() {
                break;
            }
            assert!(
                t0.elapsed() < START_TIMEOUT,
                "mail servers: ports {pending:?} still closed after {START_TIMEOUT:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        for (port, want) in [
            (self.imap, "* OK"),
            (self.submission, "220 "),
            (self.lmtp, "220 "),
            (self.smtp, "220 "),
        ] {
            let got = greeting(port).unwrap_or_default();
            assert!(
                got.starts_with(want),
                "port {port} greeted {got:?}, expected {want:?}\n{}",
                self.logs()
            );
        }
    }

    /// The tails of every log, for failure messages.
    pub fn logs(&self) -> String {
        let log = self.dir.join("log");
        [
            "dovecot-start.log",
            "dovecot.log",
            "dovecot-info.log",
            "postfix-start.log",
            "postfix.log",
        ]
        .iter()
        .map(|f| tail(&log.join(f), 30))
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The password of `address`.
    pub fn password(&self, address: &str) -> &str {
        &self
            .users
            .iter()
            .find(|u| u.address == address)
            .unwrap_or_else(|| panic!("no test user {address}"))
            .password
    }

    /// `address`'s Maildir.
    pub fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').expect("an address");
        self.mail_root.join(domain).join(local).join("Maildir")
    }

    /// A certificate for `sans` signed by the test CA: (chain PEM, key PEM).
    pub fn issue(&self, sans: &[&str]) -> (String, String) {
        let (cert, key) = leaf(&self.issuer, sans);
        let ca = fs::read_to_string(&self.ca_pem).expect("CA");
        (format!("{cert}{ca}"), key)
    }

    /// The `mail_log` plugin lines so far, in order.
    pub fn mail_log_events(&self) -> Vec<MailLogEvent> {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.mail_log) {
            let _ = f.read_to_string(&mut text);
        }
        text.lines().filter_map(MailLogEvent::parse).collect()
    }

    /// Waits (up to 10 s) until `mail_log_events` holds an event matching
    /// `pred`, and returns all events then; panics with the log otherwise.
    pub fn wait_mail_log(
        &self,
        what: &str,
        pred: impl Fn(&MailLogEvent) -> bool,
    ) -> Vec<MailLogEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.mail_log_events();
            if events.iter().any(&pred) {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "no mail_log line for {what}; events: {events:#?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop_postfix(&self) {
        let pid = fs::read_to_string(&self.postfix_pid)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let _ = Command::new(which("postfix").unwrap_or_else(|| "postfix".into()))
            .arg("-c")
            .arg(&self.postfix_conf)
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Wait for the master to go, so the directory can be removed.
        if let Some(pid) = pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if alive(pid) {
                signal("KILL", pid);
            }
        }
    }

    fn stop_dovecot(&mut self) {
        signal("TERM", self.dovecot.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.dovecot.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.dovecot.kill();
        let _ = self.dovecot.wait();
    }
}

/// One line of Dovecot's `mail_log` plugin, e.g.
/// `imap(dr.martin@hopital.test)<4325><oCEK…>: Info: expunge: box=INBOX,
/// uid=1, msgid=<…>, size=959` or `… Info: copy from INBOX: box=Trash,
/// uid=1, msgid=<…>, size=964` (then `from` is `INBOX`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailLogEvent {
    /// The process (`imap`, `lmtp`, …) and the user it runs for.
    pub service: String,
    pub user: String,
    /// `save`, `copy`, `delete` (\Deleted set), `undelete`, `expunge`,
    /// `flag_change`, `mailbox_delete`, `mailbox_rename`.
    pub event: String,
    /// The source mailbox of a copy.
    pub from: Option<String>,
    pub fields: Vec<(String, String)>,
}

impl MailLogEvent {
    const EVENTS: &[&str] = &[
        "delete",
        "undelete",
        "expunge",
        "save",
        "copy",
        "mailbox_delete",
        "mailbox_rename",
        "flag_change",
    ];

    fn parse(line: &str) -> Option<Self> {
        let (head, rest) = line.split_once(": Info: ")?;
        let (what, fields) = rest.split_once(": box=")?;
        let (event, from) = match what.split_once(" from ") {
            Some((e, f)) => (e, Some(f.to_owned())),
            None => (what, None),
        };
        if !Self::EVENTS.contains(&event) {
            return None;
        }
        // "<date> <time> imap(user)<pid><session>"
        let head = head.rsplit(' ').next()?;
        let (service, rest) = head.split_once('(')?;
        let user = rest.split_once(')')?.0;
        let fields = format!("box={fields}")
            .split(", ")
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(MailLogEvent {
            service: service.to_owned(),
            user: user.to_owned(),
            event: event.to_owned(),
            from,
            fields,
        })
    }

    /// The value of a field (`box`, `uid`, `msgid`, `size`, …).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Is process `pid` alive (not a zombie)?
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
        .is_some_and(|state| !state.starts_with('Z'))
}

fn signal(sig: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for MailServers {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop_postfix();
        self.stop_dovecot();
        if std::env::var_os("REGISTRE_KEEP_MAIL_DIR").is_some()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("mail servers' directory kept: {}", tmp.keep().display());
        }
    }
}
