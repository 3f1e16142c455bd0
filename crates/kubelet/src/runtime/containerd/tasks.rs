//! Tasks (a container's main process): start with FIFO stdio and log copiers, stop with a
//! grace period, and reattach the copiers of running containers after a kubelet restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::{CreateTaskRequest, DeleteTaskRequest, StartRequest};
use containerd_client::types::v1::Status;
use tokio::net::unix::pipe;
use tokio::sync::Mutex as AsyncMutex;

use super::containers::{
    self, LABEL_LOG_PATH, LABEL_STARTED_AT, LABEL_STDIN, LABEL_STOP_SIGNAL, LABEL_TTY,
};
use super::io::{copy_to_log, open_reader, open_writer, FifoSet, Listeners};
use super::timing::Laps;
use super::ContainerdRuntime;
use crate::runtime::cri_log::Stream;
use crate::runtime::{ContainerState, RuntimeError};

/// The live plumbing of a container whose output this process copies.
#[derive(Debug)]
pub struct LiveIo {
    /// Raw stdout (the terminal with a tty), for attach.
    pub stdout: Arc<Listeners>,
    /// Raw stderr, for attach.
    pub stderr: Arc<Listeners>,
    /// The container's stdin, if it was created with `stdin`.
    pub stdin: AsyncMutex<Option<pipe::Sender>>,
    /// Whether the container has a terminal.
    pub tty: bool,
    /// The copier tasks, stopped when the runtime is dropped.
    pub copiers: Vec<tokio::task::AbortHandle>,
}

/// What start/recover read from a container's labels.
struct IoSettings {
    log_path: PathBuf,
    tty: bool,
    stdin: bool,
}

fn io_settings(container: &containerd_client::services::v1::Container) -> IoSettings {
    let flag = |key: &str| container.labels.get(key).is_some_and(|v| v == "true");
    IoSettings {
        log_path: container
            .labels
            .get(LABEL_LOG_PATH)
            .map(PathBuf::from)
            .unwrap_or_default(),
        tty: flag(LABEL_TTY),
        stdin: flag(LABEL_STDIN),
    }
}

fn fifos(runtime: &ContainerdRuntime, id: &str, io: &IoSettings) -> FifoSet {
    FifoSet::paths(runtime.container_dir(id), io.stdin, true, !io.tty)
}

/// Spawns the log copiers of a container; the readers must already be connected.
fn spawn_copiers(
    runtime: &ContainerdRuntime,
    id: &str,
    io: &IoSettings,
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
) {
    let stdout_tx = Arc::new(Listeners::new());
    let stderr_tx = Arc::new(Listeners::new());
    let mut copiers = Vec::new();
    if let Some(reader) = stdout {
        let copier = tokio::spawn(copy_to_log(
            reader,
            Stream::Stdout,
            io.log_path.clone(),
            Some(stdout_tx.clone()),
        ));
        copiers.push(copier.abort_handle());
    }
    if let Some(reader) = stderr {
        let copier = tokio::spawn(copy_to_log(
            reader,
            Stream::Stderr,
            io.log_path.clone(),
            Some(stderr_tx.clone()),
        ));
        copiers.push(copier.abort_handle());
    }
    let live = Arc::new(LiveIo {
        stdout: stdout_tx,
        stderr: stderr_tx,
        stdin: AsyncMutex::new(stdin),
        tty: io.tty,
        copiers,
    });
    runtime.live().insert(id.to_string(), live);
}

/// Starts a created container.
pub async fn start(runtime: &ContainerdRuntime, id: &str) -> Result<(), RuntimeError> {
    let client = runtime.client();
    let mut laps = Laps::new();
    let container = containers::get(runtime, id).await?;
    laps.lap("get-container");
    let io = io_settings(&container);
    let mounts = client
        .snapshots()
        .mounts(client.request(MountsRequest {
            snapshotter: container.snapshotter.clone(),
            key: container.snapshot_key.clone(),
        }))
        .await
        .map_err(RuntimeError::rpc("get rootfs mounts"))?
        .into_inner()
        .mounts;
    laps.lap("mounts");
    let fifos = fifos(runtime, id, &io);
    fifos.create()?;
    let opened = (|| -> Result<_, RuntimeError> {
        let stdout = fifos.stdout.as_deref().map(open_reader).transpose()?;
        let stderr = fifos.stderr.as_deref().map(open_reader).transpose()?;
        let stdin = fifos.stdin.as_deref().map(open_writer).transpose()?;
        Ok((stdout, stderr, stdin))
    })();
    let (stdout, stderr, stdin) = match opened {
        Ok(opened) => opened,
        Err(err) => {
            cleanup_fifos(&fifos);
            return Err(err);
        }
    };
    let create = client.request(CreateTaskRequest {
        container_id: id.to_string(),
        rootfs: mounts,
        stdin: FifoSet::uri(&fifos.stdin),
        stdout: FifoSet::uri(&fifos.stdout),
        stderr: FifoSet::uri(&fifos.stderr),
        terminal: io.tty,
        ..Default::default()
    });
    laps.lap("fifos");
    if let Err(source) = client.tasks().create(create).await {
        cleanup_fifos(&fifos);
        return Err(RuntimeError::Rpc {
            step: "create task",
            source,
        });
    }
    laps.lap("create-task");
    spawn_copiers(runtime, id, &io, stdout, stderr, stdin);
    let start = client.request(StartRequest {
        container_id: id.to_string(),
        exec_id: String::new(),
    });
    let started = client.tasks().start(start).await;
    runtime.states().invalidate(id);
    if let Err(source) = started {
        let delete = client.request(DeleteTaskRequest {
            container_id: id.to_string(),
        });
        if let Err(status) = client.tasks().delete(delete).await {
            tracing::warn!(id, error = %status, "deleting task that failed to start");
        }
        return Err(RuntimeError::Rpc {
            step: "start task",
            source,
        });
    }
    laps.lap("start-task");
    containers::set_label(
        runtime,
        id,
        LABEL_STARTED_AT,
        jiff::Timestamp::now().to_string(),
    )
    .await?;
    laps.lap("label-started-at");
    tracing::debug!(id, laps = laps.summary(), "container started");
    Ok(())
}

fn cleanup_fifos(fifos: &FifoSet) {
    if let Err(err) = fifos.remove() {
        tracing::warn!(error = %err, "removing fifos");
    }
}

/// Stops a container: its stop signal, up to `grace`, then SIGKILL.
pub async fn stop(
    runtime: &ContainerdRuntime,
    id: &str,
    grace: Duration,
) -> Result<(), RuntimeError> {
    let stopped = stop_task(runtime, id, grace).await;
    // The exit event may still be on its way: the next status read must not be the cached one.
    runtime.states().invalidate(id);
    stopped
}

async fn stop_task(
    runtime: &ContainerdRuntime,
    id: &str,
    grace: Duration,
) -> Result<(), RuntimeError> {
    let container = containers::get(runtime, id).await?;
    let Some(task) = containers::task(runtime, id).await? else {
        return Ok(());
    };
    if Status::try_from(task.status).unwrap_or(Status::Unknown) == Status::Stopped {
        return Ok(());
    }
    let signal = container
        .labels
        .get(LABEL_STOP_SIGNAL)
        .and_then(|s| s.parse().ok())
        .unwrap_or(nix::sys::signal::Signal::SIGTERM as u32);
    containers::kill(runtime, id, signal, false).await?;
    if !grace.is_zero() {
        if let Ok(result) = tokio::time::timeout(grace, containers::wait(runtime, id)).await {
            result?;
            return Ok(());
        }
        tracing::info!(
            id,
            grace_seconds = grace.as_secs(),
            "container ignored its stop signal, killing"
        );
    }
    containers::kill(runtime, id, nix::sys::signal::Signal::SIGKILL as u32, true).await?;
    match tokio::time::timeout(Duration::from_secs(10), containers::wait(runtime, id)).await {
        Ok(result) => result.map(|_| ()),
        Err(_) => Err(RuntimeError::Rpc {
            step: "stop container",
            source: tonic::Status::deadline_exceeded("task did not exit after SIGKILL"),
        }),
    }
}

/// Reattaches log copiers to every running container whose output nobody copies.
pub async fn recover(runtime: &ContainerdRuntime) -> Result<(), RuntimeError> {
    for summary in containers::list(runtime).await? {
        if !matches!(summary.state, ContainerState::Running { .. })
            || runtime.live().contains_key(&summary.id)
        {
            continue;
        }
        let container = containers::get(runtime, &summary.id).await?;
        let io = io_settings(&container);
        let fifos = fifos(runtime, &summary.id, &io);
        if !fifos.exists() {
            tracing::warn!(
                id = summary.id,
                "running container without fifos, output is lost"
            );
            continue;
        }
        let stdout = fifos.stdout.as_deref().map(open_reader).transpose()?;
        let stderr = fifos.stderr.as_deref().map(open_reader).transpose()?;
        let stdin = fifos.stdin.as_deref().map(open_writer).transpose()?;
        spawn_copiers(runtime, &summary.id, &io, stdout, stderr, stdin);
        tracing::info!(id = summary.id, "reattached to container output");
    }
    Ok(())
}
