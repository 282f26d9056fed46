//! The paging cursor comes back from clients: decoding must never panic, and
//! what decodes must re-encode to a cursor that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_store::Cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Cursor::decode(text) {
        assert_eq!(Cursor::decode(&c.encode()).ok(), Some(c));
    }
});
