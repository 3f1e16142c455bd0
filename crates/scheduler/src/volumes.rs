//! The volume binder behind VolumeBinding (upstream `volumebinding.SchedulerVolumeBinder`):
//! informer caches of PersistentVolumeClaims, PersistentVolumes and StorageClasses with the
//! scheduler's assumed changes on top, and the Reserve / PreBind / Unreserve steps.
//!
//! Reserve ([`VolumeCache::assume`]) writes the plan into the assume cache: each chosen volume
//! gets `spec.claimRef` to its claim and `pv.kubernetes.io/bound-by-controller`, each claim to
//! provision gets `volume.kubernetes.io/selected-node`, so the next cycles see them taken.
//! PreBind ([`VolumeCache::bind`]) sends those updates and waits until the PV controller has
//! finished every binding (claim `spec.volumeName` and `pv.kubernetes.io/bind-completed`), as
//! upstream's `BindPodVolumes` does; Unreserve ([`VolumeCache::revert`]) drops the assumptions.
//! An assumed object is used until the informer delivers a newer version.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::framework::VolumeClaim;
use crate::plugins::volume_binding::{
    self, claim_class, fully_bound, volume_class, Plan, PodClaim, PodVolumes,
    ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE,
};

/// Upstream's default `bindTimeoutSeconds`: how long PreBind waits for the PV controller.
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often PreBind looks at the caches while waiting.
pub const BIND_POLL: Duration = Duration::from_millis(200);

/// Why binding a pod's volumes failed (PreBind).
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Writing the volume's claimRef failed.
    #[error("updating persistentvolume {volume}: {source}")]
    UpdateVolume {
        /// The volume.
        volume: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the claim's selected-node annotation failed.
    #[error("updating persistentvolumeclaim {claim}: {source}")]
    UpdateClaim {
        /// `namespace/name`.
        claim: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Something undid the binding while waiting (upstream's wording).
    #[error("binding volumes: {0}")]
    Check(String),
    /// The PV controller did not finish in time.
    #[error("binding volumes: timed out waiting for the condition")]
    Timeout,
}

#[derive(Debug, Default)]
struct Assumed {
    volumes: HashMap<String, Arc<PersistentVolume>>,
    /// By `namespace/name`.
    claims: HashMap<String, Arc<PersistentVolumeClaim>>,
}

fn version(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The informer's object unless the assumed one is at least as new.
fn newest<K: kube::Resource>(informer: Option<Arc<K>>, assumed: Option<&Arc<K>>) -> Option<Arc<K>> {
    let informer = informer?;
    match assumed {
        Some(assumed) if version(assumed.meta()) >= version(informer.meta()) => {
            Some(assumed.clone())
        }
        _ => Some(informer),
    }
}

fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Caches of claims, volumes and classes with the assumed changes.
#[derive(Clone)]
pub struct VolumeCache {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    assumed: Arc<Mutex<Assumed>>,
}

impl VolumeCache {
    /// Over the given informer stores.
    pub fn new(
        claims: Store<PersistentVolumeClaim>,
        volumes: Store<PersistentVolume>,
        classes: Store<StorageClass>,
    ) -> Self {
        VolumeCache {
            claims,
            volumes,
            classes,
            assumed: Arc::default(),
        }
    }

    fn assumed(&self) -> MutexGuard<'_, Assumed> {
        match self.assumed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The claim as the scheduler sees it.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        let informer = self.claims.get(&ObjectRef::new(name).within(namespace));
        let assumed = self.assumed();
        newest(informer, assumed.claims.get(&format!("{namespace}/{name}")))
    }

    /// The volume as the scheduler sees it.
    pub fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        let informer = self.volumes.get(&ObjectRef::new(name));
        let assumed = self.assumed();
        newest(informer, assumed.volumes.get(name))
    }

    /// What the volume plugins need for a pod with these claims.
    pub fn pod_volumes(&self, pod: &Pod, claims: &[VolumeClaim]) -> PodVolumes {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = PodVolumes::default();
        let mut unbound_classes: Vec<String> = Vec::new();
        for entry in claims {
            let claim = self.claim(namespace, &entry.name);
            if let Some(claim) = &claim {
                let class = claim_class(claim).to_string();
                if let Some(found) = self.classes.get(&ObjectRef::new(&class)) {
                    out.classes.insert(class.clone(), found);
                }
                if fully_bound(claim) {
                    let name = claim
                        .spec
                        .as_ref()
                        .and_then(|s| s.volume_name.clone())
                        .unwrap_or_default();
                    if let Some(pv) = self.volume(&name) {
                        out.volumes.insert(name, pv);
                    }
                } else if !unbound_classes.contains(&class) {
                    unbound_classes.push(class);
                }
            }
            out.claims.push(PodClaim {
                name: entry.name.clone(),
                ephemeral: entry.ephemeral,
                claim,
            });
        }
        if !unbound_classes.is_empty() {
            let assumed = self.assumed();
            for pv in self.volumes.state() {
                if !unbound_classes.iter().any(|c| c == volume_class(&pv)) {
                    continue;
                }
                let name = pv.metadata.name.clone().unwrap_or_default();
                if let Some(pv) = newest(Some(pv), assumed.volumes.get(&name)) {
                    out.volumes.insert(name, pv);
                }
            }
        }
        out
    }

    /// Reserve (upstream `AssumePodVolumes`): records the plan's changes as assumed and
    /// returns the plan with the changed objects, ready for [`VolumeCache::bind`].
    pub fn assume(&self, plan: &Plan, node: &str) -> Plan {
        let mut assumed = self.assumed();
        let mut out = Plan::default();
        for (pv, claim) in &plan.bindings {
            let updated = Arc::new(bind_volume_to_claim(pv, claim));
            let name = updated.metadata.name.clone().unwrap_or_default();
            assumed.volumes.insert(name, updated.clone());
            out.bindings.push((updated, claim.clone()));
        }
        for claim in &plan.provisions {
            let mut updated = (**claim).clone();
            updated
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(ANN_SELECTED_NODE.into(), node.into());
            let updated = Arc::new(updated);
            assumed.claims.insert(claim_key(&updated), updated.clone());
            out.provisions.push(updated);
        }
        out
    }

    /// Unreserve (upstream `RevertAssumedPodVolumes`): forgets the plan's assumed changes.
    pub fn revert(&self, plan: &Plan) {
        let mut assumed = self.assumed();
        for (pv, _) in &plan.bindings {
            assumed
                .volumes
                .remove(pv.metadata.name.as_deref().unwrap_or_default());
        }
        for claim in &plan.provisions {
            assumed.claims.remove(&claim_key(claim));
        }
    }

    /// PreBind (upstream `BindPodVolumes`): writes the assumed changes, then waits until the
    /// PV controller has bound every claim of the plan (or `timeout` passes).
    pub async fn bind(
        &self,
        client: &Client,
        node: &str,
        plan: &Plan,
        timeout: Duration,
    ) -> Result<(), BindError> {
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        let mut written = Plan::default();
        for (pv, claim) in &plan.bindings {
            let name = pv.metadata.name.clone().unwrap_or_default();
            let updated = volumes
                .replace(&name, &PostParams::default(), pv)
                .await
                .map_err(|source| BindError::UpdateVolume {
                    volume: name.clone(),
                    source,
                })?;
            let updated = Arc::new(updated);
            self.assumed().volumes.insert(name, updated.clone());
            written.bindings.push((updated, claim.clone()));
        }
        for claim in &plan.provisions {
            let namespace = claim.metadata.namespace.clone().unwrap_or_default();
            let name = claim.metadata.name.clone().unwrap_or_default();
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
            let updated = api
                .replace(&name, &PostParams::default(), claim)
                .await
                .map_err(|source| BindError::UpdateClaim {
                    claim: claim_key(claim),
                    source,
                })?;
            let updated = Arc::new(updated);
            self.assumed()
                .claims
                .insert(claim_key(&updated), updated.clone());
            written.provisions.push(updated);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.check(&written, node)? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BindError::Timeout);
            }
            tokio::time::sleep(BIND_POLL).await;
        }
    }

    /// Upstream `checkBindings` over the informer caches: `Ok(true)` once every claim is fully
    /// bound, `Err` when something undid the plan.
    fn check(&self, plan: &Plan, node: &str) -> Result<bool, BindError> {
        for (pv, claim) in &plan.bindings {
            let name = pv.metadata.name.as_deref().unwrap_or_default();
            let Some(current) = self.volumes.get(&ObjectRef::new(name)) else {
                return Err(BindError::Check(format!(
                    "failed to check binding: persistentvolume {name:?} not found"
                )));
            };
            let key = claim_key(claim);
            let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            let Some(current_claim) = self
                .claims
                .get(&ObjectRef::new(claim_name).within(namespace))
            else {
                return Err(BindError::Check(format!(
                    "failed to check binding: persistentvolumeclaim {key:?} not found"
                )));
            };
            // The informer has not seen our write yet.
            if version(&current.metadata) < version(&pv.metadata) {
                return Ok(false);
            }
            let reference = current.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            let uid = reference.and_then(|r| r.uid.as_deref()).unwrap_or_default();
            if uid.is_empty() || Some(uid) != current_claim.metadata.uid.as_deref() {
                return Err(BindError::Check(format!(
                    "ClaimRef got reset for pv {name:?}"
                )));
            }
            if !fully_bound(&current_claim) {
                return Ok(false);
            }
        }
        for claim in &plan.provisions {
            let key = claim_key(claim);
            let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            let Some(current) = self
                .claims
                .get(&ObjectRef::new(claim_name).within(namespace))
            else {
                return Err(BindError::Check(format!(
                    "failed to check provisioning pvc: persistentvolumeclaim {key:?} not found"
                )));
            };
            if version(&current.metadata) < version(&claim.metadata) {
                return Ok(false);
            }
            let selected = current
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_SELECTED_NODE));
            if selected.map(String::as_str) != Some(node) {
                return Err(BindError::Check(format!(
                    "provisioning failed for PVC {claim_name:?}"
                )));
            }
            if !fully_bound(&current) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Upstream `GetBindVolumeToClaim`: the volume with `spec.claimRef` to the claim and, unless
/// it was already bound to it, `pv.kubernetes.io/bound-by-controller`.
pub fn bind_volume_to_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> PersistentVolume {
    let mut updated = pv.clone();
    let already = volume_binding::is_bound_to(pv, claim);
    let spec = updated.spec.get_or_insert_with(Default::default);
    let current = spec.claim_ref.as_ref();
    let same = current.is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid == claim.metadata.uid
    });
    if !same {
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            name: claim.metadata.name.clone(),
            namespace: claim.metadata.namespace.clone(),
            uid: claim.metadata.uid.clone(),
            resource_version: claim.metadata.resource_version.clone(),
            ..ObjectReference::default()
        });
    }
    if !already {
        updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .entry(ANN_BOUND_BY_CONTROLLER.into())
            .or_insert_with(|| "yes".into());
    }
    updated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::volume_binding::tests::{claim, class, volume};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    fn store<K>(objects: Vec<K>) -> (Writer<K>, Store<K>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    {
        let mut writer = Writer::<K>::default();
        let reader = writer.as_reader();
        for object in objects {
            writer.apply_watcher_event(&Event::Apply(object));
        }
        (writer, reader)
    }

    fn pod(claims: &[&str]) -> (Pod, Vec<VolumeClaim>) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"}}))
        .unwrap_or_default();
        let claims = claims
            .iter()
            .map(|c| VolumeClaim {
                name: c.to_string(),
                ephemeral: false,
            })
            .collect();
        (pod, claims)
    }

    #[test]
    fn binding_a_volume_sets_the_claim_ref_and_the_controller_annotation() {
        let x = claim("x", "local", "1Gi", serde_json::json!({}));
        let pv = volume("pv", "local", "1Gi", None, serde_json::json!({}));
        let bound = bind_volume_to_claim(&pv, &x);
        let reference = bound.spec.as_ref().and_then(|s| s.claim_ref.clone());
        assert_eq!(
            reference.as_ref().and_then(|r| r.name.as_deref()),
            Some("x")
        );
        assert_eq!(
            reference.as_ref().and_then(|r| r.uid.as_deref()),
            Some("x-uid")
        );
        assert_eq!(
            reference.as_ref().and_then(|r| r.kind.as_deref()),
            Some("PersistentVolumeClaim")
        );
        assert_eq!(
            bound
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANN_BOUND_BY_CONTROLLER))
                .map(String::as_str),
            Some("yes")
        );
        // Pre-bound by the user: the reference gains the UID, no controller annotation.
        let user = volume(
            "pv",
            "local",
            "1Gi",
            None,
            serde_json::json!({"spec": {"claimRef": {"name": "x", "namespace": "default"}}}),
        );
        let bound = bind_volume_to_claim(&user, &x);
        assert!(bound.metadata.annotations.is_none());
        assert_eq!(
            bound
                .spec
                .and_then(|s| s.claim_ref)
                .and_then(|r| r.uid)
                .as_deref(),
            Some("x-uid")
        );
    }

    #[test]
    fn assumed_bindings_are_seen_until_reverted_or_superseded() {
        let x = claim("x", "local", "1Gi", serde_json::json!({}));
        let pv = volume("pv", "local", "1Gi", None, serde_json::json!({}));
        let (_claims_writer, claims) = store(vec![x.clone()]);
        let (mut volumes_writer, volumes) = store(vec![pv.clone()]);
        let (_classes_writer, classes) = store(vec![class("local", "WaitForFirstConsumer", "")]);
        let cache = VolumeCache::new(claims, volumes, classes);
        let (p, claim_names) = pod(&["x"]);
        let seen = cache.pod_volumes(&p, &claim_names);
        assert!(seen.classes.contains_key("local"));
        assert!(seen.claims[0].claim.is_some());
        let free = |cache: &VolumeCache| {
            cache
                .pod_volumes(&p, &claim_names)
                .volumes
                .get("pv")
                .is_some_and(|pv| {
                    pv.spec
                        .as_ref()
                        .and_then(|s| s.claim_ref.as_ref())
                        .is_none()
                })
        };
        assert!(free(&cache));
        let plan = Plan {
            bindings: vec![(Arc::new(pv.clone()), Arc::new(x.clone()))],
            provisions: vec![Arc::new(x.clone())],
        };
        let assumed = cache.assume(&plan, "node-a");
        assert!(!free(&cache));
        assert_eq!(
            cache
                .claim("default", "x")
                .and_then(|c| c.metadata.annotations.clone())
                .and_then(|a| a.get(ANN_SELECTED_NODE).cloned())
                .as_deref(),
            Some("node-a")
        );
        cache.revert(&assumed);
        assert!(free(&cache));
        // A newer informer version wins over an assumption.
        let assumed = cache.assume(&plan, "node-a");
        assert!(!free(&cache));
        let mut newer = pv;
        newer.metadata.resource_version = Some("2".into());
        volumes_writer.apply_watcher_event(&Event::Apply(newer));
        assert!(free(&cache));
        cache.revert(&assumed);
    }

    #[test]
    fn the_binding_check_waits_for_the_controller_and_fails_when_the_claim_ref_is_reset() {
        let x = claim("x", "local", "1Gi", serde_json::json!({}));
        let pv = bind_volume_to_claim(
            &volume("pv", "local", "1Gi", None, serde_json::json!({})),
            &x,
        );
        let (mut claims_writer, claims) = store(vec![x.clone()]);
        let (mut volumes_writer, volumes) = store(vec![pv.clone()]);
        let (_classes_writer, classes) = store(Vec::<StorageClass>::new());
        let cache = VolumeCache::new(claims, volumes, classes);
        let plan = Plan {
            bindings: vec![(Arc::new(pv.clone()), Arc::new(x.clone()))],
            provisions: vec![],
        };
        assert!(matches!(cache.check(&plan, "a"), Ok(false)));
        let mut done = x.clone();
        done.spec.get_or_insert_with(Default::default).volume_name = Some("pv".into());
        done.metadata.annotations = Some(
            [(
                volume_binding::ANN_BIND_COMPLETED.to_string(),
                "yes".to_string(),
            )]
            .into(),
        );
        claims_writer.apply_watcher_event(&Event::Apply(done));
        assert!(matches!(cache.check(&plan, "a"), Ok(true)));
        let mut reset = pv;
        reset.spec.get_or_insert_with(Default::default).claim_ref = None;
        volumes_writer.apply_watcher_event(&Event::Apply(reset));
        assert!(matches!(cache.check(&plan, "a"), Err(BindError::Check(_))));
    }
}
