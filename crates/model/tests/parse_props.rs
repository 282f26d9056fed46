//! Property tests of the untrusted-input parser: arbitrary bytes and
//! arbitrary JSON never panic, refusals never quote a value, and accepted
//! traces round-trip. (The cargo-fuzz target `trace_parse` in `fuzz/` does
//! the same with coverage guidance on a nightly toolchain.)

use proptest::prelude::*;
use registre_model::{Limits, Trace, parse_trace};
use serde_json::{Value, json};

const CANARY: &str = "Zq8CANARYw3";

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "\\PC{0,20}".prop_map(Value::String),
        Just(Value::String(CANARY.into())),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,12}",
                    Just("class".to_owned()),
                    Just("actor".to_owned()),
                    Just("target".to_owned()),
                    Just("request".to_owned()),
                    Just("subject".to_owned()),
                    Just("id".to_owned()),
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn base() -> Value {
    json!({
        "class": "mss",
        "occurred_at": "2026-11-28T15:42:07.123+01:00",
        "actor": {"id": "810001234567"},
        "action": "envoi",
        "target": {"mailbox": "dr.martin@hopital.mssante.fr"},
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_trace(&bytes, &Limits::default());
    }

    #[test]
    fn arbitrary_json_is_parsed_or_refused_without_echo(v in json_value()) {
        let raw = serde_json::to_vec(&v).expect("serialises");
        match parse_trace(&raw, &Limits::default()) {
            Ok(t) => {
                let again: Trace = serde_json::from_slice(&serde_json::to_vec(&t).expect("ser")).expect("de");
                prop_assert_eq!(again, t);
            }
            Err(e) => prop_assert!(!e.to_string().contains(CANARY), "{}", e),
        }
    }

    #[test]
    fn one_field_replaced_anywhere(path in prop::sample::select(vec![
        "class", "occurred_at", "action", "request", "outcome", "actor", "target", "source", "response",
    ]), v in json_value()) {
        let mut t = base();
        t[path] = v;
        let raw = serde_json::to_vec(&t).expect("serialises");
        match parse_trace(&raw, &Limits::default()) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.to_string().contains(CANARY), "{}", e);
                prop_assert!(e.path.is_empty() || e.path.starts_with(path) || e.path.contains("subject"), "{} for {}", e, path);
            }
        }
    }
}
