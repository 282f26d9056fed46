//! Transcripts (RFC 5321 and RFC 3030 examples, Postfix and Dovecot
//! submission sessions) through a whole [`Session`], and property tests:
//! chunking does not matter, no message, subject or password reaches an
//! event, arbitrary bytes never panic.

use base64::Engine as _;
use proptest::prelude::*;

use super::*;

const CANARY: &str = "CANARY-5d1e08";

#[derive(Clone, Copy)]
enum Dir {
    C,
    S,
}
use Dir::{C, S};

#[derive(Debug, Default, PartialEq, Eq)]
struct Run {
    client: Vec<Spanned<ClientEvent>>,
    server: Vec<Spanned<ServerEvent>>,
    outcomes: Vec<Outcome>,
}

impl Run {
    fn add(&mut self, decoded: Decoded) {
        self.client.extend(decoded.client);
        self.server.extend(decoded.server);
        self.outcomes.extend(decoded.outcomes);
    }

    fn transactions(&self) -> Vec<&Transaction> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Transaction(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    fn auths(&self) -> Vec<&AuthOutcome> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Auth(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn exchanges(&self) -> Vec<(&str, u16)> {
        self.outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Exchange(e) => Some((e.command.name.as_str(), e.reply.code)),
                _ => None,
            })
            .collect()
    }
}

/// Each step cut at `cuts` (positions modulo its length), then the end of
/// the connection.
fn run_chunked(steps: &[(Dir, Vec<u8>)], cuts: &[usize]) -> Run {
    let mut session = Session::new(Limits::default());
    let mut run = Run::default();
    for (dir, bytes) in steps {
        let mut positions: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        positions.sort_unstable();
        let mut last = 0;
        for cut in positions.into_iter().chain([bytes.len()]) {
            let piece = &bytes[last..cut];
            last = cut;
            let decoded = match dir {
                C => session.client_bytes(piece),
                S => session.server_bytes(piece),
            };
            run.add(decoded.expect("decodes"));
        }
    }
    run.outcomes.extend(session.finish());
    run
}

fn run(steps: &[(Dir, &[u8])]) -> Run {
    let steps: Vec<(Dir, Vec<u8>)> = steps.iter().map(|(d, b)| (*d, b.to_vec())).collect();
    run_chunked(&steps, &[])
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn assert_no_canary(run: &Run) {
    let debug = format!("{run:?}");
    assert!(!debug.contains(CANARY), "canary in {debug}");
}

#[test]
fn rfc5321_appendix_d1() {
    let run = run(&[
        (S, b"220 foo.com Simple Mail Transfer Service Ready\r\n"),
        (C, b"EHLO bar.com\r\n"),
        (
            S,
            b"250-foo.com greets bar.com\r\n250-8BITMIME\r\n250-SIZE\r\n250-DSN\r\n250 HELP\r\n",
        ),
        (C, b"MAIL FROM:<Smith@bar.com>\r\n"),
        (S, b"250 OK\r\n"),
        (C, b"RCPT TO:<Jones@foo.com>\r\n"),
        (S, b"250 OK\r\n"),
        (C, b"RCPT TO:<Green@foo.com>\r\n"),
        (S, b"550 No such user here\r\n"),
        (C, b"RCPT TO:<Brown@foo.com>\r\n"),
        (S, b"250 OK\r\n"),
        (C, b"DATA\r\n"),
        (S, b"354 Start mail input; end with <CRLF>.<CRLF>\r\n"),
        (C, b"Blah blah blah...\r\n...etc. etc. etc.\r\n.\r\n"),
        (S, b"250 OK\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 foo.com Service closing transmission channel\r\n"),
    ]);
    assert!(matches!(&run.outcomes[0], Outcome::Greeting(r) if r.code == 220));
    let Outcome::Exchange(ehlo) = &run.outcomes[1] else {
        panic!("EHLO exchange")
    };
    assert_eq!(
        ehlo.command.args,
        CommandArgs::Hello {
            domain: "bar.com".into()
        }
    );
    let keywords: Vec<_> = ehlo
        .reply
        .extensions()
        .into_iter()
        .map(|e| e.keyword)
        .collect();
    assert_eq!(keywords, ["8BITMIME", "SIZE", "DSN", "HELP"]);
    let txns = run.transactions();
    assert_eq!(txns.len(), 1);
    let txn = txns[0];
    assert_eq!(txn.from.address, "Smith@bar.com");
    let rcpts: Vec<_> = txn
        .recipients
        .iter()
        .map(|r| (r.to.address.as_str(), r.accepted()))
        .collect();
    assert_eq!(
        rcpts,
        [
            ("Jones@foo.com", true),
            ("Green@foo.com", false),
            ("Brown@foo.com", true)
        ]
    );
    // "..etc." was dot-stuffed: one dot removed.
    assert_eq!(txn.size, 37);
    assert_eq!(txn.ending, Ending::Data);
    assert!(txn.delivered());
    assert_eq!(txn.queue_id, None);
    assert_eq!(run.exchanges(), [("EHLO", 250), ("QUIT", 221)]);
    // The transaction comes right after its final reply, before QUIT.
    assert!(matches!(run.outcomes[2], Outcome::Transaction(_)));
}

fn postfix_submission() -> Vec<(Dir, Vec<u8>)> {
    let message = format!(
        "From: dr.martin@hopital.mssante.fr\r\nTo: patient.x@hopital.mssante.fr\r\nSubject: {CANARY}\r\n\
         Content-Type: text/plain\r\n\r\nBonjour {CANARY},\r\n..point {CANARY}\r\n.\r\n"
    );
    let plain = b64(format!("\0dr.martin@hopital.mssante.fr\0pw-{CANARY}").as_bytes());
    let wrong = b64(format!("\0dr.martin@hopital.mssante.fr\0bad-{CANARY}").as_bytes());
    let steps: Vec<(Dir, String)> = vec![
        (S, "220 mx.hopital.mssante.fr ESMTP Postfix (Debian/GNU)\r\n".into()),
        (C, "EHLO [127.0.0.1]\r\n".into()),
        (S, "250-mx.hopital.mssante.fr\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n".into()),
        (C, format!("AUTH PLAIN {wrong}\r\n")),
        (S, "535 5.7.8 Error: authentication failed: authentication failure\r\n".into()),
        (C, format!("AUTH PLAIN {plain}\r\n")),
        (S, "235 2.7.0 Authentication successful\r\n".into()),
        (C, "MAIL FROM:<dr.martin@hopital.mssante.fr> SIZE=180 BODY=8BITMIME\r\nRCPT TO:<patient.x@hopital.mssante.fr> NOTIFY=FAILURE ORCPT=rfc822;patient.x@hopital.mssante.fr\r\nRCPT TO:<inconnu@hopital.mssante.fr>\r\nDATA\r\n".into()),
        (S, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <inconnu@hopital.mssante.fr>: Recipient address rejected: User unknown in virtual mailbox table\r\n354 End data with <CR><LF>.<CR><LF>\r\n".into()),
        (C, message),
        (S, "250 2.0.0 Ok: queued as 4F2A1C3B9D\r\n".into()),
        (C, "QUIT\r\n".into()),
        (S, "221 2.0.0 Bye\r\n".into()),
    ];
    steps
        .into_iter()
        .map(|(d, s)| (d, s.into_bytes()))
        .collect()
}

#[test]
fn postfix_submission_auth_plain_pipelining_refused_recipient() {
    let run = run_chunked(&postfix_submission(), &[]);
    let auths = run.auths();
    assert_eq!(auths.len(), 2);
    assert!(!auths[0].succeeded());
    assert!(auths[1].succeeded());
    assert_eq!(auths[1].mechanism, "PLAIN");
    assert_eq!(
        auths[1]
            .identity
            .as_ref()
            .and_then(|i| i.authcid.as_deref()),
        Some("dr.martin@hopital.mssante.fr")
    );
    let txns = run.transactions();
    assert_eq!(txns.len(), 1);
    let txn = txns[0];
    assert_eq!(
        txn.params[0],
        Param {
            keyword: "SIZE".into(),
            value: Some("180".into())
        }
    );
    assert_eq!(txn.recipients.len(), 2);
    assert!(txn.recipients[0].accepted() && !txn.recipients[1].accepted());
    let refused = txn.recipients[1].reply.as_ref().expect("reply");
    assert_eq!(refused.code, 550);
    assert_eq!(
        refused.enhanced.map(|e| e.to_string()).as_deref(),
        Some("5.1.1")
    );
    assert_eq!(txn.accepted_recipients().count(), 1);
    assert_eq!(txn.data_reply.as_ref().map(|r| r.code), Some(354));
    assert_eq!(txn.final_reply.as_ref().map(|r| r.code), Some(250));
    assert_eq!(txn.queue_id.as_deref(), Some("4F2A1C3B9D"));
    assert!(txn.delivered());
    // Message bytes counted, one stuffed dot removed.
    let message = &postfix_submission()[9].1;
    assert_eq!(txn.size, message.len() as u64 - 3 - 1);
    assert!(run.client.iter().any(|e| matches!(
        e.event,
        ClientEvent::Message {
            bare_line_feeds: 0,
            ..
        }
    )));
    assert_no_canary(&run);
}

#[test]
fn dovecot_submission_auth_login_and_xoauth2() {
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{CANARY}.sig");
    let xoauth2 =
        b64(format!("user=dr.durand@hopital.mssante.fr\x01auth=Bearer {token}\x01\x01").as_bytes());
    let user = b64(b"dr.durand@hopital.mssante.fr");
    let password = b64(format!("pw-{CANARY}").as_bytes());
    let steps: Vec<(Dir, String)> = vec![
        (S, "220 submission.hopital.mssante.fr Dovecot ready.\r\n".into()),
        (C, "EHLO client\r\n".into()),
        (S, "250-submission.hopital.mssante.fr\r\n250-8BITMIME\r\n250-AUTH LOGIN PLAIN XOAUTH2 OAUTHBEARER\r\n250-BURL imap\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250-SIZE\r\n250 PIPELINING\r\n".into()),
        (C, "AUTH LOGIN\r\n".into()),
        (S, "334 VXNlcm5hbWU6\r\n".into()),
        (C, format!("{user}\r\n")),
        (S, "334 UGFzc3dvcmQ6\r\n".into()),
        (C, format!("{password}\r\n")),
        (S, "535 5.7.8 Authentication failed\r\n".into()),
        (C, "AUTH PLAIN\r\n".into()),
        (S, "334 \r\n".into()),
        (C, "*\r\n".into()),
        (S, "501 5.5.2 Authentication canceled\r\n".into()),
        (C, format!("AUTH XOAUTH2 {xoauth2}\r\n")),
        (S, "235 2.7.0 Logged in.\r\n".into()),
        (C, "NOOP\r\n".into()),
        (S, "250 2.0.0 OK\r\n".into()),
    ];
    let steps: Vec<(Dir, Vec<u8>)> = steps
        .into_iter()
        .map(|(d, s)| (d, s.into_bytes()))
        .collect();
    let run = run_chunked(&steps, &[]);
    let auths = run.auths();
    assert_eq!(auths.len(), 3);
    assert_eq!(auths[0].mechanism, "LOGIN");
    assert_eq!(
        auths[0]
            .identity
            .as_ref()
            .and_then(|i| i.authcid.as_deref()),
        Some("dr.durand@hopital.mssante.fr")
    );
    assert!(!auths[0].succeeded());
    assert!(auths[1].cancelled && !auths[1].succeeded());
    assert!(auths[2].succeeded());
    let identity = auths[2].identity.as_ref().expect("identity");
    assert_eq!(
        identity.authcid.as_deref(),
        Some("dr.durand@hopital.mssante.fr")
    );
    assert_eq!(
        identity.bearer.as_ref().map(Secret::expose),
        Some(token.as_bytes())
    );
    // After the exchange, commands again.
    assert_eq!(run.exchanges(), [("EHLO", 250), ("NOOP", 250)]);
    assert_no_canary(&run);
}

#[test]
fn bdat_rfc3030_example() {
    let first = format!("Subject: {CANARY}\r\n\r\nPart one ");
    let second = format!("and {CANARY} two.\r\n");
    let steps: Vec<(Dir, Vec<u8>)> = vec![
        (S, b"220 Random.com ESMTP\r\n".to_vec()),
        (C, b"EHLO Example.com\r\n".to_vec()),
        (S, b"250-Random.com\r\n250-CHUNKING\r\n250 PIPELINING\r\n".to_vec()),
        (
            C,
            format!(
                "MAIL FROM:<Sam@Random.com>\r\nRCPT TO:<Susan@Random.com>\r\nBDAT {} \r\n{first}BDAT {} LAST\r\n{second}",
                first.len(),
                second.len()
            )
            .into_bytes(),
        ),
        (
            S,
            b"250 <Sam@Random.com> Sender ok\r\n250 <Susan@Random.com> Recipient ok\r\n250 Message OK, 1 octets received\r\n250 2.0.0 Ok: queued as 9B1D2C\r\n"
                .to_vec(),
        ),
        (C, b"BDAT 0 LAST\r\n".to_vec()),
        (S, b"503 5.5.1 Error: MAIL transaction not started\r\n".to_vec()),
    ];
    let run = run_chunked(&steps, &[]);
    let chunks: Vec<_> = run
        .client
        .iter()
        .filter_map(|e| match e.event {
            ClientEvent::Chunk { size, last } => Some((size, last)),
            _ => None,
        })
        .collect();
    assert_eq!(
        chunks,
        [
            (first.len() as u64, false),
            (second.len() as u64, true),
            (0, true)
        ]
    );
    let txns = run.transactions();
    assert_eq!(txns.len(), 1);
    assert!(txns[0].chunked && txns[0].delivered());
    assert_eq!(txns[0].size, (first.len() + second.len()) as u64);
    assert_eq!(txns[0].queue_id.as_deref(), Some("9B1D2C"));
    assert_no_canary(&run);
}

#[test]
fn data_refused_then_reset_and_early_message() {
    let body = format!("Subject: {CANARY}\r\n\r\n{CANARY}\r\n.\r\n");
    let early = format!("DATA\r\n{body}");
    let run = run(&[
        (S, b"220 mx ESMTP\r\n"),
        (C, b"MAIL FROM:<a@b.fr>\r\nRCPT TO:<nobody@b.fr>\r\nDATA\r\n"),
        (S, b"250 2.1.0 Ok\r\n550 5.1.1 <nobody@b.fr>: Recipient address rejected\r\n554 5.5.1 Error: no valid recipients\r\n"),
        (C, b"RSET\r\n"),
        (S, b"250 2.0.0 Ok\r\n"),
        (C, b"MAIL FROM:<> \r\nRCPT TO:<c@b.fr>\r\n"),
        (S, b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
        // An early talker: the message before the 354.
        (C, early.as_bytes()),
        (S, b"354 go ahead\r\n"),
        (S, b"451 4.3.0 Error: queue file write error\r\n"),
        (C, b"QUIT\r\n"),
        (S, b"221 2.0.0 Bye\r\n"),
    ]);
    let txns = run.transactions();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0].ending, Ending::DataRefused);
    assert_eq!(txns[0].data_reply.as_ref().map(|r| r.code), Some(554));
    assert!(!txns[0].delivered() && txns[0].accepted_recipients().count() == 0);
    assert_eq!(txns[1].from.address, "");
    assert_eq!(txns[1].ending, Ending::Data);
    assert_eq!(txns[1].size, body.len() as u64 - 3);
    assert_eq!(txns[1].final_reply.as_ref().map(|r| r.code), Some(451));
    assert!(!txns[1].delivered());
    assert_eq!(run.exchanges(), [("RSET", 250), ("QUIT", 221)]);
    assert_no_canary(&run);
}

#[test]
fn data_refused_bytes_are_commands_again() {
    let mut session = Session::new(Limits::default());
    session.server_bytes(b"220 mx\r\n").expect("greeting");
    let decoded = session.client_bytes(b"DATA\r\nNOOP\r\n").expect("decodes");
    assert_eq!(decoded.client.len(), 1);
    assert!(session.client.awaiting_data_reply());
    let decoded = session
        .server_bytes(b"503 5.5.1 Error: need RCPT command\r\n")
        .expect("decodes");
    assert!(matches!(&decoded.client[0].event, ClientEvent::Command(c) if c.name == "NOOP"));
    assert_eq!((decoded.client[0].start, decoded.client[0].end), (6, 12));
}

#[test]
fn transaction_aborted_by_rset_and_connection_end() {
    let run = run(&[
        (S, b"220 mx\r\n"),
        (
            C,
            b"MAIL FROM:<a@b.fr>\r\nRCPT TO:<c@d.fr>\r\nRSET\r\nMAIL FROM:<e@b.fr>\r\n",
        ),
        (S, b"250 ok\r\n250 ok\r\n250 ok\r\n"),
    ]);
    let txns = run.transactions();
    assert_eq!(txns.len(), 2);
    assert_eq!(txns[0].ending, Ending::Reset);
    assert_eq!(txns[1].ending, Ending::ConnectionEnd);
    assert_eq!(txns[1].from.address, "e@b.fr");
    assert!(txns[1].mail_reply.is_none());
}

#[test]
fn starttls_marks_injected_plaintext() {
    let mut session = Session::new(Limits::default());
    session.server_bytes(b"220 mx ESMTP\r\n").expect("greeting");
    let decoded = session
        .client_bytes(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x@y.fr>\r\n")
        .expect("decodes");
    assert!(matches!(&decoded.client[0].event, ClientEvent::Command(c) if c.name == "STARTTLS"));
    assert_eq!(
        decoded.client[1],
        Spanned {
            start: 10,
            end: 36,
            event: ClientEvent::AfterStartTls { bytes: 26 }
        }
    );
    let decoded = session
        .server_bytes(b"220 2.0.0 Ready to start TLS\r\n")
        .expect("decodes");
    assert!(matches!(&decoded.outcomes[0], Outcome::Exchange(e) if e.reply.code == 220));
    assert!(session.starttls_done().is_empty());
    let decoded = session.client_bytes(b"EHLO x\r\n").expect("decodes");
    assert_eq!((decoded.client[0].start, decoded.client[0].end), (0, 8));
    let decoded = session
        .server_bytes(b"250 mx\r\n")
        .expect("no greeting after TLS");
    assert!(matches!(&decoded.outcomes[0], Outcome::Exchange(e) if e.command.name == "EHLO"));

    // A refused STARTTLS: commands go on in plaintext.
    let mut session = Session::new(Limits::default());
    session.server_bytes(b"220 mx\r\n").expect("greeting");
    session.client_bytes(b"STARTTLS\r\n").expect("decodes");
    session
        .server_bytes(b"454 4.7.0 TLS not available\r\n")
        .expect("decodes");
    let decoded = session.client_bytes(b"NOOP\r\n").expect("decodes");
    assert!(matches!(&decoded.client[0].event, ClientEvent::Command(c) if c.name == "NOOP"));
}

#[test]
fn limits_are_errors_not_panics() {
    let limits = Limits {
        max_line: 64,
        max_auth_line: 128,
        max_message: 100,
    };
    let mut client = ClientDecoder::new(limits);
    let mut out = Vec::new();
    assert_eq!(
        client.feed(&[b'a'; 100], &mut out),
        Err(DecodeError::LineTooLong { limit: 64 })
    );
    assert!(client.feed(b"NOOP\r\n", &mut out).is_err());
    let mut client = ClientDecoder::new(limits);
    let long_auth = format!("AUTH PLAIN {}\r\n", "A".repeat(100));
    client
        .feed(long_auth.as_bytes(), &mut out)
        .expect("AUTH may be longer");
    let mut client = ClientDecoder::new(limits);
    assert_eq!(
        client.feed(b"BDAT 101 LAST\r\n", &mut out),
        Err(DecodeError::MessageTooLarge { limit: 100 })
    );
    let mut client = ClientDecoder::new(limits);
    client.feed(b"DATA\r\n", &mut out).expect("decodes");
    assert_eq!(
        client.feed(&[b'x'; 65], &mut out),
        Err(DecodeError::DataBeforeReply { limit: 64 })
    );
    let mut client = ClientDecoder::new(limits);
    client.feed(b"DATA\r\n", &mut out).expect("decodes");
    client
        .on_decision(Decision::Data { accepted: true }, &mut out)
        .expect("accepted");
    let error = client.feed(&[b'x'; 101], &mut out).unwrap_err();
    assert_eq!(error, DecodeError::MessageTooLarge { limit: 100 });
    assert!(!error.to_string().contains('x'));
    let mut server = ServerDecoder::new(limits);
    assert!(server.feed(&[b'2'; 65], &mut Vec::new()).is_err());

    // A 100 MiB message under the default limits is counted, not kept.
    let mut client = ClientDecoder::new(Limits::default());
    let mut out = Vec::new();
    client.feed(b"DATA\r\n", &mut out).expect("decodes");
    client
        .on_decision(Decision::Data { accepted: true }, &mut out)
        .expect("accepted");
    let chunk = b"0123456789abcdef".repeat(1 << 16);
    for _ in 0..99 {
        client.feed(&chunk, &mut out).expect("counted");
    }
    client.feed(b"\r\n.\r\n", &mut out).expect("ends");
    assert_eq!(
        out[1].event,
        ClientEvent::Message {
            size: 99 * (1 << 20) + 2,
            bare_line_feeds: 0
        }
    );
}

#[test]
fn malformed_and_unknown() {
    let run = run(&[
        (S, b"220 mx\r\n"),
        (C, b"\r\nSubject: hello\r\nXCLIENT ADDR=1.2.3.4\r\n"),
        (S, b"garbage\r\n500 5.5.2 Error: bad syntax\r\n500 5.5.2 Error: bad syntax\r\n502 5.5.2 Error: command not recognized\r\n"),
        (S, b"421 4.4.2 mx Error: timeout exceeded\r\n"),
    ]);
    assert!(matches!(run.client[0].event, ClientEvent::Malformed { .. }));
    assert!(matches!(run.client[1].event, ClientEvent::Malformed { .. }));
    assert!(
        matches!(&run.client[2].event, ClientEvent::Command(c) if c.name == "XCLIENT" && c.args == CommandArgs::None)
    );
    assert!(matches!(run.server[1].event, ServerEvent::Malformed { .. }));
    // The server answers malformed lines too: replies stay matched.
    assert_eq!(run.exchanges(), [("XCLIENT", 502)]);
    assert!(matches!(run.outcomes.last(), Some(Outcome::Unsolicited(r)) if r.code == 421));
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let steps = postfix_submission();
        let whole = run_chunked(&steps, &[]);
        let chunked = run_chunked(&steps, &cuts);
        prop_assert_eq!(&chunked, &whole);
        let debug = format!("{chunked:?}");
        prop_assert!(!debug.contains(CANARY), "canary in events");
    }

    #[test]
    fn content_and_passwords_never_reach_events(
        body in proptest::collection::vec("[ -~]{0,30}", 0..6),
        subject in "[ -~]{0,20}",
        password in "[!-~]{1,20}",
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        chunked in any::<bool>(),
    ) {
        let mut message = format!("Subject: {subject}{CANARY}\r\n\r\n");
        for line in &body {
            message.push_str(line);
            message.push_str(CANARY);
            message.push_str("\r\n");
        }
        let plain = b64(format!("\0u@b.fr\0{password}{CANARY}").as_bytes());
        let login_user = b64(b"u@b.fr");
        let login_password = b64(format!("{password}{CANARY}").as_bytes());
        let (send, end_reply) = if chunked {
            (format!("BDAT {} LAST\r\n{message}", message.len()), "250 2.0.0 Ok: queued as ABC\r\n")
        } else {
            let stuffed = message.replace("\r\n.", "\r\n..");
            let stuffed = stuffed.strip_prefix('.').map_or(stuffed.clone(), |s| format!("..{s}"));
            (format!("DATA\r\n{stuffed}.\r\n"), "354 go\r\n250 2.0.0 Ok: queued as ABC\r\n")
        };
        let steps: Vec<(Dir, Vec<u8>)> = vec![
            (S, b"220 mx\r\n".to_vec()),
            (C, format!("AUTH PLAIN {plain}\r\n").into_bytes()),
            (S, b"535 5.7.8 no\r\n".to_vec()),
            (C, b"AUTH LOGIN\r\n".to_vec()),
            (S, b"334 VXNlcm5hbWU6\r\n".to_vec()),
            (C, format!("{login_user}\r\n").into_bytes()),
            (S, b"334 UGFzc3dvcmQ6\r\n".to_vec()),
            (C, format!("{login_password}\r\n").into_bytes()),
            (S, b"235 2.7.0 ok\r\n".to_vec()),
            (C, format!("MAIL FROM:<u@b.fr>\r\nRCPT TO:<v@b.fr>\r\n{send}").into_bytes()),
            (S, format!("250 ok\r\n250 ok\r\n{end_reply}").into_bytes()),
        ];
        let run = run_chunked(&steps, &cuts);
        let debug = format!("{run:?}");
        prop_assert!(!debug.contains(CANARY), "canary in events");
        let txns = run.transactions();
        prop_assert_eq!(txns.len(), 1);
        prop_assert!(txns[0].delivered());
        prop_assert_eq!(txns[0].size, message.len() as u64);
        prop_assert_eq!(txns[0].queue_id.as_deref(), Some("ABC"));
        prop_assert_eq!(run.auths().iter().map(|a| a.succeeded()).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), cut in any::<usize>()) {
        let limits = Limits { max_line: 128, max_auth_line: 256, max_message: 64 };
        let mut session = Session::new(limits);
        let cut = cut % (bytes.len() + 1);
        let _ = session.client_bytes(&bytes[..cut]);
        let _ = session.server_bytes(&bytes);
        let _ = session.client_bytes(&bytes[cut..]);
        let _ = session.finish();
        let _ = without_extensions(&bytes, &["CHUNKING"]);
    }

    #[test]
    fn extension_filter_removes_only_the_named(
        extensions in proptest::collection::vec("[A-Z0-9][A-Z0-9 =-]{0,12}", 0..8),
        at in any::<usize>(),
    ) {
        let mut lines = vec!["mx.example".to_owned()];
        lines.extend(extensions.iter().cloned());
        let index = 1 + at % lines.len();
        lines.insert(index, "CHUNKING".to_owned());
        let reply = |lines: &[String]| {
            lines.iter().enumerate().map(|(i, l)| {
                format!("250{}{l}\r\n", if i + 1 == lines.len() { ' ' } else { '-' })
            }).collect::<String>()
        };
        let kept: Vec<String> = lines.iter().enumerate()
            .filter(|(i, l)| *i == 0 || l.split(' ').next() != Some("CHUNKING"))
            .map(|(_, l)| l.clone())
            .collect();
        let filtered = without_extensions(reply(&lines).as_bytes(), &["chunking"]).expect("removed");
        prop_assert_eq!(String::from_utf8(filtered).expect("ascii"), reply(&kept));
    }
}
