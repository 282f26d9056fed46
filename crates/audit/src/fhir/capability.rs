//! `GET /fhir/metadata`: the CapabilityStatement that says exactly what
//! registre's FHIR surface does, and that it instantiates the ANS TDE
//! "gestionnaire de traces" (TdEGestionnaire) capability.

use serde_json::{Value, json};

use super::search::PARAMETERS;
use super::{FHIR_VERSION, TDE_AUDIT_EVENT_PROFILE, TDE_GESTIONNAIRE, TDE_IG};

/// The CapabilityStatement of this server (`version`: registre's; `date`:
/// when this statement was last changed, as published).
pub fn capability_statement(version: &str) -> Value {
    let params: Vec<Value> = PARAMETERS
        .iter()
        .map(|(name, ty, definition)| {
            json!({
                "name": name,
                "definition": definition,
                "type": ty,
                "documentation": param_doc(name),
            })
        })
        .chain([json!({
            "name": "patient.identifier",
            "type": "token",
            "documentation": "Chained search on the patient: the identifier (system|value, e.g. \
                the INS urn:oid:1.2.250.1.213.1.4.8|…) of the entities that are the patient.",
        })])
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "id": "registre",
        "url": "urn:registre:fhir:CapabilityStatement/registre",
        "version": version,
        "name": "RegistreTraceManager",
        "title": "registre: gestionnaire de traces (FHIR R4 AuditEvent, IHE RESTful ATNA)",
        "status": "active",
        "experimental": false,
        "date": CAPABILITY_DATE,
        "publisher": "registre",
        "description": "registre keeps audit events as tamper-evident traces. It takes AuditEvents \
            (ITI-20 FHIR Feed: create, batch and transaction Bundles) and answers reads and ITI-81 \
            searches over all its traces, whatever way they came in (FHIR, JSON API, syslog). \
            It refuses anything that looks like message or clinical content: no narrative, no \
            contained resources, bounded free text.",
        "kind": "instance",
        "instantiates": [TDE_GESTIONNAIRE],
        "software": {"name": "registre", "version": version},
        "implementation": {"description": "registre FHIR R4 endpoint (base /fhir)"},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "implementationGuide": [TDE_IG],
        "rest": [{
            "mode": "server",
            "documentation": "Enregistrer et fournir les traces. Every interaction needs \
                `Authorization: Bearer <API key or token>`: creating needs the producteur or admin \
                role, reading and searching the auditeur role (admin includes it); every read and \
                search is itself traced. Errors are OperationOutcomes. Search is strict: an \
                unknown parameter or modifier is an error, `date` (or `period-start`) with a \
                bound is required, `_count` defaults to 50 (at most 1000), results are newest \
                first (`_sort=-date`) and page with `next` links.",
            "security": {
                "cors": false,
                "description": "Bearer API keys or OIDC tokens (e.g. Pro Santé Connect), or TLS \
                    client certificates; a producer that is not a trusted proxy may only post \
                    events whose requestor agent is itself.",
            },
            "resource": [{
                "type": "AuditEvent",
                "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
                "supportedProfile": [TDE_AUDIT_EVENT_PROFILE],
                "documentation": "Create keeps the posted AuditEvent (at most 16 KiB of compact JSON) \
                    and answers it with its id and meta; read returns it as posted. Traces that \
                    came in another way are read as AuditEvents built from the trace.",
                "interaction": [
                    {"code": "read"},
                    {"code": "create"},
                    {"code": "search-type", "documentation": "IHE ITI-81"},
                ],
                "versioning": "no-version",
                "readHistory": false,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            }],
            "interaction": [
                {"code": "batch", "documentation": "POST /fhir, up to 1000 AuditEvent creates, \
                    each answered on its own"},
                {"code": "transaction", "documentation": "POST /fhir, up to 1000 AuditEvent \
                    creates, all stored or none"},
            ],
        }],
    })
}

/// The date of this statement (changes with what it declares).
const CAPABILITY_DATE: &str = "2026-11-28";

fn param_doc(name: &str) -> &'static str {
    match name {
        "date" => {
            "AuditEvent.recorded; required with at least one bound (ITI-81); prefixes eq, ne, gt, lt, ge, le, sa, eb"
        }
        "period-start" | "TDE_AuditEvent_period-start" => {
            "AuditEvent.period.start, the date the event occurred (ANS TDE); accepted in place of date as the required bound"
        }
        "agent" | "entity" | "source" | "patient" => {
            "Type/id, id or absolute URL; :identifier matches the reference's identifier"
        }
        "agent-name" | "entity-name" | "address" => {
            "starts with, case- and accent-insensitive; :exact and :contains"
        }
        _ => "system|code, code, |code or system|; :not",
    }
}
