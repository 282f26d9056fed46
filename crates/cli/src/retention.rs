//! `registre purge` and `registre hold`: destroying what is past retention,
//! and legal holds that suspend it.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::CliError;
use crate::client::{Filters, ServerArgs, call_json};

const PURGE_HELP: &str = "\
Examples:
  registre purge --dry-run      what would go, and what holds keep
  registre purge                destroy it now (admin)

A purge takes, in each class, every segment whose traces are all older than
the class's retention (`registre policy show`), except the traces a legal hold
matches (`registre hold list`): it destroys the segment's data key first
(crypto-shredding: any copy of the segment becomes unreadable), then its file.
The Merkle commitments stay: `registre verify` and the proofs of the traces
kept still work. On PostgreSQL a segment is a partition (a table per class
and period): its key row is deleted, then the table is dropped, in one
transaction; any node may run the purge. Each purge writes a trace (class
technique, action purge) before it destroys anything. The server also purges on its own every
[retention] purge_interval (default 1 hour).";

/// Destroy the traces past their retention now (admin).
#[derive(Args)]
#[command(after_help = PURGE_HELP)]
pub struct PurgeArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only report what would be destroyed.
    #[arg(long)]
    dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn purge(a: PurgeArgs) -> Result<(), CliError> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(if a.dry_run {
        "planning the purge…"
    } else {
        "purging…"
    });
    bar.enable_steady_tick(Duration::from_millis(120));
    let v = call_json(
        &a.server,
        reqwest::Method::POST,
        "/v1/purge",
        Some(serde_json::json!({ "dry_run": a.dry_run })),
    )
    .await;
    bar.finish_and_clear();
    let v = v?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let logs = v["logs"].as_array().cloned().unwrap_or_default();
    println!(
        "{:<14} {:<11} {:<27} {:>9} {:>7} {:>9} {:>12}",
        "CLASS", "RETENTION", "RECEIVED BEFORE", "SEGMENTS", "HELD", "TRACES", "INDEXES"
    );
    let mut total = 0;
    let mut held = 0;
    for l in &logs {
        let n = l["purged"].as_u64().unwrap_or(0);
        total += n;
        held += l["held"].as_u64().unwrap_or(0);
        let range = match (l["first"].as_u64(), l["end"].as_u64()) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "-".into(),
        };
        println!(
            "{:<14} {:<11} {:<27} {:>9} {:>7} {:>9} {:>12}",
            l["log"].as_str().unwrap_or_default(),
            l["retention"].as_str().unwrap_or_default(),
            l["cutoff"].as_str().unwrap_or_default(),
            l["segments"].as_u64().unwrap_or(0),
            l["held"].as_u64().unwrap_or(0),
            n,
            range
        );
    }
    if a.dry_run {
        eprintln!(
            "dry run: {total} traces would be destroyed, {held} kept by legal holds; nothing changed"
        );
    } else {
        eprintln!(
            "purged {total} traces past retention ({held} kept by legal holds); the purge is traced in class technique"
        );
    }
    Ok(())
}

/// Legal holds: traces a purge must keep, whatever their age (admin).
#[derive(Subcommand)]
// Parsed once per process from the command line: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum HoldCommand {
    /// Place a hold on every trace matching the filters.
    Add(AddArgs),
    /// List holds, active and released.
    List(ListArgs),
    /// Release a hold: the next purge may take what it kept.
    Release(ReleaseArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  registre hold add --reason \"réquisition judiciaire 2026-118\" --patient 1.2.250.1.213.1.4.8/2840756123456
  registre hold add --reason \"enquête sécurité SEC-42\" --actor dr.martin --since 2026-01-01 --until 2026-03-01
  registre hold list
  registre hold release h-1a2b3c4d

The filters are those of `registre search`; every filter given must match.
Each hold placed or released is itself a trace (action politique).")]
pub struct AddArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Why (a case number, a requisition): kept with the hold.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    filters: Filters,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The hold's id (h-…).
    id: String,
}

pub async fn hold(cmd: HoldCommand) -> Result<(), CliError> {
    match cmd {
        HoldCommand::Add(a) => {
            let mut body = serde_json::Map::new();
            body.insert("reason".into(), Value::String(a.reason.clone()));
            for (k, v) in a.filters.params() {
                body.insert(k.into(), Value::String(v));
            }
            let v = call_json(
                &a.server,
                reqwest::Method::POST,
                "/v1/holds",
                Some(Value::Object(body)),
            )
            .await?;
            println!("{}", v["id"].as_str().unwrap_or_default());
            eprintln!(
                "legal hold {} placed: no purge will destroy the traces it matches until it is released",
                v["id"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        HoldCommand::List(a) => {
            let v = call_json(&a.server, reqwest::Method::GET, "/v1/holds", None).await?;
            println!(
                "{:<12} {:<9} {:<22} {:<16} {:<40} REASON",
                "ID", "STATE", "PLACED", "BY", "FILTER"
            );
            for h in v["holds"].as_array().cloned().unwrap_or_default() {
                let state = if h["released_at"].is_string() {
                    "released"
                } else {
                    "active"
                };
                let filter = h["filter"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                println!(
                    "{:<12} {:<9} {:<22} {:<16} {:<40} {}",
                    h["id"].as_str().unwrap_or_default(),
                    state,
                    h["created_at"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .take(20)
                        .collect::<String>(),
                    h["created_by"].as_str().unwrap_or_default(),
                    if filter.is_empty() {
                        "(everything)".into()
                    } else {
                        filter
                    },
                    h["reason"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        HoldCommand::Release(a) => {
            let path = format!("/v1/holds/{}", a.id);
            call_json(&a.server, reqwest::Method::DELETE, &path, None).await?;
            eprintln!(
                "legal hold {} released: the next purge may destroy what it kept",
                a.id
            );
            Ok(())
        }
    }
}
