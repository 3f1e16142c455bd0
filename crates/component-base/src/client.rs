//! Builds a [`kube::Client`] the way every component does: from `--kubeconfig`, falling back to
//! `$KUBECONFIG`, `~/.kube/config` and then the in-cluster service-account environment.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read or parsed.
    #[error("reading kubeconfig {path}: {source}")]
    ReadKubeconfig {
        /// The file that was read.
        path: String,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The kubeconfig was read but does not describe a usable client.
    #[error("loading client configuration: {0}")]
    Config(#[from] kube::config::KubeconfigError),
    /// No kubeconfig was given and none could be inferred.
    #[error("no kubeconfig: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// The HTTP client could not be built from the configuration.
    #[error("building client: {0}")]
    Build(#[from] kube::Error),
}

/// Loads the client configuration from `path` (or infers it when `None`).
pub async fn config_from_kubeconfig(path: Option<&Path>) -> Result<Config, ClientError> {
    match path {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| ClientError::ReadKubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
            Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
        }
        None => Ok(Config::infer().await?),
    }
}

/// Builds a client from `path` (or infers the configuration when `None`).
pub async fn from_kubeconfig(path: Option<&Path>) -> Result<Client, ClientError> {
    let config = config_from_kubeconfig(path).await?;
    Ok(Client::try_from(config)?)
}
