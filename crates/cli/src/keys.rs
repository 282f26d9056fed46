//! `registre keys`: the checkpoint signing key.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::CliError;

/// Keys of the journal: the checkpoint verifier key, and API keys.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the verifier key of the checkpoint signer, to give to anyone who
    /// checks the journal or an export (`registre verify --vkey …`).
    Show(ShowArgs),
    /// Create an API key (admin); its secret is printed once.
    Create(CreateArgs),
    /// List API keys (never their secrets).
    List(ListArgs),
    /// Revoke an API key by id.
    Revoke(RevokeArgs),
}

const CREATE_HELP: &str = "\
Examples:
  registre keys create --role producteur --name dpi-server
  registre keys create --role producteur --name mssante-proxy --trusted-proxy
  registre keys create --role auditeur --name dpo --expires 2027-06-30T00:00:00Z

Roles: producteur (append only), auditeur (search, proofs, export), admin
(keys, policy, holds, purge; also auditeur). A trusted proxy may write traces
for any author; other credentials only their own. Creating an admin or trusted
proxy key raises an alert (log and metric). Every key operation is traced.";

#[derive(Args)]
#[command(after_help = CREATE_HELP)]
pub struct CreateArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// producteur, auditeur or admin.
    #[arg(long)]
    role: String,
    /// Who holds the key (the author id of what it writes).
    #[arg(long)]
    name: String,
    /// May write traces for any author (the mail proxy).
    #[arg(long)]
    trusted_proxy: bool,
    /// Expiry, RFC 3339.
    #[arg(long)]
    expires: Option<String>,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

#[derive(Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    server: crate::client::ServerArgs,
    /// The key id (8 hex digits, see `keys list`).
    id: String,
}

#[derive(Args)]
#[command(
    after_help = "Example:\n  registre keys show --data /var/lib/registre\n\n\
The verifier key reads <name>+<key id>+<public key>; it is public."
)]
pub struct ShowArgs {
    /// Data directory (default ./registre-data).
    #[arg(long, env = "REGISTRE_DATA")]
    data: Option<PathBuf>,
}

pub async fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Create(a) => {
            let body = serde_json::json!({
                "name": a.name,
                "role": a.role,
                "trusted_proxy": a.trusted_proxy,
                "expires_at": a.expires,
            });
            let v =
                crate::client::call_json(&a.server, reqwest::Method::POST, "/v1/keys", Some(body))
                    .await?;
            println!("{}", v["secret"].as_str().unwrap_or_default());
            eprintln!(
                "key {} for {} ({}) created; the secret above is shown once and stored only as a hash",
                v["key"]["id"].as_str().unwrap_or_default(),
                v["key"]["name"].as_str().unwrap_or_default(),
                v["key"]["role"].as_str().unwrap_or_default()
            );
            Ok(())
        }
        KeysCommand::List(a) => {
            let v =
                crate::client::call_json(&a.server, reqwest::Method::GET, "/v1/keys", None).await?;
            println!(
                "{:<10} {:<24} {:<11} {:<6} {:<28} STATUS",
                "ID", "NAME", "ROLE", "PROXY", "CREATED"
            );
            for k in v["keys"].as_array().cloned().unwrap_or_default() {
                let status = if !k["revoked_at"].is_null() {
                    format!("revoked {}", k["revoked_at"].as_str().unwrap_or_default())
                } else if let Some(e) = k["expires_at"].as_str() {
                    format!("expires {e}")
                } else {
                    "active".into()
                };
                println!(
                    "{:<10} {:<24} {:<11} {:<6} {:<28} {status}",
                    k["id"].as_str().unwrap_or_default(),
                    k["name"].as_str().unwrap_or_default(),
                    k["role"].as_str().unwrap_or_default(),
                    if k["trusted_proxy"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    },
                    k["created_at"].as_str().unwrap_or_default(),
                );
            }
            Ok(())
        }
        KeysCommand::Revoke(a) => {
            let path = format!("/v1/keys/{}", a.id);
            crate::client::call_json(&a.server, reqwest::Method::DELETE, &path, None).await?;
            eprintln!("key {} revoked", a.id);
            Ok(())
        }
        KeysCommand::Show(a) => {
            let data = a.data.unwrap_or_else(crate::default_data_dir);
            let signer = registre_store::keys::load(&data).map_err(|e| {
                CliError::with(
                    format!(
                        "no checkpoint key in {} (it is created by the first `registre serve`)",
                        data.display()
                    ),
                    &e,
                )
            })?;
            println!("{}", signer.verifier_key());
            Ok(())
        }
    }
}
