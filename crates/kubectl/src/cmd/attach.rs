//! `kubectl attach POD [-c C] [-i] [-t]`: attaches to the main process of a running container
//! through the `attach` subresource (WebSocket channel protocol, via kube-rs): its output from now
//! on, and our stdin with `-i`. Ends when the process exits (with its status) or the stream ends.
//! With `-it` on a terminal, the local terminal is in raw mode for the session and its size follows
//! the local window, as with `exec -it`.

use std::io::Write;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::exec::outcome;
use super::logs::{default_container, resolve_pod};
use crate::cli::AttachArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Whether the container was created with a TTY / with stdin.
fn container_flags(pod: &Pod, container: &str) -> (bool, bool) {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == container)
        .map(|c| (c.tty.unwrap_or(false), c.stdin.unwrap_or(false)))
        .unwrap_or((false, false))
}

/// Runs `kubectl attach`.
pub async fn run(s: &mut Session, args: AttachArgs) -> Result<()> {
    let client = s.client().await?;
    let namespace = s.namespace().await?;
    let name = resolve_pod(s, &client, &namespace, &args.pod).await?;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let pod = pods.get(&name).await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|st| st.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return Err(Error::Usage(format!(
            "cannot attach a container in a completed pod; current phase is {phase}"
        )));
    }
    let container = match args.container.clone() {
        Some(c) => c,
        None => default_container(s, &pods, &name)
            .await?
            .ok_or_else(|| Error::Usage(format!("pod {name} has no containers")))?,
    };
    let (container_tty, _) = container_flags(&pod, &container);
    let mut tty = args.tty;
    if tty && !container_tty {
        if !args.quiet {
            s.eprint(&format!(
                "error: Unable to use a TTY - container {container} did not allocate one\n"
            ))?;
        }
        tty = false;
    }
    if tty && args.stdin && !args.quiet {
        s.eprint("If you don't see a command prompt, try pressing enter.\n")?;
    }
    let params = AttachParams {
        container: Some(container),
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
        ..AttachParams::default()
    };
    let raw_terminal = tty && args.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let _raw = if raw_terminal {
        super::exec::raw::RawTerminal::enter()
    } else {
        None
    };
    let mut process = pods.attach(&name, &params).await?;
    if raw_terminal {
        if let Some(resize) = process.terminal_size() {
            tokio::spawn(super::exec::follow_terminal_size(resize));
        }
    }
    if let Some(mut writer) = process.stdin() {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            if let Err(e) = tokio::io::copy(&mut stdin, &mut writer).await {
                tracing::debug!(error = %e, "copying stdin ended");
            }
            if let Err(e) = writer.shutdown().await {
                tracing::debug!(error = %e, "closing remote stdin");
            }
        });
    }
    let status = process.take_status();
    let stdout = process.stdout();
    let stderr = process.stderr();
    let out = &mut s.io.out;
    let err = &mut s.io.err;
    let (copied_out, copied_err) = tokio::join!(pump(stdout, out), pump(stderr, err));
    copied_out?;
    copied_err?;
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    if let Err(e) = process.join().await {
        tracing::debug!(error = %e, "attach session ended");
    }
    drop(_raw);
    outcome(status)
}

async fn pump<R: AsyncRead + Unpin>(
    reader: Option<R>,
    writer: &mut Box<dyn Write + Send + Sync>,
) -> Result<()> {
    let Some(mut reader) = reader else {
        return Ok(());
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("reading remote output", e))?;
        if n == 0 {
            return Ok(());
        }
        writer
            .write_all(&buf[..n])
            .and_then(|()| writer.flush())
            .map_err(|e| Error::io("writing output", e))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_flags_come_from_the_spec() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "tty": true, "stdin": true}, {"name": "b"}]}}))
        .expect("pod");
        assert_eq!(container_flags(&pod, "a"), (true, true));
        assert_eq!(container_flags(&pod, "b"), (false, false));
        assert_eq!(container_flags(&pod, "zz"), (false, false));
    }
}
