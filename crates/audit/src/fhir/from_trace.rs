//! A stored trace → the AuditEvent a FHIR reader gets: the resource as
//! posted (plus `id` and `meta`) when the trace came from the FHIR intake,
//! else an AuditEvent built from the trace (JSON API, syslog, DICOM
//! traces, registre's own access traces).

use registre_model::{Action, StoredTrace};
use serde_json::{Map, Value, json};

use super::{
    AUDIT_ENTITY_TYPE, AUTH_EXTENSION, ID_TYPE_SYSTEM, IDNATPS, OBJECT_ROLE, ORIGIN_TAG_SYSTEM,
    ORIGINAL_FORMAT,
};
use crate::mapping::{self, REGISTRE_ACTION};

/// The AuditEvent of a stored trace, with `id` (the trace's UUID) and
/// `meta.versionId` `1`, `meta.lastUpdated` its `received_at`.
pub fn audit_event(t: &StoredTrace) -> Value {
    if let Some(o) = &t.original
        && o.format == ORIGINAL_FORMAT
        && let Ok(Value::Object(mut ev)) = serde_json::from_str::<Value>(&o.text)
    {
        set_server_fields(&mut ev, t);
        return Value::Object(ev);
    }
    built(t)
}

fn set_server_fields(ev: &mut Map<String, Value>, t: &StoredTrace) {
    ev.insert("id".into(), json!(t.id.to_string()));
    let meta = ev
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta["versionId"] = json!("1");
    meta["lastUpdated"] = json!(t.received_at);
}

/// The identifier system of an `actor.id_type`.
fn actor_system(id_type: &str) -> String {
    match id_type {
        "rpps" | "adeli" | "idnatps" => format!("urn:oid:{IDNATPS}"),
        other => format!("{ID_TYPE_SYSTEM}{other}"),
    }
}

/// A patient identifier system as a URI (`1.2.…` → `urn:oid:1.2.…`).
fn patient_system(system: &str) -> String {
    if !system.is_empty() && system.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        format!("urn:oid:{system}")
    } else {
        system.to_owned()
    }
}

fn built(t: &StoredTrace) -> Value {
    let (ty, sub, code) = mapping::event_of(&t.action);
    let dcm_code = match &t.action {
        // A DICOM event registre has no French action for (`x-dcm-110100`)
        // goes back to its DICOM code.
        Action::Extension(x) => x
            .strip_prefix("x-dcm-")
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit())),
        _ => None,
    };
    let type_coding = if let Some(c) = dcm_code {
        json!({"system": mapping::DCM, "code": c})
    } else if ty.system == REGISTRE_ACTION {
        json!({"system": REGISTRE_ACTION, "code": t.action.as_str(), "display": t.action.as_str()})
    } else {
        json!({"system": ty.system, "code": ty.code, "display": ty.display})
    };
    let origin = t
        .original
        .as_ref()
        .map_or("registre-json", |o| o.format.as_str());
    let mut ev = json!({
        "resourceType": "AuditEvent",
        "id": t.id.to_string(),
        "meta": {
            "versionId": "1",
            "lastUpdated": t.received_at,
            "tag": [{"system": ORIGIN_TAG_SYSTEM, "code": origin}],
        },
        "type": type_coding,
        "action": code,
        "period": {"start": t.occurred_at},
        "recorded": t.occurred_at,
    });
    if let Some(s) = sub {
        ev["subtype"] = json!([{"system": s.system, "code": s.code, "display": s.display}]);
    }
    if let Some(o) = t.outcome {
        ev["outcome"] = json!(match o {
            registre_model::Outcome::Success => "0",
            registre_model::Outcome::Failure => "8",
        });
    }
    if let Some(r) = &t.response {
        let desc = match r.text.as_deref().filter(|x| !x.trim().is_empty()) {
            Some(text) => format!("{} {text}", r.status),
            None => r.status.clone(),
        };
        if !desc.trim().is_empty() {
            ev["outcomeDesc"] = json!(desc.trim());
        }
    }

    // The author.
    let mut identifier = json!({"value": t.actor.id});
    if let Some(id_type) = &t.actor.id_type {
        identifier["system"] = json!(actor_system(id_type));
    }
    let mut agent = json!({"who": {"identifier": identifier}, "requestor": true});
    if let Some(auth) = t.actor.auth.as_deref().filter(|a| !a.is_empty()) {
        agent["extension"] = json!([{"url": AUTH_EXTENSION, "valueCode": auth}]);
    }
    let source = t.source.as_ref();
    if let Some(ip) = source.and_then(|s| s.ip.as_deref()) {
        agent["network"] = json!({"address": ip, "type": "2"});
    } else if let Some(host) = source.and_then(|s| s.host.as_deref()) {
        agent["network"] = json!({"address": host, "type": "1"});
    }
    ev["agent"] = json!([agent]);

    // The system that recorded it.
    let mut src = json!({"observer": {"display": source
        .and_then(|s| s.software.as_deref())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("registre")}});
    if let Some(host) = source.and_then(|s| s.host.as_deref()) {
        src["site"] = json!(host);
    }
    ev["source"] = src;

    // What it was about.
    let mut entities = Vec::new();
    let target = t.target.as_ref();
    if let Some(p) = target.and_then(|x| x.patient.as_ref()) {
        let mut id = json!({"value": p.id});
        if let Some(sys) = p.system.as_deref().filter(|s| !s.is_empty()) {
            id["system"] = json!(patient_system(sys));
        }
        entities.push(json!({
            "what": {"identifier": id},
            "type": {"system": AUDIT_ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        }));
    }
    let mut details: Vec<Value> = Vec::new();
    let mut detail = |name: &str, value: &str| {
        if !value.trim().is_empty() {
            details.push(json!({"type": name, "valueString": value}));
        }
    };
    if let Some(x) = target {
        for (name, v) in [
            ("mailbox", &x.mailbox),
            ("folder", &x.folder),
            ("destination", &x.destination),
            ("uids", &x.uids),
            ("message_id", &x.message_id),
            ("document", &x.document),
        ] {
            if let Some(v) = v {
                detail(name, v);
            }
        }
        for r in x.recipients.iter().flatten() {
            detail("recipient", r);
        }
        if let Some(size) = x.size {
            detail("size", &size.to_string());
        }
    }
    if let Some(req) = &t.request {
        detail("request", req);
    }
    let resource = target.and_then(|x| x.resource.as_deref());
    if resource.is_some() || !details.is_empty() {
        let mut e = json!({
            "type": {"system": AUDIT_ENTITY_TYPE, "code": "2", "display": "System Object"},
        });
        if let Some(r) = resource.filter(|r| !r.trim().is_empty()) {
            e["what"] = json!({"reference": r});
        }
        if !details.is_empty() {
            e["detail"] = Value::Array(details);
        }
        entities.push(e);
    }
    if !entities.is_empty() {
        ev["entity"] = Value::Array(entities);
    }
    ev
}
