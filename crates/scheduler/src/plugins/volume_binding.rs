//! VolumeBinding: a pod's PersistentVolumeClaims must be usable on the node, as upstream.
//!
//! PreFilter sorts the claims (from [`PodVolumes`], which the scheduler fills from its informer
//! caches and its assumed bindings): a missing, lost or deleting claim, or an unbound claim of
//! an `Immediate` class, rejects the pod everywhere. Filter checks, per node, that every bound
//! claim's PersistentVolume allows the node (`spec.nodeAffinity`) and that every unbound claim
//! of a `WaitForFirstConsumer` class finds an Available volume (class, size, access and volume
//! modes, selector, node affinity; the smallest wins) or can be provisioned there (a class with
//! a provisioner whose `allowedTopologies` match). [`plan`] repeats the per-node search for the
//! chosen node; [`crate::volumes`] reserves, binds (PreBind) and reverts (Unreserve) the plan.
//! No Score (upstream's is behind the `StorageCapacityScoring` gate).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use api_types::quantity::Quantity;
use api_types::selector::label_selector_matches;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

use crate::framework::{CycleState, FilterPlugin, NodeInfo, PodInfo, Unfit};
use crate::plugins::node_affinity::{requirement_matches, term_matches};

/// Upstream's reason for an unbound claim of an `Immediate` class.
pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
/// A bound volume's node affinity excludes the node.
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
/// No volume to bind (and no provisioning) on the node.
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
/// A bound claim's volume does not exist.
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";
/// Set on claims and volumes whose binding the PV controller finished.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on the side of a binding the controller (or the scheduler for it) wrote.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a claim to be provisioned on.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The deprecated storage class annotation, still honoured.
pub const ANN_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// A class whose volumes are created by hand (upstream `NotSupportedProvisioner`).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

const STATE_KEY: &str = "VolumeBinding";

/// One claim-backed volume of the pod and its claim, if it exists.
#[derive(Debug, Clone)]
pub struct PodClaim {
    /// The claim's name.
    pub name: String,
    /// A generic ephemeral volume's claim (created for the pod by the ephemeral controller).
    pub ephemeral: bool,
    /// The claim as the scheduler sees it (assumed changes applied).
    pub claim: Option<Arc<PersistentVolumeClaim>>,
}

/// What the volume plugins need for one pod, taken from the informer caches with the
/// scheduler's assumed bindings applied.
#[derive(Debug, Clone, Default)]
pub struct PodVolumes {
    /// The pod's claims, in volume order.
    pub claims: Vec<PodClaim>,
    /// The storage classes the claims name (those that exist).
    pub classes: HashMap<String, Arc<StorageClass>>,
    /// Bound claims' volumes and every volume of an unbound claim's class, by name.
    pub volumes: BTreeMap<String, Arc<PersistentVolume>>,
}

/// What to do on the chosen node so the pod's unbound claims get volumes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Volume to bind -> the claim it is for (upstream `StaticBindings`).
    pub bindings: Vec<(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>)>,
    /// Claims to annotate with the selected node for provisioning (`DynamicProvisions`).
    pub provisions: Vec<Arc<PersistentVolumeClaim>>,
}

impl Plan {
    /// Whether nothing needs binding.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty() && self.provisions.is_empty()
    }
}

/// The claims sorted by PreFilter.
#[derive(Debug, Clone, Default)]
struct Claims {
    bound: Vec<Arc<PersistentVolumeClaim>>,
    /// Unbound claims of `WaitForFirstConsumer` classes, smallest request first.
    delayed: Vec<Arc<PersistentVolumeClaim>>,
}

/// The claim's storage class (beta annotation first, as upstream).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_STORAGE_CLASS))
        .or(claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_ref()))
        .map_or("", String::as_str)
}

/// The volume's storage class (beta annotation first, as upstream).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANN_STORAGE_CLASS))
        .or(pv.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()))
        .map_or("", String::as_str)
}

fn has_annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(key))
}

/// Upstream `isPVCFullyBound`: `spec.volumeName` set and the binding completed.
pub fn fully_bound(claim: &PersistentVolumeClaim) -> bool {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_some_and(|n| !n.is_empty())
        && has_annotation(&claim.metadata, ANN_BIND_COMPLETED)
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

fn volume_capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::try_from(q).ok())
        .unwrap_or(Quantity::ZERO)
}

/// Whether `pv.spec.claimRef` names the claim (and, with a UID, this very object).
pub fn is_bound_to(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    if reference.name != claim.metadata.name
        || reference.namespace.as_deref().unwrap_or_default()
            != claim.metadata.namespace.as_deref().unwrap_or_default()
    {
        return false;
    }
    match reference.uid.as_deref() {
        None | Some("") => true,
        uid => uid == claim.metadata.uid.as_deref(),
    }
}

/// Upstream `CheckNodeAffinity`: the volume's required node affinity matches the node.
pub fn volume_allows_node(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|term| term_matches(term, node))
}

fn binding_mode_delayed(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// PreFilter: sorts the claims or says why the pod cannot be scheduled anywhere.
fn sort_claims(pod: &PodInfo, volumes: &PodVolumes) -> Result<Claims, String> {
    let namespace = pod.pod.metadata.namespace.as_deref().unwrap_or_default();
    let pod_name = pod.pod.metadata.name.as_deref().unwrap_or_default();
    for entry in &volumes.claims {
        let Some(claim) = &entry.claim else {
            return Err(if entry.ephemeral {
                format!(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim {:?}",
                    entry.name
                )
            } else {
                format!("persistentvolumeclaim {:?} not found", entry.name)
            });
        };
        let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase == Some("Lost") {
            let volume = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.as_deref())
                .unwrap_or_default();
            return Err(format!(
                "persistentvolumeclaim {:?} bound to non-existent persistentvolume {volume:?}",
                entry.name
            ));
        }
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "persistentvolumeclaim {:?} is being deleted",
                entry.name
            ));
        }
        if entry.ephemeral {
            let owned = claim.metadata.owner_references.iter().flatten().any(|o| {
                o.controller == Some(true) && Some(&o.uid) == pod.pod.metadata.uid.as_ref()
            });
            if !owned {
                return Err(format!(
                    "PVC {namespace}/{} was not created for pod {namespace}/{pod_name} (pod is not owner)",
                    entry.name
                ));
            }
        }
    }
    let mut claims = Claims::default();
    let mut immediate = false;
    for claim in volumes.claims.iter().filter_map(|c| c.claim.clone()) {
        if fully_bound(&claim) {
            claims.bound.push(claim);
            continue;
        }
        let class = volumes.classes.get(claim_class(&claim)).map(Arc::as_ref);
        let prebound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_some_and(|n| !n.is_empty());
        if binding_mode_delayed(class) && !prebound {
            claims.delayed.push(claim);
        } else {
            immediate = true;
        }
    }
    if immediate {
        return Err(REASON_UNBOUND_IMMEDIATE.into());
    }
    claims.delayed.sort_by_key(|c| claim_request(c));
    Ok(claims)
}

/// Upstream `FindMatchingVolume` for the scheduler: a volume pre-bound to the claim (if the
/// node suits it), else the smallest Available one of the claim's class that fits.
fn find_matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    candidates: impl Iterator<Item = &'a Arc<PersistentVolume>>,
    node: &Node,
    excluded: &HashSet<String>,
) -> Option<Arc<PersistentVolume>> {
    let request = claim_request(claim);
    let class = claim_class(claim);
    let spec = claim.spec.as_ref();
    let claim_mode = spec
        .and_then(|s| s.volume_mode.as_deref())
        .unwrap_or("Filesystem");
    let wanted_modes: &[String] = spec
        .and_then(|s| s.access_modes.as_deref())
        .unwrap_or_default();
    let selector = spec.and_then(|s| s.selector.as_ref());
    let mut smallest: Option<(&Arc<PersistentVolume>, Quantity)> = None;
    for pv in candidates {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        let pv_spec = pv.spec.as_ref();
        if excluded.contains(name) {
            continue;
        }
        let bound_here = is_bound_to(pv, claim);
        if pv_spec.and_then(|s| s.claim_ref.as_ref()).is_some() && !bound_here {
            continue;
        }
        let capacity = volume_capacity(pv);
        if capacity < request {
            continue;
        }
        if pv_spec
            .and_then(|s| s.volume_mode.as_deref())
            .unwrap_or("Filesystem")
            != claim_mode
        {
            continue;
        }
        if pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = volume_allows_node(pv, node);
        if bound_here {
            return affinity_ok.then(|| pv.clone());
        }
        let available = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if !available
            || (selector.is_some()
                && !label_selector_matches(
                    selector,
                    pv.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                ))
            || volume_class(pv) != class
            || !affinity_ok
        {
            continue;
        }
        let modes: &[String] = pv_spec
            .and_then(|s| s.access_modes.as_deref())
            .unwrap_or_default();
        if !wanted_modes.iter().all(|m| modes.contains(m)) {
            continue;
        }
        if smallest.as_ref().is_none_or(|(_, best)| capacity < *best) {
            smallest = Some((pv, capacity));
        }
    }
    smallest.map(|(pv, _)| pv.clone())
}

/// Upstream `MatchTopologySelectorTerms`: no terms match every node.
fn allowed_topology(class: &StorageClass, node: &Node) -> bool {
    let Some(terms) = class.allowed_topologies.as_ref().filter(|t| !t.is_empty()) else {
        return true;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    terms.iter().any(|term| {
        term.match_label_expressions.iter().flatten().all(|e| {
            let requirement = k8s_openapi::api::core::v1::NodeSelectorRequirement {
                key: e.key.clone(),
                operator: "In".into(),
                values: Some(e.values.clone()),
            };
            requirement_matches(&requirement, &labels)
        })
    })
}

/// Upstream `FindPodVolumes` on one node: the plan, or the reasons it does not fit (in
/// upstream's order: node conflict, bind conflict, missing volume).
fn find_pod_volumes(claims: &Claims, volumes: &PodVolumes, node: &Node) -> Result<Plan, Unfit> {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let (mut bound_satisfied, mut bound_found) = (true, true);
    for claim in &claims.bound {
        let name = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or_default();
        match volumes.volumes.get(name) {
            None => {
                bound_found = false;
                break;
            }
            Some(pv) if !volume_allows_node(pv, node) => {
                bound_satisfied = false;
                break;
            }
            Some(_) => {}
        }
    }
    let mut plan = Plan::default();
    let unbound_satisfied = match_delayed(claims, volumes, node, node_name, &mut plan);
    let mut reasons = Vec::new();
    if !bound_satisfied {
        reasons.push(REASON_NODE_CONFLICT.to_string());
    }
    if !unbound_satisfied {
        reasons.push(REASON_BIND_CONFLICT.to_string());
    }
    if !bound_found {
        reasons.push(REASON_PV_NOT_EXIST.to_string());
    }
    if reasons.is_empty() {
        Ok(plan)
    } else {
        Err(reasons)
    }
}

/// Finds a volume or provisioning for every delayed claim on the node, filling `plan`;
/// `false` when one has neither.
fn match_delayed(
    claims: &Claims,
    volumes: &PodVolumes,
    node: &Node,
    node_name: &str,
    plan: &mut Plan,
) -> bool {
    let mut to_provision = Vec::new();
    let mut to_match = Vec::new();
    for claim in &claims.delayed {
        let selected = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANN_SELECTED_NODE));
        match selected {
            // Already being provisioned for another node.
            Some(selected) if selected != node_name => return false,
            Some(_) => to_provision.push(claim.clone()),
            None => to_match.push(claim.clone()),
        }
    }
    let mut chosen = HashSet::new();
    for claim in to_match {
        let class = claim_class(&claim);
        let candidates = volumes
            .volumes
            .values()
            .filter(|pv| volume_class(pv) == class);
        match find_matching_volume(&claim, candidates, node, &chosen) {
            Some(pv) => {
                chosen.insert(pv.metadata.name.clone().unwrap_or_default());
                plan.bindings.push((pv, claim));
            }
            None => to_provision.push(claim),
        }
    }
    for claim in to_provision {
        let class = volumes.classes.get(claim_class(&claim));
        let provisionable = class.is_some_and(|class| {
            !class.provisioner.is_empty()
                && class.provisioner != NO_PROVISIONER
                && allowed_topology(class, node)
        });
        if !provisionable {
            return false;
        }
        plan.provisions.push(claim);
    }
    true
}

/// The plan for the chosen node (Reserve's input): `None` when the pod has no claims to bind
/// there (no volume information, every claim bound, or the node no longer fits).
pub fn plan(pod: &PodInfo, node: &NodeInfo) -> Option<Plan> {
    let volumes = pod.volumes.as_ref()?;
    let claims = sort_claims(pod, volumes).ok()?;
    if claims.delayed.is_empty() {
        return None;
    }
    let plan = find_pod_volumes(&claims, volumes, node.node.as_deref()?).ok()?;
    (!plan.is_empty()).then_some(plan)
}

/// The VolumeBinding plugin.
pub struct VolumeBinding;

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[NodeInfo],
    ) -> Result<(), Unfit> {
        if pod.claims.is_empty() {
            return Ok(());
        }
        let Some(volumes) = pod.volumes.as_ref() else {
            return Ok(());
        };
        let claims = sort_claims(pod, volumes).map_err(|reason| vec![reason])?;
        state.write(STATE_KEY, claims);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if pod.claims.is_empty() {
            return Ok(());
        }
        let (Some(claims), Some(volumes), Some(node)) = (
            state.read::<Claims>(STATE_KEY),
            pod.volumes.as_ref(),
            node.node.as_deref(),
        ) else {
            return Ok(());
        };
        find_pod_volumes(claims, volumes, node).map(|_| ())
    }

    fn unresolvable(&self, _reason: &str) -> bool {
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::framework::test_util::{node, with_node};
    use k8s_openapi::api::core::v1::Pod;

    pub fn from_json<K: serde::de::DeserializeOwned + Default>(value: serde_json::Value) -> K {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn claim(
        name: &str,
        class: &str,
        size: &str,
        extra: serde_json::Value,
    ) -> PersistentVolumeClaim {
        let mut value = serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                "resourceVersion": "1"},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}}}
        });
        merge(&mut value, extra);
        from_json(value)
    }

    pub fn bound_claim(name: &str, volume: &str) -> PersistentVolumeClaim {
        claim(
            name,
            "",
            "1Gi",
            serde_json::json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}},
                "spec": {"volumeName": volume}, "status": {"phase": "Bound"}}),
        )
    }

    pub fn volume(
        name: &str,
        class: &str,
        size: &str,
        host: Option<&str>,
        extra: serde_json::Value,
    ) -> PersistentVolume {
        let mut value = serde_json::json!({
            "metadata": {"name": name, "resourceVersion": "1"},
            "spec": {"storageClassName": class, "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp"}},
            "status": {"phase": "Available"}
        });
        if let Some(host) = host {
            value["spec"]["nodeAffinity"] = serde_json::json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In",
                    "values": [host]}]}]}});
        }
        merge(&mut value, extra);
        from_json(value)
    }

    pub fn class(name: &str, mode: &str, provisioner: &str) -> StorageClass {
        from_json(serde_json::json!({
            "metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode}))
    }

    fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
        match (base, extra) {
            (serde_json::Value::Object(base), serde_json::Value::Object(extra)) => {
                for (key, value) in extra {
                    merge(base.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
            (base, extra) => *base = extra,
        }
    }

    /// A pod using `claims` (by name) with the given cluster objects.
    pub fn pod_with(
        claims: &[&str],
        objects: (
            Vec<PersistentVolumeClaim>,
            Vec<PersistentVolume>,
            Vec<StorageClass>,
        ),
    ) -> PodInfo {
        let volumes: Vec<serde_json::Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| serde_json::json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        let pod: Pod = from_json(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "p-uid"},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}}));
        let mut info = PodInfo::new(Arc::new(pod));
        let (pvcs, pvs, classes) = objects;
        let volumes = PodVolumes {
            claims: info
                .claims
                .iter()
                .map(|c| PodClaim {
                    name: c.name.clone(),
                    ephemeral: c.ephemeral,
                    claim: pvcs
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(c.name.as_str()))
                        .map(|p| Arc::new(p.clone())),
                })
                .collect(),
            classes: classes
                .into_iter()
                .map(|c| (c.metadata.name.clone().unwrap_or_default(), Arc::new(c)))
                .collect(),
            volumes: pvs
                .into_iter()
                .map(|v| (v.metadata.name.clone().unwrap_or_default(), Arc::new(v)))
                .collect(),
        };
        info.volumes = Some(Arc::new(volumes));
        info
    }

    pub fn host(name: &str) -> NodeInfo {
        with_node(node(name, "4", "8Gi", "110"), |n| {
            n.metadata.labels =
                Some([("kubernetes.io/hostname".to_string(), name.to_string())].into());
        })
    }

    /// PreFilter, then Filter on each node: `Ok(fits per node)` or the PreFilter rejection.
    fn run(pod: &PodInfo, nodes: &[NodeInfo]) -> Result<Vec<Result<(), Unfit>>, Unfit> {
        let mut state = CycleState::default();
        VolumeBinding.pre_filter(&mut state, pod, nodes)?;
        Ok(nodes
            .iter()
            .map(|n| VolumeBinding.filter(&state, pod, n))
            .collect())
    }

    fn wffc() -> StorageClass {
        class("local", "WaitForFirstConsumer", NO_PROVISIONER)
    }

    #[test]
    fn pods_without_claims_are_skipped() {
        let pod = crate::framework::test_util::pod("p", None, None);
        let mut state = CycleState::default();
        assert!(VolumeBinding
            .pre_filter(&mut state, &pod, &[host("a")])
            .is_ok());
        assert!(state.read::<Claims>(STATE_KEY).is_none());
        assert!(VolumeBinding.filter(&state, &pod, &host("a")).is_ok());
    }

    #[test]
    fn missing_lost_deleting_and_immediate_claims_are_rejected_in_pre_filter() {
        let nodes = [host("a")];
        let missing = pod_with(&["x"], (vec![], vec![], vec![]));
        assert_eq!(
            run(&missing, &nodes).err(),
            Some(vec![r#"persistentvolumeclaim "x" not found"#.to_string()])
        );
        let lost = claim(
            "x",
            "",
            "1Gi",
            serde_json::json!({"spec": {"volumeName": "gone"}, "status": {"phase": "Lost"}}),
        );
        assert_eq!(
            run(&pod_with(&["x"], (vec![lost], vec![], vec![])), &nodes).err(),
            Some(vec![
                r#"persistentvolumeclaim "x" bound to non-existent persistentvolume "gone""#
                    .to_string()
            ])
        );
        let deleting = claim(
            "x",
            "",
            "1Gi",
            serde_json::json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
        );
        assert_eq!(
            run(&pod_with(&["x"], (vec![deleting], vec![], vec![])), &nodes).err(),
            Some(vec![
                r#"persistentvolumeclaim "x" is being deleted"#.to_string()
            ])
        );
        // No class, an Immediate class, a missing class, or pre-bound by name: all immediate.
        for (claim, classes) in [
            (claim("x", "", "1Gi", serde_json::json!({})), vec![]),
            (
                claim("x", "fast", "1Gi", serde_json::json!({})),
                vec![class("fast", "Immediate", "p")],
            ),
            (claim("x", "nowhere", "1Gi", serde_json::json!({})), vec![]),
            (
                claim(
                    "x",
                    "local",
                    "1Gi",
                    serde_json::json!({"spec": {"volumeName": "pv"}}),
                ),
                vec![wffc()],
            ),
        ] {
            assert_eq!(
                run(&pod_with(&["x"], (vec![claim], vec![], classes)), &nodes).err(),
                Some(vec![REASON_UNBOUND_IMMEDIATE.to_string()])
            );
        }
    }

    #[test]
    fn a_bound_volume_with_node_affinity_allows_only_its_node() {
        let pv = volume(
            "pv",
            "",
            "1Gi",
            Some("a"),
            serde_json::json!({"status": {"phase": "Bound"}}),
        );
        let pod = pod_with(&["x"], (vec![bound_claim("x", "pv")], vec![pv], vec![]));
        let result = run(&pod, &[host("a"), host("b")]);
        assert_eq!(
            result,
            Ok(vec![Ok(()), Err(vec![REASON_NODE_CONFLICT.to_string()])])
        );
        assert!(plan(&pod, &host("a")).is_none());
        let dangling = pod_with(&["x"], (vec![bound_claim("x", "gone")], vec![], vec![]));
        assert_eq!(
            run(&dangling, &[host("a")]),
            Ok(vec![Err(vec![REASON_PV_NOT_EXIST.to_string()])])
        );
    }

    #[test]
    fn a_delayed_claim_needs_a_matching_volume_on_the_node() {
        let x = claim("x", "local", "1Gi", serde_json::json!({}));
        let pod = pod_with(
            &["x"],
            (
                vec![x.clone()],
                vec![volume(
                    "pv-a",
                    "local",
                    "1Gi",
                    Some("a"),
                    serde_json::json!({}),
                )],
                vec![wffc()],
            ),
        );
        assert_eq!(
            run(&pod, &[host("a"), host("b")]),
            Ok(vec![Ok(()), Err(vec![REASON_BIND_CONFLICT.to_string()])])
        );
        let chosen = plan(&pod, &host("a")).map(|p| {
            p.bindings
                .iter()
                .map(|(pv, c)| (pv.metadata.name.clone(), c.metadata.name.clone()))
                .collect::<Vec<_>>()
        });
        assert_eq!(chosen, Some(vec![(Some("pv-a".into()), Some("x".into()))]));
        assert!(plan(&pod, &host("b")).is_none());
    }

    #[test]
    fn the_smallest_volume_matching_class_size_modes_selector_and_phase_wins() {
        let x = claim(
            "x",
            "local",
            "2Gi",
            serde_json::json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}),
        );
        let gold = serde_json::json!({"metadata": {"labels": {"tier": "gold"}}});
        let volumes = vec![
            volume("too-small", "local", "1Gi", None, gold.clone()),
            volume("other-class", "slow", "2Gi", None, gold.clone()),
            volume(
                "read-only",
                "local",
                "2Gi",
                None,
                serde_json::json!({"metadata": {"labels": {"tier": "gold"}}, "spec": {"accessModes": ["ReadOnlyMany"]}}),
            ),
            volume("unlabelled", "local", "2Gi", None, serde_json::json!({})),
            volume(
                "released",
                "local",
                "2Gi",
                None,
                serde_json::json!({"metadata": {"labels": {"tier": "gold"}}, "status": {"phase": "Released"}}),
            ),
            volume(
                "claimed",
                "local",
                "2Gi",
                None,
                serde_json::json!({"metadata": {"labels": {"tier": "gold"}}, "spec": {"claimRef": {"name": "y", "namespace": "default"}}}),
            ),
            volume(
                "block",
                "local",
                "2Gi",
                None,
                serde_json::json!({"metadata": {"labels": {"tier": "gold"}}, "spec": {"volumeMode": "Block"}}),
            ),
            volume("large", "local", "10Gi", None, gold.clone()),
            volume("fits", "local", "3Gi", None, gold),
        ];
        let pod = pod_with(&["x"], (vec![x], volumes, vec![wffc()]));
        let chosen = plan(&pod, &host("a")).and_then(|p| {
            p.bindings
                .first()
                .and_then(|(pv, _)| pv.metadata.name.clone())
        });
        assert_eq!(chosen.as_deref(), Some("fits"));
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_is_taken_even_if_larger() {
        let x = claim("x", "local", "1Gi", serde_json::json!({}));
        let volumes = vec![
            volume("small", "local", "1Gi", None, serde_json::json!({})),
            volume(
                "mine",
                "local",
                "5Gi",
                None,
                serde_json::json!({"spec": {"claimRef": {"name": "x", "namespace": "default"}}}),
            ),
        ];
        let pod = pod_with(&["x"], (vec![x], volumes, vec![wffc()]));
        let chosen = plan(&pod, &host("a")).and_then(|p| {
            p.bindings
                .first()
                .and_then(|(pv, _)| pv.metadata.name.clone())
        });
        assert_eq!(chosen.as_deref(), Some("mine"));
    }

    #[test]
    fn two_claims_do_not_share_one_volume() {
        let claims = vec![
            claim("x", "local", "1Gi", serde_json::json!({})),
            claim("y", "local", "1Gi", serde_json::json!({})),
        ];
        let one = vec![volume("pv-1", "local", "1Gi", None, serde_json::json!({}))];
        let pod = pod_with(&["x", "y"], (claims.clone(), one.clone(), vec![wffc()]));
        assert_eq!(
            run(&pod, &[host("a")]),
            Ok(vec![Err(vec![REASON_BIND_CONFLICT.to_string()])])
        );
        let mut two = one;
        two.push(volume("pv-2", "local", "1Gi", None, serde_json::json!({})));
        let pod = pod_with(&["x", "y"], (claims, two, vec![wffc()]));
        assert_eq!(plan(&pod, &host("a")).map(|p| p.bindings.len()), Some(2));
    }

    #[test]
    fn a_provisioner_class_lets_the_claim_be_provisioned_on_allowed_topologies() {
        let x = claim("x", "csi", "1Gi", serde_json::json!({}));
        let mut csi = class("csi", "WaitForFirstConsumer", "example.com/csi");
        let pod = pod_with(&["x"], (vec![x.clone()], vec![], vec![csi.clone()]));
        assert_eq!(run(&pod, &[host("a")]), Ok(vec![Ok(())]));
        assert_eq!(plan(&pod, &host("a")).map(|p| p.provisions.len()), Some(1));
        csi.allowed_topologies = Some(from_json(serde_json::json!([{"matchLabelExpressions": [
            {"key": "kubernetes.io/hostname", "values": ["b"]}]}])));
        let pod = pod_with(&["x"], (vec![x.clone()], vec![], vec![csi.clone()]));
        assert_eq!(
            run(&pod, &[host("a"), host("b")]),
            Ok(vec![Err(vec![REASON_BIND_CONFLICT.to_string()]), Ok(())])
        );
        // Already handed to the provisioner for node b: no other node will do.
        let selected = claim(
            "x",
            "csi",
            "1Gi",
            serde_json::json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "b"}}}),
        );
        let pod = pod_with(
            &["x"],
            (
                vec![selected],
                vec![],
                vec![class("csi", "WaitForFirstConsumer", "example.com/csi")],
            ),
        );
        assert_eq!(
            run(&pod, &[host("a"), host("b")]),
            Ok(vec![Err(vec![REASON_BIND_CONFLICT.to_string()]), Ok(())])
        );
    }

    #[test]
    fn ephemeral_claims_must_exist_and_belong_to_the_pod() {
        let pod: Pod = from_json(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "p-uid"},
            "spec": {"containers": [{"name": "c"}], "volumes": [{"name": "scratch",
                "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}}]}}));
        let mut info = PodInfo::new(Arc::new(pod));
        assert_eq!(
            info.claims,
            vec![crate::framework::VolumeClaim {
                name: "p-scratch".into(),
                ephemeral: true
            }]
        );
        let with = |claim: Option<PersistentVolumeClaim>| PodVolumes {
            claims: vec![PodClaim {
                name: "p-scratch".into(),
                ephemeral: true,
                claim: claim.map(Arc::new),
            }],
            ..PodVolumes::default()
        };
        info.volumes = Some(Arc::new(with(None)));
        assert_eq!(
            run(&info, &[host("a")]).err(),
            Some(vec![r#"waiting for ephemeral volume controller to create the persistentvolumeclaim "p-scratch""#.to_string()])
        );
        info.volumes = Some(Arc::new(with(Some(bound_claim("p-scratch", "pv")))));
        assert_eq!(
            run(&info, &[host("a")]).err(),
            Some(vec![
                "PVC default/p-scratch was not created for pod default/p (pod is not owner)"
                    .to_string()
            ])
        );
    }
}
