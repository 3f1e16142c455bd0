//! A private containerd for tests: its own root, state and socket in a fresh directory, CRI
//! plugin disabled. Dropping it kills containerd and the shims it started, unmounts what is left
//! under its directory and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a test containerd cannot run here (tests print it and skip).
pub fn unavailable_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".to_string());
    }
    for binary in ["containerd", "runc", "containerd-shim-runc-v2"] {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
            .unwrap_or(false);
        if !found {
            return Some(format!("{binary} not installed"));
        }
    }
    None
}

/// A running private containerd.
#[derive(Debug)]
pub struct TestContainerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl TestContainerd {
    /// Starts containerd in a new directory under the temp dir and waits for its socket.
    pub fn start() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "kubelet-rt-test-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_nanosecond()
        ));
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = dir.join("containerd.sock").display(),
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut this = Self {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !this.socket().exists() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("containerd socket did not appear"));
            }
            if let Some(child) = this.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(std::io::Error::other(format!(
                        "containerd exited: {status}"
                    )));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(this)
    }

    /// The directory holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `unix://<socket>`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// A directory for the runtime's FIFOs.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("kubelet-runtime")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

/// Pids of processes whose command line mentions `needle`.
fn pids_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let socket = self.socket().display().to_string();
        if let Some(mut child) = self.child.take() {
            if let Err(err) = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM) {
                tracing::debug!(error = %err, "signalling test containerd");
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        if let Err(err) = child.kill() {
                            tracing::debug!(error = %err, "killing test containerd");
                        }
                        if let Err(err) = child.wait() {
                            tracing::debug!(error = %err, "reaping test containerd");
                        }
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        // Shims outlive containerd by design; ours name our socket on their command line.
        for pid in pids_mentioning(&socket) {
            if let Err(err) = kill(Pid::from_raw(pid), Signal::SIGKILL) {
                tracing::debug!(pid, error = %err, "killing leftover shim");
            }
        }
        for mount in mounts_under(&self.dir) {
            if let Err(err) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
                tracing::debug!(mount = %mount.display(), error = %err, "unmounting");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %err, "removing test containerd dir");
        }
    }
}
