//! A received AuditEvent checked against FHIR R4 (4.0.1) and registre's
//! content guard, element by element.
//!
//! The R4 structure of AuditEvent and of the data types it uses is written
//! out below as tables ([`AUDIT_EVENT`] and the rest): every element name,
//! its type, whether it is required and whether it repeats. Anything else is
//! refused with an issue that names the element's path, so a producer learns
//! exactly what to fix. On top of R4:
//!
//! - **Content guard.** Field names that mean message content (`body`,
//!   `subject`, `attachment`, …, the same rules as the JSON API) are refused
//!   anywhere, as are an `entity.detail.type` or an extension URL that names
//!   content. Free text is bounded: names, displays, `altId`, `site`,
//!   `detail.valueString` one line of at most 256 bytes (1 KiB for
//!   `outcomeDesc` and `detail.valueString`), `entity.description` at most 2 KiB,
//!   `entity.query` and `detail.valueBase64Binary` at most 2 KiB and 1 KiB
//!   decoded. Free text spread on several lines where a status line is
//!   expected looks like a message body and is refused.
//! - **Not kept**: the narrative (`text`, free XHTML), `contained`
//!   resources, `implicitRules` and modifier extensions are refused with a
//!   `not-supported` issue saying why; the coded elements say everything
//!   registre keeps.
//! - **Needed to map**: `type.code`, and at least one agent with
//!   `requestor = true` (the author of the trace).

use base64::Engine;
use registre_model::content_field_reason;
use serde_json::{Map, Value};

use super::date;
use super::outcome::{Issue, IssueType as T};

/// Most issues listed for one resource.
pub const MAX_ISSUES: usize = 50;

/// The type of an element.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// A string of at most `max` bytes; `line`: no line breaks.
    Text {
        max: usize,
        line: bool,
    },
    Code,
    CodeIn(&'static [&'static str]),
    Uri,
    Id,
    Instant,
    DateTime,
    Date,
    Boolean,
    Integer,
    /// base64Binary of at most `max` decoded bytes.
    Base64 {
        max: usize,
    },
    Complex(&'static Type),
    Extension,
    /// Refused, with the reason.
    Refused(&'static str),
}

pub(crate) struct Type {
    pub name: &'static str,
    pub fields: &'static [Field],
}

pub(crate) struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub many: bool,
}

const fn one(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        many: false,
    }
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
        many: false,
    }
}

const fn many(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        many: true,
    }
}

const fn line(max: usize) -> Kind {
    Kind::Text { max, line: true }
}

const SHORT: Kind = line(256);
const MODIFIER: &str = "modifier extensions change the meaning of the element they are in; \
     registre understands none, so it refuses them (FHIR R4 §2.5.0.1)";

pub(crate) static CODING: Type = Type {
    name: "Coding",
    fields: &[
        one("system", Kind::Uri),
        one("version", SHORT),
        one("code", Kind::Code),
        one("display", SHORT),
        one("userSelected", Kind::Boolean),
    ],
};

pub(crate) static CODEABLE_CONCEPT: Type = Type {
    name: "CodeableConcept",
    fields: &[many("coding", Kind::Complex(&CODING)), one("text", SHORT)],
};

pub(crate) static PERIOD: Type = Type {
    name: "Period",
    fields: &[one("start", Kind::DateTime), one("end", Kind::DateTime)],
};

/// A Reference inside an Identifier (`assigner`): no identifier of its own.
static ASSIGNER: Type = Type {
    name: "Reference",
    fields: &[
        one("reference", line(1024)),
        one("type", Kind::Uri),
        one("display", SHORT),
    ],
};

pub(crate) static IDENTIFIER: Type = Type {
    name: "Identifier",
    fields: &[
        one(
            "use",
            Kind::CodeIn(&["usual", "official", "temp", "secondary", "old"]),
        ),
        one("type", Kind::Complex(&CODEABLE_CONCEPT)),
        one("system", Kind::Uri),
        one("value", SHORT),
        one("period", Kind::Complex(&PERIOD)),
        one("assigner", Kind::Complex(&ASSIGNER)),
    ],
};

pub(crate) static REFERENCE: Type = Type {
    name: "Reference",
    fields: &[
        one("reference", line(1024)),
        one("type", Kind::Uri),
        one("identifier", Kind::Complex(&IDENTIFIER)),
        one("display", SHORT),
    ],
};

pub(crate) static META: Type = Type {
    name: "Meta",
    fields: &[
        one("versionId", Kind::Id),
        one("lastUpdated", Kind::Instant),
        one("source", Kind::Uri),
        many("profile", Kind::Uri),
        many("security", Kind::Complex(&CODING)),
        many("tag", Kind::Complex(&CODING)),
    ],
};

static NETWORK: Type = Type {
    name: "AuditEvent.agent.network",
    fields: &[
        one("address", SHORT),
        one("type", Kind::CodeIn(&["1", "2", "3", "4", "5"])),
    ],
};

static AGENT: Type = Type {
    name: "AuditEvent.agent",
    fields: &[
        one("type", Kind::Complex(&CODEABLE_CONCEPT)),
        many("role", Kind::Complex(&CODEABLE_CONCEPT)),
        one("who", Kind::Complex(&REFERENCE)),
        one("altId", SHORT),
        one("name", SHORT),
        req("requestor", Kind::Boolean),
        one("location", Kind::Complex(&REFERENCE)),
        many("policy", Kind::Uri),
        one("media", Kind::Complex(&CODING)),
        one("network", Kind::Complex(&NETWORK)),
        many("purposeOfUse", Kind::Complex(&CODEABLE_CONCEPT)),
    ],
};

static SOURCE: Type = Type {
    name: "AuditEvent.source",
    fields: &[
        one("site", SHORT),
        req("observer", Kind::Complex(&REFERENCE)),
        many("type", Kind::Complex(&CODING)),
    ],
};

static DETAIL: Type = Type {
    name: "AuditEvent.entity.detail",
    fields: &[
        req("type", SHORT),
        one("valueString", line(1024)),
        one("valueBase64Binary", Kind::Base64 { max: 1024 }),
    ],
};

static ENTITY: Type = Type {
    name: "AuditEvent.entity",
    fields: &[
        one("what", Kind::Complex(&REFERENCE)),
        one("type", Kind::Complex(&CODING)),
        one("role", Kind::Complex(&CODING)),
        one("lifecycle", Kind::Complex(&CODING)),
        many("securityLabel", Kind::Complex(&CODING)),
        one("name", SHORT),
        one(
            "description",
            Kind::Text {
                max: 2048,
                line: false,
            },
        ),
        one("query", Kind::Base64 { max: 2048 }),
        many("detail", Kind::Complex(&DETAIL)),
    ],
};

/// FHIR R4 AuditEvent (4.0.1), element by element.
pub(crate) static AUDIT_EVENT: Type = Type {
    name: "AuditEvent",
    fields: &[
        one("id", Kind::Id),
        one("meta", Kind::Complex(&META)),
        one(
            "implicitRules",
            Kind::Refused(
                "implicitRules changes how the whole resource is to be understood; \
                 registre refuses it",
            ),
        ),
        one("language", Kind::Code),
        one(
            "text",
            Kind::Refused(
                "the narrative is free text that registre does not keep (it may carry \
                 clinical content); send the AuditEvent without `text`: a reader \
                 generates it from the coded elements",
            ),
        ),
        one(
            "contained",
            Kind::Refused(
                "contained resources may carry clinical content and registre keeps none; \
                 reference the resource instead",
            ),
        ),
        req("type", Kind::Complex(&CODING)),
        many("subtype", Kind::Complex(&CODING)),
        one("action", Kind::CodeIn(&["C", "R", "U", "D", "E"])),
        one("period", Kind::Complex(&PERIOD)),
        req("recorded", Kind::Instant),
        one("outcome", Kind::CodeIn(&["0", "4", "8", "12"])),
        one("outcomeDesc", line(1024)),
        many("purposeOfEvent", Kind::Complex(&CODEABLE_CONCEPT)),
        Field {
            name: "agent",
            kind: Kind::Complex(&AGENT),
            required: true,
            many: true,
        },
        req("source", Kind::Complex(&SOURCE)),
        many("entity", Kind::Complex(&ENTITY)),
    ],
};

/// Checks an AuditEvent (already parsed JSON); the issues found, at most
/// [`MAX_ISSUES`], each with its element's FHIRPath. Empty: acceptable.
pub fn check_audit_event(v: &Value) -> Vec<Issue> {
    let mut c = Checker::default();
    let Some(obj) = v.as_object() else {
        c.push(Issue::error(
            T::Structure,
            "",
            "the body must be a FHIR resource (a JSON object)",
        ));
        return c.issues;
    };
    match obj.get("resourceType") {
        Some(Value::String(s)) if s == "AuditEvent" => {}
        Some(Value::String(s)) => {
            c.push(Issue::error(
                T::Invalid,
                "",
                format!(
                    "this endpoint takes an AuditEvent; the body is {}",
                    resource_name(s)
                ),
            ));
            return c.issues;
        }
        _ => {
            c.push(Issue::error(
                T::Required,
                "AuditEvent.resourceType",
                "`resourceType` must be \"AuditEvent\"",
            ));
            return c.issues;
        }
    }
    c.object(obj, &AUDIT_EVENT, "AuditEvent", true);
    // registre's rules for mapping the event to a trace.
    if obj
        .get("type")
        .and_then(|t| t.get("code"))
        .and_then(Value::as_str)
        .is_none()
        && obj.get("type").is_some_and(Value::is_object)
    {
        c.push(Issue::error(
            T::Required,
            "AuditEvent.type.code",
            "the event type needs a code (it is mapped to the trace's action)",
        ));
    }
    if let Some(Value::Array(agents)) = obj.get("agent")
        && !agents.is_empty()
        && !agents
            .iter()
            .any(|a| a.get("requestor") == Some(&Value::Bool(true)))
    {
        c.push(Issue::error(
            T::Required,
            "AuditEvent.agent",
            "no agent has `requestor` = true: the requestor is the trace's author",
        ));
    }
    c.issues
}

/// `a Patient`, `an Observation`: a resource type named back only when it
/// looks like one.
pub(crate) fn resource_name(s: &str) -> String {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_uppercase()
        && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok {
        return "not a known resource type".to_owned();
    }
    let article = if s.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {s}")
}

/// An element name echoed only when it looks like one (a letter or `_`,
/// then letters, digits and `_`; at most 64): a hostile name cannot carry
/// content into an error or a log.
pub(crate) fn safe_name(k: &str) -> &str {
    let b = k.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok { k } else { "<unprintable name>" }
}

/// A search parameter name echoed only when it looks like one (letters,
/// digits, `_`, `-`, `.`; at most 64).
pub(crate) fn safe_param(k: &str) -> &str {
    let ok = !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok { k } else { "<unprintable name>" }
}

#[derive(Default)]
pub(crate) struct Checker {
    pub issues: Vec<Issue>,
}

impl Checker {
    pub(crate) fn push(&mut self, i: Issue) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(i);
        }
    }

    fn full(&self) -> bool {
        self.issues.len() >= MAX_ISSUES
    }

    /// An object of type `ty` at `path`. `resource`: the top of a resource
    /// (`resourceType` is allowed and checked by the caller).
    pub(crate) fn object(
        &mut self,
        obj: &Map<String, Value>,
        ty: &'static Type,
        path: &str,
        resource: bool,
    ) {
        if obj.is_empty() {
            self.push(Issue::error(
                T::Structure,
                path,
                "an empty object is not valid FHIR JSON; leave the element out",
            ));
            return;
        }
        for (k, v) in obj {
            if self.full() {
                return;
            }
            let at = format!("{path}.{}", safe_name(k));
            if let Some(what) = content_field_reason(k.trim_start_matches('_')) {
                self.push(Issue::error(
                    T::BusinessRule,
                    &at,
                    format!(
                        "looks like message content ({what}); registre never stores message \
                         or clinical content: send identifiers and codes instead"
                    ),
                ));
                continue;
            }
            if resource && k == "resourceType" {
                continue;
            }
            if let Some(base) = k.strip_prefix('_') {
                self.primitive_extension(ty, base, v, &at);
                continue;
            }
            match field(ty, k) {
                Some(f) => self.value(f, v, &at),
                None => self.push(Issue::error(
                    T::Structure,
                    &at,
                    format!(
                        "unknown element: {} has no element `{}` in FHIR R4",
                        ty.name,
                        safe_name(k)
                    ),
                )),
            }
        }
        for f in ty.fields {
            if f.required && !obj.contains_key(f.name) {
                self.push(Issue::error(
                    T::Required,
                    &format!("{path}.{}", f.name),
                    format!("{}.{} is required (1..)", ty.name, f.name),
                ));
            }
        }
        self.invariants(ty, obj, path);
    }

    fn value(&mut self, f: &Field, v: &Value, path: &str) {
        if let Kind::Refused(why) = f.kind {
            self.push(Issue::error(T::NotSupported, path, why));
            return;
        }
        match (f.many, v) {
            (true, Value::Array(items)) => {
                if items.is_empty() {
                    self.push(Issue::error(
                        T::Structure,
                        path,
                        "an empty array is not valid FHIR JSON; leave the element out",
                    ));
                }
                for (i, item) in items.iter().enumerate() {
                    self.single(f.kind, item, &format!("{path}[{i}]"));
                }
            }
            (true, _) => self.push(Issue::error(
                T::Structure,
                path,
                "this element repeats: its value must be a JSON array",
            )),
            (false, Value::Array(_)) => self.push(Issue::error(
                T::Structure,
                path,
                "this element does not repeat: its value must not be an array",
            )),
            (false, v) => self.single(f.kind, v, path),
        }
    }

    fn single(&mut self, kind: Kind, v: &Value, path: &str) {
        if v.is_null() {
            self.push(Issue::error(
                T::Structure,
                path,
                "null is not valid FHIR JSON; leave the element out",
            ));
            return;
        }
        let want = |what: &str| format!("wrong type: expected {what}");
        match kind {
            Kind::Text { max, line } => match v {
                Value::String(s) => self.text(s, max, line, path),
                _ => self.push(Issue::error(T::Structure, path, want("a string"))),
            },
            Kind::Code | Kind::CodeIn(_) => match v {
                Value::String(s) => {
                    let ok = !s.is_empty()
                        && s.len() <= 256
                        && !s.starts_with(' ')
                        && !s.ends_with(' ')
                        && !s.contains("  ")
                        && !s.chars().any(|c| c.is_control());
                    if !ok {
                        self.push(Issue::error(
                            T::Value,
                            path,
                            "not a valid code (1 to 256 characters, no leading, trailing or \
                             double spaces, no control characters)",
                        ));
                    } else if let Kind::CodeIn(allowed) = kind
                        && !allowed.contains(&s.as_str())
                    {
                        self.push(Issue::error(
                            T::Value,
                            path,
                            format!("not in the value set: one of {}", allowed.join(", ")),
                        ));
                    }
                }
                _ => self.push(Issue::error(T::Structure, path, want("a code (string)"))),
            },
            Kind::Uri => match v {
                Value::String(s) => {
                    if s.is_empty()
                        || s.len() > 1024
                        || s.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        self.push(Issue::error(
                            T::Value,
                            path,
                            "not a valid uri (1 to 1024 characters, no whitespace)",
                        ));
                    }
                }
                _ => self.push(Issue::error(T::Structure, path, want("a uri (string)"))),
            },
            Kind::Id => match v {
                Value::String(s) => {
                    let ok = !s.is_empty()
                        && s.len() <= 64
                        && s.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                    if !ok {
                        self.push(Issue::error(
                            T::Value,
                            path,
                            "not a valid id (1 to 64 of A-Z a-z 0-9 - .)",
                        ));
                    }
                }
                _ => self.push(Issue::error(T::Structure, path, want("an id (string)"))),
            },
            Kind::Instant => match v {
                Value::String(s) if date::instant(s).is_some() => {}
                Value::String(_) => self.push(Issue::error(
                    T::Value,
                    path,
                    "not a FHIR instant: a date-time with seconds and a time zone, e.g. \
                     2026-11-28T15:42:07.123+01:00",
                )),
                _ => self.push(Issue::error(
                    T::Structure,
                    path,
                    want("an instant (string)"),
                )),
            },
            Kind::DateTime => match v {
                Value::String(s) if date::date_time(s).is_some() => {}
                Value::String(_) => self.push(Issue::error(
                    T::Value,
                    path,
                    "not a FHIR dateTime: YYYY, YYYY-MM, YYYY-MM-DD or a date-time with \
                     seconds and a time zone",
                )),
                _ => self.push(Issue::error(
                    T::Structure,
                    path,
                    want("a dateTime (string)"),
                )),
            },
            Kind::Date => match v {
                Value::String(s) if s.len() <= 10 && date::date_time(s).is_some() => {}
                Value::String(_) => self.push(Issue::error(
                    T::Value,
                    path,
                    "not a FHIR date: YYYY, YYYY-MM or YYYY-MM-DD",
                )),
                _ => self.push(Issue::error(T::Structure, path, want("a date (string)"))),
            },
            Kind::Boolean => {
                if !v.is_boolean() {
                    self.push(Issue::error(
                        T::Structure,
                        path,
                        want("a boolean (true or false, not a string)"),
                    ));
                }
            }
            Kind::Integer => {
                if !(v.is_i64() || v.is_u64()) {
                    self.push(Issue::error(T::Structure, path, want("an integer")));
                }
            }
            Kind::Base64 { max } => match v {
                Value::String(s) => match decode_base64(s) {
                    None => self.push(Issue::error(T::Value, path, "not valid base64")),
                    Some(bytes) if bytes.len() > max => self.push(Issue::error(
                        T::TooLong,
                        path,
                        format!("too long: at most {max} bytes once decoded"),
                    )),
                    Some(_) => {}
                },
                _ => self.push(Issue::error(
                    T::Structure,
                    path,
                    want("a base64Binary (string)"),
                )),
            },
            Kind::Complex(ty) => match v {
                Value::Object(obj) => self.object(obj, ty, path, false),
                _ => self.push(Issue::error(
                    T::Structure,
                    path,
                    want(&format!("an object ({})", ty.name)),
                )),
            },
            Kind::Extension => match v {
                Value::Object(obj) => self.extension(obj, path),
                _ => self.push(Issue::error(
                    T::Structure,
                    path,
                    want("an object (Extension)"),
                )),
            },
            Kind::Refused(why) => self.push(Issue::error(T::NotSupported, path, why)),
        }
    }

    fn text(&mut self, s: &str, max: usize, line: bool, path: &str) {
        if s.trim().is_empty() {
            self.push(Issue::error(
                T::Value,
                path,
                "an empty or blank string is not valid FHIR; leave the element out",
            ));
        } else if s.len() > max {
            self.push(Issue::error(
                T::TooLong,
                path,
                format!(
                    "too long: at most {max} bytes (registre keeps bounded summaries, never \
                     message or clinical content)"
                ),
            ));
        } else if line && s.contains(['\r', '\n']) {
            self.push(Issue::error(
                T::BusinessRule,
                path,
                "must be one line: free text on several lines looks like message content, \
                 which registre never stores",
            ));
        } else if s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
        {
            self.push(Issue::error(
                T::Value,
                path,
                "control characters are not allowed",
            ));
        }
    }

    /// `_name`: the id and extensions of primitive element `name`.
    fn primitive_extension(&mut self, ty: &'static Type, base: &str, v: &Value, path: &str) {
        let Some(f) = field(ty, base).filter(|f| {
            !matches!(
                f.kind,
                Kind::Complex(_) | Kind::Extension | Kind::Refused(_)
            )
        }) else {
            self.push(Issue::error(
                T::Structure,
                path,
                format!(
                    "unknown element: {} has no primitive element `{}` that `_{}` could extend",
                    ty.name,
                    safe_name(base),
                    safe_name(base)
                ),
            ));
            return;
        };
        let one_element = |this: &mut Checker, v: &Value, at: &str| match v {
            Value::Null if f.many => {}
            Value::Object(obj) => this.object(obj, &ELEMENT, at, false),
            _ => this.push(Issue::error(
                T::Structure,
                at,
                "a primitive's extension must be an object (`id`, `extension`)",
            )),
        };
        match (f.many, v) {
            (true, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    one_element(self, item, &format!("{path}[{i}]"));
                }
            }
            (false, v) if !v.is_array() => one_element(self, v, path),
            _ => self.push(Issue::error(
                T::Structure,
                path,
                "a primitive's extension has the shape of the primitive (array or not)",
            )),
        }
    }

    fn extension(&mut self, obj: &Map<String, Value>, path: &str) {
        let mut values = 0usize;
        for (k, v) in obj {
            let at = format!("{path}.{}", safe_name(k));
            match k.as_str() {
                "url" => {
                    self.single(Kind::Uri, v, &at);
                    if let Some(url) = v.as_str() {
                        let last = url
                            .rsplit(['/', '#', ':'])
                            .next()
                            .unwrap_or(url)
                            .trim_end_matches(|c: char| !c.is_alphanumeric());
                        if let Some(what) = content_field_reason(last) {
                            self.push(Issue::error(
                                T::BusinessRule,
                                &at,
                                format!(
                                    "the extension names message content ({what}); registre \
                                     never stores message or clinical content"
                                ),
                            ));
                        }
                    }
                }
                "id" => self.single(line(64), v, &at),
                "extension" => self.value(&many("extension", Kind::Extension), v, &at),
                _ if k.starts_with("value") => {
                    values += 1;
                    if let Some(what) = content_field_reason(k) {
                        self.push(Issue::error(
                            T::BusinessRule,
                            &at,
                            format!(
                                "looks like message content ({what}); registre never stores \
                                 message or clinical content"
                            ),
                        ));
                        continue;
                    }
                    match extension_value_kind(k) {
                        Some(kind) => self.single(kind, v, &at),
                        None => self.push(Issue::error(
                            T::NotSupported,
                            &at,
                            "this extension value type is not accepted; registre takes \
                             valueString, valueCode, valueUri, valueUrl, valueCanonical, valueId, \
                             valueOid, valueUuid, valueBoolean, valueInteger, valuePositiveInt, \
                             valueUnsignedInt, valueDate, valueDateTime, valueInstant, \
                             valueCoding, valueCodeableConcept, valueReference, valueIdentifier \
                             and valuePeriod",
                        )),
                    }
                }
                _ => {
                    if let Some(what) = content_field_reason(k) {
                        self.push(Issue::error(
                            T::BusinessRule,
                            &at,
                            format!(
                                "looks like message content ({what}); registre never stores \
                                 message or clinical content"
                            ),
                        ));
                    } else {
                        self.push(Issue::error(
                            T::Structure,
                            &at,
                            format!(
                                "unknown element: Extension has no element `{}` in FHIR R4",
                                safe_name(k)
                            ),
                        ));
                    }
                }
            }
        }
        if !obj.contains_key("url") {
            self.push(Issue::error(
                T::Required,
                &format!("{path}.url"),
                "Extension.url is required (1..1)",
            ));
        }
        let nested = obj.contains_key("extension");
        if values > 1 || (values == 1) == nested {
            self.push(Issue::error(
                T::Invariant,
                path,
                "ext-1: an extension has either one value[x] or nested extensions, not both \
                 nor neither",
            ));
        }
    }

    fn invariants(&mut self, ty: &'static Type, obj: &Map<String, Value>, path: &str) {
        match ty.name {
            "AuditEvent.entity" if obj.contains_key("name") && obj.contains_key("query") => {
                self.push(Issue::error(
                    T::Invariant,
                    path,
                    "sev-1: an entity has a name or a query, not both",
                ));
            }
            "AuditEvent.entity.detail" => {
                let n = ["valueString", "valueBase64Binary"]
                    .iter()
                    .filter(|k| obj.contains_key(**k))
                    .count();
                if n != 1 {
                    self.push(Issue::error(
                        T::Required,
                        &format!("{path}.value[x]"),
                        "a detail has exactly one value (valueString or valueBase64Binary)",
                    ));
                }
                if let Some(Value::String(t)) = obj.get("type")
                    && let Some(what) = content_field_reason(t)
                {
                    self.push(Issue::error(
                        T::BusinessRule,
                        &format!("{path}.type"),
                        format!(
                            "the detail names message content ({what}); registre never \
                             stores message or clinical content"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
}

/// `id` and `extension`, the elements every element has; `modifierExtension`
/// (backbone elements and resources) is refused with the reason.
static ELEMENT: Type = Type {
    name: "Element",
    fields: &[],
};

const ELEMENT_ID: Field = one("id", line(64));
const ELEMENT_EXTENSION: Field = many("extension", Kind::Extension);
const MODIFIER_EXTENSION: Field = many("modifierExtension", Kind::Refused(MODIFIER));

fn field(ty: &'static Type, name: &str) -> Option<&'static Field> {
    if let Some(f) = ty.fields.iter().find(|f| f.name == name) {
        return Some(f);
    }
    match name {
        "id" => Some(&ELEMENT_ID),
        "extension" => Some(&ELEMENT_EXTENSION),
        "modifierExtension" if ty.name.starts_with("AuditEvent") => Some(&MODIFIER_EXTENSION),
        _ => None,
    }
}

fn extension_value_kind(k: &str) -> Option<Kind> {
    Some(match k {
        "valueString" => SHORT,
        "valueCode" => Kind::Code,
        "valueUri" | "valueUrl" | "valueCanonical" | "valueOid" | "valueUuid" => Kind::Uri,
        "valueId" => Kind::Id,
        "valueBoolean" => Kind::Boolean,
        "valueInteger" | "valuePositiveInt" | "valueUnsignedInt" => Kind::Integer,
        "valueDate" => Kind::Date,
        "valueDateTime" => Kind::DateTime,
        "valueInstant" => Kind::Instant,
        "valueCoding" => Kind::Complex(&CODING),
        "valueCodeableConcept" => Kind::Complex(&CODEABLE_CONCEPT),
        "valueReference" => Kind::Complex(&REFERENCE),
        "valueIdentifier" => Kind::Complex(&IDENTIFIER),
        "valuePeriod" => Kind::Complex(&PERIOD),
        _ => return None,
    })
}

/// FHIR base64Binary (whitespace between groups allowed).
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let compact: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> Value {
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "recorded": "2026-11-28T15:42:07.123+01:00",
            "agent": [{"who": {"identifier": {"value": "810001234567"}}, "requestor": true}],
            "source": {"observer": {"display": "LPS"}}
        })
    }

    fn issues(v: &Value) -> Vec<(String, &'static str)> {
        check_audit_event(v)
            .into_iter()
            .map(|i| (i.expression.unwrap_or_default(), i.code.as_str()))
            .collect()
    }

    #[test]
    fn minimal_is_valid() {
        assert!(check_audit_event(&minimal()).is_empty());
    }

    #[test]
    fn precise_paths() {
        let mut v = minimal();
        v["agent"][0]["foo"] = json!(1);
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.agent[0].foo".into(), "structure")]
        );
        let mut v = minimal();
        v["agent"][0].as_object_mut().map(|o| o.remove("requestor"));
        let got = issues(&v);
        assert!(got.contains(&("AuditEvent.agent[0].requestor".into(), "required")));
        assert!(got.contains(&("AuditEvent.agent".into(), "required")));
        let mut v = minimal();
        v["recorded"] = json!("2026-11-28T15:42:07");
        assert_eq!(issues(&v), vec![("AuditEvent.recorded".into(), "value")]);
        let mut v = minimal();
        v["outcome"] = json!("5");
        assert_eq!(issues(&v), vec![("AuditEvent.outcome".into(), "value")]);
        let mut v = minimal();
        v["subtype"] = json!({"code": "read"});
        assert_eq!(issues(&v), vec![("AuditEvent.subtype".into(), "structure")]);
        let mut v = minimal();
        v.as_object_mut().map(|o| o.remove("source"));
        assert_eq!(issues(&v), vec![("AuditEvent.source".into(), "required")]);
        let mut v = minimal();
        v["resourceType"] = json!("Patient");
        assert_eq!(issues(&v), vec![(String::new(), "invalid")]);
    }

    #[test]
    fn content_guard() {
        let canary = "CANARY-7f3a";
        let mut v = minimal();
        v["text"] = json!({"status": "generated", "div": canary});
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.text".into(), "not-supported")]
        );
        let mut v = minimal();
        v["agent"][0]["body"] = json!(canary);
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.agent[0].body".into(), "business-rule")]
        );
        let mut v = minimal();
        v["outcomeDesc"] = json!(format!("Objet: {canary}\r\n\r\nBonjour"));
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.outcomeDesc".into(), "business-rule")]
        );
        let mut v = minimal();
        v["entity"] = json!([{"detail": [{"type": "Subject", "valueString": canary}]}]);
        assert_eq!(
            issues(&v),
            vec![(
                "AuditEvent.entity[0].detail[0].type".into(),
                "business-rule"
            )]
        );
        let mut v = minimal();
        v["extension"] = json!([{"url": "http://x.example/StructureDefinition/message-body", "valueString": canary}]);
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.extension[0].url".into(), "business-rule")]
        );
        let mut v = minimal();
        v["entity"] = json!([{"description": "x".repeat(3000)}]);
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.entity[0].description".into(), "too-long")]
        );
        for v in [
            json!({"a": canary}),
            json!({"resourceType": canary}),
            json!({"resourceType": "AuditEvent", "CANARY 7f3a": 1}),
        ] {
            for i in check_audit_event(&v) {
                for text in [i.diagnostics, i.expression.unwrap_or_default()] {
                    assert!(!text.contains("CANARY"), "{text}");
                }
            }
        }
    }

    #[test]
    fn extensions_and_primitive_extensions() {
        let mut v = minimal();
        v["agent"][0]["extension"] = json!([{"url": "https://profiles.ihe.net/ITI/BALP/StructureDefinition/ihe-otherId",
            "valueIdentifier": {"value": "JohnD"}}]);
        v["_recorded"] = json!({"extension": [{"url": "http://x/y", "valueBoolean": true}]});
        assert!(check_audit_event(&v).is_empty(), "{:?}", issues(&v));
        let mut v = minimal();
        v["extension"] = json!([{"url": "http://x/y", "valueString": "a", "extension": [{"url": "z", "valueCode": "b"}]}]);
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.extension[0]".into(), "invariant")]
        );
        let mut v = minimal();
        v["modifierExtension"] = json!([{"url": "http://x/y", "valueBoolean": true}]);
        assert_eq!(
            issues(&v),
            vec![("AuditEvent.modifierExtension".into(), "not-supported")]
        );
        let mut v = minimal();
        v["_source"] = json!({"id": "x"});
        assert_eq!(issues(&v), vec![("AuditEvent._source".into(), "structure")]);
    }
}
