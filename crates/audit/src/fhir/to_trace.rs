//! A received AuditEvent → a registre trace (the mapping table is in the
//! module documentation of [`super`]).

use registre_model::{
    Limits, Original, Trace, TraceError, TraceErrorKind, jcs, parse_trace_value, request_literal,
};
use serde_json::{Map, Value, json};

use super::outcome::{Issue, IssueType as T};
use super::validate::{check_audit_event, decode_base64};
use super::{
    DCM_SOURCE_ROLE, ID_TYPE_SYSTEM, IDNATPS, INS_SYSTEMS, MAX_RESOURCE_BYTES, OBJECT_ROLE,
    ORIGINAL_FORMAT,
};
use crate::mapping::{self, Event};

/// Checks `resource` (a parsed AuditEvent) and maps it to a trace whose
/// `original` is the resource as posted (RFC 8785 form, without `id` and
/// the server's `meta.versionId`/`meta.lastUpdated`). The issues name the
/// AuditEvent's elements (`AuditEvent.agent[0].who`).
pub fn to_trace(resource: &Value, limits: &Limits) -> Result<Trace, Vec<Issue>> {
    let issues = check_audit_event(resource);
    if !issues.is_empty() {
        return Err(issues);
    }
    let Some(ev) = resource.as_object() else {
        return Err(vec![Issue::error(T::Structure, "", "not a JSON object")]);
    };
    let mut b = Builder::default();
    let trace = b.trace(ev, limits)?;
    let original = original_text(resource)?;
    Ok(Trace {
        original: Some(Original {
            format: ORIGINAL_FORMAT.to_owned(),
            text: original,
        }),
        ..trace
    })
}

/// The posted resource as kept: canonical (RFC 8785), without what the
/// server sets, at most [`MAX_RESOURCE_BYTES`].
fn original_text(resource: &Value) -> Result<String, Vec<Issue>> {
    let mut kept = resource.clone();
    if let Some(obj) = kept.as_object_mut() {
        obj.remove("id");
        if let Some(Value::Object(meta)) = obj.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                obj.remove("meta");
            }
        }
    }
    let text = jcs::to_canonical_string(&kept).map_err(|e| {
        vec![Issue::error(
            T::Value,
            "AuditEvent",
            format!("the resource has no canonical JSON form: {e}"),
        )]
    })?;
    if text.len() > MAX_RESOURCE_BYTES {
        return Err(vec![Issue::error(
            T::TooCostly,
            "AuditEvent",
            format!(
                "the AuditEvent is {} bytes of compact JSON; registre keeps at most {MAX_RESOURCE_BYTES} \
                 (an audit event summarises an action, it never carries content)",
                text.len()
            ),
        )]);
    }
    Ok(text)
}

/// Whether an entity is the patient: role `object-role#1` (Patient), or a
/// `Patient/…` reference, or an INS identifier. Shared with the `patient`
/// search parameters, so that search and index agree.
pub(crate) fn is_patient_entity(e: &Value) -> bool {
    let role_patient = e.get("role").is_some_and(|r| {
        r.get("code").and_then(Value::as_str) == Some("1")
            && r.get("system")
                .and_then(Value::as_str)
                .is_none_or(|s| s == OBJECT_ROLE)
    });
    role_patient || e.get("what").is_some_and(is_patient_reference) || ins_identifier(e).is_some()
}

/// A Reference that names a Patient (`Patient/…`, `…/Patient/…`, or
/// `type` Patient).
pub(crate) fn is_patient_reference(r: &Value) -> bool {
    r.get("type").and_then(Value::as_str) == Some("Patient")
        || r.get("reference")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("Patient/") || s.contains("/Patient/"))
}

/// The entity's INS (system OID, value), if its identifier is one.
fn ins_identifier(e: &Value) -> Option<(&'static str, &str)> {
    let id = e.get("what")?.get("identifier")?;
    let system = id.get("system")?.as_str()?;
    let oid = system.strip_prefix("urn:oid:").unwrap_or(system);
    let known = INS_SYSTEMS.iter().find(|s| **s == oid)?;
    Some((known, id.get("value")?.as_str()?))
}

/// The patient entity a trace is indexed by: the first with an INS, else the
/// first patient entity. Its position and (id, system).
pub(crate) fn patient_of(entities: &[Value]) -> Option<(usize, String, Option<String>, &str)> {
    for (i, e) in entities.iter().enumerate() {
        if let Some((oid, value)) = ins_identifier(e) {
            return Some((
                i,
                value.to_owned(),
                Some(oid.to_owned()),
                "what.identifier.value",
            ));
        }
    }
    for (i, e) in entities.iter().enumerate() {
        if !is_patient_entity(e) {
            continue;
        }
        let what = e.get("what");
        let ident = what.and_then(|w| w.get("identifier"));
        if let Some(value) = ident.and_then(|id| id.get("value")).and_then(Value::as_str) {
            let system = ident
                .and_then(|id| id.get("system"))
                .and_then(Value::as_str)
                .map(|s| s.strip_prefix("urn:oid:").unwrap_or(s).to_owned());
            return Some((i, value.to_owned(), system, "what.identifier.value"));
        }
        if let Some(r) = what
            .and_then(|w| w.get("reference"))
            .and_then(Value::as_str)
        {
            return Some((i, r.to_owned(), None, "what.reference"));
        }
    }
    None
}

/// `actor.id_type` of an identifier system: the French national health
/// professional identifier (IdNatPS, OID 1.2.250.1.71.4.2.1) is `rpps`
/// (first digit 8) or `adeli` (0); `urn:registre:id-type:<t>` is `<t>`.
pub(crate) fn id_type_of(system: &str, value: &str) -> Option<String> {
    let oid = system.strip_prefix("urn:oid:").unwrap_or(system);
    if oid == IDNATPS {
        return Some(
            match value.as_bytes().first() {
                Some(b'8') => "rpps",
                Some(b'0') => "adeli",
                _ => "idnatps",
            }
            .to_owned(),
        );
    }
    let t = system.strip_prefix(ID_TYPE_SYSTEM)?;
    (!t.is_empty() && t.len() <= 64).then(|| t.to_owned())
}

/// Builds the trace's JSON, remembering which AuditEvent element each
/// trace field came from (to name it in an error).
#[derive(Default)]
struct Builder {
    /// (trace field path, AuditEvent element)
    origin: Vec<(&'static str, String)>,
}

impl Builder {
    fn from(&mut self, field: &'static str, element: String) {
        self.origin.push((field, element));
    }

    fn trace(&mut self, ev: &Map<String, Value>, limits: &Limits) -> Result<Trace, Vec<Issue>> {
        let agents: &[Value] = ev
            .get("agent")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let entities: &[Value] = ev
            .get("entity")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let (ai, requestor) = agents
            .iter()
            .enumerate()
            .find(|(_, a)| a.get("requestor") == Some(&Value::Bool(true)))
            .ok_or_else(|| {
                vec![Issue::error(
                    T::Required,
                    "AuditEvent.agent",
                    "no agent has `requestor` = true",
                )]
            })?;

        // Action and class from type, subtype and action code.
        let ty = ev.get("type");
        fn s<'v>(v: Option<&'v Value>, k: &str) -> Option<&'v str> {
            v.and_then(|x| x.get(k)).and_then(Value::as_str)
        }
        let subtypes: Vec<(&str, &str)> = ev
            .get("subtype")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| Some((s(Some(c), "system").unwrap_or(""), s(Some(c), "code")?)))
            .collect();
        let event = Event {
            type_system: s(ty, "system").unwrap_or(""),
            type_code: s(ty, "code").unwrap_or(""),
            subtypes,
            action: ev.get("action").and_then(Value::as_str),
        };
        let action = mapping::action_of(&event);
        let class = mapping::class_of(&event);
        self.from("action", "AuditEvent.type".into());
        self.from("class", "AuditEvent.type".into());
        self.from("occurred_at", "AuditEvent.recorded".into());

        let mut trace = Map::new();
        trace.insert("class".into(), json!(class));
        trace.insert("action".into(), json!(action.as_str()));
        trace.insert("occurred_at".into(), ev["recorded"].clone());

        // Actor: the requestor.
        let who = requestor.get("who");
        let ident = who.and_then(|w| w.get("identifier"));
        let at = format!("AuditEvent.agent[{ai}]");
        let actor = if let Some(value) = s(ident, "value") {
            self.from("actor.id", format!("{at}.who.identifier.value"));
            let id_type = s(ident, "system").and_then(|sys| id_type_of(sys, value));
            json!({"id": value, "id_type": id_type})
        } else if let Some(alt) = s(Some(requestor), "altId") {
            self.from("actor.id", format!("{at}.altId"));
            json!({"id": alt})
        } else if let Some(display) = s(who, "display") {
            self.from("actor.id", format!("{at}.who.display"));
            json!({"id": display})
        } else if let Some(r) = s(who, "reference") {
            self.from("actor.id", format!("{at}.who.reference"));
            json!({"id": r})
        } else {
            return Err(vec![Issue::error(
                T::Required,
                &format!("{at}.who"),
                "the requestor must be identified: who.identifier.value, altId, who.display \
                 or who.reference",
            )]);
        };
        trace.insert("actor".into(), actor);

        // Outcome and the answer.
        let outcome = ev.get("outcome").and_then(Value::as_str);
        if let Some(o) = outcome {
            trace.insert(
                "outcome".into(),
                json!(if o == "0" { "success" } else { "failure" }),
            );
        }
        let desc = ev.get("outcomeDesc").and_then(Value::as_str);
        if outcome.is_some() || desc.is_some() {
            self.from("response.status", "AuditEvent.outcome".into());
            self.from("response.text", "AuditEvent.outcomeDesc".into());
            trace.insert(
                "response".into(),
                json!({"status": outcome.unwrap_or("unknown"), "text": desc}),
            );
        }

        // Target: the patient, and the first other entity's reference.
        let mut target = Map::new();
        if let Some((i, id, system, element)) = patient_of(entities) {
            self.from(
                "target.patient",
                format!("AuditEvent.entity[{i}].{element}"),
            );
            target.insert("patient".into(), json!({"id": id, "system": system}));
        }
        if let Some((i, r)) = entities.iter().enumerate().find_map(|(i, e)| {
            (!is_patient_entity(e))
                .then(|| s(e.get("what"), "reference"))
                .flatten()
                .map(|r| (i, r))
        }) {
            self.from(
                "target.resource",
                format!("AuditEvent.entity[{i}].what.reference"),
            );
            target.insert("resource".into(), json!(r));
        }
        if !target.is_empty() {
            trace.insert("target".into(), Value::Object(target));
        }

        // The request: a query entity's query, when it is one line.
        if let Some(q) = entities.iter().find_map(|e| {
            let bytes = decode_base64(e.get("query")?.as_str()?)?;
            let text = String::from_utf8(bytes).ok()?;
            let text = text.trim_end_matches(['\r', '\n']).to_owned();
            (text.len() <= limits.max_request
                && !request_literal(&text)
                && !text.chars().any(char::is_control))
            .then_some(text)
        }) {
            trace.insert("request".into(), json!(q));
        }

        // Source: the requestor's network address (else the source role
        // agent's), the observer, the site.
        let network = requestor
            .get("network")
            .or_else(|| {
                agents.iter().find_map(|a| {
                    let source_role = a
                        .get("type")
                        .and_then(|t| t.get("coding"))
                        .and_then(Value::as_array)
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| s(Some(c), "code") == Some(DCM_SOURCE_ROLE))
                        });
                    source_role.then(|| a.get("network")).flatten()
                })
            })
            .and_then(|n| n.get("address"))
            .and_then(Value::as_str);
        let mut source = Map::new();
        if let Some(addr) = network {
            if addr.parse::<std::net::IpAddr>().is_ok() {
                self.from("source.ip", "AuditEvent.agent.network.address".into());
                source.insert("ip".into(), json!(addr));
            } else {
                self.from("source.host", "AuditEvent.agent.network.address".into());
                source.insert("host".into(), json!(addr));
            }
        }
        if !source.contains_key("host")
            && let Some(site) = s(ev.get("source"), "site")
        {
            self.from("source.host", "AuditEvent.source.site".into());
            source.insert("host".into(), json!(site));
        }
        let observer = ev.get("source").and_then(|x| x.get("observer"));
        let software = s(observer.and_then(|o| o.get("identifier")), "value")
            .or_else(|| s(observer, "display"))
            .or_else(|| s(observer, "reference"));
        if let Some(sw) = software {
            self.from("source.software", "AuditEvent.source.observer".into());
            source.insert("software".into(), json!(sw));
        }
        if !source.is_empty() {
            trace.insert("source".into(), Value::Object(source));
        }

        let value = Value::Object(trace);
        parse_trace_value(&value, limits).map_err(|e| vec![self.issue(&e)])
    }

    /// A trace error named at the AuditEvent element it came from.
    fn issue(&self, e: &TraceError) -> Issue {
        let element = self
            .origin
            .iter()
            .filter(|(field, _)| e.path.starts_with(field) || field.starts_with(e.path.as_str()))
            .max_by_key(|(field, _)| field.len())
            .map(|(_, el)| el.clone())
            .unwrap_or_else(|| "AuditEvent".to_owned());
        let code = match e.kind {
            TraceErrorKind::TooLong { .. } | TraceErrorKind::TooLarge { .. } => T::TooLong,
            TraceErrorKind::ContentField(_) | TraceErrorKind::Literal => T::BusinessRule,
            _ => T::Value,
        };
        Issue::error(
            code,
            &element,
            format!(
                "maps to the trace's `{}`, which is refused: {}",
                e.path,
                e.detail()
            ),
        )
    }
}
