//! Importing an image archive: upload blobs through the Content service (with the GC labels
//! containerd's own importer sets), unpack the layers, then create or update the image records.
//! Everything runs under a temporary lease so nothing is collected half-way.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::{CreateImageRequest, Image, UpdateImageRequest};
use containerd_client::types::Descriptor;
use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::archive::{Archive, Desc};
use super::client::Client;
use super::content::{self, Source};
use super::image::{chain_ids, config_desc, is_index, layer_descs, pick_manifest};
use super::unpack::unpack;
use crate::runtime::RuntimeError;

/// How long an import lease lives if the kubelet dies before removing it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// Imports the archive at `path`; returns the image names it created or updated.
pub async fn import(
    client: &Client,
    snapshotter: &str,
    path: &Path,
) -> Result<Vec<String>, RuntimeError> {
    let owned = path.to_path_buf();
    let archive = tokio::task::spawn_blocking(move || Archive::scan(&owned))
        .await
        .map_err(|e| RuntimeError::InvalidArchive {
            path: path.to_path_buf(),
            reason: format!("scanning task failed: {e}"),
        })??;
    let lease = client.create_lease("kubelet-import", LEASE_EXPIRY).await?;
    let result = import_with_lease(client, snapshotter, &archive, &lease).await;
    client.delete_lease(&lease).await;
    result
}

async fn import_with_lease(
    client: &Client,
    snapshotter: &str,
    archive: &Archive,
    lease: &str,
) -> Result<Vec<String>, RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidArchive {
        path: archive.path.clone(),
        reason,
    };
    let targets: BTreeSet<&str> = archive
        .images
        .iter()
        .map(|i| i.target.digest.as_str())
        .collect();
    for target in targets {
        let Some(image) = archive.images.iter().find(|i| i.target.digest == target) else {
            continue;
        };
        let mut manifest_desc = image.target.clone();
        let mut index_labels = None;
        if is_index(&manifest_desc.media_type) {
            let index = archive.read_blob(&manifest_desc.digest)?;
            manifest_desc = pick_manifest(&index).map_err(&invalid)?;
            index_labels = Some(HashMap::from([(
                "containerd.io/gc.ref.content.m.0".to_string(),
                manifest_desc.digest.clone(),
            )]));
        }
        import_manifest(client, snapshotter, archive, lease, &manifest_desc).await?;
        if let Some(labels) = index_labels {
            put_blob(client, lease, archive, &image.target, labels).await?;
        }
    }
    let mut names = Vec::new();
    for image in &archive.images {
        put_image_record(client, &image.name, &image.target).await?;
        tracing::info!(
            image = image.name,
            digest = image.target.digest,
            "image imported"
        );
        names.push(image.name.clone());
    }
    Ok(names)
}

async fn import_manifest(
    client: &Client,
    snapshotter: &str,
    archive: &Archive,
    lease: &str,
    manifest_desc: &Desc,
) -> Result<(), RuntimeError> {
    let invalid = |reason: String| RuntimeError::InvalidArchive {
        path: archive.path.clone(),
        reason,
    };
    let manifest_bytes = archive.read_blob(&manifest_desc.digest)?;
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| invalid(format!("manifest {}: {e}", manifest_desc.digest)))?;
    let config = config_desc(&manifest).map_err(&invalid)?;
    let layers = layer_descs(&manifest).map_err(&invalid)?;
    let config_bytes = archive.read_blob(&config.digest)?;
    let parsed: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| invalid(format!("config {}: {e}", config.digest)))?;
    let diff_ids = parsed.rootfs().diff_ids().clone();
    if diff_ids.len() != layers.len() {
        return Err(invalid(format!(
            "manifest has {} layers, config {} diff ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        put_blob(client, lease, archive, layer, labels).await?;
    }
    let top = chain_ids(&diff_ids).pop().unwrap_or_default();
    let config_labels =
        HashMap::from([(format!("containerd.io/gc.ref.snapshot.{snapshotter}"), top)]);
    put_blob(client, lease, archive, &config, config_labels).await?;
    let mut manifest_labels = HashMap::from([(
        "containerd.io/gc.ref.content.config".to_string(),
        config.digest.clone(),
    )]);
    for (i, layer) in layers.iter().enumerate() {
        manifest_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            layer.digest.clone(),
        );
    }
    put_blob(client, lease, archive, manifest_desc, manifest_labels).await?;
    unpack(client, Some(lease), snapshotter, &layers, &diff_ids).await?;
    Ok(())
}

/// Uploads one blob (if missing) and makes sure it carries `labels`.
async fn put_blob(
    client: &Client,
    lease: &str,
    archive: &Archive,
    desc: &Desc,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    let blob = archive
        .blobs
        .get(&desc.digest)
        .ok_or_else(|| RuntimeError::InvalidArchive {
            path: archive.path.clone(),
            reason: format!("blob {} missing", desc.digest),
        })?;
    let existing = content::info(client, &desc.digest).await?;
    match existing {
        Some(info) => {
            let missing: HashMap<String, String> = labels
                .into_iter()
                .filter(|(k, v)| info.labels.get(k) != Some(v))
                .collect();
            content::set_labels(client, &desc.digest, missing).await
        }
        None => {
            content::write_blob(
                client,
                Some(lease),
                &desc.digest,
                desc.size,
                Source::from_blob(&archive.path, blob),
                labels,
            )
            .await
        }
    }
}

/// Creates the image record `name` -> `target`, or points an existing one at `target`.
pub(crate) async fn put_image_record(
    client: &Client,
    name: &str,
    target: &Desc,
) -> Result<(), RuntimeError> {
    let image = Image {
        name: name.to_string(),
        target: Some(Descriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size,
            ..Default::default()
        }),
        ..Default::default()
    };
    let create = client.request(CreateImageRequest {
        image: Some(image.clone()),
        ..Default::default()
    });
    match client.images().create(create).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            let update = client.request(UpdateImageRequest {
                image: Some(image),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["target".to_string()],
                }),
                ..Default::default()
            });
            client
                .images()
                .update(update)
                .await
                .map_err(RuntimeError::rpc("update image record"))?;
            Ok(())
        }
        Err(source) => Err(RuntimeError::Rpc {
            step: "create image record",
            source,
        }),
    }
}
