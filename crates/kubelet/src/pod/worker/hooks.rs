//! Container lifecycle hooks: `postStart` right after a container starts (a failure kills
//! it, event `FailedPostStartHook`) and `preStop` before the stop signal, within the grace
//! period (a failure is event `FailedPreStopHook`; the container is stopped anyway). Handlers:
//! `exec` in the container, `httpGet` to the pod IP (any HTTP answer counts, as upstream),
//! `sleep`. The messages follow upstream's wording.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use crate::pod::probe::{exec_handler, handler_host, http_get_head, resolve_port, HttpGetError};
use crate::runtime::ContainerRuntime;

/// Where a hook runs.
pub struct HookTarget<'a> {
    /// The runtime (for exec handlers).
    pub runtime: &'a Arc<dyn ContainerRuntime>,
    /// The container's runtime id.
    pub container_id: &'a str,
    /// The container spec (named ports).
    pub container: &'a Container,
    /// The pod IP (the node IP for host-network pods).
    pub ip: Option<IpAddr>,
    /// The pod as upstream names it in messages: `name_namespace(uid)`.
    pub pod_ref: &'a str,
}

/// Runs one handler to its end; `Err` is the message of the failure event.
pub async fn run_hook(handler: &LifecycleHandler, target: &HookTarget<'_>) -> Result<(), String> {
    let name = &target.container.name;
    let pod = target.pod_ref;
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        return run_exec(&command, target).await.map_err(|(error, output)| {
            format!(
                "Exec lifecycle hook ([{}]) for Container {name:?} in Pod {pod:?} failed - error: {error}, message: {output:?}",
                command.join(" ")
            )
        });
    }
    if let Some(http) = &handler.http_get {
        let path = http.path.clone().unwrap_or_default();
        return run_http(http, target).await.map_err(|error| {
            format!(
                "HTTP lifecycle hook ({path}) for Container {name:?} in Pod {pod:?} failed - error: {error}"
            )
        });
    }
    if let Some(sleep) = &handler.sleep {
        let seconds = u64::try_from(sleep.seconds.max(0)).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        return Ok(());
    }
    Err(format!(
        "Cannot run handler: invalid handler: {}",
        if handler.tcp_socket.is_some() {
            "tcpSocket is not supported"
        } else {
            "no action"
        }
    ))
}

/// Runs the command in the container; `Err((error, output))` unless it exits 0.
async fn run_exec(command: &[String], target: &HookTarget<'_>) -> Result<(), (String, String)> {
    let done = exec_handler(target.runtime, target.container_id, command.to_vec())
        .await
        .map_err(|e| (e, String::new()))?;
    if let Some(error) = &done.read_error {
        tracing::debug!(%error, "reading hook output");
    }
    let output = String::from_utf8_lossy(&done.output).to_string();
    let code = done.exit.map_err(|e| (e, output.clone()))?;
    if code == 0 {
        Ok(())
    } else {
        Err((
            format!(
                "command '{}' exited with {code}: {output}",
                command.join(" ")
            ),
            output,
        ))
    }
}

/// Sends the GET and reads the status line; any answer is a success.
async fn run_http(
    http: &k8s_openapi::api::core::v1::HTTPGetAction,
    target: &HookTarget<'_>,
) -> Result<(), String> {
    if http
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        return Err("HTTPS lifecycle hooks are not supported".into());
    }
    let port = resolve_port(&http.port, target.container)
        .ok_or_else(|| format!("invalid port {:?}", http.port))?;
    let host = handler_host(http.host.as_deref(), target.ip).ok_or("the pod has no IP")?;
    let mut path = http.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let line = http_get_head(
        &host,
        port,
        &path,
        http.http_headers.as_deref(),
        "kube-lifecycle/1.33",
    )
    .await
    .map_err(|e| match e {
        HttpGetError::Connect(e) => format!("Get \"http://{host}:{port}{path}\": {e}"),
        HttpGetError::Io(e) => e.to_string(),
    })?;
    if line.starts_with("HTTP/") {
        Ok(())
    } else {
        Err(format!("malformed HTTP response {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{ExecResult, FakeRuntime};
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn target<'a>(
        runtime: &'a Arc<dyn ContainerRuntime>,
        id: &'a str,
        container: &'a Container,
    ) -> HookTarget<'a> {
        HookTarget {
            runtime,
            container_id: id,
            container,
            ip: Some("127.0.0.1".parse().expect("ip")),
            pod_ref: "web_default(uid)",
        }
    }

    fn exec(command: &[&str]) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(command.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn exec_hooks_report_the_exit_code_and_output_as_upstream() {
        let fake = Arc::new(FakeRuntime::new());
        fake.set_exec_handler(|_, request| ExecResult {
            stdout: b"out\n".to_vec(),
            stderr: Vec::new(),
            exit_code: if request.command[0] == "fail" { 3 } else { 0 },
        });
        fake.add_image("busybox:1.35");
        let id = fake
            .create_container(&crate::runtime::ContainerConfig {
                name: "c".into(),
                image: "busybox:1.35".into(),
                ..Default::default()
            })
            .await
            .expect("create");
        fake.start_container(&id).await.expect("start");
        let runtime: Arc<dyn ContainerRuntime> = fake;
        let container = Container {
            name: "c".into(),
            ..Default::default()
        };
        let t = target(&runtime, &id, &container);
        assert_eq!(run_hook(&exec(&["ok"]), &t).await, Ok(()));
        let message = run_hook(&exec(&["fail", "now"]), &t)
            .await
            .expect_err("fails");
        assert_eq!(
            message,
            "Exec lifecycle hook ([fail now]) for Container \"c\" in Pod \"web_default(uid)\" failed - error: command 'fail now' exited with 3: out\n, message: \"out\\n\""
        );
    }

    #[tokio::test]
    async fn http_hooks_succeed_on_any_answer_and_fail_without_a_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let _sent = seen_tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
                let _write = socket.write_all(b"HTTP/1.1 500 Oops\r\n\r\n").await;
            }
        });
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(FakeRuntime::new());
        let container = Container {
            name: "c".into(),
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("web".into()),
                container_port: i32::from(port),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let handler = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::String("web".into()),
                path: Some("hooked".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = target(&runtime, "cid", &container);
        assert_eq!(run_hook(&handler, &t).await, Ok(()));
        let request = seen_rx.recv().await.expect("request");
        assert!(request.starts_with("GET /hooked HTTP/1.1\r\n"), "{request}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let handler = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(closed)),
                path: Some("/x".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let message = run_hook(&handler, &t).await.expect_err("nothing listens");
        assert!(
            message.starts_with("HTTP lifecycle hook (/x) for Container \"c\" in Pod \"web_default(uid)\" failed - error: Get \"http://127.0.0.1:"),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep_and_tcp_hooks_are_refused() {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(FakeRuntime::new());
        let container = Container::default();
        let t = target(&runtime, "cid", &container);
        let start = tokio::time::Instant::now();
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 5 }),
            ..Default::default()
        };
        assert_eq!(run_hook(&sleep, &t).await, Ok(()));
        assert!(start.elapsed() >= Duration::from_secs(5));
        let tcp = LifecycleHandler {
            tcp_socket: Some(Default::default()),
            ..Default::default()
        };
        assert!(run_hook(&tcp, &t).await.is_err());
    }
}
