//! Unpacking image layers into the snapshotter, in chain order: for each layer not yet
//! committed, `Snapshots.Prepare(tmp, parent)`, `Diff.Apply(mounts, layer)`,
//! `Snapshots.Commit(chain id, tmp)` — what containerd's own unpacker does client-side.

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;
use containerd_client::types::Descriptor;

use super::archive::Desc;
use super::client::Client;
use super::image::chain_ids;
use crate::runtime::RuntimeError;

/// Whether snapshot `key` exists.
pub async fn snapshot_exists(
    client: &Client,
    snapshotter: &str,
    key: &str,
) -> Result<bool, RuntimeError> {
    let request = client.request(StatSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
    });
    match client.snapshots().stat(request).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(source) => Err(RuntimeError::Rpc {
            step: "stat snapshot",
            source,
        }),
    }
}

/// Removes snapshot `key`; Ok if it does not exist.
pub async fn remove_snapshot(
    client: &Client,
    snapshotter: &str,
    key: &str,
) -> Result<(), RuntimeError> {
    let request = client.request(RemoveSnapshotRequest {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
    });
    match client.snapshots().remove(request).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Rpc {
            step: "remove snapshot",
            source,
        }),
    }
}

/// Unpacks `layers` (whose uncompressed digests are `diff_ids`) and returns the top chain id.
pub async fn unpack(
    client: &Client,
    lease: Option<&str>,
    snapshotter: &str,
    layers: &[Desc],
    diff_ids: &[String],
) -> Result<String, RuntimeError> {
    let chain = chain_ids(diff_ids);
    let mut parent = String::new();
    for ((layer, diff_id), chain_id) in layers.iter().zip(diff_ids).zip(&chain) {
        if !snapshot_exists(client, snapshotter, chain_id).await? {
            apply_layer(
                client,
                lease,
                snapshotter,
                layer,
                diff_id,
                chain_id,
                &parent,
            )
            .await?;
        }
        parent = chain_id.clone();
    }
    Ok(parent)
}

async fn apply_layer(
    client: &Client,
    lease: Option<&str>,
    snapshotter: &str,
    layer: &Desc,
    diff_id: &str,
    chain_id: &str,
    parent: &str,
) -> Result<(), RuntimeError> {
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let key = format!("extract-{nanos}-{chain_id}");
    let prepare = client.leased_request(
        PrepareSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.clone(),
            parent: parent.to_string(),
            ..Default::default()
        },
        lease,
    );
    let mounts = client
        .snapshots()
        .prepare(prepare)
        .await
        .map_err(RuntimeError::rpc("prepare snapshot for layer"))?
        .into_inner()
        .mounts;
    let result = async {
        let apply = client.leased_request(
            ApplyRequest {
                diff: Some(Descriptor {
                    media_type: layer.media_type.clone(),
                    digest: layer.digest.clone(),
                    size: layer.size,
                    ..Default::default()
                }),
                mounts,
                ..Default::default()
            },
            lease,
        );
        let applied = client
            .diff()
            .apply(apply)
            .await
            .map_err(RuntimeError::rpc("apply layer"))?
            .into_inner()
            .applied;
        let applied_digest = applied.map(|d| d.digest).unwrap_or_default();
        if applied_digest != diff_id {
            return Err(RuntimeError::Rpc {
                step: "apply layer",
                source: tonic::Status::data_loss(format!(
                    "layer {} unpacked to {applied_digest}, config says {diff_id}",
                    layer.digest
                )),
            });
        }
        let commit = client.leased_request(
            CommitSnapshotRequest {
                snapshotter: snapshotter.to_string(),
                name: chain_id.to_string(),
                key: key.clone(),
                ..Default::default()
            },
            lease,
        );
        match client.snapshots().commit(commit).await {
            Ok(_) => Ok(()),
            // Someone else unpacked the same layer meanwhile.
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                remove_snapshot(client, snapshotter, &key).await
            }
            Err(source) => Err(RuntimeError::Rpc {
                step: "commit layer snapshot",
                source,
            }),
        }
    }
    .await;
    if result.is_err() {
        if let Err(err) = remove_snapshot(client, snapshotter, &key).await {
            tracing::warn!(key, error = %err, "removing failed extraction snapshot");
        }
    }
    result
}
