//! Postfix and Dovecot submission transcripts through the real parser
//! ([`Session`]) and the tracer: one trace per action, checked field by
//! field; every trace passes registre's content guard; no canary (subject,
//! body, attachment, password, token) ever reaches a trace.

use std::sync::Arc;

use base64::Engine as _;
use registre_model::{Limits as TraceLimits, parse_trace};

use super::*;
use crate::smtp::{Limits, Session};
use crate::trace_common::{BearerSubject, Clock};

const CANARY: &str = "CANARY-77c1e0";
const WHEN: &str = "2026-11-28T15:42:07.123+01:00";

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
    tracer: SmtpTracer,
    traces: Vec<Trace>,
}

impl Proxy {
    fn new() -> Self {
        Self::with(config(None))
    }

    fn with(config: Arc<TracerConfig>) -> Self {
        let connection = ConnectionInfo {
            client_ip: Some("10.1.2.3".parse().expect("ip")),
            session: Some("smtp-7".to_owned()),
        };
        let mut proxy = Self {
            session: Session::new(Limits::default()),
            tracer: SmtpTracer::new(config, connection),
            traces: Vec::new(),
        };
        proxy.s("220 mx.hopital.mssante.fr ESMTP Postfix\r\n");
        proxy.c("EHLO [10.1.2.3]\r\n").s(
            "250-mx.hopital.mssante.fr\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN XOAUTH2\r\n250 CHUNKING\r\n",
        );
        proxy
    }

    fn c(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let decoded = self
            .session
            .client_bytes(bytes.as_ref())
            .expect("client decodes");
        for outcome in &decoded.outcomes {
            self.traces.extend(self.tracer.trace(outcome));
        }
        self
    }

    fn s(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let decoded = self
            .session
            .server_bytes(bytes.as_ref())
            .expect("server decodes");
        for outcome in &decoded.outcomes {
            self.traces.extend(self.tracer.trace(outcome));
        }
        self
    }

    fn close(&mut self) -> &mut Self {
        for outcome in self.session.finish() {
            self.traces.extend(self.tracer.trace(&outcome));
        }
        self.traces.extend(self.tracer.connection_closed());
        self
    }

    fn login(&mut self) -> &mut Self {
        let plain = b64(&format!("\0dr.martin\0pw-{CANARY}"));
        self.c(format!("AUTH PLAIN {plain}\r\n"))
            .s("235 2.7.0 Authentication successful\r\n")
    }

    fn take(&mut self) -> Vec<Trace> {
        let traces = std::mem::take(&mut self.traces);
        for trace in &traces {
            check(trace);
        }
        traces
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// The trace serialises to JSON that `parse_trace` accepts unchanged, with
/// no canary in it.
fn check(trace: &Trace) {
    let json = serde_json::to_vec(trace).expect("serialises");
    let parsed = parse_trace(&json, &TraceLimits::default())
        .unwrap_or_else(|e| panic!("refused by the content guard: {e}: {trace:?}"));
    assert_eq!(&parsed, trace);
    let text = String::from_utf8_lossy(&json);
    assert!(!text.to_ascii_lowercase().contains("canary"), "{text}");
    assert_eq!(trace.occurred_at, WHEN);
    assert_eq!(trace.class.as_str(), "mss");
    let source = trace.source.as_ref().expect("source");
    assert_eq!(source.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(source.session.as_deref(), Some("smtp-7"));
}

fn martin() -> Actor {
    Actor {
        auth: Some("plain".into()),
        id: "dr.martin".into(),
        id_type: Some("login".into()),
    }
}

fn message() -> String {
    format!(
        "From: dr.martin@hopital.mssante.fr\r\nSubject: {CANARY} subject\r\n\
         Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nBonjour {CANARY}\r\n\
         ..point\r\n--b\r\nContent-Disposition: attachment; filename=\"{CANARY}.pdf\"\r\n\r\n\
         JVBERi0xLjQK{CANARY}\r\n--b--\r\n"
    )
}

#[test]
fn auth_plain_then_a_pipelined_send_with_a_refused_recipient() {
    let mut proxy = Proxy::new();
    proxy.login();
    proxy.c(
        "MAIL FROM:<dr.martin@hopital.mssante.fr> SIZE=900 BODY=8BITMIME\r\n\
         RCPT TO:<patient.x@hopital.mssante.fr> NOTIFY=FAILURE\r\n\
         RCPT TO:<refuse@hopital.mssante.fr>\r\nDATA\r\n",
    );
    proxy.s("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n\
         550 5.7.1 <refuse@hopital.mssante.fr>: Recipient address rejected: refused\r\n\
         354 End data with <CR><LF>.<CR><LF>\r\n");
    let message = message();
    proxy.c(format!("{message}.\r\n"));
    proxy.s("250 2.0.0 Ok: queued as 4F2A1C3B9D\r\n");
    proxy.c("QUIT\r\n").s("221 2.0.0 Bye\r\n").close();
    let traces = proxy.take();
    assert_eq!(traces.len(), 3, "{traces:#?}");

    let connexion = &traces[0];
    assert_eq!(connexion.action, Action::Connexion);
    assert_eq!(connexion.actor, martin());
    assert_eq!(connexion.outcome, Some(TraceOutcome::Success));
    assert_eq!(connexion.request.as_deref(), Some("AUTH PLAIN"));
    assert_eq!(
        connexion.response,
        Some(Response {
            status: "235".into(),
            text: Some("2.7.0 Authentication successful".into())
        })
    );
    assert_eq!(
        connexion.target.as_ref().and_then(|t| t.mailbox.as_deref()),
        Some("dr.martin@hopital.mssante.fr")
    );

    let envoi = &traces[1];
    assert_eq!(envoi.action, Action::Envoi);
    assert_eq!(envoi.actor, martin());
    assert_eq!(envoi.outcome, Some(TraceOutcome::Success));
    assert_eq!(
        envoi.request.as_deref(),
        Some(
            "MAIL FROM:<dr.martin@hopital.mssante.fr> SIZE=900 BODY=8BITMIME ; \
             RCPT TO:<patient.x@hopital.mssante.fr> NOTIFY=FAILURE ; \
             RCPT TO:<refuse@hopital.mssante.fr> → 550 5.7.1 <refuse@hopital.mssante.fr>: \
             Recipient address rejected: refused ; DATA"
        )
    );
    assert_eq!(
        envoi.response,
        Some(Response {
            status: "250".into(),
            text: Some("2.0.0 Ok: queued as 4F2A1C3B9D".into())
        })
    );
    assert_eq!(
        envoi.target,
        Some(Target {
            mailbox: Some("dr.martin@hopital.mssante.fr".into()),
            recipients: Some(vec![
                "patient.x@hopital.mssante.fr".into(),
                "refuse@hopital.mssante.fr".into()
            ]),
            // One stuffed dot removed.
            size: Some(message.len() as u64 - 1),
            ..Target::default()
        })
    );

    let quit = &traces[2];
    assert_eq!(quit.action, Action::Deconnexion);
    assert_eq!(quit.request.as_deref(), Some("QUIT"));
    assert_eq!(
        quit.response.as_ref().map(|r| r.status.as_str()),
        Some("221")
    );
}

#[test]
fn every_recipient_refused_is_still_an_envoi() {
    let mut proxy = Proxy::new();
    proxy.login();
    proxy.c("MAIL FROM:<dr.martin@hopital.mssante.fr>\r\nRCPT TO:<nobody@x.fr>\r\nDATA\r\n");
    proxy.s(
        "250 2.1.0 Ok\r\n550 5.1.1 <nobody@x.fr>: Recipient address rejected\r\n\
         554 5.5.1 Error: no valid recipients\r\n",
    );
    // smtplib's way: RCPT refused, RSET, no DATA.
    proxy.c("MAIL FROM:<dr.martin@hopital.mssante.fr>\r\n");
    proxy.s("250 2.1.0 Ok\r\n");
    proxy.c("RCPT TO:<nobody@x.fr>\r\n");
    proxy.s("550 5.1.1 <nobody@x.fr>: Recipient address rejected\r\n");
    proxy.c("RSET\r\n").s("250 2.0.0 Ok\r\n");
    // Refused before any recipient.
    proxy.c("MAIL FROM:<dr.martin@hopital.mssante.fr>\r\n");
    proxy.s("452 4.3.1 Insufficient system storage\r\n");
    proxy.close();
    let traces = proxy.take();
    let summary: Vec<_> = traces
        .iter()
        .map(|t| {
            (
                t.action.clone(),
                t.outcome,
                t.response.as_ref().map(|r| r.status.clone()),
                t.target.as_ref().and_then(|t| t.size),
                t.request.clone().unwrap_or_default(),
            )
        })
        .collect();
    let f = Some(TraceOutcome::Failure);
    assert_eq!(
        summary,
        [
            (Action::Connexion, Some(TraceOutcome::Success), Some("235".into()), None, "AUTH PLAIN".into()),
            (
                Action::Envoi,
                f,
                Some("554".into()),
                None,
                "MAIL FROM:<dr.martin@hopital.mssante.fr> ; RCPT TO:<nobody@x.fr> → 550 5.1.1 <nobody@x.fr>: Recipient address rejected ; DATA".into()
            ),
            (
                Action::Envoi,
                f,
                Some("550".into()),
                None,
                "MAIL FROM:<dr.martin@hopital.mssante.fr> ; RCPT TO:<nobody@x.fr> → 550 5.1.1 <nobody@x.fr>: Recipient address rejected ; reset before the message".into()
            ),
            (
                Action::Envoi,
                f,
                Some("452".into()),
                None,
                "MAIL FROM:<dr.martin@hopital.mssante.fr> ; connection closed before the message".into()
            ),
            (
                Action::Deconnexion,
                Some(TraceOutcome::Success),
                None,
                None,
                "(connection closed without QUIT)".into()
            ),
        ]
    );
}

#[test]
fn failed_and_cancelled_auth_never_keep_the_password() {
    let mut proxy = Proxy::new();
    let wrong = b64(&format!("\0dr.martin@hopital.mssante.fr\0bad-{CANARY}"));
    proxy
        .c(format!("AUTH PLAIN {wrong}\r\n"))
        .s("535 5.7.8 Error: authentication failed: authentication failure\r\n");
    proxy
        .c("AUTH LOGIN\r\n")
        .s("334 VXNlcm5hbWU6\r\n")
        .c(format!("{}\r\n", b64("dr.durand")))
        .s("334 UGFzc3dvcmQ6\r\n")
        .c(format!("{}\r\n", b64(&format!("pw-{CANARY}"))))
        .s("535 5.7.8 Authentication failed\r\n");
    proxy
        .c("AUTH PLAIN\r\n")
        .s("334 \r\n")
        .c("*\r\n")
        .s("501 5.5.2 Authentication canceled\r\n");
    proxy.c("QUIT\r\n").s("221 2.0.0 Bye\r\n").close();
    let traces = proxy.take();
    // No deconnexion: nobody was authenticated.
    assert_eq!(traces.len(), 3, "{traces:#?}");
    assert!(
        traces
            .iter()
            .all(|t| t.action == Action::Connexion && t.outcome == Some(TraceOutcome::Failure))
    );
    assert_eq!(traces[0].actor.id, "dr.martin@hopital.mssante.fr");
    assert_eq!(
        traces[0].response.as_ref().and_then(|r| r.text.as_deref()),
        Some("5.7.8 Error: authentication failed: authentication failure")
    );
    assert_eq!(
        traces[1].actor,
        Actor {
            auth: Some("login".into()),
            id: "dr.durand".into(),
            id_type: Some("login".into())
        }
    );
    assert_eq!(
        traces[1].target.as_ref().and_then(|t| t.mailbox.as_deref()),
        Some("dr.durand@hopital.mssante.fr")
    );
    assert_eq!(traces[2].actor.id, "inconnu");
    assert_eq!(
        traces[2].request.as_deref(),
        Some("AUTH PLAIN ; cancelled by the client")
    );
}

#[test]
fn xoauth2_and_oauthbearer_name_the_token_subject_never_the_token() {
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{CANARY}.sig");
    let hook: BearerSubject = Arc::new(|token: &crate::imap::Secret| {
        token
            .expose()
            .starts_with(b"eyJ")
            .then(|| "810001234567".to_owned())
    });
    let mut proxy = Proxy::with(config(Some(hook)));
    let xoauth2 = b64(&format!(
        "user=dr.martin@hopital.mssante.fr\x01auth=Bearer {token}\x01\x01"
    ));
    proxy
        .c(format!("AUTH XOAUTH2 {xoauth2}\r\n"))
        .s("235 2.7.0 Logged in.\r\n");
    let oauthbearer = b64(&format!(
        "n,a=dr.durand@hopital.mssante.fr,\x01auth=Bearer {token}\x01\x01"
    ));
    let mut second = Proxy::with(config(None));
    second
        .c(format!("AUTH OAUTHBEARER {oauthbearer}\r\n"))
        .s("235 2.7.0 Logged in.\r\n");
    let traces = proxy.take();
    assert_eq!(
        traces[0].actor,
        Actor {
            auth: Some("xoauth2".into()),
            id: "810001234567".into(),
            id_type: Some("oidc".into())
        }
    );
    assert_eq!(
        traces[0].target.as_ref().and_then(|t| t.mailbox.as_deref()),
        Some("dr.martin@hopital.mssante.fr")
    );
    let traces = second.take();
    assert_eq!(traces[0].actor.id, "dr.durand@hopital.mssante.fr");
    assert_eq!(traces[0].actor.auth.as_deref(), Some("oauthbearer"));
}

#[test]
fn bdat_send_and_an_unauthenticated_relay() {
    let mut proxy = Proxy::new();
    let first = format!("Subject: {CANARY}\r\n\r\n");
    let second = format!("{CANARY} body\r\n");
    proxy.c(format!(
        "MAIL FROM:<>\r\nRCPT TO:<a@x.fr>\r\nBDAT {} \r\n{first}BDAT {} LAST\r\n{second}",
        first.len(),
        second.len()
    ));
    proxy.s("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 17 octets\r\n250 2.0.0 Ok: queued as 9B1D2C\r\n");
    proxy.c("MAIL FROM:<relay@x.fr>\r\nRCPT TO:<b@x.fr>\r\nDATA\r\n");
    proxy.s("250 ok\r\n250 ok\r\n354 go\r\n");
    proxy.c(format!("Subject: {CANARY}\r\n\r\nbody\r\n"));
    proxy.close();
    let traces = proxy.take();
    assert_eq!(traces.len(), 2, "{traces:#?}");
    assert_eq!(traces[0].actor.id, "inconnu");
    assert_eq!(traces[0].actor.auth.as_deref(), Some("none"));
    assert_eq!(
        traces[0].request.as_deref(),
        Some("MAIL FROM:<> ; RCPT TO:<a@x.fr> ; BDAT")
    );
    assert_eq!(
        traces[0].target.as_ref().and_then(|t| t.size),
        Some((first.len() + second.len()) as u64)
    );
    assert_eq!(
        traces[0].target.as_ref().and_then(|t| t.mailbox.clone()),
        None
    );
    assert_eq!(traces[0].outcome, Some(TraceOutcome::Success));
    assert!(
        traces[0]
            .response
            .as_ref()
            .and_then(|r| r.text.as_deref())
            .is_some_and(|t| t.ends_with("queued as 9B1D2C"))
    );
    assert_eq!(
        traces[1].actor,
        Actor {
            auth: Some("none".into()),
            id: "relay@x.fr".into(),
            id_type: Some("email".into())
        }
    );
    assert_eq!(traces[1].outcome, Some(TraceOutcome::Failure));
    assert_eq!(traces[1].response, None);
    assert!(
        traces[1]
            .request
            .as_deref()
            .is_some_and(|r| r.ends_with("; DATA ; connection closed during the message")),
        "{:?}",
        traces[1].request
    );
}

#[test]
fn many_recipients_and_hostile_addresses_stay_within_bounds() {
    let mut proxy = Proxy::new();
    proxy.login();
    proxy.c("MAIL FROM:<a{5}b@x.fr>\r\n").s("250 ok\r\n");
    for batch in 0..15 {
        let (mut client, mut server) = (String::new(), String::new());
        for i in batch * 100..(batch + 1) * 100 {
            client.push_str(&format!(
                "RCPT TO:<destinataire.numero.{i:04}@{}.fr>\r\n",
                "d".repeat(40)
            ));
            server.push_str(if i % 2 == 0 {
                "250 ok\r\n"
            } else {
                "550 5.1.1 no such user\r\n"
            });
        }
        proxy.c(client).s(server);
    }
    proxy.c("DATA\r\n").s("354 go\r\n");
    proxy.c("x\r\n.\r\n").s("250 2.0.0 Ok: queued as Q1\r\n");
    let traces = proxy.take();
    let envoi = &traces[1];
    let recipients = envoi
        .target
        .as_ref()
        .and_then(|t| t.recipients.as_ref())
        .expect("recipients");
    assert!(recipients.len() < 1500);
    assert!(recipients.iter().map(|r| r.len() + 3).sum::<usize>() <= MAX_RECIPIENT_BYTES);
    let request = envoi.request.as_deref().expect("request");
    assert!(request.len() <= MAX_REQUEST);
    assert!(request.contains("(1500 in all) ; DATA"), "{request}");
    assert!(request.starts_with("MAIL FROM:<a{ 5}b@x.fr>"), "{request}");
    let json = serde_json::to_vec(envoi).expect("json");
    assert!(json.len() <= 16 * 1024, "{}", json.len());
}
