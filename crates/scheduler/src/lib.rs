//! kube-scheduler: assigns unbound pods to nodes.
//!
//! Start with [`run`] and [`scheduler::Scheduler::start`]. Decisions are pure
//! ([`algorithm::schedule`] over [`framework::NodeInfo`]s with the plugins in [`plugins`];
//! [`preemption::preempt`] when nothing fits); [`cache`], [`queue`] and [`listers`] hold the
//! state between decisions ([`volumes`] binds the volumes VolumeBinding chose); [`config`] reads a `KubeSchedulerConfiguration` into profiles.

pub mod algorithm;
pub mod cache;
pub mod config;
pub mod events;
pub mod framework;
pub mod listers;
pub mod metrics;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod scheduler;
pub mod volumes;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use std::future::Future;

use clap::Parser;
use component_base::leaderelection::{self, LeaderElectionFlags, LeaderElector, Outcome};
use component_base::metrics::SharedRegistry;

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
    /// Port for `/healthz` and `/metrics` (served as plain HTTP for now). With `--leader-elect`,
    /// `/healthz` includes the `leaderElection` check.
    #[arg(long, default_value_t = 10259)]
    pub secure_port: u16,
    /// Address the health endpoint listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Leader election (`--leader-elect*`): only the holder of the `kube-scheduler` Lease
    /// schedules.
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
}

/// The component name: the default Lease name and the event source.
pub const COMPONENT: &str = "kube-scheduler";

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
    /// The `--leader-elect*` flags are inconsistent.
    #[error("leader election: {0}")]
    LeaderElection(#[from] leaderelection::ConfigError),
    /// This instance led and could not renew its Lease in time; another may lead now.
    #[error("leaderelection lost")]
    LeaderElectionLost,
}

/// Runs the scheduler until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    run_until(options, None, component_base::signals::shutdown()).await
}

/// Runs the scheduler until `shutdown` resolves (used by [`run`] and in-process tests);
/// `identity` overrides the leader-election identity (`<hostname>_<uuid>` by default).
pub async fn run_until(
    options: Options,
    identity: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let configuration = match &options.config {
        Some(path) => config::KubeSchedulerConfiguration::load(path)?,
        None => config::KubeSchedulerConfiguration::default(),
    };
    let profiles = configuration.registries()?;
    let election = if options.leader_election.leader_elect {
        let mut election = options.leader_election.config(COMPONENT)?;
        if let Some(identity) = identity {
            election.identity = identity;
        }
        Some(election)
    } else {
        None
    };
    let kubeconfig = options.kubeconfig.clone().or_else(|| {
        configuration
            .client_connection
            .as_ref()
            .and_then(|c| c.kubeconfig.clone())
    });
    let client = component_base::client::from_kubeconfig(kubeconfig.as_deref()).await?;
    let health = component_base::health::Health::default();
    let registry = SharedRegistry::default();
    // As upstream, /healthz fails while this process leads with a stale Lease.
    let elector = election.map(|election| {
        LeaderElector::new(client.clone(), election).observed(COMPONENT, &health, &registry)
    });
    let address = component_base::metrics::serve(
        SocketAddr::new(options.bind_address, options.secure_port),
        health.clone(),
        registry.clone(),
    )
    .await?;
    tracing::info!(%address, "serving /healthz and /metrics (plain HTTP)");
    health.set_ready(true);
    let schedule = async {
        let scheduler = scheduler::Scheduler::start_with_profiles(client.clone(), profiles).await;
        scheduler.register_metrics(&registry);
        tracing::info!("scheduler running");
        std::future::pending::<()>().await;
    };
    let Some(mut elector) = elector else {
        tokio::select! {
            () = schedule => {}
            () = shutdown => {}
        }
        return Ok(());
    };
    match elector.run(shutdown, schedule).await {
        Outcome::Cancelled => Ok(()),
        Outcome::Lost => Err(RunError::LeaderElectionLost),
    }
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
        assert!(options.is_ok_and(|o| o.secure_port == 10259 && !o.leader_election.leader_elect));
    }
}
