//! DICOM PS3.15 Annex A.5 `AuditMessage` XML (IHE ATNA; also the older
//! RFC 3881 spelling of its codes) → registre trace.
//!
//! # Safety of the XML
//!
//! roxmltree with its defaults: a document type declaration (DTD) is refused
//! outright, so no entity is ever declared, expanded ("billion laughs") or
//! fetched; no external resource is ever read. The document is at most
//! [`DicomLimits::max_xml_bytes`] (16 KiB) and [`DicomLimits::max_nodes`]
//! nodes. Errors name the element or attribute and the rule, never a value.
//!
//! # Mapping (field by field)
//!
//! | AuditMessage | trace |
//! |---|---|
//! | `EventIdentification/@EventDateTime` | `occurred_at`, as sent (its UTC offset kept). A time **without** an offset (`xs:dateTime` allows it) is taken as UTC: `Z` is appended. |
//! | `EventID`, `EventTypeCode`, `@EventActionCode` | `action` by [`crate::mapping::action_of`] (EventID as type, EventTypeCodes as subtypes), `class` by [`crate::mapping::class_of`]. Codes are read from `csd-code` (DICOM) or `code` (RFC 3881); `codeSystemName="DCM"` (or none, on EventID) is the DICOM system. |
//! | `@EventOutcomeIndicator` | `outcome`: `0` success, `4`/`8`/`12` failure; `response.status` = the indicator |
//! | `EventOutcomeDescription` | `response.text` (whitespace collapsed to single spaces, at most 1 KiB) |
//! | `EventTypeCode`s, `ParticipantObjectQuery` | `request`: a summary, `ITI-47 Patient Demographics Query; query {693 bytes}` (the query itself is never copied into a field) |
//! | the actor `ActiveParticipant` | `actor.id` = `@UserID` (else `@AlternativeUserID`, else `@UserName`) |
//! | its `@NetworkAccessPointID` | `source.ip` (an IP address; an IPv6 zone `%…` dropped) or `source.host` (type code 1, a machine name); other kinds (telephone, e-mail, URI) are not mapped |
//! | `AuditSourceIdentification/@AuditSourceID` | `source.software` |
//! | `ParticipantObjectIdentification` with `@ParticipantObjectTypeCode="1"` and `@ParticipantObjectTypeCodeRole="1"` (a patient) | `target.patient`: `@ParticipantObjectID`; an HL7 v2 CX value (`id^^^ns&oid&ISO`) gives `id` and `system` (the assigning authority's OID, else its namespace), so does a FHIR token (`urn:oid:oid\|id`); else an OID in `ParticipantObjectIDTypeCode` (e.g. the INS `1.2.250.1.213.1.4.8`, `…4.9`) is the system |
//! | the first other `ParticipantObjectIdentification` | `target.resource` = its `@ParticipantObjectID` |
//!
//! The actor: the first `ActiveParticipant` with `UserIsRequestor="true"`
//! (absent counts as true, RFC 3881's default) that is a person — not in the
//! role Application (110150) or Application Launcher (110151) — else the
//! first requestor, else (some senders, the ANS TDE example among them,
//! mark no requestor) the participant in the role Source (110153), else the
//! first participant with a user id. `source.ip`/`host` come from the
//! actor's network access point, else from another requestor's.
//!
//! Kept only in `original` (the XML as received, bounded): participant
//! names, `ParticipantObjectName`, `ParticipantObjectDetail`,
//! `ParticipantObjectDescription`, `AuditEnterpriseSiteID`, purposes of use,
//! further participants and objects. `ParticipantObjectQuery` must be
//! base64 and at most [`DicomLimits::max_query_bytes`]; details are bounded
//! in number and size.
//!
//! The trace is then checked by the model's own rules
//! ([`registre_model::parse_trace_value`]): lengths, control characters,
//! IP address syntax; a refusal names the XML origin and the trace field.

use base64::Engine as _;
use registre_model::{Limits, Original, Trace, TraceError, parse_trace_value};
use roxmltree::{Document, Node, ParsingOptions};
use serde_json::{Map, Value, json};

use crate::mapping::{self, DCM, Event};

/// The `format` of `original` for an AuditMessage mapped on its own.
pub const ORIGINAL_FORMAT: &str = "dicom+xml";

/// INS (identifiant national de santé) OIDs: NIR, NIA, and their test OIDs.
pub const INS_OIDS: &[&str] = &[
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.9",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.4.11",
];

/// Bounds on an AuditMessage.
#[derive(Debug, Clone)]
pub struct DicomLimits {
    /// The XML document, bytes.
    pub max_xml_bytes: usize,
    /// XML nodes (elements, attributes' owners, text, comments…).
    pub max_nodes: u32,
    /// `ParticipantObjectQuery`, bytes of base64 text.
    pub max_query_bytes: usize,
    /// `ParticipantObjectDetail` elements in one object.
    pub max_details: usize,
    /// A `ParticipantObjectDetail/@value`, bytes.
    pub max_detail_bytes: usize,
    /// `ParticipantObjectName`, bytes.
    pub max_name_bytes: usize,
}

impl Default for DicomLimits {
    fn default() -> DicomLimits {
        DicomLimits {
            max_xml_bytes: crate::syslog::MAX_ORIGINAL,
            max_nodes: 4096,
            max_query_bytes: 8 * 1024,
            max_details: 32,
            max_detail_bytes: 4 * 1024,
            max_name_bytes: 1024,
        }
    }
}

/// Why an AuditMessage was refused. Names elements, attributes and rules,
/// never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    #[error("the AuditMessage is {len} bytes; at most {max}")]
    TooLarge { len: usize, max: usize },
    #[error(
        "XML with a document type declaration (DTD) is refused: registre never declares or \
         expands entities"
    )]
    Dtd,
    #[error("the XML has more than {max} nodes")]
    TooManyNodes { max: u32 },
    #[error("malformed XML: {what} (line {line}, column {column})")]
    Xml {
        what: &'static str,
        line: u32,
        column: u32,
    },
    #[error("the root element must be `AuditMessage` (DICOM PS3.15 A.5.1, RFC 3881)")]
    NotAuditMessage,
    #[error("`{0}` is missing")]
    Missing(&'static str),
    #[error("`{0}` appears more than once")]
    Duplicate(&'static str),
    #[error("`{path}`: {expected}")]
    Invalid {
        path: &'static str,
        expected: &'static str,
    },
    #[error("`{path}`: longer than {max} bytes")]
    TooLong { path: &'static str, max: usize },
    #[error("`{path}`: more than {max}")]
    TooMany { path: &'static str, max: usize },
    #[error("no `ActiveParticipant` has a user id (`UserID`, `AlternativeUserID` or `UserName`)")]
    NoActor,
    #[error("`{from}` → trace {error}")]
    Trace {
        from: &'static str,
        error: TraceError,
    },
}

impl DicomError {
    /// A short stable code, for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            DicomError::TooLarge { .. } => "too_large",
            DicomError::Dtd => "xml_dtd",
            DicomError::TooManyNodes { .. } | DicomError::Xml { .. } => "xml_malformed",
            DicomError::NotAuditMessage => "not_audit_message",
            DicomError::Missing(_) | DicomError::NoActor => "dicom_missing",
            DicomError::Duplicate(_)
            | DicomError::Invalid { .. }
            | DicomError::TooLong { .. }
            | DicomError::TooMany { .. } => "dicom_invalid",
            DicomError::Trace { .. } => "dicom_trace_invalid",
        }
    }
}

/// An AuditMessage → a trace, with `original` = `{dicom+xml, the XML}`.
pub fn to_trace(xml: &str, limits: &Limits) -> Result<Trace, DicomError> {
    to_trace_with(xml, &DicomLimits::default(), limits)
}

/// [`to_trace`] with explicit bounds.
pub fn to_trace_with(xml: &str, dl: &DicomLimits, limits: &Limits) -> Result<Trace, DicomError> {
    if xml.len() > dl.max_xml_bytes {
        return Err(DicomError::TooLarge {
            len: xml.len(),
            max: dl.max_xml_bytes,
        });
    }
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: dl.max_nodes,
    };
    let doc = Document::parse_with_options(xml, opts).map_err(|e| xml_error(&e, dl))?;
    let root = doc.root_element();
    if root.tag_name().name() != "AuditMessage" {
        return Err(DicomError::NotAuditMessage);
    }
    let msg = read_message(root, dl)?;
    if msg.actor().is_none() {
        return Err(DicomError::NoActor);
    }
    let value = msg.to_json(limits);
    let mut trace = parse_trace_value(&value, limits).map_err(|error| DicomError::Trace {
        from: origin_of(&error.path),
        error,
    })?;
    trace.original = Some(Original {
        format: ORIGINAL_FORMAT.to_owned(),
        text: xml.to_owned(),
    });
    Ok(trace)
}

/// Where in the AuditMessage a trace field came from.
fn origin_of(path: &str) -> &'static str {
    let top = path.split(['.', '[']).next().unwrap_or("");
    match top {
        "occurred_at" => "EventIdentification/@EventDateTime",
        "actor" => "ActiveParticipant/@UserID",
        "action" | "class" => "EventIdentification/EventID",
        "request" => "EventIdentification/EventTypeCode",
        "response" => "EventIdentification/EventOutcomeDescription",
        "source" if path.starts_with("source.software") => {
            "AuditSourceIdentification/@AuditSourceID"
        }
        "source" => "ActiveParticipant/@NetworkAccessPointID",
        "target" => "ParticipantObjectIdentification/@ParticipantObjectID",
        _ => "AuditMessage",
    }
}

fn xml_error(e: &roxmltree::Error, dl: &DicomLimits) -> DicomError {
    use roxmltree::Error as E;
    let what = match e {
        E::DtdDetected => return DicomError::Dtd,
        E::NodesLimitReached | E::AttributesLimitReached | E::NamespacesLimitReached => {
            return DicomError::TooManyNodes { max: dl.max_nodes };
        }
        E::UnknownEntityReference(..)
        | E::MalformedEntityReference(..)
        | E::EntityReferenceLoop(..)
        | E::UnexpectedEntityCloseTag(..) => "an unknown or malformed entity reference",
        E::UnexpectedCloseTag(..) => "a closing tag that does not match its opening tag",
        E::DuplicatedAttribute(..) => "an attribute given twice",
        E::UnknownNamespace(..)
        | E::DuplicatedNamespace(..)
        | E::InvalidXmlPrefixUri(..)
        | E::UnexpectedXmlUri(..)
        | E::UnexpectedXmlnsUri(..)
        | E::InvalidElementNamePrefix(..) => "a namespace error",
        E::NoRootNode => "no root element",
        E::UnclosedRootNode => "the root element is not closed",
        E::UnexpectedEndOfStream => "the document ends too early",
        E::UnexpectedDeclaration(..) => "an XML declaration that is not at the start",
        E::NonXmlChar(..) | E::InvalidChar(..) | E::InvalidChar2(..) => {
            "a character not allowed here"
        }
        E::InvalidAttributeValue(..) => "an invalid attribute value",
        E::InvalidName(..) => "an invalid name",
        E::InvalidComment(..) => "an invalid comment",
        _ => "invalid syntax",
    };
    let pos = e.pos();
    DicomError::Xml {
        what,
        line: pos.row,
        column: pos.col,
    }
}

/// A coded value: `csd-code`/`code`, `codeSystemName`, `originalText`/`displayName`.
#[derive(Debug, Clone, Default)]
struct Coded<'a> {
    code: Option<&'a str>,
    system: Option<&'a str>,
    display: Option<&'a str>,
}

impl<'a> Coded<'a> {
    fn of(n: Node<'a, '_>) -> Coded<'a> {
        let nonempty = |s: Option<&'a str>| s.map(str::trim).filter(|s| !s.is_empty());
        Coded {
            code: nonempty(n.attribute("csd-code").or(n.attribute("code"))),
            system: nonempty(n.attribute("codeSystemName")).or_else(|| {
                // RFC 3881's codeSystem OID for DICOM.
                (n.attribute("codeSystem") == Some("1.2.840.10008.2.16.4")).then_some("DCM")
            }),
            display: nonempty(n.attribute("originalText").or(n.attribute("displayName"))),
        }
    }

    /// The system as [`crate::mapping`] names it.
    fn mapped_system(&self, default_dcm: bool) -> &'a str {
        match self.system {
            Some("DCM") => DCM,
            Some(other) => other,
            None if default_dcm => DCM,
            None => "",
        }
    }
}

struct Participant<'a> {
    user_id: Option<&'a str>,
    alt_user_id: Option<&'a str>,
    user_name: Option<&'a str>,
    requestor: bool,
    roles: Vec<Coded<'a>>,
    nap_id: Option<&'a str>,
    nap_type: Option<&'a str>,
}

impl Participant<'_> {
    fn id(&self) -> Option<&str> {
        self.user_id.or(self.alt_user_id).or(self.user_name)
    }

    fn has_role(&self, codes: &[&str]) -> bool {
        self.roles
            .iter()
            .any(|r| r.code.is_some_and(|c| codes.contains(&c)))
    }
}

struct Object<'a> {
    id: &'a str,
    type_code: Option<&'a str>,
    role: Option<&'a str>,
    id_type: Coded<'a>,
    query_bytes: Option<usize>,
}

struct AuditMessage<'a> {
    event_id: Coded<'a>,
    event_types: Vec<Coded<'a>>,
    action_code: Option<&'a str>,
    date_time: &'a str,
    outcome: &'a str,
    outcome_description: Option<String>,
    participants: Vec<Participant<'a>>,
    source_id: &'a str,
    objects: Vec<Object<'a>>,
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'static str) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

fn one<'a, 'i>(
    n: Node<'a, 'i>,
    name: &'static str,
    path: &'static str,
) -> Result<Node<'a, 'i>, DicomError> {
    let mut it = children(n, name);
    let first = it.next().ok_or(DicomError::Missing(path))?;
    if it.next().is_some() {
        return Err(DicomError::Duplicate(path));
    }
    Ok(first)
}

fn attr<'a>(n: Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute(name).map(str::trim).filter(|s| !s.is_empty())
}

fn read_message<'a>(root: Node<'a, '_>, dl: &DicomLimits) -> Result<AuditMessage<'a>, DicomError> {
    let ev = one(
        root,
        "EventIdentification",
        "AuditMessage/EventIdentification",
    )?;
    let event_id = Coded::of(one(ev, "EventID", "EventIdentification/EventID")?);
    if event_id.code.is_none() {
        return Err(DicomError::Missing("EventID/@csd-code"));
    }
    let event_types: Vec<Coded<'_>> = children(ev, "EventTypeCode").map(Coded::of).collect();
    let action_code = attr(ev, "EventActionCode");
    if action_code.is_some_and(|c| !matches!(c, "C" | "R" | "U" | "D" | "E")) {
        return Err(DicomError::Invalid {
            path: "EventIdentification/@EventActionCode",
            expected: "one of C, R, U, D, E",
        });
    }
    let date_time = attr(ev, "EventDateTime")
        .ok_or(DicomError::Missing("EventIdentification/@EventDateTime"))?;
    let outcome = attr(ev, "EventOutcomeIndicator").ok_or(DicomError::Missing(
        "EventIdentification/@EventOutcomeIndicator",
    ))?;
    if !matches!(outcome, "0" | "4" | "8" | "12") {
        return Err(DicomError::Invalid {
            path: "EventIdentification/@EventOutcomeIndicator",
            expected: "one of 0 (success), 4, 8, 12 (failures)",
        });
    }
    let outcome_description = children(ev, "EventOutcomeDescription")
        .next()
        .map(|d| {
            d.text()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty());

    let mut participants = Vec::new();
    for p in children(root, "ActiveParticipant") {
        let requestor = match p.attribute("UserIsRequestor").map(str::trim) {
            None | Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(_) => {
                return Err(DicomError::Invalid {
                    path: "ActiveParticipant/@UserIsRequestor",
                    expected: "true or false",
                });
            }
        };
        participants.push(Participant {
            user_id: attr(p, "UserID"),
            alt_user_id: attr(p, "AlternativeUserID"),
            user_name: attr(p, "UserName"),
            requestor,
            roles: children(p, "RoleIDCode").map(Coded::of).collect(),
            nap_id: attr(p, "NetworkAccessPointID"),
            nap_type: attr(p, "NetworkAccessPointTypeCode"),
        });
    }
    if participants.is_empty() {
        return Err(DicomError::Missing("AuditMessage/ActiveParticipant"));
    }

    let source = children(root, "AuditSourceIdentification")
        .next()
        .ok_or(DicomError::Missing(
            "AuditMessage/AuditSourceIdentification",
        ))?;
    let source_id = attr(source, "AuditSourceID").ok_or(DicomError::Missing(
        "AuditSourceIdentification/@AuditSourceID",
    ))?;

    let mut objects = Vec::new();
    for o in children(root, "ParticipantObjectIdentification") {
        let id = attr(o, "ParticipantObjectID").ok_or(DicomError::Missing(
            "ParticipantObjectIdentification/@ParticipantObjectID",
        ))?;
        let id_type = children(o, "ParticipantObjectIDTypeCode")
            .next()
            .map(Coded::of)
            .unwrap_or_default();
        let mut query_bytes = None;
        for q in children(o, "ParticipantObjectQuery") {
            let text = q.text().unwrap_or("");
            if text.len() > dl.max_query_bytes {
                return Err(DicomError::TooLong {
                    path: "ParticipantObjectIdentification/ParticipantObjectQuery",
                    max: dl.max_query_bytes,
                });
            }
            let compact: String = text.split_ascii_whitespace().collect();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| DicomError::Invalid {
                    path: "ParticipantObjectIdentification/ParticipantObjectQuery",
                    expected: "base64 (xs:base64Binary)",
                })?;
            if query_bytes.replace(decoded.len()).is_some() {
                return Err(DicomError::Duplicate(
                    "ParticipantObjectIdentification/ParticipantObjectQuery",
                ));
            }
        }
        let details = children(o, "ParticipantObjectDetail").count();
        if details > dl.max_details {
            return Err(DicomError::TooMany {
                path: "ParticipantObjectIdentification/ParticipantObjectDetail",
                max: dl.max_details,
            });
        }
        for d in children(o, "ParticipantObjectDetail") {
            if d.attribute("value").map_or(0, str::len) > dl.max_detail_bytes {
                return Err(DicomError::TooLong {
                    path: "ParticipantObjectDetail/@value",
                    max: dl.max_detail_bytes,
                });
            }
        }
        for n in children(o, "ParticipantObjectName") {
            if n.text().map_or(0, str::len) > dl.max_name_bytes {
                return Err(DicomError::TooLong {
                    path: "ParticipantObjectIdentification/ParticipantObjectName",
                    max: dl.max_name_bytes,
                });
            }
        }
        objects.push(Object {
            id,
            type_code: attr(o, "ParticipantObjectTypeCode"),
            role: attr(o, "ParticipantObjectTypeCodeRole"),
            id_type,
            query_bytes,
        });
    }

    Ok(AuditMessage {
        event_id,
        event_types,
        action_code,
        date_time,
        outcome,
        outcome_description,
        participants,
        source_id,
        objects,
    })
}

const APPLICATION_ROLES: &[&str] = &["110150", "110151"];
const SOURCE_ROLE: &str = "110153";

impl AuditMessage<'_> {
    fn actor(&self) -> Option<&Participant<'_>> {
        let with_id = || self.participants.iter().filter(|p| p.id().is_some());
        with_id()
            .find(|p| p.requestor && !p.has_role(APPLICATION_ROLES))
            .or_else(|| with_id().find(|p| p.requestor))
            .or_else(|| with_id().find(|p| p.has_role(&[SOURCE_ROLE])))
            .or_else(|| with_id().next())
    }

    fn to_json(&self, limits: &Limits) -> Value {
        let type_code = self.event_id.code.unwrap_or("");
        let event = Event {
            type_system: self.event_id.mapped_system(true),
            type_code,
            subtypes: self
                .event_types
                .iter()
                .filter_map(|t| Some((t.mapped_system(false), t.code?)))
                .collect(),
            action: self.action_code,
        };
        let action = mapping::action_of(&event);
        let class = mapping::class_of(&event);

        let occurred_at = if has_offset(self.date_time) {
            self.date_time.to_owned()
        } else {
            format!("{}Z", self.date_time)
        };

        let mut v = Map::new();
        v.insert("class".into(), class.into());
        v.insert("occurred_at".into(), occurred_at.into());
        v.insert("action".into(), action.as_str().into());
        v.insert(
            "outcome".into(),
            if self.outcome == "0" {
                "success"
            } else {
                "failure"
            }
            .into(),
        );
        let mut response = Map::new();
        response.insert("status".into(), self.outcome.into());
        if let Some(d) = &self.outcome_description {
            response.insert("text".into(), d.clone().into());
        }
        v.insert("response".into(), Value::Object(response));
        if let Some(r) = self.request_summary(limits.max_request) {
            v.insert("request".into(), r.into());
        }

        let actor = self.actor();
        if let Some(a) = actor.and_then(Participant::id) {
            v.insert("actor".into(), json!({ "id": a }));
        }

        let mut source = Map::new();
        source.insert("software".into(), self.source_id.into());
        let nap = actor
            .and_then(|a| a.nap_id.map(|id| (id, a.nap_type)))
            .or_else(|| {
                self.participants
                    .iter()
                    .filter(|p| p.requestor)
                    .find_map(|p| p.nap_id.map(|id| (id, p.nap_type)))
            });
        if let Some((id, kind)) = nap {
            let unzoned = id.split('%').next().unwrap_or(id);
            match (unzoned.parse::<std::net::IpAddr>(), kind) {
                (Ok(ip), None | Some("1" | "2")) => {
                    source.insert("ip".into(), ip.to_string().into());
                }
                (Err(_), None | Some("1" | "2")) => {
                    source.insert("host".into(), id.into());
                }
                _ => {}
            }
        }
        v.insert("source".into(), Value::Object(source));

        let mut target = Map::new();
        if let Some(p) = self
            .objects
            .iter()
            .find(|o| o.type_code == Some("1") && o.role == Some("1"))
        {
            target.insert("patient".into(), patient(p));
        }
        if let Some(o) = self
            .objects
            .iter()
            .find(|o| !(o.type_code == Some("1") && o.role == Some("1")))
        {
            target.insert("resource".into(), o.id.into());
        }
        if !target.is_empty() {
            v.insert("target".into(), Value::Object(target));
        }
        Value::Object(v)
    }

    /// `ITI-47 Patient Demographics Query; query {693 bytes}`: the event
    /// types and the size of a query, never its text.
    fn request_summary(&self, max: usize) -> Option<String> {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '{' => '(',
                    '}' => ')',
                    c if c.is_control() => ' ',
                    c => c,
                })
                .collect()
        };
        let mut parts: Vec<String> = self
            .event_types
            .iter()
            .filter_map(|t| {
                let code = t.code?;
                Some(match t.display {
                    Some(d) => format!("{} {}", clean(code), clean(d)),
                    None => clean(code),
                })
            })
            .collect();
        if let Some(n) = self.objects.iter().find_map(|o| o.query_bytes) {
            parts.push(format!("query {{{n} bytes}}"));
        }
        if parts.is_empty() {
            return None;
        }
        let mut s = parts.join("; ");
        if s.len() > max {
            let mut cut = max;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        Some(s)
    }
}

/// The patient of a participant object: an HL7 v2 CX value is split into
/// id and assigning authority; else an OID type code is the system.
fn patient(o: &Object<'_>) -> Value {
    let mut id = o.id.to_owned();
    let mut system: Option<String> = None;
    if let Some((sys, value)) = o.id.split_once('|').filter(|_| !o.id.contains('^')) {
        // A FHIR token (`system|value`), as IHE's mobile profiles write it.
        let sys = sys.trim();
        let sys = sys.strip_prefix("urn:oid:").unwrap_or(sys);
        if !value.trim().is_empty() {
            id = value.trim().to_owned();
            system = (!sys.is_empty()).then(|| sys.to_owned());
        }
    } else if o.id.contains('^') {
        // Some senders escape `&` twice (`&amp;amp;`): undo the second time.
        let cx = o.id.replace("&amp;", "&");
        let mut comps = cx.split('^');
        let first = comps.next().unwrap_or("").trim();
        if !first.is_empty() {
            id = first.to_owned();
            if let Some(authority) = comps.nth(2) {
                let mut sub = authority.split('&');
                let namespace = sub.next().unwrap_or("").trim();
                let universal = sub.next().unwrap_or("").trim();
                system = [universal, namespace]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .map(str::to_owned);
            }
        }
    }
    if system.is_none()
        && let Some(code) = o.id_type.code.filter(|c| is_oid(c))
    {
        system = Some(code.to_owned());
    }
    match system {
        Some(s) => json!({"id": id, "system": s}),
        None => json!({ "id": id }),
    }
}

fn is_oid(s: &str) -> bool {
    s.contains('.')
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an `xs:dateTime` ends with a UTC offset (`Z` or `±hh:mm`).
fn has_offset(s: &str) -> bool {
    let b = s.as_bytes();
    if b.last() == Some(&b'Z') {
        return true;
    }
    b.len() >= 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    const LOGIN: &str = r#"<AuditMessage>
  <EventIdentification EventActionCode="E" EventDateTime="2026-11-28T15:42:07.123+01:00" EventOutcomeIndicator="8">
    <EventID csd-code="110114" codeSystemName="DCM" originalText="User Authentication"/>
    <EventTypeCode csd-code="110122" codeSystemName="DCM" originalText="Login"/>
    <EventOutcomeDescription>mot de passe
      refusé</EventOutcomeDescription>
  </EventIdentification>
  <ActiveParticipant UserID="810001234567" UserIsRequestor="true" NetworkAccessPointID="10.1.2.3" NetworkAccessPointTypeCode="2"/>
  <AuditSourceIdentification AuditSourceID="MonDPI 4.2"/>
  <ParticipantObjectIdentification ParticipantObjectID="2840756123456^^^&amp;1.2.250.1.213.1.4.8&amp;ISO" ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">
    <ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881" originalText="Patient Number"/>
  </ParticipantObjectIdentification>
</AuditMessage>"#;

    #[test]
    fn login_maps_field_by_field() {
        let t = to_trace(LOGIN, &limits()).expect("maps");
        assert_eq!(t.action.as_str(), "connexion");
        assert_eq!(t.class.as_str(), "applicative");
        assert_eq!(t.occurred_at, "2026-11-28T15:42:07.123+01:00");
        assert_eq!(t.actor.id, "810001234567");
        assert_eq!(t.outcome, Some(registre_model::Outcome::Failure));
        let r = t.response.expect("response");
        assert_eq!(r.status, "8");
        assert_eq!(r.text.as_deref(), Some("mot de passe refusé"));
        let s = t.source.expect("source");
        assert_eq!(s.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(s.software.as_deref(), Some("MonDPI 4.2"));
        let p = t.target.and_then(|t| t.patient).expect("patient");
        assert_eq!(p.id, "2840756123456");
        assert_eq!(p.system.as_deref(), Some("1.2.250.1.213.1.4.8"));
        assert_eq!(t.request.as_deref(), Some("110122 Login"));
        let o = t.original.expect("original");
        assert_eq!(o.format, "dicom+xml");
        assert_eq!(o.text, LOGIN);
    }

    #[test]
    fn time_without_offset_is_utc() {
        let xml = LOGIN.replace("2026-11-28T15:42:07.123+01:00", "2026-11-28T15:42:07");
        let t = to_trace(&xml, &limits()).expect("maps");
        assert_eq!(t.occurred_at, "2026-11-28T15:42:07Z");
    }

    #[test]
    fn ins_in_the_type_code() {
        let xml = LOGIN
            .replace(
                "2840756123456^^^&amp;1.2.250.1.213.1.4.8&amp;ISO",
                "1840756123456",
            )
            .replace(
                r#"csd-code="2" codeSystemName="RFC-3881""#,
                r#"csd-code="1.2.250.1.213.1.4.9""#,
            );
        let t = to_trace(&xml, &limits()).expect("maps");
        let p = t.target.and_then(|t| t.patient).expect("patient");
        assert_eq!(p.id, "1840756123456");
        assert_eq!(p.system.as_deref(), Some("1.2.250.1.213.1.4.9"));
    }

    #[test]
    fn refusals_are_precise_and_never_quote() {
        let canary = "CANARY-9f2e";
        let e = |xml: String| to_trace(&xml, &limits()).expect_err("refused");
        let bomb = format!(
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "{canary}"><!ENTITY lol2 "&lol;&lol;&lol;">]><AuditMessage>&lol2;</AuditMessage>"#
        );
        assert_eq!(e(bomb), DicomError::Dtd);
        let bad = format!("<AuditMessage><{canary}></AuditMessage>");
        let err = e(bad);
        assert!(matches!(err, DicomError::Xml { .. }), "{err}");
        assert!(!err.to_string().contains(canary));
        assert_eq!(
            e(LOGIN.replace("AuditMessage", "Other")),
            DicomError::NotAuditMessage
        );
        assert_eq!(
            e(LOGIN.replace(r#" EventDateTime="2026-11-28T15:42:07.123+01:00""#, "")),
            DicomError::Missing("EventIdentification/@EventDateTime")
        );
        assert!(matches!(
            e(LOGIN.replace(
                r#"EventOutcomeIndicator="8""#,
                r#"EventOutcomeIndicator="3""#
            )),
            DicomError::Invalid { .. }
        ));
        let err = e(LOGIN.replace("2026-11-28T15:42:07.123+01:00", canary));
        assert!(
            matches!(
                &err,
                DicomError::Trace {
                    from: "EventIdentification/@EventDateTime",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.to_string().contains(canary));
        let err = e(LOGIN.replace("810001234567", &"x".repeat(300)));
        assert_eq!(err.code(), "dicom_trace_invalid");
        assert!(err.to_string().contains("actor.id"), "{err}");
        let err = e(LOGIN.replace(
            "</ParticipantObjectIdentification>",
            &format!(
                "<ParticipantObjectQuery>{}</ParticipantObjectQuery></ParticipantObjectIdentification>",
                "QUJD".repeat(3000)
            ),
        ));
        assert!(matches!(err, DicomError::TooLong { .. }), "{err}");
        let err = e(LOGIN.replace(
            "</ParticipantObjectIdentification>",
            "<ParticipantObjectQuery>not base64!</ParticipantObjectQuery></ParticipantObjectIdentification>",
        ));
        assert!(matches!(err, DicomError::Invalid { .. }), "{err}");
        assert!(matches!(
            e(format!("{LOGIN}{}", " ".repeat(20_000))),
            DicomError::TooLarge { .. }
        ));
        assert_eq!(
            e(LOGIN.replace("AuditSourceID=", "Other=")),
            DicomError::Missing("AuditSourceIdentification/@AuditSourceID")
        );
    }
}
