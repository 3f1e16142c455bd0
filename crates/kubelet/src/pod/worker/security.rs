//! A container's securityContext turned into runtime settings (user, groups, capabilities,
//! privileges, read-only root), and `fsGroup` applied to the group ownership of the pod's
//! volumes, as upstream's volume ownership management does.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// What the securityContexts of a pod and one of its containers ask of the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecuritySettings {
    /// `runAsUser` (the container's, else the pod's).
    pub run_as_user: Option<u32>,
    /// `runAsGroup` (the container's, else the pod's).
    pub run_as_group: Option<u32>,
    /// The pod's `supplementalGroups` plus its `fsGroup`.
    pub supplemental_groups: Vec<u32>,
    /// `privileged`.
    pub privileged: bool,
    /// `readOnlyRootFilesystem`.
    pub read_only_root_filesystem: bool,
    /// `capabilities.add`.
    pub capabilities_add: Vec<String>,
    /// `capabilities.drop`.
    pub capabilities_drop: Vec<String>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
}

fn id(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

/// The settings of `container` in `pod`, with upstream's precedence (container over pod).
pub fn security_settings(pod: &Pod, container: &Container) -> SecuritySettings {
    let sc = container.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut groups: Vec<u32> = psc
        .and_then(|p| p.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|g| u32::try_from(*g).ok())
        .collect();
    if let Some(fs_group) = id(psc.and_then(|p| p.fs_group)) {
        groups.push(fs_group);
    }
    groups.sort_unstable();
    groups.dedup();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    SecuritySettings {
        run_as_user: id(sc
            .and_then(|s| s.run_as_user)
            .or_else(|| psc.and_then(|p| p.run_as_user))),
        run_as_group: id(sc
            .and_then(|s| s.run_as_group)
            .or_else(|| psc.and_then(|p| p.run_as_group))),
        supplemental_groups: groups,
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        read_only_root_filesystem: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        capabilities_add: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        capabilities_drop: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        no_new_privileges: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
    }
}

/// The pod's `fsGroup`, if any.
pub fn fs_group(pod: &Pod) -> Option<u32> {
    id(pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|p| p.fs_group))
}

/// Whether the volume's ownership follows `fsGroup`, and read-only (`configMap`, `secret`,
/// `downwardAPI`, `projected`) or writable (`emptyDir`). Host paths are left alone.
fn ownership_kind(volume: &Volume) -> Option<bool> {
    if volume.empty_dir.is_some() {
        Some(false)
    } else if volume.config_map.is_some()
        || volume.secret.is_some()
        || volume.downward_api.is_some()
        || volume.projected.is_some()
    {
        Some(true)
    } else {
        None
    }
}

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

fn change_one(path: &Path, group: u32, read_only: bool) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.gid() != group {
        std::os::unix::fs::lchown(path, None, Some(group))?;
    }
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if meta.is_dir() {
        mask |= SETGID | EXEC_MASK;
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode | mask != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | mask))?;
    }
    Ok(())
}

/// Gives `dir` and everything below it (symlinks not followed) the group `group`, group
/// read (and write unless `read_only`) permission, and setgid on directories.
pub fn set_volume_ownership(dir: &Path, group: u32, read_only: bool) -> std::io::Result<()> {
    change_one(dir, group, read_only)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if std::fs::symlink_metadata(&path)?.is_dir() {
                set_volume_ownership(&path, group, read_only)?;
            } else {
                change_one(&path, group, read_only)?;
            }
        }
    }
    Ok(())
}

/// Applies the pod's `fsGroup` to every volume that supports it; `dirs` maps volume names to
/// their host directories. Returns how many volumes were processed.
pub fn apply_fs_group(
    pod: &Pod,
    dirs: &std::collections::BTreeMap<String, std::path::PathBuf>,
) -> std::io::Result<usize> {
    let Some(group) = fs_group(pod) else {
        return Ok(0);
    };
    let mut done = 0;
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (Some(read_only), Some(dir)) = (ownership_kind(volume), dirs.get(&volume.name)) else {
            continue;
        };
        set_volume_ownership(dir, group, read_only)?;
        done += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities, ConfigMapVolumeSource, EmptyDirVolumeSource, HostPathVolumeSource,
        PodSecurityContext, PodSpec, SecurityContext,
    };

    fn pod(psc: Option<PodSecurityContext>, sc: Option<SecurityContext>) -> (Pod, Container) {
        let container = Container {
            name: "c".into(),
            security_context: sc,
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container.clone()],
                security_context: psc,
                ..Default::default()
            }),
            ..Default::default()
        };
        (pod, container)
    }

    #[test]
    fn container_settings_win_over_pod_settings() {
        let (p, c) = pod(
            Some(PodSecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(2000),
                supplemental_groups: Some(vec![5, 3000]),
                fs_group: Some(3000),
                ..Default::default()
            }),
            Some(SecurityContext {
                run_as_user: Some(1001),
                read_only_root_filesystem: Some(true),
                allow_privilege_escalation: Some(false),
                capabilities: Some(Capabilities {
                    add: Some(vec!["NET_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                }),
                ..Default::default()
            }),
        );
        assert_eq!(
            security_settings(&p, &c),
            SecuritySettings {
                run_as_user: Some(1001),
                run_as_group: Some(2000),
                supplemental_groups: vec![5, 3000],
                privileged: false,
                read_only_root_filesystem: true,
                capabilities_add: vec!["NET_ADMIN".into()],
                capabilities_drop: vec!["ALL".into()],
                no_new_privileges: true,
            }
        );
        let (p, c) = pod(None, None);
        assert_eq!(security_settings(&p, &c), SecuritySettings::default());
        let (p, c) = pod(
            None,
            Some(SecurityContext {
                allow_privilege_escalation: Some(true),
                privileged: Some(true),
                run_as_user: Some(-1),
                ..Default::default()
            }),
        );
        let settings = security_settings(&p, &c);
        assert!(settings.privileged && !settings.no_new_privileges);
        assert_eq!(settings.run_as_user, None);
    }

    #[test]
    fn fs_group_owns_empty_dir_and_config_map_volumes_but_not_host_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty");
        let config = dir.path().join("config");
        let host = dir.path().join("host");
        for d in [&empty, &config, &host] {
            std::fs::create_dir_all(d.join("sub")).expect("mkdir");
            std::fs::write(d.join("sub/file"), "x").expect("write");
            std::fs::set_permissions(d.join("sub/file"), PermissionsExt::from_mode(0o600))
                .expect("chmod");
        }
        std::os::unix::fs::symlink("sub/file", config.join("link")).expect("symlink");
        let (mut p, _) = pod(
            Some(PodSecurityContext {
                fs_group: Some(4321),
                ..Default::default()
            }),
            None,
        );
        if let Some(spec) = p.spec.as_mut() {
            spec.volumes = Some(vec![
                Volume {
                    name: "empty".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource::default()),
                    ..Default::default()
                },
                Volume {
                    name: "host".into(),
                    host_path: Some(HostPathVolumeSource::default()),
                    ..Default::default()
                },
            ]);
        }
        let dirs = [("empty", &empty), ("config", &config), ("host", &host)]
            .into_iter()
            .map(|(n, d)| (n.to_string(), d.clone()))
            .collect();
        // Changing a file's group to one we are not in needs root.
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        assert_eq!(apply_fs_group(&p, &dirs).expect("apply"), 2);
        let meta = |p: &Path| std::fs::symlink_metadata(p).expect("stat");
        assert_eq!(meta(&empty.join("sub/file")).gid(), 4321);
        assert_eq!(meta(&empty.join("sub/file")).mode() & 0o7777, 0o660);
        assert_eq!(meta(&empty.join("sub")).mode() & 0o2070, 0o2070);
        assert_eq!(meta(&config.join("sub/file")).mode() & 0o7777, 0o640);
        assert_eq!(meta(&config.join("link")).gid(), 4321);
        assert_ne!(meta(&host.join("sub/file")).gid(), 4321);
        assert_eq!(meta(&host.join("sub/file")).mode() & 0o7777, 0o600);
    }
}
