//! Stopping a pod: stop containers within the grace period, tear down the network, remove
//! containers and files, and for a deleted pod post the final status and delete it for good.

use std::time::Duration;

use super::{running_state, PodWorker, SyncOutcome};
use crate::network::netns_name;
use crate::runtime::ContainerState;

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
        let runtime = self.ctx.runtime.clone();
        let stops = self
            .tracks
            .values()
            .filter_map(|t| t.current.as_ref())
            .filter(|i| !matches!(i.state, ContainerState::Exited { .. }))
            .map(|i| {
                let runtime = runtime.clone();
                let id = i.id.clone();
                async move {
                    if let Err(error) = runtime.stop_container(&id, grace).await {
                        if !error.is_not_found() {
                            tracing::warn!(%id, %error, "stopping container failed");
                        }
                    }
                }
            })
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
        self.refresh_states().await;
    }

    pub(super) async fn teardown_network(&mut self) {
        if self.host_network() {
            self.torn_down = true;
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
