//! Arguments of the pod stream tools: `port-forward`, `attach`, `cp`, and of `diff`.

use clap::Args;

/// `kubectl port-forward TYPE/NAME [LOCAL_PORT:]REMOTE_PORT...`.
#[derive(Debug, Args)]
pub struct PortForwardArgs {
    /// The pod, or TYPE/NAME of a workload or service selecting one.
    pub target: String,
    /// `[LOCAL_PORT:]REMOTE_PORT` pairs (`:REMOTE` picks a free local port).
    #[arg(required = true)]
    pub ports: Vec<String>,
    /// Addresses to listen on (comma separated); `localhost` means 127.0.0.1 and ::1.
    #[arg(long, value_delimiter = ',', default_value = "localhost")]
    pub address: Vec<String>,
    /// How long to wait for a pod to be running.
    #[arg(long, default_value = "1m0s")]
    pub pod_running_timeout: String,
}

/// `kubectl attach (POD | TYPE/NAME) -c CONTAINER`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// The pod (or TYPE/NAME) to attach to.
    pub pod: String,
    /// Container name.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// How long to wait for a pod to be running.
    #[arg(long, default_value = "1m0s")]
    pub pod_running_timeout: String,
}

/// `kubectl cp <file-spec-src> <file-spec-dest>`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local path or `[namespace/]pod:path`.
    pub source: String,
    /// Destination: a local path or `[namespace/]pod:path`.
    pub destination: String,
    /// Container name.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Do not preserve ownership and permissions in the container.
    #[arg(long)]
    pub no_preserve: bool,
    /// Retries when copying from the container fails (0: none).
    #[arg(long, default_value_t = 0)]
    pub retries: i32,
}

/// `kubectl diff -f FILENAME`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Files (or `-`) with the configuration to diff.
    #[arg(short = 'f', long = "filename", required = true)]
    pub filenames: Vec<String>,
    /// Use server-side apply to compute the merged object.
    #[arg(long)]
    pub server_side: bool,
    /// Field manager for server-side apply.
    #[arg(long, default_value = "kubectl-client-side-apply")]
    pub field_manager: String,
    /// Force conflicts with server-side apply.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Show managed fields in the diff.
    #[arg(long)]
    pub show_managed_fields: bool,
}
