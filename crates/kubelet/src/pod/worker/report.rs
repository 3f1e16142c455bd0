//! Probes and status: running due probes, each container's status, the pod status, and
//! posting it when it changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateRunning, ContainerStatus, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::{exit_code, running_state, terminated_of, waiting, PodWorker};
use crate::pod::probe::{run_probe, ProbeKind, ProbeTarget};
use crate::pod::status::{pod_status_after, StatusInput};
use crate::runtime::ContainerState;

impl PodWorker {
    pub(super) async fn run_probes(&mut self) {
        let now = Instant::now();
        let ip = self.pod_ip();
        let runtime = self.ctx.runtime.clone();
        let specs: BTreeMap<String, Container> = self
            .app_specs()
            .into_iter()
            .map(|c| (c.name.clone(), c))
            .collect();
        let mut failures: Vec<(String, String)> = Vec::new();
        for (name, track) in self.tracks.iter_mut() {
            let Some(spec) = specs.get(name) else {
                continue;
            };
            let Some(instance) = track.current.as_mut() else {
                continue;
            };
            if !running_state(&instance.state) {
                continue;
            }
            let target = ProbeTarget {
                runtime: &runtime,
                container_id: &instance.id,
                container: spec,
                ip,
            };
            let started = instance.probes.started();
            let mut trackers = Vec::new();
            if !started {
                trackers.extend(
                    instance
                        .probes
                        .startup
                        .as_mut()
                        .map(|t| (ProbeKind::Startup, t)),
                );
            } else {
                trackers.extend(
                    instance
                        .probes
                        .readiness
                        .as_mut()
                        .map(|t| (ProbeKind::Readiness, t)),
                );
                trackers.extend(
                    instance
                        .probes
                        .liveness
                        .as_mut()
                        .map(|t| (ProbeKind::Liveness, t)),
                );
            }
            for (kind, tracker) in trackers {
                if tracker.due(now) {
                    let result = run_probe(&tracker.probe, &target, tracker.timeout()).await;
                    if let Err(reason) = &result {
                        let kind = match kind {
                            ProbeKind::Readiness => "Readiness",
                            ProbeKind::Liveness => "Liveness",
                            ProbeKind::Startup => "Startup",
                        };
                        failures.push((name.clone(), format!("{kind} probe failed: {reason}")));
                    }
                    if tracker.record(result.is_ok(), Instant::now()) {
                        tracing::info!(container = %name, healthy = tracker.healthy, "probe verdict changed");
                    }
                }
            }
        }
        for (container, message) in failures {
            self.event(Some(&container), true, "Unhealthy", message);
        }
    }

    pub(super) fn next_probe_due(&self) -> Option<Instant> {
        self.tracks
            .values()
            .filter_map(|t| t.current.as_ref())
            .filter(|i| running_state(&i.state))
            .filter_map(|i| i.probes.next_due())
            .min()
    }

    pub(super) fn container_status(
        &self,
        spec: &Container,
        default_waiting: &str,
    ) -> ContainerStatus {
        let track = self.tracks.get(&spec.name);
        let instance = track.and_then(|t| t.current.as_ref());
        let image = spec.image.clone().unwrap_or_default();
        let mut status = ContainerStatus {
            name: spec.name.clone(),
            image: crate::runtime::normalize_image(&image),
            image_id: String::new(),
            restart_count: track.map(|t| t.restart_count).unwrap_or(0),
            container_id: instance.map(|i| format!("containerd://{}", i.id)),
            ..Default::default()
        };
        let explicit_wait = track.and_then(|t| t.waiting.clone());
        let mut last_state = track.and_then(|t| t.last_terminated.clone());
        let state = match (instance, explicit_wait) {
            (Some(i), Some((reason, message))) if exit_code(&i.state).is_some() => {
                last_state = terminated_of(&i.id, &i.state);
                waiting(&reason, message)
            }
            (None, Some((reason, message))) => waiting(&reason, message),
            (None, None) => waiting(default_waiting, None),
            (Some(i), _) => match &i.state {
                ContainerState::Running { started_at, .. } => {
                    status.ready = i.probes.ready();
                    status.started = Some(i.probes.started());
                    ApiState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(Time(*started_at)),
                        }),
                        ..Default::default()
                    }
                }
                ContainerState::Exited { .. } => ApiState {
                    terminated: terminated_of(&i.id, &i.state),
                    ..Default::default()
                },
                ContainerState::Created | ContainerState::Unknown => {
                    waiting("ContainerCreating", None)
                }
            },
        };
        if status.started.is_none() {
            status.started = Some(false);
        }
        if instance.is_some() {
            status.image_id = track
                .and_then(|t| t.image_id.clone())
                .unwrap_or_else(|| status.image.clone());
        }
        status.state = Some(state);
        status.last_state = last_state.map(|t| ApiState {
            terminated: Some(t),
            ..Default::default()
        });
        status
    }

    pub(super) fn compute_status(&self) -> PodStatus {
        let inits = self.init_specs();
        let init_done = inits.iter().all(|c| {
            self.tracks
                .get(&c.name)
                .and_then(|t| t.current.as_ref())
                .and_then(|i| exit_code(&i.state))
                == Some(0)
        });
        let init: Vec<ContainerStatus> = inits
            .iter()
            .map(|c| self.container_status(c, "PodInitializing"))
            .collect();
        let app_default = if init_done {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let containers: Vec<ContainerStatus> = self
            .app_specs()
            .iter()
            .map(|c| self.container_status(c, app_default))
            .collect();
        let input = StatusInput {
            init,
            containers,
            sandbox_ready: self.host_network() || (self.network.is_some() && !self.torn_down),
            host_ip: self.ctx.settings.node_ip.to_string(),
            pod_ip: self.pod_ip().map(|ip| ip.to_string()),
            start_time: self.start_time.clone(),
            message: self.pod_message.clone(),
        };
        let api_status = self.pod.status.as_ref();
        let api_conditions = api_status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        // Keep our own condition history even if the API echo lags behind.
        let own;
        let conditions = match &self.last_posted {
            Some(posted) => {
                let mut conditions = posted.conditions.clone().unwrap_or_default();
                conditions.retain(|c| c.type_ != "PodScheduled");
                conditions.extend(
                    api_conditions
                        .iter()
                        .find(|c| c.type_ == "PodScheduled")
                        .cloned(),
                );
                own = conditions;
                own.as_slice()
            }
            None => api_conditions,
        };
        let nominated = api_status.and_then(|s| s.nominated_node_name.as_deref());
        let now = Time(jiff::Timestamp::now());
        pod_status_after(&self.pod, conditions, nominated, &input, &now)
    }

    pub(super) async fn post_status(&mut self, status: PodStatus) {
        if self.last_posted.as_deref() == Some(&status) {
            return;
        }
        match self.ctx.api.update_status(&self.pod, &status).await {
            Ok(()) => {
                tracing::debug!(pod = %self.key(), phase = ?status.phase, "pod status posted");
                self.last_posted = Some(Arc::new(status));
                self.posted_count += 1;
            }
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "posting pod status failed; will retry");
            }
        }
    }
}

/// Whether the API's status shows a condition we posted with another status, set after ours
/// (a later transition time): another writer changed it. The echo of an earlier post of ours
/// carries an earlier or equal transition time, so it does not count.
pub(super) fn overridden(posted: &PodStatus, api: Option<&PodStatus>) -> bool {
    let Some(theirs) = api.and_then(|s| s.conditions.as_deref()) else {
        return false;
    };
    posted.conditions.iter().flatten().any(|ours| {
        theirs.iter().any(|theirs| {
            theirs.type_ == ours.type_
                && theirs.status != ours.status
                && match (&theirs.last_transition_time, &ours.last_transition_time) {
                    (Some(their_time), Some(our_time)) => their_time.0 > our_time.0,
                    _ => false,
                }
        })
    })
}
