//! kube-scheduler: assigns unbound pods to nodes.
//!
//! Start with [`run`] and [`scheduler::Scheduler::start`]. Decisions are pure
//! ([`algorithm::schedule`] over [`framework::NodeInfo`]s with the plugins in [`plugins`]);
//! [`cache`] and [`queue`] hold the state between decisions.

pub mod algorithm;
pub mod cache;
pub mod events;
pub mod framework;
pub mod plugins;
pub mod queue;
pub mod scheduler;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// Command-line options (upstream flag names).
#[derive(Debug, Clone, Parser)]
#[command(name = "kube-scheduler", version, about = "The Kubernetes scheduler")]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
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
    /// The health server could not start.
    #[error("starting the health server: {0}")]
    Health(#[from] component_base::health::HealthError),
}

/// Runs the scheduler until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    let client = component_base::client::from_kubeconfig(options.kubeconfig.as_deref()).await?;
    let health = component_base::health::Health::default();
    let address = component_base::health::serve(
        SocketAddr::new(options.bind_address, options.secure_port),
        health.clone(),
    )
    .await?;
    tracing::info!(%address, "serving /healthz (plain HTTP)");
    let _scheduler = scheduler::Scheduler::start(client).await;
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
        ]);
        assert!(options.is_ok_and(|o| o.secure_port == 10259 && !o.leader_elect));
    }
}
