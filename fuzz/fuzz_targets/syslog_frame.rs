//! Untrusted stream bytes → syslog frames (RFC 5425 octet counting, RFC 6587
//! lines). Must never panic; the frames must not depend on how the stream
//! is split into reads; no frame exceeds the maximum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_audit::syslog::{FrameDecoder, Framing};

fuzz_target!(|data: &[u8]| {
    let Some((&head, stream)) = data.split_first() else {
        return;
    };
    let framing = if head & 1 == 0 {
        Framing::OctetCounting
    } else {
        Framing::Auto
    };
    let max = 1 + usize::from(head >> 1) * 16;
    let step = 1 + usize::from(head % 7);

    let mut whole = FrameDecoder::new(framing, max);
    let mut all = Vec::new();
    let r1 = whole.decode(stream, &mut all);

    let mut split = FrameDecoder::new(framing, max);
    let mut pieces = Vec::new();
    let mut r2 = Ok(());
    for chunk in stream.chunks(step) {
        r2 = split.decode(chunk, &mut pieces);
        if r2.is_err() {
            break;
        }
    }
    assert_eq!(all, pieces, "frames depend on the split");
    assert_eq!(r1, r2, "errors depend on the split");
    assert!(all.iter().all(|f| f.len() <= max), "frame over the maximum");
    assert!(whole.buffered() <= max);
    if r1.is_ok() {
        assert_eq!(whole.finish(), split.finish());
    }
});
