//! Parses arbitrary text as a c2sp.org/tlog-proof. Must never panic; what
//! parses must be canonical, and verifying it must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_log::note::Verifier;
use registre_log::{TlogProof, leaf_hash, proof};

const VKEY: &str = "astra+cad5a3d2+AZJqeuyE/GnknsCNh1eCtDtwdAwKBddOlS8M2eI1Jt4b";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = TlogProof::parse(text) else {
        return;
    };
    assert_eq!(parsed.encode(), text);
    if let Ok(verifier) = Verifier::parse(VKEY) {
        let _ = proof::verify(
            &parsed,
            &leaf_hash(b"one"),
            "example.com/testdata",
            &[verifier],
        );
    }
});
