//! Versioned migrations, embedded in the binary, applied at open.

use tokio_postgres::Transaction;

use crate::pool::quote_ident;
use crate::{PgError, PgOpenError};

/// Every migration, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] =
    &[(1, "init", include_str!("../migrations/0001_init.sql"))];

/// The newest schema version this binary knows.
pub const LATEST_VERSION: i32 = 1;

/// Advisory lock key (second half) serialising migrations and log
/// registration; logs use their id (≥ 1).
pub const SETUP_LOCK: i32 = 0;

/// Creates the schema if needed and applies the migrations it lacks, in
/// the caller's transaction (which holds the setup lock). Refuses a schema
/// newer than [`LATEST_VERSION`].
pub async fn migrate(tx: &Transaction<'_>, schema: &str) -> Result<i32, PgOpenError> {
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.registre_schema (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        s = quote_ident(schema)
    ))
    .await
    .map_err(PgError::from)?;
    let current: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM registre_schema", &[])
        .await
        .map_err(PgError::from)?
        .get(0);
    if current > LATEST_VERSION {
        return Err(PgOpenError::NewerSchema {
            found: current,
            known: LATEST_VERSION,
        });
    }
    for (version, name, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        tracing::info!(version, name, "applying a schema migration");
        tx.batch_execute(sql)
            .await
            .map_err(|e| PgOpenError::Db(format!("migration {version} ({name}) failed: {e}")))?;
        tx.execute(
            "INSERT INTO registre_schema (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(PgError::from)?;
    }
    Ok(LATEST_VERSION)
}

/// A schema name registre accepts: a plain lowercase identifier.
pub fn valid_schema(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// The table of a log's partition for the period starting at `period` µs.
pub fn partition_name(log_id: i16, period: i64) -> String {
    let secs = period.div_euclid(1_000_000);
    if secs < 0 {
        format!("traces_{log_id}_m{}", secs.unsigned_abs())
    } else {
        format!("traces_{log_id}_{secs}")
    }
}
