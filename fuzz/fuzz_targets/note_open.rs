//! Opens arbitrary bytes as a signed note. Must never panic; a note that
//! opens must carry a verified signature and have its text as a prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_log::note::{self, Verifier};

const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fuzz_target!(|data: &[u8]| {
    let Ok(verifier) = Verifier::parse(VKEY) else {
        return;
    };
    if let Ok(opened) = note::open(data, &[verifier]) {
        assert!(!opened.verified().is_empty());
        assert!(data.starts_with(opened.text().as_bytes()));
    }
});
