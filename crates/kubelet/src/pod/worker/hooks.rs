//! Container lifecycle hooks: `postStart` right after a container starts (a failure kills
//! it, event `FailedPostStartHook`) and `preStop` before the stop signal, within the grace
//! period (a failure is event `FailedPreStopHook`; the container is stopped anyway). Handlers:
//! `exec` in the container, `httpGet` to the pod IP (any HTTP answer counts, as upstream;
//! HTTPS without certificate checks, falling back to HTTP when the server answers in HTTP,
//! which a successful retry reports as a Warning event `LifecycleHTTPFallback` on the pod),
//! `sleep`. The messages follow upstream's wording.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPHeader, LifecycleHandler, Pod};

use crate::pod::api::{PodApi, PodEvent};
use crate::pod::insecure_tls::InsecureTlsError;
use crate::pod::probe::{
    exec_handler, handler_host, http_get_head, resolve_port, HttpGetError, Scheme,
};
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
    /// The pod, which events are about.
    pub pod: &'a Pod,
    /// Where events go.
    pub api: &'a dyn PodApi,
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

/// Sends the GET and reads the status line; any answer is a success. An HTTPS hook whose
/// server answers in plain HTTP is retried over HTTP without `Authorization` headers, as
/// upstream does.
async fn run_http(
    http: &k8s_openapi::api::core::v1::HTTPGetAction,
    target: &HookTarget<'_>,
) -> Result<(), String> {
    let port = resolve_port(&http.port, target.container)
        .ok_or_else(|| format!("invalid port {:?}", http.port))?;
    let host = handler_host(http.host.as_deref(), target.ip).ok_or("the pod has no IP")?;
    let mut path = http.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let scheme = Scheme::of(http.scheme.as_deref());
    let headers = http.http_headers.as_deref();
    let answer = match http_get_head(scheme, &host, port, &path, headers, USER_AGENT).await {
        Err(HttpGetError::Tls(InsecureTlsError::PlainHttp)) => {
            tracing::info!(%host, port, "HTTPS lifecycle hook got an HTTP response, retrying with HTTP");
            let without_auth: Vec<HTTPHeader> = headers
                .into_iter()
                .flatten()
                .filter(|h| !h.name.eq_ignore_ascii_case("Authorization"))
                .cloned()
                .collect();
            let retry = http_get_head(
                Scheme::Http,
                &host,
                port,
                &path,
                Some(without_auth.as_slice()),
                USER_AGENT,
            )
            .await;
            if retry.as_ref().is_ok_and(|line| line.starts_with("HTTP/")) {
                target.api.event(PodEvent::new(
                    target.pod,
                    None,
                    true,
                    "LifecycleHTTPFallback",
                    format!(
                        "request to HTTPS lifecycle hook {} got HTTP response, retry with HTTP succeeded",
                        host_port(&host, port)
                    ),
                ));
            }
            retry
        }
        other => other,
    };
    let line = answer.map_err(|e| match e {
        HttpGetError::Connect(e) | HttpGetError::Tls(InsecureTlsError::Handshake(e)) => {
            format!("Get \"{}://{host}:{port}{path}\": {e}", scheme.as_str())
        }
        HttpGetError::Tls(e) => format!("Get \"{}://{host}:{port}{path}\": {e}", scheme.as_str()),
        HttpGetError::Io(e) => e.to_string(),
    })?;
    if line.starts_with("HTTP/") {
        Ok(())
    } else {
        Err(format!("malformed HTTP response {line:?}"))
    }
}

/// `host:port` as a URL writes it (IPv6 addresses in brackets).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The User-Agent of hook requests, as upstream's.
const USER_AGENT: &str = "kube-lifecycle/1.33";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::{ExecResult, FakeRuntime};
    use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, SleepAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// The pod hooks run for, and the fake that records their events.
    struct Events {
        pod: Pod,
        api: crate::pod::api::FakePodApi,
    }

    impl Events {
        fn new() -> Self {
            Self {
                pod: Pod {
                    metadata: kube::api::ObjectMeta {
                        name: Some("web".into()),
                        namespace: Some("default".into()),
                        uid: Some("uid".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                api: crate::pod::api::FakePodApi::new(),
            }
        }
    }

    fn target<'a>(
        runtime: &'a Arc<dyn ContainerRuntime>,
        id: &'a str,
        container: &'a Container,
        events: &'a Events,
    ) -> HookTarget<'a> {
        HookTarget {
            runtime,
            container_id: id,
            container,
            ip: Some("127.0.0.1".parse().expect("ip")),
            pod_ref: "web_default(uid)",
            pod: &events.pod,
            api: &events.api,
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
        let events = Events::new();
        let t = target(&runtime, &id, &container, &events);
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
        let (port, mut seen_rx) =
            crate::pod::insecure_tls::testing::http_server(b"HTTP/1.1 500 Oops\r\n\r\n").await;
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
        let events = Events::new();
        let t = target(&runtime, "cid", &container, &events);
        assert_eq!(run_hook(&handler, &t).await, Ok(()));
        let request = String::from_utf8_lossy(&seen_rx.recv().await.expect("request")).to_string();
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

    fn https_get(port: u16, headers: Vec<HTTPHeader>) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(HTTPGetAction {
                port: IntOrString::Int(i32::from(port)),
                path: Some("/secure".into()),
                scheme: Some("HTTPS".into()),
                http_headers: Some(headers),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn https_hooks_skip_certificate_checks_as_upstream() {
        // The certificate names another host and chains to nothing trusted.
        let (port, mut seen) =
            crate::pod::insecure_tls::testing::tls_server(b"HTTP/1.1 503 Busy\r\n\r\n").await;
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(FakeRuntime::new());
        let container = Container {
            name: "c".into(),
            ..Default::default()
        };
        let events = Events::new();
        let t = target(&runtime, "cid", &container, &events);
        assert_eq!(run_hook(&https_get(port, Vec::new()), &t).await, Ok(()));
        let request = seen.recv().await.expect("request over TLS");
        assert!(request.starts_with("GET /secure HTTP/1.1\r\n"), "{request}");
        assert!(
            request.contains("User-Agent: kube-lifecycle/1.33\r\n"),
            "{request}"
        );
        assert!(events.api.events().is_empty(), "no fallback, no event");
    }

    #[tokio::test]
    async fn https_hooks_answered_in_plain_http_are_retried_over_http_without_authorization() {
        let (port, mut seen_rx) = crate::pod::insecure_tls::testing::http_server(
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
        )
        .await;
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(FakeRuntime::new());
        let container = Container {
            name: "c".into(),
            ..Default::default()
        };
        let events = Events::new();
        let t = target(&runtime, "cid", &container, &events);
        let headers = vec![
            HTTPHeader {
                name: "Authorization".into(),
                value: "Bearer secret".into(),
            },
            HTTPHeader {
                name: "X-Kept".into(),
                value: "yes".into(),
            },
        ];
        assert_eq!(run_hook(&https_get(port, headers), &t).await, Ok(()));
        let hello = seen_rx.recv().await.expect("TLS client hello");
        assert_eq!(hello.first(), Some(&0x16), "a TLS handshake record first");
        let retry = String::from_utf8(seen_rx.recv().await.expect("plain retry")).expect("text");
        assert!(retry.starts_with("GET /secure HTTP/1.1\r\n"), "{retry}");
        assert!(retry.contains("X-Kept: yes\r\n"), "{retry}");
        assert!(!retry.contains("Authorization"), "{retry}");
        assert_eq!(
            events.api.events(),
            vec![(
                "LifecycleHTTPFallback".to_string(),
                format!(
                    "request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded"
                )
            )]
        );
        let event = &events.api.pod_events()[0];
        assert!(event.warning, "a Warning event");
        assert_eq!(event.reference.name.as_deref(), Some("web"));
        assert_eq!(
            event.reference.field_path, None,
            "about the pod, not a container"
        );
    }

    #[tokio::test]
    async fn https_hooks_without_a_server_fail_with_an_https_url() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(FakeRuntime::new());
        let container = Container {
            name: "c".into(),
            ..Default::default()
        };
        let events = Events::new();
        let t = target(&runtime, "cid", &container, &events);
        let message = run_hook(&https_get(closed, Vec::new()), &t)
            .await
            .expect_err("nothing listens");
        assert!(
            message.contains(&format!("Get \"https://127.0.0.1:{closed}/secure\": ")),
            "{message}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_hooks_sleep_and_tcp_hooks_are_refused() {
        let runtime: Arc<dyn ContainerRuntime> = Arc::new(FakeRuntime::new());
        let container = Container::default();
        let events = Events::new();
        let t = target(&runtime, "cid", &container, &events);
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
