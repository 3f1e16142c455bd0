//! The PersistentVolume binder (upstream `persistentvolume-binder`): binds PersistentVolumeClaims
//! to PersistentVolumes and reclaims volumes whose claim went away.
//!
//! A claim without `spec.volumeName` gets the best matching Available volume: same storage class,
//! every requested access mode, the label selector, the same volume mode and enough capacity;
//! among those the one with the fewest access modes, then the smallest. Binding writes both ways:
//! `pv.spec.claimRef`, `pvc.spec.volumeName`, the `pv.kubernetes.io/bind-completed` and
//! `pv.kubernetes.io/bound-by-controller` annotations, the Bound phases and the claim's capacity
//! and access modes. Volumes and claims bound by the user in advance (`claimRef` or
//! `volumeName` set) are honoured. When a bound claim is deleted its volume is Released; reclaim
//! policy `Delete` then deletes the PersistentVolume object (there is no provisioner plugin),
//! `Retain` leaves it Released, anything else marks it Failed. Claims are re-examined every
//! [`SYNC_PERIOD`] and whenever a volume changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::quantity::Quantity;
use api_types::selector::label_selector_matches;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::events::EventType;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::WorkQueue;
use crate::runner;

/// Set on claims (and volumes) whose binding the controller finished.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on the side of a binding the controller (not the user) wrote.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The deprecated storage class annotation, still honoured as upstream does.
pub const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// How often every claim and volume is synced again (`--pvclaimbinder-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

/// Why a claim or volume could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing a volume (spec, status or delete) failed.
    #[error("{action} persistentvolume {volume}: {source}")]
    Volume {
        /// What was being done.
        action: &'static str,
        /// The volume.
        volume: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing or reading a claim failed.
    #[error("{action} persistentvolumeclaim {claim}: {source}")]
    Claim {
        /// What was being done.
        action: &'static str,
        /// The claim.
        claim: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A claim is bound by the controller to a volume bound to another claim.
    #[error(
        "invalid binding of claim {claim} to volume {volume}: the volume is bound to another claim"
    )]
    InvalidBinding {
        /// The claim.
        claim: String,
        /// The volume.
        volume: String,
    },
}

/// The storage class of a volume (`spec.storageClassName`, else the beta annotation).
pub fn volume_class(pv: &PersistentVolume) -> String {
    pv.annotations()
        .get(ANN_STORAGE_CLASS)
        .cloned()
        .or_else(|| pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()))
        .unwrap_or_default()
}

/// The storage class a claim asks for (`spec.storageClassName`, else the beta annotation).
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    claim
        .annotations()
        .get(ANN_STORAGE_CLASS)
        .cloned()
        .or_else(|| {
            claim
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
        })
        .unwrap_or_default()
}

fn volume_capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::try_from(q).ok())
        .unwrap_or(Quantity::ZERO)
}

fn claim_request(claim: &PersistentVolumeClaim) -> Quantity {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::try_from(q).ok())
        .unwrap_or(Quantity::ZERO)
}

fn volume_modes(pv: &PersistentVolume) -> Vec<String> {
    pv.spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
}

fn claim_modes(claim: &PersistentVolumeClaim) -> Vec<String> {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.access_modes.clone())
        .unwrap_or_default()
}

fn volume_mode_of(mode: Option<&String>) -> &str {
    mode.map_or("Filesystem", String::as_str)
}

fn claim_ref(pv: &PersistentVolume) -> Option<&ObjectReference> {
    pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

fn claim_volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

fn volume_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether `pv.spec.claimRef` names `claim` (and, when the reference carries a UID, this very
/// object).
pub fn is_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = claim_ref(pv) else {
        return false;
    };
    if reference.name.as_deref() != claim.metadata.name.as_deref()
        || reference.namespace.as_deref().unwrap_or_default()
            != claim.metadata.namespace.as_deref().unwrap_or_default()
    {
        return false;
    }
    match reference.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => Some(uid) == claim.metadata.uid.as_deref(),
    }
}

/// Why a volume cannot satisfy a claim (upstream's `checkVolumeSatisfyClaim` wording), or `Ok`.
pub fn check_satisfies(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), String> {
    if volume_capacity(pv) < claim_request(claim) {
        return Err("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    let pv_mode = volume_mode_of(pv.spec.as_ref().and_then(|s| s.volume_mode.as_ref()));
    let claim_mode = volume_mode_of(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()));
    if pv_mode != claim_mode {
        return Err("incompatible volumeMode".into());
    }
    let modes = volume_modes(pv);
    if !claim_modes(claim).iter().all(|m| modes.contains(m)) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The best volume for an unbound claim among `volumes`: a volume pre-bound to the claim if it
/// is large enough, else the Available unclaimed volume of the claim's class, volume mode and
/// selector that has every requested access mode, preferring fewer access modes, then the
/// smallest capacity (upstream's `findBestMatchForClaim`).
pub fn find_best_match<'a>(
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    claim: &PersistentVolumeClaim,
) -> Option<&'a PersistentVolume> {
    let request = claim_request(claim);
    let class = claim_class(claim);
    let wanted_modes = claim_modes(claim);
    let claim_mode = volume_mode_of(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()));
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut best: Option<(&PersistentVolume, usize, Quantity)> = None;
    for pv in volumes {
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let pv_mode = volume_mode_of(pv.spec.as_ref().and_then(|s| s.volume_mode.as_ref()));
        if pv_mode != claim_mode {
            continue;
        }
        let modes = volume_modes(pv);
        if !wanted_modes.iter().all(|m| modes.contains(m)) {
            continue;
        }
        let capacity = volume_capacity(pv);
        if is_bound_to(pv, claim) {
            if capacity < request {
                continue;
            }
            return Some(pv);
        }
        if volume_phase(pv) != "Available" || claim_ref(pv).is_some() {
            continue;
        }
        if selector.is_some() && !label_selector_matches(selector, pv.labels()) {
            continue;
        }
        if volume_class(pv) != class || capacity < request {
            continue;
        }
        let better = match &best {
            None => true,
            Some((_, best_modes, best_capacity)) => {
                (modes.len(), &capacity) < (*best_modes, best_capacity)
            }
        };
        if better {
            best = Some((pv, modes.len(), capacity));
        }
    }
    best.map(|(pv, _, _)| pv)
}

/// A work item: a volume (by name) or a claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    Volume(String),
    Claim(ObjectKey),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Volume(name) => write!(f, "pv/{name}"),
            Item::Claim(key) => write!(f, "pvc/{key}"),
        }
    }
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    volumes: Informer<PersistentVolume>,
    claims: Informer<PersistentVolumeClaim>,
    /// The newest copy of each volume this controller wrote, until the informer catches up:
    /// a claim synced right after another claim's binding must not pick the same volume.
    written: Arc<Mutex<HashMap<String, Arc<PersistentVolume>>>>,
    /// The last "no volume" message recorded per claim UID, so a Pending claim gets one event
    /// per reason, not one per resync.
    reported: Arc<Mutex<HashMap<String, String>>>,
    queue: WorkQueue<Item>,
}

/// Starts the PersistentVolume binder.
pub fn start(ctx: Arc<Context>) {
    let queue: WorkQueue<Item> = WorkQueue::new();
    let controller = Controller {
        volumes: ctx.informers.get::<PersistentVolume>(),
        claims: ctx.informers.get::<PersistentVolumeClaim>(),
        ctx,
        written: Arc::default(),
        reported: Arc::default(),
        queue: queue.clone(),
    };
    tokio::spawn(async move {
        controller.volumes.ready().await;
        controller.claims.ready().await;
        let claims = controller.claims.clone();
        runner::forward(&controller.volumes, queue.clone(), move |change| {
            let pv = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(pv) => pv,
                Change::Resynced => return Vec::new(),
            };
            // A volume change may let a Pending claim bind: look at the unbound claims too.
            let mut items = vec![Item::Volume(pv.name_any())];
            items.extend(
                claims
                    .list()
                    .iter()
                    .filter(|c| !c.annotations().contains_key(ANN_BIND_COMPLETED))
                    .map(|c| Item::Claim(ObjectKey::of(c.as_ref()))),
            );
            if let Some(reference) = claim_ref(pv) {
                items.push(Item::Claim(ObjectKey::new(
                    reference.namespace.as_deref().unwrap_or_default(),
                    reference.name.as_deref().unwrap_or_default(),
                )));
            }
            items
        });
        let volumes = controller.volumes.clone();
        runner::forward(&controller.claims, queue.clone(), move |change| {
            let claim = match change {
                Change::Applied { new, .. } => new,
                Change::Deleted(claim) => claim,
                Change::Resynced => return Vec::new(),
            };
            let mut items = vec![Item::Claim(ObjectKey::of(claim.as_ref()))];
            // A deleted claim releases its volume; a claim naming a volume wakes it.
            let name = claim_volume_name(claim);
            if !name.is_empty() {
                items.push(Item::Volume(name.to_string()));
            }
            if matches!(change, Change::Deleted(_)) {
                items.extend(
                    volumes
                        .list()
                        .iter()
                        .filter(|pv| is_bound_to(pv, claim))
                        .map(|pv| Item::Volume(pv.name_any())),
                );
            }
            items
        });
        let volumes = controller.volumes.clone();
        let claims = controller.claims.clone();
        runner::resync_every(queue.clone(), SYNC_PERIOD, move || {
            let mut items: Vec<Item> = volumes
                .list()
                .iter()
                .map(|pv| Item::Volume(pv.name_any()))
                .collect();
            items.extend(
                claims
                    .list()
                    .iter()
                    .map(|c| Item::Claim(ObjectKey::of(c.as_ref()))),
            );
            items
        });
        let worker = controller.clone();
        // One worker, as upstream: bindings of different claims must not race for one volume.
        runner::spawn_workers("persistentvolume-binder", queue, 1, move |item| {
            let worker = worker.clone();
            async move { worker.sync(item).await }
        });
    });
}

impl Controller {
    async fn sync(&self, item: Item) -> Result<Option<Duration>, Error> {
        match item {
            Item::Volume(name) => self.sync_volume(&name).await,
            Item::Claim(key) => self.sync_claim(&key).await,
        }
        .map(|()| None)
    }

    /// The newest known copy of volume `name`: this controller's own write if the informer has
    /// not caught up with it yet.
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        let cached = self.volumes.get(None, name);
        let Ok(mut written) = self.written.lock() else {
            return cached;
        };
        let Some(own) = written.get(name).cloned() else {
            return cached;
        };
        let own_version = resource_version(&own);
        match &cached {
            Some(c) if resource_version(c) >= own_version => {
                written.remove(name);
                cached
            }
            _ => Some(own),
        }
    }

    fn all_volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.volumes
            .list()
            .iter()
            .filter_map(|pv| self.volume(&pv.name_any()))
            .collect()
    }

    fn remember(&self, pv: PersistentVolume) -> Arc<PersistentVolume> {
        let pv = Arc::new(pv);
        if let Ok(mut written) = self.written.lock() {
            written.insert(pv.name_any(), pv.clone());
        }
        pv
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    fn claims_api(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), namespace)
    }

    async fn event(
        &self,
        claim: &PersistentVolumeClaim,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.ctx
            .recorder
            .for_component("persistentvolume-controller")
            .record(claim, kind, reason, message)
            .await;
    }

    /// Records `reason`/`message` about a Pending claim once per distinct message.
    async fn event_once(
        &self,
        claim: &PersistentVolumeClaim,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let new = self
            .reported
            .lock()
            .map(|mut r| r.insert(uid, message.to_string()).as_deref() != Some(message))
            .unwrap_or(true);
        if new {
            self.event(claim, kind, reason, message).await;
        }
    }

    // ----- claims -----

    async fn sync_claim(&self, key: &ObjectKey) -> Result<(), Error> {
        let Some(claim) = self.claims.get(key.namespace(), &key.name) else {
            return Ok(());
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        if claim.annotations().contains_key(ANN_BIND_COMPLETED) {
            self.sync_bound_claim(&claim).await
        } else {
            self.sync_unbound_claim(&claim).await
        }
    }

    async fn sync_unbound_claim(&self, claim: &PersistentVolumeClaim) -> Result<(), Error> {
        let volume_name = claim_volume_name(claim);
        if volume_name.is_empty() {
            let volumes = self.all_volumes();
            let found = find_best_match(volumes.iter().map(Arc::as_ref), claim).cloned();
            // As upstream, a claim whose class delays binding only takes a volume the scheduler
            // has pre-bound to it; any other match waits for the claim's first pod.
            let pv = match found {
                Some(pv) if is_bound_to(&pv, claim) || !self.delays_binding(claim).await? => pv,
                _ => {
                    self.report_no_match(claim).await;
                    return self.set_claim_phase(claim, "Pending").await;
                }
            };
            return self.bind(pv, claim).await;
        }
        // The user asked for a particular volume.
        let Some(pv) = self.volume(volume_name) else {
            return self.set_claim_phase(claim, "Pending").await;
        };
        if claim_ref(&pv).is_none() {
            if let Err(reason) = check_satisfies(&pv, claim) {
                self.event_once(
                    claim,
                    EventType::Warning,
                    "VolumeMismatch",
                    &format!("Cannot bind to requested volume \"{volume_name}\": {reason}"),
                )
                .await;
                return self.set_claim_phase(claim, "Pending").await;
            }
            return self.bind(pv.as_ref().clone(), claim).await;
        }
        if is_bound_to(&pv, claim) {
            return self.bind(pv.as_ref().clone(), claim).await;
        }
        if claim.annotations().contains_key(ANN_BOUND_BY_CONTROLLER) {
            return Err(Error::InvalidBinding {
                claim: ObjectKey::of(claim).to_string(),
                volume: volume_name.to_string(),
            });
        }
        // Pre-bound by the user to a volume someone else holds: wait.
        self.set_claim_phase(claim, "Pending").await
    }

    /// Whether the claim's StorageClass has `volumeBindingMode: WaitForFirstConsumer`.
    async fn delays_binding(&self, claim: &PersistentVolumeClaim) -> Result<bool, Error> {
        let class = claim_class(claim);
        if class.is_empty() {
            return Ok(false);
        }
        let classes: Api<StorageClass> = Api::all(self.ctx.client.clone());
        match classes.get_opt(&class).await {
            Ok(Some(sc)) => Ok(sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer")),
            Ok(None) => Ok(false),
            Err(source) => Err(Error::Claim {
                action: "reading the storage class of",
                claim: ObjectKey::of(claim).to_string(),
                source,
            }),
        }
    }

    async fn report_no_match(&self, claim: &PersistentVolumeClaim) {
        let class = claim_class(claim);
        if class.is_empty() {
            self.event_once(
                claim,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
            .await;
            return;
        }
        let classes: Api<StorageClass> = Api::all(self.ctx.client.clone());
        match classes.get_opt(&class).await {
            Ok(None) => {
                self.event_once(
                    claim,
                    EventType::Warning,
                    "ProvisioningFailed",
                    &format!("storageclass.storage.k8s.io \"{class}\" not found"),
                )
                .await;
            }
            Ok(Some(sc)) if sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") => {
                self.event_once(
                    claim,
                    EventType::Normal,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
                .await;
            }
            Ok(Some(sc)) => {
                self.event_once(
                    claim,
                    EventType::Normal,
                    "ExternalProvisioning",
                    &format!(
                        "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                        sc.provisioner
                    ),
                )
                .await;
            }
            Err(error) => {
                tracing::debug!(class, %error, "reading the claim's storage class failed");
            }
        }
    }

    async fn sync_bound_claim(&self, claim: &PersistentVolumeClaim) -> Result<(), Error> {
        let volume_name = claim_volume_name(claim);
        if volume_name.is_empty() {
            return self
                .lose_claim(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
                )
                .await;
        }
        let Some(pv) = self.volume(volume_name) else {
            // The cache may lag behind a volume created just now: check the API first.
            match self.volumes_api().get_opt(volume_name).await {
                Ok(Some(pv)) => return self.bind(pv, claim).await,
                Ok(None) => {}
                Err(source) => {
                    return Err(Error::Volume {
                        action: "reading",
                        volume: volume_name.to_string(),
                        source,
                    })
                }
            }
            return self
                .lose_claim(
                    claim,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
        };
        if claim_ref(&pv).is_none() || is_bound_to(&pv, claim) {
            return self.bind(pv.as_ref().clone(), claim).await;
        }
        self.lose_claim(
            claim,
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )
        .await
    }

    async fn lose_claim(
        &self,
        claim: &PersistentVolumeClaim,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        if claim_phase(claim) != "Lost" {
            self.event(claim, EventType::Warning, reason, message).await;
        }
        self.set_claim_phase(claim, "Lost").await
    }

    async fn set_claim_phase(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
    ) -> Result<(), Error> {
        if claim_phase(claim) == phase {
            return Ok(());
        }
        let mut status = json!({"phase": phase});
        if phase != "Bound" {
            // Upstream keeps capacity/access modes only while Bound.
            status["accessModes"] = serde_json::Value::Null;
            status["capacity"] = serde_json::Value::Null;
        }
        self.claims_api(&claim.namespace().unwrap_or_default())
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map_err(|source| Error::Claim {
                action: "updating the status of",
                claim: ObjectKey::of(claim).to_string(),
                source,
            })?;
        Ok(())
    }

    /// Binds `pv` and `claim` both ways; every step is skipped when already done, so a binding
    /// interrupted half-way is finished by the next sync of either side.
    async fn bind(&self, pv: PersistentVolume, claim: &PersistentVolumeClaim) -> Result<(), Error> {
        let pv_name = pv.name_any();
        let claim_key = ObjectKey::of(claim).to_string();
        tracing::debug!(claim = %claim_key, volume = %pv_name, "binding");
        // 1. The volume's claimRef.
        let pv = if is_bound_to(&pv, claim)
            && claim_ref(&pv)
                .and_then(|r| r.uid.as_deref())
                .is_some_and(|u| !u.is_empty())
        {
            pv
        } else {
            let mut updated = pv.clone();
            let spec = updated.spec.get_or_insert_with(Default::default);
            if spec.claim_ref.is_none() {
                updated
                    .annotations_mut()
                    .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
            }
            let spec = updated.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: claim.metadata.name.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                field_path: None,
            });
            let written = self
                .volumes_api()
                .replace(&pv_name, &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::Volume {
                    action: "binding",
                    volume: pv_name.clone(),
                    source,
                })?;
            self.remember(written).as_ref().clone()
        };
        // 2. The volume's phase.
        let pv = self.set_volume_phase(&pv, "Bound").await?;
        // 3. The claim's volumeName and annotations.
        let complete = claim_volume_name(claim) == pv_name
            && claim.annotations().contains_key(ANN_BIND_COMPLETED);
        let claim = if complete {
            claim.clone()
        } else {
            let mut updated = claim.clone();
            if claim_volume_name(claim) != pv_name {
                updated
                    .annotations_mut()
                    .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
                updated
                    .spec
                    .get_or_insert_with(Default::default)
                    .volume_name = Some(pv_name.clone());
            }
            updated
                .annotations_mut()
                .insert(ANN_BIND_COMPLETED.into(), "yes".into());
            self.claims_api(&claim.namespace().unwrap_or_default())
                .replace(&claim.name_any(), &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::Claim {
                    action: "binding",
                    claim: claim_key.clone(),
                    source,
                })?
        };
        // 4. The claim's status.
        let spec = pv.spec.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        if status.phase.as_deref() == Some("Bound")
            && status.access_modes == spec.access_modes
            && status.capacity == spec.capacity
        {
            return Ok(());
        }
        let patch = json!({"status": {
            "phase": "Bound",
            "accessModes": spec.access_modes,
            "capacity": spec.capacity.unwrap_or_default(),
        }});
        self.claims_api(&claim.namespace().unwrap_or_default())
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(|source| Error::Claim {
                action: "updating the status of",
                claim: claim_key,
                source,
            })?;
        if let Ok(mut reported) = self.reported.lock() {
            reported.remove(claim.metadata.uid.as_deref().unwrap_or_default());
        }
        Ok(())
    }

    // ----- volumes -----

    async fn set_volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
    ) -> Result<PersistentVolume, Error> {
        if volume_phase(pv) == phase {
            return Ok(pv.clone());
        }
        let patch = json!({"status": {
            "phase": phase,
            "lastPhaseTransitionTime": jiff::Timestamp::now().to_string(),
        }});
        let written = self
            .volumes_api()
            .patch_status(
                &pv.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
            .map_err(|source| Error::Volume {
                action: "updating the status of",
                volume: pv.name_any(),
                source,
            })?;
        Ok(self.remember(written).as_ref().clone())
    }

    async fn sync_volume(&self, name: &str) -> Result<(), Error> {
        let Some(pv) = self.volume(name) else {
            if let Ok(mut written) = self.written.lock() {
                written.remove(name);
            }
            return Ok(());
        };
        if pv.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let Some(reference) = claim_ref(&pv).cloned() else {
            self.set_volume_phase(&pv, "Available").await?;
            return Ok(());
        };
        let uid = reference.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            // Pre-bound by the user to a claim that is not bound yet: the claim sync binds it.
            self.set_volume_phase(&pv, "Available").await?;
            return Ok(());
        }
        let namespace = reference.namespace.clone().unwrap_or_default();
        let claim_name = reference.name.clone().unwrap_or_default();
        let mut claim = self.claims.get(Some(&namespace), &claim_name);
        if claim.is_none() {
            // Not in the cache: make sure it is really gone before releasing the volume.
            claim = self
                .claims_api(&namespace)
                .get_opt(&claim_name)
                .await
                .map_err(|source| Error::Claim {
                    action: "reading",
                    claim: format!("{namespace}/{claim_name}"),
                    source,
                })?
                .map(Arc::new);
        }
        let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid.as_str()));
        let Some(claim) = claim else {
            let phase = volume_phase(&pv);
            let pv = if phase != "Released" && phase != "Failed" {
                tracing::info!(volume = name, "claim gone; volume released");
                self.set_volume_phase(&pv, "Released").await?
            } else {
                pv.as_ref().clone()
            };
            return self.reclaim(&pv).await;
        };
        let claim_volume = claim_volume_name(&claim);
        if claim_volume.is_empty() {
            // The binding is half-way; the claim's sync finishes it.
            self.queue.add(Item::Claim(ObjectKey::of(claim.as_ref())));
            return Ok(());
        }
        if claim_volume == name {
            self.set_volume_phase(&pv, "Bound").await?;
            return Ok(());
        }
        // The claim is bound to another volume: undo this volume's side.
        self.unbind(&pv).await
    }

    /// Undoes a volume's binding: a controller-made claimRef goes away, a user-made one loses
    /// only its UID (the volume stays pre-bound to that claim name). The volume is Available.
    async fn unbind(&self, pv: &PersistentVolume) -> Result<(), Error> {
        let mut updated = pv.clone();
        let by_controller = updated
            .annotations_mut()
            .remove(ANN_BOUND_BY_CONTROLLER)
            .is_some();
        if let Some(spec) = updated.spec.as_mut() {
            if by_controller {
                spec.claim_ref = None;
            } else if let Some(reference) = spec.claim_ref.as_mut() {
                reference.uid = None;
                reference.resource_version = None;
            }
        }
        let written = self
            .volumes_api()
            .replace(&pv.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(|source| Error::Volume {
                action: "unbinding",
                volume: pv.name_any(),
                source,
            })?;
        let written = self.remember(written);
        self.set_volume_phase(&written, "Available").await?;
        Ok(())
    }

    /// Applies the reclaim policy of a Released volume.
    async fn reclaim(&self, pv: &PersistentVolume) -> Result<(), Error> {
        if volume_phase(pv) != "Released" {
            return Ok(());
        }
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        match policy {
            "Retain" => Ok(()),
            "Delete" => {
                let name = pv.name_any();
                tracing::info!(volume = %name, "reclaim policy Delete: deleting the volume");
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: pv.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.volumes_api().delete(&name, &params).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(source) => Err(Error::Volume {
                        action: "deleting",
                        volume: name,
                        source,
                    }),
                }
            }
            other => {
                let (reason, message) = if other == "Recycle" {
                    (
                        "VolumeFailedRecycle",
                        "No recycler plugin found for the volume!".to_string(),
                    )
                } else {
                    (
                        "VolumeUnknownReclaimPolicy",
                        "Volume has unrecognized PersistentVolumeReclaimPolicy".to_string(),
                    )
                };
                self.ctx
                    .recorder
                    .for_component("persistentvolume-controller")
                    .record(pv, EventType::Warning, reason, &message)
                    .await;
                self.set_volume_phase(pv, "Failed").await?;
                Ok(())
            }
        }
    }
}

fn resource_version(object: &PersistentVolume) -> u64 {
    object
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"disk": name}},
            "spec": {"capacity": {"storage": size}, "accessModes": modes,
                     "storageClassName": class, "hostPath": {"path": "/tmp"}},
            "status": {"phase": "Available"}
        }))
        .unwrap_or_default()
    }

    fn claim(size: &str, modes: &[&str], class: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "c", "namespace": "default", "uid": "u1"},
            "spec": {"accessModes": modes, "storageClassName": class,
                     "resources": {"requests": {"storage": size}}}
        }))
        .unwrap_or_default()
    }

    fn best<'a>(volumes: &'a [PersistentVolume], claim: &PersistentVolumeClaim) -> Option<&'a str> {
        find_best_match(volumes, claim).and_then(|pv| pv.metadata.name.as_deref())
    }

    #[test]
    fn smallest_fitting_volume_of_the_class_wins() {
        let volumes = [
            pv("big", "10Gi", &["ReadWriteOnce"], ""),
            pv("small", "1Gi", &["ReadWriteOnce"], ""),
            pv("mid", "2Gi", &["ReadWriteOnce"], ""),
            pv("fast", "2Gi", &["ReadWriteOnce"], "fast"),
        ];
        assert_eq!(
            best(&volumes, &claim("1500Mi", &["ReadWriteOnce"], "")),
            Some("mid")
        );
        assert_eq!(
            best(&volumes, &claim("1Gi", &["ReadWriteOnce"], "fast")),
            Some("fast")
        );
        assert_eq!(best(&volumes, &claim("20Gi", &["ReadWriteOnce"], "")), None);
        assert_eq!(best(&volumes, &claim("1Gi", &["ReadWriteMany"], "")), None);
    }

    #[test]
    fn fewer_access_modes_win_before_size_and_bound_volumes_are_skipped() {
        let mut taken = pv("taken", "1Gi", &["ReadWriteOnce"], "");
        taken.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
            name: Some("other".into()),
            namespace: Some("default".into()),
            uid: Some("u2".into()),
            ..Default::default()
        });
        let volumes = [
            taken,
            pv("multi", "1Gi", &["ReadWriteOnce", "ReadOnlyMany"], ""),
            pv("single", "5Gi", &["ReadWriteOnce"], ""),
        ];
        assert_eq!(
            best(&volumes, &claim("1Gi", &["ReadWriteOnce"], "")),
            Some("single")
        );
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_is_taken_if_large_enough() {
        let mut pre = pv("pre", "1Gi", &["ReadWriteOnce"], "other-class");
        pre.spec.get_or_insert_with(Default::default).claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        let volumes = [pv("free", "1Gi", &["ReadWriteOnce"], ""), pre];
        assert_eq!(
            best(&volumes, &claim("1Gi", &["ReadWriteOnce"], "")),
            Some("pre")
        );
        assert_eq!(best(&volumes, &claim("2Gi", &["ReadWriteOnce"], "")), None);
    }

    #[test]
    fn selector_filters_by_volume_labels() {
        let volumes = [
            pv("a", "1Gi", &["ReadWriteOnce"], ""),
            pv("b", "1Gi", &["ReadWriteOnce"], ""),
        ];
        let mut c = claim("1Gi", &["ReadWriteOnce"], "");
        c.spec.get_or_insert_with(Default::default).selector =
            serde_json::from_value(json!({"matchLabels": {"disk": "b"}})).ok();
        assert_eq!(best(&volumes, &c), Some("b"));
    }

    #[test]
    fn satisfies_reports_the_upstream_reasons() {
        let volume = pv("v", "1Gi", &["ReadWriteOnce"], "");
        assert_eq!(
            check_satisfies(&volume, &claim("1Gi", &["ReadWriteOnce"], "")),
            Ok(())
        );
        assert_eq!(
            check_satisfies(&volume, &claim("2Gi", &["ReadWriteOnce"], "")),
            Err("requested PV is too small".into())
        );
        assert_eq!(
            check_satisfies(&volume, &claim("1Gi", &["ReadWriteMany"], "")),
            Err("incompatible accessMode".into())
        );
        assert_eq!(
            check_satisfies(&volume, &claim("1Gi", &["ReadWriteOnce"], "x")),
            Err("storageClassName does not match".into())
        );
    }
}
