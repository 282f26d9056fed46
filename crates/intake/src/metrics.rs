//! Internal metrics, rendered in the Prometheus text format (version 0.0.4).
//! Hand-written: a few counters and one histogram do not need a framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use registre_store::LogStats;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 12] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    accepted: Mutex<BTreeMap<String, u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    append_failures: AtomicU64,
    admin_credentials: AtomicU64,
    latency: Histogram,
    syslog: Mutex<SyslogCounters>,
}

/// The syslog listeners' counters, by transport (`udp`, `tcp`, `tls`).
#[derive(Default)]
struct SyslogCounters {
    /// (transport, "received" | "stored") → messages.
    messages: BTreeMap<(&'static str, &'static str), u64>,
    /// (transport, reason) → messages refused (not stored).
    refused: BTreeMap<(&'static str, &'static str), u64>,
    /// (transport, reason) → connections closed on a framing error.
    frame_errors: BTreeMap<(&'static str, &'static str), u64>,
    /// (transport, outcome) → connections.
    connections: BTreeMap<(&'static str, &'static str), u64>,
    /// transport → connections open now.
    open: BTreeMap<&'static str, i64>,
}

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        *lock(&self.requests).entry((route, status)).or_default() += 1;
        let h = &self.latency;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn accepted(&self, log: &str, n: u64) {
        let mut m = lock(&self.accepted);
        match m.get_mut(log) {
            Some(v) => *v += n,
            None => {
                m.insert(log.to_owned(), n);
            }
        }
    }

    pub fn rejected(&self, code: &'static str, n: u64) {
        *lock(&self.rejected).entry(code).or_default() += n;
    }

    pub fn admin_credential_created(&self) {
        self.admin_credentials.fetch_add(1, Ordering::Relaxed);
    }

    pub fn append_failed(&self) {
        self.append_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Syslog messages received (whole frames or datagrams) on `transport`.
    pub fn syslog_received(&self, transport: &'static str, n: u64) {
        *lock(&self.syslog)
            .messages
            .entry((transport, "received"))
            .or_default() += n;
    }

    /// Syslog messages made durable.
    pub fn syslog_stored(&self, transport: &'static str, n: u64) {
        *lock(&self.syslog)
            .messages
            .entry((transport, "stored"))
            .or_default() += n;
    }

    /// A syslog message refused (not stored), by rule code.
    pub fn syslog_refused(&self, transport: &'static str, reason: &'static str, n: u64) {
        *lock(&self.syslog)
            .refused
            .entry((transport, reason))
            .or_default() += n;
    }

    /// A stream connection closed because it could not be split into frames.
    pub fn syslog_frame_error(&self, transport: &'static str, reason: &'static str) {
        *lock(&self.syslog)
            .frame_errors
            .entry((transport, reason))
            .or_default() += 1;
    }

    /// A connection accepted, or refused (`limit`, `tls_handshake`,
    /// `client_not_allowed`…).
    pub fn syslog_connection(&self, transport: &'static str, outcome: &'static str) {
        *lock(&self.syslog)
            .connections
            .entry((transport, outcome))
            .or_default() += 1;
    }

    /// Connections open now: +1 when one starts, -1 when it ends.
    pub fn syslog_open(&self, transport: &'static str, delta: i64) {
        *lock(&self.syslog).open.entry(transport).or_default() += delta;
    }

    /// A syslog counter by name, for tests and the status line:
    /// `("received"|"stored", transport, "")`, `("refused", transport,
    /// reason)`, `("frame_errors", transport, reason)`, `("connections",
    /// transport, outcome)`, `("open", transport, "")`.
    pub fn syslog_count(&self, kind: &str, transport: &str, label: &str) -> i64 {
        let s = lock(&self.syslog);
        let get = |m: &BTreeMap<(&'static str, &'static str), u64>, a: &str, b: &str| {
            m.iter()
                .find(|((x, y), _)| *x == a && *y == b)
                .map_or(0, |(_, n)| *n as i64)
        };
        match kind {
            "received" | "stored" => get(&s.messages, transport, kind),
            "refused" => get(&s.refused, transport, label),
            "frame_errors" => get(&s.frame_errors, transport, label),
            "connections" => get(&s.connections, transport, label),
            "open" => s.open.get(transport).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// The exposition text, with the store's per-log gauges.
    pub fn render(&self, logs: &[LogStats]) -> String {
        let mut o = String::with_capacity(4096);
        let _ = writeln!(
            o,
            "# HELP registre_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(o, "# TYPE registre_http_requests_total counter");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                o,
                "registre_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP registre_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(o, "# TYPE registre_http_request_duration_seconds histogram");
        let h = &self.latency;
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "registre_http_request_duration_seconds_bucket{{le=\"{b}\"}} {}",
                h.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "registre_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "registre_http_request_duration_seconds_sum {}",
            h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "registre_http_request_duration_seconds_count {count}");
        let _ = writeln!(
            o,
            "# HELP registre_traces_accepted_total Traces made durable and acknowledged, by log."
        );
        let _ = writeln!(o, "# TYPE registre_traces_accepted_total counter");
        for (log, n) in lock(&self.accepted).iter() {
            let _ = writeln!(o, "registre_traces_accepted_total{{log=\"{log}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP registre_traces_rejected_total Traces refused at intake, by rule."
        );
        let _ = writeln!(o, "# TYPE registre_traces_rejected_total counter");
        for (code, n) in lock(&self.rejected).iter() {
            let _ = writeln!(o, "registre_traces_rejected_total{{reason=\"{code}\"}} {n}");
        }
        let _ = writeln!(
            o,
            "# HELP registre_append_failures_total Batches the store could not make durable (answered 503)."
        );
        let _ = writeln!(o, "# TYPE registre_append_failures_total counter");
        let _ = writeln!(
            o,
            "registre_append_failures_total {}",
            self.append_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            o,
            "# HELP registre_admin_credentials_created_total Credentials created with rights to modify the journal (admin or trusted proxy): an alert."
        );
        let _ = writeln!(o, "# TYPE registre_admin_credentials_created_total counter");
        let _ = writeln!(
            o,
            "registre_admin_credentials_created_total {}",
            self.admin_credentials.load(Ordering::Relaxed)
        );
        self.render_syslog(&mut o);
        let _ = writeln!(o, "# HELP registre_log_size Traces in each log.");
        let _ = writeln!(o, "# TYPE registre_log_size gauge");
        for l in logs {
            let _ = writeln!(o, "registre_log_size{{log=\"{}\"}} {}", l.log, l.size);
        }
        let _ = writeln!(
            o,
            "# HELP registre_log_bytes Bytes of segment files per log."
        );
        let _ = writeln!(o, "# TYPE registre_log_bytes gauge");
        for l in logs {
            let _ = writeln!(o, "registre_log_bytes{{log=\"{}\"}} {}", l.log, l.bytes);
        }
        o
    }

    fn render_syslog(&self, o: &mut String) {
        let s = lock(&self.syslog);
        let _ = writeln!(
            o,
            "# HELP registre_syslog_messages_total Syslog messages received (whole frames or datagrams) and stored (durable), by transport."
        );
        let _ = writeln!(o, "# TYPE registre_syslog_messages_total counter");
        for ((transport, outcome), n) in &s.messages {
            let _ = writeln!(
                o,
                "registre_syslog_messages_total{{transport=\"{transport}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP registre_syslog_refused_total Syslog messages refused (nothing stored), by transport and rule."
        );
        let _ = writeln!(o, "# TYPE registre_syslog_refused_total counter");
        for ((transport, reason), n) in &s.refused {
            let _ = writeln!(
                o,
                "registre_syslog_refused_total{{transport=\"{transport}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP registre_syslog_frame_errors_total Syslog connections closed because their stream could not be split into frames, by transport and reason."
        );
        let _ = writeln!(o, "# TYPE registre_syslog_frame_errors_total counter");
        for ((transport, reason), n) in &s.frame_errors {
            let _ = writeln!(
                o,
                "registre_syslog_frame_errors_total{{transport=\"{transport}\",reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP registre_syslog_connections_total Syslog stream connections, accepted or refused (and why)."
        );
        let _ = writeln!(o, "# TYPE registre_syslog_connections_total counter");
        for ((transport, outcome), n) in &s.connections {
            let _ = writeln!(
                o,
                "registre_syslog_connections_total{{transport=\"{transport}\",outcome=\"{outcome}\"}} {n}"
            );
        }
        let _ = writeln!(
            o,
            "# HELP registre_syslog_connections_open Syslog stream connections open now."
        );
        let _ = writeln!(o, "# TYPE registre_syslog_connections_open gauge");
        for (transport, n) in &s.open {
            let _ = writeln!(
                o,
                "registre_syslog_connections_open{{transport=\"{transport}\"}} {n}"
            );
        }
    }
}
