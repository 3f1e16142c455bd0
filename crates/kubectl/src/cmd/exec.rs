//! `kubectl exec POD [-c C] [-i] [-t] -- CMD...`: runs a command through the `exec` subresource
//! over WebSockets (`v5.channel.k8s.io`, via kube-rs) and exits with the remote command's status.
//! With `-t` on a terminal, the local terminal is put into raw mode for the session.

use std::io::Write;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams, TerminalSize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::logs::{default_container, resolve_pod};
use crate::cli::ExecArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Runs `kubectl exec`; returns the remote exit code as an error when it is not zero.
pub async fn run(s: &mut Session, args: ExecArgs) -> Result<()> {
    let client = s.client().await?;
    let namespace = s.namespace().await?;
    let pod = resolve_pod(s, &client, &namespace, &args.pod).await?;
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    let container = match args.container.clone() {
        Some(c) => Some(c),
        None if args.quiet => None,
        None => default_container(s, &pods, &pod).await?,
    };
    let mut tty = args.tty;
    if tty && !(args.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin())) {
        if !args.quiet {
            s.eprint("Unable to use a TTY - input is not a terminal or the right kind of file\n")?;
        }
        tty = false;
    }
    let params = AttachParams {
        container,
        stdin: args.stdin,
        stdout: true,
        stderr: !tty,
        tty,
        ..AttachParams::default()
    };
    let _raw = if tty { raw::RawTerminal::enter() } else { None };
    let mut process = pods.exec(&pod, args.command.clone(), &params).await?;
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
    if tty {
        if let Some(resize) = process.terminal_size() {
            tokio::spawn(follow_terminal_size(resize));
        }
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
        tracing::debug!(error = %e, "exec session ended");
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

/// Sends the local terminal's size now and after every SIGWINCH, until the session ends.
pub(crate) async fn follow_terminal_size(mut resize: futures::channel::mpsc::Sender<TerminalSize>) {
    use futures::SinkExt;
    use tokio::signal::unix::{signal, SignalKind};
    let mut winch = signal(SignalKind::window_change()).ok();
    loop {
        if let Some(size) = local_terminal_size().await {
            if resize.send(size).await.is_err() {
                return;
            }
        }
        let Some(w) = winch.as_mut() else {
            return;
        };
        if w.recv().await.is_none() {
            return;
        }
    }
}

/// The terminal size from `stty size` (no ioctl: this crate forbids unsafe code).
async fn local_terminal_size() -> Option<TerminalSize> {
    let output = tokio::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .output()
        .await
        .ok()?;
    parse_stty_size(&String::from_utf8_lossy(&output.stdout))
}

/// Parses `stty size` output (`ROWS COLS`).
pub fn parse_stty_size(text: &str) -> Option<TerminalSize> {
    let mut parts = text.split_whitespace();
    let height = parts.next()?.parse().ok()?;
    let width = parts.next()?.parse().ok()?;
    Some(TerminalSize { width, height })
}

/// Maps the exec `Status` to our result: success, the remote exit code, or the server's message.
pub fn outcome(status: Option<Status>) -> Result<()> {
    let Some(status) = status else {
        return Ok(());
    };
    if status.status.as_deref() != Some("Failure") {
        return Ok(());
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<i32>().ok());
        if let Some(code) = code {
            return Err(Error::ExitCode(code));
        }
    }
    Err(Error::Usage(
        status
            .message
            .unwrap_or_else(|| "remote command failed".into()),
    ))
}

pub(crate) mod raw {
    //! Raw terminal mode for `exec -it`, restored when the guard drops.
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

    /// Restores the saved terminal attributes on drop.
    pub struct RawTerminal {
        saved: Termios,
    }

    impl RawTerminal {
        /// Puts stdin's terminal into raw mode; `None` when stdin is not a terminal.
        pub fn enter() -> Option<Self> {
            let stdin = std::io::stdin();
            let saved = tcgetattr(&stdin).ok()?;
            let mut raw = saved.clone();
            cfmakeraw(&mut raw);
            tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
            Some(RawTerminal { saved })
        }
    }

    impl Drop for RawTerminal {
        fn drop(&mut self) {
            if let Err(e) = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.saved) {
                tracing::warn!(error = %e, "restoring terminal");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    fn failure(reason: &str, code: &str, message: &str) -> Status {
        Status {
            status: Some("Failure".into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some(code.into()),
                    field: None,
                }]),
                ..StatusDetails::default()
            }),
            ..Status::default()
        }
    }

    #[test]
    fn stty_sizes_parse() {
        let size = parse_stty_size("40 120\n");
        assert_eq!(size.map(|s| (s.height, s.width)), Some((40, 120)));
        assert!(parse_stty_size("").is_none());
        assert!(parse_stty_size("stty: not a tty").is_none());
    }

    #[test]
    fn remote_exit_codes_become_ours() {
        assert!(outcome(None).is_ok());
        assert!(outcome(Some(Status {
            status: Some("Success".into()),
            ..Status::default()
        }))
        .is_ok());
        let err = outcome(Some(failure(
            "NonZeroExitCode",
            "3",
            "command terminated with non-zero exit code",
        )));
        assert_eq!(err.as_ref().err().map(Error::exit_code), Some(3));
        assert_eq!(
            err.err().map(|e| e.report()).as_deref(),
            Some("command terminated with exit code 3")
        );
        let err = outcome(Some(failure("InternalError", "x", "container not found")));
        assert_eq!(
            err.err().map(|e| e.report()).as_deref(),
            Some("error: container not found")
        );
    }
}
