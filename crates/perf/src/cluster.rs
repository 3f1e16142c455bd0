//! The cluster under test: either processes kube-perf starts itself from the release binaries
//! (etcd, kube-apiserver, kube-scheduler, kube-controller-manager on random ports, PKI from
//! `kube-certs local-cluster` in a temp dir, as hack/local-up-cluster.sh does), or a running
//! cluster named by `--kubeconfig` (its processes found through /proc).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use tokio::process::{Child, Command};

use crate::procs::{self, ProcUsage};

/// Why the cluster could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A binary is missing.
    #[error("{path} not found: build with `cargo build --release -p {name}` or pass --bin-dir")]
    Binary {
        /// The binary path.
        path: String,
        /// Package name.
        name: String,
    },
    /// An I/O step failed.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// `kube-certs` failed.
    #[error("kube-certs local-cluster failed: {0}")]
    Certs(String),
    /// A component did not become ready.
    #[error("{name} did not become ready within {seconds}s (log: {log})")]
    NotReady {
        /// Component.
        name: String,
        /// Timeout.
        seconds: u64,
        /// Its log.
        log: String,
    },
    /// The client could not be built.
    #[error("client: {0}")]
    Client(#[from] component_base::client::ClientError),
}

/// Which storage the apiserver uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    /// etcd v3 (kube-perf starts its own etcd).
    Etcd3,
    /// Embedded SQLite.
    Sqlite,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where the release binaries are.
    pub bin_dir: PathBuf,
    /// Use this running cluster instead of starting one.
    pub kubeconfig: Option<PathBuf>,
    /// Apiserver storage.
    pub storage: Storage,
    /// Start kube-scheduler.
    pub scheduler: bool,
    /// Start kube-controller-manager.
    pub controller_manager: bool,
    /// `RUST_LOG` of the components.
    pub log_level: String,
    /// Keep the state dir (certs, logs) after the run.
    pub keep: bool,
}

struct Component {
    name: String,
    child: Child,
}

/// A running cluster (stopped on drop when kube-perf started it).
pub struct Cluster {
    /// Held for its Drop: removes the state dir (unless --keep).
    _dir: Option<tempfile::TempDir>,
    root: Option<PathBuf>,
    components: Vec<Component>,
    /// Admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The etcd endpoint when kube-perf started etcd.
    pub etcd_endpoint: Option<String>,
    /// Admin client.
    pub client: Client,
    external_pids: Vec<(String, u32)>,
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| ClusterError::Io {
        what: "finding a free port".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|source| ClusterError::Io {
            what: "finding a free port".into(),
            source,
        })
}

/// Starts a standalone etcd in `dir` on random ports; returns the process and its endpoint.
async fn start_etcd(dir: &Path, logs: &Path, level: &str) -> Result<(Child, String), ClusterError> {
    let client_port = free_port()?;
    let peer_port = free_port()?;
    let url = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let etcd_level = if level == "info" { "info" } else { "warn" };
    let child = spawn(
        Path::new("etcd"),
        "etcd",
        &[
            "--name",
            "perf",
            "--data-dir",
            &dir.join("etcd").display().to_string(),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("perf={peer}"),
            "--quota-backend-bytes",
            "8589934592",
            // etcd 3.4 keeps 100,000 raft entries in memory between snapshots (3.6 lowered the
            // default to 10,000): at thousands of node heartbeats a second that is gigabytes.
            "--snapshot-count",
            "10000",
            "--log-level",
            etcd_level,
        ],
        logs,
        level,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = etcd_client::Client::connect([url.as_str()], None).await {
            if c.status().await.is_ok() {
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(ClusterError::NotReady {
                name: "etcd".into(),
                seconds: 30,
                log: logs.join("etcd.log").display().to_string(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((child, url))
}

fn spawn(
    binary: &Path,
    name: &str,
    args: &[&str],
    logs: &Path,
    level: &str,
) -> Result<Child, ClusterError> {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).map_err(|source| {
        ClusterError::Io {
            what: format!("creating the log of {name}"),
            source,
        }
    })?;
    Command::new(binary)
        .args(args)
        .env("RUST_LOG", level)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ClusterError::Io {
            what: format!("starting {}", binary.display()),
            source,
        })
}

fn binary(bin_dir: &Path, name: &str) -> Result<PathBuf, ClusterError> {
    let path = bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ClusterError::Binary {
            path: path.display().to_string(),
            name: name.to_string(),
        })
    }
}

/// A standalone etcd started only to measure the raw etcd floors beside a cluster on SQLite;
/// killed when dropped.
pub struct FloorEtcd {
    _child: Child,
    /// Its client URL.
    pub endpoint: String,
}

impl Cluster {
    /// Starts an etcd in the state dir of a cluster kube-perf started on SQLite, so that the
    /// raw etcd floors can be measured in the same run; `None` (with a warning) when the cluster
    /// is external or etcd cannot start. Drop it before the measured load.
    pub async fn floor_etcd(&self) -> Option<FloorEtcd> {
        let root = self.root.as_ref()?.join("floor");
        let logs = root.join("logs");
        if let Err(error) = std::fs::create_dir_all(&logs) {
            tracing::warn!(%error, "no directory for the floor etcd");
            return None;
        }
        match start_etcd(&root, &logs, "warn").await {
            Ok((child, endpoint)) => Some(FloorEtcd {
                _child: child,
                endpoint,
            }),
            Err(error) => {
                tracing::warn!(%error, "the etcd floor is not measured");
                None
            }
        }
    }

    /// Starts (or attaches to) the cluster.
    pub async fn start(options: &ClusterOptions) -> Result<Self, ClusterError> {
        if let Some(kubeconfig) = &options.kubeconfig {
            let client = component_base::client::from_kubeconfig(Some(kubeconfig)).await?;
            let mut external_pids = Vec::new();
            for name in [
                "etcd",
                "kube-apiserver",
                "kube-scheduler",
                "kube-controller-manager",
                "kubelet",
                "kube-proxy",
                "kube-dns",
                "containerd",
            ] {
                for pid in procs::find_by_exe(name) {
                    external_pids.push((name.to_string(), pid));
                }
            }
            return Ok(Self {
                _dir: None,
                root: None,
                components: Vec::new(),
                kubeconfig: kubeconfig.clone(),
                etcd_endpoint: None,
                client,
                external_pids,
            });
        }
        let io = |what: &str| {
            let what = what.to_string();
            move |source| ClusterError::Io { what, source }
        };
        let apiserver_bin = binary(&options.bin_dir, "kube-apiserver")?;
        let certs_bin = binary(&options.bin_dir, "kube-certs")?;
        let dir = tempfile::Builder::new()
            .prefix("kube-perf-")
            .tempdir()
            .map_err(io("creating the state dir"))?;
        let root = dir.path().to_path_buf();
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).map_err(io("creating the log dir"))?;
        let port = free_port()?;
        let output = Command::new(&certs_bin)
            .args(["local-cluster", "--dir"])
            .arg(&root)
            .args(["--node-name", "kube-perf", "--node-ip", "127.0.0.1"])
            .args(["--apiserver", &format!("https://127.0.0.1:{port}")])
            .output()
            .await
            .map_err(io("running kube-certs"))?;
        if !output.status.success() {
            return Err(ClusterError::Certs(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        let mut components = Vec::new();
        let mut etcd_endpoint = None;
        let certs = root.join("certs");
        let cert = |name: &str| certs.join(name).display().to_string();
        let mut storage_args: Vec<String> = Vec::new();
        match options.storage {
            Storage::Etcd3 => {
                let (child, url) = start_etcd(&root, &logs, &options.log_level).await?;
                components.push(Component {
                    name: "etcd".into(),
                    child,
                });
                storage_args.extend([
                    "--storage-backend".into(),
                    "etcd3".into(),
                    "--etcd-servers".into(),
                    url.clone(),
                ]);
                etcd_endpoint = Some(url);
            }
            Storage::Sqlite => {
                std::fs::create_dir_all(root.join("apiserver"))
                    .map_err(io("creating apiserver dir"))?;
                storage_args.extend([
                    "--storage-backend".into(),
                    "sqlite".into(),
                    "--sqlite-path".into(),
                    root.join("apiserver/state.db").display().to_string(),
                ]);
            }
        }
        let port_s = port.to_string();
        let mut args: Vec<String> = [
            "--secure-port",
            &port_s,
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "--tls-cert-file".into(),
            cert("apiserver.crt"),
            "--tls-private-key-file".into(),
            cert("apiserver.key"),
            "--client-ca-file".into(),
            cert("ca.crt"),
            "--service-cluster-ip-range".into(),
            "10.96.0.0/12".into(),
            "--kubelet-client-certificate".into(),
            cert("apiserver-kubelet-client.crt"),
            "--kubelet-client-key".into(),
            cert("apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority".into(),
            cert("ca.crt"),
            "--service-account-key-file".into(),
            cert("sa.pub"),
            "--service-account-signing-key-file".into(),
            cert("sa.key"),
        ]);
        args.extend(storage_args);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        components.push(Component {
            name: "kube-apiserver".into(),
            child: spawn(
                &apiserver_bin,
                "kube-apiserver",
                &argv,
                &logs,
                &options.log_level,
            )?,
        });
        let kubeconfig = root.join("admin.kubeconfig");
        let client = component_base::client::from_kubeconfig(Some(&kubeconfig)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let namespaces: Api<Namespace> = Api::all(client.clone());
        while namespaces
            .list(&ListParams::default().limit(1))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady {
                    name: "kube-apiserver".into(),
                    seconds: 60,
                    log: logs.join("kube-apiserver.log").display().to_string(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if options.controller_manager {
            let bin = binary(&options.bin_dir, "kube-controller-manager")?;
            let kc = root
                .join("controller-manager.kubeconfig")
                .display()
                .to_string();
            let health = free_port()?.to_string();
            let argv = [
                "--kubeconfig",
                &kc,
                "--cluster-cidr",
                "100.64.0.0/10",
                "--allocate-node-cidrs",
                "--node-cidr-mask-size",
                "24",
                "--service-cluster-ip-range",
                "10.96.0.0/12",
                "--secure-port",
                &health,
                "--bind-address",
                "127.0.0.1",
                "--controllers",
                "*",
                // One instance of each: a run that saturates both cores must not end early
                // because a lease renewal missed its deadline.
                "--leader-elect=false",
            ];
            components.push(Component {
                name: "kube-controller-manager".into(),
                child: spawn(
                    &bin,
                    "kube-controller-manager",
                    &argv,
                    &logs,
                    &options.log_level,
                )?,
            });
        }
        if options.scheduler {
            let bin = binary(&options.bin_dir, "kube-scheduler")?;
            let kc = root.join("scheduler.kubeconfig").display().to_string();
            let health = free_port()?.to_string();
            let argv = [
                "--kubeconfig",
                &kc,
                "--secure-port",
                &health,
                "--bind-address",
                "127.0.0.1",
                "--leader-elect=false",
            ];
            components.push(Component {
                name: "kube-scheduler".into(),
                child: spawn(&bin, "kube-scheduler", &argv, &logs, &options.log_level)?,
            });
        }
        tracing::info!(dir = %root.display(), port, "cluster started");
        let dir = if options.keep {
            tracing::warn!(dir = %dir.keep().display(), "--keep: the state dir stays after the run");
            None
        } else {
            Some(dir)
        };
        Ok(Self {
            _dir: dir,
            root: Some(root),
            components,
            kubeconfig,
            etcd_endpoint,
            client,
            external_pids: Vec::new(),
        })
    }

    /// The state dir of a cluster kube-perf started.
    pub fn dir(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Pid of component `name`, if kube-perf started it and it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.components
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.child.id())
            .or_else(|| {
                self.external_pids
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, p)| *p)
            })
    }

    /// Usage of every component process, then of kube-perf itself (hollow nodes, load).
    pub fn usage(&self) -> Vec<ProcUsage> {
        let mut all: Vec<ProcUsage> = self
            .components
            .iter()
            .filter_map(|c| procs::read(&c.name, c.child.id()?))
            .collect();
        all.extend(
            self.external_pids
                .iter()
                .filter_map(|(name, pid)| procs::read(name, *pid)),
        );
        all.extend(procs::read_self("kube-perf (load + hollow nodes)"));
        all
    }

    /// Fails when a component kube-perf started has exited (names it and its log).
    pub fn check_alive(&mut self) -> Result<(), ClusterError> {
        for c in &mut self.components {
            if let Ok(Some(status)) = c.child.try_wait() {
                let log = self
                    .root
                    .as_ref()
                    .map(|d| d.join("logs").join(format!("{}.log", c.name)))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                tracing::error!(component = %c.name, %status, log, "component exited");
                return Err(ClusterError::NotReady {
                    name: format!("{} (exited: {status})", c.name),
                    seconds: 0,
                    log,
                });
            }
        }
        Ok(())
    }
}

/// Creates namespace `name` and its `default` ServiceAccount (already existing is fine).
///
/// The ServiceAccount admission plugin refuses pods whose account does not exist yet; the
/// controller-manager would create `default` soon after the namespace, but some scenarios run
/// without it and none should race it.
pub async fn ensure_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    let meta = |name: &str| kube::api::ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: meta(name),
        ..Default::default()
    };
    ignore_conflict(namespaces.create(&PostParams::default(), &ns).await)?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let account = ServiceAccount {
        metadata: meta("default"),
        ..Default::default()
    };
    ignore_conflict(accounts.create(&PostParams::default(), &account).await)
}

/// `Ok` for a create that succeeded or found the object already there (409).
fn ignore_conflict<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}
