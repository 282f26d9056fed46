//! The proxy's journal over HTTP(S) (`registre proxy … --journal URL
//! --token-file FILE`): traces are POSTed to `/v1/traces` with a producer
//! key, acknowledged once the server has them on disk (its 201 comes after
//! fsync).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use registre_model::Trace;
use registre_proxy::relay::Journal;
use registre_proxy::spool::Verdict;
use zeroize::Zeroizing;

use crate::CliError;

/// How long one POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// While the journal is down, it is probed this often.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A registre server taking the proxy's traces.
#[derive(Clone)]
pub struct HttpJournal {
    client: reqwest::Client,
    traces: String,
    health: String,
    token: Arc<Zeroizing<String>>,
    up: Arc<AtomicBool>,
}

/// Why the journal did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum HttpJournalError {
    /// No answer (connection, TLS, timeout).
    #[error("journal unreachable: {0}")]
    Unreachable(String),
    /// An answer other than 2xx.
    #[error("journal answered {status}: {detail}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem document's `detail`, or the status text.
        detail: String,
    },
}

impl Verdict for HttpJournalError {
    fn is_permanent(&self) -> bool {
        // 4xx but timeouts and rate limits: the server will never take it.
        matches!(self, HttpJournalError::Refused { status, .. }
            if (400..500).contains(status) && *status != 408 && *status != 429)
    }
}

impl HttpJournal {
    /// A client for the registre server at `url`, with the token read from
    /// `token_file`, trusting `ca` in addition to the system roots.
    pub fn new(url: &str, token_file: &Path, ca: Option<&Path>) -> Result<HttpJournal, CliError> {
        let base = url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(CliError::new(format!(
                "--journal {url}: expected an http:// or https:// URL of a registre server"
            )));
        }
        let token = Zeroizing::new(
            std::fs::read_to_string(token_file)
                .map_err(|e| {
                    CliError::with(
                        format!("cannot read --token-file {}", token_file.display()),
                        &e,
                    )
                })?
                .trim()
                .to_owned(),
        );
        if token.is_empty() {
            return Err(CliError::new(format!(
                "--token-file {} is empty: put a producer key there (`registre keys create --role producer`)",
                token_file.display()
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .map_err(|e| CliError::with(format!("cannot read {}", ca.display()), &e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::with(format!("no certificate in {}", ca.display()), &e))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| CliError::with("cannot set up the HTTP client", &e))?;
        Ok(HttpJournal {
            client,
            traces: format!("{base}/v1/traces"),
            health: format!("{base}/healthz"),
            token: Arc::new(token),
            up: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Probes the journal while it is down, so that [`Journal::ready`]
    /// turns true again once it answers (the relay sends nothing to a
    /// journal that is not ready).
    pub fn spawn_probe(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                if me.up.load(Ordering::Relaxed) {
                    continue;
                }
                let ok = me
                    .client
                    .get(&me.health)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    tracing::info!("journal answers again");
                    me.up.store(true, Ordering::Relaxed);
                }
            }
        });
    }

    async fn post(&self, traces: &[Trace]) -> Result<(), HttpJournalError> {
        let response = self
            .client
            .post(&self.traces)
            .bearer_auth(self.token.as_str())
            .json(traces)
            .send()
            .await
            .map_err(|e| HttpJournalError::Unreachable(chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(HttpJournalError::Refused {
            status: status.as_u16(),
            detail: crate::client::problem_detail(&text),
        })
    }
}

impl Journal for HttpJournal {
    type Error = HttpJournalError;

    async fn record(&self, traces: Vec<Trace>) -> Result<(), HttpJournalError> {
        let result = self.post(&traces).await;
        match &result {
            Ok(()) => self.up.store(true, Ordering::Relaxed),
            Err(e) if !e.is_permanent() => {
                if self.up.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "journal unavailable");
                }
            }
            Err(e) => tracing::error!(error = %e, "journal refused a batch of traces"),
        }
        result
    }

    fn ready(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// An error and its sources on one line (reqwest hides the cause).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
