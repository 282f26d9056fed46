"""Validates registre's FHIR answers against FHIR R4 (4.0.1), independently
of registre's code: with the `fhir.resources` package at its R4 release
(6.1.0; 6.2 and later are R4B or R5), which checks every element name,
cardinality, type and primitive format (ids, instants, uris…), nested
resources included. On top, the required value-set bindings the package
does not check (codes of OperationOutcome, AuditEvent, Bundle and
CapabilityStatement).

Usage: python fhir_validate.py DIR — validates every DIR/*.json, prints one
line per file, exits 1 if any is invalid. Run by tests/fhir_validate.rs.
"""

import json
import pathlib
import sys

import fhir.resources
from fhir.resources import get_fhir_model_class

ISSUE_SEVERITY = {"fatal", "error", "warning", "information"}
ISSUE_TYPE = {
    "invalid", "structure", "required", "value", "invariant", "security", "login",
    "unknown", "expired", "forbidden", "suppressed", "processing", "not-supported",
    "duplicate", "multiple-matches", "not-found", "deleted", "too-long", "code-invalid",
    "extension", "too-costly", "business-rule", "conflict", "transient", "lock-error",
    "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
}
BUNDLE_TYPE = {
    "document", "message", "transaction", "transaction-response", "batch",
    "batch-response", "history", "searchset", "collection",
}
SEARCH_MODE = {"match", "include", "outcome"}
AUDIT_ACTION = {"C", "R", "U", "D", "E"}
AUDIT_OUTCOME = {"0", "4", "8", "12"}
NETWORK_TYPE = {"1", "2", "3", "4", "5"}
PUBLICATION_STATUS = {"draft", "active", "retired", "unknown"}
CAPABILITY_KIND = {"instance", "capability", "requirements"}
RESTFUL_MODE = {"client", "server"}
TYPE_INTERACTION = {
    "read", "vread", "update", "patch", "delete", "history-instance", "history-type",
    "create", "search-type",
}
SYSTEM_INTERACTION = {"transaction", "batch", "search-system", "history-system"}
SEARCH_PARAM_TYPE = {
    "number", "date", "string", "token", "reference", "composite", "quantity", "uri",
    "special",
}
VERSIONING = {"no-version", "versioned", "versioned-update"}
CONDITIONAL_READ = {"not-supported", "modified-since", "not-match", "full-support"}
CONDITIONAL_DELETE = {"not-supported", "single", "multiple"}
FORMATS = {"json", "xml", "ttl", "application/fhir+json", "application/fhir+xml"}


def bindings(res, where, errors):
    """The required bindings of the resources registre answers."""
    rt = res.get("resourceType")

    def check(value, allowed, path):
        if value is not None and value not in allowed:
            errors.append(f"{where}{path}: {value!r} is not in the required value set")

    if rt == "OperationOutcome":
        for i, issue in enumerate(res.get("issue", [])):
            check(issue.get("severity"), ISSUE_SEVERITY, f".issue[{i}].severity")
            check(issue.get("code"), ISSUE_TYPE, f".issue[{i}].code")
    elif rt == "AuditEvent":
        check(res.get("action"), AUDIT_ACTION, ".action")
        check(res.get("outcome"), AUDIT_OUTCOME, ".outcome")
        for i, agent in enumerate(res.get("agent", [])):
            check(agent.get("network", {}).get("type"), NETWORK_TYPE, f".agent[{i}].network.type")
    elif rt == "Bundle":
        check(res.get("type"), BUNDLE_TYPE, ".type")
        for i, entry in enumerate(res.get("entry", [])):
            check(entry.get("search", {}).get("mode"), SEARCH_MODE, f".entry[{i}].search.mode")
            if "resource" in entry:
                bindings(entry["resource"], f"{where}.entry[{i}].resource", errors)
            outcome = entry.get("response", {}).get("outcome")
            if outcome is not None:
                bindings(outcome, f"{where}.entry[{i}].response.outcome", errors)
            status = entry.get("response", {}).get("status")
            if status is not None and not status[:3].isdigit():
                errors.append(f"{where}.entry[{i}].response.status: not an HTTP status")
    elif rt == "CapabilityStatement":
        check(res.get("status"), PUBLICATION_STATUS, ".status")
        check(res.get("kind"), CAPABILITY_KIND, ".kind")
        if res.get("fhirVersion") != "4.0.1":
            errors.append(f"{where}.fhirVersion: not 4.0.1")
        for f in res.get("format", []):
            check(f, FORMATS, ".format")
        for r, rest in enumerate(res.get("rest", [])):
            check(rest.get("mode"), RESTFUL_MODE, f".rest[{r}].mode")
            for i, inter in enumerate(rest.get("interaction", [])):
                check(inter.get("code"), SYSTEM_INTERACTION, f".rest[{r}].interaction[{i}].code")
            for k, resource in enumerate(rest.get("resource", [])):
                at = f".rest[{r}].resource[{k}]"
                check(resource.get("versioning"), VERSIONING, f"{at}.versioning")
                check(resource.get("conditionalRead"), CONDITIONAL_READ, f"{at}.conditionalRead")
                check(resource.get("conditionalDelete"), CONDITIONAL_DELETE, f"{at}.conditionalDelete")
                for i, inter in enumerate(resource.get("interaction", [])):
                    check(inter.get("code"), TYPE_INTERACTION, f"{at}.interaction[{i}].code")
                for i, p in enumerate(resource.get("searchParam", [])):
                    check(p.get("type"), SEARCH_PARAM_TYPE, f"{at}.searchParam[{i}].type")


def main():
    if fhir.resources.__fhir_version__ != "4.0.1":
        print(f"fhir.resources {fhir.resources.__version__} is FHIR "
              f"{fhir.resources.__fhir_version__}, not R4 (4.0.1)")
        return 2
    files = sorted(pathlib.Path(sys.argv[1]).glob("*.json"))
    if not files:
        print("no file to validate")
        return 2
    bad = 0
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        errors = []
        try:
            cls = get_fhir_model_class(data.get("resourceType"))
            cls.parse_obj(data)
        except Exception as e:  # the validation error, whatever its class
            errors.append(" | ".join(str(e).splitlines()))
        bindings(data, data.get("resourceType", "?"), errors)
        if errors:
            bad += 1
            print(f"INVALID {f.name}: " + "; ".join(errors))
        else:
            print(f"valid   {f.name} ({data['resourceType']})")
    print(f"fhir_validate: {len(files) - bad} valid, {bad} invalid")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
