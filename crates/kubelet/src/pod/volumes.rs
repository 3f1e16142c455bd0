//! Pod volumes on the host: emptyDir, configMap, secret, downwardAPI, projected (those sources;
//! `serviceAccountToken` sources are kept current by the pod worker) and hostPath, under
//! `<root-dir>/pods/<uid>/volumes/<plugin>/<name>`, and the bind mounts they become in each
//! container. File volumes are written as upstream's atomic writer does: the files go to a fresh
//! `..<timestamp>` directory, the `..data` symlink is swapped to it in one rename, and each
//! top-level name is a symlink through `..data`, so a live update is seen whole or not at all.
//! Secret and projected volumes (and `emptyDir` with `medium: Memory`) live on a tmpfs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::env::{field_value, PodSources, RuntimeFields};
use super::mounts::Mounter;
use crate::runtime::Mount;

/// Why a volume could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced ConfigMap is missing.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A referenced Secret is missing.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// A referenced key is missing.
    #[error("configmap or secret \"{name}\" has no key \"{key}\"")]
    KeyNotFound {
        /// Object name.
        name: String,
        /// The key.
        key: String,
    },
    /// A container mounts a volume the pod does not define.
    #[error("volume \"{0}\" is not defined in the pod")]
    Undefined(String),
    /// The volume's type is not one this kubelet supports.
    #[error("no volume plugin matched for volume \"{volume}\" of type {kind}")]
    NoPlugin {
        /// Volume name.
        volume: String,
        /// The volume source field (`nfs`, `iscsi`, ...).
        kind: String,
    },
    /// Mounting a memory-backed volume failed.
    #[error(transparent)]
    Mount(#[from] super::mounts::MountError),
    /// A persistentVolumeClaim volume whose claim is not bound to a usable volume yet (the
    /// pod manager replaces bound claims by their volume's host path, see
    /// [`crate::pod::claims`]).
    #[error("error processing PVC {namespace}/{claim}: PVC is not bound")]
    ClaimNotBound {
        /// The pod's namespace.
        namespace: String,
        /// The claim.
        claim: String,
    },
    /// Writing volume files failed.
    #[error("preparing volume {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Names of the ConfigMaps and Secrets a pod refers to (env, envFrom and volumes).
pub fn referenced_objects(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut config_maps, mut secrets) = (BTreeSet::new(), BTreeSet::new());
    let Some(spec) = pod.spec.as_ref() else {
        return (config_maps, secrets);
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for container in containers {
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    config_maps.insert(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(secret) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(secret);
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    config_maps.insert(cm.name.clone());
                }
                if let Some(secret) = &source.secret {
                    secrets.insert(secret.name.clone());
                }
            }
        }
    }
    (config_maps, secrets)
}

/// Files of a key/value source, honouring `items` (key -> path) when given.
fn select_items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    name: &str,
    optional: bool,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    match items {
        Some(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for item in items {
                match data.get(&item.key) {
                    Some(value) => out.push((item.path.clone(), value.clone())),
                    None if optional => {}
                    None => {
                        return Err(VolumeError::KeyNotFound {
                            name: name.to_string(),
                            key: item.key.clone(),
                        })
                    }
                }
            }
            Ok(out)
        }
        _ => Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
    }
}

fn config_map_data(
    sources: &PodSources,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    match sources.config_maps.get(name) {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.iter().flatten() {
                data.insert(k.clone(), v.0.clone());
            }
            Ok(data)
        }
        None if optional => Ok(BTreeMap::new()),
        None => Err(VolumeError::ConfigMapNotFound(name.to_string())),
    }
}

fn secret_data(
    sources: &PodSources,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, VolumeError> {
    match sources.secrets.get(name) {
        Some(secret) => Ok(secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()),
        None if optional => Ok(BTreeMap::new()),
        None => Err(VolumeError::SecretNotFound(name.to_string())),
    }
}

fn downward_files(
    pod: &Pod,
    fields: &RuntimeFields,
    items: &[DownwardAPIVolumeFile],
) -> Vec<(String, Vec<u8>)> {
    items
        .iter()
        .filter_map(|item| {
            let field = item.field_ref.as_ref()?;
            let value = field_value(pod, fields, &field.field_path).ok()?;
            Some((item.path.clone(), value.into_bytes()))
        })
        .collect()
}

/// Files of a volume: (relative path, content).
pub type VolumeFiles = Vec<(String, Vec<u8>)>;

/// Computes the files of a volume that holds files (configMap, secret, downwardAPI,
/// projected); `None` for other kinds.
pub fn volume_files(
    pod: &Pod,
    volume: &Volume,
    sources: &PodSources,
    fields: &RuntimeFields,
) -> Result<Option<VolumeFiles>, VolumeError> {
    if let Some(cm) = &volume.config_map {
        let optional = cm.optional == Some(true);
        let data = config_map_data(sources, &cm.name, optional)?;
        return select_items(&data, cm.items.as_ref(), &cm.name, optional).map(Some);
    }
    if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let optional = secret.optional == Some(true);
        let data = secret_data(sources, &name, optional)?;
        return select_items(&data, secret.items.as_ref(), &name, optional).map(Some);
    }
    if let Some(downward) = &volume.downward_api {
        return Ok(Some(downward_files(
            pod,
            fields,
            downward.items.as_deref().unwrap_or_default(),
        )));
    }
    if let Some(projected) = &volume.projected {
        let mut files = Vec::new();
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let optional = cm.optional == Some(true);
                let data = config_map_data(sources, &cm.name, optional)?;
                files.extend(select_items(&data, cm.items.as_ref(), &cm.name, optional)?);
            }
            if let Some(secret) = &source.secret {
                let optional = secret.optional == Some(true);
                let data = secret_data(sources, &secret.name, optional)?;
                files.extend(select_items(
                    &data,
                    secret.items.as_ref(),
                    &secret.name,
                    optional,
                )?);
            }
            if let Some(downward) = &source.downward_api {
                files.extend(downward_files(
                    pod,
                    fields,
                    downward.items.as_deref().unwrap_or_default(),
                ));
            }
            // serviceAccountToken sources: written by the pod worker (see
            // `crate::pod::tokens`), which asks the API for them.
        }
        return Ok(Some(files));
    }
    Ok(None)
}

/// The host directory of a pod volume.
pub fn volume_dir(pod_dir: &Path, volume: &Volume) -> PathBuf {
    if let Some(host) = &volume.host_path {
        return PathBuf::from(&host.path);
    }
    let plugin = if volume.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if volume.secret.is_some() {
        "kubernetes.io~secret"
    } else if volume.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if volume.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        "kubernetes.io~empty-dir"
    };
    pod_dir.join("volumes").join(plugin).join(&volume.name)
}

/// The volume source fields this kubelet handles.
const SUPPORTED_SOURCES: [&str; 7] = [
    "hostPath",
    "emptyDir",
    "configMap",
    "secret",
    "downwardAPI",
    "projected",
    "persistentVolumeClaim",
];

/// Fails for a volume whose source is not one of [`SUPPORTED_SOURCES`].
pub fn check_supported(volume: &Volume) -> Result<(), VolumeError> {
    let value = serde_json::to_value(volume).unwrap_or_default();
    let unknown = value
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .find(|k| k.as_str() != "name" && !SUPPORTED_SOURCES.contains(&k.as_str()));
    match unknown {
        Some(kind) => Err(VolumeError::NoPlugin {
            volume: volume.name.clone(),
            kind: kind.clone(),
        }),
        None => Ok(()),
    }
}

/// Whether the volume lives in memory (tmpfs), and its size limit.
fn memory_backed(volume: &Volume) -> Option<Option<u64>> {
    if volume.secret.is_some() || volume.projected.is_some() {
        return Some(None);
    }
    let empty = volume.empty_dir.as_ref()?;
    if empty.medium.as_deref() != Some("Memory") {
        return None;
    }
    let limit = empty
        .size_limit
        .as_ref()
        .and_then(|q| crate::pod::resources::parse_scaled(&q.0, 1.0))
        .and_then(|b| u64::try_from(b).ok());
    Some(limit)
}

/// Creates every volume of the pod on the host (idempotent: file volumes are rewritten, tmpfs
/// mounts kept). Returns the host directory per volume name.
pub fn prepare_volumes(
    pod: &Pod,
    pod_dir: &Path,
    sources: &PodSources,
    fields: &RuntimeFields,
    mounter: &dyn Mounter,
) -> Result<BTreeMap<String, PathBuf>, VolumeError> {
    let volumes: Vec<&Volume> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .collect();
    for volume in &volumes {
        check_supported(volume)?;
        if let Some(claim) = &volume.persistent_volume_claim {
            return Err(VolumeError::ClaimNotBound {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                claim: claim.claim_name.clone(),
            });
        }
    }
    let mut dirs = BTreeMap::new();
    for volume in volumes {
        let dir = volume_dir(pod_dir, volume);
        if let Some(host) = &volume.host_path {
            let kind = host.type_.as_deref().unwrap_or("");
            if matches!(kind, "DirectoryOrCreate") && !dir.exists() {
                std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            }
            if kind == "FileOrCreate" && !dir.exists() {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                std::fs::write(&dir, b"").map_err(io(&dir))?;
            }
            dirs.insert(volume.name.clone(), dir);
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if let Some(limit) = memory_backed(volume) {
            if !mounter.is_mount_point(&dir) {
                mounter.mount_tmpfs(&dir, limit)?;
            }
        }
        if let Some(files) = volume_files(pod, volume, sources, fields)? {
            write_volume_files(&dir, &files).map_err(io(&dir))?;
        }
        dirs.insert(volume.name.clone(), dir);
    }
    Ok(dirs)
}

/// Rewrites the file volumes (configMap, secret, downwardAPI, projected) of a pod whose volumes
/// are set up, from the current `sources`; unchanged volumes are left alone. Returns how many
/// volumes changed.
///
/// `written` is the digest of the files this pod's last refresh published: when the files
/// wanted now have the same digest, nothing is read from or written to disk (a node with
/// thousands of pods refreshes each every sync, and comparing with the published files cost a
/// directory walk and a read of every file per pod). It is updated once every volume is
/// written.
pub fn refresh_file_volumes(
    pod: &Pod,
    dirs: &BTreeMap<String, PathBuf>,
    sources: &PodSources,
    fields: &RuntimeFields,
    written: &mut Option<u64>,
) -> Result<usize, VolumeError> {
    use std::hash::{Hash, Hasher};
    let mut wanted = Vec::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(dir) = dirs.get(&volume.name) else {
            continue;
        };
        if volume.host_path.is_some() {
            continue;
        }
        if let Some(files) = volume_files(pod, volume, sources, fields)? {
            wanted.push((dir, files));
        }
    }
    let mut hasher = std::hash::DefaultHasher::new();
    wanted.hash(&mut hasher);
    let digest = hasher.finish();
    if *written == Some(digest) {
        return Ok(0);
    }
    let mut changed = 0;
    for (dir, files) in &wanted {
        if write_volume_files(dir, files).map_err(io(dir))? {
            changed += 1;
        }
    }
    *written = Some(digest);
    Ok(changed)
}

/// Whether a pod has volumes whose files follow API objects.
pub fn has_file_volumes(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.projected.is_some())
}

/// The files currently published under `dir/..data`.
fn published(dir: &Path) -> Option<BTreeMap<String, Vec<u8>>> {
    fn walk(base: &Path, at: &Path, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(at)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(base, &path, out)?;
            } else {
                let relative = path
                    .strip_prefix(base)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                out.insert(relative, std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let data = dir.join("..data");
    let mut out = BTreeMap::new();
    walk(&data, &data, &mut out).ok()?;
    Some(out)
}

/// Publishes `files` in `dir` atomically (see the module docs); returns false when they were
/// already published as they are.
pub fn write_volume_files(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<bool> {
    use std::os::unix::fs::symlink;
    let wanted: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, c)| (p.trim_start_matches('/').to_string(), c.clone()))
        .filter(|(p, _)| {
            !p.is_empty()
                && !p
                    .split('/')
                    .any(|part| part == ".." || part.starts_with(".."))
        })
        .collect();
    if published(dir).as_ref() == Some(&wanted) {
        return Ok(false);
    }
    let stamp = format!("..{}", jiff::Timestamp::now().as_nanosecond());
    let target = dir.join(&stamp);
    std::fs::create_dir_all(&target)?;
    for (relative, content) in &wanted {
        let path = target.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, content)?;
    }
    let tmp_link = dir.join("..data_tmp");
    match std::fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, dir.join("..data"))?;
    let top: BTreeSet<String> = wanted
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => continue,
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&link)?,
            Ok(_) => std::fs::remove_file(&link)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        symlink(Path::new("..data").join(name), &link)?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_link = entry.file_type()?.is_symlink();
        if name.starts_with("..") && name != "..data" && name != stamp && !is_link {
            std::fs::remove_dir_all(entry.path())?;
        } else if is_link && !name.starts_with("..") && !top.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(true)
}

/// The bind mounts of a container's `volumeMounts`.
pub fn container_mounts(
    container: &Container,
    dirs: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, VolumeError> {
    let mut mounts = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let dir = dirs
            .get(&vm.name)
            .ok_or_else(|| VolumeError::Undefined(vm.name.clone()))?;
        let host_path = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                let path = dir.join(sub.trim_start_matches('/'));
                if !path.exists() {
                    std::fs::create_dir_all(&path).map_err(io(&path))?;
                }
                path
            }
            None => dir.clone(),
        };
        mounts.push(Mount {
            host_path,
            container_path: vm.mount_path.clone(),
            read_only: vm.read_only == Some(true),
        });
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeSource, EmptyDirVolumeSource,
        ObjectFieldSelector, PodSpec, VolumeMount,
    };
    use kube::api::ObjectMeta;

    use crate::pod::mounts::FakeMounter;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![
                    Volume {
                        name: "scratch".into(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Default::default()
                    },
                    Volume {
                        name: "cfg".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "settings".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Volume {
                        name: "info".into(),
                        downward_api: Some(DownwardAPIVolumeSource {
                            items: Some(vec![DownwardAPIVolumeFile {
                                path: "name".into(),
                                field_ref: Some(ObjectFieldSelector {
                                    field_path: "metadata.name".into(),
                                    api_version: None,
                                }),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn volumes_are_written_and_mounted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut sources = PodSources::default();
        sources.config_maps.insert(
            "settings".into(),
            ConfigMap {
                data: Some([("color".to_string(), "blue".to_string())].into()),
                ..Default::default()
            },
        );
        let mounter = FakeMounter::new();
        let dirs = prepare_volumes(
            &pod(),
            dir.path(),
            &sources,
            &RuntimeFields::default(),
            &mounter,
        )
        .expect("volumes");
        let cfg = &dirs["cfg"];
        assert_eq!(
            std::fs::read_to_string(cfg.join("color")).expect("file"),
            "blue"
        );
        assert_eq!(
            std::fs::read_to_string(dirs["info"].join("name")).expect("file"),
            "p"
        );
        assert!(dirs["scratch"].is_dir());
        let container = Container {
            name: "c".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "cfg".into(),
                mount_path: "/etc/cfg".into(),
                read_only: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mounts = container_mounts(&container, &dirs).expect("mounts");
        assert_eq!(mounts[0].container_path, "/etc/cfg");
        assert!(mounts[0].read_only);
    }

    #[test]
    fn a_refresh_with_the_published_digest_touches_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = |color: &str| {
            let mut sources = PodSources::default();
            sources.config_maps.insert(
                "settings".into(),
                ConfigMap {
                    data: Some([("color".to_string(), color.to_string())].into()),
                    ..Default::default()
                },
            );
            sources
        };
        let fields = RuntimeFields::default();
        let dirs = prepare_volumes(
            &pod(),
            dir.path(),
            &settings("blue"),
            &fields,
            &FakeMounter::new(),
        )
        .expect("volumes");
        let mut written = None;
        // The first refresh compares with the disk: nothing changed, the digest is kept.
        let changed = refresh_file_volumes(&pod(), &dirs, &settings("blue"), &fields, &mut written);
        assert_eq!(changed.expect("refresh"), 0);
        assert!(written.is_some());
        // Same contents: the digest answers, the (now missing) files are not read or written.
        std::fs::remove_dir_all(&dirs["cfg"]).expect("rm");
        let changed = refresh_file_volumes(&pod(), &dirs, &settings("blue"), &fields, &mut written);
        assert_eq!(changed.expect("refresh"), 0);
        assert!(!dirs["cfg"].exists());
        // New contents are written, and the digest follows them.
        let before = written;
        let changed = refresh_file_volumes(&pod(), &dirs, &settings("red"), &fields, &mut written);
        assert_eq!(
            changed.expect("refresh"),
            1,
            "cfg rewritten; info was already published"
        );
        assert_ne!(written, before);
        assert_eq!(
            std::fs::read_to_string(dirs["cfg"].join("color")).expect("file"),
            "red"
        );
    }

    #[test]
    fn a_missing_config_map_fails_the_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = prepare_volumes(
            &pod(),
            dir.path(),
            &PodSources::default(),
            &RuntimeFields::default(),
            &FakeMounter::new(),
        )
        .expect_err("missing");
        assert_eq!(err.to_string(), "configmap \"settings\" not found");
    }

    #[test]
    fn file_volumes_are_swapped_atomically_and_drop_removed_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("v");
        std::fs::create_dir_all(&vol).expect("mkdir");
        let files = |pairs: &[(&str, &str)]| -> VolumeFiles {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert!(write_volume_files(&vol, &files(&[("a", "1"), ("d/b", "2")])).expect("write"));
        assert_eq!(std::fs::read_to_string(vol.join("a")).expect("a"), "1");
        assert_eq!(std::fs::read_to_string(vol.join("d/b")).expect("b"), "2");
        assert!(std::fs::symlink_metadata(vol.join("a"))
            .expect("meta")
            .file_type()
            .is_symlink());
        assert!(!write_volume_files(&vol, &files(&[("a", "1"), ("d/b", "2")])).expect("same"));
        assert!(write_volume_files(&vol, &files(&[("a", "3")])).expect("update"));
        assert_eq!(std::fs::read_to_string(vol.join("a")).expect("a"), "3");
        assert!(!vol.join("d").exists(), "removed key is gone");
        let stamps: Vec<String> = std::fs::read_dir(&vol)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != "..data")
            .collect();
        assert_eq!(stamps.len(), 1, "old generations removed: {stamps:?}");
    }

    #[test]
    fn secrets_get_a_tmpfs_and_unknown_volume_types_fail() {
        use k8s_openapi::api::core::v1::{NFSVolumeSource, Secret, SecretVolumeSource};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = pod();
        if let Some(volumes) = p.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
            volumes.retain(|v| v.name == "scratch");
            volumes.push(Volume {
                name: "creds".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some("creds".into()),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let mut sources = PodSources::default();
        sources.secrets.insert(
            "creds".into(),
            Secret {
                data: Some(
                    [(
                        "password".to_string(),
                        k8s_openapi::ByteString(b"hunter2".to_vec()),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
        );
        let mounter = FakeMounter::new();
        let dirs = prepare_volumes(
            &p,
            dir.path(),
            &sources,
            &RuntimeFields::default(),
            &mounter,
        )
        .expect("volumes");
        assert_eq!(mounter.mounted(), vec![dirs["creds"].clone()]);
        assert_eq!(
            std::fs::read_to_string(dirs["creds"].join("password")).expect("file"),
            "hunter2"
        );
        if let Some(volumes) = p.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
            volumes.push(Volume {
                name: "share".into(),
                nfs: Some(NFSVolumeSource {
                    server: "127.0.0.1".into(),
                    path: "/x".into(),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let err = prepare_volumes(
            &p,
            dir.path(),
            &sources,
            &RuntimeFields::default(),
            &mounter,
        )
        .expect_err("nfs");
        assert_eq!(
            err.to_string(),
            "no volume plugin matched for volume \"share\" of type nfs"
        );
    }
}
