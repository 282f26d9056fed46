//! The action vocabulary of the standards, mapped to registre's (French)
//! actions and back. Shared by the FHIR AuditEvent and DICOM AuditMessage
//! mappings; `docs/fr/integration.md` prints these tables.
//!
//! Standards:
//! - DICOM PS3.16 CID 150 "Audit Event ID" and CID 400 "Audit Event Type"
//!   (system `http://dicom.nema.org/resources/ontology/DCM`);
//! - FHIR R4 `audit-event-type` (`rest`) with `restful-interaction` subtypes
//!   (system `http://hl7.org/fhir/restful-interaction`), as IHE BALP uses them;
//! - the event action code (`C`, `R`, `U`, `D`, `E`) of both.

use registre_model::{Action, ClassName};

pub const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
pub const FHIR_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
pub const RESTFUL_INTERACTION: &str = "http://hl7.org/fhir/restful-interaction";
/// registre's own actions that no standard code names (mail actions, purge,
/// policy changes, extensions): the code is the French action.
pub const REGISTRE_ACTION: &str = "urn:registre:action";

/// A coded event type as the standards carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub system: &'static str,
    pub code: &'static str,
    pub display: &'static str,
}

const fn dcm(code: &'static str, display: &'static str) -> Code {
    Code {
        system: DCM,
        code,
        display,
    }
}

const fn rest(code: &'static str, display: &'static str) -> Code {
    Code {
        system: RESTFUL_INTERACTION,
        code,
        display,
    }
}

pub const REST: Code = Code {
    system: FHIR_EVENT_TYPE,
    code: "rest",
    display: "RESTful Operation",
};
pub const USER_AUTHENTICATION: Code = dcm("110114", "User Authentication");
pub const LOGIN: Code = dcm("110122", "Login");
pub const LOGOUT: Code = dcm("110123", "Logout");
pub const QUERY: Code = dcm("110112", "Query");
pub const EXPORT: Code = dcm("110106", "Export");
pub const IMPORT: Code = dcm("110107", "Import");
pub const PATIENT_RECORD: Code = dcm("110110", "Patient Record");
pub const APPLICATION_ACTIVITY: Code = dcm("110100", "Application Activity");
pub const SECURITY_ALERT: Code = dcm("110113", "Security Alert");
pub const INSTANCES_ACCESSED: Code = dcm("110103", "DICOM Instances Accessed");
pub const STUDY_DELETED: Code = dcm("110105", "DICOM Study Deleted");

/// The event as the standards describe it: type, optional subtype, action
/// code (`C`/`R`/`U`/`D`/`E`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub type_system: &'a str,
    pub type_code: &'a str,
    pub subtypes: Vec<(&'a str, &'a str)>,
    pub action: Option<&'a str>,
}

/// What an event action code means on its own.
pub fn action_of_code(code: &str) -> Option<Action> {
    Some(match code {
        "C" => Action::Creation,
        "R" => Action::Consultation,
        "U" => Action::Modification,
        "D" => Action::Suppression,
        _ => return None,
    })
}

fn action_of_interaction(code: &str) -> Option<Action> {
    Some(match code {
        "read" | "vread" | "history" | "history-instance" | "history-type" | "history-system" => {
            Action::Consultation
        }
        "create" => Action::Creation,
        "update" | "patch" => Action::Modification,
        "delete" => Action::Suppression,
        "search" | "search-type" | "search-system" | "search-compartment" => Action::Recherche,
        _ => return None,
    })
}

/// The registre action of a standard event. Unknown events keep their
/// meaning as an extension action (`x-dcm-<code>`, `x-<code>`), so nothing
/// is refused only because its vocabulary is new.
pub fn action_of(ev: &Event<'_>) -> Action {
    let by_code = ev.action.and_then(action_of_code);
    let sub = |system: &str| {
        ev.subtypes
            .iter()
            .find(|(s, _)| *s == system)
            .map(|(_, c)| *c)
    };
    let found = match (ev.type_system, ev.type_code) {
        (REGISTRE_ACTION, code) => Action::parse(code),
        (FHIR_EVENT_TYPE, "rest") => sub(RESTFUL_INTERACTION)
            .and_then(action_of_interaction)
            .or(by_code),
        // Logout by its DCM code, whatever system name the sender wrote.
        (DCM, "110114") => {
            if ev.subtypes.iter().any(|(_, c)| *c == "110123") {
                Some(Action::Deconnexion)
            } else {
                Some(Action::Connexion)
            }
        }
        (DCM, "110112") => Some(Action::Recherche),
        (DCM, "110106") => Some(Action::Export),
        (DCM, "110105") => Some(Action::Suppression),
        (DCM, "110103" | "110109" | "110110" | "110111") => by_code.or(Some(Action::Consultation)),
        _ => by_code,
    };
    found.unwrap_or_else(|| {
        let raw: String = format!("x-{}", ev.type_code)
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(42)
            .collect();
        let raw = if ev.type_system == DCM {
            format!(
                "x-dcm-{}",
                ev.type_code
                    .chars()
                    .filter(char::is_ascii_digit)
                    .take(12)
                    .collect::<String>()
            )
        } else {
            raw
        };
        Action::parse(&raw).unwrap_or(Action::Consultation)
    })
}

/// The standard event of a registre action (for traces that did not come
/// from a standard intake): type, subtype, action code.
pub fn event_of(action: &Action) -> (Code, Option<Code>, &'static str) {
    match action {
        Action::Connexion => (USER_AUTHENTICATION, Some(LOGIN), "E"),
        Action::Deconnexion => (USER_AUTHENTICATION, Some(LOGOUT), "E"),
        Action::Consultation => (REST, Some(rest("read", "read")), "R"),
        Action::Creation => (REST, Some(rest("create", "create")), "C"),
        Action::Modification => (REST, Some(rest("update", "update")), "U"),
        Action::Suppression => (REST, Some(rest("delete", "delete")), "D"),
        Action::Recherche => (QUERY, None, "E"),
        Action::Export => (EXPORT, None, "R"),
        // Mail actions, purge, policy and extensions have no standard code.
        _ => (
            Code {
                system: REGISTRE_ACTION,
                code: "",
                display: "",
            },
            None,
            match action {
                Action::Envoi | Action::Depot => "C",
                Action::Deplacement | Action::Marquage | Action::Politique => "U",
                Action::Purge => "D",
                _ => "E",
            },
        ),
    }
}

/// The class a standard event goes to: technical events (application
/// start/stop, security alerts, audit log use) to `technique`, the rest
/// (access to patient records and other business actions) to `applicative`.
pub fn class_of(ev: &Event<'_>) -> &'static str {
    match (ev.type_system, ev.type_code) {
        (DCM, "110100" | "110101" | "110113" | "110108") => ClassName::TECHNIQUE,
        _ => ClassName::APPLICATIVE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(
        system: &'a str,
        code: &'a str,
        sub: &[(&'a str, &'a str)],
        action: Option<&'a str>,
    ) -> Event<'a> {
        Event {
            type_system: system,
            type_code: code,
            subtypes: sub.to_vec(),
            action,
        }
    }

    #[test]
    fn balp_and_dicom_events_map_to_french_actions() {
        assert_eq!(
            action_of(&ev(
                FHIR_EVENT_TYPE,
                "rest",
                &[(RESTFUL_INTERACTION, "read")],
                Some("R")
            )),
            Action::Consultation
        );
        assert_eq!(
            action_of(&ev(
                FHIR_EVENT_TYPE,
                "rest",
                &[(RESTFUL_INTERACTION, "search-type")],
                Some("E")
            )),
            Action::Recherche
        );
        assert_eq!(
            action_of(&ev(FHIR_EVENT_TYPE, "rest", &[], Some("D"))),
            Action::Suppression
        );
        assert_eq!(
            action_of(&ev(DCM, "110114", &[(DCM, "110122")], Some("E"))),
            Action::Connexion
        );
        assert_eq!(
            action_of(&ev(DCM, "110114", &[(DCM, "110123")], Some("E"))),
            Action::Deconnexion
        );
        assert_eq!(
            action_of(&ev(DCM, "110110", &[], Some("U"))),
            Action::Modification
        );
        assert_eq!(
            action_of(&ev(DCM, "110112", &[], Some("E"))),
            Action::Recherche
        );
        assert_eq!(
            action_of(&ev(DCM, "110100", &[(DCM, "110120")], Some("E"))).as_str(),
            "x-dcm-110100"
        );
        assert_eq!(
            action_of(&ev(REGISTRE_ACTION, "envoi", &[], Some("C"))),
            Action::Envoi
        );
        assert_eq!(class_of(&ev(DCM, "110113", &[], None)), "technique");
        assert_eq!(class_of(&ev(DCM, "110110", &[], None)), "applicative");
    }

    #[test]
    fn every_action_has_an_event_that_maps_back() {
        for a in registre_model::ACTIONS {
            let action = Action::parse(a).expect("listed");
            let (t, sub, code) = event_of(&action);
            let code_str = if t.system == REGISTRE_ACTION {
                action.as_str()
            } else {
                t.code
            };
            let subs: Vec<(&str, &str)> = sub.iter().map(|s| (s.system, s.code)).collect();
            let back = action_of(&ev(t.system, code_str, &subs, Some(code)));
            assert_eq!(back, action, "{a}");
        }
    }
}
