//! The per-pod worker: a task that owns one pod's containers and network, fed the pod's
//! latest version through a channel, and syncing desired against actual state about once a
//! second (container exits are polled; probes run when due).
//!
//! A sync: set up the network, write the pod files and volumes, run init containers in order
//! (each must exit 0), then keep the app containers running per the restart policy with
//! CrashLoopBackOff back-off (10 s doubling to 5 min), run probes, and post the status when it
//! changes. A pod with a `deletionTimestamp` is stopped, torn down and deleted for good.
//!
//! This file holds the sync loop and restart logic; `start` starts one container, `report`
//! runs probes and builds the status, `teardown` stops and deletes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ContainerState as ApiState, ContainerStateTerminated, ContainerStateWaiting, Pod,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::api::PodEvent;
use super::env::PodSources;
use super::probe::ContainerProbes;
use super::volumes::{has_file_volumes, prepare_volumes, refresh_file_volumes};
use super::PodContext;
use crate::network::{PodIpc, PodNetworkRequest, PodNetworkStatus};
use crate::runtime::{
    ContainerExit, ContainerState, ContainerSummary, PullPolicy, LABEL_RESTART_COUNT,
};

/// First CrashLoopBackOff delay.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
/// Longest CrashLoopBackOff delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often a live pod is re-synced by default (container exits are noticed this fast when
/// the runtime does not report them); [`PodContext::resync`] sets it per kubelet.
pub const RESYNC: Duration = Duration::from_secs(1);
/// A synced pod's next resync comes after the resync interval stretched by up to this fraction
/// (upstream's `workerResyncIntervalJitterFactor`), so that pods started together (a burst of
/// thousands on hollow nodes) do not resync, and re-read their volumes, together ever after.
pub const RESYNC_JITTER: f64 = 0.5;

/// `resync` stretched by a random part of [`RESYNC_JITTER`].
fn jittered(resync: Duration) -> Duration {
    component_base::jitter::up_to(resync, RESYNC_JITTER)
}

/// How often configMap, secret and projected volumes are re-read from the API.
pub const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// A worker's incoming messages. futures' channel: tokio's unbounded channel allocates about
/// 2.5 KiB up front, and a kubelet (or a fleet of hollow ones) holds one per pod.
pub type Mailbox = futures::channel::mpsc::UnboundedReceiver<WorkerMessage>;

/// The manager's end of a worker's [`Mailbox`].
pub type MailboxSender = futures::channel::mpsc::UnboundedSender<WorkerMessage>;

/// A worker's mailbox.
pub fn mailbox() -> (MailboxSender, Mailbox) {
    futures::channel::mpsc::unbounded()
}

/// What the manager sends a worker.
#[derive(Debug)]
pub enum WorkerMessage {
    /// The pod's latest version from the API.
    Update(Box<Pod>),
    /// The pod is gone from the API: stop everything, no API calls.
    Removed,
    /// The pod is evicted: stop everything within this grace period, no API calls.
    Stop(Duration),
}

/// The grace period of the containers of a pod gone from the API.
const REMOVED_GRACE: Duration = Duration::from_secs(2);

/// One container instance the worker started (or recovered).
#[derive(Debug)]
struct Instance {
    id: String,
    state: ContainerState,
    probes: ContainerProbes,
    /// When this worker first saw it running / exited (tokio time, for back-off).
    running_since: Option<Instant>,
    exited_seen: Option<Instant>,
}

/// What the worker keeps per container name.
#[derive(Debug, Default)]
struct Track {
    current: Option<Instance>,
    restart_count: i32,
    last_terminated: Option<ContainerStateTerminated>,
    waiting: Option<(String, Option<String>)>,
    backoff: Option<Duration>,
    retry_at: Option<Instant>,
    image_failures: u32,
    image_id: Option<String>,
}

/// What a sync asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Sync again after this long (or when the pod changes).
    Continue(Duration),
    /// The pod is finished and gone; the worker ends.
    Done,
}

/// The worker of one pod.
pub struct PodWorker {
    ctx: Arc<PodContext>,
    /// Shared with the pod store.
    pod: Arc<Pod>,
    uid: String,
    network: Option<PodNetworkStatus>,
    /// The pod's IPC namespace (none for hostIPC pods).
    ipc: Option<PodIpc>,
    // Boxed: a map node holds eleven values, and most pods have one or two containers.
    tracks: BTreeMap<String, Box<Track>>,
    start_time: Option<Time>,
    /// Shared with the pod store.
    last_posted: Option<Arc<PodStatus>>,
    volume_dirs: Option<BTreeMap<String, PathBuf>>,
    /// When the file volumes were last written from the API objects.
    volumes_refreshed: Option<Instant>,
    /// Digest of the file volumes' contents the last refresh published.
    volumes_digest: Option<u64>,
    files_written_for: Option<Option<IpAddr>>,
    pod_message: Option<String>,
    terminal: bool,
    torn_down: bool,
    /// Service-account tokens of projected volumes.
    tokens: super::tokens::PodTokens,
    /// Bumped whenever `last_posted` changes.
    posted_count: u64,
    /// What the shared store last got: the pod's resourceVersion, `posted_count` and the
    /// container ids, so an unchanged sync does not copy the pod again.
    published: Option<Published>,
}

struct Published {
    resource_version: Option<String>,
    posted_count: u64,
    containers: BTreeMap<String, String>,
}

fn running_state(state: &ContainerState) -> bool {
    matches!(state, ContainerState::Running { .. })
}

fn terminated_of(id: &str, state: &ContainerState) -> Option<ContainerStateTerminated> {
    match state {
        ContainerState::Exited {
            exit_code,
            started_at,
            finished_at,
            oom_killed,
        } => Some(ContainerStateTerminated {
            exit_code: *exit_code,
            reason: Some(
                if *oom_killed {
                    "OOMKilled"
                } else if *exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string(),
            ),
            started_at: Some(Time(*started_at)),
            finished_at: Some(Time(*finished_at)),
            container_id: Some(format!("containerd://{id}")),
            message: None,
            signal: None,
        }),
        _ => None,
    }
}

fn exit_code(state: &ContainerState) -> Option<i32> {
    match state {
        ContainerState::Exited { exit_code, .. } => Some(*exit_code),
        _ => None,
    }
}

fn waiting(reason: &str, message: Option<String>) -> ApiState {
    ApiState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..Default::default()
    }
}

/// The next container exit from the runtime's stream; never resolves without one.
async fn next_exit(
    exits: &mut Option<broadcast::Receiver<ContainerExit>>,
) -> Result<ContainerExit, RecvError> {
    match exits {
        Some(exits) => exits.recv().await,
        None => std::future::pending().await,
    }
}

/// The pull policy of a container: as written, else `Always` for `:latest` or untagged images,
/// else `IfNotPresent`.
pub fn pull_policy(container: &Container) -> PullPolicy {
    if let Some(policy) = container
        .image_pull_policy
        .as_deref()
        .and_then(PullPolicy::from_api)
    {
        return policy;
    }
    let image = container.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        PullPolicy::IfNotPresent
    } else if !last.contains(':') || last.ends_with(":latest") {
        PullPolicy::Always
    } else {
        PullPolicy::IfNotPresent
    }
}

/// The pod's init and app containers, borrowed.
fn spec_containers(pod: &Pod) -> (&[Container], &[Container]) {
    match pod.spec.as_ref() {
        Some(spec) => (
            spec.init_containers.as_deref().unwrap_or_default(),
            &spec.containers,
        ),
        None => (&[], &[]),
    }
}

impl PodWorker {
    /// A worker for `pod`, adopting the containers recovered from the runtime for it.
    pub fn new(ctx: Arc<PodContext>, pod: Pod, recovered: Vec<ContainerSummary>) -> Self {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.clone());
        let mut worker = Self {
            ctx,
            pod: Arc::new(pod),
            uid,
            network: None,
            ipc: None,
            tracks: BTreeMap::new(),
            start_time,
            last_posted: None,
            volume_dirs: None,
            volumes_refreshed: None,
            volumes_digest: None,
            files_written_for: None,
            pod_message: None,
            terminal: false,
            torn_down: false,
            tokens: Default::default(),
            posted_count: 0,
            published: None,
        };
        worker.adopt(recovered);
        worker
    }

    /// Takes over containers that survived a kubelet restart: the newest instance of each
    /// container becomes current; the restart count comes from its label.
    fn adopt(&mut self, recovered: Vec<ContainerSummary>) {
        let mut by_name: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
        for summary in recovered {
            if let Some(name) = summary.container_name() {
                by_name.entry(name.to_string()).or_default().push(summary);
            }
        }
        let now = Instant::now();
        for (name, mut instances) in by_name {
            instances.sort_by_key(|s| {
                (
                    s.labels
                        .get(LABEL_RESTART_COUNT)
                        .and_then(|c| c.parse::<i32>().ok())
                        .unwrap_or(0),
                    s.created_at,
                )
            });
            let Some(newest) = instances.pop() else {
                continue;
            };
            let spec = self.container_spec(&name);
            let track = self.tracks.entry(name.clone()).or_default();
            track.restart_count = newest
                .labels
                .get(LABEL_RESTART_COUNT)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            if let Some(previous) = instances.last() {
                track.last_terminated = terminated_of(&previous.id, &previous.state);
            }
            let running = running_state(&newest.state);
            track.current = Some(Instance {
                id: newest.id.clone(),
                probes: spec
                    .as_ref()
                    .map(|c| ContainerProbes::new(c, now))
                    .unwrap_or_default(),
                running_since: running.then_some(now),
                exited_seen: (!running).then_some(now),
                state: newest.state,
            });
            tracing::info!(pod = %self.key(), container = %name, id = %newest.id, "adopted existing container");
        }
    }

    /// Records an event about the pod (or one of its containers).
    fn event(&self, container: Option<&str>, warning: bool, reason: &str, message: String) {
        self.ctx.api.event(PodEvent::new(
            &self.pod, container, warning, reason, message,
        ));
    }

    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.pod.metadata.namespace.as_deref().unwrap_or_default(),
            self.pod.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn namespace(&self) -> String {
        self.pod.metadata.namespace.clone().unwrap_or_default()
    }

    fn name(&self) -> String {
        self.pod.metadata.name.clone().unwrap_or_default()
    }

    fn host_network(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false)
    }

    fn host_ipc(&self) -> bool {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.host_ipc)
            .unwrap_or(false)
    }

    /// The pod as upstream names it in messages: `name_namespace(uid)`.
    fn pod_ref(&self) -> String {
        format!("{}_{}({})", self.name(), self.namespace(), self.uid)
    }

    fn restart_policy(&self) -> String {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into())
    }

    fn init_specs(&self) -> Vec<Container> {
        spec_containers(&self.pod).0.to_vec()
    }

    fn app_specs(&self) -> Vec<Container> {
        spec_containers(&self.pod).1.to_vec()
    }

    fn container_spec(&self, name: &str) -> Option<Container> {
        self.init_specs()
            .into_iter()
            .chain(self.app_specs())
            .find(|c| c.name == name)
    }

    fn pod_ip(&self) -> Option<IpAddr> {
        if self.host_network() {
            Some(self.ctx.settings.node_ip)
        } else {
            self.network.as_ref().map(|n| n.ip)
        }
    }

    /// Whether `id` is the current instance of one of this pod's containers.
    fn owns_container(&self, id: &str) -> bool {
        self.tracks
            .values()
            .any(|t| t.current.as_ref().is_some_and(|i| i.id == id))
    }

    /// Runs the worker until the pod is finished and gone. It syncs when its resync time
    /// comes, when the pod changes, and at once when one of its containers exits (if the
    /// runtime reports exits).
    pub async fn run(mut self, mut rx: Mailbox) {
        let mut exits = self.ctx.runtime.exits();
        let mut next_sync = Instant::now();
        loop {
            let mut removed = None;
            loop {
                tokio::select! {
                    message = rx.next() => {
                        match message {
                            Some(WorkerMessage::Update(pod)) => self.update_pod(*pod),
                            Some(WorkerMessage::Removed) | None => removed = Some(REMOVED_GRACE),
                            Some(WorkerMessage::Stop(grace)) => removed = Some(grace),
                        }
                        break;
                    }
                    _ = tokio::time::sleep_until(next_sync) => break,
                    exit = next_exit(&mut exits) => match exit {
                        Ok(exit) if self.owns_container(&exit.id) => break,
                        // Another pod's container: keep waiting.
                        Ok(_) => {}
                        // Missed some: one of them may be ours.
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => exits = None,
                    },
                }
            }
            while let Ok(message) = rx.try_recv() {
                match message {
                    WorkerMessage::Update(pod) => self.update_pod(*pod),
                    WorkerMessage::Removed => removed = Some(REMOVED_GRACE),
                    WorkerMessage::Stop(grace) => removed = Some(grace),
                }
            }
            if let Some(grace) = removed {
                Box::pin(self.cleanup(grace)).await;
                break;
            }
            // Boxed: the parked worker holds only the select above, not the largest state of a
            // sync (thousands of workers wait per node).
            match Box::pin(self.sync()).await {
                SyncOutcome::Continue(next) => next_sync = Instant::now() + next,
                SyncOutcome::Done => break,
            }
        }
        self.ctx.store.remove(&self.uid);
        tracing::info!(pod = %self.key(), uid = %self.uid, "pod worker finished");
    }

    /// Rewrites configMap, secret and projected volumes from the current API objects, at most
    /// every [`VOLUME_REFRESH`]; failures are logged and retried on the next round.
    async fn refresh_volumes(&mut self) {
        if !has_file_volumes(&self.pod)
            || self
                .volumes_refreshed
                .is_some_and(|at| at.elapsed() < VOLUME_REFRESH)
        {
            return;
        }
        self.volumes_refreshed = Some(Instant::now());
        let Some(dirs) = self.volume_dirs.clone() else {
            return;
        };
        let fetched = match self.fetch_objects(crate::pod::objects::Read::Refresh).await {
            Ok(fetched) => fetched,
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "reading ConfigMaps or Secrets failed; will retry");
                return;
            }
        };
        match refresh_file_volumes(
            &self.pod,
            &dirs,
            &fetched,
            &self.fields(),
            &mut self.volumes_digest,
        ) {
            Ok(0) => {}
            Ok(changed) => {
                tracing::info!(pod = %self.key(), changed, "volumes updated from their ConfigMaps and Secrets");
                self.apply_fs_group(&dirs);
            }
            Err(error) => {
                tracing::warn!(pod = %self.key(), %error, "refreshing volumes failed; will retry")
            }
        }
    }

    /// Takes the pod's latest version from the API. When another writer changed a condition
    /// after our last post (the node lifecycle controller marks the pods of a node it lost
    /// NotReady), the next sync posts the status again from the API's conditions, as
    /// upstream's status manager reconciles a status that differs from its own.
    pub fn update_pod(&mut self, pod: Pod) {
        if self
            .last_posted
            .as_deref()
            .is_some_and(|posted| report::overridden(posted, pod.status.as_ref()))
        {
            tracing::info!(pod = %self.key(), "pod status changed by another writer; posting ours again");
            self.last_posted = None;
        }
        self.pod = Arc::new(pod);
    }

    /// One sync; see the module docs.
    pub async fn sync(&mut self) -> SyncOutcome {
        if self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate_and_delete().await;
        }
        if self.start_time.is_none() {
            self.start_time = Some(Time(jiff::Timestamp::now()));
        }
        self.refresh_states().await;
        let mut next = jittered(self.ctx.resync);
        if !self.terminal {
            if let Some(wait) = self.sync_containers().await {
                next = next.min(wait);
            }
        }
        self.run_probes().await;
        let status = self.compute_status();
        let phase = status.phase.clone().unwrap_or_default();
        self.post_status(status).await;
        if (phase == "Succeeded" || phase == "Failed") && !self.terminal {
            tracing::info!(pod = %self.key(), %phase, "pod reached a terminal phase");
            self.terminal = true;
        }
        if self.terminal && !self.torn_down {
            self.stop_all(Duration::from_secs(0)).await;
            self.teardown_network().await;
        }
        if let Some(due) = self.next_probe_due() {
            next = next.min(due.saturating_duration_since(Instant::now()));
        }
        self.publish();
        SyncOutcome::Continue(next.max(Duration::from_millis(50)))
    }

    fn publish(&mut self) {
        let containers: BTreeMap<String, String> = self
            .tracks
            .iter()
            .filter_map(|(name, t)| t.current.as_ref().map(|i| (name.clone(), i.id.clone())))
            .collect();
        let unchanged = self.published.as_ref().is_some_and(|p| {
            p.resource_version == self.pod.metadata.resource_version
                && p.posted_count == self.posted_count
                && p.containers == containers
        });
        if unchanged {
            return;
        }
        self.published = Some(Published {
            resource_version: self.pod.metadata.resource_version.clone(),
            posted_count: self.posted_count,
            containers: containers.clone(),
        });
        self.ctx.store.upsert_shared(
            &self.uid,
            self.pod.clone(),
            self.last_posted.clone(),
            containers,
        );
    }

    async fn refresh_states(&mut self) {
        let runtime = self.ctx.runtime.clone();
        for (name, track) in self.tracks.iter_mut() {
            let Some(instance) = track.current.as_mut() else {
                continue;
            };
            match runtime.container_status(&instance.id).await {
                Ok(state) => {
                    let now = Instant::now();
                    if running_state(&state) && instance.running_since.is_none() {
                        instance.running_since = Some(now);
                    }
                    if exit_code(&state).is_some() && instance.exited_seen.is_none() {
                        instance.exited_seen = Some(now);
                        tracing::info!(container = %name, id = %instance.id, exit_code = ?exit_code(&state), "container exited");
                    }
                    instance.state = state;
                }
                Err(error) if error.is_not_found() => {
                    tracing::warn!(container = %name, id = %instance.id, "container vanished from the runtime");
                    track.current = None;
                }
                Err(error) => {
                    tracing::warn!(container = %name, %error, "reading container status failed");
                }
            }
        }
    }

    /// Network, files, volumes, then containers. Returns an earlier resync time if one is due.
    async fn sync_containers(&mut self) -> Option<Duration> {
        if !self.host_network() && self.network.is_none() {
            if !self.ctx.network.ready() {
                return Some(RESYNC);
            }
            let request = PodNetworkRequest {
                uid: self.uid.clone(),
                namespace: self.namespace(),
                name: self.name(),
            };
            match self.ctx.network.setup_pod(&request).await {
                Ok(status) => {
                    self.network = Some(status);
                    self.pod_message = None;
                }
                Err(error) => {
                    tracing::warn!(pod = %self.key(), %error, "pod network set-up failed; will retry");
                    self.event(
                        None,
                        true,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {error}"),
                    );
                    return Some(Duration::from_secs(2));
                }
            }
        }
        if !self.host_ipc() && self.ipc.is_none() {
            match self.ctx.network.setup_ipc(&self.uid).await {
                Ok(ipc) => self.ipc = Some(ipc),
                Err(error) => {
                    tracing::warn!(pod = %self.key(), %error, "pod IPC namespace set-up failed; will retry");
                    self.event(
                        None,
                        true,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {error}"),
                    );
                    return Some(Duration::from_secs(2));
                }
            }
        }
        let pod_ip = self.pod_ip();
        if self.files_written_for != Some(pod_ip) {
            if let Err(error) = self.write_pod_files(pod_ip) {
                tracing::warn!(pod = %self.key(), %error, "writing pod files failed; will retry");
                return Some(Duration::from_secs(2));
            }
            self.files_written_for = Some(pod_ip);
        }
        // ConfigMaps, Secrets and Services are read only when something needs them (volume
        // set-up, a container start), once per sync.
        let mut sources: Option<PodSources> = None;
        if self.volume_dirs.is_none() {
            let sources = match self.sources_once(&mut sources).await {
                Some(sources) => sources,
                None => return Some(Duration::from_secs(2)),
            };
            let pod_dir = self.ctx.settings.pod_dir(&self.uid);
            let mounter = self.ctx.mounter.as_ref();
            match prepare_volumes(&self.pod, &pod_dir, &sources, &self.fields(), mounter) {
                Ok(dirs) => {
                    self.apply_fs_group(&dirs);
                    self.volume_dirs = Some(dirs);
                }
                Err(error) => {
                    tracing::warn!(pod = %self.key(), %error, "volume set-up failed; will retry");
                    self.pod_message = Some(format!("MountVolume.SetUp failed: {error}"));
                    self.event(
                        None,
                        true,
                        "FailedMount",
                        format!("MountVolume.SetUp failed: {error}"),
                    );
                    return Some(Duration::from_secs(2));
                }
            }
            self.pod_message = None;
            self.volumes_refreshed = Some(Instant::now());
        } else {
            self.refresh_volumes().await;
        }
        if let Some(retry) = self.sync_service_account_tokens().await {
            return Some(retry);
        }
        let mut next: Option<Duration> = None;
        let mut merge = |d: Option<Duration>| {
            if let Some(d) = d {
                next = Some(next.map_or(d, |n: Duration| n.min(d)));
            }
        };
        // Init containers, in order: each must exit 0 before the next starts.
        let restart_policy = self.restart_policy();
        let mut initialized = true;
        // The pod is shared: iterating its containers through this handle copies none of them.
        let pod = Arc::clone(&self.pod);
        let (inits, apps) = spec_containers(&pod);
        for container in inits {
            let state = self
                .tracks
                .get(&container.name)
                .and_then(|t| t.current.as_ref())
                .map(|i| i.state.clone());
            match state {
                Some(ContainerState::Exited { exit_code: 0, .. }) => continue,
                Some(ContainerState::Exited { .. }) => {
                    initialized = false;
                    if restart_policy != "Never" {
                        merge(self.restart_with_backoff(container, &mut sources).await);
                    }
                    break;
                }
                Some(ContainerState::Running { .. }) => {
                    initialized = false;
                    break;
                }
                Some(ContainerState::Created | ContainerState::Unknown) => {
                    initialized = false;
                    self.drop_stuck(&container.name).await;
                    merge(self.start_or_retry(container, &mut sources).await);
                    break;
                }
                None => {
                    initialized = false;
                    merge(self.start_or_retry(container, &mut sources).await);
                    break;
                }
            }
        }
        if !initialized {
            return next;
        }
        for container in apps {
            let (state, liveness_failed) = match self
                .tracks
                .get(&container.name)
                .and_then(|t| t.current.as_ref())
            {
                Some(instance) => (
                    Some(instance.state.clone()),
                    running_state(&instance.state) && instance.probes.liveness_failed(),
                ),
                None => (None, false),
            };
            match state {
                None => merge(self.start_or_retry(container, &mut sources).await),
                Some(ContainerState::Exited { exit_code, .. }) => {
                    let restart = match restart_policy.as_str() {
                        "Never" => false,
                        "OnFailure" => exit_code != 0,
                        _ => true,
                    };
                    if restart {
                        merge(self.restart_with_backoff(container, &mut sources).await);
                    }
                }
                Some(ContainerState::Running { .. }) if liveness_failed => {
                    tracing::info!(pod = %self.key(), container = %container.name, "liveness probe failed; restarting");
                    self.event(
                        Some(&container.name),
                        false,
                        "Killing",
                        format!(
                            "Container {} failed liveness probe, will be restarted",
                            container.name
                        ),
                    );
                    self.kill_container(&container.name).await;
                }
                Some(ContainerState::Running { .. }) => {}
                Some(ContainerState::Created | ContainerState::Unknown) => {
                    self.drop_stuck(&container.name).await;
                    merge(self.start_or_retry(container, &mut sources).await);
                }
            }
        }
        next
    }

    /// Removes a container instance that never started (e.g. the kubelet died between create
    /// and start), so it is created afresh.
    async fn drop_stuck(&mut self, name: &str) {
        let Some(instance) = self.tracks.get_mut(name).and_then(|t| t.current.take()) else {
            return;
        };
        tracing::info!(container = %name, id = %instance.id, "replacing a container that never started");
        if let Err(error) = self.ctx.runtime.remove_container(&instance.id).await {
            tracing::warn!(container = %name, %error, "removing a container that never started failed");
        }
    }

    /// Gives the pod's volumes the group of its `fsGroup` (logged on failure).
    fn apply_fs_group(&self, dirs: &BTreeMap<String, PathBuf>) {
        if let Err(error) = security::apply_fs_group(&self.pod, dirs) {
            tracing::warn!(pod = %self.key(), %error, "applying fsGroup to volumes failed");
        }
    }

    async fn kill_container(&mut self, name: &str) {
        let grace = self.grace_period();
        let runtime = self.ctx.runtime.clone();
        let running = self
            .tracks
            .get(name)
            .and_then(|t| t.current.as_ref())
            .filter(|i| running_state(&i.state))
            .map(|i| i.id.clone());
        if let Some(id) = running {
            self.stop_one(name, &id, grace).await;
        }
        if let Some(instance) = self.tracks.get_mut(name).and_then(|t| t.current.as_mut()) {
            if let Ok(state) = runtime.container_status(&instance.id).await {
                instance.state = state;
                instance.exited_seen = Some(Instant::now());
            }
        }
    }

    /// Restarts an exited container unless it is in back-off; returns when to look again.
    async fn restart_with_backoff(
        &mut self,
        container: &Container,
        sources: &mut Option<PodSources>,
    ) -> Option<Duration> {
        let now = Instant::now();
        let pod_ref = format!("{}_{}({})", self.name(), self.namespace(), self.uid);
        let track = self.tracks.entry(container.name.clone()).or_default();
        let Some(instance) = track.current.as_ref() else {
            return self.start_or_retry(container, sources).await;
        };
        // A container that ran long enough earns a fresh back-off.
        if let (Some(since), Some(exited)) = (instance.running_since, instance.exited_seen) {
            if exited.saturating_duration_since(since) > MAX_BACKOFF * 2 {
                track.backoff = None;
            }
        }
        if let Some(backoff) = track.backoff {
            let until = instance.exited_seen.unwrap_or(now) + backoff;
            if now < until {
                let entering = track
                    .waiting
                    .as_ref()
                    .is_none_or(|(reason, _)| reason != "CrashLoopBackOff");
                track.waiting = Some((
                    "CrashLoopBackOff".into(),
                    Some(format!(
                        "back-off {}s restarting failed container={} pod={pod_ref}",
                        backoff.as_secs(),
                        container.name
                    )),
                ));
                if entering {
                    self.event(
                        Some(&container.name),
                        true,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {pod_ref}",
                            container.name
                        ),
                    );
                }
                return Some(until - now);
            }
        }
        track.backoff = Some(match track.backoff {
            None => INITIAL_BACKOFF,
            Some(d) => (d * 2).min(MAX_BACKOFF),
        });
        let old = track.current.take();
        if let Some(old) = old {
            track.last_terminated = terminated_of(&old.id, &old.state);
            track.restart_count += 1;
            if let Err(error) = self.ctx.runtime.remove_container(&old.id).await {
                tracing::warn!(id = %old.id, %error, "removing the exited container failed");
            }
        }
        self.start_or_retry(container, sources).await
    }

    /// Starts a container that has no current instance (first start, or a restart), unless an
    /// earlier failure asked to wait.
    async fn start_or_retry(
        &mut self,
        container: &Container,
        sources: &mut Option<PodSources>,
    ) -> Option<Duration> {
        let now = Instant::now();
        let track = self.tracks.entry(container.name.clone()).or_default();
        if let Some(at) = track.retry_at {
            if now < at {
                if track
                    .waiting
                    .as_ref()
                    .is_some_and(|(reason, _)| reason == "ErrImagePull")
                {
                    let image = container.image.clone().unwrap_or_default();
                    track.waiting = Some((
                        "ImagePullBackOff".into(),
                        Some(format!("Back-off pulling image \"{image}\"")),
                    ));
                    self.event(
                        Some(&container.name),
                        false,
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    );
                    self.event(
                        Some(&container.name),
                        true,
                        "Failed",
                        "Error: ImagePullBackOff".to_string(),
                    );
                }
                return Some(at - now);
            }
        }
        let Some(fetched) = self.sources_once(sources).await else {
            return Some(Duration::from_secs(2));
        };
        match self.start_container(container, &fetched).await {
            Ok(()) => {
                let track = self.tracks.entry(container.name.clone()).or_default();
                track.waiting = None;
                track.retry_at = None;
                track.image_failures = 0;
                None
            }
            Err((reason, message)) => {
                tracing::warn!(pod = %self.key(), container = %container.name, %reason, %message, "starting container failed");
                let event_message = if reason == "ErrImagePull" || reason == "ErrImageNeverPull" {
                    message.clone()
                } else {
                    format!("Error: {message}")
                };
                let event_reason = if reason == "ErrImageNeverPull" {
                    "ErrImageNeverPull"
                } else {
                    "Failed"
                };
                // A failed postStart hook has had its own events.
                if reason != "PostStartHookError" {
                    self.event(Some(&container.name), true, event_reason, event_message);
                }
                if reason == "ErrImagePull" {
                    self.event(
                        Some(&container.name),
                        true,
                        "Failed",
                        "Error: ErrImagePull".to_string(),
                    );
                }
                let track = self.tracks.entry(container.name.clone()).or_default();
                let delay = if reason == "ErrImagePull" {
                    track.image_failures += 1;
                    let shift = track.image_failures.saturating_sub(1).min(5);
                    (INITIAL_BACKOFF * (1 << shift)).min(MAX_BACKOFF)
                } else {
                    Duration::from_secs(2)
                };
                // A failed pull shows as ImagePullBackOff from the next sync on: make it soon.
                let next = if reason == "ErrImagePull" {
                    delay.min(Duration::from_secs(1))
                } else {
                    delay
                };
                track.waiting = Some((reason, Some(message)));
                track.retry_at = Some(now + delay);
                Some(next)
            }
        }
    }
}

mod hooks;
mod image;
mod projected;
mod report;
mod security;
mod start;
mod teardown;

#[cfg(test)]
mod tests;
