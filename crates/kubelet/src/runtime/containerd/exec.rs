//! Exec (a new process in a running container, `Tasks.Exec`) and attach (the main process's
//! stdio, through the copiers' broadcast and the held stdin FIFO).

use std::sync::Arc;

use bytes::Bytes;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, ResizePtyRequest, StartRequest,
    WaitRequest,
};
use containerd_client::types::v1::Status;
use futures::FutureExt;
use oci_spec::runtime::Spec;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;

use super::containers;
use super::io::{open_reader, open_writer, FifoSet, StdinWriter};
use super::ContainerdRuntime;
use crate::runtime::{AttachRequest, ExecRequest, ExecSession, RuntimeError, TerminalSize};

/// Type URL containerd 1.6 expects for a process spec in an `Any`.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// Buffer of the in-memory pipes handed to attach clients.
const PIPE_BUFFER: usize = 64 * 1024;

async fn require_running(runtime: &ContainerdRuntime, id: &str) -> Result<(), RuntimeError> {
    let task = containers::task(runtime, id).await?;
    let running = task.is_some_and(|t| {
        matches!(
            Status::try_from(t.status).unwrap_or(Status::Unknown),
            Status::Running | Status::Paused | Status::Pausing
        )
    });
    if running {
        Ok(())
    } else {
        Err(RuntimeError::ContainerNotRunning { id: id.to_string() })
    }
}

fn new_exec_id(id: &str) -> String {
    let seed = format!("{id}/{}", jiff::Timestamp::now().as_nanosecond());
    format!(
        "exec-{}",
        &hex::encode(Sha256::digest(seed.as_bytes()))[..16]
    )
}

/// Runs `request.command` in container `id`.
pub async fn exec(
    runtime: &ContainerdRuntime,
    id: &str,
    request: ExecRequest,
) -> Result<ExecSession, RuntimeError> {
    if request.command.is_empty() {
        return Err(RuntimeError::InvalidConfig {
            reason: "exec needs a command".to_string(),
        });
    }
    let container = containers::get(runtime, id).await?;
    require_running(runtime, id).await?;
    let spec: Spec = container
        .spec
        .as_ref()
        .and_then(|any| serde_json::from_slice(&any.value).ok())
        .ok_or_else(|| RuntimeError::InvalidConfig {
            reason: format!("container {id} has no readable spec"),
        })?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(request.command.clone()));
    process.set_terminal(Some(request.tty));
    if request.tty {
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".to_string());
        }
        process.set_env(Some(env));
    }
    let process_json = serde_json::to_vec(&process).map_err(|e| RuntimeError::InvalidConfig {
        reason: format!("encoding process spec: {e}"),
    })?;

    let exec_id = new_exec_id(id);
    let fifos = FifoSet::paths(
        runtime.container_dir(id).join(&exec_id),
        request.stdin,
        request.stdout,
        request.stderr && !request.tty,
    );
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
            remove_fifos(&fifos);
            return Err(err);
        }
    };

    let client = runtime.client();
    let exec_request = client.request(ExecProcessRequest {
        container_id: id.to_string(),
        stdin: FifoSet::uri(&fifos.stdin),
        stdout: FifoSet::uri(&fifos.stdout),
        stderr: FifoSet::uri(&fifos.stderr),
        terminal: request.tty,
        spec: Some(prost_types::Any {
            type_url: PROCESS_TYPE_URL.to_string(),
            value: process_json,
        }),
        exec_id: exec_id.clone(),
    });
    if let Err(source) = client.tasks().exec(exec_request).await {
        remove_fifos(&fifos);
        return Err(RuntimeError::Rpc {
            step: "exec process",
            source,
        });
    }
    let start = client.request(StartRequest {
        container_id: id.to_string(),
        exec_id: exec_id.clone(),
    });
    if let Err(source) = client.tasks().start(start).await {
        delete_process(runtime, id, &exec_id).await;
        remove_fifos(&fifos);
        return Err(RuntimeError::Rpc {
            step: "start exec process",
            source,
        });
    }
    tracing::debug!(id, exec_id, command = ?request.command, "exec started");

    let resize = request.tty.then(|| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
        let client = client.clone();
        let (id, exec_id) = (id.to_string(), exec_id.clone());
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                let request = client.request(ResizePtyRequest {
                    container_id: id.clone(),
                    exec_id: exec_id.clone(),
                    width: u32::from(size.width),
                    height: u32::from(size.height),
                });
                if let Err(status) = client.tasks().resize_pty(request).await {
                    tracing::debug!(id, exec_id, error = %status, "resizing exec pty");
                }
            }
        });
        tx
    });

    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    {
        let client = client.clone();
        let (id, exec_id) = (id.to_string(), exec_id.clone());
        tokio::spawn(async move {
            let wait = client.request(WaitRequest {
                container_id: id.clone(),
                exec_id: exec_id.clone(),
            });
            let result = client
                .tasks()
                .wait(wait)
                .await
                .map(|r| r.into_inner().exit_status as i32)
                .map_err(RuntimeError::rpc("wait for exec process"));
            let delete = client.request(DeleteProcessRequest {
                container_id: id.clone(),
                exec_id: exec_id.clone(),
            });
            if let Err(status) = client.tasks().delete_process(delete).await {
                tracing::debug!(id, exec_id, error = %status, "deleting exec process");
            }
            remove_fifos(&fifos);
            if exit_tx.send(result).is_err() {
                tracing::trace!(id, exec_id, "exec exit not awaited");
            }
        });
    }
    let exit = async move {
        exit_rx.await.unwrap_or_else(|_| {
            Err(RuntimeError::Rpc {
                step: "wait for exec process",
                source: tonic::Status::cancelled("waiter ended"),
            })
        })
    };
    let stdin = stdin.map(|pipe| {
        let client = client.clone();
        let (id, exec_id) = (id.to_string(), exec_id.clone());
        let close = move || close_stdin(client, id, exec_id);
        Box::new(StdinWriter::new(pipe, close)) as Box<_>
    });
    Ok(ExecSession {
        stdin,
        stdout: stdout.map(|s| Box::new(s) as Box<_>),
        stderr: stderr.map(|s| Box::new(s) as Box<_>),
        exit: exit.boxed(),
        resize,
    })
}

/// Asks the shim to close a process's stdin (in the background: called from `Drop`).
fn close_stdin(client: super::Client, id: String, exec_id: String) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::warn!(id, exec_id, "no runtime to close exec stdin");
        return;
    };
    handle.spawn(async move {
        let request = client.request(CloseIoRequest {
            container_id: id.clone(),
            exec_id: exec_id.clone(),
            stdin: true,
        });
        if let Err(status) = client.tasks().close_io(request).await {
            tracing::debug!(id, exec_id, error = %status, "closing exec stdin");
        }
    });
}

async fn delete_process(runtime: &ContainerdRuntime, id: &str, exec_id: &str) {
    let client = runtime.client();
    let delete = client.request(DeleteProcessRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
    });
    if let Err(status) = client.tasks().delete_process(delete).await {
        tracing::debug!(id, exec_id, error = %status, "deleting exec process");
    }
}

fn remove_fifos(fifos: &FifoSet) {
    if let Err(err) = fifos.remove() {
        tracing::warn!(error = %err, "removing exec fifos");
    }
}

/// Streams a broadcast of output chunks into an in-memory pipe; ends when the source ends.
fn broadcast_reader(mut rx: broadcast::Receiver<Bytes>) -> tokio::io::DuplexStream {
    let (reader, mut writer) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(chunk) => {
                    if writer.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "attach client too slow, output skipped");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    reader
}

/// Attaches to the main process of container `id`.
pub async fn attach(
    runtime: &ContainerdRuntime,
    id: &str,
    request: AttachRequest,
) -> Result<ExecSession, RuntimeError> {
    containers::get(runtime, id).await?;
    require_running(runtime, id).await?;
    let live = runtime
        .live()
        .get(id)
        .cloned()
        .ok_or_else(|| RuntimeError::Unsupported {
            operation: "attach to a container whose output this kubelet does not copy",
        })?;
    let stdout = request
        .stdout
        .then(|| Box::new(broadcast_reader(live.stdout.subscribe())) as Box<_>);
    let stderr = (request.stderr && !live.tty)
        .then(|| Box::new(broadcast_reader(live.stderr.subscribe())) as Box<_>);
    let stdin = if request.stdin && live.stdin.lock().await.is_some() {
        let (writer, mut reader) = tokio::io::duplex(PIPE_BUFFER);
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut guard = live.stdin.lock().await;
                let Some(stdin) = guard.as_mut() else { break };
                if let Err(err) = stdin.write_all(&buf[..n]).await {
                    tracing::debug!(error = %err, "writing to container stdin");
                    break;
                }
            }
        });
        Some(Box::new(writer) as Box<_>)
    } else {
        None
    };
    let client = runtime.client().clone();
    let resize = live.tty.then(|| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<TerminalSize>(8);
        let client = client.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            while let Some(size) = rx.recv().await {
                let request = client.request(ResizePtyRequest {
                    container_id: id.clone(),
                    exec_id: String::new(),
                    width: u32::from(size.width),
                    height: u32::from(size.height),
                });
                if let Err(status) = client.tasks().resize_pty(request).await {
                    tracing::debug!(id, error = %status, "resizing container pty");
                }
            }
        });
        tx
    });
    let container_id = id.to_string();
    let exit = async move {
        let wait = client.request(WaitRequest {
            container_id,
            exec_id: String::new(),
        });
        client
            .tasks()
            .wait(wait)
            .await
            .map(|r| r.into_inner().exit_status as i32)
            .map_err(RuntimeError::rpc("wait for container"))
    };
    Ok(ExecSession {
        stdin,
        stdout,
        stderr,
        exit: exit.boxed(),
        resize,
    })
}
