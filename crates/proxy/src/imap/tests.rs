//! Transcripts (RFC 9051/3501 examples, Dovecot sessions) through a whole
//! [`Session`], and property tests: chunking does not matter, generated
//! commands round-trip, no literal or password reaches an event.

use proptest::prelude::*;

use super::*;

const CANARY: &str = "CANARY-7f3a9c";

#[derive(Clone, Copy)]
enum Dir {
    C,
    S,
}
use Dir::{C, S};

#[derive(Debug, Default)]
struct Run {
    client: Vec<ClientEvent>,
    server: Vec<ServerEvent>,
    exchanges: Vec<Exchange>,
}

fn run(steps: &[(Dir, &[u8])]) -> Run {
    let mut session = Session::new(Limits::default());
    let mut out = Run::default();
    for (dir, bytes) in steps {
        match dir {
            C => out.client.extend(
                session
                    .client_bytes(bytes)
                    .expect("client decodes")
                    .into_iter()
                    .map(|e| e.event),
            ),
            S => {
                let (events, exchanges) = session.server_bytes(bytes).expect("server decodes");
                out.server.extend(events.into_iter().map(|e| e.event));
                out.exchanges.extend(exchanges);
            }
        }
    }
    out
}

fn text(s: &str) -> Arg {
    Arg::Text(s.to_owned())
}

fn set(s: &str) -> SequenceSet {
    SequenceSet::parse(s).expect("valid set")
}

fn exchange<'a>(run: &'a Run, name: &str) -> &'a Exchange {
    run.exchanges
        .iter()
        .find(|e| e.command.name == name)
        .unwrap_or_else(|| panic!("no {name} exchange"))
}

#[test]
fn dovecot_session_login_select_fetch_delete_expunge() {
    let run = run(&[
        (S, b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.\r\n"),
        (C, b"a1 LOGIN dr.martin \"pw-CANARY-7f3a9c\"\r\n"),
        (S, b"a1 OK [CAPABILITY IMAP4rev1 SASL-IR IDLE MOVE COMPRESS=DEFLATE UIDPLUS] Logged in\r\n"),
        (C, b"a2 SELECT INBOX\r\n"),
        (S, b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n* 3 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1732800000] UIDs valid\r\n* OK [UIDNEXT 43] Predicted next UID\r\na2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"),
        (C, b"a3 UID FETCH 42 (UID RFC822.SIZE BODY.PEEK[])\r\n"),
        (S, b"* 3 FETCH (UID 42 RFC822.SIZE 30 BODY[] {30}\r\nSubject: CANARY-7f3a9c\r\n\r\nhi\r\n)\r\na3 OK Fetch completed (0.001 + 0.000 secs).\r\n"),
        (C, b"a4 UID STORE 42 +FLAGS (\\Deleted)\r\n"),
        (S, b"* 3 FETCH (UID 42 FLAGS (\\Deleted))\r\na4 OK Store completed.\r\n"),
        (C, b"a5 EXPUNGE\r\n"),
        (S, b"* 3 EXPUNGE\r\na5 OK Expunge completed.\r\n"),
        (C, b"a6 LOGOUT\r\n"),
        (S, b"* BYE Logging out\r\na6 OK Logout completed.\r\n"),
    ]);
    let names: Vec<_> = run
        .exchanges
        .iter()
        .map(|e| e.command.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "LOGIN",
            "SELECT",
            "UID FETCH",
            "UID STORE",
            "EXPUNGE",
            "LOGOUT"
        ]
    );

    let login = exchange(&run, "LOGIN");
    assert_eq!(
        login.command.args,
        CommandArgs::Login {
            user: text("dr.martin")
        }
    );
    assert_eq!(login.command.request, "LOGIN dr.martin ***");
    assert_eq!(login.completion.status, Status::Ok);
    assert!(
        matches!(&login.completion.code, Some(ResponseCode::Capability(c)) if c.contains(&"COMPRESS=DEFLATE".to_owned()))
    );

    let select = exchange(&run, "SELECT");
    assert_eq!(
        select.command.args,
        CommandArgs::Mailbox {
            mailbox: text("INBOX")
        }
    );
    assert_eq!(
        select.completion.code,
        Some(ResponseCode::Other {
            name: "READ-WRITE".into()
        })
    );

    let fetch = exchange(&run, "UID FETCH");
    let CommandArgs::Fetch { set: uids, items } = &fetch.command.args else {
        panic!("fetch args");
    };
    assert_eq!(uids, &set("42"));
    assert!(items.content && !items.marks_seen);
    assert_eq!(items.items, ["UID", "RFC822.SIZE", "BODY.PEEK[]"]);
    assert_eq!(fetch.observed.fetched_uids, [42]);
    assert!(run.server.contains(&ServerEvent::Untagged(Untagged::Fetch {
        seq: 3,
        uid: Some(42),
        literal_bytes: 30
    })));

    let store = exchange(&run, "UID STORE");
    assert_eq!(
        store.command.args,
        CommandArgs::Store {
            set: set("42"),
            flags: StoreFlags {
                mode: StoreMode::Add,
                silent: false,
                flags: vec!["\\Deleted".into()],
                adds_deleted: true
            },
        }
    );
    assert_eq!(store.command.request, "UID STORE 42 +FLAGS (\\Deleted)");
    assert_eq!(exchange(&run, "EXPUNGE").observed.expunged, [3]);
    assert!(
        run.server
            .contains(&ServerEvent::Untagged(Untagged::Status {
                status: Status::Bye,
                code: None,
                text: "Logging out".into()
            }))
    );
    assert_no_canary(&run);
}

#[test]
fn uid_move_with_copyuid_and_vanished() {
    // RFC 6851 §4.3 and §4.4 (QRESYNC enabled: VANISHED instead of EXPUNGE).
    let run = run(&[
        (C, b"a UID MOVE 42:69 foo\r\n"),
        (S, b"* OK [COPYUID 432432 42:69 1202:1229]\r\n* 22 EXPUNGE\r\n* 22 EXPUNGE\r\na OK Done\r\n"),
        (C, b"b UID MOVE 42:69 \"Trash\"\r\n"),
        (S, b"* OK [COPYUID 432432 42:69 1202:1229]\r\n* VANISHED 42:69\r\n* VANISHED (EARLIER) 1:3\r\nb OK [HIGHESTMODSEQ 12] Move completed\r\n"),
        (C, b"c UID COPY 1:2 Archives\r\n"),
        (S, b"c OK [COPYUID 38505 1:2 3955:3956] Copy completed\r\n"),
    ]);
    let first = &run.exchanges[0];
    assert_eq!(
        first.command.args,
        CommandArgs::Transfer {
            set: set("42:69"),
            mailbox: text("foo")
        }
    );
    assert_eq!(first.observed.expunged, [22, 22]);
    assert_eq!(
        first.observed.copy_uid,
        Some(ResponseCode::CopyUid {
            uid_validity: 432432,
            source: set("42:69"),
            destination: set("1202:1229")
        })
    );
    let second = &run.exchanges[1];
    assert_eq!(
        second.command.args,
        CommandArgs::Transfer {
            set: set("42:69"),
            mailbox: text("Trash")
        }
    );
    assert_eq!(second.observed.vanished, [set("42:69")]);
    let copy = &run.exchanges[2];
    assert_eq!(copy.command.name, "UID COPY");
    assert_eq!(
        copy.completion.code,
        Some(ResponseCode::CopyUid {
            uid_validity: 38505,
            source: set("1:2"),
            destination: set("3955:3956")
        })
    );
}

#[test]
fn append_with_synchronising_and_non_synchronising_literals() {
    let message = format!("Subject: {CANARY}\r\n\r\nCorps {CANARY}\r\n");
    let n = message.len();
    let sync =
        format!("A003 APPEND saved-messages (\\Seen) \"28-Nov-2026 15:42:07 +0100\" {{{n}}}\r\n");
    let rest = format!("{message}\r\n");
    let non_sync = format!("A004 APPEND Sent {{{n}+}}\r\n{message}\r\n");
    let run = run(&[
        (C, sync.as_bytes()),
        (S, b"+ Ready for literal data\r\n"),
        (C, rest.as_bytes()),
        (S, b"A003 OK [APPENDUID 38505 3955] APPEND completed\r\n"),
        (C, non_sync.as_bytes()),
        (S, b"A004 OK [APPENDUID 38505 3956] APPEND completed\r\n"),
    ]);
    let n = n as u64;
    assert_eq!(
        run.exchanges[0].command.args,
        CommandArgs::Append {
            mailbox: text("saved-messages"),
            messages: 1,
            size: n
        }
    );
    assert_eq!(
        run.exchanges[0].command.request,
        format!("APPEND saved-messages (\\Seen) \"28-Nov-2026 15:42:07 +0100\" {{{n} bytes}}")
    );
    assert_eq!(
        run.exchanges[0].completion.code,
        Some(ResponseCode::AppendUid {
            uid_validity: 38505,
            uids: set("3955")
        })
    );
    assert_eq!(
        run.exchanges[1].command.args,
        CommandArgs::Append {
            mailbox: text("Sent"),
            messages: 1,
            size: n
        }
    );
    assert_eq!(run.exchanges[1].command.literal_bytes, n);
    assert_no_canary(&run);
}

#[test]
fn refused_synchronising_literal_does_not_swallow_the_next_command() {
    let run = run(&[
        (C, b"a APPEND INBOX {104857600}\r\n"),
        (S, b"a NO [OVERQUOTA] Quota exceeded\r\n"),
        (C, b"b NOOP\r\n"),
        (S, b"b OK NOOP completed\r\n"),
    ]);
    let names: Vec<_> = run
        .exchanges
        .iter()
        .map(|e| (e.command.name.as_str(), e.completion.status))
        .collect();
    assert_eq!(names, [("APPEND", Status::No), ("NOOP", Status::Ok)]);
}

#[test]
fn idle_and_done() {
    let run = run(&[
        (C, b"a IDLE\r\n"),
        (S, b"+ idling\r\n* 4 EXISTS\r\n* 2 EXPUNGE\r\n"),
        (C, b"DONE\r\n"),
        (S, b"a OK IDLE terminated\r\n"),
        (C, b"b IDLE\r\n"),
        (S, b"b NO not now\r\n"),
        (C, b"c NOOP\r\n"),
    ]);
    assert_eq!(run.client[1], ClientEvent::IdleDone);
    assert!(matches!(&run.client[3], ClientEvent::Command(c) if c.name == "NOOP"));
    // Another session's expunge: not attributed to IDLE.
    assert!(run.exchanges[0].observed.expunged.is_empty());
    assert!(
        run.server
            .contains(&ServerEvent::Untagged(Untagged::Exists(4)))
    );
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn authenticate_plain_with_sasl_ir_and_with_continuation() {
    let ir = b64(format!("\0dr.martin@hopital.mssante.fr\0pw-{CANARY}").as_bytes());
    let continued = b64(format!("admin\0dr.durand\0pw-{CANARY}").as_bytes());
    let run = run(&[
        (C, format!("a AUTHENTICATE PLAIN {ir}\r\n").as_bytes()),
        (S, b"a OK Logged in\r\n"),
        (C, b"b AUTHENTICATE PLAIN\r\n"),
        (S, b"+ \r\n"),
        (C, format!("{continued}\r\n").as_bytes()),
        (S, b"b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        (C, b"c AUTHENTICATE PLAIN\r\n"),
        (S, b"+ \r\n"),
        (C, b"*\r\n"),
        (S, b"c BAD Authentication aborted by client.\r\n"),
    ]);
    let CommandArgs::Authenticate { mechanism, initial } = &run.exchanges[0].command.args else {
        panic!("authenticate args");
    };
    assert_eq!(mechanism, "PLAIN");
    assert_eq!(
        initial.as_ref().and_then(|i| i.authcid.as_deref()),
        Some("dr.martin@hopital.mssante.fr")
    );
    assert_eq!(run.exchanges[0].command.request, "AUTHENTICATE PLAIN");
    let CommandArgs::Authenticate { initial, .. } = &run.exchanges[1].command.args else {
        panic!("authenticate args");
    };
    let identity = initial
        .as_ref()
        .expect("identity from the continuation line");
    assert_eq!(
        (identity.authzid.as_deref(), identity.authcid.as_deref()),
        (Some("admin"), Some("dr.durand"))
    );
    assert_eq!(
        run.exchanges[1].completion.code,
        Some(ResponseCode::Other {
            name: "AUTHENTICATIONFAILED".into()
        })
    );
    assert!(run.client.contains(&ClientEvent::AuthCancelled));
    assert_no_canary(&run);
}

#[test]
fn authenticate_xoauth2_keeps_the_token_as_a_secret() {
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{CANARY}.sig");
    let ir =
        b64(format!("user=dr.martin@hopital.mssante.fr\x01auth=Bearer {token}\x01\x01").as_bytes());
    let run = run(&[
        (C, format!("a AUTHENTICATE XOAUTH2 {ir}\r\n").as_bytes()),
        (S, b"a OK Logged in\r\n"),
    ]);
    let CommandArgs::Authenticate {
        initial: Some(identity),
        ..
    } = &run.exchanges[0].command.args
    else {
        panic!("identity");
    };
    assert_eq!(
        identity.bearer.as_ref().map(Secret::expose),
        Some(token.as_bytes())
    );
    assert_no_canary(&run);
}

#[test]
fn pipelined_commands_complete_out_of_order() {
    let run = run(&[
        (C, b"a1 FETCH 1:2 (FLAGS)\r\na2 UID FETCH 7 BODY[TEXT]\r\na3 STORE 1 -FLAGS.SILENT (\\Seen)\r\n"),
        (S, b"* 1 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (FLAGS ())\r\na1 OK done\r\n"),
        (S, b"a3 OK done\r\n* 5 FETCH (UID 7 BODY[TEXT] {5}\r\nxxxxx FLAGS (\\Seen))\r\na2 OK done\r\n"),
    ]);
    let order: Vec<_> = run
        .exchanges
        .iter()
        .map(|e| e.command.tag.as_str())
        .collect();
    assert_eq!(order, ["a1", "a3", "a2"]);
    let CommandArgs::Fetch { items, .. } = &run.exchanges[0].command.args else {
        panic!()
    };
    assert!(!items.content);
    assert_eq!(run.exchanges[0].observed.fetch_responses, 2);
    let CommandArgs::Fetch { items, .. } = &run.exchanges[2].command.args else {
        panic!()
    };
    assert!(items.content && items.marks_seen);
    assert_eq!(run.exchanges[2].observed.fetched_uids, [7]);
    let CommandArgs::Store { flags, .. } = &run.exchanges[1].command.args else {
        panic!()
    };
    assert_eq!(
        (flags.mode, flags.silent, flags.adds_deleted),
        (StoreMode::Remove, true, false)
    );
}

#[test]
fn starttls_marks_injected_plaintext() {
    let mut session = Session::new(Limits::default());
    let events = session
        .client_bytes(b"a STARTTLS\r\nb LOGIN x y\r\n")
        .expect("decodes");
    assert!(matches!(&events[0].event, ClientEvent::Command(c) if c.name == "STARTTLS"));
    assert_eq!(
        events[1],
        Spanned {
            start: 12,
            end: 25,
            event: ClientEvent::AfterStartTls { bytes: 13 }
        }
    );
    // After the handshake the caller resets: positions start over.
    session.client.reset();
    let events = session.client_bytes(b"c CAPABILITY\r\n").expect("decodes");
    assert_eq!((events[0].start, events[0].end), (0, 14));
}

#[test]
fn limits_are_errors_not_panics() {
    let limits = Limits {
        max_line: 64,
        max_literal: 1000,
    };
    let mut client = ClientDecoder::new(limits);
    let mut out = Vec::new();
    assert_eq!(
        client.feed(&[b'a'; 100], &mut out),
        Err(DecodeError::LineTooLong { limit: 64 })
    );
    assert!(client.feed(b"a NOOP\r\n", &mut out).is_err());
    let mut server = ServerDecoder::new(limits);
    let mut out = Vec::new();
    assert_eq!(
        server.feed(b"* 1 FETCH (BODY[] {1001}\r\n", &mut out),
        Err(DecodeError::LiteralTooLarge {
            announced: 1001,
            limit: 1000
        })
    );
    // A 100 MiB literal under the default limits is skipped, not kept.
    let mut server = ServerDecoder::new(Limits::default());
    let mut out = Vec::new();
    server
        .feed(b"* 1 FETCH (BODY[] {104857600}\r\n", &mut out)
        .expect("accepted");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        server.feed(&chunk, &mut out).expect("skipped");
    }
    server.feed(b")\r\n", &mut out).expect("ends");
    assert_eq!(
        out[0].event,
        ServerEvent::Untagged(Untagged::Fetch {
            seq: 1,
            uid: None,
            literal_bytes: 104_857_600
        })
    );
}

#[test]
fn malformed_lines_are_events() {
    let run = run(&[(C, b"\r\n(garbage\r\n"), (S, b"garbage\r\n")]);
    assert!(
        run.client
            .iter()
            .all(|e| matches!(e, ClientEvent::Malformed { .. }))
    );
    assert!(matches!(run.server[0], ServerEvent::Malformed { .. }));
}

fn assert_no_canary(run: &Run) {
    let debug = format!("{run:?}");
    assert!(!debug.contains(CANARY), "canary in {debug}");
}

/// A transcript with the canary in every literal, password and token.
fn canary_transcript() -> (Vec<u8>, Vec<u8>) {
    let body = format!("Subject: {CANARY}\r\n\r\n{CANARY}\r\n");
    let n = body.len();
    let plain = b64(format!("\0u\0{CANARY}").as_bytes());
    let client = format!(
        "a LOGIN {{4}}\r\nuser {{{c}+}}\r\n{CANARY}\r\nb AUTHENTICATE PLAIN {plain}\r\n\
         c APPEND INBOX {{{n}+}}\r\n{body} (\\Seen) {{{n}+}}\r\n{body}\r\n\
         d SELECT {{{c}+}}\r\n{CANARY}\r\ne UID FETCH 1:* (BODY.PEEK[])\r\nf LOGIN \"x\" \"{CANARY}\"\r\n",
        c = CANARY.len()
    );
    let server = format!(
        "* OK ready\r\na OK done\r\n* 1 FETCH (UID 1 BODY[] {{{n}}}\r\n{body} FLAGS (\\Seen))\r\n\
         * LIST () \"/\" {{{c}}}\r\n{CANARY}\r\n* 2 FETCH (BINARY[1] ~{{{n}}}\r\n{body})\r\ne OK done\r\n",
        c = CANARY.len()
    );
    (client.into_bytes(), server.into_bytes())
}

fn decode_chunks<T>(
    bytes: &[u8],
    cuts: &[usize],
    mut feed: impl FnMut(&[u8], &mut Vec<Spanned<T>>) -> Result<(), DecodeError>,
) -> Vec<Spanned<T>> {
    let mut out = Vec::new();
    let mut positions: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    positions.sort_unstable();
    let mut last = 0;
    for cut in positions.into_iter().chain([bytes.len()]) {
        feed(&bytes[last..cut], &mut out).expect("decodes");
        last = cut;
    }
    out
}

#[test]
fn canary_transcript_decodes_to_the_expected_events() {
    let (client, server) = canary_transcript();
    let mut decoder = ClientDecoder::new(Limits::default());
    let events = decode_chunks(&client, &[], |b, o| decoder.feed(b, o));
    let names: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.event {
            ClientEvent::Command(c) => Some(c.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "LOGIN",
            "AUTHENTICATE",
            "APPEND",
            "SELECT",
            "UID FETCH",
            "LOGIN"
        ]
    );
    let ClientEvent::Command(append) = &events[2].event else {
        panic!()
    };
    assert!(matches!(
        append.args,
        CommandArgs::Append { messages: 2, .. }
    ));
    let mut decoder = ServerDecoder::new(Limits::default());
    let events = decode_chunks(&server, &[], |b, o| decoder.feed(b, o));
    assert_eq!(events.len(), 6);
    assert!(!format!("{events:?}").contains(CANARY));
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
        let (client, server) = canary_transcript();
        let mut whole = ClientDecoder::new(Limits::default());
        let expected = decode_chunks(&client, &[], |b, o| whole.feed(b, o));
        let mut chunked = ClientDecoder::new(Limits::default());
        prop_assert_eq!(&decode_chunks(&client, &cuts, |b, o| chunked.feed(b, o)), &expected);

        let mut whole = ServerDecoder::new(Limits::default());
        let expected = decode_chunks(&server, &[], |b, o| whole.feed(b, o));
        let mut chunked = ServerDecoder::new(Limits::default());
        let got = decode_chunks(&server, &cuts, |b, o| chunked.feed(b, o));
        prop_assert_eq!(&got, &expected);
        let debug = format!("{got:?}");
        prop_assert!(!debug.contains(CANARY), "canary in events");
    }

    #[test]
    fn literals_never_reach_events(
        body in "[ -~]{0,40}",
        password in "[!#-~]{1,20}",
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let body = format!("{body}{CANARY}{body}");
        let password = format!("{password}{CANARY}");
        let client = format!(
            "a LOGIN {{1}}\r\nu {{{}+}}\r\n{password}\r\nb LOGIN u \"{}\"\r\nc APPEND X {{{}+}}\r\n{body}\r\n",
            password.len(),
            password.replace('\\', "\\\\").replace('"', "\\\""),
            body.len(),
        );
        let mut decoder = ClientDecoder::new(Limits::default());
        let events = decode_chunks(client.as_bytes(), &cuts, |b, o| decoder.feed(b, o));
        prop_assert_eq!(events.len(), 3);
        let debug = format!("{events:?}");
        prop_assert!(!debug.contains(CANARY), "canary in events");
    }

    #[test]
    fn generated_commands_round_trip(
        tag in "[A-Za-z0-9.]{1,8}",
        uid in any::<bool>(),
        low in 1u32..1000,
        span in 0u32..50,
        mode in 0usize..3,
        flags in proptest::collection::vec(prop_oneof![
            Just("\\Seen"), Just("\\Deleted"), Just("\\Flagged"), Just("$Label1")
        ], 1..4),
        mailbox in "[A-Za-z][A-Za-z0-9 ]{0,12}",
        size in 0u64..5000,
        peek in any::<bool>(),
    ) {
        let prefix = if uid { "UID " } else { "" };
        let range = format!("{low}:{}", low + span);
        let sign = ["+", "-", ""][mode];
        let store = format!("{tag} {prefix}STORE {range} {sign}FLAGS ({})\r\n", flags.join(" "));
        let fetch = format!("{tag} {prefix}FETCH {range} (UID BODY{}[1.2]<0.100>)\r\n", if peek { ".PEEK" } else { "" });
        let moved = format!("{tag} {prefix}MOVE {range} \"{mailbox}\"\r\n");
        let append = format!("{tag} APPEND \"{mailbox}\" {{{size}+}}\r\n{}\r\n", "x".repeat(size as usize));
        let mut decoder = ClientDecoder::new(Limits::default());
        let mut out = Vec::new();
        for line in [&store, &fetch, &moved, &append] {
            decoder.feed(line.as_bytes(), &mut out).expect("decodes");
        }
        let commands: Vec<Command> = out.into_iter().map(|e| match e.event {
            ClientEvent::Command(c) => c,
            other => panic!("{other:?}"),
        }).collect();
        prop_assert_eq!(commands.len(), 4);
        for command in &commands {
            prop_assert_eq!(&command.tag, &tag);
        }
        let store_mode = [StoreMode::Add, StoreMode::Remove, StoreMode::Replace][mode];
        let adds_deleted = store_mode != StoreMode::Remove && flags.contains(&"\\Deleted");
        prop_assert_eq!(&commands[0].name, &format!("{prefix}STORE"));
        prop_assert_eq!(&commands[0].args, &CommandArgs::Store {
            set: set(&range),
            flags: StoreFlags {
                mode: store_mode,
                silent: false,
                flags: flags.iter().map(|f| (*f).to_owned()).collect(),
                adds_deleted,
            },
        });
        prop_assert_eq!(&commands[0].request, &store[tag.len() + 1..store.len() - 2]);
        let CommandArgs::Fetch { set: fetched, items } = &commands[1].args else { panic!() };
        prop_assert_eq!(fetched, &set(&range));
        prop_assert!(items.content);
        prop_assert_eq!(items.marks_seen, !peek);
        prop_assert_eq!(&commands[2].args, &CommandArgs::Transfer { set: set(&range), mailbox: text(&mailbox) });
        prop_assert_eq!(&commands[3].args, &CommandArgs::Append { mailbox: text(&mailbox), messages: 1, size });
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut session = Session::new(Limits { max_line: 128, max_literal: 64 });
        let _ = session.client_bytes(&bytes);
        let _ = session.server_bytes(&bytes);
    }

    #[test]
    fn capability_filter_removes_only_deflate(caps in proptest::collection::vec("[A-Z0-9=+-]{1,12}", 0..8), at in any::<usize>()) {
        let mut words = caps.clone();
        words.insert(at % (words.len() + 1), "COMPRESS=DEFLATE".to_owned());
        let line = format!("* CAPABILITY {}\r\n", words.join(" "));
        let filtered = without_compress_deflate(line.as_bytes()).expect("removed");
        let kept: Vec<String> = caps.into_iter().filter(|c| c != "COMPRESS=DEFLATE").collect();
        prop_assert_eq!(String::from_utf8(filtered).expect("ascii"), format!("* CAPABILITY {}\r\n", kept.join(" ")));
    }
}
