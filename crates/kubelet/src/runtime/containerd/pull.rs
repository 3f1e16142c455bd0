//! Pulling an image from a registry (containerd 1.6 has no Transfer service, so this is client
//! work): resolve the manifest (picking linux/amd64 out of an index), download each missing blob
//! to a temporary file and write it through the Content service with the same GC labels the
//! archive importer sets, unpack the layers through snapshots, then create or update the image
//! record. Everything runs under a temporary lease.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::archive::{Desc, Span};
use super::client::Client;
use super::content::{self, Source};
use super::image::{chain_ids, config_desc, is_index, layer_descs, pick_manifest};
use super::import::put_image_record;
use super::unpack::unpack;
use crate::runtime::registry::{with_digest, FetchedManifest, Registry, RegistryCredential};
use crate::runtime::RuntimeError;

/// How long a pull lease lives if the kubelet dies before removing it.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// What a pull did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pulled {
    /// Digest of the image's target (manifest or index).
    pub digest: String,
    /// Bytes of manifest + config + compressed layers.
    pub size: u64,
}

/// Everything one pull needs.
pub struct PullContext<'a> {
    /// containerd.
    pub client: &'a Client,
    /// Snapshotter to unpack into.
    pub snapshotter: &'a str,
    /// Directory for blobs being downloaded (created if missing).
    pub tmp_dir: &'a Path,
    /// Where manifests and blobs come from.
    pub registry: &'a dyn Registry,
}

fn failed(name: &str, reason: String) -> RuntimeError {
    RuntimeError::Pull {
        image: name.to_string(),
        reason,
    }
}

/// Pulls the normalised image `name`, trying each credential in turn (anonymous when there is
/// none), and returns its digest and size.
pub async fn pull(
    ctx: &PullContext<'_>,
    name: &str,
    credentials: &[RegistryCredential],
) -> Result<Pulled, RuntimeError> {
    let candidates: Vec<Option<&RegistryCredential>> = if credentials.is_empty() {
        vec![None]
    } else {
        credentials.iter().map(Some).collect()
    };
    let mut last_error = None;
    let mut resolved = None;
    for credential in candidates {
        match ctx.registry.manifest(name, credential).await {
            Ok(top) => {
                resolved = Some((top, credential));
                break;
            }
            Err(error) => last_error = Some(error),
        }
    }
    let Some((top, credential)) = resolved else {
        let reason = last_error.map(|e| e.to_string()).unwrap_or_default();
        return Err(failed(
            name,
            format!("failed to resolve reference \"{name}\": {reason}"),
        ));
    };
    let lease = ctx
        .client
        .create_lease("kubelet-pull", LEASE_EXPIRY)
        .await?;
    let result = pull_with_lease(ctx, name, credential, &lease, top).await;
    ctx.client.delete_lease(&lease).await;
    result
}

async fn pull_with_lease(
    ctx: &PullContext<'_>,
    name: &str,
    credential: Option<&RegistryCredential>,
    lease: &str,
    top: FetchedManifest,
) -> Result<Pulled, RuntimeError> {
    let target = Desc {
        media_type: top.media_type.clone(),
        digest: top.digest.clone(),
        size: top.bytes.len() as i64,
    };
    let (manifest_desc, manifest_bytes, index) = if is_index(&top.media_type) {
        let chosen = pick_manifest(&top.bytes).map_err(|e| failed(name, e))?;
        let fetched = ctx
            .registry
            .manifest(&with_digest(name, &chosen.digest), credential)
            .await
            .map_err(|e| failed(name, format!("failed to fetch manifest: {e}")))?;
        let desc = Desc {
            media_type: chosen.media_type,
            digest: fetched.digest.clone(),
            size: fetched.bytes.len() as i64,
        };
        (desc, fetched.bytes, Some(top))
    } else {
        (target.clone(), top.bytes, None)
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| failed(name, format!("manifest {}: {e}", manifest_desc.digest)))?;
    let config = config_desc(&manifest).map_err(|e| failed(name, e))?;
    let layers = layer_descs(&manifest).map_err(|e| failed(name, e))?;
    let config_bytes = fetch_small_blob(ctx, name, credential, &config.digest).await?;
    let parsed: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| failed(name, format!("config {}: {e}", config.digest)))?;
    let diff_ids = parsed.rootfs().diff_ids().clone();
    if diff_ids.len() != layers.len() {
        return Err(failed(
            name,
            format!(
                "manifest has {} layers, config {} diff ids",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
        put_layer(ctx, name, credential, lease, layer, labels).await?;
    }
    let top_chain = chain_ids(&diff_ids).pop().unwrap_or_default();
    let config_labels = HashMap::from([(
        format!("containerd.io/gc.ref.snapshot.{}", ctx.snapshotter),
        top_chain,
    )]);
    put_memory(ctx, lease, &config, &config_bytes, config_labels).await?;
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
    put_memory(ctx, lease, &manifest_desc, &manifest_bytes, manifest_labels).await?;
    if let Some(index) = &index {
        let labels = HashMap::from([(
            "containerd.io/gc.ref.content.m.0".to_string(),
            manifest_desc.digest.clone(),
        )]);
        put_memory(ctx, lease, &target, &index.bytes, labels).await?;
    }
    unpack(ctx.client, Some(lease), ctx.snapshotter, &layers, &diff_ids).await?;
    put_image_record(ctx.client, name, &target).await?;
    let size = layers.iter().map(|l| l.size.max(0) as u64).sum::<u64>()
        + config.size.max(0) as u64
        + manifest_bytes.len() as u64;
    tracing::info!(image = name, digest = target.digest, size, "image pulled");
    Ok(Pulled {
        digest: target.digest,
        size,
    })
}

/// Downloads a small blob (a config) into memory.
async fn fetch_small_blob(
    ctx: &PullContext<'_>,
    name: &str,
    credential: Option<&RegistryCredential>,
    digest: &str,
) -> Result<Vec<u8>, RuntimeError> {
    if content::info(ctx.client, digest).await?.is_some() {
        return content::read_blob(ctx.client, digest).await;
    }
    let mut out: Vec<u8> = Vec::new();
    ctx.registry
        .blob(name, digest, credential, &mut out)
        .await
        .map_err(|e| failed(name, format!("failed to copy {digest}: {e}")))?;
    Ok(out)
}

/// Writes an in-memory blob (if missing) and makes sure it carries `labels`.
async fn put_memory(
    ctx: &PullContext<'_>,
    lease: &str,
    desc: &Desc,
    bytes: &[u8],
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    match content::info(ctx.client, &desc.digest).await? {
        Some(info) => content::set_labels(ctx.client, &desc.digest, missing(&info, labels)).await,
        None => {
            content::write_blob(
                ctx.client,
                Some(lease),
                &desc.digest,
                bytes.len() as i64,
                Source::Memory(bytes),
                labels,
            )
            .await
        }
    }
}

fn missing(
    info: &containerd_client::services::v1::Info,
    labels: HashMap<String, String>,
) -> HashMap<String, String> {
    labels
        .into_iter()
        .filter(|(k, v)| info.labels.get(k) != Some(v))
        .collect()
}

/// Downloads a layer (if missing) to a temporary file, writes it through the Content service and
/// makes sure it carries `labels`.
async fn put_layer(
    ctx: &PullContext<'_>,
    name: &str,
    credential: Option<&RegistryCredential>,
    lease: &str,
    layer: &Desc,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    if let Some(info) = content::info(ctx.client, &layer.digest).await? {
        return content::set_labels(ctx.client, &layer.digest, missing(&info, labels)).await;
    }
    let io_err = |step: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { step, path, source }
    };
    tokio::fs::create_dir_all(ctx.tmp_dir)
        .await
        .map_err(io_err("creating pull directory", ctx.tmp_dir))?;
    let file_name = format!(
        "{}-{}",
        layer.digest.replace(':', "-"),
        jiff::Timestamp::now().as_nanosecond()
    );
    let path: PathBuf = ctx.tmp_dir.join(file_name);
    let result = async {
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(io_err("creating layer download", &path))?;
        ctx.registry
            .blob(name, &layer.digest, credential, &mut file)
            .await
            .map_err(|e| failed(name, format!("failed to copy {}: {e}", layer.digest)))?;
        file.sync_all()
            .await
            .map_err(io_err("writing layer download", &path))?;
        let size = file
            .metadata()
            .await
            .map_err(io_err("reading layer download", &path))?
            .len();
        if i64::try_from(size).ok() != Some(layer.size) {
            return Err(failed(
                name,
                format!(
                    "layer {} is {size} bytes, manifest says {}",
                    layer.digest, layer.size
                ),
            ));
        }
        content::write_blob(
            ctx.client,
            Some(lease),
            &layer.digest,
            layer.size,
            Source::File(&path, Span { offset: 0, size }),
            labels,
        )
        .await
    }
    .await;
    if let Err(error) = tokio::fs::remove_file(&path).await {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "removing layer download failed");
        }
    }
    result
}
