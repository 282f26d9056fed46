//! A fresh PostgreSQL schema per test, dropped at the end (even when the
//! test panics), from `REGISTRE_TEST_DATABASE_URL`.

// Test code: helper functions outside #[test] are linted too (rust-clippy#13981).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)]

use std::sync::Arc;

use futures_util::StreamExt;
use registre_store::BoxFuture;
use registre_store::clock::ManualClock;
use registre_store::conformance::{Harness, classes};
use registre_store::crypto::MasterKey;
use registre_store_pg::{PgOptions, PgStore};

pub struct Pg {
    pub url: String,
    pub schema: String,
    pub master: Arc<MasterKey>,
}

/// `None` (and a note on stderr) without a test database.
pub fn database_url() -> Option<String> {
    match std::env::var("REGISTRE_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIP: REGISTRE_TEST_DATABASE_URL not set");
            None
        }
    }
}

pub async fn harness() -> Option<Pg> {
    let url = database_url()?;
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).expect("random");
    let schema = format!("registre_test_{}", registre_store::crypto::hex(&r));
    let (master, _) = MasterKey::generate().expect("master key");
    Some(Pg {
        url,
        schema,
        master: Arc::new(master),
    })
}

impl Pg {
    pub fn options(&self, clock: Arc<ManualClock>) -> PgOptions {
        PgOptions {
            schema: self.schema.clone(),
            clock,
            pool_size: 4,
            ..PgOptions::new(&self.url, classes(), self.master.clone())
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("SET search_path TO {}", self.schema))
            .await
            .expect("search path");
        client
    }
}

impl Harness for Pg {
    type S = PgStore;

    fn open(&self, clock: Arc<ManualClock>) -> BoxFuture<'_, PgStore> {
        Box::pin(async move { PgStore::open(self.options(clock)).await.expect("open") })
    }

    /// Every row of every table of the schema, as PostgreSQL's binary COPY
    /// gives them (bytea and text columns as their raw bytes).
    fn at_rest(&self) -> BoxFuture<'_, Vec<(String, Vec<u8>)>> {
        Box::pin(async move {
            let client = self.client().await;
            let tables: Vec<String> = client
                .query(
                    "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n \
                     ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' \
                     ORDER BY 1",
                    &[&self.schema],
                )
                .await
                .expect("tables")
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut out = Vec::new();
            for t in tables {
                let stream = client
                    .copy_out(&format!("COPY {t} TO STDOUT (FORMAT binary)"))
                    .await
                    .expect("copy");
                let mut stream = std::pin::pin!(stream);
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.next().await {
                    bytes.extend_from_slice(&chunk.expect("chunk"));
                }
                out.push((format!("table {}.{t}", self.schema), bytes));
            }
            out
        })
    }

    fn finish(self) -> BoxFuture<'static, ()> {
        Box::pin(async move { drop(self) })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Sync context (maybe unwinding): a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
