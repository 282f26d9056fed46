//! Dovecot transcripts through the real parser ([`Session`]) and the tracer:
//! one trace per action, checked field by field; every trace passes
//! registre's content guard; no canary (message text, subject, password,
//! token) ever reaches a trace or the tracer's state.

use std::sync::Arc;

use base64::Engine as _;
use registre_model::{Action, Actor, Limits as TraceLimits, Outcome, Response, Trace, parse_trace};

use super::*;
use crate::imap::{Limits, Session};

const CANARY: &str = "CANARY-5d1e88";
const WHEN: &str = "2026-11-28T15:42:07.123+01:00";
const MAILBOX: &str = "dr.martin@hopital.mssante.fr";

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=XOAUTH2 AUTH=OAUTHBEARER] Dovecot ready.\r\n";

fn config(hook: Option<BearerSubject>) -> Arc<TracerConfig> {
    let clock: Clock = Arc::new(|| {
        let ts: jiff::Timestamp = "2026-11-28T14:42:07.123456Z".parse().expect("valid");
        ts.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::Offset::constant(1)))
    });
    Arc::new(TracerConfig {
        mail_domain: Some("hopital.mssante.fr".to_owned()),
        clock,
        bearer_subject: hook,
        ..TracerConfig::default()
    })
}

struct Proxy {
    session: Session,
    tracer: ImapTracer,
    traces: Vec<Trace>,
}

impl Proxy {
    fn new() -> Self {
        Self::with(config(None))
    }

    fn with(config: Arc<TracerConfig>) -> Self {
        let connection = ConnectionInfo {
            client_ip: Some("10.1.2.3".parse().expect("ip")),
            session: Some("imap-7".to_owned()),
        };
        let mut proxy = Self {
            session: Session::new(Limits::default()),
            tracer: ImapTracer::new(config, connection),
            traces: Vec::new(),
        };
        proxy.s(GREETING);
        proxy
    }

    /// Client → server bytes.
    fn c(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        self.session
            .client_bytes(bytes.as_ref())
            .expect("client decodes");
        self
    }

    /// Server → client bytes.
    fn s(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let (events, exchanges) = self
            .session
            .server_bytes(bytes.as_ref())
            .expect("server decodes");
        let traces = self.tracer.on_server(&events, &exchanges);
        self.traces.extend(traces);
        self
    }

    fn login(&mut self) -> &mut Self {
        self.c(format!("a1 LOGIN dr.martin \"pw-{CANARY}\"\r\n"))
            .s("a1 OK [CAPABILITY IMAP4rev1 SASL-IR IDLE MOVE UIDPLUS QRESYNC] Logged in\r\n")
    }

    fn select_inbox(&mut self) -> &mut Self {
        self.c("a2 SELECT INBOX\r\n").s(
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
             * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
             * 3 EXISTS\r\n* 0 RECENT\r\n\
             * OK [UIDVALIDITY 1732800000] UIDs valid\r\n* OK [UIDNEXT 43] Predicted next UID\r\n\
             a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n",
        )
    }

    /// Takes the traces so far, each checked by registre's content guard.
    fn take(&mut self) -> Vec<Trace> {
        let traces = std::mem::take(&mut self.traces);
        for trace in &traces {
            check(trace);
        }
        traces
    }
}

/// The trace serialises to JSON that `parse_trace` accepts unchanged, with
/// no canary in it.
fn check(trace: &Trace) {
    let json = serde_json::to_vec(trace).expect("serialises");
    let parsed = parse_trace(&json, &TraceLimits::default())
        .unwrap_or_else(|e| panic!("refused by the content guard: {e}: {trace:?}"));
    assert_eq!(&parsed, trace);
    let text = String::from_utf8_lossy(&json);
    assert!(!text.contains(CANARY), "canary in {text}");
    assert!(!text.to_ascii_lowercase().contains("canary"), "{text}");
}

fn martin() -> Actor {
    Actor {
        auth: Some("password".into()),
        id: "dr.martin".into(),
        id_type: Some("login".into()),
    }
}

fn ok(text: &str) -> Option<Response> {
    Some(Response {
        status: "OK".into(),
        text: Some(text.into()),
    })
}

fn target(trace: &Trace) -> &Target {
    trace.target.as_ref().expect("target")
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn message() -> String {
    format!(
        "From: Dr Durand <dr.durand@hopital.mssante.fr>\r\nTo: {MAILBOX}\r\n\
         Subject: Compte rendu {CANARY}\r\nMessage-ID: <cr-1@hopital.mssante.fr>\r\n\r\n\
         Patient {CANARY}, resultats joints.\r\n"
    )
}

#[test]
fn log_in_read_mark_delete_expunge_log_out() {
    let msg = message();
    let n = msg.len();
    let mut p = Proxy::new();
    p.login().select_inbox();
    // Metadata only: no trace, but the UIDs are learned.
    p.c("a3 FETCH 1:3 (UID FLAGS RFC822.SIZE INTERNALDATE)\r\n").s(
        "* 1 FETCH (UID 40 FLAGS (\\Seen) RFC822.SIZE 812 INTERNALDATE \"28-Nov-2026 09:00:00 +0100\")\r\n\
         * 2 FETCH (UID 41 FLAGS () RFC822.SIZE 900 INTERNALDATE \"28-Nov-2026 10:00:00 +0100\")\r\n\
         * 3 FETCH (UID 42 FLAGS () RFC822.SIZE 1010 INTERNALDATE \"28-Nov-2026 11:00:00 +0100\")\r\n\
         a3 OK Fetch completed (0.001 + 0.000 secs).\r\n",
    );
    // Envelope: the subject is in the answer, a consultation.
    p.c("a4 UID FETCH 41:42 (UID ENVELOPE)\r\n").s(format!(
        "* 2 FETCH (UID 41 ENVELOPE (\"Fri, 28 Nov 2026 10:00:00 +0100\" \"Objet {CANARY}\" ((\"Dr Durand\" NIL \"dr.durand\" \"hopital.mssante.fr\")) NIL NIL NIL NIL NIL NIL \"<a@b>\"))\r\n\
         * 3 FETCH (UID 42 ENVELOPE (\"Fri, 28 Nov 2026 11:00:00 +0100\" {{27}}\r\nCompte rendu {CANARY} NIL NIL NIL NIL NIL NIL NIL NIL \"<c@d>\"))\r\n\
         a4 OK Fetch completed (0.001 + 0.000 secs).\r\n"
    ));
    // Read the message.
    p.c("a5 UID FETCH 42 (UID RFC822.SIZE BODY.PEEK[])\r\n")
        .s(format!(
            "* 3 FETCH (UID 42 RFC822.SIZE {n} BODY[] {{{n}}}\r\n{msg})\r\n\
         a5 OK Fetch completed (0.002 + 0.000 secs).\r\n"
        ));
    // Mark it read.
    p.c("a6 UID STORE 42 +FLAGS.SILENT (\\Seen)\r\n")
        .s("a6 OK Store completed (0.001 + 0.000 secs).\r\n");
    // Delete: mark, then expunge (sequence number 3 mapped to UID 42).
    p.c("a7 STORE 3 +FLAGS (\\Deleted)\r\n").s(
        "* 3 FETCH (FLAGS (\\Seen \\Deleted))\r\na7 OK Store completed (0.001 + 0.000 secs).\r\n",
    );
    p.c("a8 EXPUNGE\r\n")
        .s("* 3 EXPUNGE\r\na8 OK Expunge completed (0.002 + 0.000 secs).\r\n");
    p.c("a9 LOGOUT\r\n")
        .s("* BYE Logging out\r\na9 OK Logout completed (0.001 + 0.000 secs).\r\n");
    assert_eq!(p.tracer.connection_closed(), None, "LOGOUT already traced");

    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "connexion",
            "consultation",
            "consultation",
            "marquage",
            "suppression",
            "suppression",
            "deconnexion"
        ]
    );
    for trace in &traces {
        assert_eq!(trace.class.as_str(), "mss");
        assert_eq!(trace.occurred_at, WHEN);
        assert_eq!(trace.actor, martin());
        assert_eq!(trace.outcome, Some(Outcome::Success));
        assert_eq!(target(trace).mailbox.as_deref(), Some(MAILBOX));
        let source = trace.source.as_ref().expect("source");
        assert_eq!(source.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(source.session.as_deref(), Some("imap-7"));
        assert_eq!(source.software.as_deref(), Some("registre-proxy"));
    }

    let login = &traces[0];
    assert_eq!(login.request.as_deref(), Some("LOGIN dr.martin ***"));
    assert_eq!(login.response, ok("[CAPABILITY …] Logged in"));
    assert_eq!(
        login.target,
        Some(Target {
            mailbox: Some(MAILBOX.into()),
            ..Target::default()
        })
    );

    let envelope = &traces[1];
    assert_eq!(
        envelope.request.as_deref(),
        Some("UID FETCH 41:42 (UID ENVELOPE)")
    );
    assert_eq!(target(envelope).folder.as_deref(), Some("INBOX"));
    assert_eq!(target(envelope).uids.as_deref(), Some("41:42"));

    let read = &traces[2];
    assert_eq!(
        read.target,
        Some(Target {
            folder: Some("INBOX".into()),
            mailbox: Some(MAILBOX.into()),
            uids: Some("42".into()),
            ..Target::default()
        })
    );
    assert_eq!(
        read.request.as_deref(),
        Some("UID FETCH 42 (UID RFC822.SIZE BODY.PEEK[])")
    );
    assert_eq!(read.response, ok("Fetch completed (0.002 + 0.000 secs)."));

    let seen = &traces[3];
    assert_eq!(
        seen.request.as_deref(),
        Some("UID STORE 42 +FLAGS.SILENT (\\Seen)")
    );
    assert_eq!(target(seen).uids.as_deref(), Some("42"));

    let marked = &traces[4];
    assert_eq!(
        marked.request.as_deref(),
        Some("STORE 3 +FLAGS (\\Deleted)")
    );
    assert_eq!(
        target(marked).uids.as_deref(),
        Some("42"),
        "seq 3 is UID 42"
    );

    let expunged = &traces[5];
    assert_eq!(expunged.request.as_deref(), Some("EXPUNGE"));
    assert_eq!(
        expunged.target,
        Some(Target {
            folder: Some("INBOX".into()),
            mailbox: Some(MAILBOX.into()),
            uids: Some("42".into()),
            ..Target::default()
        })
    );
    assert_eq!(
        expunged.response,
        ok("Expunge completed (0.002 + 0.000 secs).")
    );

    let logout = &traces[6];
    assert_eq!(logout.request.as_deref(), Some("LOGOUT"));
    assert_eq!(target(logout).folder, None);
    assert!(!format!("{:?}", p.tracer).contains(CANARY));
}

#[test]
fn imaplib_read_by_sequence_number() {
    let msg = message();
    let n = msg.len();
    let mut p = Proxy::new();
    p.login().select_inbox();
    p.c("a3 SEARCH UNSEEN\r\n")
        .s("* SEARCH 2 3\r\na3 OK Search completed.\r\n");
    // No UID anywhere: the request says the numbers are sequence numbers.
    p.c("a4 FETCH 2 (RFC822)\r\n").s(format!(
        "* 2 FETCH (FLAGS (\\Seen) RFC822 {{{n}}}\r\n{msg})\r\na4 OK Fetch completed.\r\n"
    ));
    // Once the UID is known, a later sequence-number command names it.
    p.c("a5 FETCH 2 (UID)\r\n")
        .s("* 2 FETCH (UID 41)\r\na5 OK Fetch completed.\r\n");
    p.c("a6 STORE 2 -FLAGS (\\Seen)\r\n")
        .s("* 2 FETCH (FLAGS ())\r\na6 OK Store completed.\r\n");
    p.c("a7 FETCH 2 (BODY[TEXT])\r\n").s(format!(
        "* 2 FETCH (BODY[TEXT] {{{n}}}\r\n{msg} FLAGS (\\Seen))\r\na7 OK Fetch completed.\r\n"
    ));
    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(
        actions,
        ["connexion", "consultation", "marquage", "consultation"]
    );
    assert_eq!(
        traces[1].request.as_deref(),
        Some("FETCH 2 (RFC822) ; sequence numbers, UIDs not known")
    );
    assert_eq!(target(&traces[1]).uids, None);
    assert_eq!(
        traces[2].request.as_deref(),
        Some("STORE 2 -FLAGS (\\Seen)")
    );
    assert_eq!(target(&traces[2]).uids.as_deref(), Some("41"));
    assert_eq!(traces[3].request.as_deref(), Some("FETCH 2 (BODY[TEXT])"));
    assert_eq!(target(&traces[3]).uids.as_deref(), Some("41"));
}

#[test]
fn move_to_trash_and_copy() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    p.c("a3 UID MOVE 42 Trash\r\n").s(
        "* OK [COPYUID 1732800001 42 7] Moved UIDs.\r\n* 3 EXPUNGE\r\n\
         a3 OK Move completed (0.003 + 0.000 secs).\r\n",
    );
    p.c("a4 UID COPY 40:41 \"&AMk-l&AOk-ments archiv&AOk-s\"\r\n")
        .s("a4 OK [COPYUID 1732800002 40:41 1:2] Copy completed (0.002 + 0.000 secs).\r\n");
    p.c("a5 UID MOVE 40 Nowhere\r\n")
        .s("a5 NO [TRYCREATE] Mailbox doesn't exist: Nowhere (0.001 + 0.000 secs).\r\n");
    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(
        actions,
        ["connexion", "deplacement", "copie", "deplacement"]
    );

    let moved = &traces[1];
    assert_eq!(
        moved.target,
        Some(Target {
            destination: Some("Trash".into()),
            folder: Some("INBOX".into()),
            mailbox: Some(MAILBOX.into()),
            uids: Some("42".into()),
            ..Target::default()
        })
    );
    assert_eq!(moved.request.as_deref(), Some("UID MOVE 42 Trash"));
    assert_eq!(
        moved.response,
        ok("[COPYUID 1732800001 42 7] Move completed (0.003 + 0.000 secs).")
    );

    let copied = &traces[2];
    assert_eq!(
        target(copied).destination.as_deref(),
        Some("Éléments archivés")
    );
    assert_eq!(target(copied).uids.as_deref(), Some("40:41"));
    assert_eq!(
        copied.response,
        ok("[COPYUID 1732800002 40:41 1:2] Copy completed (0.002 + 0.000 secs).")
    );

    let refused = &traces[3];
    assert_eq!(refused.outcome, Some(Outcome::Failure));
    assert_eq!(
        refused.response,
        Some(Response {
            status: "NO".into(),
            text: Some("[TRYCREATE] Mailbox doesn't exist: Nowhere (0.001 + 0.000 secs).".into()),
        })
    );
    assert_eq!(target(refused).destination.as_deref(), Some("Nowhere"));
    assert_eq!(target(refused).uids.as_deref(), Some("40"));
}

#[test]
fn append_to_sent() {
    let msg = message();
    let n = msg.len();
    let mut p = Proxy::new();
    p.login();
    p.c(format!(
        "a3 APPEND Sent (\\Seen) \"28-Nov-2026 15:42:00 +0100\" {{{n}}}\r\n"
    ))
    .s("+ OK\r\n")
    .c(format!("{msg}\r\n"))
    .s("a3 OK [APPENDUID 1732800003 12] Append completed (0.004 + 0.000 secs).\r\n");
    // Non-synchronising literal, refused by quota.
    p.c(format!(
        "a4 APPEND \"&AMk-l&AOk-ments envoy&AOk-s\" {{{n}+}}\r\n{msg}\r\n"
    ))
    .s("a4 NO [OVERQUOTA] Quota exceeded (mailbox for user is full)\r\n");
    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(actions, ["connexion", "depot", "depot"]);
    let n = n as u64;
    let sent = &traces[1];
    assert_eq!(
        sent.target,
        Some(Target {
            folder: Some("Sent".into()),
            mailbox: Some(MAILBOX.into()),
            size: Some(n),
            uids: Some("12".into()),
            ..Target::default()
        })
    );
    assert_eq!(
        sent.request,
        Some(format!(
            "APPEND Sent (\\Seen) \"28-Nov-2026 15:42:00 +0100\" {{{n} bytes}}"
        ))
    );
    assert_eq!(
        sent.response,
        ok("[APPENDUID 1732800003 12] Append completed (0.004 + 0.000 secs).")
    );
    let refused = &traces[2];
    assert_eq!(refused.outcome, Some(Outcome::Failure));
    assert_eq!(target(refused).folder.as_deref(), Some("Éléments envoyés"));
    assert_eq!(target(refused).size, Some(n));
    assert_eq!(
        refused.request,
        Some(format!(
            "APPEND \"&AMk-l&AOk-ments envoy&AOk-s\" {{{n} bytes}}"
        ))
    );
}

#[test]
fn idle_is_not_an_action_but_its_expunges_renumber() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    p.c("a3 FETCH 1:3 (UID)\r\n").s(
        "* 1 FETCH (UID 40)\r\n* 2 FETCH (UID 41)\r\n* 3 FETCH (UID 42)\r\na3 OK Fetch completed.\r\n",
    );
    p.c("a4 IDLE\r\n")
        .s("+ idling\r\n")
        .s("* 4 EXISTS\r\n* 1 EXPUNGE\r\n")
        .c("DONE\r\n")
        .s("a4 OK Idle completed (0.001 + 9.980 + 9.979 secs).\r\n");
    // Another session expunged UID 40: sequence 2 is now UID 42.
    p.c("a5 FETCH 2 (BODY.PEEK[HEADER.FIELDS (FROM DATE)])\r\n")
        .s("* 2 FETCH (BODY[HEADER.FIELDS (FROM DATE)] {4}\r\nx: y)\r\na5 OK Fetch completed.\r\n");
    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(actions, ["connexion", "consultation"]);
    assert_eq!(target(&traces[1]).uids.as_deref(), Some("42"));
}

#[test]
fn failed_login_is_traced_and_opens_nothing() {
    let mut p = Proxy::new();
    p.c(format!("a1 LOGIN dr.martin \"wrong-{CANARY}\"\r\n"))
        .s("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
    // Not logged in: refused, nothing to trace.
    p.c("a2 SELECT INBOX\r\n")
        .s("a2 BAD Error in IMAP command SELECT: Not logged in\r\n");
    p.c("a3 UID FETCH 1 BODY[]\r\n")
        .s("a3 BAD Error in IMAP command UID FETCH: Not logged in\r\n");
    p.c("a4 LOGOUT\r\n")
        .s("* BYE Logging out\r\na4 OK Logout completed.\r\n");
    assert_eq!(p.tracer.connection_closed(), None);
    let traces = p.take();
    assert_eq!(traces.len(), 1);
    let failed = &traces[0];
    assert_eq!(failed.action, Action::Connexion);
    assert_eq!(failed.actor, martin());
    assert_eq!(failed.outcome, Some(Outcome::Failure));
    assert_eq!(failed.request.as_deref(), Some("LOGIN dr.martin ***"));
    assert_eq!(
        failed.response,
        Some(Response {
            status: "NO".into(),
            text: Some("[AUTHENTICATIONFAILED] Authentication failed.".into()),
        })
    );
    assert_eq!(target(failed).mailbox.as_deref(), Some(MAILBOX));
}

#[test]
fn authenticate_plain_names_the_authenticated_identity() {
    let mut p = Proxy::new();
    let ir = b64(format!("\0{MAILBOX}\0pw-{CANARY}"));
    p.c(format!("a1 AUTHENTICATE PLAIN {ir}\r\n"))
        .s("a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
    // Authorisation identity (a shared mailbox) after a continuation.
    p.c("a2 AUTHENTICATE PLAIN\r\n")
        .s("+ \r\n")
        .c(format!(
            "{}\r\n",
            b64(format!("secretariat\0dr.martin\0pw-{CANARY}"))
        ))
        .s("a2 OK Logged in\r\n");
    let traces = p.take();
    assert_eq!(traces.len(), 2);
    let actor = |id: &str| Actor {
        auth: Some("plain".into()),
        id: id.into(),
        id_type: Some("login".into()),
    };
    assert_eq!(traces[0].actor, actor(MAILBOX));
    assert_eq!(traces[0].outcome, Some(Outcome::Failure));
    assert_eq!(traces[0].request.as_deref(), Some("AUTHENTICATE PLAIN"));
    assert_eq!(traces[1].actor, actor("dr.martin"));
    assert_eq!(
        target(&traces[1]).mailbox.as_deref(),
        Some("secretariat@hopital.mssante.fr")
    );
    assert_eq!(traces[1].outcome, Some(Outcome::Success));
}

#[test]
fn bearer_tokens_give_their_subject_never_themselves() {
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{CANARY}.sig");
    let xoauth2 = b64(format!("user={MAILBOX}\x01auth=Bearer {token}\x01\x01"));
    let oauthbearer = b64(format!(
        "n,a={MAILBOX},\x01host=imap\x01port=993\x01auth=Bearer {token}\x01\x01"
    ));

    // Without a hook: the login the SASL response names.
    let mut p = Proxy::new();
    p.c(format!("a1 AUTHENTICATE XOAUTH2 {xoauth2}\r\n"))
        .s("a1 OK Logged in\r\n");
    let traces = p.take();
    assert_eq!(
        traces[0].actor,
        Actor {
            auth: Some("xoauth2".into()),
            id: MAILBOX.into(),
            id_type: Some("login".into()),
        }
    );

    // With a hook that checks the token: its subject.
    let hook: BearerSubject = Arc::new(|token: &Secret| {
        token
            .expose()
            .starts_with(b"eyJ")
            .then(|| "810001234567".to_owned())
    });
    for (mechanism, ir) in [("XOAUTH2", &xoauth2), ("OAUTHBEARER", &oauthbearer)] {
        let mut p = Proxy::with(config(Some(hook.clone())));
        p.c(format!("a1 AUTHENTICATE {mechanism} {ir}\r\n"))
            .s("a1 OK Logged in\r\n");
        p.select_inbox();
        p.c("a3 UID FETCH 42 BODY.PEEK[]\r\n")
            .s("* 3 FETCH (UID 42 BODY[] {4}\r\nabcd)\r\na3 OK Fetch completed.\r\n");
        let traces = p.take();
        assert_eq!(traces.len(), 2);
        let expected = Actor {
            auth: Some(mechanism.to_ascii_lowercase()),
            id: "810001234567".into(),
            id_type: Some("oidc".into()),
        };
        for trace in &traces {
            assert_eq!(trace.actor, expected);
            assert_eq!(target(trace).mailbox.as_deref(), Some(MAILBOX));
        }
        assert_eq!(
            traces[0].request.as_deref(),
            Some(format!("AUTHENTICATE {mechanism}").as_str())
        );
        assert!(!format!("{:?}", p.tracer).contains(CANARY));
    }
}

#[test]
fn connection_end_without_logout() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    p.take();
    let closed = p.tracer.connection_closed().expect("deconnexion");
    check(&closed);
    assert_eq!(closed.action, Action::Deconnexion);
    assert_eq!(closed.actor, martin());
    assert_eq!(closed.occurred_at, WHEN);
    assert_eq!(
        closed.request.as_deref(),
        Some("(connection closed without LOGOUT)")
    );
    assert_eq!(closed.response, None);
    assert_eq!(target(&closed).mailbox.as_deref(), Some(MAILBOX));
    assert_eq!(p.tracer.connection_closed(), None, "only once");
}

#[test]
fn close_expunges_what_was_marked() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    p.c("a3 UID STORE 40:41 +FLAGS.SILENT (\\Deleted)\r\n")
        .s("a3 OK Store completed.\r\n");
    p.c("a4 UID STORE 41 -FLAGS.SILENT (\\Deleted)\r\n")
        .s("a4 OK Store completed.\r\n");
    p.c("a5 CLOSE\r\n").s("a5 OK Close completed.\r\n");
    // Nothing marked: CLOSE deletes nothing.
    p.select_inbox();
    p.c("a6 CLOSE\r\n").s("a6 OK Close completed.\r\n");
    // Read-only: CLOSE never expunges.
    p.c("a7 EXAMINE INBOX\r\n")
        .s("* 3 EXISTS\r\na7 OK [READ-ONLY] Examine completed.\r\n");
    p.c("a8 STORE 1 +FLAGS (\\Deleted)\r\n")
        .s("a8 NO Mailbox is read-only.\r\n");
    p.c("a9 CLOSE\r\n").s("a9 OK Close completed.\r\n");
    // After CLOSE no folder is selected.
    p.c("b1 UID FETCH 1 BODY[]\r\n")
        .s("b1 BAD Error in IMAP command UID FETCH: No mailbox selected.\r\n");

    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "connexion",
            "suppression",
            "marquage",
            "suppression",
            "suppression",
            "consultation"
        ]
    );
    assert_eq!(target(&traces[1]).uids.as_deref(), Some("40:41"));
    assert_eq!(
        traces[2].request.as_deref(),
        Some("UID STORE 41 -FLAGS.SILENT (\\Deleted)")
    );
    let closed = &traces[3];
    assert_eq!(
        closed.request.as_deref(),
        Some("CLOSE ; messages marked \\Deleted in this session")
    );
    assert_eq!(target(closed).uids.as_deref(), Some("40"));
    assert_eq!(target(closed).folder.as_deref(), Some("INBOX"));
    // The refused mark in the read-only mailbox is traced as a failure.
    assert_eq!(traces[4].outcome, Some(Outcome::Failure));
    assert_eq!(target(&traces[4]).uids, None);
    // A refused read with no mailbox selected: failure, no folder.
    assert_eq!(traces[5].outcome, Some(Outcome::Failure));
    assert_eq!(target(&traces[5]).folder, None);
    assert_eq!(target(&traces[5]).uids.as_deref(), Some("1"));
}

#[test]
fn expunge_variants() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    // QRESYNC: VANISHED names the UIDs.
    p.c("a3 ENABLE QRESYNC\r\n")
        .s("* ENABLED QRESYNC\r\na3 OK Enabled.\r\n");
    p.c("a4 UID EXPUNGE 40:41\r\n")
        .s("* VANISHED (EARLIER) 1:3\r\n* VANISHED 40:41\r\na4 OK Expunge completed.\r\n");
    // Sequence numbers never mapped: the count only.
    p.c("a5 EXPUNGE\r\n")
        .s("* 5 EXPUNGE\r\n* 5 EXPUNGE\r\na5 OK Expunge completed.\r\n");
    // Nothing expunged: no deletion.
    p.c("a6 EXPUNGE\r\n").s("a6 OK Expunge completed.\r\n");
    // A refused expunge is traced.
    p.c("a7 UID EXPUNGE 9\r\n")
        .s("a7 NO [SERVERBUG] Internal error occurred.\r\n");
    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(
        actions,
        ["connexion", "suppression", "suppression", "suppression"]
    );
    assert_eq!(target(&traces[1]).uids.as_deref(), Some("40:41"));
    assert_eq!(
        traces[2].request.as_deref(),
        Some("EXPUNGE ; 2 messages expunged, UIDs not known")
    );
    assert_eq!(target(&traces[2]).uids, None);
    assert_eq!(traces[3].outcome, Some(Outcome::Failure));
    assert_eq!(target(&traces[3]).uids.as_deref(), Some("9"));
}

#[test]
fn pipelined_commands_keep_their_own_answers() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    p.c("b1 UID FETCH 40 BODY.PEEK[1]\r\nb2 UID STORE 40 +FLAGS (\\Flagged)\r\nb3 NOOP\r\n")
        .s(
            "* 1 FETCH (UID 40 BODY[1] {3}\r\nabc)\r\nb1 OK Fetch completed.\r\n\
            * 1 FETCH (UID 40 FLAGS (\\Flagged))\r\nb2 OK Store completed.\r\n\
            b3 OK NOOP completed.\r\n",
        );
    let traces = p.take();
    let summary: Vec<_> = traces
        .iter()
        .skip(1)
        .map(|t| {
            (
                t.action.as_str(),
                t.response.as_ref().and_then(|r| r.text.clone()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("consultation", Some("Fetch completed.".to_owned())),
            ("marquage", Some("Store completed.".to_owned())),
        ]
    );
}

#[test]
fn hostile_names_still_pass_the_guard() {
    let mut p = Proxy::new();
    p.login();
    p.c("a2 SELECT \"we{3}ird\ttab\"\r\n")
        .s("a2 OK [READ-WRITE] Select completed.\r\n");
    p.c("a3 UID COPY 1 \"a{5}b\"\r\n")
        .s("a3 OK Copy completed.\r\n");
    // A mailbox sent as a literal: its name is unknown.
    p.c("a4 UID MOVE 1 {5}\r\n")
        .s("+ OK\r\n")
        .c("Trash\r\n")
        .s("a4 OK Move completed.\r\n");
    let long = "x".repeat(3000);
    p.c(format!("a5 UID STORE 1 +FLAGS ({long})\r\n"))
        .s(format!("a5 NO {long}\r\n"));
    let traces = p.take();
    let actions: Vec<_> = traces.iter().map(|t| t.action.as_str()).collect();
    assert_eq!(actions, ["connexion", "copie", "deplacement", "marquage"]);
    assert_eq!(target(&traces[1]).folder.as_deref(), Some("we{3}ird tab"));
    assert_eq!(target(&traces[1]).destination.as_deref(), Some("a{5}b"));
    assert_eq!(traces[1].request.as_deref(), Some("UID COPY 1 \"a{ 5}b\""));
    assert_eq!(target(&traces[2]).destination, None);
    assert_eq!(traces[2].request.as_deref(), Some("UID MOVE 1 {5 bytes}"));
    let long = &traces[3];
    assert!(long.request.as_ref().is_some_and(|r| r.len() <= 2048));
    assert!(
        long.response
            .as_ref()
            .and_then(|r| r.text.as_ref())
            .is_some_and(|t| t.len() <= 1024 && t.ends_with('…'))
    );
}

#[test]
fn large_uid_sets_are_bounded() {
    let mut p = Proxy::new();
    p.login().select_inbox();
    let responses: String = (1..=1500)
        .map(|i| format!("* {i} FETCH (UID {} BODY[] {{1}}\r\nx)\r\n", i * 2))
        .collect();
    p.c("a3 FETCH 1:1500 (UID BODY.PEEK[])\r\n")
        .s(format!("{responses}a3 OK Fetch completed.\r\n"));
    let traces = p.take();
    let uids = target(&traces[1]).uids.clone().expect("uids");
    assert!(uids.len() <= 1024 && uids.starts_with("2,4,6,") && uids.ends_with(",…"));
}
