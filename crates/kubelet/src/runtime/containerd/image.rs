//! Image metadata: picking the linux/amd64 manifest out of an index, chain ids, and loading an
//! image's manifest and config back from containerd for container creation.

use oci_spec::image::{Arch, ImageConfiguration, ImageIndex, ImageManifest, Os};
use sha2::{Digest as _, Sha256};

use super::archive::{Desc, MEDIA_DOCKER_MANIFEST_LIST, MEDIA_OCI_INDEX};
use super::client::Client;
use super::content;
use crate::runtime::RuntimeError;
use containerd_client::services::v1::GetImageRequest;

/// Whether a media type is an index (manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_MANIFEST_LIST
}

/// The descriptor of the linux/amd64 manifest of an index (the first one without a platform
/// if none names it).
pub fn pick_manifest(index: &[u8]) -> Result<Desc, String> {
    let index: ImageIndex = serde_json::from_slice(index).map_err(|e| format!("index: {e}"))?;
    let matches = |d: &&oci_spec::image::Descriptor| {
        d.platform()
            .as_ref()
            .is_some_and(|p| *p.architecture() == Arch::Amd64 && *p.os() == Os::Linux)
    };
    let chosen = index
        .manifests()
        .iter()
        .find(matches)
        .or_else(|| index.manifests().iter().find(|d| d.platform().is_none()))
        .ok_or_else(|| "no linux/amd64 manifest in index".to_string())?;
    Ok(Desc {
        media_type: chosen.media_type().to_string(),
        digest: chosen.digest().to_string(),
        size: i64::try_from(chosen.size()).map_err(|_| "manifest size too large".to_string())?,
    })
}

/// Layer chain ids: `chain[0] = diff[0]`, `chain[i] = sha256(chain[i-1] + " " + diff[i])`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {diff_id}").as_bytes()))
            ),
        };
        chain.push(next);
    }
    chain
}

/// The descriptor of a manifest's config.
pub fn config_desc(manifest: &ImageManifest) -> Result<Desc, String> {
    let config = manifest.config();
    Ok(Desc {
        media_type: config.media_type().to_string(),
        digest: config.digest().to_string(),
        size: i64::try_from(config.size()).map_err(|_| "config size too large".to_string())?,
    })
}

/// The layer descriptors of a manifest.
pub fn layer_descs(manifest: &ImageManifest) -> Result<Vec<Desc>, String> {
    manifest
        .layers()
        .iter()
        .map(|l| {
            Ok(Desc {
                media_type: l.media_type().to_string(),
                digest: l.digest().to_string(),
                size: i64::try_from(l.size()).map_err(|_| "layer size too large".to_string())?,
            })
        })
        .collect()
}

/// An image as stored in containerd, resolved down to its config.
#[derive(Clone, Debug)]
pub struct StoredImage {
    /// Image name.
    pub name: String,
    /// The image's config.
    pub config: ImageConfiguration,
    /// Top layer chain id (the snapshot parent for containers).
    pub top_chain_id: String,
    /// Bytes of config + layers + manifest.
    pub size: u64,
}

/// Loads `name` (normalised) from containerd; `Ok(None)` if there is no such image.
pub async fn load(client: &Client, name: &str) -> Result<Option<StoredImage>, RuntimeError> {
    let request = client.request(GetImageRequest {
        name: name.to_string(),
    });
    let image = match client.images().get(request).await {
        Ok(response) => response.into_inner().image,
        Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
        Err(source) => {
            return Err(RuntimeError::Rpc {
                step: "get image",
                source,
            })
        }
    };
    let invalid = |reason: String| RuntimeError::InvalidImage {
        image: name.to_string(),
        reason,
    };
    let target = image
        .and_then(|i| i.target)
        .ok_or_else(|| invalid("image has no target".to_string()))?;
    let mut manifest_desc = Desc {
        media_type: target.media_type,
        digest: target.digest,
        size: target.size,
    };
    if is_index(&manifest_desc.media_type) {
        let index = content::read_blob(client, &manifest_desc.digest).await?;
        manifest_desc = pick_manifest(&index).map_err(invalid)?;
    }
    let manifest_bytes = content::read_blob(client, &manifest_desc.digest).await?;
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| invalid(format!("manifest: {e}")))?;
    let config_desc = config_desc(&manifest).map_err(invalid)?;
    let config_bytes = content::read_blob(client, &config_desc.digest).await?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| invalid(format!("config: {e}")))?;
    let top_chain_id = chain_ids(config.rootfs().diff_ids())
        .pop()
        .ok_or_else(|| invalid("image has no layers".to_string()))?;
    let size = manifest.layers().iter().map(|l| l.size()).sum::<u64>()
        + manifest.config().size()
        + manifest_bytes.len() as u64;
    Ok(Some(StoredImage {
        name: name.to_string(),
        config,
        top_chain_id,
        size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        let want = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:aaaa sha256:bbbb"))
        );
        assert_eq!(chain[1], want);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn pick_manifest_prefers_linux_amd64() {
        let d = |n: char| format!("sha256:{}", n.to_string().repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},
              {{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let chosen = pick_manifest(index.as_bytes()).expect("pick");
        assert_eq!(chosen.digest, d('b'));
        assert_eq!(chosen.size, 2);
        let only_arm = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#,
            d('a')
        );
        assert!(pick_manifest(only_arm.as_bytes()).is_err());
    }
}
