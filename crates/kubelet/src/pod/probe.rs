//! Container probes (readiness, liveness, startup): exec through the runtime, HTTP GET to the
//! pod IP (HTTPS without certificate checks, as upstream), TCP connect; with upstream's timing
//! fields (initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold,
//! failureThreshold). The exec and HTTP GET handler code is shared with the lifecycle hooks
//! (`pod::worker::hooks`), which judge the outcome their way.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPHeader, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::runtime::{ContainerRuntime, ExecRequest};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Readiness: gates the Ready condition.
    Readiness,
    /// Liveness: restarts the container after `failureThreshold` failures.
    Liveness,
    /// Startup: holds the other probes until it succeeds.
    Startup,
}

/// One probe's schedule and counters.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    /// The probe spec.
    pub probe: Probe,
    /// When it runs next.
    pub next_at: Instant,
    successes: i32,
    failures: i32,
    /// The current verdict.
    pub healthy: bool,
}

impl ProbeTracker {
    /// A tracker for a container that started at `started`; `initial` is the verdict before
    /// the first result (readiness and startup: false; liveness: true).
    pub fn new(probe: Probe, started: Instant, initial: bool) -> Self {
        let delay = u64::try_from(probe.initial_delay_seconds.unwrap_or(0).max(0)).unwrap_or(0);
        Self {
            probe,
            next_at: started + Duration::from_secs(delay),
            successes: 0,
            failures: 0,
            healthy: initial,
        }
    }

    /// The period between runs.
    pub fn period(&self) -> Duration {
        Duration::from_secs(
            u64::try_from(self.probe.period_seconds.unwrap_or(10).max(1)).unwrap_or(10),
        )
    }

    /// The timeout of one run.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(
            u64::try_from(self.probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1),
        )
    }

    /// Records a result at `now`; returns whether the verdict changed.
    pub fn record(&mut self, success: bool, now: Instant) -> bool {
        self.next_at = now + self.period();
        let before = self.healthy;
        if success {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                self.healthy = true;
            }
        } else {
            self.successes = 0;
            self.failures += 1;
            if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                self.healthy = false;
            }
        }
        before != self.healthy
    }

    /// Whether the probe is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_at
    }
}

/// The probes of one running container instance.
#[derive(Debug, Clone, Default)]
pub struct ContainerProbes {
    /// Readiness probe, if any.
    pub readiness: Option<ProbeTracker>,
    /// Liveness probe, if any.
    pub liveness: Option<ProbeTracker>,
    /// Startup probe, if any.
    pub startup: Option<ProbeTracker>,
}

impl ContainerProbes {
    /// Trackers for a container that started at `started`.
    pub fn new(container: &Container, started: Instant) -> Self {
        Self {
            readiness: container
                .readiness_probe
                .clone()
                .map(|p| ProbeTracker::new(p, started, false)),
            liveness: container
                .liveness_probe
                .clone()
                .map(|p| ProbeTracker::new(p, started, true)),
            startup: container
                .startup_probe
                .clone()
                .map(|p| ProbeTracker::new(p, started, false)),
        }
    }

    /// The container counts as started (no startup probe, or it succeeded).
    pub fn started(&self) -> bool {
        self.startup.as_ref().map(|s| s.healthy).unwrap_or(true)
    }

    /// The container is ready (started, and the readiness probe, if any, succeeds).
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().map(|r| r.healthy).unwrap_or(true)
    }

    /// The liveness probe has failed (time to restart).
    pub fn liveness_failed(&self) -> bool {
        self.started() && self.liveness.as_ref().map(|l| !l.healthy).unwrap_or(false)
    }

    /// The earliest time a probe is due.
    pub fn next_due(&self) -> Option<Instant> {
        [&self.startup, &self.readiness, &self.liveness]
            .into_iter()
            .flatten()
            .map(|t| t.next_at)
            .min()
    }
}

/// Where a probe runs.
pub struct ProbeTarget<'a> {
    /// The runtime (for exec probes).
    pub runtime: &'a Arc<dyn ContainerRuntime>,
    /// The container id.
    pub container_id: &'a str,
    /// The container spec (for named ports).
    pub container: &'a Container,
    /// The pod IP (or the node IP for host-network pods).
    pub ip: Option<IpAddr>,
}

/// The named or numbered port of a probe or lifecycle handler.
pub(crate) fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// The host a handler talks to: its own `host` field when set, else the pod IP.
pub(crate) fn handler_host(host: Option<&str>, ip: Option<IpAddr>) -> Option<String> {
    match host.filter(|h| !h.is_empty()) {
        Some(h) => Some(h.to_string()),
        None => ip.map(|ip| ip.to_string()),
    }
}

/// What an exec handler (probe or hook) left behind.
pub(crate) struct ExecOutput {
    /// The exit code, or why it is unknown.
    pub exit: Result<i32, String>,
    /// Stdout followed by stderr.
    pub output: Vec<u8>,
    /// Why reading the output failed, if it did.
    pub read_error: Option<String>,
}

/// Runs `command` in the container, reading stdout and stderr concurrently so that neither
/// pipe can fill up and block the process; `Err` when the runtime refuses the exec.
pub(crate) async fn exec_handler(
    runtime: &Arc<dyn ContainerRuntime>,
    container_id: &str,
    command: Vec<String>,
) -> Result<ExecOutput, String> {
    let request = ExecRequest {
        command,
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let session = runtime
        .exec(container_id, request)
        .await
        .map_err(|e| e.to_string())?;
    let read = |stream: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>| async move {
        let mut out = Vec::new();
        let error = match stream {
            Some(mut stream) => stream.read_to_end(&mut out).await.err(),
            None => None,
        };
        (out, error)
    };
    let ((mut output, out_error), (stderr, err_error)) =
        tokio::join!(read(session.stdout), read(session.stderr));
    output.extend(stderr);
    let read_error = out_error.or(err_error).map(|e| e.to_string());
    let exit = session.exit.await.map_err(|e| e.to_string());
    Ok(ExecOutput {
        exit,
        output,
        read_error,
    })
}

/// The scheme of an `httpGet` handler (`HTTP` unless it says `HTTPS`, in any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS, the server's certificate not verified (as upstream).
    Https,
}

impl Scheme {
    /// The scheme a handler's `scheme` field asks for.
    pub(crate) fn of(scheme: Option<&str>) -> Self {
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case("HTTPS")) {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// The URL scheme (`http` / `https`), for messages.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Why an HTTP GET handler got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpGetError {
    /// Nothing accepted the connection.
    #[error("{0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed (or the server answered in plain HTTP).
    #[error("{0}")]
    Tls(crate::pod::insecure_tls::InsecureTlsError),
    /// Sending the request or reading the answer failed.
    #[error("{0}")]
    Io(std::io::Error),
}

/// Sends `GET path` to `host:port` with the handler's headers (over TLS for
/// [`Scheme::Https`]) and returns the first bytes of the answer (its status line).
pub(crate) async fn http_get_head(
    scheme: Scheme,
    host: &str,
    port: u16,
    path: &str,
    headers: Option<&[HTTPHeader]>,
    user_agent: &str,
) -> Result<String, HttpGetError> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(HttpGetError::Connect)?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for header in headers.into_iter().flatten() {
        request.push_str(&format!("{}: {}\r\n", header.name, header.value));
    }
    request.push_str("\r\n");
    match scheme {
        Scheme::Http => exchange(stream, request.as_bytes()).await,
        Scheme::Https => {
            let tls = crate::pod::insecure_tls::connect(host, stream)
                .await
                .map_err(HttpGetError::Tls)?;
            exchange(tls, request.as_bytes()).await
        }
    }
}

/// Writes the request and reads the first bytes of the answer.
async fn exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &[u8],
) -> Result<String, HttpGetError> {
    stream.write_all(request).await.map_err(HttpGetError::Io)?;
    stream.flush().await.map_err(HttpGetError::Io)?;
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.map_err(HttpGetError::Io)?;
    Ok(String::from_utf8_lossy(&head[..n]).to_string())
}

/// Runs one probe; `Err` carries why it failed (as the Unhealthy event says it).
pub async fn run_probe(
    probe: &Probe,
    target: &ProbeTarget<'_>,
    timeout: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, run_inner(probe, target)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "timeout: probe did not finish within {}s",
            timeout.as_secs()
        )),
    }
}

async fn run_inner(probe: &Probe, target: &ProbeTarget<'_>) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let done = exec_handler(target.runtime, target.container_id, command).await?;
        if let Some(error) = done.read_error {
            return Err(error);
        }
        let code = done.exit?;
        return if code == 0 {
            Ok(())
        } else {
            Err(format!("command exited with {code}"))
        };
    }
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, target.container).ok_or("bad port")?;
        let host = handler_host(http.host.as_deref(), target.ip).ok_or("no pod IP")?;
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let line = http_get_head(
            Scheme::of(http.scheme.as_deref()),
            &host,
            port,
            &path,
            http.http_headers.as_deref(),
            "kube-probe/1.33",
        )
        .await
        .map_err(|e| e.to_string())?;
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad HTTP response {line:?}"))?;
        return if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, target.container).ok_or("bad port")?;
        let host = handler_host(tcp.host.as_deref(), target.ip).ok_or("no pod IP")?;
        tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    Err("probe has no handler".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_the_verdict() {
        let probe = Probe {
            failure_threshold: Some(2),
            success_threshold: Some(1),
            period_seconds: Some(5),
            ..Default::default()
        };
        let now = Instant::now();
        let mut tracker = ProbeTracker::new(probe, now, true);
        assert!(tracker.due(now));
        assert!(!tracker.record(false, now));
        assert!(tracker.healthy);
        assert!(tracker.record(false, now));
        assert!(!tracker.healthy);
        assert!(tracker.record(true, now));
        assert_eq!(tracker.next_at, now + Duration::from_secs(5));
    }

    fn https_probe(port: u16) -> Probe {
        Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some("/healthz".into()),
                scheme: Some("HTTPS".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn https_probes_skip_certificate_checks_and_judge_the_status_code() {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(crate::runtime::fake::FakeRuntime::new());
        let container = Container::default();
        let target = ProbeTarget {
            runtime: &runtime,
            container_id: "x",
            container: &container,
            ip: Some("127.0.0.1".parse().expect("ip")),
        };
        let (ok, mut seen) =
            crate::pod::insecure_tls::testing::tls_server(b"HTTP/1.1 200 OK\r\n\r\n").await;
        assert_eq!(
            run_probe(&https_probe(ok), &target, Duration::from_secs(5)).await,
            Ok(())
        );
        let request = seen.recv().await.expect("request");
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("User-Agent: kube-probe/1.33\r\n"),
            "{request}"
        );
        let (failing, _seen) =
            crate::pod::insecure_tls::testing::tls_server(b"HTTP/1.1 500 Oops\r\n\r\n").await;
        assert_eq!(
            run_probe(&https_probe(failing), &target, Duration::from_secs(5)).await,
            Err("HTTP probe failed with statuscode: 500".to_string())
        );
        // A plain HTTP server behind an HTTPS probe is a failure (no fallback for probes).
        let (plain, _plain_seen) =
            crate::pod::insecure_tls::testing::http_server(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let error = run_probe(&https_probe(plain), &target, Duration::from_secs(5))
            .await
            .expect_err("TLS to a plain server");
        assert!(error.contains("HTTP response to HTTPS client"), "{error}");
    }

    #[tokio::test]
    async fn tcp_and_http_probes_reach_a_local_server() {
        let (port, _seen) =
            crate::pod::insecure_tls::testing::http_server(b"HTTP/1.1 204 No Content\r\n\r\n")
                .await;
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(crate::runtime::fake::FakeRuntime::new());
        let container = Container::default();
        let target = ProbeTarget {
            runtime: &runtime,
            container_id: "x",
            container: &container,
            ip: Some("127.0.0.1".parse().expect("ip")),
        };
        let tcp = Probe {
            tcp_socket: Some(k8s_openapi::api::core::v1::TCPSocketAction {
                port: IntOrString::Int(i32::from(port)),
                host: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            run_probe(&tcp, &target, Duration::from_secs(1)).await,
            Ok(())
        );
        let http = Probe {
            http_get: Some(k8s_openapi::api::core::v1::HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some("/healthz".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            run_probe(&http, &target, Duration::from_secs(1)).await,
            Ok(())
        );
    }
}
