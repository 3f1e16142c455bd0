//! Pod worker tests over the fake runtime, network and API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, Container, ContainerStatus, EnvVar, EnvVarSource, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::*;
use crate::network::fake::{FakeNetwork, NetworkCall};
use crate::pod::api::{ApiCall, FakePodApi};
use crate::pod::files::DnsSettings;
use crate::pod::{PodContext, PodSettings, PodStore};
use crate::runtime::fake::{Call, FakeRuntime};
use crate::runtime::ContainerRuntime;

struct Harness {
    runtime: Arc<FakeRuntime>,
    network: Arc<FakeNetwork>,
    api: Arc<FakePodApi>,
    ctx: Arc<PodContext>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(FakeRuntime::new());
    runtime.add_image("busybox:1.35");
    let network = Arc::new(FakeNetwork::ready_network());
    let api = Arc::new(FakePodApi::new());
    let ctx = Arc::new(PodContext {
        runtime: runtime.clone(),
        network: network.clone(),
        api: api.clone(),
        settings: PodSettings {
            node_name: "node-0".into(),
            node_ip: "192.0.2.2".parse().expect("ip"),
            root_dir: dir.path().join("root"),
            pod_logs_dir: dir.path().join("logs"),
            dns: DnsSettings {
                cluster_dns: vec!["10.96.0.10".parse().expect("ip")],
                cluster_domain: "cluster.local".into(),
                host_resolv_conf: String::new(),
            },
        },
        store: PodStore::new(),
        mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
        resync: crate::pod::worker::RESYNC,
        objects: Default::default(),
    });
    Harness {
        runtime,
        network,
        api,
        ctx,
        _dir: dir,
    }
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox:1.35".into()),
        ..Default::default()
    }
}

fn pod(name: &str, inits: Vec<Container>, containers: Vec<Container>, policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("{name}-0000-1111-2222-333344445555")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-0".into()),
            init_containers: (!inits.is_empty()).then_some(inits),
            containers,
            restart_policy: Some(policy.into()),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

fn status_of<'a>(status: &'a PodStatus, name: &str) -> &'a ContainerStatus {
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|s| s.name == name)
        .expect("container status")
}

fn condition(status: &PodStatus, kind: &str) -> String {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn started_names(runtime: &FakeRuntime) -> Vec<String> {
    runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::CreateContainer(config) => Some(config.name.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_pod_goes_from_pending_to_running_with_the_right_status() {
    let h = harness();
    let p = pod("web", vec![], vec![container("httpd")], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    assert!(matches!(worker.sync().await, SyncOutcome::Continue(_)));

    let status = h.api.last_status("web").expect("status posted");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.2"));
    assert_eq!(status.host_ip.as_deref(), Some("192.0.2.2"));
    assert!(status.start_time.is_some());
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    for kind in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        assert_eq!(condition(&status, kind), "True", "{kind}");
    }
    let httpd = status_of(&status, "httpd");
    assert!(httpd.ready);
    assert_eq!(httpd.started, Some(true));
    assert_eq!(httpd.restart_count, 0);
    assert_eq!(httpd.image, "docker.io/library/busybox:1.35");
    assert!(httpd
        .image_id
        .starts_with("docker.io/library/busybox@sha256:"));
    assert!(httpd
        .container_id
        .as_deref()
        .is_some_and(|id| id.starts_with("containerd://")));
    assert!(httpd
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .is_some());

    // The container got the pod's network, files and log path.
    let created = h.runtime.containers();
    let config = &created.values().next().expect("one container").config;
    assert!(config
        .netns_path
        .as_ref()
        .is_some_and(|p| p.ends_with("kube-web000011112")));
    assert!(config
        .mounts
        .iter()
        .any(|m| m.container_path == "/etc/resolv.conf"));
    assert!(config
        .log_path
        .ends_with("default_web_web-0000-1111-2222-333344445555/httpd/0.log"));
    assert_eq!(config.labels["io.kubernetes.container.name"], "httpd");
    let resolv = std::fs::read_to_string(
        h.ctx
            .settings
            .pod_dir("web-0000-1111-2222-333344445555")
            .join("etc-resolv.conf"),
    )
    .expect("resolv.conf");
    assert!(resolv.starts_with("nameserver 10.96.0.10\n"));

    let events = h.api.events();
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons, vec!["Pulled", "Created", "Started"]);
    assert_eq!(events[1].1, "Created container: httpd");

    // Nothing changes: no second status post.
    let posts = h.api.statuses("web").len();
    worker.sync().await;
    assert_eq!(h.api.statuses("web").len(), posts);
    assert_eq!(h.ctx.store.pods().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_condition_another_writer_changed_is_posted_again_but_an_old_echo_is_not() {
    let h = harness();
    let p = pod("web", vec![], vec![container("httpd")], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    worker.sync().await;
    let posted = h.api.last_status("web").expect("status posted");
    assert_eq!(condition(&posted, "Ready"), "True");
    let ready_at = posted
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.last_transition_time.clone())
        .expect("Ready has a transition time")
        .0;
    let as_api_shows = |ready: &str, at: jiff::Timestamp| {
        let mut shown = posted.clone();
        for c in shown.conditions.iter_mut().flatten() {
            if c.type_ == "Ready" {
                c.status = ready.into();
                c.last_transition_time = Some(Time(at));
            }
        }
        let mut p = p.clone();
        p.status = Some(shown);
        p
    };
    let posts = h.api.statuses("web").len();

    // An echo of an earlier post (Ready False before ours) arriving late changes nothing.
    let before = ready_at - jiff::SignedDuration::from_secs(5);
    worker.update_pod(as_api_shows("False", before));
    worker.sync().await;
    assert_eq!(h.api.statuses("web").len(), posts);

    // The node lifecycle controller marked it NotReady after our post: ours goes out again.
    let later = ready_at + jiff::SignedDuration::from_secs(1);
    worker.update_pod(as_api_shows("False", later));
    worker.sync().await;
    let statuses = h.api.statuses("web");
    assert_eq!(statuses.len(), posts + 1);
    let again = statuses.last().expect("posted again");
    assert_eq!(condition(again, "Ready"), "True");
    assert_eq!(condition(again, "ContainersReady"), "True");

    // Its echo is ours: nothing more.
    let mut echo = p.clone();
    echo.status = Some(again.clone());
    worker.update_pod(echo);
    worker.sync().await;
    assert_eq!(h.api.statuses("web").len(), posts + 1);
}

#[tokio::test(start_paused = true)]
async fn the_pod_waits_for_the_network_before_starting_containers() {
    let h = harness();
    let ctx = Arc::new(PodContext {
        runtime: h.runtime.clone(),
        network: Arc::new(FakeNetwork::new()),
        api: h.api.clone(),
        settings: h.ctx.settings.clone(),
        store: PodStore::new(),
        mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
        resync: crate::pod::worker::RESYNC,
        objects: Default::default(),
    });
    let mut worker = PodWorker::new(
        ctx,
        pod("web", vec![], vec![container("c")], "Always"),
        vec![],
    );
    worker.sync().await;
    let status = h.api.last_status("web").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&status, "PodReadyToStartContainers"), "False");
    let c = status_of(&status, "c");
    assert_eq!(
        c.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref()),
        Some("ContainerCreating")
    );
    assert!(started_names(&h.runtime).is_empty());
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_before_app_containers() {
    let h = harness();
    let p = pod(
        "init",
        vec![container("first"), container("second")],
        vec![container("app")],
        "Always",
    );
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    assert_eq!(started_names(&h.runtime), vec!["first"]);
    let status = h.api.last_status("init").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(condition(&status, "Initialized"), "False");
    let app = status_of(&status, "app");
    assert_eq!(
        app.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref()),
        Some("PodInitializing")
    );

    // Still running: nothing else starts.
    worker.sync().await;
    assert_eq!(started_names(&h.runtime), vec!["first"]);

    let id_of = |name: &str| {
        h.runtime
            .containers()
            .into_iter()
            .find(|(_, c)| c.config.name == name)
            .map(|(id, _)| id)
            .expect("container")
    };
    h.runtime.exit_container(&id_of("first"), 0);
    worker.sync().await;
    assert_eq!(started_names(&h.runtime), vec!["first", "second"]);
    h.runtime.exit_container(&id_of("second"), 0);
    worker.sync().await;
    assert_eq!(started_names(&h.runtime), vec!["first", "second", "app"]);
    let status = h.api.last_status("init").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&status, "Initialized"), "True");
    let first = status_of(&status, "first");
    let terminated = first
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("terminated");
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
}

#[tokio::test(start_paused = true)]
async fn a_failing_init_container_fails_a_never_restart_pod() {
    let h = harness();
    h.runtime.set_exit_on_start("setup", 3);
    let p = pod(
        "bad",
        vec![container("setup")],
        vec![container("app")],
        "Never",
    );
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    worker.sync().await;
    let status = h.api.last_status("bad").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(started_names(&h.runtime), vec!["setup"]);
    // A terminal pod gives its network back.
    assert!(h.network.namespaces().is_empty());
}

#[tokio::test(start_paused = true)]
async fn crashing_containers_restart_with_doubling_back_off() {
    let h = harness();
    h.runtime.set_exit_on_start("crash", 1);
    let p = pod("loop", vec![], vec![container("crash")], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);

    worker.sync().await; // first start, exits at once
    assert_eq!(started_names(&h.runtime).len(), 1);
    worker.sync().await; // first restart is immediate
    assert_eq!(started_names(&h.runtime).len(), 2);

    // The second crash waits 10 s.
    let next = worker.sync().await;
    assert_eq!(started_names(&h.runtime).len(), 2);
    assert!(matches!(next, SyncOutcome::Continue(d) if d <= Duration::from_secs(10)));
    let status = h.api.last_status("loop").expect("status");
    let crash = status_of(&status, "crash");
    let waiting = crash
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert!(waiting.message.as_deref().is_some_and(
        |m| m.starts_with("back-off 10s restarting failed container=crash pod=loop_default(")
    ));
    assert_eq!(crash.restart_count, 1);
    assert_eq!(
        crash
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| (t.exit_code, t.reason.clone())),
        Some((1, Some("Error".to_string())))
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(condition(&status, "Ready"), "False");
    let backoffs = h
        .api
        .events()
        .into_iter()
        .filter(|(reason, _)| reason == "BackOff")
        .count();
    assert_eq!(backoffs, 1);

    tokio::time::advance(Duration::from_secs(9)).await;
    worker.sync().await;
    assert_eq!(started_names(&h.runtime).len(), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    worker.sync().await;
    assert_eq!(started_names(&h.runtime).len(), 3);

    // Next back-off is 20 s.
    let status_msg = |h: &Harness| {
        h.api
            .last_status("loop")
            .and_then(|s| {
                status_of(&s, "crash")
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.message.clone())
            })
            .unwrap_or_default()
    };
    worker.sync().await;
    assert!(status_msg(&h).starts_with("back-off 20s"));
    tokio::time::advance(Duration::from_secs(15)).await;
    worker.sync().await;
    assert_eq!(started_names(&h.runtime).len(), 3);
    tokio::time::advance(Duration::from_secs(6)).await;
    worker.sync().await;
    assert_eq!(started_names(&h.runtime).len(), 4);
    let restarts = h
        .api
        .last_status("loop")
        .map(|s| status_of(&s, "crash").restart_count);
    assert_eq!(restarts, Some(3));
    // Each instance logs to its own file; exited instances are removed on restart.
    let logs: Vec<String> = h
        .runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::CreateContainer(config) => config
                .log_path
                .file_name()
                .map(|f| f.to_string_lossy().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(logs, vec!["0.log", "1.log", "2.log", "3.log"]);
    assert_eq!(h.runtime.containers().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_completed_never_restart_pod_succeeds() {
    let h = harness();
    h.runtime.set_exit_on_start("job", 0);
    let mut worker = PodWorker::new(
        h.ctx.clone(),
        pod("job", vec![], vec![container("job")], "Never"),
        vec![],
    );
    worker.sync().await;
    worker.sync().await;
    let status = h.api.last_status("job").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    assert_eq!(started_names(&h.runtime).len(), 1);
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .and_then(|c| c.reason.clone());
    assert_eq!(ready.as_deref(), Some("PodCompleted"));
}

#[tokio::test(start_paused = true)]
async fn deletion_stops_tears_down_removes_and_deletes() {
    let h = harness();
    let mut p = pod("gone", vec![], vec![container("c")], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    worker.sync().await;
    assert_eq!(h.runtime.containers().len(), 1);

    p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    p.metadata.deletion_grace_period_seconds = Some(5);
    worker.update_pod(p);
    assert_eq!(worker.sync().await, SyncOutcome::Done);

    let calls = h.runtime.calls();
    assert!(calls
        .iter()
        .any(|c| matches!(c, Call::StopContainer(_, grace) if *grace == Duration::from_secs(5))));
    assert!(h.runtime.containers().is_empty());
    assert!(h
        .network
        .calls()
        .contains(&NetworkCall::Teardown("kube-gone00001111".into())));
    let deletes: Vec<ApiCall> = h
        .api
        .calls()
        .into_iter()
        .filter(|c| matches!(c, ApiCall::Delete(..)))
        .collect();
    assert_eq!(
        deletes,
        vec![ApiCall::Delete(
            "default".into(),
            "gone".into(),
            "gone-0000-1111-2222-333344445555".into()
        )]
    );
    let final_status = h.api.last_status("gone").expect("status");
    assert_ne!(final_status.phase.as_deref(), Some("Running"));
    assert!(!h
        .ctx
        .settings
        .pod_dir("gone-0000-1111-2222-333344445555")
        .exists());
}

/// `c` with `X` from key `x` of the ConfigMap `settings`.
fn with_settings_x(mut c: Container) -> Container {
    c.env = Some(vec![EnvVar {
        name: "X".into(),
        value: None,
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "settings".into(),
                key: "x".into(),
                optional: None,
            }),
            ..Default::default()
        }),
    }]);
    c
}

#[tokio::test(start_paused = true)]
async fn a_missing_config_map_is_a_create_container_config_error() {
    let h = harness();
    let c = with_settings_x(container("c"));
    let mut worker = PodWorker::new(h.ctx.clone(), pod("cfg", vec![], vec![c], "Always"), vec![]);
    worker.sync().await;
    let status = h.api.last_status("cfg").expect("status");
    let waiting = status_of(&status, "c")
        .state
        .as_ref()
        .and_then(|s| s.waiting.clone())
        .expect("waiting");
    assert_eq!(
        waiting.reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert_eq!(
        waiting.message.as_deref(),
        Some("configmap \"settings\" not found")
    );
    assert_eq!(status.phase.as_deref(), Some("Pending"));
}

#[tokio::test(start_paused = true)]
async fn a_pods_first_object_read_is_from_storage_and_later_ones_from_the_node_cache() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let h = harness();
    let settings = |data: &[(&str, &str)]| ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    h.api.set_config_map(settings(&[("y", "1")]));
    let c = with_settings_x(container("c"));
    let mut worker = PodWorker::new(h.ctx.clone(), pod("cfg", vec![], vec![c], "Always"), vec![]);
    worker.sync().await;
    let waiting = h
        .api
        .last_status("cfg")
        .and_then(|s| status_of(&s, "c").state.clone())
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason);
    assert_eq!(waiting.as_deref(), Some("CreateContainerConfigError"));
    // The key appears; the next start attempt reads the ConfigMap again, now at any version
    // (the node's TTL is unknown, so its cached copy is not young enough to answer alone).
    h.api.set_config_map(settings(&[("x", "2")]));
    tokio::time::advance(Duration::from_secs(2)).await;
    worker.sync().await;
    let reads: Vec<bool> = h
        .api
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            ApiCall::ReadObject {
                kind: "configmap",
                key,
                any_version,
            } if key == "default/settings" => Some(any_version),
            _ => None,
        })
        .collect();
    assert_eq!(
        reads,
        vec![false, true],
        "first from storage, then any version"
    );
    assert_eq!(started_names(&h.runtime), vec!["c".to_string()]);
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_is_err_image_pull_then_back_off() {
    let h = harness();
    let mut c = container("c");
    c.image = Some("nothere:1".into());
    let mut worker = PodWorker::new(h.ctx.clone(), pod("img", vec![], vec![c], "Always"), vec![]);
    worker.sync().await;
    let reason = |h: &Harness| {
        h.api.last_status("img").and_then(|s| {
            status_of(&s, "c")
                .state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone())
        })
    };
    assert_eq!(reason(&h).as_deref(), Some("ErrImagePull"));
    worker.sync().await;
    assert_eq!(reason(&h).as_deref(), Some("ImagePullBackOff"));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_kubelet_adopts_running_containers() {
    let h = harness();
    let p = pod("keep", vec![], vec![container("c")], "Always");
    let mut first = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    first.sync().await;
    drop(first);
    let recovered = h.runtime.list_containers().await.expect("list");
    h.runtime.clear_calls();
    let mut second = PodWorker::new(h.ctx.clone(), p, recovered);
    second.sync().await;
    assert!(started_names(&h.runtime).is_empty());
    let status = h.api.last_status("keep").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
}

#[test]
fn pull_policy_defaults_follow_the_tag() {
    let mut c = container("c");
    assert_eq!(pull_policy(&c), PullPolicy::IfNotPresent);
    c.image = Some("busybox".into());
    assert_eq!(pull_policy(&c), PullPolicy::Always);
    c.image = Some("busybox:latest".into());
    assert_eq!(pull_policy(&c), PullPolicy::Always);
    c.image_pull_policy = Some("Never".into());
    assert_eq!(pull_policy(&c), PullPolicy::Never);
}

fn exec_probe(
    command: &str,
    period: i32,
    failure_threshold: i32,
) -> k8s_openapi::api::core::v1::Probe {
    k8s_openapi::api::core::v1::Probe {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(vec![command.to_string()]),
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_gates_ready_and_liveness_failures_restart_the_container() {
    let h = harness();
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    h.runtime.set_exec_handler(move |_, request| {
        let ok = match request.command[0].as_str() {
            "ready" => flag.load(std::sync::atomic::Ordering::SeqCst),
            "alive" => false,
            _ => true,
        };
        crate::runtime::fake::ExecResult {
            exit_code: if ok { 0 } else { 1 },
            ..Default::default()
        }
    });
    let mut c = container("web");
    c.readiness_probe = Some(exec_probe("ready", 1, 1));
    let mut p = pod("probed", vec![], vec![c], "Always");
    worker_sync_twice(&h, &p).await;
    let ready = |h: &Harness| {
        h.api
            .last_status("probed")
            .map(|s| (status_of(&s, "web").ready, condition(&s, "Ready")))
    };
    assert_eq!(ready(&h), Some((false, "False".to_string())));
    assert!(h
        .api
        .events()
        .iter()
        .any(|(reason, message)| reason == "Unhealthy"
            && message.starts_with("Readiness probe failed")));

    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut worker = PodWorker::new(
        h.ctx.clone(),
        p.clone(),
        h.runtime.list_containers().await.expect("list"),
    );
    worker.sync().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    worker.sync().await;
    assert_eq!(ready(&h), Some((true, "True".to_string())));

    // Liveness: fails once (threshold 1) -> killed and restarted.
    let mut live = container("live");
    live.liveness_probe = Some(exec_probe("alive", 1, 1));
    p = pod("lively", vec![], vec![live], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await; // start
    tokio::time::advance(Duration::from_secs(1)).await;
    worker.sync().await; // probe fails
    worker.sync().await; // kill
    worker.sync().await; // restart (first restart is immediate)
    let starts = started_names(&h.runtime)
        .into_iter()
        .filter(|n| n == "live")
        .count();
    assert_eq!(starts, 2);
    assert!(h
        .api
        .events()
        .iter()
        .any(|(reason, message)| reason == "Killing" && message.contains("failed liveness probe")));
}

async fn worker_sync_twice(h: &Harness, p: &Pod) {
    let mut worker = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    worker.sync().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    worker.sync().await;
}

#[tokio::test(start_paused = true)]
async fn a_container_created_but_never_started_is_replaced() {
    let h = harness();
    let p = pod("stuck", vec![], vec![container("c")], "Always");
    let mut first = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    first.sync().await;
    let id = h.runtime.containers().keys().next().cloned().expect("id");
    h.runtime
        .set_state(&id, crate::runtime::ContainerState::Created);
    let recovered = h.runtime.list_containers().await.expect("list");
    let mut second = PodWorker::new(h.ctx.clone(), p, recovered);
    second.sync().await;
    assert!(h.runtime.container(&id).is_none());
    let status = h.api.last_status("stuck").expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
}

#[tokio::test(start_paused = true)]
async fn pulls_use_matching_image_pull_secrets_and_emit_upstream_events() {
    use k8s_openapi::api::core::v1::{LocalObjectReference, Secret};
    use k8s_openapi::ByteString;
    let h = harness();
    let config = br#"{"auths":{"127.0.0.1:5000":{"username":"me","password":"pw"},"other.io":{"username":"x","password":"y"}}}"#;
    h.api.secrets.lock().expect("lock").insert(
        ("default".into(), "regcred".into()),
        Secret {
            data: Some([(".dockerconfigjson".to_string(), ByteString(config.to_vec()))].into()),
            type_: Some("kubernetes.io/dockerconfigjson".into()),
            ..Default::default()
        },
    );
    h.runtime.add_image("127.0.0.1:5000/app:1");
    let mut c = container("c");
    c.image = Some("127.0.0.1:5000/app:1".into());
    c.image_pull_policy = Some("Always".into());
    let mut p = pod("pull", vec![], vec![c], "Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.image_pull_secrets = Some(vec![
            LocalObjectReference {
                name: "regcred".into(),
            },
            LocalObjectReference {
                name: "absent".into(),
            },
        ]);
    }
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    let pulls: Vec<_> = h
        .runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::PullImage(image, creds) => Some((image, creds)),
            _ => None,
        })
        .collect();
    assert_eq!(
        pulls,
        vec![(
            "127.0.0.1:5000/app:1".to_string(),
            vec![crate::runtime::RegistryCredential {
                username: "me".into(),
                password: "pw".into()
            }]
        )]
    );
    let events = h.api.events();
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    let pulling = reasons
        .iter()
        .position(|r| *r == "Pulling")
        .expect("Pulling");
    let pulled = reasons.iter().position(|r| *r == "Pulled").expect("Pulled");
    assert!(pulling < pulled, "{reasons:?}");
    assert_eq!(events[pulling].1, "Pulling image \"127.0.0.1:5000/app:1\"");
    assert!(
        events[pulled]
            .1
            .starts_with("Successfully pulled image \"127.0.0.1:5000/app:1\" in "),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|(r, m)| r == "FailedToRetrieveImagePullSecret" && m.contains("absent")));
    let status = h.api.last_status("pull").expect("status");
    assert!(status_of(&status, "c")
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn a_present_image_is_not_pulled_under_if_not_present_and_never() {
    let h = harness();
    let mut never = container("never");
    never.image_pull_policy = Some("Never".into());
    let mut worker = PodWorker::new(
        h.ctx.clone(),
        pod("present", vec![], vec![container("c"), never], "Always"),
        vec![],
    );
    worker.sync().await;
    assert!(!h
        .runtime
        .calls()
        .iter()
        .any(|c| matches!(c, Call::PullImage(..))));
    let events = h.api.events();
    assert_eq!(
        events
            .iter()
            .filter(|(r, m)| r == "Pulled" && m.ends_with("already present on machine"))
            .count(),
        2,
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_reports_upstream_events_then_back_off() {
    let h = harness();
    let mut c = container("c");
    c.image = Some("127.0.0.1:5000/nothere:1".into());
    let mut worker = PodWorker::new(h.ctx.clone(), pod("bad", vec![], vec![c], "Always"), vec![]);
    worker.sync().await;
    let status = h.api.last_status("bad").expect("status");
    let waiting = status_of(&status, "c")
        .state
        .as_ref()
        .and_then(|s| s.waiting.clone())
        .expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("ErrImagePull"));
    let message = waiting.message.unwrap_or_default();
    assert!(
        message.starts_with(
            "Failed to pull image \"127.0.0.1:5000/nothere:1\": failed to pull and unpack image"
        ),
        "{message}"
    );
    worker.sync().await;
    let events = h.api.events();
    let pairs: Vec<(&str, &str)> = events
        .iter()
        .map(|(r, m)| (r.as_str(), m.as_str()))
        .filter(|(r, _)| *r != "Scheduled")
        .collect();
    for want in [
        ("Pulling", "Pulling image \"127.0.0.1:5000/nothere:1\""),
        ("Failed", "Error: ErrImagePull"),
        (
            "BackOff",
            "Back-off pulling image \"127.0.0.1:5000/nothere:1\"",
        ),
        ("Failed", "Error: ImagePullBackOff"),
    ] {
        assert!(pairs.contains(&want), "{want:?} missing from {pairs:?}");
    }
    assert!(pairs
        .iter()
        .any(|(r, m)| *r == "Failed" && m.starts_with("Failed to pull image")));
}

#[tokio::test(start_paused = true)]
async fn a_config_map_change_reaches_the_mounted_files() {
    use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Volume, VolumeMount};
    let h = harness();
    let set = |color: &str| {
        h.api.config_maps.lock().expect("lock").insert(
            ("default".into(), "settings".into()),
            ConfigMap {
                data: Some([("color".to_string(), color.to_string())].into()),
                ..Default::default()
            },
        );
    };
    set("blue");
    let mut c = container("c");
    c.volume_mounts = Some(vec![VolumeMount {
        name: "cfg".into(),
        mount_path: "/etc/cfg".into(),
        ..Default::default()
    }]);
    let mut p = pod("live", vec![], vec![c], "Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.volumes = Some(vec![Volume {
            name: "cfg".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
    }
    let uid = p.metadata.uid.clone().expect("uid");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    let file = h
        .ctx
        .settings
        .pod_dir(&uid)
        .join("volumes/kubernetes.io~configmap/cfg/color");
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "blue");
    set("green");
    worker.sync().await;
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        "blue",
        "not re-read before the refresh period"
    );
    tokio::time::advance(VOLUME_REFRESH + Duration::from_secs(1)).await;
    worker.sync().await;
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "green");
}

fn exec_handler(command: &[&str]) -> k8s_openapi::api::core::v1::LifecycleHandler {
    k8s_openapi::api::core::v1::LifecycleHandler {
        exec: Some(k8s_openapi::api::core::v1::ExecAction {
            command: Some(command.iter().map(|s| s.to_string()).collect()),
        }),
        ..Default::default()
    }
}

fn exec_commands(runtime: &FakeRuntime) -> Vec<String> {
    runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Exec(_, request) => Some(request.command.join(" ")),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_start_hook_kills_the_container_with_upstream_events() {
    let h = harness();
    h.runtime
        .set_exec_handler(|_, request| crate::runtime::fake::ExecResult {
            stderr: b"no such file\n".to_vec(),
            exit_code: if request.command[0] == "bad" { 1 } else { 0 },
            ..Default::default()
        });
    let mut c = container("hooked");
    c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        post_start: Some(exec_handler(&["bad", "hook"])),
        ..Default::default()
    });
    let p = pod("poststart", vec![], vec![c], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;

    assert_eq!(exec_commands(&h.runtime), vec!["bad hook"]);
    let events = h.api.events();
    let failed = events
        .iter()
        .find(|(reason, _)| reason == "FailedPostStartHook")
        .expect("FailedPostStartHook event");
    assert!(
        failed.1.starts_with(
            "Exec lifecycle hook ([bad hook]) for Container \"hooked\" in Pod \"poststart_default(poststart-0000-1111-2222-333344445555)\" failed - error: command 'bad hook' exited with 1"
        ),
        "{}",
        failed.1
    );
    assert!(events
        .iter()
        .any(|(reason, message)| reason == "Killing" && message == "FailedPostStartHook"));
    assert!(h
        .runtime
        .calls()
        .iter()
        .any(|c| matches!(c, Call::StopContainer(..))));
    let status = h.api.last_status("poststart").expect("status");
    let hooked = status_of(&status, "hooked");
    assert!(!hooked.ready);
    assert!(hooked
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .is_none());

    // It is restarted like any exited container (the first restart is immediate).
    tokio::time::advance(Duration::from_secs(3)).await;
    worker.sync().await;
    assert_eq!(started_names(&h.runtime), vec!["hooked", "hooked"]);
}

#[tokio::test(start_paused = true)]
async fn a_successful_post_start_hook_leaves_the_container_running() {
    let h = harness();
    let mut c = container("hooked");
    c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        post_start: Some(exec_handler(&["touch", "/started"])),
        ..Default::default()
    });
    let p = pod("poststart-ok", vec![], vec![c], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    assert_eq!(exec_commands(&h.runtime), vec!["touch /started"]);
    assert!(!h
        .api
        .events()
        .iter()
        .any(|(reason, _)| reason == "FailedPostStartHook"));
    let status = h.api.last_status("poststart-ok").expect("status");
    assert!(status_of(&status, "hooked")
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_before_the_stop_signal_and_shortens_the_grace_period() {
    let h = harness();
    let mut c = container("web");
    c.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        pre_stop: Some(k8s_openapi::api::core::v1::LifecycleHandler {
            sleep: Some(k8s_openapi::api::core::v1::SleepAction { seconds: 4 }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut other = container("sidecar");
    other.lifecycle = Some(k8s_openapi::api::core::v1::Lifecycle {
        pre_stop: Some(exec_handler(&["fail"])),
        ..Default::default()
    });
    h.runtime
        .set_exec_handler(|_, _| crate::runtime::fake::ExecResult {
            exit_code: 2,
            ..Default::default()
        });
    let mut p = pod("prestop", vec![], vec![c, other], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    worker.sync().await;
    h.runtime.clear_calls();

    p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    p.metadata.deletion_grace_period_seconds = Some(10);
    worker.update_pod(p);
    assert_eq!(worker.sync().await, SyncOutcome::Done);

    let ids: std::collections::BTreeMap<String, String> = h
        .runtime
        .calls()
        .iter()
        .filter_map(|c| match c {
            Call::StopContainer(id, grace) => Some((id.clone(), format!("{grace:?}"))),
            _ => None,
        })
        .collect();
    // The sleeping hook used 4 of the 10 seconds; the failed exec hook took none.
    let mut graces: Vec<String> = ids.values().cloned().collect();
    graces.sort();
    assert_eq!(graces, vec!["10s", "6s"]);
    let calls = h.runtime.calls();
    let exec_at = calls
        .iter()
        .position(|c| matches!(c, Call::Exec(_, r) if r.command == vec!["fail".to_string()]))
        .expect("preStop exec");
    let sidecar_stop = calls
        .iter()
        .position(|c| matches!(c, Call::StopContainer(_, g) if *g == Duration::from_secs(10)))
        .expect("sidecar stop");
    assert!(exec_at < sidecar_stop);
    assert!(h
        .api
        .events()
        .iter()
        .any(|(reason, message)| reason == "FailedPreStopHook"
            && message.starts_with("Exec lifecycle hook ([fail]) for Container \"sidecar\"")));
}

#[tokio::test(start_paused = true)]
async fn containers_share_the_pod_ipc_namespace_unless_host_ipc() {
    let h = harness();
    let p = pod(
        "ipc",
        vec![],
        vec![container("a"), container("b")],
        "Always",
    );
    let mut worker = PodWorker::new(h.ctx.clone(), p.clone(), vec![]);
    worker.sync().await;
    let configs: Vec<crate::runtime::ContainerConfig> = h
        .runtime
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::CreateContainer(config) => Some(*config),
            _ => None,
        })
        .collect();
    assert_eq!(configs.len(), 2);
    let ns = std::path::PathBuf::from("/run/fake-ipc/kube-ipc000011112");
    for config in &configs {
        assert_eq!(config.ipc_ns_path.as_ref(), Some(&ns));
        assert!(!config.host_ipc);
        let shm = config
            .mounts
            .iter()
            .find(|m| m.container_path == "/dev/shm")
            .expect("shared /dev/shm");
        assert_eq!(
            shm.host_path,
            std::path::PathBuf::from("/run/fake-ipc/kube-ipc000011112.shm")
        );
        // BestEffort.
        assert_eq!(config.oom_score_adj, Some(1000));
    }
    assert_eq!(h.network.ipc_namespaces(), vec!["kube-ipc000011112"]);

    // Deletion removes it with the network namespace.
    let mut gone = p.clone();
    gone.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    gone.metadata.deletion_grace_period_seconds = Some(0);
    worker.update_pod(gone);
    assert_eq!(worker.sync().await, SyncOutcome::Done);
    assert!(h.network.ipc_namespaces().is_empty());

    // hostIPC (and hostNetwork): no pod namespace, the host's is shared.
    let mut host = pod("hostipc", vec![], vec![container("a")], "Always");
    if let Some(spec) = host.spec.as_mut() {
        spec.host_ipc = Some(true);
        spec.host_network = Some(true);
    }
    h.runtime.clear_calls();
    let mut worker = PodWorker::new(h.ctx.clone(), host, vec![]);
    worker.sync().await;
    let config = h
        .runtime
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::CreateContainer(config) => Some(*config),
            _ => None,
        })
        .expect("created");
    assert!(config.host_ipc);
    assert_eq!(config.ipc_ns_path, None);
    assert!(!config.mounts.iter().any(|m| m.container_path == "/dev/shm"));
    assert!(!h.network.calls().contains(&NetworkCall::SetupIpc(
        "hostipc-0000-1111-2222-333344445555".into()
    )));
}

#[tokio::test(start_paused = true)]
async fn security_context_reaches_the_container_config() {
    let h = harness();
    let mut c = container("secure");
    c.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
        run_as_user: Some(1000),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            add: Some(vec!["NET_ADMIN".into()]),
            drop: Some(vec!["ALL".into()]),
        }),
        ..Default::default()
    });
    let mut p = pod("secure", vec![], vec![c], "Always");
    if let Some(spec) = p.spec.as_mut() {
        spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
            run_as_group: Some(3000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![4000]),
            ..Default::default()
        });
    }
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    let config = h
        .runtime
        .calls()
        .into_iter()
        .find_map(|c| match c {
            Call::CreateContainer(config) => Some(*config),
            _ => None,
        })
        .expect("created");
    assert_eq!(config.run_as_user, Some(1000));
    assert_eq!(config.run_as_group, Some(3000));
    assert_eq!(config.supplemental_groups, vec![2000, 4000]);
    assert!(config.read_only_root_filesystem && config.no_new_privileges);
    assert_eq!(config.capabilities_add, vec!["NET_ADMIN"]);
    assert_eq!(config.capabilities_drop, vec!["ALL"]);
}

#[tokio::test(start_paused = true)]
async fn exit_events_wake_only_when_the_runtime_has_a_stream() {
    let mut none: Option<tokio::sync::broadcast::Receiver<crate::runtime::ContainerExit>> = None;
    assert!(
        tokio::time::timeout(Duration::from_secs(5), next_exit(&mut none))
            .await
            .is_err(),
        "no stream: never resolves"
    );
    let (tx, rx) = tokio::sync::broadcast::channel(4);
    let mut some = Some(rx);
    tx.send(crate::runtime::ContainerExit {
        id: "abc".into(),
        exit_code: 1,
    })
    .expect("send");
    let exit = next_exit(&mut some).await.expect("exit");
    assert_eq!(exit.id, "abc");

    let h = harness();
    let p = pod("owner", vec![], vec![container("c")], "Always");
    let mut worker = PodWorker::new(h.ctx.clone(), p, vec![]);
    worker.sync().await;
    let id = h.runtime.containers().keys().next().cloned().expect("id");
    assert!(worker.owns_container(&id));
    assert!(!worker.owns_container("someone-else"));
}

#[test]
fn resyncs_are_spread_over_half_an_interval_more() {
    let resync = Duration::from_secs(60);
    let samples: Vec<Duration> = (0..200).map(|_| super::jittered(resync)).collect();
    assert!(samples
        .iter()
        .all(|d| *d >= resync && *d <= resync.mul_f64(1.0 + super::RESYNC_JITTER)));
    let longest = samples.iter().max().expect("samples");
    let shortest = samples.iter().min().expect("samples");
    let spread = longest.saturating_sub(*shortest);
    assert!(
        spread > Duration::from_secs(10),
        "200 samples spread over {spread:?}"
    );
}
