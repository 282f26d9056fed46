//! `registre migrate`: move a journal between a data directory and
//! PostgreSQL, either way (the work is `registre_store_pg::migrate`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use registre_store::crypto::MasterKey;
use registre_store_pg::migrate::{Endpoint, Event, Summary};

use crate::CliError;

const MIGRATE_HELP: &str = "\
Examples:
  registre migrate --from /var/lib/registre --to postgres://registre@db.hopital.fr/registre \\
      --master-key-file /etc/registre/master.key
      A data directory (server stopped) into PostgreSQL, schema `registre`.
  registre migrate --from postgres://registre@db/registre --schema registre \\
      --to /var/lib/registre-new --master-key-file /etc/registre/master.key
      Back: every node stopped, into a new data directory.

Kept per log: every retained trace at its index with its salt and canonical
bytes (so every commitment and the Merkle roots are identical), the purged
ranges and their authenticated purge history, traces kept by legal holds,
the commitments, tiles and every signed checkpoint. The legal holds, the
master key id and the checkpoint signing key are copied: old and new
checkpoints verify under the same verifier key. Records are re-sealed under
new data keys (one per target partition or segment); nothing personal is
ever written in clear.

The source is only read (a data directory under its lock, PostgreSQL in a
read-only snapshot): stop the servers first, or what they append after the
start is not moved. The target must be empty and is written all or nothing:
PostgreSQL in one transaction (interrupted: nothing was written, run it
again; a schema holding tables is refused: DROP SCHEMA <s> CASCADE first);
a data directory is built in .<name>.migrating beside it, verified, then
renamed (interrupted: remove .<name>.migrating and run again).

Not moved: admin-token, keys/api-keys.json, policy.json (configuration), and
the master key itself: give the target the same key (--master-key-file,
[store] master_key_file), and keep [server] instance unchanged (it names the
checkpoints' origins). The master key defaults to <from>/keys/master.key for
a data directory source.";

/// Move a journal between a data directory and PostgreSQL.
#[derive(Args)]
#[command(after_help = MIGRATE_HELP)]
pub struct MigrateArgs {
    /// The journal to read: a data directory or a postgres:// URL.
    #[arg(long, value_name = "DIR|URL")]
    from: String,
    /// The empty target: a (new or empty) directory or a postgres:// URL.
    #[arg(long, value_name = "DIR|URL")]
    to: String,
    /// The journal's master key (both sides use it).
    #[arg(long, env = "REGISTRE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// The PostgreSQL schema of the journal (source or target).
    #[arg(long, default_value = "registre", value_name = "SCHEMA")]
    schema: String,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
}

fn endpoint(s: &str, schema: &str) -> Endpoint {
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Endpoint::Pg {
            url: s.to_owned(),
            schema: schema.to_owned(),
        }
    } else {
        Endpoint::Dir(PathBuf::from(s))
    }
}

fn master_key(a: &MigrateArgs, from: &Endpoint) -> Result<MasterKey, CliError> {
    let path = match (&a.master_key_file, from) {
        (Some(f), _) => f.clone(),
        (None, Endpoint::Dir(d)) if registre_store::crypto::default_master_path(d).exists() => {
            registre_store::crypto::default_master_path(d)
        }
        _ => {
            return Err(CliError::new(
                "give the journal's master key with --master-key-file (or \
                 REGISTRE_MASTER_KEY_FILE)",
            ));
        }
    };
    MasterKey::read(&path).map_err(|e| CliError::with("cannot read the master key", &e))
}

fn bar(quiet: bool, log: &str, traces: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(traces);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:<12} [{elapsed_precise}] {wide_bar} {pos}/{len} traces ({per_sec}, eta {eta})",
    ) {
        b.set_style(style);
    }
    b.set_prefix(log.to_owned());
    b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    b
}

pub async fn run(a: MigrateArgs) -> Result<ExitCode, CliError> {
    let from = endpoint(&a.from, &a.schema);
    let to = endpoint(&a.to, &a.schema);
    if matches!((&from, &to), (Endpoint::Pg { .. }, Endpoint::Pg { .. })) {
        return Err(CliError::new(
            "both sides are PostgreSQL: migrate through a data directory, or use \
             PostgreSQL's own tools (pg_dump of the schema) with the same master key",
        ));
    }
    let master = Arc::new(master_key(&a, &from)?);
    eprintln!("migrating {from} → {to} (master key {})", master.id());
    let quiet = a.quiet;
    let mut current: Option<ProgressBar> = None;
    let mut progress = |e: Event<'_>| match e {
        Event::Log { log, traces } => {
            current = Some(bar(quiet, log, traces));
        }
        Event::Copied(n) => {
            if let Some(b) = &current {
                b.inc(n);
            }
        }
        Event::LogDone(_) => {
            if let Some(b) = current.take() {
                b.finish();
            }
        }
    };
    let summary = registre_store_pg::migrate::migrate(&from, &to, master.clone(), &mut progress)
        .await
        .map_err(|e| CliError::with("migration failed (the target was left as it was)", &e))?;
    print_summary(&summary);
    // The target, checked by the verifier of its backend.
    let failures = match &to {
        Endpoint::Dir(d) => {
            eprintln!(
                "target verified as `registre verify --data {}` does (before it was renamed \
                 into place)",
                d.display()
            );
            Vec::new()
        }
        Endpoint::Pg { url, schema } => verify_pg(url, schema, master.clone(), &summary).await?,
    };
    if !failures.is_empty() {
        eprintln!(
            "FAILED: the migrated journal does not verify ({} problem(s)); drop the target \
             and report this:",
            failures.len()
        );
        for f in failures.iter().take(50) {
            eprintln!("  {f}");
        }
        return Ok(ExitCode::from(1));
    }
    let key_note = match (&to, &a.master_key_file) {
        (Endpoint::Dir(d), _) => format!(
            "open it with the same master key: --master-key-file (or [store] master_key_file), \
             or copy it to {}",
            registre_store::crypto::default_master_path(d).display()
        ),
        (Endpoint::Pg { .. }, None) => format!(
            "PostgreSQL nodes need this master key as a file: copy {} out of the data \
             directory and set [store] master_key_file",
            registre_store::crypto::default_master_path(Path::new(&a.from)).display()
        ),
        (Endpoint::Pg { .. }, Some(f)) => format!(
            "PostgreSQL nodes use the same master key ([store] master_key_file = {})",
            f.display()
        ),
    };
    eprintln!("OK: {key_note}");
    Ok(ExitCode::SUCCESS)
}

async fn verify_pg(
    url: &str,
    schema: &str,
    master: Arc<MasterKey>,
    summary: &Summary,
) -> Result<Vec<String>, CliError> {
    let verifier = registre_log::note::Verifier::parse(&summary.verifier_key)
        .map_err(|e| CliError::with("bad verifier key", &e))?;
    let opts = registre_store_pg::verify::VerifyOptions {
        url: url.to_owned(),
        schema: schema.to_owned(),
        tls_root_cert: None,
        master_key: Some(master),
        verifiers: vec![verifier],
    };
    let report = registre_store_pg::verify::verify_journal(&opts, &mut |_, _| {})
        .await
        .map_err(|e| CliError::with("cannot verify the migrated journal", &e))?;
    if report.ok() {
        eprintln!(
            "target verified as `registre verify --store` does: {} traces, every checkpoint",
            report.traces()
        );
    }
    Ok(report.failures.iter().map(ToString::to_string).collect())
}

fn print_summary(s: &Summary) {
    println!(
        "{:<12} {:>10} {:>7} {:>10} {:>8} {:>11} {:>6}  target root = source root",
        "log", "traces", "held", "purged", "purges", "checkpoints", "tiles"
    );
    for l in &s.logs {
        let ok = l.source_root == l.target_root;
        println!(
            "{:<12} {:>10} {:>7} {:>10} {:>8} {:>11} {:>6}  {} (size {}, {})",
            l.log,
            l.traces,
            l.held,
            if l.purged_upto > 0 {
                format!("0..{}", l.purged_upto)
            } else {
                "-".to_owned()
            },
            l.purge_records,
            l.checkpoints,
            l.tiles,
            if ok { "✓" } else { "✗" },
            l.size,
            registre_store::crypto::hex(&l.target_root[..8]),
        );
    }
    println!("legal holds: {}", s.holds);
    println!("checkpoint verifier key: {}", s.verifier_key);
    println!("master key id: {}", s.master_id);
}
