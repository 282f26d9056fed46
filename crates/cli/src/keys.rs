//! `registre keys`: the checkpoint signing key.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::CliError;

/// Keys of the journal.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Print the verifier key of the checkpoint signer, to give to anyone who
    /// checks the journal or an export (`registre verify --vkey …`).
    Show(ShowArgs),
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

pub fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
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
