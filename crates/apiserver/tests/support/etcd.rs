//! A real etcd for the integration tests (Debian's `etcd-server`), on free loopback ports, with
//! its data in a temp dir; killed on drop.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube_apiserver::storage::{self, StorageConfig};

/// How many times a start is tried: a port found free can be taken by another process (another
/// test's etcd, or an outgoing connection's local port) before etcd binds it.
const ATTEMPTS: usize = 5;

/// A running etcd.
pub struct Etcd {
    child: Child,
    /// Its client URL.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Err(e) = self.child.kill() {
            eprintln!("killing etcd: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("waiting for etcd: {e}");
        }
    }
}

/// Whether the `etcd` binary runs here.
pub fn installed() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts etcd and waits until it serves reads; `None`, with a note naming `test`, when etcd is
/// not installed. A start that fails every attempt is an error carrying the end of each
/// attempt's log, since each attempt's temp dir goes with it.
pub async fn start(test: &str) -> anyhow::Result<Option<Etcd>> {
    if !installed() {
        eprintln!("NOTE: `etcd` binary not found; skipping {test}");
        return Ok(None);
    }
    let mut failures = Vec::new();
    for attempt in 0..ATTEMPTS {
        let (client, peer) = two_free_ports()?;
        let url = format!("http://127.0.0.1:{client}");
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("etcd.log");
        let child = Command::new("etcd")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &url])
            .args(["--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let mut etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        if serves(&mut etcd).await? {
            return Ok(Some(etcd));
        }
        // Read before `etcd` goes, taking its dir and log with it.
        failures.push(format!("attempt {attempt}: {}", log_tail(&log)));
        drop(etcd);
        // Whatever held the port may let it go: wait a little longer after each failure.
        tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
    }
    anyhow::bail!("etcd did not start:\n{}", failures.join("\n"))
}

/// Two distinct free loopback ports: both listeners are held until both ports are known.
fn two_free_ports() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// Waits up to 30 s for `etcd` to answer a read; false once it has exited or the time is up.
async fn serves(etcd: &mut Etcd) -> anyhow::Result<bool> {
    let config = StorageConfig::Etcd {
        endpoints: vec![etcd.url.clone()],
        prefix: "/registry".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if etcd.child.try_wait()?.is_some() {
            return Ok(false);
        }
        if let Ok(Ok(store)) =
            tokio::time::timeout(Duration::from_secs(2), storage::open(&config)).await
        {
            if store.current_revision().await.is_ok() {
                return Ok(true);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// The last few lines of an attempt's log.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Err(e) = std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        return format!("(no log: {e})");
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n  ")
}
