//! FHIR `OperationOutcome`: every FHIR error registre answers is one, with
//! one issue per problem found, each naming the element (`expression`, a
//! FHIRPath such as `AuditEvent.agent[0].requestor`) and the rule
//! (`diagnostics`). Diagnostics name elements and rules, never values: an
//! error must not carry content back into a log.

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity` (R4 value set `issue-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (R4 value set `issue-type`), the codes
/// registre uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    /// Content invalid against the specification or a profile.
    Invalid,
    /// A structural issue: unknown element, wrong JSON type, not JSON.
    Structure,
    /// A required element is missing.
    Required,
    /// An element's value is invalid.
    Value,
    /// A constraint (invariant) is not met.
    Invariant,
    /// The client needs to authenticate.
    Login,
    /// Authenticated, but not allowed.
    Forbidden,
    /// Content refused by registre's rules (message or clinical content).
    BusinessRule,
    /// An element or operation registre does not support.
    NotSupported,
    NotFound,
    /// An element value is longer than allowed.
    TooLong,
    /// The request is too large (entries, bytes) to process.
    TooCostly,
    Processing,
    /// The journal cannot make the request durable now; retry.
    Transient,
    Exception,
    Informational,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::BusinessRule => "business-rule",
            IssueType::NotSupported => "not-supported",
            IssueType::NotFound => "not-found",
            IssueType::TooLong => "too-long",
            IssueType::TooCostly => "too-costly",
            IssueType::Processing => "processing",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
        }
    }
}

/// One issue of an `OperationOutcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// What is wrong and what to do, naming elements, never their values.
    pub diagnostics: String,
    /// The FHIRPath of the element at fault (`AuditEvent.agent[0].who`).
    pub expression: Option<String>,
}

impl Issue {
    /// An error issue at `expression` (empty: the request as a whole).
    pub fn error(code: IssueType, expression: &str, diagnostics: impl Into<String>) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: (!expression.is_empty()).then(|| expression.to_owned()),
        }
    }

    /// This issue with its expression prefixed (an entry of a Bundle:
    /// `AuditEvent.x` → `Bundle.entry[3].resource.x`).
    pub fn within(mut self, prefix: &str) -> Issue {
        self.expression = Some(match self.expression.take() {
            None => prefix.to_owned(),
            Some(e) => match e.strip_prefix("AuditEvent") {
                Some(rest) => format!("{prefix}{rest}"),
                None => format!("{prefix}.{e}"),
            },
        });
        self
    }

    fn to_value(&self) -> Value {
        let mut v = json!({
            "severity": self.severity.as_str(),
            "code": self.code.as_str(),
            "diagnostics": self.diagnostics,
        });
        if let Some(e) = &self.expression {
            v["expression"] = json!([e]);
        }
        v
    }
}

/// An `OperationOutcome` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(issues: Vec<Issue>) -> OperationOutcome {
        OperationOutcome { issues }
    }

    /// One error issue.
    pub fn error(code: IssueType, expression: &str, diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            issues: vec![Issue::error(code, expression, diagnostics)],
        }
    }

    /// An informational outcome (a success that has something to say).
    pub fn information(diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            issues: vec![Issue {
                severity: Severity::Information,
                code: IssueType::Informational,
                diagnostics: diagnostics.into(),
                expression: None,
            }],
        }
    }

    /// The first issue's code (the one an HTTP status is chosen from).
    pub fn code(&self) -> Option<IssueType> {
        self.issues.first().map(|i| i.code)
    }

    /// The resource as FHIR JSON. An outcome always has at least one issue
    /// (R4: `issue` 1..*).
    pub fn to_value(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            vec![
                Issue::error(
                    IssueType::Exception,
                    "",
                    "unspecified error (no issue recorded)",
                )
                .to_value(),
            ]
        } else {
            self.issues.iter().map(Issue::to_value).collect()
        };
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_and_prefixes() {
        let o = OperationOutcome::error(
            IssueType::Structure,
            "AuditEvent.agent[0].foo",
            "unknown element",
        );
        assert_eq!(
            o.to_value(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "structure", "diagnostics": "unknown element",
                "expression": ["AuditEvent.agent[0].foo"]}]})
        );
        let i = o.issues[0].clone().within("Bundle.entry[2].resource");
        assert_eq!(
            i.expression.as_deref(),
            Some("Bundle.entry[2].resource.agent[0].foo")
        );
        let i = Issue::error(IssueType::Required, "", "x").within("Bundle.entry[1]");
        assert_eq!(i.expression.as_deref(), Some("Bundle.entry[1]"));
        assert_eq!(
            OperationOutcome::default().to_value()["issue"][0]["code"],
            "exception"
        );
    }
}
