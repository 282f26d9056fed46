//! DICOM PS3.15 A.5 / RFC 3881 AuditMessages → traces, on real samples
//! (`testdata/atna/`, see its SOURCES.md): every kind of event of the
//! corpus, both coding styles (`csd-code`/`originalText` and
//! `code`/`displayName`), and hostile documents refused precisely.

use std::path::{Path, PathBuf};

use registre_audit::dicom::{DicomError, to_trace};
use registre_model::{Limits, Outcome, Trace};

fn fixture(rel: &str) -> String {
    let p: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/atna")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn map(rel: &str) -> Trace {
    let xml = fixture(rel);
    to_trace(xml.trim(), &Limits::default()).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

struct Expect {
    file: &'static str,
    action: &'static str,
    class: &'static str,
    actor: &'static str,
    occurred_at: &'static str,
    success: bool,
    patient: Option<(&'static str, Option<&'static str>)>,
    ip: Option<&'static str>,
    host: Option<&'static str>,
    software: &'static str,
    resource: Option<&'static str>,
}

const fn e(
    file: &'static str,
    action: &'static str,
    class: &'static str,
    actor: &'static str,
    occurred_at: &'static str,
) -> Expect {
    Expect {
        file,
        action,
        class,
        actor,
        occurred_at,
        success: true,
        patient: None,
        ip: None,
        host: None,
        software: "",
        resource: None,
    }
}

const APP: &str = "applicative";

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            ip: Some("10.28.3.3"),
            software: "IPF",
            resource: Some("1659464609654@1.3.6.1.4.1.21367.2017.2.1.104"),
            ..e(
                "ahdis/iti-47-atna.xml",
                "recherche",
                APP,
                "unknown",
                "2022-08-22T08:38:45.904290264Z",
            )
        },
        Expect {
            // No offset in EventDateTime: taken as UTC.
            patient: Some(("ptid12345", None)),
            ip: Some("192.168.1.2"),
            software: "ReadingRoom",
            resource: Some("1.2.840.10008.2.3.4.5.6.7.78.8"),
            ..e(
                "ipf/atna-record-1.xml",
                "creation",
                APP,
                "smitty@readingroom.hospital.org",
                "2001-12-17T09:30:47Z",
            )
        },
        Expect {
            patient: Some(("PATIENT1", Some("2.16.756.5.30.1.191.1.0.2.1"))),
            software: "d7251114",
            ..e(
                "ipf/atna-record-2.xml",
                "creation",
                APP,
                "7601002860123",
                "2025-01-21T11:05:39.3842263+01:00",
            )
        },
        Expect {
            ip: Some("192.168.42.20"),
            software: "IheSpringBootTest",
            ..e(
                "ipf/audit-message-iti55.xml",
                "recherche",
                APP,
                "unknown",
                "2025-02-25T17:03:42.163Z",
            )
        },
        Expect {
            patient: Some(("24", Some("2.16.840.1.113883.3.37.4.1.1.2.1.1"))),
            ip: Some("127.0.0.1"),
            software: "MPI",
            ..e(
                "ipf/pdq.xml",
                "recherche",
                APP,
                "MESA_DEPARTMENT|MESA_PD_CONSUMER",
                "2020-03-19T12:16:37.320Z",
            )
        },
        Expect {
            ip: Some("10.205.114.56"),
            software: "app-gateway",
            ..e(
                "ipf/pdqm.xml",
                "recherche",
                APP,
                "/app-gateway/fhir/Patient",
                "2020-03-19T14:25:02.926Z",
            )
        },
        Expect {
            patient: Some(("IHERED-2340", Some("1.3.6.1.4.1.21367.13.20.1000"))),
            ip: Some("127.0.0.1"),
            software: "EHR_2019",
            ..e(
                "ipf/pdqv3.xml",
                "recherche",
                APP,
                "unknown",
                "2020-03-19T14:17:28.705Z",
            )
        },
        Expect {
            patient: Some(("7627199", Some("2.16.840.1.113883.3.37.4.1.1.2.411.1"))),
            ip: Some("127.0.0.1"),
            software: "MPI",
            ..e(
                "ipf/pixfeed.xml",
                "creation",
                APP,
                "PKL|SAP-ISH",
                "2020-03-19T12:24:34.434Z",
            )
        },
        Expect {
            patient: Some(("MW-10001", Some("2.16.840.1.113883.3.72.5.9.1"))),
            ip: Some("127.0.0.1"),
            software: "EHR_2019",
            ..e(
                "ipf/pixfeedmerge.xml",
                "suppression",
                APP,
                "NIST|NIST_SENDER",
                "2019-03-19T13:48:59.399Z",
            )
        },
        Expect {
            patient: Some(("IHERED-2342", Some("1.3.6.1.4.1.21367.13.20.1000"))),
            host: Some("localhost"),
            software: "EHR_2019",
            ..e(
                "ipf/pixfeedsource.xml",
                "modification",
                APP,
                "BLA|IHE_SYS_IHERED",
                "2020-03-19T13:59:32.253Z",
            )
        },
        Expect {
            // A FHIR token `urn:oid:…|id`.
            patient: Some(("IHEBLUE-2340", Some("1.3.6.1.4.1.21367.13.20.3000"))),
            ip: Some("10.205.114.56"),
            software: "app-gateway",
            resource: Some("PIXmQuery"),
            ..e(
                "ipf/pixm.xml",
                "recherche",
                APP,
                "/app-gateway/fhir/Patient/$ihe-pix",
                "2020-03-19T14:33:48.493Z",
            )
        },
        Expect {
            patient: Some(("27", Some("2.16.840.1.113883.3.37.4.1.1.2.1.1"))),
            ip: Some("127.0.0.1"),
            software: "MPI",
            ..e(
                "ipf/pixquery.xml",
                "recherche",
                APP,
                "MESA_DEPARTMENT|MESA_PIX_CLIENT",
                "2020-03-19T12:34:06.367Z",
            )
        },
        Expect {
            patient: Some(("IHERED-2342", Some("1.3.6.1.4.1.21367.13.20.1000"))),
            host: Some("localhost"),
            software: "EHR_2019",
            ..e(
                "ipf/pixupdatesource.xml",
                "consultation",
                APP,
                "BLA|IHE_SYS_IHERED",
                "2020-03-19T13:59:32.521Z",
            )
        },
        Expect {
            patient: Some(("JW-824-v3", Some("2.16.840.1.113883.3.72.5.9.1"))),
            ip: Some("127.0.0.1"),
            software: "EHR_2019",
            ..e(
                "ipf/pixv3feed.xml",
                "creation",
                APP,
                "unknown",
                "2020-03-19T13:40:14.259Z",
            )
        },
        Expect {
            software: "app-connect",
            ..e(
                "ipf/start.xml",
                "x-dcm-110100",
                "technique",
                "WDF-LAP-1237$",
                "2020-03-09T10:17:39.575Z",
            )
        },
        Expect {
            software: "app-connect",
            ..e(
                "ipf/stop.xml",
                "x-dcm-110100",
                "technique",
                "WDF-LAP-1237$",
                "2020-03-09T10:35:15.937Z",
            )
        },
        Expect {
            patient: Some(("IHERED-1040", Some("1.3.6.1.4.1.21367.13.20.1000"))),
            ip: Some("127.0.0.1"),
            software: "EHR_2019",
            ..e(
                "ipf/xcpd.xml",
                "recherche",
                APP,
                "unknown",
                "2020-03-19T14:38:04.293Z",
            )
        },
        Expect {
            patient: Some(("IHEGREEN-2340", Some("1.3.6.1.4.1.21367.13.20.2000"))),
            host: Some("localhost"),
            software: "EHR_2019",
            ..e(
                "ipf/xpidsource.xml",
                "modification",
                APP,
                "BLA|IHE_SYS_IHERED",
                "2020-03-19T13:59:32.298Z",
            )
        },
        Expect {
            software: "ReadingRoom",
            ..e(
                "openatna/11115.xml",
                "x-dcm-110100",
                "technique",
                "smm",
                "2009-11-29T15:15:19Z",
            )
        },
        Expect {
            success: false,
            ip: Some("192.168.1.5"),
            software: "SYS_NAME",
            ..e(
                "openatna/application-login.xml",
                "connexion",
                APP,
                "misys",
                "2009-10-22T12:28:57.055+01:00",
            )
        },
        Expect {
            patient: Some(("101", Some("1.3.6.1.4.1.21367.2010.1.2.300"))),
            ip: Some("192.168.1.5"),
            software: "SYS_NAME",
            ..e(
                "openatna/create-patient-record.xml",
                "creation",
                APP,
                "ENTERPRISE_SYS_NAME|SYS_NAME",
                "2009-10-22T12:23:45.530+01:00",
            )
        },
        Expect {
            patient: Some(("102", Some("1.3.6.1.4.1.21367.2010.1.2.300"))),
            ip: Some("192.168.1.5"),
            software: "SYS_NAME",
            ..e(
                "openatna/dicom.xml",
                "creation",
                APP,
                "ENTERPRISE_SYS_NAME|SYS_NAME",
                "2009-10-22T12:23:45.530+01:00",
            )
        },
        Expect {
            patient: Some(("82", Some("1.3.6.1.4.1.21367.2010.1.2.330"))),
            software: "2.16.840.1.113883.3.231.2.1.1.5",
            ..e(
                "openatna/dup.xml",
                "modification",
                APP,
                "CEZ@QCPR.quadramed",
                "2010-01-13T00:24:02Z",
            )
        },
        Expect {
            // `&amp;amp;` (escaped twice by its sender) still gives the OID.
            patient: Some(("SELF-5", Some("1.3.6.1.4.1.21367.2005.3.7"))),
            software: "ReadingRoom",
            resource: Some("2.16.840.1.114107.1.1.17.1.135001013018002033.126756017"),
            ..e(
                "openatna/no-source.xml",
                "creation",
                APP,
                "CAREFX APPLICATION",
                "2010-03-02T15:03:11.115Z",
            )
        },
        Expect {
            patient: Some(("221325", Some("1.3.6.1.4.1.21367.2010.1.2.300"))),
            ip: Some("207.65.232.226"),
            software: "EHR_ICA",
            resource: Some("EHR_ICA_SS04"),
            ..e(
                "openatna/partid.xml",
                "export",
                APP,
                "me",
                "2010-02-08T14:13:47-06:00",
            )
        },
        Expect {
            // The person among two requestors (the other is the application);
            // the network access point is the application's.
            patient: Some(("2840756123456", Some("1.2.250.1.213.1.4.8"))),
            ip: Some("10.1.2.3"),
            software: "MonDPI 4.2",
            resource: Some("urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"),
            ..e(
                "registre/consultation-dpi-ins.xml",
                "consultation",
                APP,
                "810001234567",
                "2026-11-28T15:42:07.123+01:00",
            )
        },
    ]
}

#[test]
fn every_sample_maps_field_by_field() {
    for x in expectations() {
        let t = map(x.file);
        let f = x.file;
        assert_eq!(t.action.as_str(), x.action, "{f}: action");
        assert_eq!(t.class.as_str(), x.class, "{f}: class");
        assert_eq!(t.actor.id, x.actor, "{f}: actor");
        assert_eq!(t.occurred_at, x.occurred_at, "{f}: occurred_at");
        let outcome = if x.success {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        assert_eq!(t.outcome, Some(outcome), "{f}: outcome");
        let target = t.target.clone().unwrap_or_default();
        let patient = target
            .patient
            .as_ref()
            .map(|p| (p.id.as_str(), p.system.as_deref()));
        assert_eq!(patient, x.patient, "{f}: patient");
        if let Some(r) = x.resource {
            assert_eq!(target.resource.as_deref(), Some(r), "{f}: resource");
        }
        let source = t.source.clone().expect("source");
        assert_eq!(source.ip.as_deref(), x.ip, "{f}: source.ip");
        assert_eq!(source.host.as_deref(), x.host, "{f}: source.host");
        assert_eq!(
            source.software.as_deref(),
            Some(x.software),
            "{f}: software"
        );
        let original = t.original.as_ref().expect("original");
        assert_eq!(original.format, "dicom+xml");
        assert_eq!(original.text, fixture(f).trim(), "{f}: original");
    }
}

#[test]
fn every_xml_fixture_is_covered() {
    let listed: Vec<&str> = expectations().iter().map(|x| x.file).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/atna");
    for dir in ["ahdis", "ipf", "openatna", "registre"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("fixtures") {
            let p = entry.expect("entry").path();
            if p.extension().is_some_and(|e| e == "xml") {
                let rel = format!(
                    "{dir}/{}",
                    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
                );
                assert!(listed.contains(&rel.as_str()), "{rel} has no expectation");
            }
        }
    }
}

#[test]
fn queries_are_summarised_never_copied() {
    let t = map("ahdis/iti-47-atna.xml");
    assert_eq!(
        t.request.as_deref(),
        Some("ITI-47 Patient Demographics Query; query {432 bytes}")
    );
    // The query's decoded text names the patient (GASSMANN): no field has it.
    let mut fields = t.clone();
    fields.original = None;
    let json = serde_json::to_string(&fields).expect("json");
    assert!(
        !json.contains("GASSMANN") && !json.contains("PHF1ZXJ5"),
        "{json}"
    );
    // Patient names stay in the original only.
    let t = map("ipf/atna-record-1.xml");
    let mut fields = t.clone();
    fields.original = None;
    assert!(
        !serde_json::to_string(&fields)
            .expect("json")
            .contains("John Doe")
    );
}

#[test]
fn outcome_description_becomes_the_response_line() {
    let xml = fixture("openatna/application-login.xml").replace(
        "</EventIdentification>",
        "<EventOutcomeDescription>Invalid\n   password</EventOutcomeDescription></EventIdentification>",
    );
    let t = to_trace(&xml, &Limits::default()).expect("maps");
    let r = t.response.expect("response");
    assert_eq!(
        (r.status.as_str(), r.text.as_deref()),
        ("8", Some("Invalid password"))
    );
}

const CANARY: &str = "CANARY-malformed";

#[test]
fn hostile_documents_are_refused_precisely() {
    let refuse = |rel: &str| {
        let xml = fixture(rel);
        let e = to_trace(&xml, &Limits::default()).expect_err(rel);
        assert!(!e.to_string().contains(CANARY), "{rel}: {e}");
        assert!(!e.to_string().contains("lol"), "{rel}: {e}");
        e
    };
    assert_eq!(
        refuse("registre/hostile/billion-laughs.xml"),
        DicomError::Dtd
    );
    assert_eq!(
        refuse("registre/hostile/external-entity.xml"),
        DicomError::Dtd
    );
    let e = refuse("registre/hostile/malformed.xml");
    assert_eq!(
        e,
        DicomError::Xml {
            what: "a closing tag that does not match its opening tag",
            line: 4,
            column: 3
        }
    );
    assert_eq!(e.code(), "xml_malformed");
    assert_eq!(
        refuse("registre/hostile/missing-event-identification.xml"),
        DicomError::Missing("AuditMessage/EventIdentification")
    );
}

#[test]
fn missing_and_invalid_elements() {
    let base = fixture("registre/consultation-dpi-ins.xml");
    let refuse = |xml: String| to_trace(&xml, &Limits::default()).expect_err("refused");
    assert_eq!(
        refuse(base.replace("EventID ", "EventXX ")),
        DicomError::Missing("EventIdentification/EventID")
    );
    assert_eq!(
        refuse(base.replace(r#"csd-code="110110""#, "")),
        DicomError::Missing("EventID/@csd-code")
    );
    assert!(matches!(
        refuse(base.replace(r#"EventActionCode="R""#, r#"EventActionCode="X""#)),
        DicomError::Invalid {
            path: "EventIdentification/@EventActionCode",
            ..
        }
    ));
    assert!(matches!(
        refuse(base.replace(r#"UserIsRequestor="false""#, r#"UserIsRequestor="maybe""#)),
        DicomError::Invalid {
            path: "ActiveParticipant/@UserIsRequestor",
            ..
        }
    ));
    let no_participant: String = base
        .lines()
        .filter(|l| !l.contains("ActiveParticipant") && !l.contains("RoleIDCode"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        refuse(no_participant),
        DicomError::Missing("AuditMessage/ActiveParticipant")
    );
    let e = refuse(
        base.replace(
            r#"NetworkAccessPointID="10.1.2.3""#,
            r#"NetworkAccessPointID="10.1.2.3\u{1}""#,
        )
        .replace("\\u{1}", "&#1;"),
    );
    assert!(
        matches!(e, DicomError::Xml { .. } | DicomError::Trace { .. }),
        "{e}"
    );
    let many = "<ParticipantObjectDetail type=\"t\" value=\"dg==\"/>".repeat(40);
    let e = refuse(base.replace(
        "<ParticipantObjectQuery>",
        &format!("{many}<ParticipantObjectQuery>"),
    ));
    assert!(matches!(e, DicomError::TooMany { .. }), "{e}");
    let e = refuse(base.replace("AuditMessage>", "Audit>"));
    assert!(
        matches!(e, DicomError::NotAuditMessage | DicomError::Xml { .. }),
        "{e}"
    );
}
