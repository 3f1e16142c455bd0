//! Stopping a pod: run preStop hooks and stop containers within the grace period, tear down
//! the network and IPC namespaces, remove containers and files, and for a deleted pod post the
//! final status and delete it for good.

use std::time::Duration;

use super::hooks::{run_hook, HookTarget};
use super::{running_state, PodWorker, SyncOutcome};
use crate::network::netns_name;
use crate::runtime::ContainerState;

/// The least stop grace left after a preStop hook (upstream's minimum).
pub const MIN_GRACE_AFTER_PRE_STOP: Duration = Duration::from_secs(2);

impl PodWorker {
    pub(super) fn grace_period(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0))
    }

    pub(super) async fn stop_all(&mut self, grace: Duration) {
        let running: Vec<String> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.current.as_ref().is_some_and(|i| running_state(&i.state)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in running {
            self.event(
                Some(&name),
                false,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
        let stops = self
            .tracks
            .iter()
            .filter_map(|(name, t)| t.current.as_ref().map(|i| (name, i)))
            .filter(|(_, i)| !matches!(i.state, ContainerState::Exited { .. }))
            .map(|(name, i)| self.stop_one(name, &i.id, grace))
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
        self.refresh_states().await;
    }

    /// Stops one container: its preStop hook first (if any, and if there is a grace period),
    /// bounded by the grace period, then the stop signal with what is left of it (at least
    /// [`MIN_GRACE_AFTER_PRE_STOP`]), as upstream.
    pub(super) async fn stop_one(&self, name: &str, id: &str, grace: Duration) {
        let mut grace = grace;
        let spec = self.container_spec(name);
        let pre_stop = spec
            .as_ref()
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref());
        if let (Some(container), Some(handler)) = (spec.as_ref(), pre_stop) {
            if !grace.is_zero() {
                let started = tokio::time::Instant::now();
                let pod_ref = self.pod_ref();
                let target = HookTarget {
                    runtime: &self.ctx.runtime,
                    container_id: id,
                    container,
                    ip: self.pod_ip(),
                    pod_ref: &pod_ref,
                    pod: &self.pod,
                    api: self.ctx.api.as_ref(),
                };
                match tokio::time::timeout(grace, run_hook(handler, &target)).await {
                    Ok(Ok(())) => {
                        tracing::debug!(pod = %self.key(), container = %name, "preStop hook done")
                    }
                    Ok(Err(message)) => {
                        tracing::warn!(pod = %self.key(), container = %name, %message, "preStop hook failed");
                        self.event(Some(name), true, "FailedPreStopHook", message);
                    }
                    Err(_) => {
                        tracing::warn!(pod = %self.key(), container = %name, grace_seconds = grace.as_secs(), "preStop hook did not finish within the grace period");
                    }
                }
                grace = grace
                    .saturating_sub(started.elapsed())
                    .max(MIN_GRACE_AFTER_PRE_STOP);
            }
        }
        if let Err(error) = self.ctx.runtime.stop_container(id, grace).await {
            if !error.is_not_found() {
                tracing::warn!(%id, %error, "stopping container failed");
            }
        }
    }

    pub(super) async fn teardown_network(&mut self) {
        if self.host_network() {
            // No network namespace; the IPC namespace (if any) goes on its own.
            match self.ctx.network.teardown_ipc(&netns_name(&self.uid)).await {
                Ok(()) => self.torn_down = true,
                Err(error) => {
                    tracing::warn!(pod = %self.key(), %error, "IPC namespace teardown failed")
                }
            }
            return;
        }
        let netns = self
            .network
            .as_ref()
            .map(|n| n.netns_name.clone())
            .unwrap_or_else(|| netns_name(&self.uid));
        match self.ctx.network.teardown(&netns).await {
            Ok(()) => self.torn_down = true,
            Err(error) => tracing::warn!(pod = %self.key(), %error, "network teardown failed"),
        }
    }

    pub(super) async fn remove_all(&mut self) {
        let runtime = self.ctx.runtime.clone();
        for (name, track) in self.tracks.iter_mut() {
            if let Some(instance) = &track.current {
                if let Err(error) = runtime.remove_container(&instance.id).await {
                    if !error.is_not_found() {
                        tracing::warn!(container = %name, %error, "removing container failed");
                    }
                }
            }
        }
        let pod_dir = self.ctx.settings.pod_dir(&self.uid);
        if let Err(error) = self.ctx.mounter.unmount_under(&pod_dir) {
            tracing::warn!(dir = %pod_dir.display(), %error, "unmounting pod volumes failed");
        }
        if let Err(error) = std::fs::remove_dir_all(&pod_dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %pod_dir.display(), %error, "removing pod dir failed");
            }
        }
    }

    /// Stops and removes everything of a pod that is gone from the API.
    pub async fn cleanup(&mut self, grace: Duration) {
        tracing::info!(pod = %self.key(), uid = %self.uid, "pod removed from the API; cleaning up");
        self.stop_all(grace).await;
        self.teardown_network().await;
        self.remove_all().await;
        self.remove_logs();
    }

    pub(super) fn remove_logs(&self) {
        let dir = self
            .ctx
            .settings
            .pod_log_dir(&self.namespace(), &self.name(), &self.uid);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), %error, "removing pod logs failed");
            }
        }
    }

    pub(super) async fn terminate_and_delete(&mut self) -> SyncOutcome {
        let grace = self.grace_period();
        tracing::info!(pod = %self.key(), grace_seconds = grace.as_secs(), "pod is being deleted; stopping containers");
        self.stop_all(grace).await;
        self.teardown_network().await;
        let mut status = self.compute_status();
        if status.phase.as_deref() == Some("Running") || status.phase.as_deref() == Some("Pending")
        {
            let all_ok = status.container_statuses.iter().flatten().all(|s| {
                s.state
                    .as_ref()
                    .and_then(|st| st.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 0)
            });
            status.phase = Some(if all_ok { "Succeeded" } else { "Failed" }.into());
        }
        self.post_status(status).await;
        self.remove_all().await;
        let (namespace, name) = (self.namespace(), self.name());
        match self.ctx.api.delete_pod(&namespace, &name, &self.uid).await {
            Ok(()) => {
                tracing::info!(pod = %self.key(), "pod deleted");
                self.remove_logs();
                SyncOutcome::Done
            }
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "final pod delete failed; will retry");
                SyncOutcome::Continue(Duration::from_secs(2))
            }
        }
    }
}
