//! End-to-end test helpers: bring a one-node cluster up with `hack/local-up-cluster.sh -d`, drive it
//! with a kubectl binary (the upstream one or ours), poll until a condition holds, and tear it down.
//!
//! Start with [`Cluster::up`] and [`Kubectl`]; the flow itself lives in `tests/one_node.rs`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The repository root (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives one level below the repository root")
        .to_path_buf()
}

/// Where the release binaries are (`$KUBE_BIN_DIR` or `target/release`).
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("KUBE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join("release"),
    }
}

/// Runs a command and returns its output; the error names the command.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    Ok(output)
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> Result<String> {
    let output = run(cmd)?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Polls `check` every `every` until it returns `Ok(Some(value))` or `timeout` passes; the error
/// carries the last reason `check` gave.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => "not yet".to_string(),
            Err(error) => format!("{error:#}"),
        };
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(every);
    }
}

/// A running one-node cluster, stopped with `hack/local-down-cluster.sh` on drop.
pub struct Cluster {
    /// The cluster's state directory (`$KUBE_LOCAL_DIR`).
    pub dir: PathBuf,
    /// The storage backend it runs on (`sqlite` or `etcd`).
    pub storage: String,
    /// How long `local-up-cluster.sh -d` took.
    pub bring_up: Duration,
}

impl Cluster {
    /// Brings a cluster up in `dir` on `storage`, with the binaries already built.
    pub fn up(dir: &Path, storage: &str) -> Result<Cluster> {
        let root = repo_root();
        // Leftovers of a crashed earlier run must not stop this one.
        let _ = Self::down_in(dir);
        let start = Instant::now();
        let output = run(Command::new("bash")
            .arg(root.join("hack/local-up-cluster.sh"))
            .arg("-d")
            .env("KUBE_LOCAL_DIR", dir)
            .env("KUBE_STORAGE", storage)
            .env("KUBE_SKIP_BUILD", "1")
            .env("KUBE_BIN_DIR", bin_dir()))?;
        let bring_up = start.elapsed();
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            storage: storage.to_string(),
            bring_up,
        };
        if !output.status.success() {
            let logs = cluster.component_logs();
            bail!(
                "local-up-cluster.sh failed ({}):\nstdout: {}\nstderr: {}\n{logs}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !stdout.contains("export KUBECONFIG=") {
            bail!("local-up-cluster.sh did not print the export KUBECONFIG line:\n{stdout}");
        }
        Ok(cluster)
    }

    fn down_in(dir: &Path) -> Result<String> {
        run_ok(
            Command::new("bash")
                .arg(repo_root().join("hack/local-down-cluster.sh"))
                .env("KUBE_LOCAL_DIR", dir)
                .env("KUBE_BIN_DIR", bin_dir()),
        )
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// containerd's socket for this cluster.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd/containerd.sock")
    }

    /// The last lines of every component log, for failure messages.
    pub fn component_logs(&self) -> String {
        let mut out = String::new();
        let logs = self.dir.join("logs");
        if let Ok(entries) = std::fs::read_dir(&logs) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.into_iter().filter(|p| p.is_file()) {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(25)..];
                out.push_str(&format!(
                    "==> {} <==\n{}\n",
                    path.display(),
                    tail.join("\n")
                ));
            }
        }
        out
    }

    /// Stops the cluster and reports what the down script said.
    pub fn down(self) -> Result<String> {
        let dir = self.dir.clone();
        std::mem::forget(self);
        Self::down_in(&dir)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(error) = Self::down_in(&self.dir) {
            eprintln!("tearing the cluster down failed: {error:#}");
        }
    }
}

/// A kubectl binary pointed at a cluster and a namespace.
#[derive(Clone)]
pub struct Kubectl {
    /// The binary (the upstream `/usr/bin/kubectl` or ours).
    pub binary: PathBuf,
    /// The kubeconfig it uses.
    pub kubeconfig: PathBuf,
    /// The namespace it works in.
    pub namespace: String,
}

impl Kubectl {
    /// A command with `--kubeconfig` and `-n` set.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("-n")
            .arg(&self.namespace);
        cmd
    }

    /// Runs kubectl with `args` and returns the raw output.
    pub fn output(&self, args: &[&str]) -> Result<Output> {
        run(self.command().args(args))
    }

    /// Runs kubectl with `args`, which must succeed, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        run_ok(self.command().args(args))
    }

    /// Runs kubectl with `args` and `stdin` as standard input; must succeed.
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        use std::io::Write;
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(stdin.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "kubectl {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs kubectl with `args` plus `-o json` and parses the result.
    pub fn json(&self, args: &[&str]) -> Result<Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.ok(&all)?;
        serde_json::from_str(&text).with_context(|| format!("parsing kubectl {args:?} output"))
    }
}

/// The `items` of a list object.
pub fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether a pod is Running with its `Ready` condition True.
pub fn pod_ready(pod: &Value) -> bool {
    let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|conds| {
            conds.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
        .unwrap_or(false);
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    running && ready && !deleting
}

/// A string field of an object by JSON pointer, or "".
pub fn field(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
