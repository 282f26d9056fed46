//! Untrusted JSON → typed [`Trace`], or a [`TraceError`] naming the field.
//!
//! "Parse, don't validate": this is the only place that looks at a producer's
//! JSON. Order of checks: size of the raw JSON, JSON syntax, the content guard
//! over the whole tree (so a content-named field is reported as content even
//! inside an unknown object), then the schema field by field.

use serde_json::{Map, Value};

use crate::error::{TraceError, TraceErrorKind as K};
use crate::guard::{content_field_reason, request_literal};
use crate::trace::{Actor, Outcome, Patient, Response, Source, Target, Trace};
use crate::{Action, ClassName};

/// Bounds on a trace (DESIGN §2).
#[derive(Debug, Clone)]
pub struct Limits {
    /// The whole trace, bytes of JSON as received.
    pub max_trace_bytes: usize,
    /// `request`.
    pub max_request: usize,
    /// `response.text`.
    pub max_response_text: usize,
    /// Identifiers, mailboxes, timestamps and other short strings.
    pub max_short: usize,
    /// Folders, UID sets, documents, resources.
    pub max_long: usize,
    /// `target.recipients`.
    pub max_recipients: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_trace_bytes: 16 * 1024,
            max_request: 2 * 1024,
            max_response_text: 1024,
            max_short: 256,
            max_long: 1024,
            max_recipients: 1000,
        }
    }
}

/// Parses one trace from its JSON bytes.
pub fn parse_trace(raw: &[u8], limits: &Limits) -> Result<Trace, TraceError> {
    if raw.len() > limits.max_trace_bytes {
        return Err(TraceError::new(
            "",
            K::TooLarge {
                max: limits.max_trace_bytes,
            },
        ));
    }
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| TraceError::new("", K::NotJson(json_error_position(&e))))?;
    parse_trace_value(&value, limits)
}

/// Parses one trace from an already-parsed JSON value (its size must have
/// been checked by the caller).
pub fn parse_trace_value(value: &Value, limits: &Limits) -> Result<Trace, TraceError> {
    let mut path = Path::default();
    guard_tree(value, &mut path)?;
    let obj = value
        .as_object()
        .ok_or_else(|| TraceError::new("", K::NotAnObject))?;
    TraceParser { limits }.trace(obj)
}

/// A position message from serde_json that never quotes the input.
pub fn json_error_position(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "unsupported value",
        Category::Io => "read error",
    };
    // serde_json's syntax messages are fixed phrases ("expected value",
    // "recursion limit exceeded", "invalid unicode code point"…) that never
    // quote the input; keep the phrase, which says what is wrong.
    let full = e.to_string();
    let phrase = full.split(" at line ").next().unwrap_or(what);
    let phrase = if phrase.contains(['"', '`']) {
        what
    } else {
        phrase
    };
    format!("{phrase} at line {} column {}", e.line(), e.column())
}

#[derive(Default)]
struct Path(Vec<Seg>);

enum Seg {
    Key(String),
    Index(usize),
}

impl Path {
    fn render(&self) -> String {
        let mut s = String::new();
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !s.is_empty() {
                        s.push('.');
                    }
                    s.push_str(&safe_name(k));
                }
                Seg::Index(i) => {
                    s.push('[');
                    s.push_str(&i.to_string());
                    s.push(']');
                }
            }
        }
        s
    }

    fn with(&self, key: &str) -> String {
        let mut s = self.render();
        if !s.is_empty() {
            s.push('.');
        }
        s.push_str(&safe_name(key));
        s
    }
}

/// Field names are echoed in errors only when they look like identifiers, so
/// a hostile key cannot carry content into an error message or a log.
fn safe_name(k: &str) -> String {
    let b = k.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 40
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        k.to_owned()
    } else {
        "<unprintable field name>".to_owned()
    }
}

/// The content guard over the whole tree, depth first in key order.
fn guard_tree(v: &Value, path: &mut Path) -> Result<(), TraceError> {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if let Some(what) = content_field_reason(k) {
                    return Err(TraceError::new(path.with(k), K::ContentField(what)));
                }
                path.0.push(Seg::Key(k.clone()));
                let r = guard_tree(child, path);
                path.0.pop();
                r?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.0.push(Seg::Index(i));
                let r = guard_tree(child, path);
                path.0.pop();
                r?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

struct TraceParser<'a> {
    limits: &'a Limits,
}

const SERVER_FIELDS: &[&str] = &["id", "index", "log", "original", "received_at", "salt"];

impl TraceParser<'_> {
    fn trace(&self, obj: &Map<String, Value>) -> Result<Trace, TraceError> {
        const FIELDS: &[&str] = &[
            "action",
            "actor",
            "class",
            "occurred_at",
            "outcome",
            "request",
            "response",
            "source",
            "target",
        ];
        for k in obj.keys() {
            if SERVER_FIELDS.contains(&k.as_str()) {
                return Err(TraceError::new(safe_name(k), K::ServerField));
            }
        }
        only_known(obj, FIELDS, "")?;

        let class_s = self.req_str(obj, "class", "", 32)?;
        let class = ClassName::new(class_s)
            .map_err(|_| TraceError::new("class", K::Invalid("a class name is 1 to 32 lowercase letters, digits, '-' or '_', starting with a letter")))?;

        let occurred_at = self.req_str(obj, "occurred_at", "", 40)?;
        if crate::time::parse_occurred_at(occurred_at).is_none() {
            return Err(TraceError::new(
                "occurred_at",
                K::Invalid(
                    "must be an RFC 3339 date-time with the workstation's UTC offset, \
                     e.g. 2026-11-28T15:42:07.123+01:00",
                ),
            ));
        }

        let action_s = self.req_str(obj, "action", "", 44)?;
        let action =
            Action::parse(action_s).ok_or_else(|| TraceError::new("action", K::UnknownAction))?;

        let actor = match obj.get("actor") {
            None | Some(Value::Null) => return Err(TraceError::new("actor", K::Missing)),
            Some(v) => self.actor(v)?,
        };

        let outcome = match self.opt_str(obj, "outcome", "", 16)? {
            None => None,
            Some(s) => Some(Outcome::parse(s).ok_or_else(|| {
                TraceError::new("outcome", K::Invalid("must be \"success\" or \"failure\""))
            })?),
        };

        let request = match self.opt_str(obj, "request", "", self.limits.max_request)? {
            None => None,
            Some(s) => {
                if request_literal(s) {
                    return Err(TraceError::new("request", K::Literal));
                }
                Some(s.to_owned())
            }
        };

        let response = match obj.get("response") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.response(v)?),
        };
        let source = match obj.get("source") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.source(v)?),
        };
        let target = match obj.get("target") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.target(v)?),
        };

        Ok(Trace {
            action,
            actor,
            class,
            occurred_at: occurred_at.to_owned(),
            original: None,
            outcome,
            request,
            response,
            source,
            target,
        })
    }

    fn actor(&self, v: &Value) -> Result<Actor, TraceError> {
        let obj = object(v, "actor")?;
        only_known(obj, &["auth", "id", "id_type"], "actor")?;
        let short = self.limits.max_short;
        let id = self.req_str(obj, "id", "actor", short)?;
        if id.trim().is_empty() {
            return Err(TraceError::new("actor.id", K::Invalid("must not be empty")));
        }
        Ok(Actor {
            auth: self.opt_str(obj, "auth", "actor", 64)?.map(str::to_owned),
            id: id.to_owned(),
            id_type: self
                .opt_str(obj, "id_type", "actor", 64)?
                .map(str::to_owned),
        })
    }

    fn response(&self, v: &Value) -> Result<Response, TraceError> {
        let obj = object(v, "response")?;
        only_known(obj, &["status", "text"], "response")?;
        let status = match obj.get("status") {
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            _ => self.req_str(obj, "status", "response", 32)?.to_owned(),
        };
        let text = self.opt_str(obj, "text", "response", self.limits.max_response_text)?;
        if text.is_some_and(|t| t.contains(['\r', '\n'])) {
            return Err(TraceError::new(
                "response.text",
                K::Invalid("must be the one status line of the answer"),
            ));
        }
        Ok(Response {
            status,
            text: text.map(str::to_owned),
        })
    }

    fn source(&self, v: &Value) -> Result<Source, TraceError> {
        let obj = object(v, "source")?;
        only_known(obj, &["host", "ip", "session", "software"], "source")?;
        let short = self.limits.max_short;
        let ip = self.opt_str(obj, "ip", "source", 64)?;
        if ip.is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
            return Err(TraceError::new(
                "source.ip",
                K::Invalid("must be an IPv4 or IPv6 address"),
            ));
        }
        Ok(Source {
            host: self
                .opt_str(obj, "host", "source", short)?
                .map(str::to_owned),
            ip: ip.map(str::to_owned),
            session: self
                .opt_str(obj, "session", "source", short)?
                .map(str::to_owned),
            software: self
                .opt_str(obj, "software", "source", short)?
                .map(str::to_owned),
        })
    }

    fn target(&self, v: &Value) -> Result<Target, TraceError> {
        let obj = object(v, "target")?;
        only_known(
            obj,
            &[
                "destination",
                "document",
                "folder",
                "mailbox",
                "message_id",
                "patient",
                "recipients",
                "resource",
                "size",
                "uids",
            ],
            "target",
        )?;
        let (short, long) = (self.limits.max_short, self.limits.max_long);
        let s = |k, max| {
            self.opt_str(obj, k, "target", max)
                .map(|o| o.map(str::to_owned))
        };
        let patient = match obj.get("patient") {
            None | Some(Value::Null) => None,
            Some(v) => Some(self.patient(v)?),
        };
        let recipients = match obj.get("recipients") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                if items.len() > self.limits.max_recipients {
                    return Err(TraceError::new(
                        "target.recipients",
                        K::TooMany {
                            max: self.limits.max_recipients,
                        },
                    ));
                }
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let path = format!("target.recipients[{i}]");
                    let Value::String(r) = item else {
                        return Err(TraceError::new(path, K::WrongType("a string")));
                    };
                    check_text(r, short, &path)?;
                    out.push(r.clone());
                }
                Some(out)
            }
            Some(_) => {
                return Err(TraceError::new(
                    "target.recipients",
                    K::WrongType("an array of strings"),
                ));
            }
        };
        let size = match obj.get("size") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(n) if n < (1 << 53) => Some(n),
                _ => {
                    return Err(TraceError::new(
                        "target.size",
                        K::Invalid("must be an integer from 0 to 2^53-1"),
                    ));
                }
            },
            Some(_) => return Err(TraceError::new("target.size", K::WrongType("an integer"))),
        };
        Ok(Target {
            destination: s("destination", long)?,
            document: s("document", long)?,
            folder: s("folder", long)?,
            mailbox: s("mailbox", short)?,
            message_id: s("message_id", long)?,
            patient,
            recipients,
            resource: s("resource", long)?,
            size,
            uids: s("uids", long)?,
        })
    }

    fn patient(&self, v: &Value) -> Result<Patient, TraceError> {
        let obj = object(v, "target.patient")?;
        only_known(obj, &["id", "system"], "target.patient")?;
        let id = self.req_str(obj, "id", "target.patient", self.limits.max_short)?;
        if id.trim().is_empty() {
            return Err(TraceError::new(
                "target.patient.id",
                K::Invalid("must not be empty"),
            ));
        }
        Ok(Patient {
            id: id.to_owned(),
            system: self
                .opt_str(obj, "system", "target.patient", self.limits.max_short)?
                .map(str::to_owned),
        })
    }

    fn req_str<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        parent: &str,
        max: usize,
    ) -> Result<&'v str, TraceError> {
        match self.opt_str(obj, key, parent, max)? {
            Some(s) => Ok(s),
            None => Err(TraceError::new(join(parent, key), K::Missing)),
        }
    }

    fn opt_str<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        parent: &str,
        max: usize,
    ) -> Result<Option<&'v str>, TraceError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                check_text(s, max, &join(parent, key))?;
                Ok(Some(s))
            }
            Some(_) => Err(TraceError::new(join(parent, key), K::WrongType("a string"))),
        }
    }
}

fn check_text(s: &str, max: usize, path: &str) -> Result<(), TraceError> {
    if s.len() > max {
        return Err(TraceError::new(path, K::TooLong { max }));
    }
    if s.bytes()
        .any(|b| b < 0x20 && b != b'\r' && b != b'\n' || b == 0x7f)
    {
        return Err(TraceError::new(path, K::ControlCharacter));
    }
    Ok(())
}

fn object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, TraceError> {
    v.as_object()
        .ok_or_else(|| TraceError::new(path, K::WrongType("an object")))
}

fn only_known(obj: &Map<String, Value>, known: &[&str], parent: &str) -> Result<(), TraceError> {
    for k in obj.keys() {
        if !known.contains(&k.as_str()) {
            return Err(TraceError::new(
                join(parent, &safe_name(k)),
                K::UnknownField,
            ));
        }
    }
    Ok(())
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Value {
        json!({
            "class": "mss",
            "occurred_at": "2026-11-28T15:42:07.123+01:00",
            "actor": {"id": "810001234567", "id_type": "rpps", "auth": "psc"},
            "action": "suppression",
            "target": {"mailbox": "dr.martin@hopital.mssante.fr", "folder": "INBOX", "uids": "42"},
            "request": "UID STORE 42 +FLAGS (\\Deleted)",
            "response": {"status": "OK", "text": "Store completed"},
            "outcome": "success",
            "source": {"ip": "10.1.2.3", "software": "MonLPS 4.2", "session": "b3f1"}
        })
    }

    fn err(v: Value) -> TraceError {
        parse_trace_value(&v, &Limits::default()).expect_err("must be refused")
    }

    #[test]
    fn design_example_parses() {
        let t = parse_trace_value(&sample(), &Limits::default()).expect("valid");
        assert_eq!(t.action, Action::Suppression);
        assert_eq!(t.actor.id, "810001234567");
        assert_eq!(t.occurred_at, "2026-11-28T15:42:07.123+01:00");
    }

    #[test]
    fn content_fields_are_named_at_any_depth() {
        let mut v = sample();
        v["subject"] = json!("CANARY");
        assert_eq!(err(v).path, "subject");
        let mut v = sample();
        v["target"]["body"] = json!("CANARY");
        let e = err(v);
        assert_eq!(e.path, "target.body");
        assert_eq!(e.code(), "content_field");
        let mut v = sample();
        v["extra"] = json!([{"x": {"piece_jointe": 1}}]);
        assert_eq!(err(v).path, "extra[0].x.piece_jointe");
    }

    #[test]
    fn errors_never_quote_values() {
        let canary = "CANARY-7f3a";
        let mut cases = vec![];
        let mut v = sample();
        v["action"] = json!(canary);
        cases.push(v);
        let mut v = sample();
        v["request"] = json!(format!("A1 APPEND INBOX {{12}}\r\n{canary}"));
        cases.push(v);
        let mut v = sample();
        v[canary] = json!(1);
        cases.push(v);
        let mut v = sample();
        v["occurred_at"] = json!(canary);
        cases.push(v);
        let mut v = sample();
        v["outcome"] = json!(canary);
        cases.push(v);
        for v in cases {
            let e = err(v);
            assert!(!e.to_string().contains(canary), "{e}");
        }
    }

    #[test]
    fn precise_paths() {
        let mut v = sample();
        v["actor"]["id"] = json!(5);
        let e = err(v);
        assert_eq!((e.path.as_str(), e.code()), ("actor.id", "wrong_type"));
        let mut v = sample();
        v["request"] = json!("x".repeat(2049));
        assert_eq!(err(v).code(), "too_long");
        let mut v = sample();
        v["index"] = json!(3);
        assert_eq!(err(v).code(), "server_field");
        let mut v = sample();
        v["target"]["recipients"] = json!(["a@b", 3]);
        assert_eq!(err(v).path, "target.recipients[1]");
        let mut v = sample();
        v.as_object_mut().map(|o| o.remove("occurred_at"));
        assert_eq!(err(v).code(), "missing_field");
        let mut v = sample();
        v["action"] = json!("delete");
        let e = err(v);
        assert!(e.to_string().contains("suppression"), "{e}");
    }

    #[test]
    fn raw_size_is_bounded() {
        let big = format!("{{\"class\":\"mss\",\"pad\":\"{}\"}}", "x".repeat(20_000));
        let e = parse_trace(big.as_bytes(), &Limits::default()).expect_err("too large");
        assert_eq!(e.code(), "too_large");
        let e = parse_trace(b"{\"class\":", &Limits::default()).expect_err("eof");
        assert_eq!(e.code(), "not_json");
    }
}
