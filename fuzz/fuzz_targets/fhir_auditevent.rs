//! Untrusted JSON → FHIR AuditEvent check → trace; a posted Bundle; an
//! ITI-81 query string. Must never panic; a mapped trace serialises and
//! parses back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_audit::fhir::{Search, check_audit_event, parse_bundle, to_trace};
use registre_model::{Limits, Trace};

fuzz_target!(|data: &[u8]| {
    let _ = parse_bundle(data);
    if let Ok(q) = std::str::from_utf8(data) {
        let _ = Search::parse(q, &jiff::tz::TimeZone::UTC);
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = check_audit_event(&v);
    if let Ok(trace) = to_trace(&v, &Limits::default()) {
        let json = serde_json::to_vec(&trace).expect("a trace serialises");
        let again: Trace = serde_json::from_slice(&json).expect("and parses back");
        assert_eq!(again, trace);
    }
});
