//! The pod manager: watches the pods bound to this node (`spec.nodeName=<node>` field
//! selector), runs one [`PodWorker`] per pod and hands it every new version, tells workers
//! when their pod disappears, and removes orphans (containers and `kube-*` network namespaces
//! of pods that no longer exist).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::worker::{PodWorker, WorkerMessage};
use super::PodContext;
use crate::network::netns_name;
use crate::runtime::ContainerSummary;

/// How often orphans are collected.
pub const GC_PERIOD: Duration = Duration::from_secs(60);

struct WorkerHandle {
    tx: mpsc::UnboundedSender<WorkerMessage>,
    task: JoinHandle<()>,
}

impl Drop for PodManager {
    /// Workers die with their manager (an in-process kubelet that is stopped leaves nothing
    /// running; the containers themselves keep running, as upstream).
    fn drop(&mut self) {
        for handle in self.workers.values() {
            handle.task.abort();
        }
    }
}

/// Starts, feeds and stops pod workers.
pub struct PodManager {
    ctx: Arc<PodContext>,
    workers: HashMap<String, WorkerHandle>,
    recovered: HashMap<String, Vec<ContainerSummary>>,
    listing: Option<BTreeSet<String>>,
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
            recovered,
            listing: None,
        }
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
        if let Some(listing) = self.listing.as_mut() {
            listing.insert(uid.clone());
        }
        if let Some(handle) = self.workers.get(&uid) {
            if !handle.task.is_finished() {
                if handle
                    .tx
                    .send(WorkerMessage::Update(Box::new(pod.clone())))
                    .is_ok()
                {
                    return;
                }
            } else if pod.metadata.deletion_timestamp.is_some() {
                // The worker finished this pod's deletion; this is the API catching up.
                return;
            }
        }
        let recovered = self.recovered.remove(&uid).unwrap_or_default();
        let (tx, rx) = mpsc::unbounded_channel();
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
        if let Some(handle) = self.workers.remove(uid) {
            if handle.tx.send(WorkerMessage::Removed).is_err() {
                tracing::debug!(%uid, "worker already finished");
            }
        }
    }

    /// A relist starts: pods not seen before [`finish_listing`](Self::finish_listing) are gone.
    pub fn start_listing(&mut self) {
        self.listing = Some(BTreeSet::new());
    }

    /// A relist ended: stops workers of pods that were not listed, then collects orphans.
    pub async fn finish_listing(&mut self) {
        let Some(seen) = self.listing.take() else {
            return;
        };
        let gone: Vec<String> = self
            .workers
            .keys()
            .filter(|uid| !seen.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid).await;
        }
        self.collect_orphans().await;
    }

    /// Removes containers and network namespaces that belong to no known pod.
    pub async fn collect_orphans(&mut self) {
        self.workers.retain(|_, w| !w.task.is_finished());
        let live: BTreeSet<String> = self.workers.keys().cloned().collect();
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
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    self.remove(uid).await;
                }
            }
        }
    }

    /// Watches this node's pods until the stream ends (it does not: errors are retried with
    /// back-off), collecting orphans every [`GC_PERIOD`].
    pub async fn run(mut self, client: Client, node_name: String) {
        let api: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut gc = tokio::time::interval(GC_PERIOD);
        gc.tick().await;
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    Some(Ok(event)) => self.handle(event).await,
                    Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                    None => break,
                },
                _ = gc.tick() => self.collect_orphans().await,
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
        wait_until("web cleaned up", || {
            runtime.containers().is_empty() && network.namespaces().is_empty()
        })
        .await;
        wait_until("store emptied", || ctx.store.pods().is_empty()).await;
        assert!(network.ready());
    }
}
