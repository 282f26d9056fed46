//! The peers registre is measured against, and registre's own HTTP surface.

pub mod health;
pub mod http;
pub mod pgstore;
pub mod postgres;
pub mod sqlite;

/// Figures of a database peer.
pub struct PeerResult {
    pub rate: f64,
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
    pub bytes_per_trace: f64,
}

/// The indexed columns every peer gets, from a trace.
pub struct Cols<'a> {
    pub class: &'a str,
    pub actor: &'a str,
    pub mailbox: Option<&'a str>,
    pub patient: Option<&'a str>,
    pub action: &'a str,
}

pub fn cols(t: &registre_model::Trace) -> Cols<'_> {
    let target = t.target.as_ref();
    Cols {
        class: t.class.as_str(),
        actor: &t.actor.id,
        mailbox: target.and_then(|x| x.mailbox.as_deref()),
        patient: target
            .and_then(|x| x.patient.as_ref())
            .map(|p| p.id.as_str()),
        action: t.action.as_str(),
    }
}

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
