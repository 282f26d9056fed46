//! Internal events: each one logs and counts together, so logs and metrics
//! never drift apart (Vector's `internal_events` habit). Events carry rule
//! codes and counts, never trace values.

use crate::Metrics;

/// A request's traces were refused at intake.
pub struct TracesRejected<'a> {
    pub route: &'static str,
    pub invalid: usize,
    pub total: usize,
    /// The rule codes of the refused traces.
    pub codes: &'a [&'static str],
}

impl TracesRejected<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::info!(
            route = self.route,
            invalid = self.invalid,
            total = self.total,
            rules = ?self.codes,
            "traces refused"
        );
        for c in self.codes {
            m.rejected(c, 1);
        }
    }
}

/// The store could not make a batch durable; the client got 503.
pub struct AppendFailed<'a> {
    pub traces: usize,
    pub error: &'a str,
}

impl AppendFailed<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::error!(
            traces = self.traces,
            error = self.error,
            "append failed; answered 503"
        );
        m.append_failed();
    }
}

/// Traces were acknowledged.
pub struct TracesAccepted<'a> {
    pub log: &'a str,
    pub count: u64,
}

impl TracesAccepted<'_> {
    pub fn emit(&self, m: &Metrics) {
        tracing::debug!(log = self.log, count = self.count, "traces acknowledged");
        m.accepted(self.log, self.count);
    }
}
