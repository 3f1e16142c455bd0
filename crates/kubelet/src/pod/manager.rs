//! The pod manager: watches the pods bound to this node (`spec.nodeName=<node>` field
//! selector), runs one [`PodWorker`] per pod and hands it every new version, tells workers
//! when their pod disappears, and removes orphans (containers and `kube-*` network namespaces
//! of pods that no longer exist).
//!
//! It also runs the static pods of `--pod-manifest-path` (rescanned every
//! `--file-check-frequency`; see [`crate::node::static_pods`]) and keeps their mirror pods in
//! the API (mirror pods never get a worker), and carries out evictions the eviction manager
//! asks for ([`ManagerCommand::Evict`]): the pod's worker stops everything, then the pod's
//! final `Failed`/`Evicted` status is posted, and the pod is not started again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher::{watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::api::PodEvent;
use super::claims::{claims_of, with_resolved_claims, ClaimPath, ClaimResolver, KubeClaimResolver};
use super::worker::{mailbox, MailboxSender, PodWorker, WorkerMessage};
use super::PodContext;
use crate::network::netns_name;
use crate::node::static_pods::{
    is_mirror, mirror_matches, read_manifests, MirrorClient, StaticUids,
};
use crate::runtime::ContainerSummary;

/// How often orphans are collected.
pub const GC_PERIOD: Duration = Duration::from_secs(60);

struct WorkerHandle {
    tx: MailboxSender,
    task: JoinHandle<()>,
}

impl Drop for PodManager {
    /// Workers die with their manager (an in-process kubelet that is stopped leaves nothing
    /// running; the containers themselves keep running, as upstream).
    fn drop(&mut self) {
        for handle in self.workers.values().chain(self.stopping.values()) {
            handle.task.abort();
        }
    }
}

/// Where static pods come from and how their mirrors are written.
pub struct StaticPodConfig {
    /// `--pod-manifest-path`.
    pub dir: PathBuf,
    /// `--file-check-frequency`.
    pub period: Duration,
    /// Creates and deletes mirror pods.
    pub mirrors: Arc<dyn MirrorClient>,
    /// The static pod uids, shared with [`crate::node::static_pods::StaticPodApi`].
    pub uids: StaticUids,
}

struct StaticState {
    config: StaticPodConfig,
    /// Static pods by uid, as last handed to their workers.
    pods: BTreeMap<String, Pod>,
    /// Static pods whose manifest is gone (their workers are stopping them).
    terminating: BTreeSet<String>,
}

/// What other parts of the kubelet ask of the manager.
#[derive(Debug)]
pub enum ManagerCommand {
    /// Evict pod `uid`: stop it for good, then post `status` (phase `Failed`, reason
    /// `Evicted`). `done` fires once the status is posted (or the pod is unknown).
    Evict {
        /// The pod.
        uid: String,
        /// Its final status.
        status: Box<PodStatus>,
        /// The event message.
        message: String,
        /// How long the containers get to stop (`None`: the immediate stop of a removed pod).
        grace_period: Option<Duration>,
        /// Signalled when finished.
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
}

/// Starts, feeds and stops pod workers.
pub struct PodManager {
    ctx: Arc<PodContext>,
    workers: HashMap<String, WorkerHandle>,
    /// Workers of pods deleted from the API or evicted that are still stopping their
    /// containers: their pods stay live for orphan collection until the workers finish
    /// (otherwise a collection during the grace period would kill the containers first).
    stopping: HashMap<String, WorkerHandle>,
    recovered: HashMap<String, Vec<ContainerSummary>>,
    listing: Option<BTreeSet<String>>,
    statics: Option<StaticState>,
    /// Mirror pods in the API by `namespace/name`.
    mirrors: BTreeMap<String, Pod>,
    mirror_listing: Option<BTreeSet<String>>,
    mirrors_listed: bool,
    /// Pods this kubelet evicted: never started again.
    evicted: BTreeSet<String>,
    commands: Option<mpsc::UnboundedReceiver<ManagerCommand>>,
    /// Resolves persistentVolumeClaim volumes (set from the client in [`run`](Self::run)).
    claims: Option<Arc<dyn ClaimResolver>>,
    /// Host paths of bound claims, by pod uid and volume name.
    resolved: HashMap<String, BTreeMap<String, ClaimPath>>,
    /// Pods (as in the API) with claims not bound yet, retried every [`CLAIM_RETRY`].
    pending_claims: HashMap<String, Pod>,
}

/// How often claims that were not bound are looked up again.
pub const CLAIM_RETRY: Duration = Duration::from_secs(2);

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn evicted_in_api(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
    })
}

impl PodManager {
    /// A manager; reads the runtime's containers so workers can adopt them.
    pub async fn new(ctx: Arc<PodContext>) -> Self {
        let mut recovered: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
        match ctx.runtime.list_containers().await {
            Ok(list) => {
                for summary in list {
                    if let Some(uid) = summary.pod_uid() {
                        recovered.entry(uid.to_string()).or_default().push(summary);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "listing containers for recovery failed"),
        }
        if !recovered.is_empty() {
            tracing::info!(pods = recovered.len(), "found containers of earlier runs");
        }
        Self {
            ctx,
            workers: HashMap::new(),
            stopping: HashMap::new(),
            recovered,
            listing: None,
            statics: None,
            mirrors: BTreeMap::new(),
            mirror_listing: None,
            mirrors_listed: false,
            evicted: BTreeSet::new(),
            commands: None,
            claims: None,
            resolved: HashMap::new(),
            pending_claims: HashMap::new(),
        }
    }

    /// Resolves persistentVolumeClaim volumes with `resolver` (default: the API).
    pub fn with_claims(mut self, resolver: Arc<dyn ClaimResolver>) -> Self {
        self.claims = Some(resolver);
        self
    }

    /// `pod` with its bound claims turned into host paths (see [`crate::pod::claims`]);
    /// remembers pods whose claims are not bound yet.
    async fn resolve_claims(&mut self, uid: &str, pod: Pod) -> Pod {
        let claims = claims_of(&pod);
        if claims.is_empty() || pod.metadata.deletion_timestamp.is_some() {
            self.pending_claims.remove(uid);
            return pod;
        }
        let Some(resolver) = self.claims.clone() else {
            return pod;
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let resolved = self.resolved.entry(uid.to_string()).or_default();
        let mut pending = false;
        for (volume, claim) in claims {
            if resolved.contains_key(&volume) {
                continue;
            }
            match resolver.resolve(&namespace, &claim).await {
                Ok(path) => {
                    tracing::info!(pod = %key_of(&pod), %volume, %claim, path = %path.path, "claim resolved");
                    resolved.insert(volume, path);
                }
                Err(error) => {
                    tracing::debug!(pod = %key_of(&pod), %volume, %error, "claim not usable yet");
                    pending = true;
                }
            }
        }
        let rewritten = with_resolved_claims(&pod, resolved);
        if pending {
            self.pending_claims.insert(uid.to_string(), pod);
        } else {
            self.pending_claims.remove(uid);
        }
        rewritten
    }

    /// Looks up the claims that were not bound again; pods whose claims got bound are handed
    /// to their workers with the volumes resolved.
    pub async fn retry_claims(&mut self) {
        let pending: Vec<Pod> = self.pending_claims.values().cloned().collect();
        for pod in pending {
            self.upsert(pod).await;
        }
    }

    /// Runs the static pods of `config.dir` too.
    pub fn with_static_pods(mut self, config: StaticPodConfig) -> Self {
        self.statics = Some(StaticState {
            config,
            pods: BTreeMap::new(),
            terminating: BTreeSet::new(),
        });
        self
    }

    /// A channel to send [`ManagerCommand`]s to this manager (while it [`run`](Self::run)s).
    pub fn commands(&mut self) -> mpsc::UnboundedSender<ManagerCommand> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.commands = Some(rx);
        tx
    }

    /// Uids of the pods that have a live worker.
    pub fn pod_uids(&self) -> BTreeSet<String> {
        self.workers
            .iter()
            .filter(|(_, w)| !w.task.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// A new or changed pod.
    pub async fn upsert(&mut self, pod: Pod) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        if is_mirror(&pod) {
            let key = key_of(&pod);
            if let Some(listing) = self.mirror_listing.as_mut() {
                listing.insert(key.clone());
            }
            self.mirrors.insert(key, pod);
            self.sync_mirrors().await;
            return;
        }
        if let Some(listing) = self.listing.as_mut() {
            listing.insert(uid.clone());
        }
        let has_worker = self
            .workers
            .get(&uid)
            .is_some_and(|h| !h.task.is_finished());
        if !has_worker && (self.evicted.contains(&uid) || evicted_in_api(&pod)) {
            // An evicted pod stays Failed; once deleted in the API it is removed for good.
            if pod.metadata.deletion_timestamp.is_some() {
                let (namespace, name) = (
                    pod.metadata.namespace.clone().unwrap_or_default(),
                    pod.metadata.name.clone().unwrap_or_default(),
                );
                if let Err(error) = self.ctx.api.delete_pod(&namespace, &name, &uid).await {
                    tracing::warn!(pod = %key_of(&pod), %error, "deleting an evicted pod failed");
                }
            }
            return;
        }
        let mut pod = self.resolve_claims(&uid, pod).await;
        if let Some(handle) = self.workers.get(&uid) {
            if !handle.task.is_finished() {
                match handle
                    .tx
                    .unbounded_send(WorkerMessage::Update(Box::new(pod)))
                {
                    Ok(()) => return,
                    Err(error) => match error.into_inner() {
                        WorkerMessage::Update(returned) => pod = *returned,
                        _ => return,
                    },
                }
            } else if pod.metadata.deletion_timestamp.is_some() {
                // The worker finished this pod's deletion; this is the API catching up.
                return;
            }
        }
        let recovered = self.recovered.remove(&uid).unwrap_or_default();
        let (tx, rx) = mailbox();
        tracing::info!(
            pod = %format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or_default(), pod.metadata.name.as_deref().unwrap_or_default()),
            %uid,
            "starting pod worker"
        );
        let worker = PodWorker::new(self.ctx.clone(), pod, recovered);
        let task = tokio::spawn(worker.run(rx));
        self.workers.insert(uid, WorkerHandle { tx, task });
    }

    /// A pod deleted from the API (e.g. force-deleted): its worker stops everything.
    pub async fn remove(&mut self, uid: &str) {
        self.resolved.remove(uid);
        self.pending_claims.remove(uid);
        if let Some(handle) = self.workers.remove(uid) {
            if handle.tx.unbounded_send(WorkerMessage::Removed).is_err() {
                tracing::debug!(%uid, "worker already finished");
            }
            self.stopping.insert(uid.to_string(), handle);
        }
    }

    /// A relist starts: pods not seen before [`finish_listing`](Self::finish_listing) are gone.
    pub fn start_listing(&mut self) {
        self.listing = Some(BTreeSet::new());
        self.mirror_listing = Some(BTreeSet::new());
    }

    /// A relist ended: stops workers of pods that were not listed, then collects orphans.
    pub async fn finish_listing(&mut self) {
        let Some(seen) = self.listing.take() else {
            return;
        };
        if let Some(mirrors) = self.mirror_listing.take() {
            self.mirrors.retain(|key, _| mirrors.contains(key));
            self.mirrors_listed = true;
        }
        let statics: BTreeSet<String> = self
            .statics
            .as_ref()
            .map(|s| s.pods.keys().cloned().collect())
            .unwrap_or_default();
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|uid| !seen.contains(*uid) && !statics.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid).await;
        }
        self.evicted.retain(|uid| seen.contains(uid));
        self.collect_orphans().await;
        self.sync_mirrors().await;
    }

    /// Rescans `--pod-manifest-path`: starts new static pods, stops those whose manifest is
    /// gone (gracefully; their workers delete the mirrors), then brings mirrors up to date.
    pub async fn sync_static_pods(&mut self) {
        let Some(state) = self.statics.as_mut() else {
            return;
        };
        let dir = state.config.dir.clone();
        let node = self.ctx.settings.node_name.clone();
        let desired = match tokio::task::spawn_blocking(move || read_manifests(&dir, &node)).await {
            Ok(Ok(desired)) => desired,
            Ok(Err(error)) => {
                tracing::warn!(%error, "reading static pod manifests failed");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "reading static pod manifests failed");
                return;
            }
        };
        let mut changes = Vec::new();
        for (uid, pod) in &desired {
            if !state.pods.contains_key(uid) {
                tracing::info!(pod = %key_of(pod), %uid, "static pod added");
                state.config.uids.insert(uid);
                state.pods.insert(uid.clone(), pod.clone());
                changes.push(pod.clone());
            }
        }
        let removed: Vec<String> = state
            .pods
            .keys()
            .filter(|uid| !desired.contains_key(*uid) && !state.terminating.contains(*uid))
            .cloned()
            .collect();
        for uid in removed {
            let Some(pod) = state.pods.get_mut(&uid) else {
                continue;
            };
            tracing::info!(pod = %key_of(pod), %uid, "static pod manifest removed; stopping the pod");
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30);
            pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
            pod.metadata.deletion_grace_period_seconds = Some(grace);
            state.terminating.insert(uid.clone());
            changes.push(pod.clone());
        }
        for pod in changes {
            self.upsert(pod).await;
        }
        // Static pods whose workers finished are gone for good.
        let finished: Vec<String> = self
            .statics
            .as_ref()
            .map(|state| {
                state
                    .terminating
                    .iter()
                    .filter(|uid| self.workers.get(*uid).is_none_or(|h| h.task.is_finished()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(state) = self.statics.as_mut() {
            for uid in finished {
                state.pods.remove(&uid);
                state.terminating.remove(&uid);
                state.config.uids.remove(&uid);
            }
        }
        self.sync_mirrors().await;
    }

    /// Creates missing mirror pods, replaces outdated or deleted ones, and (once the API was
    /// listed) deletes mirrors that belong to no static pod.
    pub async fn sync_mirrors(&mut self) {
        let Some(state) = self.statics.as_ref() else {
            return;
        };
        let client = state.config.mirrors.clone();
        let mut wanted: BTreeMap<String, &Pod> = BTreeMap::new();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for (uid, pod) in &state.pods {
            keep.insert(key_of(pod));
            if !state.terminating.contains(uid) {
                wanted.insert(key_of(pod), pod);
            }
        }
        for (key, pod) in &wanted {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            if let Some(mirror) = self.mirrors.get(key) {
                if mirror_matches(mirror, pod) {
                    continue;
                }
                tracing::info!(pod = %key, "mirror pod outdated or deleted; replacing it");
                if let Err(error) = client
                    .delete(&namespace, &name, mirror.metadata.uid.as_deref())
                    .await
                {
                    tracing::warn!(%error, "deleting a mirror pod failed");
                    continue;
                }
            }
            if let Err(error) = client.create(pod).await {
                tracing::warn!(%error, "creating a mirror pod failed");
                continue;
            }
            // A new mirror starts without status: give it the pod's current one.
            let current = pod
                .metadata
                .uid
                .as_deref()
                .and_then(|uid| self.ctx.store.get(uid));
            if let Some(status) = current.as_ref().and_then(|e| e.pod.status.as_ref()) {
                if let Err(error) = self.ctx.api.update_status(pod, status).await {
                    tracing::warn!(%error, "posting the status of a new mirror pod failed");
                }
            }
        }
        if !self.mirrors_listed {
            return;
        }
        for (key, mirror) in &self.mirrors {
            if keep.contains(key) || mirror.metadata.deletion_timestamp.is_some() {
                continue;
            }
            tracing::info!(pod = %key, "deleting orphaned mirror pod");
            let namespace = mirror.metadata.namespace.clone().unwrap_or_default();
            let name = mirror.metadata.name.clone().unwrap_or_default();
            if let Err(error) = client
                .delete(&namespace, &name, mirror.metadata.uid.as_deref())
                .await
            {
                tracing::warn!(%error, "deleting an orphaned mirror pod failed");
            }
        }
    }

    /// Carries out one command.
    pub async fn command(&mut self, command: ManagerCommand) {
        match command {
            ManagerCommand::Evict {
                uid,
                status,
                message,
                grace_period,
                done,
            } => self.evict(uid, *status, message, grace_period, done).await,
        }
    }

    async fn evict(
        &mut self,
        uid: String,
        status: PodStatus,
        message: String,
        grace_period: Option<Duration>,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let entry = self.ctx.store.get(&uid).map(|e| e.pod);
        let (Some(pod), Some(handle)) = (entry, self.workers.remove(&uid)) else {
            if let Some(done) = done {
                if done.send(()).is_err() {
                    tracing::debug!(%uid, "eviction requester went away");
                }
            }
            return;
        };
        tracing::info!(pod = %key_of(&pod), %uid, %message, "evicting pod");
        self.evicted.insert(uid.clone());
        let stop = match grace_period {
            Some(grace) => WorkerMessage::Stop(grace),
            None => WorkerMessage::Removed,
        };
        let WorkerHandle { tx, task } = handle;
        if tx.unbounded_send(stop).is_err() {
            tracing::debug!(%uid, "worker already finished");
        }
        let api = self.ctx.api.clone();
        // Tracked as stopping until the worker has stopped the containers and the status is
        // posted.
        let after = tokio::spawn(async move {
            // The worker stops the containers first, so its last status cannot overwrite ours.
            if let Err(error) = task.await {
                tracing::warn!(%error, "pod worker ended abnormally");
            }
            api.event(PodEvent::new(&pod, None, true, "Evicted", message));
            for attempt in 0..5u64 {
                match api.update_status(&pod, &status).await {
                    Ok(()) => break,
                    Err(error) => {
                        tracing::warn!(pod = %key_of(&pod), %error, attempt, "posting the eviction status failed");
                        tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
                    }
                }
            }
            if let Some(done) = done {
                if done.send(()).is_err() {
                    tracing::debug!("eviction requester went away");
                }
            }
        });
        self.stopping.insert(uid, WorkerHandle { tx, task: after });
    }

    /// Removes containers and network namespaces that belong to no known pod.
    pub async fn collect_orphans(&mut self) {
        self.workers.retain(|_, w| !w.task.is_finished());
        self.stopping.retain(|_, w| !w.task.is_finished());
        let live: BTreeSet<String> = self
            .workers
            .keys()
            .chain(self.stopping.keys())
            .cloned()
            .collect();
        // Containers recovered for pods that never showed up are orphans too.
        self.recovered.clear();
        match self.ctx.runtime.list_containers().await {
            Ok(list) => {
                for summary in list {
                    let orphan = match summary.pod_uid() {
                        Some(uid) => !live.contains(uid),
                        None => false,
                    };
                    if orphan {
                        tracing::info!(id = %summary.id, pod_uid = ?summary.pod_uid(), "removing orphaned container");
                        if let Err(error) = self
                            .ctx
                            .runtime
                            .stop_container(&summary.id, Duration::from_secs(2))
                            .await
                        {
                            tracing::warn!(id = %summary.id, %error, "stopping orphan failed");
                        }
                        if let Err(error) = self.ctx.runtime.remove_container(&summary.id).await {
                            tracing::warn!(id = %summary.id, %error, "removing orphan failed");
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "listing containers for garbage collection failed")
            }
        }
        self.remove_orphaned_dirs(&live);
        let live_netns: BTreeSet<String> = live.iter().map(|uid| netns_name(uid)).collect();
        match self.ctx.network.list_netns().await {
            Ok(names) => {
                for name in names.into_iter().filter(|n| !live_netns.contains(n)) {
                    tracing::info!(netns = %name, "removing orphaned network namespace");
                    if let Err(error) = self.ctx.network.teardown(&name).await {
                        tracing::warn!(netns = %name, %error, "removing orphaned netns failed");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "listing network namespaces failed"),
        }
    }

    /// Removes `<root-dir>/pods/<uid>` and `<pod-logs-dir>/<ns>_<name>_<uid>` of pods that are gone.
    fn remove_orphaned_dirs(&self, live: &BTreeSet<String>) {
        let settings = &self.ctx.settings;
        let pods_dir = settings.root_dir.join("pods");
        for (dir, uid_of) in [
            (
                pods_dir,
                (|name: &str| Some(name.to_string())) as fn(&str) -> Option<String>,
            ),
            (settings.pod_logs_dir.clone(), |name: &str| {
                name.rsplit_once('_').map(|(_, uid)| uid.to_string())
            }),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(uid) = uid_of(&name) else {
                    continue;
                };
                if live.contains(&uid) || !entry.path().is_dir() {
                    continue;
                }
                tracing::info!(dir = %entry.path().display(), "removing directory of a pod that is gone");
                if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), %error, "removing orphaned pod directory failed");
                }
            }
        }
    }

    /// Feeds one watcher event.
    pub async fn handle(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.start_listing(),
            Event::InitApply(pod) | Event::Apply(pod) => self.upsert(pod).await,
            Event::InitDone => self.finish_listing().await,
            Event::Delete(pod) => {
                if is_mirror(&pod) {
                    let key = key_of(&pod);
                    if self
                        .mirrors
                        .get(&key)
                        .is_some_and(|m| m.metadata.uid == pod.metadata.uid)
                    {
                        self.mirrors.remove(&key);
                    }
                    self.sync_mirrors().await;
                } else if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.evicted.remove(uid);
                    self.remove(uid).await;
                }
            }
        }
    }

    /// Watches this node's pods until the stream ends (it does not: errors are retried with
    /// back-off), collecting orphans every [`GC_PERIOD`].
    pub async fn run(mut self, client: Client, node_name: String) {
        let api: Api<Pod> = Api::all(client.clone());
        let config =
            component_base::reflect::watch_config().fields(&format!("spec.nodeName={node_name}"));
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut gc = tokio::time::interval(GC_PERIOD);
        gc.tick().await;
        let static_period = self
            .statics
            .as_ref()
            .map(|s| s.config.period.max(Duration::from_millis(100)))
            .unwrap_or(Duration::from_secs(3600));
        let mut statics = tokio::time::interval(static_period);
        let mut commands = self.commands.take();
        if self.claims.is_none() {
            self.claims = Some(Arc::new(KubeClaimResolver::new(client.clone())));
        }
        let mut claims = tokio::time::interval(CLAIM_RETRY);
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(mut event)) => {
                        // Nothing here reads managedFields (status goes out as a merge patch).
                        component_base::trim::strip_managed_fields(&mut event);
                        self.handle(event).await
                    }
                    Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                    None => break,
                },
                _ = gc.tick() => self.collect_orphans().await,
                _ = statics.tick(), if self.statics.is_some() => self.sync_static_pods().await,
                _ = claims.tick(), if !self.pending_claims.is_empty() => self.retry_claims().await,
                command = async {
                    match commands.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match command {
                    Some(command) => self.command(command).await,
                    None => commands = None,
                },
            }
        }
    }

    /// The workers' join handles by pod uid (for tests that wait for a worker to end).
    pub fn finished(&self) -> BTreeMap<String, bool> {
        self.workers
            .iter()
            .map(|(uid, w)| (uid.clone(), w.task.is_finished()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::fake::FakeNetwork;
    use crate::network::Network;
    use crate::pod::api::FakePodApi;
    use crate::pod::files::DnsSettings;
    use crate::pod::{PodSettings, PodStore};
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::{ContainerConfig, ContainerRuntime, LABEL_POD_UID};
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use kube::api::ObjectMeta;

    fn pod(name: &str, uid: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox:1.35".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..200 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn relist_starts_workers_collects_orphans_and_delete_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Arc::new(FakeRuntime::new());
        runtime.add_image("busybox:1.35");
        // An orphan from an earlier run: a container and a netns of a pod that is gone.
        let orphan = runtime
            .create_container(&ContainerConfig {
                name: "old".into(),
                image: "busybox:1.35".into(),
                labels: [(LABEL_POD_UID.to_string(), "gone-uid".to_string())].into(),
                ..Default::default()
            })
            .await
            .expect("create");
        let network = Arc::new(FakeNetwork::ready_network());
        network.add_namespace(&netns_name("gone-uid"), "10.244.0.99".parse().expect("ip"));
        let ctx = Arc::new(PodContext {
            runtime: runtime.clone(),
            network: network.clone(),
            api: Arc::new(FakePodApi::new()),
            settings: PodSettings {
                node_name: "node-0".into(),
                node_ip: "192.0.2.2".parse().expect("ip"),
                root_dir: dir.path().join("root"),
                pod_logs_dir: dir.path().join("logs"),
                dns: DnsSettings {
                    cluster_dns: vec![],
                    cluster_domain: "cluster.local".into(),
                    host_resolv_conf: String::new(),
                },
            },
            store: PodStore::new(),
            mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
            resync: crate::pod::worker::RESYNC,
            objects: Default::default(),
        });
        let orphan_dir = dir.path().join("root/pods/gone-uid");
        let orphan_logs = dir.path().join("logs/default_old_gone-uid/c");
        std::fs::create_dir_all(&orphan_dir).expect("mkdir");
        std::fs::create_dir_all(&orphan_logs).expect("mkdir");
        let mut manager = PodManager::new(ctx.clone()).await;
        manager.handle(Event::Init).await;
        manager.handle(Event::InitApply(pod("web", "uid-1"))).await;
        manager.handle(Event::InitDone).await;

        assert!(
            runtime.container(&orphan).is_none(),
            "orphan container removed"
        );
        assert!(!network.namespaces().contains(&netns_name("gone-uid")));
        wait_until("web running", || {
            runtime.containers().values().any(|c| c.config.name == "c")
        })
        .await;
        assert_eq!(
            manager.pod_uids().into_iter().collect::<Vec<_>>(),
            vec!["uid-1"]
        );

        // A force delete: the pod vanishes from the API with its container still running.
        manager.handle(Event::Delete(pod("web", "uid-1"))).await;
        // An orphan collection while the worker is still stopping the pod (its task has not
        // run yet on this single-threaded runtime) leaves the containers to the worker, which
        // stops them with the pod's grace period.
        manager.collect_orphans().await;
        assert!(
            runtime.containers().values().any(|c| c.config.name == "c"),
            "the stopping pod's container is not collected as an orphan"
        );
        wait_until("web cleaned up", || {
            runtime.containers().is_empty() && network.namespaces().is_empty()
        })
        .await;
        wait_until("store emptied", || ctx.store.pods().is_empty()).await;
        assert!(network.ready());
    }

    struct FakeClaims(std::sync::Mutex<Option<String>>);

    #[async_trait::async_trait]
    impl ClaimResolver for FakeClaims {
        async fn resolve(
            &self,
            namespace: &str,
            claim: &str,
        ) -> Result<ClaimPath, crate::pod::claims::ClaimError> {
            match self.0.lock().expect("lock").clone() {
                Some(path) => Ok(ClaimPath { path, kind: None }),
                None => Err(crate::pod::claims::ClaimError::NotBound(format!(
                    "{namespace}/{claim}"
                ))),
            }
        }
    }

    #[tokio::test]
    async fn a_pending_claim_holds_the_pod_in_container_creating_until_it_is_bound() {
        use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Volume, VolumeMount};
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Arc::new(FakeRuntime::new());
        runtime.add_image("busybox:1.35");
        let api = Arc::new(FakePodApi::new());
        let ctx = Arc::new(PodContext {
            runtime: runtime.clone(),
            network: Arc::new(FakeNetwork::ready_network()),
            api: api.clone(),
            settings: PodSettings {
                node_name: "node-0".into(),
                node_ip: "192.0.2.2".parse().expect("ip"),
                root_dir: dir.path().join("root"),
                pod_logs_dir: dir.path().join("logs"),
                dns: DnsSettings {
                    cluster_dns: vec![],
                    cluster_domain: "cluster.local".into(),
                    host_resolv_conf: String::new(),
                },
            },
            store: PodStore::new(),
            mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
            resync: crate::pod::worker::RESYNC,
            objects: Default::default(),
        });
        let claims = Arc::new(FakeClaims(std::sync::Mutex::new(None)));
        let mut manager = PodManager::new(ctx).await.with_claims(claims.clone());
        let mut db = pod("db", "uid-db");
        if let Some(spec) = db.spec.as_mut() {
            spec.volumes = Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "data-claim".into(),
                    read_only: None,
                }),
                ..Default::default()
            }]);
            spec.containers[0].volume_mounts = Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/var/lib/db".into(),
                sub_path: Some("instance-1".into()),
                ..Default::default()
            }]);
        }
        manager.upsert(db).await;
        for _ in 0..300 {
            if api
                .events()
                .iter()
                .any(|(reason, _)| reason == "FailedMount")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let events = api.events();
        let (_, message) = events
            .iter()
            .find(|(reason, _)| reason == "FailedMount")
            .expect("a FailedMount event");
        assert!(
            message.contains("error processing PVC default/data-claim: PVC is not bound"),
            "{message}"
        );
        let waiting = api
            .last_status("db")
            .and_then(|s| s.container_statuses)
            .and_then(|c| c.first().cloned())
            .and_then(|c| c.state)
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason);
        assert_eq!(waiting.as_deref(), Some("ContainerCreating"));
        assert!(
            runtime.containers().is_empty(),
            "nothing starts without the volume"
        );

        // The claim gets bound to a local volume: the container starts with the volume's
        // directory (and its subPath) mounted.
        let volume_dir = dir.path().join("pv");
        *claims.0.lock().expect("lock") = Some(volume_dir.display().to_string());
        manager.retry_claims().await;
        wait_until("db running", || !runtime.containers().is_empty()).await;
        let container = runtime
            .containers()
            .into_values()
            .next()
            .expect("container");
        let mount = container
            .config
            .mounts
            .iter()
            .find(|m| m.container_path == "/var/lib/db")
            .expect("the claim is mounted");
        assert_eq!(mount.host_path, volume_dir.join("instance-1"));
        assert!(volume_dir.join("instance-1").is_dir());
    }
}
