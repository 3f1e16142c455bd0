//! Container records: create (image config + spec + snapshot + record), status, list, remove.
//!
//! What the runtime itself needs later (log path, tty, stdin, stop signal, cgroup, start time)
//! is kept in labels with the [`INTERNAL_PREFIX`], so it survives a kubelet restart; those
//! labels are hidden from [`ContainerSummary::labels`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::PrepareSnapshotRequest;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, DeleteTaskRequest,
    GetContainerRequest, GetRequest, KillRequest, ListContainersRequest, ListTasksRequest,
    UpdateContainerRequest, WaitRequest,
};
use containerd_client::types::v1::{Process, Status};
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};

use super::spec::{build_spec, stop_signal, ImageDefaults};
use super::timing::Laps;
use super::unpack::remove_snapshot;
use super::{image, ContainerdRuntime};
use crate::runtime::{
    normalize_image, ContainerConfig, ContainerState, ContainerSummary, RuntimeError,
};

/// Prefix of the runtime's own labels on containerd containers.
pub const INTERNAL_PREFIX: &str = "kubelet.runtime/";
pub(crate) const LABEL_LOG_PATH: &str = "kubelet.runtime/log-path";
pub(crate) const LABEL_TTY: &str = "kubelet.runtime/tty";
pub(crate) const LABEL_STDIN: &str = "kubelet.runtime/stdin";
pub(crate) const LABEL_STOP_SIGNAL: &str = "kubelet.runtime/stop-signal";
pub(crate) const LABEL_CGROUP: &str = "kubelet.runtime/cgroup";
pub(crate) const LABEL_STARTED_AT: &str = "kubelet.runtime/started-at";

/// Type URL containerd 1.6 expects for a runtime spec in an `Any`.
pub const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// A fresh 64-hex-digit container id.
fn new_id(config: &ContainerConfig) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{}/{}/{}/{}/{}",
        Timestamp::now().as_nanosecond(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
        config
            .labels
            .get(crate::runtime::LABEL_POD_UID)
            .map(String::as_str)
            .unwrap_or(""),
        config.name
    );
    hex::encode(Sha256::digest(seed.as_bytes()))
}

pub(crate) fn not_found(id: &str) -> RuntimeError {
    RuntimeError::ContainerNotFound { id: id.to_string() }
}

/// Fetches a container record.
pub async fn get(runtime: &ContainerdRuntime, id: &str) -> Result<Container, RuntimeError> {
    let client = runtime.client();
    let request = client.request(GetContainerRequest { id: id.to_string() });
    match client.containers().get(request).await {
        Ok(response) => response.into_inner().container.ok_or_else(|| not_found(id)),
        Err(status) if status.code() == tonic::Code::NotFound => Err(not_found(id)),
        Err(source) => Err(RuntimeError::Rpc {
            step: "get container",
            source,
        }),
    }
}

/// Creates a container: returns its id.
pub async fn create(
    runtime: &ContainerdRuntime,
    config: &ContainerConfig,
) -> Result<String, RuntimeError> {
    let client = runtime.client();
    let options = runtime.options();
    let mut laps = Laps::new();
    let image_name = normalize_image(&config.image);
    let stored =
        image::load(client, &image_name)
            .await?
            .ok_or_else(|| RuntimeError::ImageNotFound {
                image: image_name.clone(),
            })?;
    laps.lap("load-image");
    let defaults = ImageDefaults::from_config(&stored.config);
    let id = new_id(config);
    let spec = build_spec(&id, config, &defaults)?;
    let spec_json = serde_json::to_vec(&spec).map_err(|e| RuntimeError::InvalidConfig {
        reason: format!("encoding spec: {e}"),
    })?;
    let cgroup = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.display().to_string())
        .unwrap_or_default();

    laps.lap("spec");
    let mut labels: HashMap<String, String> = config
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(
        LABEL_LOG_PATH.to_string(),
        config.log_path.display().to_string(),
    );
    labels.insert(LABEL_TTY.to_string(), config.tty.to_string());
    labels.insert(LABEL_STDIN.to_string(), config.stdin.to_string());
    labels.insert(
        LABEL_STOP_SIGNAL.to_string(),
        stop_signal(&defaults).to_string(),
    );
    labels.insert(LABEL_CGROUP.to_string(), cgroup);
    let container = Container {
        id: id.clone(),
        labels,
        image: image_name,
        runtime: Some(Runtime {
            name: options.runtime.clone(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: SPEC_TYPE_URL.to_string(),
            value: spec_json,
        }),
        snapshotter: options.snapshotter.clone(),
        snapshot_key: id.clone(),
        ..Default::default()
    };
    // The record comes first: it references the snapshot key, so the snapshot is never
    // unreferenced and needs no lease against garbage collection (containerd does not require
    // the snapshot to exist yet). Two metadata transactions fewer than a lease around both.
    let request = client.request(CreateContainerRequest {
        container: Some(container),
    });
    client
        .containers()
        .create(request)
        .await
        .map_err(RuntimeError::rpc("create container"))?;
    laps.lap("create-record");
    let prepare = client.request(PrepareSnapshotRequest {
        snapshotter: options.snapshotter.clone(),
        key: id.clone(),
        parent: stored.top_chain_id.clone(),
        ..Default::default()
    });
    if let Err(source) = client.snapshots().prepare(prepare).await {
        let request = client.request(DeleteContainerRequest { id: id.clone() });
        if let Err(status) = client.containers().delete(request).await {
            tracing::warn!(id, error = %status, "deleting the record of a container without rootfs");
        }
        return Err(RuntimeError::Rpc {
            step: "prepare container snapshot",
            source,
        });
    }
    laps.lap("prepare-snapshot");
    tracing::debug!(
        id,
        name = config.name,
        laps = laps.summary(),
        "container created"
    );
    Ok(id)
}

/// Sets one label on a container record.
pub async fn set_label(
    runtime: &ContainerdRuntime,
    id: &str,
    key: &str,
    value: String,
) -> Result<(), RuntimeError> {
    let client = runtime.client();
    let request = client.request(UpdateContainerRequest {
        container: Some(Container {
            id: id.to_string(),
            labels: HashMap::from([(key.to_string(), value)]),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![format!("labels.{key}")],
        }),
    });
    client
        .containers()
        .update(request)
        .await
        .map_err(RuntimeError::rpc("update container labels"))?;
    runtime.states().invalidate(id);
    Ok(())
}

/// The task (main process) of a container, `None` if it has none.
pub async fn task(runtime: &ContainerdRuntime, id: &str) -> Result<Option<Process>, RuntimeError> {
    let client = runtime.client();
    let request = client.request(GetRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    });
    match client.tasks().get(request).await {
        Ok(response) => Ok(response.into_inner().process),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(source) => Err(RuntimeError::Rpc {
            step: "get task",
            source,
        }),
    }
}

fn to_timestamp(ts: Option<prost_types::Timestamp>) -> Option<Timestamp> {
    let ts = ts?;
    Timestamp::new(ts.seconds, ts.nanos).ok()
}

/// Whether the cgroup v1 memory controller recorded an OOM kill (best effort).
fn oom_killed(cgroup: &str) -> bool {
    if cgroup.is_empty() {
        return false;
    }
    let path = format!(
        "/sys/fs/cgroup/memory/{}/memory.oom_control",
        cgroup.trim_start_matches('/')
    );
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .is_some_and(|n| n > 0)
}

/// Maps a container record and its task to a [`ContainerState`].
fn state_of(container: &Container, task: Option<&Process>) -> ContainerState {
    let created_at = to_timestamp(container.created_at).unwrap_or(Timestamp::UNIX_EPOCH);
    let started_at = container
        .labels
        .get(LABEL_STARTED_AT)
        .and_then(|s| s.parse().ok());
    let Some(task) = task else {
        return match started_at {
            // Started once but the task is gone (removed behind our back): it exited.
            Some(started_at) => ContainerState::Exited {
                exit_code: 255,
                started_at,
                finished_at: started_at,
                oom_killed: false,
            },
            None => ContainerState::Created,
        };
    };
    let started_at = started_at.unwrap_or(created_at);
    match Status::try_from(task.status).unwrap_or(Status::Unknown) {
        Status::Created => ContainerState::Created,
        Status::Running | Status::Paused | Status::Pausing => ContainerState::Running {
            started_at,
            pid: task.pid,
        },
        Status::Stopped => {
            let exit_code = task.exit_status as i32;
            let oom = exit_code == 137
                && container
                    .labels
                    .get(LABEL_CGROUP)
                    .is_some_and(|c| oom_killed(c));
            ContainerState::Exited {
                exit_code,
                started_at,
                finished_at: to_timestamp(task.exited_at).unwrap_or(started_at),
                oom_killed: oom,
            }
        }
        Status::Unknown => ContainerState::Unknown,
    }
}

/// The state of one container.
/// Served from the runtime's [`StateCache`](super::events::StateCache) when nothing happened to
/// the container since it was last read.
pub async fn status(runtime: &ContainerdRuntime, id: &str) -> Result<ContainerState, RuntimeError> {
    let states = runtime.states();
    if let Some(state) = states.get(id) {
        return Ok(state);
    }
    let token = states.begin_read();
    let container = get(runtime, id).await?;
    let task = task(runtime, id).await?;
    let state = state_of(&container, task.as_ref());
    // An unknown state may be a shim that does not answer yet: read it again next time.
    if state != ContainerState::Unknown {
        states.store(id, state.clone(), token);
    }
    Ok(state)
}

/// Every container in the namespace with its state.
pub async fn list(runtime: &ContainerdRuntime) -> Result<Vec<ContainerSummary>, RuntimeError> {
    let client = runtime.client();
    let containers = client
        .containers()
        .list(client.request(ListContainersRequest::default()))
        .await
        .map_err(RuntimeError::rpc("list containers"))?
        .into_inner()
        .containers;
    let tasks = client
        .tasks()
        .list(client.request(ListTasksRequest::default()))
        .await
        .map_err(RuntimeError::rpc("list tasks"))?
        .into_inner()
        .tasks;
    let tasks: HashMap<&str, &Process> = tasks
        .iter()
        .map(|t| {
            let id = if t.container_id.is_empty() {
                t.id.as_str()
            } else {
                t.container_id.as_str()
            };
            (id, t)
        })
        .collect();
    Ok(containers
        .iter()
        .map(|c| ContainerSummary {
            id: c.id.clone(),
            labels: c
                .labels
                .iter()
                .filter(|(k, _)| !k.starts_with(INTERNAL_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            image: c.image.clone(),
            created_at: to_timestamp(c.created_at).unwrap_or(Timestamp::UNIX_EPOCH),
            state: state_of(c, tasks.get(c.id.as_str()).copied()),
        })
        .collect())
}

/// Kills a container's task (all processes) with `signal`; Ok if there is none or it is done.
pub async fn kill(
    runtime: &ContainerdRuntime,
    id: &str,
    signal: u32,
    all: bool,
) -> Result<(), RuntimeError> {
    let client = runtime.client();
    let request = client.request(KillRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
        signal,
        all,
    });
    let killed = client.tasks().kill(request).await;
    runtime.states().invalidate(id);
    match killed {
        Ok(_) => Ok(()),
        Err(status)
            if matches!(
                status.code(),
                tonic::Code::NotFound | tonic::Code::FailedPrecondition
            ) || status.message().contains("finished") =>
        {
            Ok(())
        }
        Err(source) => Err(RuntimeError::Rpc {
            step: "kill task",
            source,
        }),
    }
}

/// Waits for a container's task to exit; Ok(None) if there is no task.
pub async fn wait(runtime: &ContainerdRuntime, id: &str) -> Result<Option<u32>, RuntimeError> {
    let client = runtime.client();
    let request = client.request(WaitRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    });
    match client.tasks().wait(request).await {
        Ok(response) => Ok(Some(response.into_inner().exit_status)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(source) => Err(RuntimeError::Rpc {
            step: "wait for task",
            source,
        }),
    }
}

/// Removes a container: kills and deletes its task, deletes the record and the snapshot,
/// removes its FIFOs. Ok if already gone.
pub async fn remove(runtime: &ContainerdRuntime, id: &str) -> Result<(), RuntimeError> {
    let client = runtime.client();
    if task(runtime, id).await?.is_some() {
        kill(runtime, id, nix::sys::signal::Signal::SIGKILL as u32, true).await?;
        match tokio::time::timeout(std::time::Duration::from_secs(10), wait(runtime, id)).await {
            Ok(result) => {
                result?;
            }
            Err(_) => tracing::warn!(id, "task did not exit 10s after SIGKILL"),
        }
        let request = client.request(DeleteTaskRequest {
            container_id: id.to_string(),
        });
        match client.tasks().delete(request).await {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(source) => {
                return Err(RuntimeError::Rpc {
                    step: "delete task",
                    source,
                })
            }
        }
    }
    let request = client.request(DeleteContainerRequest { id: id.to_string() });
    match client.containers().delete(request).await {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(source) => {
            return Err(RuntimeError::Rpc {
                step: "delete container",
                source,
            })
        }
    }
    runtime.states().invalidate(id);
    remove_snapshot(client, &runtime.options().snapshotter, id).await?;
    runtime.live().remove(id);
    let dir = runtime.container_dir(id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RuntimeError::Io {
                step: "removing container fifo dir",
                path: dir,
                source,
            })
        }
    }
    tracing::debug!(id, "container removed");
    Ok(())
}
