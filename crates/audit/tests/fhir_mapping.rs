//! The AuditEvent ⇄ trace mapping on real AuditEvents: the HL7 FHIR R4
//! examples, the IHE BALP examples and the ANS TDE examples (unchanged
//! copies in `testdata/fhir/`, see `SOURCES.md` there), each checked field
//! by field.
//!
//! The published examples carry a generated narrative (`text`), and one a
//! contained OperationOutcome: registre refuses both (free text and
//! embedded resources may carry clinical content), so each example is first
//! checked to be refused for exactly that, then posted without it, as a
//! producer would send it.

// Test code: clippy's allow-unwrap/expect-in-tests covers #[test] functions
// only, not an integration test's helpers (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use registre_audit::fhir::{self, IssueType};
use registre_model::{Limits, StoredTrace, Trace};
use serde_json::{Value, json};

fn fixture(path: &str) -> Value {
    let full = format!("{}/testdata/fhir/{path}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// The example as a producer sends it: no narrative, no contained resource.
fn as_sent(mut v: Value) -> Value {
    let obj = v.as_object_mut().expect("object");
    obj.remove("text");
    obj.remove("contained");
    v
}

fn mapped(ev: &Value) -> Trace {
    fhir::to_trace(ev, &Limits::default())
        .unwrap_or_else(|issues| panic!("refused: {issues:?}\n{ev}"))
}

/// The trace as JSON, without `original` (checked apart).
fn fields(t: &Trace) -> Value {
    let mut v = serde_json::to_value(t).expect("trace JSON");
    v.as_object_mut().expect("object").remove("original");
    v
}

fn stored(trace: Trace) -> StoredTrace {
    StoredTrace::new(
        trace,
        7,
        uuid::Uuid::parse_str("019ac3c4-1f2e-7a00-8000-0123456789ab").expect("uuid"),
        "2026-11-28T14:42:07.123456Z".to_owned(),
    )
}

/// Every example: its trace, field by field.
#[test]
fn every_example_maps_field_by_field() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "hl7-r4-examples/AuditEvent-example-login.json",
            json!({"action":"connexion","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2013-06-20T23:41:23Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"Cloud","ip":"127.0.0.1","software":"hl7connect.healthintersections.com.au"}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-logout.json",
            json!({"action":"deconnexion","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2013-06-20T23:46:41Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"Cloud","ip":"127.0.0.1","software":"hl7connect.healthintersections.com.au"}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-disclosure.json",
            json!({"action":"export","actor":{"id":"SomeIdiot@nowhere"},"class":"applicative",
                "occurred_at":"2013-09-22T00:08:00Z","outcome":"success",
                "response":{"status":"0","text":"Successful  Disclosure"},
                "source":{"host":"custodian.net","software":"Watchers Accounting of Disclosures Application"},
                "target":{"patient":{"id":"Patient/example"}}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-error.json",
            json!({"action":"creation","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2017-09-07T23:42:24Z","outcome":"failure",
                "response":{"status":"8","text":"Invalid request to create an Operation resource on the Patient endpoint."},
                "source":{"host":"Workstation1.ehr.familyclinic.com","software":"hl7connect.healthintersections.com.au"},
                "target":{"resource":"#o1"}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-media.json",
            json!({"action":"export","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2015-08-27T23:42:24Z","outcome":"success","response":{"status":"0"},
                "source":{"software":"hl7connect.healthintersections.com.au"},
                "target":{"patient":{"id":"e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO"},
                    "resource":"DocumentManifest/example"}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-pixQuery.json",
            json!({"action":"recherche","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2015-08-26T23:42:24Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"Workstation1.ehr.familyclinic.com","software":"hl7connect.healthintersections.com.au"},
                "target":{"patient":{"id":"e3cdfc81a0d24bd^^^&2.16.840.1.113883.4.2&ISO"}}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-rest.json",
            json!({"action":"consultation","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2013-06-20T23:42:24Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"Workstation1.ehr.familyclinic.com","software":"hl7connect.healthintersections.com.au"},
                "target":{"patient":{"id":"Patient/example/_history/1"}}}),
        ),
        (
            "hl7-r4-examples/AuditEvent-example-search.json",
            json!({"action":"recherche","actor":{"id":"95"},"class":"applicative",
                "occurred_at":"2015-08-22T23:42:24Z","outcome":"success",
                "request":"http://fhir-dev.healthintersections.com.au/open/Encounter?participant=13",
                "response":{"status":"0"},
                "source":{"host":"Workstation1.ehr.familyclinic.com","software":"hl7connect.healthintersections.com.au"}}),
        ),
        (
            "balp/AuditEvent-ex-auditBasicReadServer.json",
            json!({"action":"consultation","actor":{"id":"John Smith"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"http://server.example.com/fhir","software":"Device/ex-device"},
                "target":{"patient":{"id":"Patient/ex-patient"},"resource":"List/ex-list"}}),
        ),
        (
            "balp/AuditEvent-ex-auditBasicCreateServer.json",
            json!({"action":"creation","actor":{"id":"John Smith"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"ip":"2001:0db8:85a3:0000:0000:8a2e:0370:7334","software":"myMachine.example.org"},
                "target":{"patient":{"id":"Patient/ex-patient"},"resource":"List/ex-list"}}),
        ),
        (
            "balp/AuditEvent-ex-auditBasicUpdate1.json",
            json!({"action":"modification","actor":{"id":"Betty Jones"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"server.example.com","ip":"2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                    "software":"Device/ex-device"},
                "target":{"patient":{"id":"Patient/ex-patient"},"resource":"List/ex-list"}}),
        ),
        (
            "balp/AuditEvent-ex-auditBasicDeleteServer.json",
            json!({"action":"suppression","actor":{"id":"John Smith"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"software":"Device/ex-device"},
                "target":{"patient":{"id":"Patient/ex-patient"},"resource":"List/ex-list"}}),
        ),
        (
            "balp/AuditEvent-ex-auditBasicQueryGetServer.json",
            json!({"action":"recherche","actor":{"id":"John Smith"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"server.example.com","ip":"2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                    "software":"Device/ex-device"},
                "target":{"patient":{"id":"Patient/ex-patient"}}}),
        ),
        (
            "balp/AuditEvent-ex-auditBasicQueryPost.json",
            json!({"action":"recherche","actor":{"id":"John Smith"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"server.example.com","ip":"2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                    "software":"Device/ex-device"},
                "target":{"patient":{"id":"Patient/ex-patient"}}}),
        ),
        (
            "balp/AuditEvent-ex-auditPrivacyDisclosure-recipient.json",
            json!({"action":"creation","actor":{"id":"Patient/ex-patient"},"class":"applicative",
                "occurred_at":"2020-04-29T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"server.example.com","ip":"2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                    "software":"Device/ex-device"},
                "target":{"patient":{"id":"Patient/ex-patient"},"resource":"DocumentReference/ex-documentreference"}}),
        ),
        (
            "balp/AuditEvent-ex-auditAuthZconsent-deny.json",
            json!({"action":"x-dcm-110113","actor":{"id":"Practitioner/ex-practitioner"},"class":"technique",
                "occurred_at":"2021-12-27T09:49:00.000Z","outcome":"failure",
                "response":{"status":"8","text":"Consent denied access to this user"},
                "source":{"host":"server.example.com","software":"Device/ex-authz"},
                "target":{"patient":{"id":"Patient/ex-patient"},"resource":"Consent/ex-consent"}}),
        ),
        (
            "balp/AuditEvent-ex-auditPoke-SAML-Comp.json",
            json!({"action":"consultation","actor":{"id":"05086900124"},"class":"technique",
                "occurred_at":"2021-12-03T09:49:00.000Z","outcome":"success","response":{"status":"0"},
                "source":{"host":"server.example.com","software":"Device/ex-device"}}),
        ),
        (
            "tde/AuditEvent-TDEAuditEventExample.json",
            json!({"action":"consultation","actor":{"id":"Practitioner/PractitionerExample"},
                "class":"applicative","occurred_at":"2026-01-07T09:32:15Z",
                "source":{"software":"Device/DeviceExample"}}),
        ),
        (
            "tde/AuditEvent-TDEAuditEventExample-2.json",
            json!({"action":"x-dcm-110101","actor":{"id":"Practitioner/PractitionerExample"},
                "class":"technique","occurred_at":"2025-01-07T09:32:15Z",
                "source":{"software":"Device/DeviceExample"}}),
        ),
    ];
    for (file, want) in cases {
        let raw = fixture(file);
        // As published: refused for its narrative (and contained resource).
        let refused = fhir::to_trace(&raw, &Limits::default()).expect_err(file);
        let mut paths: Vec<String> = refused
            .iter()
            .map(|i| i.expression.clone().unwrap_or_default())
            .collect();
        paths.sort();
        let mut expected = vec!["AuditEvent.text".to_owned()];
        if raw.get("contained").is_some() {
            expected.insert(0, "AuditEvent.contained".to_owned());
        }
        assert_eq!(paths, expected, "{file}");
        assert!(
            refused.iter().all(|i| i.code == IssueType::NotSupported),
            "{file}"
        );

        let sent = as_sent(raw);
        let t = mapped(&sent);
        assert_eq!(fields(&t), want, "{file}");

        // The original is the resource as sent (canonical, no id), and a
        // read gives it back with the server's id and meta.
        let original = t.original.clone().expect("original");
        assert_eq!(original.format, "fhir+json");
        let mut kept = sent.clone();
        kept.as_object_mut().expect("object").remove("id");
        assert_eq!(
            serde_json::from_str::<Value>(&original.text).expect("JSON"),
            kept,
            "{file}"
        );
        let read = fhir::audit_event(&stored(t));
        let mut want_read = sent.clone();
        want_read["id"] = json!("019ac3c4-1f2e-7a00-8000-0123456789ab");
        want_read["meta"]["versionId"] = json!("1");
        want_read["meta"]["lastUpdated"] = json!("2026-11-28T14:42:07.123456Z");
        assert_eq!(read, want_read, "{file}");
    }
}

/// The HL7 "Application Start" example has no requestor agent: registre
/// cannot name an author for it, and says so.
#[test]
fn an_event_without_requestor_is_refused_precisely() {
    let ev = as_sent(fixture("hl7-r4-examples/AuditEvent-example.json"));
    let issues = fhir::to_trace(&ev, &Limits::default()).expect_err("no requestor");
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].expression.as_deref(), Some("AuditEvent.agent"));
    assert_eq!(issues[0].code, IssueType::Required);
    // With its human user as requestor, it maps: an application start is a
    // technical trace, kept as a DICOM extension action.
    let mut ev = ev;
    ev["agent"][0]["requestor"] = json!(true);
    let t = mapped(&ev);
    assert_eq!(
        fields(&t),
        json!({"action":"x-dcm-110100","actor":{"id":"Grahame"},"class":"technique",
            "occurred_at":"2012-10-25T22:04:27+11:00","outcome":"success","response":{"status":"0"},
            "source":{"host":"Development","ip":"127.0.0.1","software":"Grahame's Laptop"}})
    );
}

/// French identifiers: an RPPS requestor and an INS patient.
#[test]
fn french_identifiers() {
    let ev = json!({
        "resourceType": "AuditEvent",
        "meta": {"profile": ["https://interop.esante.gouv.fr/ig/fhir/tde/StructureDefinition/tde-auditevent"]},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "period": {"start": "2026-11-28T15:40:00+01:00"},
        "recorded": "2026-11-28T15:42:07.123+01:00",
        "outcome": "0",
        "agent": [{
            "who": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810001234567"}},
            "requestor": true,
            "network": {"address": "10.1.2.3", "type": "2"}
        }],
        "source": {"site": "hopital-nord", "observer": {"display": "MonLPS 4.2"}},
        "entity": [
            {"what": {"reference": "Patient/p1"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}},
            {"what": {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2840756123456"}},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"}},
            {"what": {"reference": "DocumentReference/cr-42"}}
        ]
    });
    let t = mapped(&ev);
    assert_eq!(
        fields(&t),
        json!({"action":"consultation","actor":{"id":"810001234567","id_type":"rpps"},
            "class":"applicative","occurred_at":"2026-11-28T15:42:07.123+01:00","outcome":"success",
            "response":{"status":"0"},
            "source":{"host":"hopital-nord","ip":"10.1.2.3","software":"MonLPS 4.2"},
            "target":{"patient":{"id":"2840756123456","system":"1.2.250.1.213.1.4.8"},
                "resource":"DocumentReference/cr-42"}})
    );
    let mut adeli = ev.clone();
    adeli["agent"][0]["who"]["identifier"]["value"] = json!("0751234567");
    assert_eq!(mapped(&adeli).actor.id_type.as_deref(), Some("adeli"));
}

/// A trace that did not come from FHIR reads as an AuditEvent that maps
/// back to the same trace (the parts FHIR can carry).
#[test]
fn json_traces_read_as_audit_events_that_map_back() {
    let traces = [
        json!({"class":"applicative","occurred_at":"2026-11-28T15:42:07.123+01:00",
            "actor":{"id":"810001234567","id_type":"rpps","auth":"psc"},"action":"consultation",
            "target":{"patient":{"id":"2840756123456","system":"1.2.250.1.213.1.4.8"},"resource":"DocumentReference/1"},
            "outcome":"success","response":{"status":"200","text":"OK"},
            "source":{"ip":"10.1.2.3","software":"MonLPS 4.2"}}),
        json!({"class":"mss","occurred_at":"2026-11-28T15:42:07.123+01:00",
            "actor":{"id":"dr.martin@hopital.mssante.fr","id_type":"email"},"action":"suppression",
            "target":{"mailbox":"dr.martin@hopital.mssante.fr","folder":"INBOX","uids":"42"},
            "request":"UID STORE 42 +FLAGS (\\Deleted)","outcome":"failure",
            "source":{"host":"poste-12"}}),
        json!({"class":"mss","occurred_at":"2026-11-28T15:42:07Z","actor":{"id":"u1"},"action":"envoi",
            "target":{"recipients":["a@b.fr","c@d.fr"],"size":1234,"message_id":"<x@y>"}}),
        json!({"class":"technique","occurred_at":"2026-11-28T15:42:07Z","actor":{"id":"u1"},
            "action":"x-dcm-110100"}),
    ];
    for raw in traces {
        let t = registre_model::parse_trace_value(&raw, &Limits::default()).expect("trace");
        let ev = fhir::audit_event(&stored(t.clone()));
        assert!(fhir::check_audit_event(&ev).is_empty(), "{ev}");
        assert_eq!(ev["id"], "019ac3c4-1f2e-7a00-8000-0123456789ab");
        assert_eq!(ev["meta"]["tag"][0]["code"], "registre-json");
        let back = mapped(&ev);
        assert_eq!(back.action, t.action, "{ev}");
        assert_eq!(back.actor.id, t.actor.id);
        assert_eq!(back.occurred_at, t.occurred_at);
        assert_eq!(back.outcome, t.outcome);
        assert_eq!(
            back.target.as_ref().and_then(|x| x.patient.clone()),
            t.target.as_ref().and_then(|x| x.patient.clone())
        );
        assert_eq!(
            back.source.as_ref().and_then(|s| s.ip.clone()),
            t.source.as_ref().and_then(|s| s.ip.clone())
        );
        if t.actor.id_type.as_deref() == Some("rpps") || t.actor.id_type.as_deref() == Some("email")
        {
            assert_eq!(back.actor.id_type, t.actor.id_type);
        }
    }
}

/// The TDE search result Bundle's AuditEvents and the TDMI transaction
/// Bundle's AuditEvent entry (its other entries are not AuditEvents).
#[test]
fn bundles_of_the_guides() {
    let searchset = fixture("tde/Bundle-TDEBundleResultatReponseRechercheTracesExample.json");
    let actions: Vec<String> = searchset["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            mapped(&as_sent(e["resource"].clone()))
                .action
                .as_str()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, vec!["consultation", "x-dcm-110101"]);

    let raw = fixture("tdmi/Bundle-dmi-bundle-transmission-traces-example.json");
    let b = fhir::parse_bundle(raw.to_string().as_bytes()).expect("transaction");
    assert_eq!(b.kind, fhir::BundleKind::Transaction);
    let refused: Vec<Option<String>> = b
        .entries
        .iter()
        .map(|e| {
            e.as_ref()
                .err()
                .map(|i| i[0].expression.clone().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        refused,
        vec![
            Some("Bundle.entry[0].request.url".to_owned()),
            Some("Bundle.entry[1].request.url".to_owned()),
            Some("Bundle.entry[2].request.url".to_owned()),
            None
        ]
    );
    let ev = b.entries[3].as_ref().expect("AuditEvent entry");
    let t = mapped(&as_sent(ev.clone()));
    assert_eq!(
        fields(&t),
        json!({"action":"x-dcm-110100","actor":{"id":"Organization/dmi-organization-interne-example"},
            "class":"technique","occurred_at":"2026-02-24T00:00:00Z",
            "source":{"software":"Practitioner/dmi-practitioner-example"}})
    );
}

/// ITI-81 parameters on the mapped examples.
#[test]
fn search_parameters_on_the_examples() {
    let tz = jiff::tz::TimeZone::UTC;
    let read = fhir::audit_event(&stored(mapped(&as_sent(fixture(
        "balp/AuditEvent-ex-auditBasicReadServer.json",
    )))));
    let tde = fhir::audit_event(&stored(mapped(&as_sent(fixture(
        "tde/AuditEvent-TDEAuditEventExample.json",
    )))));
    let cases = [
        ("date=ge2020-04-29&patient=Patient/ex-patient", true, false),
        (
            "date=ge2020-01-01&subtype=http://hl7.org/fhir/restful-interaction|read",
            true,
            true,
        ),
        ("date=ge2020-01-01&action=R", true, false),
        ("date=ge2020-01-01&agent-name:contains=smith", false, false),
        ("date=ge2020-01-01&agent=Device/ex-device", true, false),
        ("date=ge2020-01-01&entity-role=1", true, false),
        ("period-start=ge2026-01-07T09:30:00Z", false, true),
        (
            "TDE_AuditEvent_period-start=lt2026-01-07T09:30:00Z",
            false,
            false,
        ),
        (
            "date=ge2026-01-01&agent=Practitioner/PractitionerExample",
            false,
            true,
        ),
        ("date=le2021-01-01&address=2001:0db8", true, false),
    ];
    for (q, want_read, want_tde) in cases {
        let s = fhir::Search::parse(q, &tz).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        assert_eq!(
            (s.matches(&read), s.matches(&tde)),
            (want_read, want_tde),
            "{q}"
        );
    }
}
