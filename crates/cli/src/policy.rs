//! `registre policy`: the retention of each class.

use clap::{Args, Subcommand};

use crate::CliError;
use crate::client::ServerArgs;

/// Retention policy per class: how long each class is kept before
/// `registre purge` (or the hourly scheduled purge) destroys it.
#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show each class's retention, where it comes from, and every change.
    Show(ShowArgs),
    /// Change a class's retention (admin). The change is traced (action
    /// `politique`, old and new value) and kept across restarts.
    Set(SetArgs),
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Args)]
#[command(after_help = "Examples:
  registre policy set mss \"6 months\"
  registre policy set technique \"1 year\"
  registre policy set applicative \"20 years\"

Recommended: mss 6 months (référentiel #2 MSSanté §5), technique 6 months to
1 year (CNIL délibération 2021-122), applicative 20 years (CSP R.1112-7). A
duration outside those ranges is accepted with a warning: the data controller
decides.")]
pub struct SetArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The class.
    class: String,
    /// The duration: `6 months`, `1 year`, `20 years`, `90 days`…
    retention: String,
}

pub async fn run(cmd: PolicyCommand) -> Result<(), CliError> {
    match cmd {
        PolicyCommand::Show(a) => {
            let v = crate::client::call_json(&a.server, reqwest::Method::GET, "/v1/policy", None)
                .await?;
            println!("{:<14} {:<12} SOURCE", "CLASS", "RETENTION");
            for c in v["classes"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<14} {:<12} {}",
                    c["class"].as_str().unwrap_or_default(),
                    c["retention"].as_str().unwrap_or_default(),
                    c["source"].as_str().unwrap_or_default()
                );
                if let Some(w) = c["warning"].as_str() {
                    println!("{:<14} warning: {w}", "");
                }
            }
            Ok(())
        }
        PolicyCommand::Set(a) => {
            let path = format!("/v1/policy/{}", a.class);
            let v = crate::client::call_json(
                &a.server,
                reqwest::Method::PUT,
                &path,
                Some(serde_json::json!({ "retention": a.retention })),
            )
            .await?;
            eprintln!(
                "retention of {}: {} -> {}",
                a.class,
                v["previous"].as_str().unwrap_or_default(),
                v["class"]["retention"].as_str().unwrap_or_default()
            );
            if let Some(w) = v["class"]["warning"].as_str() {
                eprintln!("warning: {w}");
            }
            Ok(())
        }
    }
}
