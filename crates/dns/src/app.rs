//! The kube-dns process: options, start-up, the watch loop that rebuilds the index.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::Notify;

use crate::forward::Forwarder;
use crate::index::{Index, IndexError, SERVICE_NAME_LABEL};
use crate::metrics::DnsMetrics;
use crate::selfreg;
use crate::server::{udp_bind_addresses, ClusterDns, DnsServer, ServerError, SharedIndex};

/// How long to wait for an upstream server before trying the next.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How often self-registration is re-checked (and retried after a failure).
const REGISTER_PERIOD: Duration = Duration::from_secs(30);

/// Command-line options.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kube-dns", about = "Cluster DNS for Kubernetes Services")]
pub struct Options {
    /// Path to a kubeconfig file with the apiserver address and credentials.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address to serve DNS on (UDP and TCP).
    #[arg(long, default_value = "0.0.0.0")]
    pub dns_bind_address: IpAddr,
    /// Port to serve DNS on (UDP and TCP).
    #[arg(long, default_value_t = 10053)]
    pub dns_port: u16,
    /// Address other nodes reach this server at; written into the `kube-dns-self` EndpointSlice.
    /// Without it kube-dns does not register itself.
    #[arg(long)]
    pub advertise_address: Option<Ipv4Addr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The ClusterIP of the `kube-dns` Service.
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns_ip: Ipv4Addr,
    /// resolv.conf whose nameservers answer names outside the cluster domain.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub upstream_resolv_conf: PathBuf,
    /// Port of the /healthz, /livez, /readyz and /metrics server (on --dns-bind-address).
    #[arg(long, default_value_t = 10054)]
    pub health_port: u16,
}

/// Why kube-dns stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `--cluster-domain` is invalid.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The DNS server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The health server could not start.
    #[error("health server: {0}")]
    Health(#[from] component_base::health::HealthError),
    /// The API client could not be built.
    #[error("building the API client: {0}")]
    Client(#[from] component_base::client::ClientError),
}

/// Mirrors every object of kind `K` into a store, waking `notify` on each change.
fn mirror<K>(
    api: Api<K>,
    config: watcher::Config,
    notify: Arc<Notify>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => notify.notify_one(),
                Err(error) => tracing::warn!(%error, kind = K::kind(&()).as_ref(), "watch error"),
            }
        }
    });
    (store, task)
}

/// Keeps the kube-dns Service and EndpointSlice in place, retrying while the apiserver is away.
async fn register_forever(client: Client, options: Options, address: Ipv4Addr) {
    loop {
        match selfreg::ensure(&client, options.cluster_dns_ip, address, options.dns_port).await {
            Ok(()) => tracing::debug!("kube-dns service and endpointslice in place"),
            Err(error) => tracing::warn!(%error, "self-registration failed; retrying"),
        }
        tokio::time::sleep(REGISTER_PERIOD).await;
    }
}

/// A kube-dns started in this process (see [`start`]).
pub struct Started {
    /// The bound UDP DNS addresses.
    pub udp: Vec<SocketAddr>,
    /// The bound TCP DNS address.
    pub tcp: SocketAddr,
    /// The bound health server address.
    pub health: SocketAddr,
    server: DnsServer,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Started {
    /// Stops the watch and registration tasks and the DNS server.
    pub async fn stop(self) -> Result<(), RunError> {
        for task in &self.tasks {
            task.abort();
        }
        self.server.shutdown().await?;
        Ok(())
    }
}

/// Keeps the index in step with the reflector stores.
async fn rebuild_forever(
    domain: String,
    index: SharedIndex,
    health: component_base::health::Health,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    notify: Arc<Notify>,
) {
    loop {
        notify.notified().await;
        // Let a burst of events settle before rebuilding.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (service_list, slice_list) = (services.state(), slices.state());
        match Index::build(
            &domain,
            service_list.iter().map(|s| s.as_ref()),
            slice_list.iter().map(|s| s.as_ref()),
        ) {
            Ok(rebuilt) => index.set(rebuilt),
            Err(error) => tracing::error!(%error, "rebuilding the DNS index"),
        }
        if !health.is_ready() && services.wait_until_ready().now_or_never().is_some() {
            health.set_ready(true);
            tracing::info!(services = service_list.len(), "index built; ready");
        }
    }
}

/// Binds the DNS and health servers, starts watching and self-registration, and returns; the
/// in-process test helper (and what [`run`] builds on).
pub async fn start(options: Options) -> Result<Started, RunError> {
    let index = SharedIndex::new(Index::new(&options.cluster_domain)?);
    let forwarder = match Forwarder::from_resolv_conf(
        &options.upstream_resolv_conf,
        UPSTREAM_TIMEOUT,
    ) {
        Ok(forwarder) => forwarder,
        Err(error) => {
            tracing::warn!(%error, "no upstream resolvers; names outside the cluster get SERVFAIL");
            Forwarder::new(Vec::new(), UPSTREAM_TIMEOUT)
        }
    };
    if forwarder.servers().is_empty() {
        tracing::warn!(
            file = %options.upstream_resolv_conf.display(),
            "no nameserver lines; names outside the cluster get SERVFAIL"
        );
    } else {
        tracing::info!(upstreams = ?forwarder.servers(), "upstream resolvers");
    }

    let health = component_base::health::Health::default();
    let registry = component_base::metrics::SharedRegistry::default();
    let health_addr = component_base::metrics::serve(
        SocketAddr::new(options.dns_bind_address, options.health_port),
        health.clone(),
        registry.clone(),
    )
    .await?;
    let metrics = DnsMetrics::default();
    let server = DnsServer::bind(
        &udp_bind_addresses(options.dns_bind_address, options.dns_port),
        SocketAddr::new(options.dns_bind_address, options.dns_port),
        ClusterDns::new(index.clone(), forwarder, metrics.clone()),
    )
    .await?;
    metrics.register(&registry, server.tcp);
    tracing::info!(udp = ?server.udp, tcp = %server.tcp, domain = %options.cluster_domain, "serving DNS");

    let client = component_base::client::from_kubeconfig(options.kubeconfig.as_deref()).await?;
    let mut tasks = Vec::new();
    if let Some(address) = options.advertise_address {
        tasks.push(tokio::spawn(register_forever(
            client.clone(),
            options.clone(),
            address,
        )));
    }
    let notify = Arc::new(Notify::new());
    let (services, services_task) = mirror(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        notify.clone(),
    );
    let (slices, slices_task) = mirror(
        Api::<EndpointSlice>::all(client),
        watcher::Config::default().labels(SERVICE_NAME_LABEL),
        notify.clone(),
    );
    tasks.extend([services_task, slices_task]);
    tasks.push(tokio::spawn(rebuild_forever(
        options.cluster_domain.clone(),
        index,
        health,
        services,
        slices,
        notify,
    )));
    Ok(Started {
        udp: server.udp.clone(),
        tcp: server.tcp,
        health: health_addr,
        server,
        tasks,
    })
}

/// Runs kube-dns until SIGINT/SIGTERM.
pub async fn run(options: Options) -> Result<(), RunError> {
    let started = start(options).await?;
    component_base::signals::shutdown().await;
    started.stop().await
}

use futures::FutureExt as _;
