//! Pod status from container statuses, as upstream's status manager computes it: the phase
//! (`getPhase`), the conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready,
//! PodScheduled kept) with stable transition times, addresses, start time and QoS class.

use k8s_openapi::api::core::v1::{ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::resources::qos_class;

/// `Pending`, `Running`, `Succeeded` or `Failed` from the container statuses.
pub fn phase(pod: &Pod, init: &[ContainerStatus], containers: &[ContainerStatus]) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "Pending";
    };
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let find = |list: &[ContainerStatus], name: &str| list.iter().find(|s| s.name == name).cloned();
    let (mut pending_init, mut failed_init) = (0, 0);
    for container in spec.init_containers.iter().flatten() {
        let Some(status) = find(init, &container.name) else {
            pending_init += 1;
            continue;
        };
        let state = status.state.unwrap_or_default();
        let last = status.last_state.and_then(|s| s.terminated);
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            match last {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for container in &spec.containers {
        let Some(status) = find(containers, &container.name) else {
            unknown += 1;
            continue;
        };
        let state = status.state.unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if status.last_state.and_then(|s| s.terminated).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn names(statuses: &[ContainerStatus], keep: impl Fn(&ContainerStatus) -> bool) -> Vec<String> {
    statuses
        .iter()
        .filter(|s| keep(s))
        .map(|s| s.name.clone())
        .collect()
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    previous: &[PodCondition],
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" }.to_string();
    let transition = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: kind.to_string(),
        status,
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        last_transition_time: Some(transition),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// Everything the worker knows that the status is built from.
#[derive(Debug, Clone, Default)]
pub struct StatusInput {
    /// Init container statuses (spec order).
    pub init: Vec<ContainerStatus>,
    /// App container statuses (spec order).
    pub containers: Vec<ContainerStatus>,
    /// The pod network (sandbox) is ready.
    pub sandbox_ready: bool,
    /// Node IP.
    pub host_ip: String,
    /// Pod IP, once known.
    pub pod_ip: Option<String>,
    /// When the kubelet first saw the pod.
    pub start_time: Option<Time>,
    /// Pod-level reason/message (e.g. a failed network set-up).
    pub message: Option<String>,
}

/// The full pod status; `previous` is the status the pod has now (conditions and PodScheduled
/// are carried over from it).
pub fn pod_status(pod: &Pod, input: &StatusInput, now: &Time) -> PodStatus {
    let previous = pod.status.as_ref();
    let conditions = previous.and_then(|s| s.conditions.as_deref());
    let nominated = previous.and_then(|s| s.nominated_node_name.as_deref());
    pod_status_after(pod, conditions.unwrap_or_default(), nominated, input, now)
}

/// [`pod_status`] with the previous conditions and nominated node given apart from the pod
/// (a worker's own condition history), so that nothing of the pod is copied.
pub fn pod_status_after(
    pod: &Pod,
    prev_conditions: &[PodCondition],
    nominated_node_name: Option<&str>,
    input: &StatusInput,
    now: &Time,
) -> PodStatus {
    let phase = phase(pod, &input.init, &input.containers);
    let spec_inits: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().map(|c| c.name.clone()))
        .collect();
    let incomplete_init: Vec<String> = spec_inits
        .iter()
        .filter(|name| {
            !input.init.iter().any(|s| {
                &s.name == *name
                    && s.state
                        .as_ref()
                        .and_then(|st| st.terminated.as_ref())
                        .map(|t| t.exit_code == 0)
                        .unwrap_or(false)
            })
        })
        .cloned()
        .collect();
    let initialized = incomplete_init.is_empty() || phase == "Succeeded";
    let unready = names(&input.containers, |s| !s.ready);
    let completed = phase == "Succeeded" || phase == "Failed";
    let (ready_reason, ready_message) = if completed {
        ("PodCompleted", None)
    } else {
        (
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let containers_ready = unready.is_empty() && !input.containers.is_empty() && !completed;
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            input.sandbox_ready,
            None,
            None,
            prev_conditions,
            now,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete_init.join(" ")
            )),
            prev_conditions,
            now,
        ),
        condition(
            "Ready",
            containers_ready,
            Some(ready_reason),
            ready_message.clone(),
            prev_conditions,
            now,
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(ready_reason),
            ready_message,
            prev_conditions,
            now,
        ),
    ];
    if let Some(scheduled) = prev_conditions.iter().find(|c| c.type_ == "PodScheduled") {
        conditions.push(scheduled.clone());
    }
    let host_ip = (!input.host_ip.is_empty()).then(|| input.host_ip.clone());
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
        pod_ip: input.pod_ip.clone(),
        pod_ips: input.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: input.start_time.clone(),
        qos_class: Some(qos_class(pod).to_string()),
        init_container_statuses: if spec_inits.is_empty() {
            None
        } else {
            Some(input.init.clone())
        },
        container_statuses: Some(input.containers.clone()),
        message: input.message.clone(),
        reason: None,
        nominated_node_name: nominated_node_name.map(str::to_string),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStateWaiting, PodSpec,
    };

    fn pod(inits: &[&str], containers: &[&str], policy: &str) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            ..Default::default()
        };
        Pod {
            spec: Some(PodSpec {
                init_containers: Some(inits.iter().map(c).collect()),
                containers: containers.iter().map(c).collect(),
                restart_policy: Some(policy.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn terminated(name: &str, code: i32) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn waiting(name: &str, reason: &str, last_exit: Option<i32>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.into()),
                    message: None,
                }),
                ..Default::default()
            }),
            last_state: last_exit.map(|code| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn phase_follows_upstream_rules() {
        type Case = (
            &'static str,
            Pod,
            Vec<ContainerStatus>,
            Vec<ContainerStatus>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                "nothing started",
                pod(&[], &["a"], "Always"),
                vec![],
                vec![waiting("a", "ContainerCreating", None)],
                "Pending",
            ),
            (
                "running",
                pod(&[], &["a"], "Always"),
                vec![],
                vec![running("a", true)],
                "Running",
            ),
            (
                "crash looping",
                pod(&[], &["a"], "Always"),
                vec![],
                vec![waiting("a", "CrashLoopBackOff", Some(1))],
                "Running",
            ),
            (
                "all succeeded",
                pod(&[], &["a", "b"], "Never"),
                vec![],
                vec![terminated("a", 0), terminated("b", 0)],
                "Succeeded",
            ),
            (
                "one failed, never",
                pod(&[], &["a", "b"], "Never"),
                vec![],
                vec![terminated("a", 0), terminated("b", 1)],
                "Failed",
            ),
            (
                "one failed, on failure",
                pod(&[], &["a"], "OnFailure"),
                vec![],
                vec![terminated("a", 1)],
                "Running",
            ),
            (
                "init running",
                pod(&["i"], &["a"], "Always"),
                vec![running("i", false)],
                vec![waiting("a", "PodInitializing", None)],
                "Pending",
            ),
            (
                "init failed, never",
                pod(&["i"], &["a"], "Never"),
                vec![terminated("i", 2)],
                vec![waiting("a", "PodInitializing", None)],
                "Failed",
            ),
            (
                "init done",
                pod(&["i"], &["a"], "Always"),
                vec![terminated("i", 0)],
                vec![running("a", true)],
                "Running",
            ),
        ];
        for (what, pod, init, containers, want) in cases {
            assert_eq!(phase(&pod, &init, &containers), want, "{what}");
        }
    }

    #[test]
    fn conditions_report_unready_and_uninitialized_containers() {
        let p = pod(&["i"], &["a", "b"], "Always");
        let t0 = Time("2026-11-22T04:00:00Z".parse().expect("t"));
        let input = StatusInput {
            init: vec![running("i", false)],
            containers: vec![
                waiting("a", "PodInitializing", None),
                waiting("b", "PodInitializing", None),
            ],
            sandbox_ready: true,
            host_ip: "192.0.2.2".into(),
            pod_ip: Some("10.244.0.5".into()),
            ..Default::default()
        };
        let status = pod_status(&p, &input, &t0);
        let get = |t: &str| {
            status
                .conditions
                .as_ref()
                .and_then(|c| c.iter().find(|c| c.type_ == t).cloned())
                .expect("condition")
        };
        assert_eq!(get("PodReadyToStartContainers").status, "True");
        assert_eq!(get("Initialized").status, "False");
        assert_eq!(
            get("Initialized").message.as_deref(),
            Some("containers with incomplete status: [i]")
        );
        assert_eq!(get("Ready").reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(
            get("ContainersReady").message.as_deref(),
            Some("containers with unready status: [a b]")
        );
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.pod_ips.expect("ips")[0].ip, "10.244.0.5");
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    }

    #[test]
    fn transition_times_are_kept_while_status_is_unchanged() {
        let mut p = pod(&[], &["a"], "Always");
        let t0 = Time("2026-11-22T04:00:00Z".parse().expect("t"));
        let t1 = Time("2026-11-22T04:01:00Z".parse().expect("t"));
        let input = StatusInput {
            containers: vec![running("a", true)],
            sandbox_ready: true,
            ..Default::default()
        };
        p.status = Some(pod_status(&p, &input, &t0));
        let again = pod_status(&p, &input, &t1);
        for c in again.conditions.expect("conditions") {
            assert_eq!(c.last_transition_time, Some(t0.clone()), "{}", c.type_);
        }
    }
}
