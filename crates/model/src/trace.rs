//! The typed trace (DESIGN §2).
//!
//! Field order matters: every struct declares its fields in the order of
//! RFC 8785 (sorted by UTF-16 code units; all our names are ASCII so this is
//! byte order), integers stay below 2^53 and there are no floats, so
//! `serde_json::to_writer` of a [`StoredTrace`] already produces its JCS form.
//! A property test checks this against the generic [`crate::jcs`]
//! implementation.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Action, ClassName};

/// A trace as a producer sends it, once parsed and checked by
/// [`crate::parse_trace`]. It has no place for message content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub action: Action,
    pub actor: Actor,
    pub class: ClassName,
    /// Local workstation time with its UTC offset, kept exactly as sent.
    pub occurred_at: String,
    /// The message as a standard intake received it (a FHIR AuditEvent, a
    /// syslog message), bounded, so a read returns what was sent. Set by the
    /// server's FHIR and syslog intakes only; refused on the JSON API.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub original: Option<Original>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<Outcome>,
    /// The protocol request, every literal replaced by `{N bytes}`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response: Option<Response>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<Target>,
}

/// The authenticated author of the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// How the author was authenticated (`psc`, `cps`, `password`, `oidc`…).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth: Option<String>,
    pub id: String,
    /// The identifier's kind (`rpps`, `adeli`, `login`, `email`…).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id_type: Option<String>,
}

/// What the action was about. Never content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Destination folder of a move or copy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub document: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub folder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mailbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub patient: Option<Patient>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub recipients: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource: Option<String>,
    /// Size in bytes (of an appended message, say); never the bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    /// IMAP UID set, e.g. `42` or `1:5,9`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uids: Option<String>,
}

/// A patient identifier: an INS (system `1.2.250.1.213.1.4.8` or `…4.9`) or a
/// local identifier (IPP) with its assigning system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub system: Option<String>,
}

/// The server's answer: status (`OK`, `NO`, `BAD`, an SMTP or HTTP code) and
/// its status text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// A message as a standard intake received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// `fhir+json` (an AuditEvent, JCS), `dicom+xml` (an RFC 3881 / DICOM
    /// AuditMessage), `syslog` (an RFC 5424 message).
    pub format: String,
    pub text: String,
}

/// Where the action came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub software: Option<String>,
}

/// 16 random bytes drawn by the server for each trace; they keep the public
/// commitment from revealing a guessable trace.
pub type Salt = [u8; 16];

/// A trace with the fields the server adds. Serialised (without the salt,
/// which is kept beside it) it is the trace's canonical JCS form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTrace {
    pub action: Action,
    pub actor: Actor,
    pub class: ClassName,
    pub id: Uuid,
    pub index: u64,
    pub log: ClassName,
    pub occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub original: Option<Original>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub outcome: Option<Outcome>,
    /// UTC, server clock, RFC 3339 with microseconds.
    pub received_at: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub response: Option<Response>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<Target>,
}

impl StoredTrace {
    /// Adds the server fields to a producer's trace. The log is the class's.
    pub fn new(trace: Trace, index: u64, id: Uuid, received_at: String) -> StoredTrace {
        let Trace {
            action,
            actor,
            class,
            occurred_at,
            original,
            outcome,
            request,
            response,
            source,
            target,
        } = trace;
        StoredTrace {
            action,
            actor,
            log: class.clone(),
            class,
            id,
            index,
            occurred_at,
            original,
            outcome,
            received_at,
            request,
            response,
            source,
            target,
        }
    }

    /// The canonical (RFC 8785) bytes of this trace, salt excluded.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical bytes to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        // Serialising plain structs of strings and integers into a Vec cannot
        // fail: there are no maps with non-string keys and no I/O errors.
        if serde_json::to_writer(&mut *out, self).is_err() {
            unreachable!("serialising a StoredTrace into memory cannot fail");
        }
    }

    pub fn mailbox(&self) -> Option<&str> {
        self.target.as_ref().and_then(|t| t.mailbox.as_deref())
    }

    pub fn patient_id(&self) -> Option<&str> {
        self.target
            .as_ref()
            .and_then(|t| t.patient.as_ref())
            .map(|p| p.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{ACTIONS, jcs};

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("\\PC{0,12}")
    }

    prop_compose! {
        fn stored()(
            action in 0..ACTIONS.len(),
            id in "\\PC{1,16}",
            auth in opt_text(),
            id_type in opt_text(),
            index in 0u64..(1 << 53),
            mailbox in opt_text(),
            folder in opt_text(),
            uids in opt_text(),
            size in proptest::option::of(0u64..(1 << 53)),
            patient in proptest::option::of(("\\PC{1,12}", opt_text())),
            recipients in proptest::option::of(proptest::collection::vec("\\PC{0,8}", 0..3)),
            request in opt_text(),
            status in "[A-Z0-9]{1,4}",
            text in opt_text(),
            ip in proptest::option::of(Just("10.1.2.3".to_owned())),
            session in opt_text(),
            outcome in proptest::option::of(prop_oneof![Just(Outcome::Success), Just(Outcome::Failure)]),
            id_bytes in any::<[u8; 16]>(),
            original in proptest::option::of(("[a-z+]{1,10}", "\\PC{0,40}")),
        ) -> StoredTrace {
            let class = ClassName::new("mss").expect("valid");
            StoredTrace {
                action: Action::parse(ACTIONS[action]).expect("listed"),
                actor: Actor { auth, id, id_type },
                class: class.clone(),
                id: Uuid::from_bytes(id_bytes),
                index,
                log: class,
                occurred_at: "2026-11-28T15:42:07.123+01:00".into(),
                original: original.map(|(format, text)| Original { format, text }),
                outcome,
                received_at: "2026-11-28T14:42:07.123456Z".into(),
                request,
                response: Some(Response { status, text }),
                source: Some(Source { host: None, ip, session, software: None }),
                target: Some(Target {
                    destination: None,
                    document: None,
                    folder,
                    mailbox,
                    message_id: None,
                    patient: patient.map(|(id, system)| Patient { id, system }),
                    recipients,
                    resource: None,
                    size,
                    uids,
                }),
            }
        }
    }

    proptest! {
        /// The typed serialisation is the RFC 8785 form: what we hash is
        /// what any JCS implementation would produce from the same JSON.
        #[test]
        fn typed_serialisation_is_jcs(t in stored()) {
            let typed = t.canonical_bytes();
            let value: serde_json::Value = serde_json::from_slice(&typed).expect("valid JSON");
            let generic = jcs::to_canonical_vec(&value).expect("canonical");
            prop_assert_eq!(String::from_utf8_lossy(&typed), String::from_utf8_lossy(&generic));
            let back: StoredTrace = serde_json::from_slice(&typed).expect("decodes");
            prop_assert_eq!(back, t);
        }
    }
}
