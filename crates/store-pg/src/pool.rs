//! A small connection pool: idle clients in a mutex, a semaphore bounding
//! how many are out. A client whose connection closed is dropped, never
//! reused; a new one is connected on demand (so a PostgreSQL restart is
//! survived by the next request, and an outage is an error, never a wait).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};

use crate::tls::RustlsConnect;
use crate::{PgError, PgOpenError};

pub struct Pool {
    config: Config,
    tls: Option<RustlsConnect>,
    /// Quoted schema name, set as the search path of every connection.
    schema: String,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A client taken from the pool; given back when dropped unless closed.
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present until drop.
        self.client
            .as_ref()
            .unwrap_or_else(|| unreachable!("client taken"))
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .unwrap_or_else(|| unreachable!("client taken"))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

/// Splits our own `sslrootcert=` parameter off a connection URL (the
/// driver refuses parameters it does not know).
pub fn split_url(url: &str) -> (String, Option<PathBuf>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| match p.strip_prefix("sslrootcert=") {
            Some(v) => {
                root = Some(PathBuf::from(v.replace("%2F", "/").replace("%2f", "/")));
                false
            }
            None => !p.is_empty(),
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), root)
    } else {
        (format!("{base}?{}", kept.join("&")), root)
    }
}

impl Pool {
    pub fn new(
        url: &str,
        root_cert: Option<PathBuf>,
        schema: &str,
        size: usize,
        connect_timeout: Duration,
    ) -> Result<Arc<Pool>, PgOpenError> {
        let (clean, url_root) = split_url(url);
        let mut config = Config::from_str(&clean)
            .map_err(|e| PgOpenError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        config.application_name("registre");
        // `require`: TLS, and the server certificate verified (stricter
        // than libpq's `require`). Anything else: no TLS.
        let tls = if config.get_ssl_mode() == SslMode::Require {
            Some(RustlsConnect::new(root_cert.or(url_root).as_deref())?)
        } else {
            config.ssl_mode(SslMode::Disable);
            None
        };
        Ok(Arc::new(Pool {
            config,
            tls,
            schema: quote_ident(schema),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1))),
        }))
    }

    /// A client, reused or newly connected.
    pub async fn get(self: &Arc<Self>) -> Result<Conn, PgError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PgError::Unavailable("the pool is closed".into()))?;
        loop {
            let c = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match c {
                Some(c) if c.is_closed() => continue,
                Some(c) => {
                    return Ok(Conn {
                        client: Some(c),
                        pool: self.clone(),
                        _permit: permit,
                    });
                }
                None => break,
            }
        }
        let client = self.connect().await?;
        Ok(Conn {
            client: Some(client),
            pool: self.clone(),
            _permit: permit,
        })
    }

    async fn connect(&self) -> Result<Client, PgError> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "PostgreSQL connection closed");
                    }
                });
                client
            }
            None => {
                let (client, conn) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::warn!(error = %e, "PostgreSQL connection closed");
                    }
                });
                client
            }
        };
        // Durable commits whatever the server's default: an ack follows a
        // COMMIT that reached the WAL on disk.
        client
            .batch_execute(&format!(
                "SET search_path TO {}; SET synchronous_commit TO on",
                self.schema
            ))
            .await?;
        Ok(client)
    }
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
