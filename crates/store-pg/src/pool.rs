//! A small connection pool: idle clients in a mutex, a semaphore bounding
//! how many are out. A client whose connection closed is dropped, never
//! reused; a new one is connected on demand (so a PostgreSQL restart is
//! survived by the next request, and an outage is an error, never a wait).
//! Each connection keeps the statements prepared on it
//! ([`Conn::prepare_cached`]), keyed by their SQL text.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Row, Statement};

use crate::tls::RustlsConnect;
use crate::{PgError, PgOpenError};

pub struct Pool {
    config: Config,
    tls: Option<RustlsConnect>,
    /// Quoted schema name, set as the search path of every connection.
    schema: String,
    idle: Mutex<Vec<Pooled>>,
    permits: Arc<Semaphore>,
}

/// Most statements one connection keeps prepared; past it, the cache starts
/// over (a statement is closed on the server when its last handle goes).
const MAX_STATEMENTS: usize = 256;

/// A connection and the statements prepared on it.
struct Pooled {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// A client taken from the pool; given back when dropped unless closed.
pub struct Conn {
    client: Option<Pooled>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present until drop.
        &self
            .client
            .as_ref()
            .unwrap_or_else(|| unreachable!("client taken"))
            .client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.pooled().client
    }
}

impl Conn {
    fn pooled(&mut self) -> &mut Pooled {
        // Present until drop.
        self.client
            .as_mut()
            .unwrap_or_else(|| unreachable!("client taken"))
    }

    /// `sql` prepared on this connection, once: later calls with the same
    /// text reuse the statement (and PostgreSQL its plan).
    pub async fn prepare_cached(&mut self, sql: &str) -> Result<Statement, PgError> {
        let p = self.pooled();
        if let Some(s) = p.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = p.client.prepare(sql).await?;
        if p.statements.len() >= MAX_STATEMENTS {
            p.statements.clear();
        }
        p.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// Runs `sql` as a cached prepared statement. A statement the server no
    /// longer accepts as prepared (its plan's result type changed under a
    /// schema change, or it is gone) is prepared again, once.
    pub async fn query_cached(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PgError> {
        let stmt = self.prepare_cached(sql).await?;
        match self.pooled().client.query(&stmt, params).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                self.pooled().statements.remove(sql);
                let stale = e
                    .as_db_error()
                    .is_some_and(|d| matches!(d.code().code(), "0A000" | "26000"));
                if !stale {
                    return Err(e.into());
                }
                let stmt = self.prepare_cached(sql).await?;
                Ok(self.pooled().client.query(&stmt, params).await?)
            }
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.client.is_closed()
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
                Some(c) if c.client.is_closed() => continue,
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
            client: Some(Pooled {
                client,
                statements: HashMap::new(),
            }),
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
