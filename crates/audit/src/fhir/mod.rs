//! FHIR R4 (4.0.1) AuditEvent ⇄ registre trace, as the IHE RESTful ATNA
//! profile (ITI-20 FHIR Feed, ITI-81) and the ANS CI-SIS guide
//! "Traçabilité d'évènements" (TDE, gestionnaire de traces) use it.
//!
//! - [`to_trace`]: a posted AuditEvent → a trace (after [`check_audit_event`]:
//!   R4 structure, registre's content guard), keeping the resource as posted
//!   in `original` (`fhir+json`, RFC 8785 form, at most 16 KiB).
//! - [`audit_event`]: a stored trace → the AuditEvent a reader gets.
//! - [`Search`]: the ITI-81 search parameters; [`parse_bundle`],
//!   [`response_bundle`], [`searchset`]: Bundles in and out;
//!   [`capability_statement`]; [`OperationOutcome`].
//!
//! # AuditEvent → trace
//!
//! | trace | AuditEvent |
//! |---|---|
//! | `occurred_at` | `recorded`, kept as sent (a FHIR instant always has its time zone) |
//! | `actor.id` | the first agent with `requestor = true`: `who.identifier.value`, else `altId`, else `who.display`, else `who.reference` |
//! | `actor.id_type` | from `who.identifier.system`: `urn:oid:1.2.250.1.71.4.2.1` (IdNatPS) → `rpps` (value starting with 8), `adeli` (0), else `idnatps`; `urn:registre:id-type:<t>` → `<t>` |
//! | `actor.auth` | set by the server from the caller's credential (not a trusted proxy) |
//! | `action` | `type`, `subtype`, `action` through [`crate::mapping::action_of`] (BALP `rest` + `read`/`create`/`update`/`delete`/`search…`, DICOM event ids; unknown events become `x-…` actions) |
//! | `class` | [`crate::mapping::class_of`]: DICOM application activity, security alert, audit log used, network entry → `technique`; the rest → `applicative` |
//! | `target.patient` | the first entity whose `what.identifier.system` is an INS (`urn:oid:1.2.250.1.213.1.4.8`, `…4.9`): `{id: value, system: OID}`; else the first patient entity (role `object-role#1`, or a `Patient/…` reference): its identifier (`system` without `urn:oid:`), else its reference |
//! | `target.resource` | the first other entity's `what.reference` |
//! | `request` | an entity's `query` (base64-decoded) when it is one line of at most 2 KiB |
//! | `outcome` | `outcome`: `0` → `success`; `4`, `8`, `12` → `failure` |
//! | `response` | `{status: outcome, text: outcomeDesc}` |
//! | `source.ip` / `source.host` | the requestor's `network.address` (else the agent with DICOM role 110153 "Source"): an IP address → `ip`, else `host`; no address → `source.site` as `host` |
//! | `source.software` | `source.observer`: `identifier.value`, else `display`, else `reference` |
//! | `original` | `{format: "fhir+json", text: the AuditEvent as posted, RFC 8785, without id and server meta}` |
//!
//! # trace → AuditEvent (traces that did not come from FHIR)
//!
//! The reverse of the table: `type`/`subtype`/`action` from
//! [`crate::mapping::event_of`] (`x-dcm-<code>` back to the DICOM code;
//! mail and registre actions as `urn:registre:action|<action>`),
//! `recorded` and `period.start` = `occurred_at`, one requestor agent
//! (`who.identifier` = `actor.id` with the system of its `id_type`,
//! `actor.auth` as extension [`AUTH_EXTENSION`], `network` from `source`),
//! `source.observer.display` = `source.software` (else `registre`), the
//! patient entity (role Patient, INS system as `urn:oid:`), and one system
//! object entity whose `detail`s carry the mailbox, folder, UIDs,
//! Message-ID, recipients, size and request, `what` the resource.
//! `meta.tag` [`ORIGIN_TAG_SYSTEM`] says where the trace came from.

mod bundle;
mod capability;
mod date;
mod from_trace;
mod outcome;
mod search;
mod to_trace;
mod validate;

pub use bundle::{
    BundleError, BundleIn, BundleKind, EntryResult, MAX_BUNDLE_ENTRIES, parse_bundle,
    response_bundle, searchset, status_line,
};
pub use capability::capability_statement;
pub use date::{Range, instant, search_value};
pub use from_trace::audit_event;
pub use outcome::{Issue, IssueType, OperationOutcome, Severity};
pub use search::{DEFAULT_COUNT, MAX_COUNT, PARAMETERS, Search, TDE_PERIOD_START};
pub use to_trace::to_trace;
pub use validate::{MAX_ISSUES, check_audit_event};

/// The FHIR version served.
pub const FHIR_VERSION: &str = "4.0.1";
/// The media type of every FHIR answer.
pub const CONTENT_TYPE: &str = "application/fhir+json; fhirVersion=4.0";
/// `original.format` of a trace that came in as an AuditEvent.
pub const ORIGINAL_FORMAT: &str = "fhir+json";
/// Largest AuditEvent kept (compact JSON).
pub const MAX_RESOURCE_BYTES: usize = 16 * 1024;

/// INS-NIR and INS-NIA (identifiant national de santé).
pub const INS_NIR: &str = "1.2.250.1.213.1.4.8";
pub const INS_NIA: &str = "1.2.250.1.213.1.4.9";
pub const INS_SYSTEMS: &[&str] = &[INS_NIR, INS_NIA];
/// Identifiant national des professionnels de santé (RPPS with prefix 8,
/// ADELI with prefix 0).
pub const IDNATPS: &str = "1.2.250.1.71.4.2.1";
/// `actor.id_type` values that have no standard system.
pub const ID_TYPE_SYSTEM: &str = "urn:registre:id-type:";
/// `actor.auth` on the requestor agent of a built AuditEvent.
pub const AUTH_EXTENSION: &str = "urn:registre:fhir:StructureDefinition/actor-auth";
/// `meta.tag` system saying where a built AuditEvent's trace came from
/// (`registre-json`, `syslog`, `dicom+xml`).
pub const ORIGIN_TAG_SYSTEM: &str = "urn:registre:fhir:origin";

pub const AUDIT_ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
pub const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
/// DICOM "Source Role ID".
pub const DCM_SOURCE_ROLE: &str = "110153";

/// The ANS TDE implementation guide, its gestionnaire capability and its
/// AuditEvent profile.
pub const TDE_IG: &str = "https://interop.esante.gouv.fr/ig/fhir/tde";
pub const TDE_GESTIONNAIRE: &str =
    "https://interop.esante.gouv.fr/ig/fhir/tde/CapabilityStatement/TdEGestionnaire|2.0.0";
pub const TDE_AUDIT_EVENT_PROFILE: &str =
    "https://interop.esante.gouv.fr/ig/fhir/tde/StructureDefinition/tde-auditevent";
