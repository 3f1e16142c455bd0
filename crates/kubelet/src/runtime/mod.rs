//! The kubelet's container runtime layer.
//!
//! Everything the kubelet asks of a container runtime goes through the [`ContainerRuntime`] trait:
//! images (import from archives, presence checks), container lifecycle (create, start, stop,
//! remove, status, list), processes inside containers (exec, attach) and TCP connections into a
//! pod's network namespace (port-forward). There are two
//! implementations:
//!
//! - [`containerd::ContainerdRuntime`]: the real one, speaking containerd's native gRPC API
//!   (namespace `k8s.io`), with container output written to `log_path` in the CRI log format
//!   (see [`cri_log`]).
//! - [`fake::FakeRuntime`]: a recording fake that "runs" containers instantly, for unit tests and
//!   hollow nodes.
//!
//! Start reading at [`ContainerRuntime`], then [`types`].

pub mod containerd;
pub mod credentials;
pub mod cri_log;
pub mod error;
pub mod fake;
pub mod image_name;
pub mod log_rotation;
pub mod log_writer;
pub mod registry;
pub mod types;

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use error::RuntimeError;
pub use image_name::normalize_image;
pub use registry::RegistryCredential;
pub use types::ContainerExit;
pub use types::{
    AttachRequest, ContainerConfig, ContainerState, ContainerSummary, ExecRequest, ExecSession,
    ImageInfo, Mount, PullPolicy, Resources, RuntimeVersion, TerminalSize, LABEL_CONTAINER_NAME,
    LABEL_POD_NAME, LABEL_POD_NAMESPACE, LABEL_POD_UID, LABEL_RESTART_COUNT,
};

/// A byte stream to a port inside a pod (see [`ContainerRuntime::port_forward`]).
pub trait PortStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> PortStream for T {}

/// A container runtime as the kubelet sees it.
///
/// Container ids are chosen by the runtime and returned by [`create_container`]; every other
/// method takes such an id. Image names may be given short (`busybox:1.35`); implementations
/// normalise them with [`normalize_image`].
///
/// [`create_container`]: ContainerRuntime::create_container
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Name and version of the runtime (`containerd`, `1.6.20`).
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError>;

    /// Imports an OCI image archive (or a docker-archive) and returns the image names it
    /// created or updated. Importing the same archive twice is a no-op.
    async fn import_image_archive(&self, path: &Path) -> Result<Vec<String>, RuntimeError>;

    /// Every image the runtime holds.
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError>;

    /// Whether the (normalised) image is present and usable.
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError>;

    /// Makes sure the image is present, following the pull policy (pulling anonymously when
    /// needed): a missing image under [`PullPolicy::Never`] is [`RuntimeError::ImageNeverPull`].
    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<(), RuntimeError>;

    /// Pulls the image from its registry (even if present: a moved tag is followed), trying
    /// each credential in turn (anonymous when there is none); returns the image's size in
    /// bytes. Failures are [`RuntimeError::Pull`].
    async fn pull_image(
        &self,
        image: &str,
        credentials: &[RegistryCredential],
    ) -> Result<u64, RuntimeError>;

    /// Deletes the image record `image` (normalised); its content and snapshots go with
    /// containerd's garbage collection. Ok if it does not exist.
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError>;

    /// Creates a container (not started) and returns its id.
    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError>;

    /// Starts a created container; its output goes to the config's `log_path`.
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// Sends SIGTERM (or the image's StopSignal), waits up to `grace`, then SIGKILL.
    /// Ok if the container is not running.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Deletes the task, the container and its snapshot (killing it first if it still runs).
    /// Ok if already gone.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// The state of one container.
    async fn container_status(&self, id: &str) -> Result<ContainerState, RuntimeError>;

    /// Every container this kubelet created (they carry the `io.kubernetes.*` labels), with
    /// their state: used for recovery after a restart and for garbage collection.
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError>;

    /// Re-attaches to containers that survived a kubelet restart (resumes copying their output
    /// to their log files). Call once at start, before using the containers.
    async fn recover(&self) -> Result<(), RuntimeError>;

    /// Runs a process in a running container.
    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError>;

    /// Attaches to the main process of a running container: its output from now on, and its
    /// stdin if the container was created with `stdin: true`. `exit` resolves with the
    /// container's exit code.
    async fn attach(&self, id: &str, request: AttachRequest) -> Result<ExecSession, RuntimeError>;

    /// Exits of containers' main processes from now on, as the runtime reports them, for
    /// callers that want to react at once rather than at their next
    /// [`container_status`](Self::container_status) poll (which stays the source of truth);
    /// `None` if the runtime has no event stream.
    fn exits(&self) -> Option<tokio::sync::broadcast::Receiver<ContainerExit>> {
        None
    }

    /// Opens a TCP connection to `127.0.0.1:port` inside the network namespace at `netns`
    /// (`None`: the host's, for `hostNetwork` pods). Used by port-forward.
    async fn port_forward(
        &self,
        netns: Option<&Path>,
        port: u16,
    ) -> Result<Box<dyn PortStream>, RuntimeError>;
}

#[async_trait::async_trait]
impl<T: ContainerRuntime + ?Sized> ContainerRuntime for std::sync::Arc<T> {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        (**self).version().await
    }
    async fn import_image_archive(&self, path: &Path) -> Result<Vec<String>, RuntimeError> {
        (**self).import_image_archive(path).await
    }
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        (**self).list_images().await
    }
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        (**self).image_present(image).await
    }
    async fn ensure_image(&self, image: &str, policy: PullPolicy) -> Result<(), RuntimeError> {
        (**self).ensure_image(image, policy).await
    }
    async fn pull_image(
        &self,
        image: &str,
        credentials: &[RegistryCredential],
    ) -> Result<u64, RuntimeError> {
        (**self).pull_image(image, credentials).await
    }
    async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        (**self).remove_image(image).await
    }
    async fn create_container(&self, config: &ContainerConfig) -> Result<String, RuntimeError> {
        (**self).create_container(config).await
    }
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        (**self).start_container(id).await
    }
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        (**self).stop_container(id, grace).await
    }
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        (**self).remove_container(id).await
    }
    async fn container_status(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        (**self).container_status(id).await
    }
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>, RuntimeError> {
        (**self).list_containers().await
    }
    async fn recover(&self) -> Result<(), RuntimeError> {
        (**self).recover().await
    }
    async fn exec(&self, id: &str, request: ExecRequest) -> Result<ExecSession, RuntimeError> {
        (**self).exec(id, request).await
    }
    async fn attach(&self, id: &str, request: AttachRequest) -> Result<ExecSession, RuntimeError> {
        (**self).attach(id, request).await
    }
    fn exits(&self) -> Option<tokio::sync::broadcast::Receiver<ContainerExit>> {
        (**self).exits()
    }
    async fn port_forward(
        &self,
        netns: Option<&Path>,
        port: u16,
    ) -> Result<Box<dyn PortStream>, RuntimeError> {
        (**self).port_forward(netns, port).await
    }
}
