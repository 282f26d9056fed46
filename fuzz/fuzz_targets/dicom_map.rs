//! Untrusted XML → DICOM AuditMessage → trace. Must never panic (no DTD, no
//! entity expansion, bounded size); a mapped trace serialises and parses
//! back; errors stay short (they never quote the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_audit::dicom::to_trace;
use registre_model::{Limits, Trace};

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    match to_trace(xml, &Limits::default()) {
        Ok(trace) => {
            let json = serde_json::to_vec(&trace).expect("a trace serialises");
            let again: Trace = serde_json::from_slice(&json).expect("and parses back");
            assert_eq!(again, trace);
        }
        Err(e) => assert!(e.to_string().len() < 2048, "error message too long"),
    }
});
