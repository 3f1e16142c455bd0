//! Pod IPC namespaces: a persistent IPC namespace per pod, kept alive by bind-mounting its nsfs
//! file at `<dir>/<name>` (as `ip netns` does for network namespaces), and a tmpfs at
//! `<dir>/<name>.shm` that every container of the pod mounts at `/dev/shm`, so System V IPC,
//! POSIX message queues and POSIX shared memory are shared within the pod.
//!
//! The namespace is made without `unsafe`: a short-lived thread `unshare`s its own IPC
//! namespace and bind-mounts `/proc/thread-self/ns/ipc`; the mount keeps the namespace after the
//! thread ends. Removal unmounts both and deletes the files; leftovers of a crash are found by
//! [`list`] and removed the same way.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use super::{NetworkError, PodIpc, NETNS_PREFIX};

/// Size of a pod's `/dev/shm` (the container runtimes' default).
pub const SHM_SIZE: &str = "65536k";

fn error(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetworkError {
    let path = path.display().to_string();
    move |source| NetworkError::Ipc { step, path, source }
}

fn errno(step: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> NetworkError {
    let path = path.display().to_string();
    move |e| NetworkError::Ipc {
        step,
        path,
        source: std::io::Error::from(e),
    }
}

/// The namespace file and shm directory of `name` under `dir`.
pub fn paths(dir: &Path, name: &str) -> PodIpc {
    PodIpc {
        ns_path: dir.join(name),
        shm_path: dir.join(format!("{name}.shm")),
    }
}

fn is_fs(path: &Path, magic: nix::sys::statfs::FsType) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == magic)
}

/// Creates the IPC namespace `name` under `dir` (idempotent).
pub fn create(dir: &Path, name: &str) -> Result<PodIpc, NetworkError> {
    let ipc = paths(dir, name);
    std::fs::create_dir_all(dir).map_err(error("creating IPC namespace dir", dir))?;
    if !is_fs(&ipc.ns_path, NSFS_MAGIC) {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&ipc.ns_path)
            .map_err(error("creating IPC namespace file", &ipc.ns_path))?;
        let target = ipc.ns_path.clone();
        std::thread::spawn(move || -> Result<(), NetworkError> {
            // Only this thread moves to the new namespace; it ends right after.
            nix::sched::unshare(CloneFlags::CLONE_NEWIPC)
                .map_err(errno("unsharing the IPC namespace for", &target))?;
            mount(
                Some("/proc/thread-self/ns/ipc"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(errno("bind-mounting the IPC namespace at", &target))
        })
        .join()
        .map_err(|_| NetworkError::Ipc {
            step: "creating the IPC namespace (thread panicked)",
            path: ipc.ns_path.display().to_string(),
            source: std::io::Error::other("panic"),
        })??;
    }
    if !is_mount_point(&ipc.shm_path) {
        std::fs::create_dir_all(&ipc.shm_path)
            .map_err(error("creating the pod /dev/shm", &ipc.shm_path))?;
        mount(
            Some("shm"),
            &ipc.shm_path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={SHM_SIZE}").as_str()),
        )
        .map_err(errno("mounting the pod /dev/shm at", &ipc.shm_path))?;
    }
    Ok(ipc)
}

/// Whether something is mounted at `path` (it sits on another device than its parent).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = path.parent() else {
        return false;
    };
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(here), Ok(above)) => here.dev() != above.dev(),
        _ => false,
    }
}

/// Unmounts `path` (lazily) while something is mounted there.
fn unmount_all(path: &Path) -> Result<(), NetworkError> {
    for _ in 0..8 {
        if !is_mount_point(path) {
            return Ok(());
        }
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Not a mount point (any more), or gone.
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(e) => return Err(errno("unmounting", path)(e)),
        }
    }
    Ok(())
}

/// Removes the IPC namespace `name` under `dir`; Ok if it does not exist.
pub fn remove(dir: &Path, name: &str) -> Result<(), NetworkError> {
    let ipc = paths(dir, name);
    unmount_all(&ipc.ns_path)?;
    match std::fs::remove_file(&ipc.ns_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error("removing IPC namespace file", &ipc.ns_path)(e)),
    }
    unmount_all(&ipc.shm_path)?;
    match std::fs::remove_dir_all(&ipc.shm_path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error("removing the pod /dev/shm", &ipc.shm_path)(e)),
    }
}

/// Names of the IPC namespaces under `dir` (`kube-*`, with or without their shm dir).
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let file = e.file_name().to_string_lossy().to_string();
                    let name = file.strip_suffix(".shm").unwrap_or(&file).to_string();
                    name.starts_with(NETNS_PREFIX).then_some(name)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// The default IPC namespace directory for a kubelet whose CNI state is in `cni_dir`
/// (`<root-dir>/cni`): `<root-dir>/ipc`.
pub fn default_dir(cni_dir: &Path) -> PathBuf {
    cni_dir
        .parent()
        .map(|root| root.join("ipc"))
        .unwrap_or_else(|| cni_dir.join("ipc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pair_the_namespace_file_and_its_shm_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["kube-aaa", "kube-aaa.shm", "kube-bbb.shm", "other"] {
            std::fs::write(dir.path().join(file), "").expect("write");
        }
        assert_eq!(list(dir.path()), vec!["kube-aaa", "kube-bbb"]);
        assert_eq!(list(&dir.path().join("missing")), Vec::<String>::new());
        assert_eq!(
            paths(Path::new("/r/ipc"), "kube-aaa"),
            PodIpc {
                ns_path: "/r/ipc/kube-aaa".into(),
                shm_path: "/r/ipc/kube-aaa.shm".into(),
            }
        );
        assert_eq!(
            default_dir(Path::new("/var/lib/kubelet/cni")),
            PathBuf::from("/var/lib/kubelet/ipc")
        );
    }

    #[test]
    fn removing_plain_leftovers_tolerates_missing_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("kube-ccc"), "").expect("write");
        remove(dir.path(), "kube-ccc").expect("remove leftover");
        remove(dir.path(), "kube-ccc").expect("remove again");
        assert!(list(dir.path()).is_empty());
    }

    #[test]
    fn a_real_namespace_is_created_once_and_removed() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: creating IPC namespaces needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ipc = create(dir.path(), "kube-test").expect("create");
        assert!(is_fs(&ipc.ns_path, NSFS_MAGIC));
        assert!(is_mount_point(&ipc.shm_path));
        let inode = std::fs::metadata(&ipc.ns_path).expect("ns").ino();
        let own = std::fs::metadata("/proc/self/ns/ipc")
            .expect("own ns")
            .ino();
        assert_ne!(inode, own, "a new namespace, not ours");
        let again = create(dir.path(), "kube-test").expect("create again");
        assert_eq!(std::fs::metadata(&again.ns_path).expect("ns").ino(), inode);
        assert_eq!(list(dir.path()), vec!["kube-test"]);
        remove(dir.path(), "kube-test").expect("remove");
        assert!(!ipc.ns_path.exists() && !ipc.shm_path.exists());
        assert!(list(dir.path()).is_empty());
    }
}
