//! RFC 5424 messages and RFC 5425 / 6587 framing: real frames from ATNA
//! senders (`testdata/atna/syslog/`), precise refusals, and properties:
//! any split of a valid stream decodes to the same frames, and generated
//! messages survive a write/parse round trip.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::path::Path;

use proptest::prelude::*;
use registre_audit::syslog::{
    FrameDecoder, FrameError, Framing, Message, MessageError, SdElement, SdParam, SyslogError,
    message_to_trace, octet_frame, parse,
};
use registre_model::Limits;

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/atna/syslog")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn octet_counted_fixture_decodes_to_one_frame() {
    let raw = fixture("ahdis-iti-47-atna-raw-octet-counted.txt");
    let mut d = FrameDecoder::new(Framing::OctetCounting, 64 * 1024);
    let mut frames = Vec::new();
    d.decode(&raw, &mut frames).expect("valid stream");
    d.finish().expect("nothing left over");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].len(), 2164);
    let m = parse(&frames[0]).expect("RFC 5424");
    assert_eq!(m.pri, 85);
    assert_eq!(m.hostname, Some("matchbox.test"));
    assert_eq!(m.msgid, Some("IHE+RFC-3881"));
    let t = message_to_trace(&frames[0], &Limits::default()).expect("trace");
    assert_eq!(t.action.as_str(), "recherche");
    assert_eq!(t.actor.id, "unknown");
    let s = t.source.expect("source");
    assert_eq!(s.host.as_deref(), Some("matchbox.test"));
    assert_eq!(s.ip.as_deref(), Some("10.28.3.3"));
    let o = t.original.expect("original");
    assert_eq!(o.format, "syslog");
    assert_eq!(o.text.as_bytes(), &frames[0][..]);
}

#[test]
fn bare_fixtures_map() {
    let cases = [
        // file, msgid, action, actor, patient
        (
            "openhim-ihewiki-login-rfc3881.log",
            "IHE+RFC-3881",
            "connexion",
            "farley.granger@wb.com",
            None,
        ),
        (
            "openhim-ihewiki-login-dicom.log",
            "IHE+DICOM",
            "connexion",
            "farley.granger@wb.com",
            None,
        ),
        (
            "openhim-testAuditMessage-pix-query.log",
            "IHE+RFC-3881",
            "recherche",
            "openhim-mediator-ohie-xds|openhim",
            Some("fc133984036647e"),
        ),
        (
            // The ANS TDE example: MSG starts with a line feed before the XML
            // declaration, and no participant is marked as requestor.
            "tde-TDE_Flux01-VersionSyslog.log",
            "IHE+RFC-3881",
            "consultation",
            "6576",
            Some("000789"),
        ),
    ];
    for (file, msgid, action, actor, patient) in cases {
        let raw = fixture(file);
        let m = parse(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(m.msgid, Some(msgid), "{file}");
        let t =
            message_to_trace(&raw, &Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(t.action.as_str(), action, "{file}");
        assert_eq!(t.actor.id, actor, "{file}");
        let p = t
            .target
            .as_ref()
            .and_then(|t| t.patient.as_ref())
            .map(|p| p.id.as_str());
        assert_eq!(p, patient, "{file}");
        assert_eq!(
            t.original.expect("original").text.as_bytes(),
            &raw[..],
            "{file}"
        );
    }
    let tde = message_to_trace(
        &fixture("tde-TDE_Flux01-VersionSyslog.log"),
        &Limits::default(),
    )
    .expect("tde");
    assert_eq!(tde.occurred_at, "2021-02-05T14:28:40.0236367Z");
    assert_eq!(tde.source.and_then(|s| s.host).as_deref(), Some("TEST-WEB"));
    // Priority 110 = facility 13 (log audit), severity 6.
    let m = parse(&fixture("tde-TDE_Flux01-VersionSyslog.log"))
        .expect("tde")
        .pri;
    assert_eq!(m, 110);
}

#[test]
fn a_json_trace_with_a_bom_as_msg() {
    let json = r#"{"class":"mss","occurred_at":"2026-11-28T15:42:07.123+01:00","actor":{"id":"810001234567","id_type":"rpps"},"action":"suppression","target":{"mailbox":"dr.martin@hopital.mssante.fr","uids":"42"}}"#;
    let raw = format!(
        "<110>1 2026-11-28T15:42:07.2+01:00 proxy registre-proxy 77 trace - \u{feff}{json}\n"
    );
    let t = message_to_trace(raw.as_bytes(), &Limits::default()).expect("json trace");
    assert_eq!(t.action.as_str(), "suppression");
    assert_eq!(t.class.as_str(), "mss");
    assert_eq!(t.source, None, "a JSON trace is kept as sent");
    assert_eq!(t.original.expect("original").text, raw);
}

#[test]
fn refusals_are_precise_and_never_quote() {
    let canary = "CANARY-3e1b";
    let l = Limits::default();
    let refuse = |raw: &[u8]| {
        let e = message_to_trace(raw, &l).expect_err("refused");
        assert!(!e.to_string().contains(canary), "{e}");
        e
    };
    assert_eq!(
        refuse(format!("<13>Oct 11 22:14:15 host {canary}").as_bytes()),
        MessageError::Syslog(SyslogError::NoVersion)
    );
    assert_eq!(refuse(b"<13>1 - - - - - -"), MessageError::NoMsg);
    assert_eq!(refuse(b"<13>1 - - - - - -   \n"), MessageError::NoMsg);
    assert_eq!(
        refuse(format!("<13>1 - - - - - - {canary}").as_bytes()),
        MessageError::UnknownPayload
    );
    let e = refuse(format!("<13>1 - - - - - - \u{feff}{{\"actor\":\"{canary}\"").as_bytes());
    assert_eq!(e.code(), "json_trace_invalid");
    let e = refuse(format!("<13>1 - - - - - - <AuditMessage><{canary}></AuditMessage>").as_bytes());
    assert_eq!(e.code(), "xml_malformed");
    let mut not_utf8 = b"<13>1 - - - - - - <AuditMessage>".to_vec();
    not_utf8.extend_from_slice(b"\xff\xfe</AuditMessage>");
    assert!(matches!(
        refuse(&not_utf8),
        MessageError::NotUtf8 { at: 32 }
    ));
    let big = format!(
        "<13>1 - - - - - - <AuditMessage>{}</AuditMessage>",
        "x".repeat(20_000)
    );
    assert!(matches!(
        refuse(big.as_bytes()),
        MessageError::TooLarge { max: 16384, .. }
    ));
}

#[test]
fn framer_reports_oversize_before_buffering() {
    let mut d = FrameDecoder::new(Framing::OctetCounting, 64 * 1024);
    let mut out = Vec::new();
    assert_eq!(
        d.decode(b"99999999999999999999 ", &mut out),
        Err(FrameError::TooLarge {
            len: 99_999,
            max: 65_536
        })
    );
    assert_eq!(d.buffered(), 0);
    // The error sticks: the stream cannot be resynchronised.
    assert!(d.decode(b"5 hello", &mut out).is_err());
    assert!(out.is_empty());
}

// ---- properties ----

fn frames_strategy() -> impl Strategy<Value = Vec<(bool, Vec<u8>)>> {
    // (as a line?, bytes). Lines start with `<`, hold no LF and do not end
    // with CR (non-transparent framing cannot carry those).
    let counted = prop::collection::vec(any::<u8>(), 1..300).prop_map(|b| (false, b));
    let line = "<[ -~]{0,200}"
        .prop_map(|s| (true, s.into_bytes()))
        .prop_filter("no trailing CR", |(_, b)| b.last() != Some(&b'\r'));
    prop::collection::vec(prop_oneof![counted, line], 0..20)
}

fn encode(frames: &[(bool, Vec<u8>)], lines: bool) -> Vec<u8> {
    let mut stream = Vec::new();
    for (as_line, f) in frames {
        if *as_line && lines {
            stream.extend_from_slice(f);
            stream.push(b'\n');
        } else {
            stream.extend_from_slice(&octet_frame(f));
        }
    }
    stream
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_split_decodes_the_same_frames(
        frames in frames_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        lines in any::<bool>(),
    ) {
        let stream = encode(&frames, lines);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.sort_unstable();
        points.dedup();
        let framing = if lines { Framing::Auto } else { Framing::OctetCounting };
        let mut d = FrameDecoder::new(framing, 1024);
        let mut out = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(stream.len())) {
            d.decode(&stream[last..p], &mut out).expect("valid stream");
            last = p;
        }
        d.finish().expect("complete");
        let want: Vec<Vec<u8>> = frames.into_iter().map(|(_, f)| f).collect();
        prop_assert_eq!(out, want);
    }

    #[test]
    fn truncated_streams_say_so(frames in frames_strategy(), cut in any::<prop::sample::Index>()) {
        let stream = encode(&frames, false);
        prop_assume!(!stream.is_empty());
        let at = cut.index(stream.len());
        let mut d = FrameDecoder::new(Framing::OctetCounting, 1024);
        let mut out = Vec::new();
        d.decode(&stream[..at], &mut out).expect("a prefix is valid");
        // Whole frames before the cut are delivered; a cut inside a frame
        // is reported at the end of the stream.
        let whole = frames.iter().scan(0usize, |acc, (_, f)| {
            *acc += octet_frame(f).len();
            Some(*acc)
        }).filter(|end| *end <= at).count();
        prop_assert_eq!(out.len(), whole);
        let on_boundary = at == 0 || frames.iter().scan(0usize, |acc, (_, f)| {
            *acc += octet_frame(f).len();
            Some(*acc)
        }).any(|end| end == at);
        prop_assert_eq!(d.finish().is_ok(), on_boundary);
    }
}

fn name() -> impl Strategy<Value = String> {
    // SD-NAME: printable ASCII except '=', ' ', ']', '"'.
    "[!#-<>-\\\\^-~]{1,32}"
}

fn header_field(max: usize) -> impl Strategy<Value = Option<String>> {
    prop::option::of(proptest::string::string_regex(&format!("[!-~]{{1,{max}}}")).expect("regex"))
        .prop_map(|f| f.filter(|s| s != "-"))
}

fn timestamp() -> impl Strategy<Value = Option<String>> {
    prop::option::of(
        (
            1970u32..2100,
            1u32..13,
            1u32..29,
            0u32..24,
            0u32..60,
            0u32..60,
            prop::option::of(0u32..1_000_000),
            prop_oneof![
                Just("Z".to_owned()),
                (0u32..14, 0u32..60, any::<bool>()).prop_map(|(h, m, neg)| format!(
                    "{}{h:02}:{m:02}",
                    if neg { '-' } else { '+' }
                ))
            ],
        )
            .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
                let frac = frac.map_or(String::new(), |f| format!(".{f:06}"));
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
            }),
    )
}

#[derive(Debug, Clone)]
struct Owned {
    pri: u8,
    ts: Option<String>,
    host: Option<String>,
    app: Option<String>,
    procid: Option<String>,
    msgid: Option<String>,
    sd: Vec<(String, Vec<(String, String)>)>,
    bom: bool,
    msg: Option<Vec<u8>>,
}

fn message() -> impl Strategy<Value = Owned> {
    (
        0u8..192,
        timestamp(),
        header_field(255),
        header_field(48),
        header_field(128),
        header_field(32),
        prop::collection::vec(
            (name(), prop::collection::vec((name(), ".{0,20}"), 0..4)),
            0..3,
        ),
        any::<bool>(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
    )
        .prop_map(|(pri, ts, host, app, procid, msgid, sd, bom, msg)| {
            let bom = bom && msg.is_some();
            // Without a BOM, a MSG that starts with one would read as BOM.
            let msg = msg.map(|m| {
                if !bom && m.starts_with(b"\xEF\xBB\xBF") {
                    m[3..].to_vec()
                } else {
                    m
                }
            });
            Owned {
                pri,
                ts,
                host,
                app,
                procid,
                msgid,
                sd,
                bom,
                msg,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn generated_messages_round_trip(o in message()) {
        let m = Message {
            pri: o.pri,
            timestamp: o.ts.as_deref(),
            hostname: o.host.as_deref(),
            app_name: o.app.as_deref(),
            procid: o.procid.as_deref(),
            msgid: o.msgid.as_deref(),
            structured_data: o.sd.iter().map(|(id, params)| SdElement {
                id,
                params: params.iter().map(|(n, v)| SdParam { name: n, value: Cow::Borrowed(v) }).collect(),
            }).collect(),
            bom: o.bom,
            msg: o.msg.as_deref(),
        };
        let bytes = m.to_vec();
        let back = parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(back, m);
    }

    #[test]
    fn parsing_never_panics_and_never_quotes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Err(e) = parse(&bytes) {
            prop_assert!(e.to_string().len() < 300);
        }
        let _ = message_to_trace(&bytes, &Limits::default());
    }
}
