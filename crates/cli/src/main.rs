//! `registre`: the one binary. Commands parse their arguments here and report
//! errors with context; the work is in the library crates.

mod client;
mod config;
mod csv;
mod export;
mod keys;
mod login;
mod migrate;
mod policy;
mod proxy;
mod proxy_journal;
mod retention;
mod serve;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const ABOUT: &str = "registre — a traceability journal for health software (Ségur numérique).

Keeps MSSanté functional traces (SC.MSS/CONF.18), technical traces and
applicative traces, durably and without ever storing message content.";

const AFTER: &str = "\
Getting started:
  registre serve                       # embedded journal in ./registre-data, API on 127.0.0.1:7380
  registre append traces.jsonl         # send JSON Lines traces to the server
  registre search --actor 810001234567 # who did what, newest first
  registre export --actor 810001234567 --out dossier-2026-42   # bundle for a judge
  registre verify dossier-2026-42      # anyone can check it, offline
  registre verify --data registre-data # check the whole journal

Each command has its own --help with examples.";

#[derive(Parser)]
#[command(name = "registre", version, about = ABOUT, long_about = ABOUT, after_help = AFTER)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
    Append(client::AppendArgs),
    Search(client::SearchArgs),
    Export(export::ExportArgs),
    Verify(verify::VerifyArgs),
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    Login(login::LoginArgs),
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    Purge(retention::PurgeArgs),
    #[command(subcommand)]
    Hold(retention::HoldCommand),
    Proxy(proxy::ProxyArgs),
    Migrate(migrate::MigrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REGISTRE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::run(a).await.map(|()| ExitCode::SUCCESS),
            Command::Append(a) => client::append(a).await,
            Command::Search(a) => client::search(a).await.map(|()| ExitCode::SUCCESS),
            Command::Export(a) => export::run(a).await.map(|()| ExitCode::SUCCESS),
            Command::Verify(a) => verify::run(a).await,
            Command::Policy(c) => policy::run(c).await.map(|()| ExitCode::SUCCESS),
            Command::Login(a) => login::run(a).await.map(|()| ExitCode::SUCCESS),
            Command::Keys(k) => keys::run(k).await.map(|()| ExitCode::SUCCESS),
            Command::Purge(a) => retention::purge(a).await.map(|()| ExitCode::SUCCESS),
            Command::Hold(c) => retention::hold(c).await.map(|()| ExitCode::SUCCESS),
            Command::Proxy(c) => proxy::run(c).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate(a) => migrate::run(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// An error at the binary edge: a message with its context chain.
#[derive(Debug)]
pub struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl CliError {
    pub fn new(msg: impl Into<String>) -> CliError {
        CliError(msg.into())
    }

    /// `context: error` with the source chain of `e`.
    pub fn with(context: impl std::fmt::Display, e: &dyn std::error::Error) -> CliError {
        let mut s = format!("{context}: {e}");
        let mut src = e.source();
        while let Some(x) = src {
            s.push_str(&format!(": {x}"));
            src = x.source();
        }
        CliError(s)
    }
}

/// The default data directory and token file, shared by commands.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("registre-data")
}

/// The user's state directory for registre (`$XDG_STATE_HOME/registre`, else
/// `~/.local/state/registre`): login token, checkpoints seen by `verify`.
pub fn user_state_dir() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("registre")
}
