//! Host mounts of pod volumes behind the [`Mounter`] trait: memory-backed volumes (secret,
//! projected, `emptyDir` with `medium: Memory`) get a tmpfs, and a pod's teardown unmounts
//! everything under its directory. [`HostMounter`] does it for real; [`FakeMounter`] records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A mount step that failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// `mount(2)` or `umount2(2)` failed.
    #[error("{step} {path}: {source}", path = path.display())]
    Sys {
        /// What was attempted.
        step: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

/// Mounting and unmounting volume directories.
pub trait Mounter: Send + Sync + 'static {
    /// Whether `path` is a mount point.
    fn is_mount_point(&self, path: &Path) -> bool;
    /// Mounts a tmpfs at `path` (an existing directory), limited to `size_bytes` if given.
    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>) -> Result<(), MountError>;
    /// Unmounts every mount at or below `dir` (deepest first); returns how many.
    fn unmount_under(&self, dir: &Path) -> Result<usize, MountError>;
}

/// Undoes the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok());
            if let Some(code) = code {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points listed in a mountinfo text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

/// The real mounter (needs `CAP_SYS_ADMIN`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HostMounter;

impl HostMounter {
    fn current() -> Vec<PathBuf> {
        mount_points(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }
}

impl Mounter for HostMounter {
    fn is_mount_point(&self, path: &Path) -> bool {
        Self::current().iter().any(|p| p == path)
    }

    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>) -> Result<(), MountError> {
        use nix::mount::{mount, MsFlags};
        let options = match size_bytes {
            Some(size) => format!("mode=0755,size={size}"),
            None => "mode=0755".to_string(),
        };
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(|source| MountError::Sys {
            step: "mounting tmpfs at",
            path: path.to_path_buf(),
            source,
        })
    }

    fn unmount_under(&self, dir: &Path) -> Result<usize, MountError> {
        use nix::mount::{umount2, MntFlags};
        let mut under: Vec<PathBuf> = Self::current()
            .into_iter()
            .filter(|p| p.starts_with(dir))
            .collect();
        under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        under.dedup();
        for path in &under {
            match umount2(path, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
                Err(source) => {
                    return Err(MountError::Sys {
                        step: "unmounting",
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        Ok(under.len())
    }
}

/// A mounter that only records (unit tests, hollow nodes).
#[derive(Debug, Default)]
pub struct FakeMounter {
    mounted: Mutex<BTreeSet<PathBuf>>,
}

impl FakeMounter {
    /// A fake with nothing mounted.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is "mounted" now.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
        self.mounted.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mounter for FakeMounter {
    fn is_mount_point(&self, path: &Path) -> bool {
        self.lock().contains(path)
    }

    fn mount_tmpfs(&self, path: &Path, _size_bytes: Option<u64>) -> Result<(), MountError> {
        self.lock().insert(path.to_path_buf());
        Ok(())
    }

    fn unmount_under(&self, dir: &Path) -> Result<usize, MountError> {
        let mut mounted = self.lock();
        let before = mounted.len();
        mounted.retain(|p| !p.starts_with(dir));
        Ok(before - mounted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_from_mountinfo_with_escapes() {
        let text = "22 1 0:21 / / rw - overlay overlay rw\n\
                    90 22 0:50 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/s rw - tmpfs tmpfs rw\n\
                    91 22 0:51 / /tmp/with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_points(text),
            vec![
                PathBuf::from("/"),
                PathBuf::from("/var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/s"),
                PathBuf::from("/tmp/with space"),
            ]
        );
    }

    #[test]
    fn the_fake_unmounts_only_below_the_directory() {
        let fake = FakeMounter::new();
        fake.mount_tmpfs(Path::new("/p/a/v1"), None).expect("mount");
        fake.mount_tmpfs(Path::new("/p/b/v1"), Some(1))
            .expect("mount");
        assert!(fake.is_mount_point(Path::new("/p/a/v1")));
        assert_eq!(fake.unmount_under(Path::new("/p/a")).expect("unmount"), 1);
        assert_eq!(fake.mounted(), vec![PathBuf::from("/p/b/v1")]);
    }
}
