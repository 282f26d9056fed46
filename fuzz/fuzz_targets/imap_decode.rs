//! Feeds arbitrary bytes, cut into arbitrary chunks, to both IMAP decoders
//! of a session with small bounds. Must never panic; a framing error must
//! stick; chunking must not change the events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_proxy::imap::{ClientDecoder, Limits, ServerDecoder, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_line: 512,
        max_literal: 4096,
    };
    let cut = usize::from(cut).min(bytes.len());

    let mut whole = ClientDecoder::new(limits);
    let mut expected = Vec::new();
    let whole_result = whole.feed(bytes, &mut expected);
    let mut chunked = ClientDecoder::new(limits);
    let mut got = Vec::new();
    let chunked_result = chunked
        .feed(&bytes[..cut], &mut got)
        .and_then(|()| chunked.feed(&bytes[cut..], &mut got));
    assert_eq!(whole_result.is_err(), chunked_result.is_err());
    if whole_result.is_ok() {
        assert_eq!(expected, got);
    } else {
        assert!(whole.feed(b"a NOOP\r\n", &mut expected).is_err());
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
    let _ = registre_proxy::imap::without_compress_deflate(bytes);
});
