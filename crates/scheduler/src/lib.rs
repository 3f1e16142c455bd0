//! kube-scheduler: assigns unbound pods to nodes.
//!
//! Start with [`run`] and [`scheduler::Scheduler::start`]. Decisions are pure
//! ([`algorithm::schedule`] over [`framework::NodeInfo`]s with the plugins in [`plugins`];
//! [`preemption::preempt`] when nothing fits); [`cache`], [`queue`] and [`listers`] hold the
//! state between decisions; [`config`] reads a `KubeSchedulerConfiguration` into profiles.

pub mod algorithm;
pub mod cache;
pub mod config;
pub mod events;
pub mod framework;
pub mod listers;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod scheduler;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Command-line options (upstream flag names).
#[derive(Debug, Clone, Parser)]
#[command(name = "kube-scheduler", version, about = "The Kubernetes scheduler")]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver address and credentials (overrides the
    /// config file's `clientConnection.kubeconfig`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Path to a `KubeSchedulerConfiguration` file (profiles, plugins, weights).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Port for the health endpoint (served as plain HTTP for now).
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Address the health endpoint listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Leader election (accepted; a single instance runs for now).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub leader_elect: bool,
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The API client could not be built.
    #[error("building the API client: {0}")]
    Client(#[from] component_base::client::ClientError),
    /// The `--config` file is unusable.
    #[error("loading the scheduler configuration: {0}")]
    Config(#[from] config::ConfigError),
    /// The health server could not start.
    #[error("starting the health server: {0}")]
    Health(#[from] component_base::health::HealthError),
}

/// Runs the scheduler until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    let configuration = match &options.config {
        Some(path) => config::KubeSchedulerConfiguration::load(path)?,
        None => config::KubeSchedulerConfiguration::default(),
    };
    let profiles = configuration.registries()?;
    let kubeconfig = options.kubeconfig.clone().or_else(|| {
        configuration
            .client_connection
            .as_ref()
            .and_then(|c| c.kubeconfig.clone())
    });
    let client = component_base::client::from_kubeconfig(kubeconfig.as_deref()).await?;
    let health = component_base::health::Health::default();
    let address = component_base::health::serve(
        SocketAddr::new(options.bind_address, options.secure_port),
        health.clone(),
    )
    .await?;
    tracing::info!(%address, "serving /healthz (plain HTTP)");
    let _scheduler = scheduler::Scheduler::start_with_profiles(client, profiles).await;
    health.set_ready(true);
    tracing::info!("scheduler running");
    component_base::signals::shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_accept_the_upstream_flags() {
        let options = Options::try_parse_from([
            "kube-scheduler",
            "--kubeconfig",
            "/tmp/k",
            "--secure-port",
            "10259",
            "--leader-elect=false",
            "--config",
            "/etc/kubernetes/scheduler.yaml",
        ]);
        assert!(options.is_ok_and(|o| o.secure_port == 10259 && !o.leader_elect));
    }
}
