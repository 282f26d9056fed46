//! Untrusted producer JSON → typed trace (the content guard and schema).
//! Must never panic; an accepted trace must serialise to JSON that parses
//! back to the same trace, and refusals must never quote the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_model::{Limits, Trace, parse_trace};

fuzz_target!(|data: &[u8]| {
    match parse_trace(data, &Limits::default()) {
        Ok(trace) => {
            let json = serde_json::to_vec(&trace).expect("a trace serialises");
            let again: Trace = serde_json::from_slice(&json).expect("and parses back");
            assert_eq!(again, trace);
        }
        Err(e) => {
            // Error messages name fields and rules, never values: long
            // inputs must not show up in them.
            let msg = e.to_string();
            assert!(msg.len() < 2048, "error message too long");
        }
    }
});
