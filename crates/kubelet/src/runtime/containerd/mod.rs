//! The containerd implementation of [`ContainerRuntime`](super::ContainerRuntime), on
//! containerd's native gRPC API (1.6: no CRI plugin, no Transfer service).
//!
//! One file per concern: [`client`] (connection, namespace), [`archive`] + [`content`] +
//! [`unpack`] + [`import`] (image archives), [`pull`] (registry pulls), [`image`] (image metadata), [`spec`] (OCI runtime
//! spec), [`containers`] (create/status/list/remove), [`tasks`] (start/stop/recover and log
//! copying), [`io`] (FIFOs and the CRI log writer), [`exec`] (exec and attach), [`testing`] (a
//! private containerd for tests).

pub mod archive;
pub mod client;
pub mod containers;
pub mod content;
pub mod events;
pub mod exec;
pub mod image;
pub mod import;
pub mod io;
pub mod portforward;
pub mod pull;
pub mod spec;
pub mod tasks;
pub mod testing;
pub mod timing;
pub mod unpack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_client::services::v1::ListImagesRequest;

use super::{
    normalize_image, AttachRequest, ContainerConfig, ContainerRuntime, ContainerState,
    ContainerSummary, ExecRequest, ExecSession, ImageInfo, PullPolicy, RegistryCredential,
    RuntimeError, RuntimeVersion,
};
use crate::runtime::registry::{OciRegistry, Registry};
pub use client::Client;
use tasks::LiveIo;

/// Where and how to reach containerd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerdOptions {
    /// `unix:///path/containerd.sock` or a socket path.
    pub endpoint: String,
    /// containerd namespace (`k8s.io`).
    pub namespace: String,
    /// Snapshotter (`overlayfs`).
    pub snapshotter: String,
    /// Runtime shim (`io.containerd.runc.v2`).
    pub runtime: String,
    /// Directory for per-container FIFOs (e.g. `<kubelet root>/runtime`).
    pub state_dir: PathBuf,
    /// How long to keep retrying the first connection.
    pub connect_timeout: Duration,
}

impl ContainerdOptions {
    /// Defaults for the given endpoint and state dir.
    pub fn new(endpoint: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            namespace: "k8s.io".to_string(),
            snapshotter: "overlayfs".to_string(),
            runtime: "io.containerd.runc.v2".to_string(),
            state_dir: state_dir.into(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A container runtime backed by containerd.
pub struct ContainerdRuntime {
    client: Client,
    options: ContainerdOptions,
    /// Where images are pulled from.
    registry: Arc<dyn Registry>,
    /// Output/stdin plumbing of containers whose output this process is copying.
    live: Mutex<HashMap<String, Arc<LiveIo>>>,
    /// Container states between containerd events (see [`events`]).
    states: Arc<events::StateCache>,
    /// The task following containerd's events into `states`.
    events_task: tokio::task::AbortHandle,
}

impl std::fmt::Debug for ContainerdRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerdRuntime")
            .field("client", &self.client)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ContainerdRuntime {
    /// Connects (retrying up to `options.connect_timeout`) and checks the namespace is usable.
    pub async fn connect(options: ContainerdOptions) -> Result<Self, RuntimeError> {
        let client = Client::connect_with_retry(
            &options.endpoint,
            &options.namespace,
            options.connect_timeout,
        )
        .await?;
        let states = Arc::new(events::StateCache::new());
        let events_task = tokio::spawn(events::watch(
            client.clone(),
            options.namespace.clone(),
            states.clone(),
        ))
        .abort_handle();
        let runtime = Self {
            client,
            options,
            registry: Arc::new(OciRegistry::new()),
            live: Mutex::new(HashMap::new()),
            states,
            events_task,
        };
        runtime.version().await?;
        Ok(runtime)
    }

    /// Pulls from `registry` instead of the real registries (tests).
    pub fn with_registry(mut self, registry: Arc<dyn Registry>) -> Self {
        self.registry = registry;
        self
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Container states kept between containerd events, and the exits seen.
    pub fn states(&self) -> &events::StateCache {
        &self.states
    }

    /// The options this runtime was built with.
    pub fn options(&self) -> &ContainerdOptions {
        &self.options
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.options.state_dir.join(id)
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LiveIo>>> {
        // The map holds no invariants a panicking holder could break.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for ContainerdRuntime {
    /// Stops copying container output: a new instance picks it up with `recover`.
    fn drop(&mut self) {
        self.events_task.abort();
        for live in self.live().values() {
            for copier in &live.copiers {
                copier.abort();
            }
        }
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for ContainerdRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let response = self
            .client
            .version()
            .version(self.client.request(()))
            .await
            .map_err(RuntimeError::rpc("version"))?
            .into_inner();
        Ok(RuntimeVersion {
            runtime_name: "containerd".to_string(),
            runtime_version: response.version.trim_start_matches('v').to_string(),
        })
    }

    async fn import_image_archive(&self, path: &Path) -> Result<Vec<String>, RuntimeError> {
        import::import(&self.client, &self.options.snapshotter, path).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let images = self
            .client
            .images()
            .list(self.client.request(ListImagesRequest::default()))
            .await
            .map_err(RuntimeError::rpc("list images"))?
            .into_inner()
            .images;
        let mut by_digest: Vec<ImageInfo> = Vec::new();
        for record in images {
            let Some(target) = record.target else {
                continue;
            };
            if let Some(info) = by_digest.iter_mut().find(|i| i.digest == target.digest) {
                info.names.push(record.name);
                continue;
            }
            let size = match image::load(&self.client, &record.name).await {
                Ok(Some(stored)) => stored.size,
                Ok(None) => continue,
                Err(err) => {
                    tracing::debug!(image = record.name, error = %err, "image size unknown");
                    0
                }
            };
            by_digest.push(ImageInfo {
                names: vec![record.name],
                digest: target.digest,
                size,
            });
        }
        Ok(by_digest)
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        let name = normalize_image(image);
        match image::load(&self.client, &name).await? {
            None => Ok(false),
            Some(stored) => {
                unpack::snapshot_exists(
                    &self.client,
                    &self.options.snapshotter,
                    &stored.top_chain_id,
                )
                .await
            }
        }
    }

    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<(), RuntimeError> {
        let name = normalize_image(image);
        if policy != PullPolicy::Always && self.image_present(&name).await? {
            return Ok(());
        }
        match policy {
            PullPolicy::Never => Err(RuntimeError::ImageNeverPull { image: name }),
            PullPolicy::Always | PullPolicy::IfNotPresent => {
                self.pull_image(&name, &[]).await.map(|_| ())
            }
        }
    }

    async fn pull_image(
        &self,
        image: &str,
        credentials: &[RegistryCredential],
    ) -> Result<u64, RuntimeError> {
        let name = normalize_image(image);
        let tmp_dir = self.options.state_dir.join(".pulls");
        let ctx = pull::PullContext {
            client: &self.client,
            snapshotter: &self.options.snapshotter,
            tmp_dir: &tmp_dir,
            registry: self.registry.as_ref(),
        };
        pull::pull(&ctx, &name, credentials)
            .await
            .map(|pulled| pulled.size)
    }

    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let request = self
            .client
            .request(containerd_client::services::v1::DeleteImageRequest {
                name: normalize_image(image),
                sync: true,
                ..Default::default()
            });
        match self.client.images().delete(request).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Rpc {
                step: "delete image",
                source,
            }),
        }
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        containers::create(self, config).await
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        tasks::start(self, id).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        tasks::stop(self, id, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        containers::remove(self, id).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        containers::status(self, id).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        containers::list(self).await
    }

    async fn recover(&self) -> Result<(), RuntimeError> {
        tasks::recover(self).await
    }

    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError> {
        exec::exec(self, id, request).await
    }

    async fn attach(&self, id: &str, request: AttachRequest) -> Result<ExecSession, RuntimeError> {
        exec::attach(self, id, request).await
    }

    fn exits(&self) -> Option<tokio::sync::broadcast::Receiver<super::ContainerExit>> {
        Some(self.states.exits())
    }

    async fn port_forward(
        &self,
        netns: Option<&Path>,
        port: u16,
    ) -> Result<Box<dyn super::PortStream>, RuntimeError> {
        Ok(Box::new(portforward::dial(netns, port).await?))
    }
}
