//! Connecting to containerd and stamping requests with the namespace (and lease).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, diff_client::DiffClient,
    images_client::ImagesClient, leases_client::LeasesClient,
    snapshots::snapshots_client::SnapshotsClient, tasks_client::TasksClient,
    version_client::VersionClient, CreateRequest as CreateLeaseRequest,
    DeleteRequest as DeleteLeaseRequest,
};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

use crate::runtime::RuntimeError;

/// gRPC metadata key carrying the containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// gRPC metadata key carrying a lease id (resources created under it are kept until it ends).
const LEASE_HEADER: &str = "containerd-lease";

/// Turns `unix:///run/containerd/containerd.sock` (or a bare path) into a socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, RuntimeError> {
    let path = match endpoint.strip_prefix("unix://") {
        Some(path) => path,
        None if endpoint.contains("://") => {
            return Err(RuntimeError::Endpoint {
                endpoint: endpoint.to_string(),
            })
        }
        None => endpoint,
    };
    if path.is_empty() {
        return Err(RuntimeError::Endpoint {
            endpoint: endpoint.to_string(),
        });
    }
    Ok(PathBuf::from(path))
}

/// A connection to containerd with a fixed namespace.
#[derive(Clone, Debug)]
pub struct Client {
    channel: Channel,
    namespace: MetadataValue<tonic::metadata::Ascii>,
}

impl Client {
    /// Connects to the unix socket of `endpoint`; requests go to `namespace`.
    pub async fn connect(endpoint: &str, namespace: &str) -> Result<Self, RuntimeError> {
        let path = socket_path(endpoint)?;
        let namespace = namespace.parse().map_err(|_| RuntimeError::Endpoint {
            endpoint: format!("namespace {namespace}"),
        })?;
        let channel =
            containerd_client::connect(&path)
                .await
                .map_err(|source| RuntimeError::Connect {
                    endpoint: path.display().to_string(),
                    source,
                })?;
        Ok(Self { channel, namespace })
    }

    /// Like [`connect`](Self::connect), retrying until `timeout` (containerd may still be starting).
    pub async fn connect_with_retry(
        endpoint: &str,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Self, RuntimeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match Self::connect(endpoint, namespace).await {
                Ok(client) => return Ok(client),
                Err(err @ RuntimeError::Connect { .. })
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(error = %err, "containerd not reachable yet, retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Wraps a message in a request carrying the namespace.
    pub fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(NAMESPACE_HEADER, self.namespace.clone());
        request
    }

    /// Wraps a message in a request carrying the namespace and, if given, a lease.
    pub fn leased_request<T>(&self, message: T, lease: Option<&str>) -> Request<T> {
        let mut request = self.request(message);
        if let Some(value) = lease.and_then(|l| l.parse().ok()) {
            request.metadata_mut().insert(LEASE_HEADER, value);
        }
        request
    }

    /// Creates a lease that expires after `expiry` (in case it is never deleted); returns its id.
    /// Resources created with [`leased_request`](Self::leased_request) under it are safe from
    /// garbage collection until it is deleted.
    pub async fn create_lease(
        &self,
        prefix: &str,
        expiry: Duration,
    ) -> Result<String, RuntimeError> {
        let now = jiff::Timestamp::now();
        let expires = jiff::SignedDuration::try_from(expiry)
            .ok()
            .and_then(|d| now.checked_add(d).ok())
            .unwrap_or(now);
        let id = format!("{prefix}-{}", now.as_nanosecond());
        let request = self.request(CreateLeaseRequest {
            id: id.clone(),
            labels: HashMap::from([(
                "containerd.io/gc.expire".to_string(),
                expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            )]),
        });
        self.leases()
            .create(request)
            .await
            .map_err(RuntimeError::rpc("create lease"))?;
        Ok(id)
    }

    /// Deletes a lease (what it held becomes collectable unless referenced); failures are logged.
    pub async fn delete_lease(&self, id: &str) {
        let request = self.request(DeleteLeaseRequest {
            id: id.to_string(),
            sync: false,
        });
        if let Err(status) = self.leases().delete(request).await {
            tracing::warn!(lease = id, error = %status, "deleting lease");
        }
    }

    /// The underlying gRPC channel (for services without an accessor here).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Version service.
    pub fn version(&self) -> VersionClient<Channel> {
        VersionClient::new(self.channel.clone())
    }
    /// Content service.
    pub fn content(&self) -> ContentClient<Channel> {
        // Blobs are sent in 1 MiB chunks; replies of Read can be as large.
        ContentClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }
    /// Images service.
    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }
    /// Snapshots service.
    pub fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }
    /// Diff service.
    pub fn diff(&self) -> DiffClient<Channel> {
        DiffClient::new(self.channel.clone())
    }
    /// Leases service.
    pub fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }
    /// Containers service.
    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }
    /// Tasks service.
    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_accepts_unix_urls_and_bare_paths_only() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").expect("unix url"),
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(
            socket_path("/tmp/c.sock").expect("path"),
            PathBuf::from("/tmp/c.sock")
        );
        assert!(socket_path("tcp://127.0.0.1:1").is_err());
        assert!(socket_path("unix://").is_err());
    }
}
