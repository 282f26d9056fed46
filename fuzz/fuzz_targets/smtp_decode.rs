//! Feeds arbitrary bytes, cut into arbitrary chunks, to both SMTP decoders
//! and to a session with small bounds. Must never panic; a framing error
//! must stick; chunking must not change the events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_proxy::smtp::{ClientDecoder, Decision, Limits, ServerDecoder, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: 512,
        max_auth_line: 1024,
        max_message: 4096,
    };
    let cut = usize::from(cut).min(bytes.len());

    // The client decoder, told that every DATA was accepted.
    let decode = |pieces: &[&[u8]]| {
        let mut decoder = ClientDecoder::new(limits);
        let mut events = Vec::new();
        for piece in pieces {
            decoder.feed(piece, &mut events)?;
            while decoder.awaiting_data_reply() {
                decoder.on_decision(Decision::Data { accepted: true }, &mut events)?;
            }
        }
        Ok::<_, registre_proxy::smtp::DecodeError>((decoder, events))
    };
    let whole = decode(&[bytes]);
    let chunked = decode(&[&bytes[..cut], &bytes[cut..]]);
    match (whole, chunked) {
        (Ok((_, expected)), Ok((_, got))) => assert_eq!(expected, got),
        // Bytes held after DATA are bounded per feed, so an error may
        // depend on the cut.
        (Err(_), _) | (_, Err(_)) => {}
    }
    let mut failing = ClientDecoder::new(limits);
    let mut events = Vec::new();
    if failing.feed(bytes, &mut events).is_err() {
        assert!(failing.feed(b"NOOP\r\n", &mut events).is_err());
    }

    let mut whole = ServerDecoder::new(limits);
    let mut expected = Vec::new();
    let whole_result = whole.feed(bytes, &mut expected);
    let mut chunked = ServerDecoder::new(limits);
    let mut got = Vec::new();
    let chunked_result = chunked
        .feed(&bytes[..cut], &mut got)
        .and_then(|()| chunked.feed(&bytes[cut..], &mut got));
    assert_eq!(whole_result.is_err(), chunked_result.is_err());
    if whole_result.is_ok() {
        assert_eq!(expected, got);
    }

    let mut session = Session::new(limits);
    let _ = session.client_bytes(&bytes[..cut]);
    let _ = session.server_bytes(&bytes[cut..]);
    let _ = session.client_bytes(&bytes[cut..]);
    let _ = session.finish();
    let _ = registre_proxy::smtp::without_extensions(bytes, &["CHUNKING", "PIPELINING"]);
});
