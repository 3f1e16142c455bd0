//! Errors of the container runtime layer: one variant per failing step.

use std::path::PathBuf;

/// What went wrong in a [`ContainerRuntime`](super::ContainerRuntime) call.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not present (and cannot be pulled yet).
    #[error("image {image} not found")]
    ImageNotFound {
        /// Normalised image name.
        image: String,
    },
    /// The image is missing and the pull policy is `Never`.
    #[error("image {image} is not present with pull policy of Never")]
    ImageNeverPull {
        /// Normalised image name.
        image: String,
    },
    /// Pulling the image from its registry failed.
    #[error("failed to pull and unpack image \"{image}\": {reason}")]
    Pull {
        /// Normalised image name.
        image: String,
        /// What went wrong.
        reason: String,
    },
    /// No such container.
    #[error("container {id} not found")]
    ContainerNotFound {
        /// Container id.
        id: String,
    },
    /// The container exists but is not running (exec/attach).
    #[error("container {id} is not running")]
    ContainerNotRunning {
        /// Container id.
        id: String,
    },
    /// Connecting to the runtime endpoint failed.
    #[error("connecting to container runtime at {endpoint}")]
    Connect {
        /// The endpoint (socket path).
        endpoint: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The endpoint is not a `unix://` URL or a path.
    #[error("unsupported container runtime endpoint {endpoint}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
    },
    /// A runtime RPC failed.
    #[error("{step}: {source}")]
    Rpc {
        /// Which step.
        step: &'static str,
        /// gRPC status.
        #[source]
        source: tonic::Status,
    },
    /// A local I/O step failed.
    #[error("{step} {path}: {source}", path = path.display())]
    Io {
        /// Which step.
        step: &'static str,
        /// The file involved.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An image archive is malformed.
    #[error("invalid image archive {path}: {reason}", path = path.display())]
    InvalidArchive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Image metadata stored in the runtime is malformed or unusable.
    #[error("invalid image {image}: {reason}")]
    InvalidImage {
        /// Image name.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// The container config cannot be turned into a runtime spec.
    #[error("invalid container config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The operation is not supported by this runtime.
    #[error("{operation} is not supported")]
    Unsupported {
        /// The operation.
        operation: &'static str,
    },
    /// A failure injected by a test through the fake.
    #[error("injected failure: {0}")]
    Injected(String),
}

impl RuntimeError {
    /// A `map_err` adapter wrapping a gRPC status as [`RuntimeError::Rpc`] for `step`.
    pub fn rpc(step: &'static str) -> impl FnOnce(tonic::Status) -> RuntimeError {
        move |source| RuntimeError::Rpc { step, source }
    }

    /// Whether this is a gRPC `NotFound` (or one of the not-found variants).
    pub fn is_not_found(&self) -> bool {
        match self {
            RuntimeError::Rpc { source, .. } => source.code() == tonic::Code::NotFound,
            RuntimeError::ContainerNotFound { .. } | RuntimeError::ImageNotFound { .. } => true,
            _ => false,
        }
    }
}
