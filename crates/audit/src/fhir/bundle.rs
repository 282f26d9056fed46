//! Bundles: the `batch`/`transaction` a producer posts to `/fhir` (read
//! with a bounded number of entries, never a 10,000-entry vector), and the
//! Bundles registre answers (`batch-response`, `transaction-response`,
//! `searchset`).

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::outcome::{Issue, IssueType as T, OperationOutcome};
use super::validate::{self, Checker, Field, Kind, Type, resource_name};

/// Most entries in one posted Bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 1000;

/// What a posted Bundle asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// Each entry on its own.
    Batch,
    /// All entries or none.
    Transaction,
}

impl BundleKind {
    pub fn response_type(self) -> &'static str {
        match self {
            BundleKind::Batch => "batch-response",
            BundleKind::Transaction => "transaction-response",
        }
    }
}

/// A posted Bundle: its kind, and each entry's AuditEvent or the issues
/// that refuse the entry (named `Bundle.entry[i]…`).
#[derive(Debug)]
pub struct BundleIn {
    pub kind: BundleKind,
    pub entries: Vec<Result<Value, Vec<Issue>>>,
}

/// Why a posted Bundle is refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// More than [`MAX_BUNDLE_ENTRIES`] entries (answer 413).
    TooManyEntries,
    /// Not JSON, not a Bundle, or a Bundle registre does not take (400).
    Invalid(OperationOutcome),
}

const TOO_MANY: &str = "registre: too many entries";

/// Reads a posted Bundle. Entries are split without being parsed, and the
/// read stops at entry [`MAX_BUNDLE_ENTRIES`] + 1.
pub fn parse_bundle(body: &[u8]) -> Result<BundleIn, BundleError> {
    let top: TopLevel<'_> = match serde_json::from_slice(body) {
        Ok(t) => t,
        Err(e) if e.to_string().starts_with(TOO_MANY) => return Err(BundleError::TooManyEntries),
        Err(e) => {
            let pos = registre_model::json_error_position(&e);
            return Err(BundleError::Invalid(OperationOutcome::error(
                T::Structure,
                "",
                format!("the body is not a JSON object: {pos}"),
            )));
        }
    };
    let mut fields = Map::new();
    for (k, raw) in &top.fields {
        let v: Value = serde_json::from_str(raw.get()).map_err(|_| {
            BundleError::Invalid(OperationOutcome::error(
                T::Structure,
                "Bundle",
                "invalid JSON",
            ))
        })?;
        fields.insert(k.clone(), v);
    }
    match fields.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {}
        Some("AuditEvent") => {
            return Err(BundleError::Invalid(OperationOutcome::error(
                T::Invalid,
                "",
                "POST /fhir takes a Bundle; post a single AuditEvent to /fhir/AuditEvent",
            )));
        }
        Some(other) => {
            return Err(BundleError::Invalid(OperationOutcome::error(
                T::Invalid,
                "",
                format!(
                    "POST /fhir takes a batch or transaction Bundle; the body is {}",
                    resource_name(other)
                ),
            )));
        }
        None => {
            return Err(BundleError::Invalid(OperationOutcome::error(
                T::Required,
                "Bundle.resourceType",
                "`resourceType` must be \"Bundle\"",
            )));
        }
    }
    let kind = match fields.get("type").and_then(Value::as_str) {
        Some("batch") => BundleKind::Batch,
        Some("transaction") => BundleKind::Transaction,
        Some(_) | None => {
            return Err(BundleError::Invalid(OperationOutcome::error(
                T::NotSupported,
                "Bundle.type",
                "POST /fhir takes a Bundle of type `batch` or `transaction` (a message, \
                 document or collection Bundle is not an audit event feed)",
            )));
        }
    };
    let mut c = Checker::default();
    c.object(&fields, &BUNDLE, "Bundle", true);
    if !c.issues.is_empty() {
        return Err(BundleError::Invalid(OperationOutcome::new(c.issues)));
    }
    let mut entries = Vec::with_capacity(top.entries.as_ref().map_or(0, Vec::len));
    for (i, raw) in top.entries.iter().flatten().enumerate() {
        entries.push(entry(i, raw));
    }
    Ok(BundleIn { kind, entries })
}

/// One entry: `{request: {method: POST, url: AuditEvent}, resource: …}`.
fn entry(i: usize, raw: &RawValue) -> Result<Value, Vec<Issue>> {
    let at = format!("Bundle.entry[{i}]");
    let Ok(Value::Object(mut e)) = serde_json::from_str::<Value>(raw.get()) else {
        return Err(vec![Issue::error(
            T::Structure,
            &at,
            "an entry must be a JSON object",
        )]);
    };
    let resource = e.remove("resource");
    let mut c = Checker::default();
    if e.is_empty() {
        c.push(Issue::error(
            T::Required,
            &format!("{at}.request"),
            "Bundle.entry.request is required in a batch or transaction (POST AuditEvent)",
        ));
    } else {
        c.object(&e, &ENTRY, &at, false);
    }
    if let Some(Value::Object(req)) = e.get("request") {
        if req
            .get("method")
            .and_then(Value::as_str)
            .is_some_and(|m| m != "POST")
        {
            c.push(Issue::error(
                T::NotSupported,
                &format!("{at}.request.method"),
                "only POST (create) is accepted: the journal is append-only",
            ));
        }
        if let Some(url) = req.get("url").and_then(Value::as_str)
            && url != "AuditEvent"
            && !url.ends_with("/AuditEvent")
        {
            c.push(Issue::error(
                T::NotSupported,
                &format!("{at}.request.url"),
                "only `AuditEvent` is accepted: registre keeps audit events, no other resource",
            ));
        }
    }
    let resource = match resource {
        Some(Value::Object(r)) => r,
        Some(_) => {
            c.push(Issue::error(
                T::Structure,
                &format!("{at}.resource"),
                "the resource must be a JSON object",
            ));
            return Err(c.issues);
        }
        None => {
            c.push(Issue::error(
                T::Required,
                &format!("{at}.resource"),
                "each entry carries the AuditEvent to create",
            ));
            return Err(c.issues);
        }
    };
    if !c.issues.is_empty() {
        return Err(c.issues);
    }
    Ok(Value::Object(resource))
}

static LINK: Type = Type {
    name: "Bundle.link",
    fields: &[
        Field {
            name: "relation",
            kind: Kind::Text {
                max: 256,
                line: true,
            },
            required: true,
            many: false,
        },
        Field {
            name: "url",
            kind: Kind::Uri,
            required: true,
            many: false,
        },
    ],
};

static REQUEST: Type = Type {
    name: "Bundle.entry.request",
    fields: &[
        Field {
            name: "method",
            kind: Kind::CodeIn(&["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
            required: true,
            many: false,
        },
        Field {
            name: "url",
            kind: Kind::Uri,
            required: true,
            many: false,
        },
        Field {
            name: "ifNoneMatch",
            kind: Kind::Refused("conditional requests are not supported"),
            required: false,
            many: false,
        },
        Field {
            name: "ifModifiedSince",
            kind: Kind::Refused("conditional requests are not supported"),
            required: false,
            many: false,
        },
        Field {
            name: "ifMatch",
            kind: Kind::Refused("conditional requests are not supported"),
            required: false,
            many: false,
        },
        Field {
            name: "ifNoneExist",
            kind: Kind::Refused(
                "conditional create is not supported: every audit event is a new trace",
            ),
            required: false,
            many: false,
        },
    ],
};

static ENTRY: Type = Type {
    name: "Bundle.entry",
    fields: &[
        Field {
            name: "link",
            kind: Kind::Complex(&LINK),
            required: false,
            many: true,
        },
        Field {
            name: "fullUrl",
            kind: Kind::Uri,
            required: false,
            many: false,
        },
        Field {
            name: "request",
            kind: Kind::Complex(&REQUEST),
            required: true,
            many: false,
        },
        Field {
            name: "search",
            kind: Kind::Refused("`search` belongs to search results, not to a batch"),
            required: false,
            many: false,
        },
        Field {
            name: "response",
            kind: Kind::Refused("`response` belongs to a response Bundle, not to a request"),
            required: false,
            many: false,
        },
    ],
};

/// The Bundle's own elements (`entry` is read apart, bounded).
static BUNDLE: Type = Type {
    name: "Bundle",
    fields: &[
        Field {
            name: "id",
            kind: Kind::Id,
            required: false,
            many: false,
        },
        Field {
            name: "meta",
            kind: Kind::Complex(&validate::META),
            required: false,
            many: false,
        },
        Field {
            name: "implicitRules",
            kind: Kind::Refused("implicitRules is not supported"),
            required: false,
            many: false,
        },
        Field {
            name: "language",
            kind: Kind::Code,
            required: false,
            many: false,
        },
        Field {
            name: "identifier",
            kind: Kind::Complex(&validate::IDENTIFIER),
            required: false,
            many: false,
        },
        Field {
            name: "type",
            kind: Kind::Code,
            required: true,
            many: false,
        },
        Field {
            name: "timestamp",
            kind: Kind::Instant,
            required: false,
            many: false,
        },
        Field {
            name: "total",
            kind: Kind::Refused("`total` belongs to search results"),
            required: false,
            many: false,
        },
        Field {
            name: "link",
            kind: Kind::Complex(&LINK),
            required: false,
            many: true,
        },
        Field {
            name: "signature",
            kind: Kind::Refused("signed Bundles are not supported"),
            required: false,
            many: false,
        },
    ],
};

/// The top-level object of a posted Bundle: every member kept raw, `entry`
/// split into raw entries, at most [`MAX_BUNDLE_ENTRIES`].
struct TopLevel<'a> {
    fields: Vec<(String, &'a RawValue)>,
    entries: Option<Vec<&'a RawValue>>,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TopLevel<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a Bundle (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<TopLevel<'a>, A::Error> {
                let mut top = TopLevel {
                    fields: Vec::new(),
                    entries: None,
                };
                while let Some(k) = m.next_key::<String>()? {
                    if k == "entry" {
                        if top.entries.is_some() {
                            return Err(de::Error::custom("duplicate `entry`"));
                        }
                        top.entries = Some(m.next_value::<Entries<'a>>()?.0);
                    } else {
                        if top.fields.iter().any(|(x, _)| *x == k) {
                            return Err(de::Error::custom("duplicate member"));
                        }
                        let v: &'de RawValue = m.next_value()?;
                        top.fields.push((k, v));
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

struct Entries<'a>(Vec<&'a RawValue>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Entries<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entries<'a>, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<&'de RawValue>()? {
                    if out.len() == MAX_BUNDLE_ENTRIES {
                        return Err(de::Error::custom(TOO_MANY));
                    }
                    out.push(x);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_seq(V(std::marker::PhantomData))
    }
}

/// How one entry of a posted Bundle ended.
#[derive(Debug, Clone)]
pub enum EntryResult {
    /// Stored: the trace's id, its `received_at`, and the stored resource
    /// when the client wants it back.
    Created {
        id: String,
        last_modified: String,
        resource: Option<Value>,
    },
    /// Refused, with the HTTP status it would have had alone.
    Failed {
        status: u16,
        outcome: OperationOutcome,
    },
}

/// `201 Created`, `400 Bad Request`…: an entry's `response.status`.
pub fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_owned()
}

/// The answer to a posted Bundle: one entry per request entry, in order.
pub fn response_bundle(kind: BundleKind, results: &[EntryResult]) -> Value {
    let entries: Vec<Value> = results
        .iter()
        .map(|r| match r {
            EntryResult::Created {
                id,
                last_modified,
                resource,
            } => {
                let mut e = json!({
                    "response": {
                        "status": status_line(201),
                        "location": format!("AuditEvent/{id}/_history/1"),
                        "etag": "W/\"1\"",
                        "lastModified": last_modified,
                    }
                });
                if let Some(res) = resource {
                    e["fullUrl"] = json!(format!("urn:uuid:{id}"));
                    e["resource"] = res.clone();
                }
                e
            }
            EntryResult::Failed { status, outcome } => json!({
                "response": {
                    "status": status_line(*status),
                    "outcome": outcome.to_value(),
                }
            }),
        })
        .collect();
    let mut b = json!({"resourceType": "Bundle", "type": kind.response_type()});
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

/// A `searchset` Bundle of AuditEvents (each with its `id`), with its `self`
/// link and, when there is more, its `next` link; `total` when known.
pub fn searchset(
    events: Vec<Value>,
    total: Option<usize>,
    self_url: &str,
    next_url: Option<&str>,
) -> Value {
    let mut links = vec![json!({"relation": "self", "url": self_url})];
    if let Some(n) = next_url {
        links.push(json!({"relation": "next", "url": n}));
    }
    let entries: Vec<Value> = events
        .into_iter()
        .map(|ev| {
            let id = ev.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
            json!({"fullUrl": format!("urn:uuid:{id}"), "resource": ev, "search": {"mode": "match"}})
        })
        .collect();
    let mut b = json!({"resourceType": "Bundle", "type": "searchset", "link": links});
    if let Some(t) = total {
        b["total"] = json!(t);
    }
    if !entries.is_empty() {
        b["entry"] = Value::Array(entries);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Value {
        json!({"resourceType": "AuditEvent"})
    }

    #[test]
    fn bundles_are_bounded_and_checked() {
        let entry = json!({"request": {"method": "POST", "url": "AuditEvent"}, "resource": ev()});
        let b = json!({"resourceType": "Bundle", "type": "batch", "entry": vec![entry.clone(); 3]});
        let got = parse_bundle(b.to_string().as_bytes()).expect("bundle");
        assert_eq!(got.kind, BundleKind::Batch);
        assert_eq!(got.entries.len(), 3);
        assert!(got.entries.iter().all(Result::is_ok));

        let big = json!({"resourceType": "Bundle", "type": "transaction",
            "entry": vec![entry.clone(); MAX_BUNDLE_ENTRIES + 1]});
        assert_eq!(
            parse_bundle(big.to_string().as_bytes()).err(),
            Some(BundleError::TooManyEntries)
        );
        // The count is checked while reading: entries after the limit need
        // not even be valid JSON values of an entry.
        let mut raw = String::from("{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[");
        for _ in 0..=MAX_BUNDLE_ENTRIES {
            raw.push_str("{},");
        }
        raw.push_str("{}]}");
        assert_eq!(
            parse_bundle(raw.as_bytes()).err(),
            Some(BundleError::TooManyEntries)
        );

        for bad in [
            json!({"resourceType": "Bundle", "type": "message", "entry": [entry.clone()]}),
            json!({"resourceType": "Patient"}),
            json!({"resourceType": "Bundle", "type": "batch", "foo": 1}),
            json!([1]),
        ] {
            assert!(
                matches!(
                    parse_bundle(bad.to_string().as_bytes()),
                    Err(BundleError::Invalid(_))
                ),
                "{bad}"
            );
        }
        let b = json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "PUT", "url": "AuditEvent/1"}, "resource": ev()},
            {"request": {"method": "POST", "url": "Patient"}, "resource": ev()},
            {"request": {"method": "POST", "url": "AuditEvent", "ifNoneExist": "x"}, "resource": ev()},
            {"resource": ev()},
            {"request": {"method": "POST", "url": "AuditEvent"}},
        ]});
        let got = parse_bundle(b.to_string().as_bytes()).expect("bundle");
        let paths: Vec<Vec<String>> = got
            .entries
            .iter()
            .map(|e| {
                e.as_ref()
                    .expect_err("refused")
                    .iter()
                    .map(|i| i.expression.clone().unwrap_or_default())
                    .collect()
            })
            .collect();
        assert_eq!(
            paths,
            vec![
                vec![
                    "Bundle.entry[0].request.method".to_owned(),
                    "Bundle.entry[0].request.url".to_owned()
                ],
                vec!["Bundle.entry[1].request.url".to_owned()],
                vec!["Bundle.entry[2].request.ifNoneExist".to_owned()],
                vec!["Bundle.entry[3].request".to_owned()],
                vec!["Bundle.entry[4].resource".to_owned()],
            ]
        );
    }
}
