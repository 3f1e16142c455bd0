//! Reading image archives: OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/...`)
//! and docker-archives (`manifest.json`, as `docker save` writes them).
//!
//! The archive is scanned once for its small metadata files and the position of every other
//! file, so blobs are later streamed straight out of the tar without unpacking it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::runtime::{normalize_image, RuntimeError};

/// OCI annotation with the full image name (what containerd writes).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation with the tag (or full reference).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Media type of a docker image manifest.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of a docker manifest list.
pub const MEDIA_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Media type of an OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const MEDIA_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Files bigger than this are not kept in memory while scanning.
const SMALL_FILE: u64 = 4 << 20;

/// Where a file's bytes are inside the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Byte offset of the content in the tar file.
    pub offset: u64,
    /// Content length.
    pub size: u64,
}

/// The bytes of a blob: a span of the archive or bytes synthesised during import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobSource {
    /// Stored in the archive.
    Span(Span),
    /// Held in memory.
    Memory(Vec<u8>),
}

/// A content descriptor (the fields containerd needs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
}

/// One image (tag) the archive holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveImage {
    /// Normalised name, e.g. `docker.io/library/busybox:1.35`.
    pub name: String,
    /// The manifest or index the name points at.
    pub target: Desc,
}

/// A scanned archive.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    /// The tar file.
    pub path: PathBuf,
    /// Blobs by digest.
    pub blobs: HashMap<String, BlobSource>,
    /// Named images.
    pub images: Vec<ArchiveImage>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidArchive {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Formats a sha256 digest of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl Archive {
    /// Scans the tar at `path` (blocking I/O: call from `spawn_blocking`).
    pub fn scan(path: &Path) -> Result<Archive, RuntimeError> {
        let file = std::fs::File::open(path).map_err(|source| RuntimeError::Io {
            step: "opening image archive",
            path: path.to_path_buf(),
            source,
        })?;
        let read_err = |source| RuntimeError::Io {
            step: "reading image archive",
            path: path.to_path_buf(),
            source,
        };
        let mut tar = tar::Archive::new(file);
        let mut spans: HashMap<String, Span> = HashMap::new();
        let mut small: HashMap<String, Vec<u8>> = HashMap::new();
        for entry in tar.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(read_err)?
                .to_string_lossy()
                .to_string();
            let name = name.trim_start_matches("./").to_string();
            let span = Span {
                offset: entry.raw_file_position(),
                size: entry.size(),
            };
            if (span.size <= SMALL_FILE && !name.starts_with("blobs/")) || name.ends_with(".json") {
                let mut data = Vec::with_capacity(span.size as usize);
                entry.read_to_end(&mut data).map_err(read_err)?;
                small.insert(name.clone(), data);
            }
            spans.insert(name, span);
        }
        let mut archive = Archive {
            path: path.to_path_buf(),
            ..Default::default()
        };
        if let Some(index) = small.get("index.json") {
            archive.read_oci_layout(index, &spans)?;
        } else if let Some(manifest) = small.get("manifest.json") {
            archive.read_docker_archive(manifest, &spans, &small)?;
        } else {
            return Err(invalid(path, "neither index.json nor manifest.json found"));
        }
        Ok(archive)
    }

    fn read_oci_layout(
        &mut self,
        index: &[u8],
        spans: &HashMap<String, Span>,
    ) -> Result<(), RuntimeError> {
        for (name, span) in spans {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                self.blobs
                    .insert(format!("sha256:{hex}"), BlobSource::Span(*span));
            }
        }
        let index: ImageIndex = serde_json::from_slice(index)
            .map_err(|e| invalid(&self.path, format!("index.json: {e}")))?;
        for manifest in index.manifests() {
            let annotations = manifest.annotations().clone().unwrap_or_default();
            let name = annotations
                .get(ANNOTATION_IMAGE_NAME)
                .or_else(|| annotations.get(ANNOTATION_REF_NAME));
            let Some(name) = name else {
                tracing::debug!(digest = %manifest.digest(), "unnamed manifest in archive, skipped");
                continue;
            };
            let size = i64::try_from(manifest.size())
                .map_err(|_| invalid(&self.path, "descriptor size too large"))?;
            let target = Desc {
                media_type: manifest.media_type().to_string(),
                digest: manifest.digest().to_string(),
                size,
            };
            if !self.blobs.contains_key(&target.digest) {
                return Err(invalid(
                    &self.path,
                    format!("manifest blob {} missing", target.digest),
                ));
            }
            self.images.push(ArchiveImage {
                name: normalize_image(name),
                target,
            });
        }
        Ok(())
    }

    fn read_docker_archive(
        &mut self,
        manifest: &[u8],
        spans: &HashMap<String, Span>,
        small: &HashMap<String, Vec<u8>>,
    ) -> Result<(), RuntimeError> {
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(manifest)
            .map_err(|e| invalid(&self.path, format!("manifest.json: {e}")))?;
        for entry in entries {
            let config = small
                .get(&entry.config)
                .ok_or_else(|| invalid(&self.path, format!("config {} missing", entry.config)))?;
            let parsed: ImageConfiguration = serde_json::from_slice(config)
                .map_err(|e| invalid(&self.path, format!("config {}: {e}", entry.config)))?;
            let diff_ids = parsed.rootfs().diff_ids();
            if diff_ids.len() != entry.layers.len() {
                return Err(invalid(&self.path, "layer count differs from diff_ids"));
            }
            let config_digest = sha256_digest(config);
            self.blobs
                .insert(config_digest.clone(), BlobSource::Memory(config.clone()));
            let mut layers = Vec::new();
            for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
                let span = spans
                    .get(layer.trim_start_matches("./"))
                    .ok_or_else(|| invalid(&self.path, format!("layer {layer} missing")))?;
                // docker-archive layers are uncompressed: their digest is their diff id.
                self.blobs.insert(diff_id.clone(), BlobSource::Span(*span));
                layers.push(serde_json::json!({
                    "mediaType": MEDIA_DOCKER_LAYER,
                    "digest": diff_id,
                    "size": span.size,
                }));
            }
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_DOCKER_MANIFEST,
                "config": {
                    "mediaType": MEDIA_DOCKER_CONFIG,
                    "digest": config_digest,
                    "size": config.len(),
                },
                "layers": layers,
            });
            let manifest = serde_json::to_vec(&manifest)
                .map_err(|e| invalid(&self.path, format!("encoding manifest: {e}")))?;
            let target = Desc {
                media_type: MEDIA_DOCKER_MANIFEST.to_string(),
                digest: sha256_digest(&manifest),
                size: manifest.len() as i64,
            };
            self.blobs
                .insert(target.digest.clone(), BlobSource::Memory(manifest));
            for tag in entry.repo_tags.unwrap_or_default() {
                self.images.push(ArchiveImage {
                    name: normalize_image(&tag),
                    target: target.clone(),
                });
            }
        }
        Ok(())
    }

    /// Reads a blob fully into memory (for manifests and configs).
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        match self.blobs.get(digest) {
            Some(BlobSource::Memory(data)) => Ok(data.clone()),
            Some(BlobSource::Span(span)) => {
                use std::io::{Seek, SeekFrom};
                let io_err = |source| RuntimeError::Io {
                    step: "reading blob from image archive",
                    path: self.path.clone(),
                    source,
                };
                let mut file = std::fs::File::open(&self.path).map_err(io_err)?;
                file.seek(SeekFrom::Start(span.offset)).map_err(io_err)?;
                let mut data = vec![0; span.size as usize];
                file.read_exact(&mut data).map_err(io_err)?;
                Ok(data)
            }
            None => Err(invalid(&self.path, format!("blob {digest} missing"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_file(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data)
            .expect("append");
    }

    fn write_tar(files: &[(&str, Vec<u8>)]) -> tempfile::NamedTempFile {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            add_file(&mut builder, name, data);
        }
        let bytes = builder.into_inner().expect("tar");
        let file = tempfile::NamedTempFile::new().expect("tempfile");
        std::fs::write(file.path(), bytes).expect("write");
        file
    }

    #[test]
    fn oci_layout_archive_yields_named_images_and_blob_spans() {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let config_digest = sha256_digest(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
            config.len()
        )
        .into_bytes();
        let manifest_digest = sha256_digest(&manifest);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{manifest_digest}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/busybox:1.35","org.opencontainers.image.ref.name":"1.35"}}}}]}}"#,
            manifest.len()
        );
        let tar = write_tar(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json", index.into_bytes()),
            (
                &format!("blobs/sha256/{}", &manifest_digest[7..]),
                manifest.clone(),
            ),
            (
                &format!("blobs/sha256/{}", &config_digest[7..]),
                config.clone(),
            ),
        ]);
        let archive = Archive::scan(tar.path()).expect("scan");
        assert_eq!(archive.images.len(), 1);
        assert_eq!(archive.images[0].name, "docker.io/library/busybox:1.35");
        assert_eq!(archive.images[0].target.digest, manifest_digest);
        assert_eq!(archive.read_blob(&manifest_digest).expect("blob"), manifest);
        assert_eq!(archive.read_blob(&config_digest).expect("blob"), config);
    }

    #[test]
    fn docker_archive_gets_a_synthesised_manifest() {
        let layer = b"not really a tar but bytes".to_vec();
        let diff_id = sha256_digest(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        )
        .into_bytes();
        let tar = write_tar(&[
            (
                "manifest.json",
                br#"[{"Config":"abc.json","RepoTags":["busybox:1.35"],"Layers":["l1/layer.tar"]}]"#
                    .to_vec(),
            ),
            ("abc.json", config),
            ("l1/layer.tar", layer.clone()),
        ]);
        let archive = Archive::scan(tar.path()).expect("scan");
        assert_eq!(archive.images[0].name, "docker.io/library/busybox:1.35");
        assert_eq!(archive.images[0].target.media_type, MEDIA_DOCKER_MANIFEST);
        assert_eq!(archive.read_blob(&diff_id).expect("layer"), layer);
        let manifest = archive
            .read_blob(&archive.images[0].target.digest)
            .expect("manifest");
        assert_eq!(sha256_digest(&manifest), archive.images[0].target.digest);
    }

    #[test]
    fn archive_without_index_is_rejected() {
        let tar = write_tar(&[("hello.txt", b"hi".to_vec())]);
        assert!(matches!(
            Archive::scan(tar.path()),
            Err(RuntimeError::InvalidArchive { .. })
        ));
    }
}
