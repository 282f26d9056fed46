//! Parses arbitrary text as a checkpoint body. Must never panic; what
//! parses must be canonical (re-encodes to the same bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_log::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(checkpoint) = Checkpoint::parse(text) {
        assert_eq!(checkpoint.body(), text);
    }
});
