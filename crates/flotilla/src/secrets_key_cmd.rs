//! The secrets key file: the `--secrets-key-file` flag `flotilla server` and `flotilla up` share
//! (the key that seals SSM and Secrets Manager values, kept apart from the store), and
//! `flotilla secrets-key rotate`, which appends a new primary key to it.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

#[derive(Args, Debug, Clone, Default)]
pub struct SecretsKeyFile {
    /// The key file that seals SSM parameters' and Secrets Manager secrets' values, created
    /// (mode 0600) when absent. Every server sharing a store must be given the same file
    /// [default: DATA_DIR/secrets.key]
    #[arg(long, env = "FLOTILLA_SECRETS_KEY_FILE", value_name = "PATH")]
    pub secrets_key_file: Option<PathBuf>,
}

/// Adds the SSM and Secrets Manager extension, its keys loaded (or made) from the key file.
pub fn with_secrets(
    mut extensions: flotilla_api::Extensions,
    file: &SecretsKeyFile,
    data_dir: &Path,
) -> anyhow::Result<flotilla_api::Extensions> {
    let path = flotilla_secrets::key_file(file.secrets_key_file.as_deref(), data_dir);
    let (keys, created) = flotilla_secrets::open_keys(&path)?;
    if created {
        eprintln!(
            "Generated a secrets key in {} (mode 0600). Keep it apart from backups of the store; \
             other servers sharing the store need a copy.",
            path.display()
        );
    }
    extensions.0.push(flotilla_secrets::extension(keys));
    Ok(extensions)
}

#[derive(Args, Debug)]
pub struct SecretsKeyArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Make a new key file (mode 0600) with one key, to give every server of a highly available
    /// control plane before they first start; an existing file is left alone and refused.
    Create {
        /// Where to write it
        #[arg(long, env = "FLOTILLA_SECRETS_KEY_FILE", value_name = "PATH")]
        key_file: PathBuf,
    },
    /// Append a new key, the primary from now on: the servers read the file again, seal new
    /// values under it, and the leader re-seals the older values. Copy the file to every server.
    Rotate {
        /// The key file [default: the default data directory's secrets.key]
        #[arg(long, env = "FLOTILLA_SECRETS_KEY_FILE", value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
}

pub fn run(args: SecretsKeyArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Create { key_file } => {
            if key_file.exists() {
                anyhow::bail!("{} already exists; `flotilla secrets-key rotate` adds a key to it", key_file.display());
            }
            flotilla_secrets::open_keys(&key_file)?;
            eprintln!("Made {} (mode 0600). Give every server this same file: --secrets-key-file.", key_file.display());
            Ok(())
        }
        Action::Rotate { key_file } => {
            let path = flotilla_secrets::key_file(key_file.as_deref(), &crate::server_cmd::default_data_dir());
            let id = flotilla_secrets::keyring::rotate_file(&path)?;
            eprintln!(
                "Added key {id} to {} as the primary. Copy the file to every server; the leader re-seals \
                 stored values under {id} within a minute (its log says `secrets sweep` with resealed=N). \
                 Delete older keys only after a sweep reports nothing left to re-seal.",
                path.display()
            );
            Ok(())
        }
    }
}
