//! Port-forward for the containerd runtime: a TCP connection to `127.0.0.1:<port>` made from
//! inside a pod's network namespace.
//!
//! `setns(2)` changes the namespace of the calling thread only, so the connection is made on a
//! short-lived thread of its own that enters the namespace, connects and exits; the socket stays
//! in the pod's namespace and is handed to tokio.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::runtime::RuntimeError;

fn io_error(step: &'static str, path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

fn connect_in(netns: &Path, port: u16) -> Result<std::net::TcpStream, RuntimeError> {
    let file =
        std::fs::File::open(netns).map_err(|e| io_error("opening network namespace", netns, e))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|e| io_error("entering network namespace", netns, e.into()))?;
    let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = std::net::TcpStream::connect(target)
        .map_err(|e| io_error("connecting to 127.0.0.1 in", netns, e))?;
    stream
        .set_nonblocking(true)
        .map_err(|e| io_error("configuring the socket from", netns, e))?;
    Ok(stream)
}

/// Connects to `127.0.0.1:port` in the namespace at `netns` (`None`: the host's).
pub async fn dial(netns: Option<&Path>, port: u16) -> Result<TcpStream, RuntimeError> {
    let Some(netns) = netns else {
        return TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .map_err(|e| io_error("connecting to 127.0.0.1 on", Path::new("the host"), e));
    };
    let path: PathBuf = netns.to_path_buf();
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("port-forward-dial".into())
        .spawn(move || {
            // The receiver is gone only if the request was cancelled: nothing to report then.
            if tx.send(connect_in(&path, port)).is_err() {
                tracing::debug!("port-forward dial cancelled");
            }
        })
        .map_err(|e| io_error("starting a thread to enter", netns, e))?;
    let stream = rx.await.map_err(|_| {
        io_error(
            "entering network namespace",
            netns,
            std::io::Error::other("the dialing thread died"),
        )
    })??;
    TcpStream::from_std(stream).map_err(|e| io_error("registering the socket from", netns, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn host_network_dials_the_host_loopback() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stream = dial(None, port).await.expect("dial");
        assert_eq!(stream.peer_addr().expect("peer").port(), port);
    }

    #[tokio::test]
    async fn a_missing_namespace_is_an_error() {
        let error = dial(Some(Path::new("/nonexistent/netns/x")), 80)
            .await
            .expect_err("no such netns");
        assert!(error.to_string().contains("opening network namespace"));
    }
}
