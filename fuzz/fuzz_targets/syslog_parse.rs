//! Untrusted bytes → an RFC 5424 message, and a syslog message → a trace.
//! Must never panic; a parsed message re-encodes to bytes that parse to the
//! same message; errors stay short (they never quote the input).
#![no_main]

use libfuzzer_sys::fuzz_target;
use registre_audit::syslog::{message_to_trace, parse};
use registre_model::Limits;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(m) => {
            let again = m.to_vec();
            let m2 = parse(&again).expect("a written message parses");
            assert_eq!(m, m2);
        }
        Err(e) => assert!(e.to_string().len() < 512),
    }
    match message_to_trace(data, &Limits::default()) {
        Ok(t) => {
            let o = t.original.as_ref().expect("original kept");
            assert_eq!(o.text.as_bytes(), data);
        }
        Err(e) => assert!(e.to_string().len() < 2048),
    }
});
