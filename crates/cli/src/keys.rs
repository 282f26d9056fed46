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
    /// Rewrap every data key under a new master key (server stopped).
    RotateMaster(RotateArgs),
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
    /// A PostgreSQL journal instead: `postgres://user@host:5432/db`.
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    store: Option<String>,
    /// The PostgreSQL schema of the journal (default `registre`).
    #[arg(long, value_name = "NAME", requires = "store")]
    store_schema: Option<String>,
    /// The journal's master key (required with --store: the signing key is
    /// sealed with it in the database).
    #[arg(
        long,
        env = "REGISTRE_MASTER_KEY_FILE",
        value_name = "FILE",
        requires = "store"
    )]
    master_key_file: Option<PathBuf>,
}

pub async fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::RotateMaster(mut a) => match a.store.take() {
            Some(url) => rotate_master_pg(a, &url).await,
            None => tokio::task::block_in_place(|| rotate_master(a)),
        },
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
        KeysCommand::Show(a) if a.store.is_some() => {
            let url = a.store.as_deref().unwrap_or_default();
            let (url, schema) = match crate::config::StoreConfig::default()
                .backend(Some(url), a.store_schema.as_deref())
            {
                Ok(crate::config::Backend::Postgres { url, schema }) => (url, schema),
                Ok(crate::config::Backend::Embedded) => {
                    return Err(CliError::new(
                        "--store takes a postgres:// URL; for a data directory use --data DIR",
                    ));
                }
                Err(m) => return Err(CliError::new(m)),
            };
            let master = crate::serve::pg_master_key(a.master_key_file.as_deref())?;
            let key = registre_store_pg::verify::verifier_key(&url, &schema, None, &master)
                .await
                .map_err(|e| crate::serve::pg_open_error(&url, &schema, e))?;
            println!("{key}");
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

const ROTATE_HELP: &str = "\
Examples:
  registre keys rotate-master --data /var/lib/registre
      The master key is <data>/keys/master.key: a new one is generated in
      keys/master.key.next, every data key is rewrapped, then it replaces
      keys/master.key.
  registre keys rotate-master --data /var/lib/registre \\
      --master-key-file /etc/registre/master.key --new-master-key-file /etc/registre/master-2027.key
      An operator's key file: the new key is written to the new file (0600);
      point [store] master_key_file (or REGISTRE_MASTER_KEY_FILE) at it.

  registre keys rotate-master --store postgres://registre@db:5432/registre \\
      --master-key-file /etc/registre/master.key --new-master-key-file /etc/registre/master-2027.key
      A PostgreSQL journal: every data key, the legal holds and the checkpoint
      key are rewrapped in one transaction (all or nothing). Stop every node
      first, then restart them all with the new key file.

Run it with the server stopped (it takes the data directory's lock). Traces
are not rewritten: only the 108-byte key files (and the sealed legal holds)
are. Interrupted, it is resumed by running it again with the same keys. The
old key no longer opens anything afterwards: destroy it and its copies.";

/// Rewrap every data key under a new master key (offline).
#[derive(Args)]
#[command(after_help = ROTATE_HELP)]
pub struct RotateArgs {
    /// Data directory (default ./registre-data).
    #[arg(long, env = "REGISTRE_DATA")]
    data: Option<PathBuf>,
    /// The current master key file (default <data>/keys/master.key).
    #[arg(long, env = "REGISTRE_MASTER_KEY_FILE", value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Where to write the new key (required with --master-key-file and
    /// --store; used as is when it exists, to resume).
    #[arg(long, value_name = "FILE")]
    new_master_key_file: Option<PathBuf>,
    /// A PostgreSQL journal instead of a data directory:
    /// `postgres://user@host:5432/db`.
    #[arg(long, value_name = "URL", conflicts_with = "data")]
    store: Option<String>,
    /// The PostgreSQL schema of the journal (default `registre`).
    #[arg(long, value_name = "NAME", requires = "store")]
    store_schema: Option<String>,
}

/// `keys rotate-master --store`: one transaction in PostgreSQL.
async fn rotate_master_pg(a: RotateArgs, url: &str) -> Result<(), CliError> {
    use registre_store::crypto::{self, MasterKey};
    let (url, schema) =
        match crate::config::StoreConfig::default().backend(Some(url), a.store_schema.as_deref()) {
            Ok(crate::config::Backend::Postgres { url, schema }) => (url, schema),
            Ok(crate::config::Backend::Embedded) => {
                return Err(CliError::new(
                    "--store takes a postgres:// URL; for a data directory use --data DIR",
                ));
            }
            Err(m) => return Err(CliError::new(m)),
        };
    let Some(old_path) = a.master_key_file.clone() else {
        return Err(CliError::new(format!(
            "give the journal's current master key: --master-key-file FILE ({})",
            crate::serve::MAKE_MASTER_KEY
        )));
    };
    let Some(new_path) = a.new_master_key_file.clone() else {
        return Err(CliError::new(
            "say where the new master key goes: --new-master-key-file FILE (it is written 0600; \
             an existing file is used as the new key, to resume)",
        ));
    };
    let old = crate::serve::pg_master_key(Some(&old_path))?;
    let new = if new_path.exists() {
        let k = MasterKey::read(&new_path)
            .map_err(|e| CliError::with("cannot read the new master key", &e))?;
        eprintln!("using the existing key {} ({})", k.id(), new_path.display());
        k
    } else {
        let (k, text) =
            MasterKey::generate().map_err(|e| CliError::with("cannot generate a key", &e))?;
        crypto::write_secret(&new_path, text.as_bytes())
            .map_err(|e| CliError::with("cannot write the new master key", &e))?;
        k
    };
    let r = registre_store_pg::rotate_master(&url, &schema, None, &old, &new)
        .await
        .map_err(|e| crate::serve::pg_open_error(&url, &schema, e))?;
    eprintln!(
        "master key rotated: {} -> {}; {} keys rewrapped ({} already were) in one transaction; traces untouched",
        r.old_id, r.new_id, r.rewrapped, r.already
    );
    eprintln!(
        "the new key is {}: give it to every node ([store] master_key_file or \
         REGISTRE_MASTER_KEY_FILE), restart them, then destroy {} and its copies",
        new_path.display(),
        old_path.display()
    );
    Ok(())
}

pub fn rotate_master(a: RotateArgs) -> Result<(), CliError> {
    use registre_store::crypto::{self, MasterKey};
    let data = a.data.unwrap_or_else(crate::default_data_dir);
    if !data.join("keys").is_dir() {
        return Err(CliError::new(format!(
            "{} is not a registre data directory (no keys/)",
            data.display()
        )));
    }
    let _lock = registre_store::lock_dir(&data).map_err(|e| {
        CliError::with("cannot take the data directory (stop the server first)", &e)
    })?;
    let default = crypto::default_master_path(&data);
    let next = data.join("keys").join("master.key.next");
    let old_path = a.master_key_file.clone().unwrap_or_else(|| default.clone());
    let new_path = match (&a.master_key_file, &a.new_master_key_file) {
        (_, Some(p)) => p.clone(),
        (None, None) => next.clone(),
        (Some(_), None) => {
            return Err(CliError::new(
                "with --master-key-file, say where the new key goes: --new-master-key-file FILE",
            ));
        }
    };
    let old = MasterKey::read(&old_path)
        .map_err(|e| CliError::with("cannot read the current master key", &e))?;
    let recorded = std::fs::read_to_string(data.join("keys").join("master.id"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    // A resumed rotation: the new key exists already.
    let new = if new_path.exists() {
        let k = MasterKey::read(&new_path)
            .map_err(|e| CliError::with("cannot read the new master key", &e))?;
        eprintln!(
            "resuming the rotation to key {} ({})",
            k.id(),
            new_path.display()
        );
        k
    } else {
        if recorded != old.id() {
            return Err(CliError::new(format!(
                "{} (key {}) is not this data directory's master key (key {recorded})",
                old_path.display(),
                old.id()
            )));
        }
        let (k, text) =
            MasterKey::generate().map_err(|e| CliError::with("cannot generate a key", &e))?;
        crypto::write_secret(&new_path, text.as_bytes())
            .map_err(|e| CliError::with("cannot write the new master key", &e))?;
        k
    };
    let bar = crate::client::progress(None);
    bar.set_message("rewrapping data keys");
    let r = crypto::rotate_master(&data, &old, &new, |done, _total| {
        bar.set_position(done as u64)
    })
    .map_err(|e| {
        CliError::with(
            "the rotation stopped (run the same command again to resume)",
            &e,
        )
    })?;
    bar.finish_and_clear();
    if new_path == next {
        std::fs::rename(&next, &default)
            .and_then(|()| std::fs::File::open(data.join("keys"))?.sync_all())
            .map_err(|e| CliError::with("cannot install the new master key", &e))?;
    }
    eprintln!(
        "master key rotated: {} -> {}; {} key files rewrapped ({} already were); traces untouched",
        r.old_id, r.new_id, r.rewrapped, r.already
    );
    if a.master_key_file.is_some() {
        eprintln!(
            "the new key is {}: point [store] master_key_file or REGISTRE_MASTER_KEY_FILE at it, then destroy {}",
            new_path.display(),
            old_path.display()
        );
    } else {
        eprintln!(
            "the new key is {}; the old one no longer opens anything",
            default.display()
        );
    }
    Ok(())
}
