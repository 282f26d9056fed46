//! Parses arbitrary text as a tile or entry-bundle path. Must never panic;
//! what parses must be canonical (re-encodes to the same path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_log::tile;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = tile::parse_path(path) {
        assert_eq!(parsed.path(), path);
    }
});
