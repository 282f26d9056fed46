//! ITI-81 "Retrieve ATNA Audit Event": the AuditEvent search parameters,
//! parsed strictly, matched on the AuditEvent a trace reads as.
//!
//! | parameter | type | on |
//! |---|---|---|
//! | `date` | date | `recorded` |
//! | `period-start` (alias `TDE_AuditEvent_period-start`) | date | `period.start` (ANS TDE) |
//! | `action`, `outcome` | token | `action`, `outcome` |
//! | `type`, `subtype` | token | `type`, `subtype` (Coding) |
//! | `entity-type`, `entity-role` | token | `entity.type`, `entity.role` |
//! | `agent-role` | token | `agent.role` |
//! | `altid`, `site` | token | `agent.altId`, `source.site` |
//! | `agent`, `entity`, `source` | reference | `agent.who`, `entity.what`, `source.observer` |
//! | `patient` | reference | `agent.who`, `entity.what` that are Patients |
//! | `patient.identifier` | token | the patient entities' `what.identifier` |
//! | `agent-name`, `entity-name`, `address` | string | `agent.name`, `entity.name`, `agent.network.address` |
//! | `policy` | uri | `agent.policy` |
//!
//! Repeating a parameter ANDs it, commas inside a value OR them. Token
//! values are `code`, `system|code`, `|code` or `system|`; the `:not`
//! modifier is supported. Strings match case- and accent-insensitively from
//! the start, or with `:exact` / `:contains`. References match `Type/id`,
//! a bare `id` or an absolute URL ending so, or with `:identifier` the
//! reference's identifier as a token. Dates take the prefixes `eq`, `ne`,
//! `gt`, `lt`, `ge`, `le`, `sa`, `eb`; a value without a time zone is read in
//! the server's. Result parameters: `_count` (default 50, at most 1000; more
//! is cut to 1000), `_sort=-date` (the only order: newest first),
//! `_format` (JSON only), `_pretty` (ignored), and `_cursor` (the opaque
//! paging token of a `next` link).
//!
//! Strict: an unknown parameter, modifier or prefix is refused with an
//! OperationOutcome naming it, rather than silently ignored (a search that
//! ignored a filter would return more than asked: for an audit log, a leak).
//! `date` (or `period-start`) is required with at least one bound, as ITI-81
//! requires.

use jiff::tz::TimeZone;
use serde_json::Value;

use super::date::{self, Range};
use super::outcome::{IssueType as T, OperationOutcome};
use super::to_trace::{is_patient_entity, is_patient_reference};

/// Default and largest page (`_count`).
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 1000;

/// The search parameters registre supports, for the CapabilityStatement:
/// (name, type, definition canonical, documentation).
pub const PARAMETERS: &[(&str, &str, &str)] = &[
    (
        "date",
        "date",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-date",
    ),
    ("period-start", "date", TDE_PERIOD_START),
    ("TDE_AuditEvent_period-start", "date", TDE_PERIOD_START),
    (
        "action",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-action",
    ),
    (
        "outcome",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-outcome",
    ),
    (
        "type",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-type",
    ),
    (
        "subtype",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-subtype",
    ),
    (
        "entity-type",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-entity-type",
    ),
    (
        "entity-role",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-entity-role",
    ),
    (
        "agent-role",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-agent-role",
    ),
    (
        "altid",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-altid",
    ),
    (
        "site",
        "token",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-site",
    ),
    (
        "agent",
        "reference",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-agent",
    ),
    (
        "entity",
        "reference",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-entity",
    ),
    (
        "source",
        "reference",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-source",
    ),
    (
        "patient",
        "reference",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-patient",
    ),
    (
        "agent-name",
        "string",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-agent-name",
    ),
    (
        "entity-name",
        "string",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-entity-name",
    ),
    (
        "address",
        "string",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-address",
    ),
    (
        "policy",
        "uri",
        "http://hl7.org/fhir/SearchParameter/AuditEvent-policy",
    ),
];

/// The TDE `period-start` search parameter.
pub const TDE_PERIOD_START: &str =
    "https://interop.esante.gouv.fr/ig/fhir/tde/SearchParameter/TDE-AuditEvent-period-start";

/// A parsed ITI-81 search.
#[derive(Debug, Clone)]
pub struct Search {
    /// ANDed; each an OR of tests.
    filters: Vec<Vec<Test>>,
    pub count: usize,
    /// The `_cursor` of a next link, as given.
    pub cursor: Option<String>,
    /// The query without `_cursor`, for the `self`/`next` links.
    pub link_query: String,
    /// Bounds on `recorded` (or `period.start`), microseconds: `[lower, upper)`.
    pub lower: Option<i64>,
    pub upper: Option<i64>,
}

#[derive(Debug, Clone)]
enum Test {
    Date {
        on: DateOn,
        prefix: Prefix,
        range: Range,
    },
    Token {
        on: TokenOn,
        token: Token,
        not: bool,
    },
    Str {
        on: StrOn,
        value: String,
        mode: StrMode,
    },
    Ref {
        on: RefOn,
        value: String,
    },
    RefIdentifier {
        on: RefOn,
        token: Token,
    },
    Uri {
        value: String,
    },
}

#[derive(Debug, Clone, Copy)]
enum DateOn {
    Recorded,
    PeriodStart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
}

#[derive(Debug, Clone, Copy)]
enum TokenOn {
    Action,
    Outcome,
    Type,
    Subtype,
    EntityType,
    EntityRole,
    AgentRole,
    AltId,
    Site,
    PatientIdentifier,
}

#[derive(Debug, Clone, Copy)]
enum StrOn {
    AgentName,
    EntityName,
    Address,
}

#[derive(Debug, Clone, Copy)]
enum StrMode {
    Start,
    Exact,
    Contains,
}

#[derive(Debug, Clone, Copy)]
enum RefOn {
    Agent,
    Entity,
    Source,
    Patient,
}

/// `system|code`: `None` system = any; `Some(None)` = no system (`|code`).
#[derive(Debug, Clone)]
struct Token {
    system: Option<Option<String>>,
    code: Option<String>,
}

impl Search {
    /// Parses a raw (URL-encoded) query string. `tz` reads dates given
    /// without a time zone.
    pub fn parse(raw: &str, tz: &TimeZone) -> Result<Search, OperationOutcome> {
        let mut s = Search {
            filters: Vec::new(),
            count: DEFAULT_COUNT,
            cursor: None,
            link_query: String::new(),
            lower: None,
            upper: None,
        };
        let mut links = form_urlencoded::Serializer::new(String::new());
        let mut seen_result: Vec<String> = Vec::new();
        let mut dated = false;
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if k != "_cursor" {
                links.append_pair(&k, &v);
            }
            if v.len() > 2048 || k.len() > 64 {
                return Err(bad(T::TooLong, "a search parameter is too long"));
            }
            let (name, modifier) = match k.split_once(':') {
                Some((n, m)) => (n, Some(m)),
                None => (k.as_ref(), None),
            };
            if name.starts_with('_') {
                if modifier.is_some() || seen_result.iter().any(|x| x == name) {
                    return Err(bad(
                        T::Invalid,
                        &format!("`{}` is given twice or with a modifier", printable(name)),
                    ));
                }
                seen_result.push(name.to_owned());
                s.result_parameter(name, &v)?;
                continue;
            }
            let alternatives: Vec<&str> = split_or(&v);
            if alternatives.iter().any(|a| a.is_empty()) {
                return Err(bad(
                    T::Value,
                    &format!("`{}` has an empty value", printable(name)),
                ));
            }
            let mut tests = Vec::with_capacity(alternatives.len());
            for a in alternatives {
                tests.push(test(name, modifier, &unescape(a), tz)?);
            }
            if matches!(
                name,
                "date" | "period-start" | "TDE_AuditEvent_period-start"
            ) {
                dated |= s.bound(&tests);
            }
            s.filters.push(tests);
        }
        if !dated {
            return Err(OperationOutcome::error(
                T::Required,
                "date",
                "`date` is required with at least one bound (ITI-81), e.g. \
                 date=ge2026-01-01&date=le2026-01-31 (or the TDE `period-start`)",
            ));
        }
        s.link_query = links.finish();
        Ok(s)
    }

    fn result_parameter(&mut self, name: &str, v: &str) -> Result<(), OperationOutcome> {
        match name {
            "_count" => {
                let n: usize = v
                    .parse()
                    .map_err(|_| bad(T::Value, "`_count` must be a positive integer"))?;
                if n == 0 {
                    return Err(bad(
                        T::NotSupported,
                        "`_count=0` (a count without results) is not supported",
                    ));
                }
                self.count = n.min(MAX_COUNT);
            }
            "_sort" => {
                if v != "-date" {
                    return Err(bad(
                        T::NotSupported,
                        "`_sort` supports `-date` only (newest first, the journal's order)",
                    ));
                }
            }
            "_format" => {
                if !matches!(
                    v,
                    "json" | "application/json" | "application/fhir+json" | "fhir+json"
                ) {
                    return Err(bad(
                        T::NotSupported,
                        "registre answers FHIR JSON only (`_format=json`)",
                    ));
                }
            }
            "_pretty" => {}
            "_cursor" => self.cursor = Some(v.to_owned()),
            _ => {
                return Err(bad(
                    T::NotSupported,
                    &format!(
                        "unknown or unsupported result parameter `{}`; supported: _count, \
                         _sort=-date, _format, _pretty",
                        printable(name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Folds a date parameter into the bounds; whether it gave one.
    fn bound(&mut self, tests: &[Test]) -> bool {
        let mut lower: Option<i64> = None;
        let mut upper: Option<i64> = None;
        let mut all_lower = true;
        let mut all_upper = true;
        for t in tests {
            let Test::Date { prefix, range, .. } = t else {
                return false;
            };
            let (lo, hi) = match prefix {
                Prefix::Eq => (Some(range.start), Some(range.end)),
                Prefix::Ge => (Some(range.start), None),
                Prefix::Gt | Prefix::Sa => (Some(range.end), None),
                Prefix::Le => (None, Some(range.end)),
                Prefix::Lt | Prefix::Eb => (None, Some(range.start)),
                Prefix::Ne => (None, None),
            };
            match lo {
                Some(l) => lower = Some(lower.map_or(l, |x| x.min(l))),
                None => all_lower = false,
            }
            match hi {
                Some(h) => upper = Some(upper.map_or(h, |x| x.max(h))),
                None => all_upper = false,
            }
        }
        let mut got = false;
        if all_lower && let Some(l) = lower {
            self.lower = Some(self.lower.map_or(l, |x| x.max(l)));
            got = true;
        }
        if all_upper && let Some(h) = upper {
            self.upper = Some(self.upper.map_or(h, |x| x.min(h)));
            got = true;
        }
        got
    }

    /// The patient identifier value every match must have, when the search
    /// names exactly one (the store indexes the trace's patient by it).
    pub fn patient_identifier(&self) -> Option<&str> {
        self.filters.iter().find_map(|f| match f.as_slice() {
            [
                Test::Token {
                    on: TokenOn::PatientIdentifier,
                    token:
                        Token {
                            code: Some(code), ..
                        },
                    not: false,
                },
            ] => Some(code.as_str()),
            _ => None,
        })
    }

    /// Whether an AuditEvent matches every filter.
    pub fn matches(&self, ev: &Value) -> bool {
        self.filters
            .iter()
            .all(|alternatives| alternatives.iter().any(|t| t.matches(ev)))
    }
}

fn bad(code: T, diagnostics: &str) -> OperationOutcome {
    OperationOutcome::error(code, "", diagnostics)
}

/// A parameter name echoed only when it looks like one.
fn printable(name: &str) -> &str {
    super::validate::safe_param(name)
}

/// Splits on commas not escaped by a backslash.
fn split_or(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b',' => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&v[start..]);
    out
}

/// Removes the search escapes (`\,`, `\|`, `\$`, `\\`).
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(n) = chars.next()
        {
            out.push(n);
            continue;
        }
        out.push(c);
    }
    out
}

fn test(
    name: &str,
    modifier: Option<&str>,
    v: &str,
    tz: &TimeZone,
) -> Result<Test, OperationOutcome> {
    let no_modifier = |t: Test| -> Result<Test, OperationOutcome> {
        match modifier {
            None => Ok(t),
            Some(m) => Err(unsupported_modifier(name, m)),
        }
    };
    let token_on = match name {
        "action" => Some(TokenOn::Action),
        "outcome" => Some(TokenOn::Outcome),
        "type" => Some(TokenOn::Type),
        "subtype" => Some(TokenOn::Subtype),
        "entity-type" => Some(TokenOn::EntityType),
        "entity-role" => Some(TokenOn::EntityRole),
        "agent-role" => Some(TokenOn::AgentRole),
        "altid" => Some(TokenOn::AltId),
        "site" => Some(TokenOn::Site),
        "patient.identifier" => Some(TokenOn::PatientIdentifier),
        _ => None,
    };
    if let Some(on) = token_on {
        let not = match modifier {
            None => false,
            Some("not") => true,
            Some(m) => return Err(unsupported_modifier(name, m)),
        };
        return Ok(Test::Token {
            on,
            token: token(v),
            not,
        });
    }
    let ref_on = match name {
        "agent" => Some(RefOn::Agent),
        "entity" => Some(RefOn::Entity),
        "source" => Some(RefOn::Source),
        "patient" => Some(RefOn::Patient),
        _ => None,
    };
    if let Some(on) = ref_on {
        return match modifier {
            None => Ok(Test::Ref {
                on,
                value: v.to_owned(),
            }),
            Some("identifier") => Ok(Test::RefIdentifier {
                on,
                token: token(v),
            }),
            Some(m) => Err(unsupported_modifier(name, m)),
        };
    }
    let str_on = match name {
        "agent-name" => Some(StrOn::AgentName),
        "entity-name" => Some(StrOn::EntityName),
        "address" => Some(StrOn::Address),
        _ => None,
    };
    if let Some(on) = str_on {
        let mode = match modifier {
            None => StrMode::Start,
            Some("exact") => StrMode::Exact,
            Some("contains") => StrMode::Contains,
            Some(m) => return Err(unsupported_modifier(name, m)),
        };
        let value = match mode {
            StrMode::Exact => v.to_owned(),
            _ => fold(v),
        };
        return Ok(Test::Str { on, value, mode });
    }
    match name {
        "date" | "period-start" | "TDE_AuditEvent_period-start" => {
            let on = if name == "date" {
                DateOn::Recorded
            } else {
                DateOn::PeriodStart
            };
            let (prefix, rest) = match v.get(..2) {
                Some(p) if v.as_bytes()[..2].iter().all(u8::is_ascii_alphabetic) => {
                    let prefix = match p {
                        "eq" => Prefix::Eq,
                        "ne" => Prefix::Ne,
                        "gt" => Prefix::Gt,
                        "lt" => Prefix::Lt,
                        "ge" => Prefix::Ge,
                        "le" => Prefix::Le,
                        "sa" => Prefix::Sa,
                        "eb" => Prefix::Eb,
                        "ap" => {
                            return Err(bad(
                                T::NotSupported,
                                &format!(
                                    "`{name}`: the prefix ap (approximately) is not supported; use \
                                     eq, ne, gt, lt, ge, le, sa or eb"
                                ),
                            ));
                        }
                        _ => {
                            return Err(bad(
                                T::Value,
                                &format!(
                                    "`{name}` must be a date or date-time with an optional prefix \
                                     (eq, ne, gt, lt, ge, le, sa, eb), e.g. ge2026-01-01"
                                ),
                            ));
                        }
                    };
                    (prefix, &v[2..])
                }
                _ => (Prefix::Eq, v),
            };
            let range = date::search_value(rest, tz).ok_or_else(|| {
                bad(
                    T::Value,
                    &format!(
                        "`{name}` must be a date or date-time with an optional prefix, e.g. \
                         ge2026-01-01 or le2026-01-31T23:59:59+01:00"
                    ),
                )
            })?;
            no_modifier(Test::Date { on, prefix, range })
        }
        "policy" => no_modifier(Test::Uri {
            value: v.to_owned(),
        }),
        _ => Err(bad(
            T::NotSupported,
            &format!(
                "unknown search parameter `{}`; AuditEvent supports: {}",
                printable(name),
                PARAMETERS
                    .iter()
                    .map(|p| p.0)
                    .chain(["patient.identifier"])
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

fn unsupported_modifier(name: &str, m: &str) -> OperationOutcome {
    bad(
        T::NotSupported,
        &format!(
            "`{}:{}`: unsupported modifier (supported: `:not` on tokens, `:exact` and \
             `:contains` on strings, `:identifier` on references)",
            printable(name),
            printable(m)
        ),
    )
}

fn token(v: &str) -> Token {
    match v.split_once('|') {
        None => Token {
            system: None,
            code: Some(v.to_owned()),
        },
        Some((s, c)) => Token {
            system: Some((!s.is_empty()).then(|| s.to_owned())),
            code: (!c.is_empty()).then(|| c.to_owned()),
        },
    }
}

/// Lowercase, accents removed: FHIR string matching.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'á' | 'À' | 'Â' | 'Ä' | 'Á' => 'a',
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'e',
            'î' | 'ï' | 'í' | 'Î' | 'Ï' | 'Í' => 'i',
            'ô' | 'ö' | 'ó' | 'Ô' | 'Ö' | 'Ó' => 'o',
            'ù' | 'û' | 'ü' | 'ú' | 'Ù' | 'Û' | 'Ü' | 'Ú' => 'u',
            'ç' | 'Ç' => 'c',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

fn items(v: Option<&Value>) -> &[Value] {
    match v {
        Some(Value::Array(a)) => a,
        Some(one) => std::slice::from_ref(one),
        None => &[],
    }
}

fn str_of<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
    v.get(k).and_then(Value::as_str)
}

impl Token {
    fn matches_coding(&self, c: &Value) -> bool {
        let system = str_of(c, "system");
        let code = str_of(c, "code");
        let system_ok = match &self.system {
            None => true,
            Some(None) => system.is_none(),
            Some(Some(s)) => system == Some(s.as_str()),
        };
        system_ok && self.code.as_deref().is_none_or(|want| code == Some(want))
    }

    fn matches_concept(&self, cc: &Value) -> bool {
        items(cc.get("coding"))
            .iter()
            .any(|c| self.matches_coding(c))
    }

    fn matches_identifier(&self, id: &Value) -> bool {
        let system = str_of(id, "system");
        let value = str_of(id, "value");
        let system_ok = match &self.system {
            None => true,
            Some(None) => system.is_none(),
            Some(Some(s)) => system == Some(s.as_str()),
        };
        system_ok && self.code.as_deref().is_none_or(|want| value == Some(want))
    }

    /// A plain code or string element: the code part only.
    fn matches_code(&self, v: Option<&str>) -> bool {
        match (&self.code, v) {
            (Some(want), Some(have)) => want == have,
            _ => false,
        }
    }
}

fn reference_matches(r: &Value, want: &str) -> bool {
    let Some(have) = str_of(r, "reference") else {
        return false;
    };
    if have == want {
        return true;
    }
    let tail = |s: &str| -> String { format!("/{s}") };
    if want.contains('/') {
        // `Type/id` against an absolute URL, or an absolute URL against `Type/id`.
        have.ends_with(&tail(want)) || want.ends_with(&tail(have))
    } else {
        have.ends_with(&tail(want))
    }
}

impl Test {
    fn matches(&self, ev: &Value) -> bool {
        match self {
            Test::Date { on, prefix, range } => {
                let target = match on {
                    DateOn::Recorded => str_of(ev, "recorded")
                        .and_then(date::instant)
                        .map(|t| Range::point(t.as_microsecond())),
                    DateOn::PeriodStart => ev
                        .get("period")
                        .and_then(|p| str_of(p, "start"))
                        .and_then(date::date_time),
                };
                target.is_some_and(|t| date_matches(*prefix, range, &t))
            }
            Test::Token { on, token, not } => {
                let agents = items(ev.get("agent"));
                let entities = items(ev.get("entity"));
                let found = match on {
                    TokenOn::Action => token.matches_code(str_of(ev, "action")),
                    TokenOn::Outcome => token.matches_code(str_of(ev, "outcome")),
                    TokenOn::Type => ev.get("type").is_some_and(|c| token.matches_coding(c)),
                    TokenOn::Subtype => items(ev.get("subtype"))
                        .iter()
                        .any(|c| token.matches_coding(c)),
                    TokenOn::EntityType => entities
                        .iter()
                        .filter_map(|e| e.get("type"))
                        .any(|c| token.matches_coding(c)),
                    TokenOn::EntityRole => entities
                        .iter()
                        .filter_map(|e| e.get("role"))
                        .any(|c| token.matches_coding(c)),
                    TokenOn::AgentRole => agents
                        .iter()
                        .flat_map(|a| items(a.get("role")))
                        .any(|cc| token.matches_concept(cc)),
                    TokenOn::AltId => agents
                        .iter()
                        .any(|a| token.matches_code(str_of(a, "altId"))),
                    TokenOn::Site => {
                        token.matches_code(ev.get("source").and_then(|s| str_of(s, "site")))
                    }
                    TokenOn::PatientIdentifier => entities
                        .iter()
                        .filter(|e| is_patient_entity(e))
                        .filter_map(|e| e.get("what")?.get("identifier"))
                        .any(|id| token.matches_identifier(id)),
                };
                found != *not
            }
            Test::Str { on, value, mode } => {
                let agents = items(ev.get("agent"));
                let candidates: Vec<&str> = match on {
                    StrOn::AgentName => agents.iter().filter_map(|a| str_of(a, "name")).collect(),
                    StrOn::EntityName => items(ev.get("entity"))
                        .iter()
                        .filter_map(|e| str_of(e, "name"))
                        .collect(),
                    StrOn::Address => agents
                        .iter()
                        .filter_map(|a| a.get("network").and_then(|n| str_of(n, "address")))
                        .collect(),
                };
                candidates.iter().any(|c| match mode {
                    StrMode::Exact => c == value,
                    StrMode::Start => fold(c).starts_with(value.as_str()),
                    StrMode::Contains => fold(c).contains(value.as_str()),
                })
            }
            Test::Ref { on, value } => references(ev, *on).any(|r| reference_matches(r, value)),
            Test::RefIdentifier { on, token } => references(ev, *on)
                .filter_map(|r| r.get("identifier"))
                .any(|id| token.matches_identifier(id)),
            Test::Uri { value } => items(ev.get("agent"))
                .iter()
                .flat_map(|a| items(a.get("policy")))
                .any(|p| p.as_str() == Some(value.as_str())),
        }
    }
}

/// The references a reference parameter looks at.
fn references(ev: &Value, on: RefOn) -> Box<dyn Iterator<Item = &Value> + '_> {
    let who = items(ev.get("agent")).iter().filter_map(|a| a.get("who"));
    let what = items(ev.get("entity")).iter().filter_map(|e| e.get("what"));
    match on {
        RefOn::Agent => Box::new(who),
        RefOn::Entity => Box::new(what),
        RefOn::Source => Box::new(ev.get("source").and_then(|s| s.get("observer")).into_iter()),
        RefOn::Patient => Box::new(who.chain(what).filter(|r| is_patient_reference(r))),
    }
}

/// FHIR R4 date comparison of a target range against a parameter range.
fn date_matches(prefix: Prefix, p: &Range, t: &Range) -> bool {
    let eq = p.start <= t.start && t.end <= p.end;
    match prefix {
        Prefix::Eq => eq,
        Prefix::Ne => !eq,
        Prefix::Gt => t.end > p.end,
        Prefix::Lt => t.start < p.start,
        Prefix::Ge => t.end > p.start,
        Prefix::Le => t.start < p.end,
        Prefix::Sa => t.start >= p.end,
        Prefix::Eb => t.end <= p.start,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ev() -> Value {
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "action": "R",
            "outcome": "0",
            "period": {"start": "2026-01-07T09:30:00Z"},
            "recorded": "2026-01-07T10:32:15+01:00",
            "agent": [
                {"who": {"reference": "Practitioner/p1", "identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810001234567"}},
                 "name": "Dr Émile Martin", "altId": "emartin", "requestor": true,
                 "role": [{"coding": [{"system": "http://x/roles", "code": "doc"}]}],
                 "network": {"address": "10.1.2.3", "type": "2"}, "policy": ["urn:policy:1"]}
            ],
            "source": {"site": "hopital-nord", "observer": {"reference": "Device/lps"}},
            "entity": [
                {"what": {"reference": "Patient/42", "identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "2840756123456"}},
                 "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                 "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
                 "name": "Dossier"}
            ]
        })
    }

    fn run(q: &str) -> Result<bool, OperationOutcome> {
        let s = Search::parse(q, &TimeZone::UTC)?;
        Ok(s.matches(&ev()))
    }

    #[test]
    fn every_parameter_matches_and_misses() {
        let base = "date=ge2026-01-01";
        for (p, hit, miss) in [
            ("date", "eq2026-01-07", "gt2026-01-07"),
            ("date", "le2026-01-07T09:32:15Z", "lt2026-01-07T09:32:15Z"),
            (
                "period-start",
                "ge2026-01-07T09:30:00Z",
                "gt2026-01-07T09:30:00Z",
            ),
            (
                "TDE_AuditEvent_period-start",
                "eq2026-01-07",
                "eq2026-01-08",
            ),
            ("action", "R", "C"),
            ("outcome", "0", "8"),
            (
                "type",
                "http://terminology.hl7.org/CodeSystem/audit-event-type|rest",
                "|rest",
            ),
            ("subtype", "read", "http://x|read"),
            ("entity-type", "1", "2"),
            (
                "entity-role",
                "http://terminology.hl7.org/CodeSystem/object-role|1",
                "4",
            ),
            ("agent-role", "http://x/roles|doc", "nurse"),
            ("altid", "emartin", "other"),
            ("site", "hopital-nord", "hopital-sud"),
            ("agent", "Practitioner/p1", "Practitioner/p2"),
            ("agent", "p1", "p2"),
            (
                "agent:identifier",
                "urn:oid:1.2.250.1.71.4.2.1|810001234567",
                "|810001234567",
            ),
            ("entity", "Patient/42", "Patient/43"),
            ("source", "http://srv/fhir/Device/lps", "Device/other"),
            ("patient", "42", "43"),
            (
                "patient.identifier",
                "urn:oid:1.2.250.1.213.1.4.8|2840756123456",
                "x|2840756123456",
            ),
            ("agent-name", "dr%20emile", "martin"),
            ("agent-name:contains", "MARTIN", "durand"),
            (
                "agent-name:exact",
                "Dr%20%C3%89mile%20Martin",
                "dr%20émile%20martin",
            ),
            ("entity-name", "doss", "x"),
            ("address", "10.1", "10.2"),
            ("policy", "urn:policy:1", "urn:policy"),
            ("action:not", "C", "R"),
            ("outcome", "4,0", "4,8"),
        ] {
            assert_eq!(
                run(&format!("{base}&{p}={hit}")).ok(),
                Some(true),
                "{p}={hit}"
            );
            assert_eq!(
                run(&format!("{base}&{p}={miss}")).ok(),
                Some(false),
                "{p}={miss}"
            );
        }
    }

    #[test]
    fn strict_errors() {
        for q in [
            "",
            "action=R",
            "date=ne2026-01-01",
            "date=2026-13-01",
            "date=ap2026-01-01",
            "date=ge2026-01-01&bogus=1",
            "date=ge2026-01-01&action:missing=true",
            "date=ge2026-01-01&_sort=date",
            "date=ge2026-01-01&_count=0",
            "date=ge2026-01-01&_count=x",
            "date=ge2026-01-01&_format=xml",
            "date=ge2026-01-01&_count=1&_count=2",
            "date=ge2026-01-01&_include=AuditEvent:agent",
            "date=ge2026-01-01&action=",
        ] {
            assert!(run(q).is_err(), "{q}");
        }
        let s = Search::parse(
            "date=ge2026-01-01&date=lt2026-02-01&_count=5000&_cursor=abc&_sort=-date",
            &TimeZone::UTC,
        )
        .expect("valid");
        assert_eq!(s.count, MAX_COUNT);
        assert_eq!(s.cursor.as_deref(), Some("abc"));
        assert!(!s.link_query.contains("_cursor"));
        assert!(s.lower.is_some() && s.upper.is_some() && s.lower < s.upper);
    }
}
