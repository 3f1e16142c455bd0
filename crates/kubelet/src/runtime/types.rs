//! The values that cross the [`ContainerRuntime`](super::ContainerRuntime) boundary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use futures::future::BoxFuture;
use jiff::Timestamp;
use tokio::io::{AsyncRead, AsyncWrite};

use super::RuntimeError;

/// Label with the pod's uid, set by the kubelet on every container it creates.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label with the pod's name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label with the Kubernetes container name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Label with the container's restart count (decimal).
pub const LABEL_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// Name and version of the runtime, as reported in the node status
/// (`containerRuntimeVersion: containerd://1.6.20`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// Runtime name, e.g. `containerd`.
    pub runtime_name: String,
    /// Runtime version, e.g. `1.6.20`.
    pub runtime_version: String,
}

/// One image the runtime holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image names (normalised, e.g. `docker.io/library/busybox:1.35`).
    pub names: Vec<String>,
    /// Digest of the image's target (manifest or index), `sha256:...`.
    pub digest: String,
    /// Size in bytes (compressed layers + config + manifest).
    pub size: u64,
}

/// Kubernetes' `imagePullPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PullPolicy {
    /// Always pull (for now: require the image to be present).
    Always,
    /// Pull only when missing.
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

impl PullPolicy {
    /// Parses the API value (`Always`, `IfNotPresent`, `Never`); `None` for anything else.
    pub fn from_api(value: &str) -> Option<Self> {
        match value {
            "Always" => Some(Self::Always),
            "IfNotPresent" => Some(Self::IfNotPresent),
            "Never" => Some(Self::Never),
            _ => None,
        }
    }
}

/// A bind mount into a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    /// Path on the host.
    pub host_path: PathBuf,
    /// Path in the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// Resource limits of a container (cgroup v1 values). Zero means "not set".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `cpu.shares` (Kubernetes: millicores * 1024 / 1000, min 2).
    pub cpu_shares: u64,
    /// CFS quota in microseconds per period (0 = unlimited).
    pub cpu_quota: i64,
    /// CFS period in microseconds (0 = default 100000).
    pub cpu_period: u64,
    /// Memory limit in bytes (0 = unlimited).
    pub memory_limit_bytes: i64,
}

/// Everything needed to create one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerConfig {
    /// The Kubernetes container name.
    pub name: String,
    /// Labels stored on the container: `io.kubernetes.pod.uid`, `...pod.name`, `...pod.namespace`,
    /// `io.kubernetes.container.name`, `io.kubernetes.container.restartCount` and anything else.
    pub labels: BTreeMap<String, String>,
    /// Image reference as written in the pod (normalised by the runtime).
    pub image: String,
    /// Kubernetes `command` (replaces the image's Entrypoint when non-empty).
    pub command: Vec<String>,
    /// Kubernetes `args` (replaces the image's Cmd when non-empty).
    pub args: Vec<String>,
    /// Environment, added to the image's Env; these win on a name clash.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` = the image's WorkingDir, else `/`.
    pub working_dir: Option<String>,
    /// Hostname inside the container (the pod name).
    pub hostname: String,
    /// Network namespace to join (`/var/run/netns/kube-...`); `None` = host network.
    pub netns_path: Option<PathBuf>,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Where stdout/stderr are written in the CRI log format (parent dirs are created).
    pub log_path: PathBuf,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open (for attach).
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// cgroup parent, e.g. `/kubepods/besteffort/pod<uid>`; the container's cgroup is
    /// `<cgroup_parent>/<id>`. Empty = `/kubepods`.
    pub cgroup_parent: String,
    /// Resource limits.
    pub resources: Resources,
    /// User to run as (overrides the image's User).
    pub run_as_user: Option<u32>,
    /// Group to run as.
    pub run_as_group: Option<u32>,
    /// Run privileged (all capabilities, no masked paths, devices).
    pub privileged: bool,
    /// Extra groups of the process (`supplementalGroups` and `fsGroup`).
    pub supplemental_groups: Vec<u32>,
    /// Mount the root filesystem read-only (`readOnlyRootFilesystem`).
    pub read_only_root_filesystem: bool,
    /// Capabilities added to the default set (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub capabilities_add: Vec<String>,
    /// Capabilities dropped from the default set (`ALL` drops every one).
    pub capabilities_drop: Vec<String>,
    /// Set `no_new_privs` (`allowPrivilegeEscalation: false`).
    pub no_new_privileges: bool,
    /// `oom_score_adj` of the process (from the pod's QoS class); `None` = inherited.
    pub oom_score_adj: Option<i32>,
    /// IPC namespace to join (the pod's); `None` = a private one, unless `host_ipc`.
    pub ipc_ns_path: Option<PathBuf>,
    /// Share the host's IPC namespace (`hostIPC`).
    pub host_ipc: bool,
}

/// State of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Its main process runs.
    Running {
        /// When it started.
        started_at: Timestamp,
        /// Host pid of the main process.
        pid: u32,
    },
    /// Its main process has exited.
    Exited {
        /// Exit code (128 + signal when killed by a signal).
        exit_code: i32,
        /// When it started.
        started_at: Timestamp,
        /// When it exited.
        finished_at: Timestamp,
        /// Killed by the OOM killer (best effort).
        oom_killed: bool,
    },
    /// The runtime cannot tell.
    #[default]
    Unknown,
}

/// A container as listed by [`ContainerRuntime::list_containers`](super::ContainerRuntime::list_containers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerSummary {
    /// Runtime container id.
    pub id: String,
    /// Its labels (see the `LABEL_*` constants).
    pub labels: BTreeMap<String, String>,
    /// Normalised image name.
    pub image: String,
    /// When the container record was created.
    pub created_at: Timestamp,
    /// Current state.
    pub state: ContainerState,
}

impl ContainerSummary {
    /// The pod uid label, if any.
    pub fn pod_uid(&self) -> Option<&str> {
        self.labels.get(LABEL_POD_UID).map(String::as_str)
    }
    /// The Kubernetes container name label, if any.
    pub fn container_name(&self) -> Option<&str> {
        self.labels.get(LABEL_CONTAINER_NAME).map(String::as_str)
    }
}

/// A process to run in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// argv (at least one element).
    pub command: Vec<String>,
    /// Allocate a terminal (stdout and stderr are then one stream, `stdout`).
    pub tty: bool,
    /// Connect stdin.
    pub stdin: bool,
    /// Connect stdout.
    pub stdout: bool,
    /// Connect stderr (ignored with `tty`).
    pub stderr: bool,
}

/// What to attach to for [`ContainerRuntime::attach`](super::ContainerRuntime::attach).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Connect stdin (only if the container was created with `stdin`).
    pub stdin: bool,
    /// Connect stdout.
    pub stdout: bool,
    /// Connect stderr.
    pub stderr: bool,
    /// The container has a terminal.
    pub tty: bool,
}

/// Terminal size for resize requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A running exec (or attach) session.
///
/// Drop `stdin` to close the process's stdin. Read `stdout`/`stderr` to their end;
/// `exit` resolves once the process has exited (and the runtime cleaned it up).
pub struct ExecSession {
    /// The process's stdin, if requested.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// The process's stdout (with a tty: the terminal output), if requested.
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// The process's stderr, if requested and no tty.
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Resolves with the exit code.
    pub exit: BoxFuture<'static, Result<i32, RuntimeError>>,
    /// Terminal resizes (only with a tty).
    pub resize: Option<tokio::sync::mpsc::Sender<TerminalSize>>,
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// A container's main process exited (see [`ContainerRuntime::exits`](super::ContainerRuntime::exits)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerExit {
    /// Container id.
    pub id: String,
    /// Exit status.
    pub exit_code: u32,
}
