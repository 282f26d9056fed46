//! Health-IT audit formats, mapped to and from registre traces (DESIGN §8).
//!
//! - [`mapping`]: the standards' event vocabularies (DICOM, FHIR, BALP) and
//!   registre's French actions, both ways.
//! - [`fhir`]: FHIR R4 AuditEvent ⇄ trace, search parameters (ITI-81),
//!   Bundles, OperationOutcome, the CapabilityStatement.
//! - [`dicom`]: DICOM PS3.15 A.5 AuditMessage XML (IHE ATNA, RFC 3881) → trace.
//! - [`syslog`]: RFC 5424 messages and RFC 5425 octet-counting frames.
//!
//! Pure functions over bytes and values: the listeners and HTTP handlers
//! live in `registre-intake`.

pub mod dicom;
pub mod fhir;
pub mod mapping;
pub mod syslog;
