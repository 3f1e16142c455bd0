//! The scheduling framework: what a plugin sees ([`NodeInfo`], [`PodInfo`]), the per-cycle
//! [`CycleState`], the extension-point traits ([`FilterPlugin`] with PreFilter, Filter and the
//! AddPod/RemovePod hooks preemption uses; [`ScorePlugin`] with PreScore, Score and
//! NormalizeScore) and the default plugin registry. Reserve and PreBind exist only for
//! VolumeBinding, which the scheduler drives directly (see [`crate::volumes`]).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use api_types::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec};

use crate::plugins;

/// Highest score a plugin gives.
pub const MAX_NODE_SCORE: i64 = 100;
/// CPU assumed for a container without a request when scoring (upstream: 100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a request when scoring (upstream: 200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// CPU (milli-cores), memory (bytes) and pod count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in milli-cores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Number of pods.
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }

    fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.pods -= other.pods;
    }
}

fn quantity(
    map: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    name: &str,
) -> Option<Quantity> {
    map.and_then(|m| m.get(name))
        .and_then(|q| Quantity::try_from(q).ok())
}

fn to_i64(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Upstream's `computePodResourceRequest` for (milli-cpu, bytes) without overhead, with
/// `per_container` giving one container's pair. Sidecars (init containers with
/// `restartPolicy: Always`) keep running, so they add to the regular containers and to every
/// init container started after them; a plain init container runs alone beside the sidecars
/// before it; the pod needs the larger of the two phases.
fn pod_requests(spec: &PodSpec, per_container: impl Fn(&Container) -> (i64, i64)) -> (i64, i64) {
    let add = |a: (i64, i64), b: (i64, i64)| (a.0 + b.0, a.1 + b.1);
    let max = |a: (i64, i64), b: (i64, i64)| (a.0.max(b.0), a.1.max(b.1));
    let mut running = spec.containers.iter().map(&per_container).fold((0, 0), add);
    let mut sidecars = (0, 0);
    let mut init_peak = (0, 0);
    for container in spec.init_containers.iter().flatten() {
        let own = per_container(container);
        if container.restart_policy.as_deref() == Some("Always") {
            running = add(running, own);
            sidecars = add(sidecars, own);
            init_peak = max(init_peak, sidecars);
        } else {
            init_peak = max(init_peak, add(sidecars, own));
        }
    }
    max(running, init_peak)
}

/// A host port a pod uses: (host IP, protocol, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host IP, `0.0.0.0` when unset.
    pub ip: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The port.
    pub port: i32,
}

/// Cluster facts some plugins need beyond nodes and pods, filled in by the scheduler.
#[derive(Debug, Clone, Default)]
pub struct ClusterInfo {
    /// Namespace name -> its labels (for affinity terms' `namespaceSelector`).
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

/// A volume of a pod backed by a PersistentVolumeClaim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeClaim {
    /// The claim's name (for a generic ephemeral volume `<pod>-<volume>`).
    pub name: String,
    /// Whether it is a generic ephemeral volume (the claim is created for the pod).
    pub ephemeral: bool,
}

/// The claims behind a pod's `persistentVolumeClaim` and `ephemeral` volumes, in volume order.
fn volume_claims(pod: &Pod) -> Vec<VolumeClaim> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|volume| {
            if let Some(source) = &volume.persistent_volume_claim {
                Some(VolumeClaim {
                    name: source.claim_name.clone(),
                    ephemeral: false,
                })
            } else {
                volume.ephemeral.as_ref().map(|_| VolumeClaim {
                    name: format!("{pod_name}-{}", volume.name),
                    ephemeral: true,
                })
            }
        })
        .collect()
}

/// What the plugins need to know about a pod: [`PodFacts`] behind one `Arc`, so the copies
/// the cache makes when a node's pods change (a node's map is copied on write while a
/// scheduling cycle's snapshot shares it) cost a reference count each, not a deep copy of the
/// pod's selectors, ports and claims. Fields read through `Deref`; a write copies the facts
/// first if another holder shares them.
#[derive(Debug, Clone)]
pub struct PodInfo(Arc<PodFacts>);

impl std::ops::Deref for PodInfo {
    type Target = PodFacts;

    fn deref(&self) -> &PodFacts {
        &self.0
    }
}

impl std::ops::DerefMut for PodInfo {
    fn deref_mut(&mut self) -> &mut PodFacts {
        Arc::make_mut(&mut self.0)
    }
}

/// The facts of a [`PodInfo`].
#[derive(Debug, Clone)]
pub struct PodFacts {
    /// The pod.
    pub pod: Arc<Pod>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// The selector of the Services and the ReplicaSet/StatefulSet/ReplicationController owning
    /// the pod, merged (upstream's `DefaultSelector`); used by default topology spreading.
    pub default_selector: Option<LabelSelector>,
    /// Cluster facts (namespace labels); empty unless the scheduler filled them.
    pub cluster: Arc<ClusterInfo>,
    /// Its pod (anti-)affinity terms, resolved once (`None` without pod affinity).
    pub affinity_terms: Option<Arc<plugins::inter_pod_affinity::PodTerms>>,
    /// Its requests (upstream's `computePodResourceRequest`): containers and sidecars, at least
    /// the largest init-container phase, plus overhead.
    pub requests: Resources,
    /// The same with defaults for unset cpu/memory requests (used by scores).
    pub non_zero_requests: Resources,
    /// Host ports it wants.
    pub host_ports: Vec<HostPort>,
    /// Its PersistentVolumeClaim-backed volumes (empty for most pods, which then skip the
    /// volume plugins at no cost).
    pub claims: Vec<VolumeClaim>,
    /// Whether it has a volume VolumeRestrictions checks for disk conflicts (GCE PD, AWS EBS,
    /// iSCSI, RBD).
    pub conflict_volumes: bool,
    /// The claims, volumes and classes its volumes need, filled by the scheduler for the pod
    /// being scheduled when it has claims (`None` otherwise).
    pub volumes: Option<Arc<plugins::volume_binding::PodVolumes>>,
}

impl PodInfo {
    /// Computes the pod's requests and ports.
    pub fn new(pod: Arc<Pod>) -> Self {
        let mut requests = Resources {
            pods: 1,
            ..Resources::default()
        };
        let mut non_zero = Resources {
            pods: 1,
            ..Resources::default()
        };
        let mut host_ports = Vec::new();
        if let Some(spec) = pod.spec.as_ref() {
            let container_requests = |c: &Container| {
                let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
                let cpu = quantity(r, "cpu").map(|q| to_i64(q.milli_value()));
                let memory = quantity(r, "memory").map(|q| to_i64(q.value()));
                (cpu, memory)
            };
            let raw = |c: &Container| {
                let (cpu, memory) = container_requests(c);
                (cpu.unwrap_or(0), memory.unwrap_or(0))
            };
            let with_defaults = |c: &Container| {
                let (cpu, memory) = container_requests(c);
                (
                    cpu.filter(|c| *c != 0).unwrap_or(DEFAULT_MILLI_CPU_REQUEST),
                    memory.filter(|m| *m != 0).unwrap_or(DEFAULT_MEMORY_REQUEST),
                )
            };
            (requests.milli_cpu, requests.memory) = pod_requests(spec, raw);
            (non_zero.milli_cpu, non_zero.memory) = pod_requests(spec, with_defaults);
            for container in &spec.containers {
                for port in container.ports.iter().flatten() {
                    if let Some(host_port) = port.host_port.filter(|p| *p > 0) {
                        host_ports.push(HostPort {
                            ip: port
                                .host_ip
                                .clone()
                                .filter(|ip| !ip.is_empty())
                                .unwrap_or_else(|| "0.0.0.0".into()),
                            protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                            port: host_port,
                        });
                    }
                }
            }
            let overhead = spec.overhead.as_ref();
            if let Some(cpu) = quantity(overhead, "cpu") {
                requests.milli_cpu += to_i64(cpu.milli_value());
                non_zero.milli_cpu += to_i64(cpu.milli_value());
            }
            if let Some(memory) = quantity(overhead, "memory") {
                requests.memory += to_i64(memory.value());
                non_zero.memory += to_i64(memory.value());
            }
        }
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let affinity_terms = plugins::inter_pod_affinity::has_pod_affinity(&pod)
            .then(|| Arc::new(plugins::inter_pod_affinity::PodTerms::of(&pod)));
        let claims = volume_claims(&pod);
        let conflict_volumes = plugins::volume_restrictions::has_conflict_volumes(&pod);
        PodInfo(Arc::new(PodFacts {
            pod,
            priority,
            default_selector: None,
            cluster: Arc::default(),
            affinity_terms,
            requests,
            non_zero_requests: non_zero,
            host_ports,
            claims,
            conflict_volumes,
            volumes: None,
        }))
    }
}

/// A node with the pods assigned (or assumed) to it and what they use.
///
/// Set the node with [`NodeInfo::new`] or [`NodeInfo::set_node`], which also compute what every
/// cycle reads (name, allocatable, images), so plugins never parse the Node per cycle.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node, once seen.
    pub node: Option<Arc<Node>>,
    /// Pods on the node by uid; shared between the cache and its snapshots, copied only when a
    /// node's pods change (so a scheduling cycle's snapshot costs no per-pod copies).
    pub pods: Arc<HashMap<String, PodInfo>>,
    /// Sum of the pods' requests.
    pub requested: Resources,
    /// Sum of the pods' requests with defaults (for scores).
    pub non_zero_requested: Resources,
    /// Host ports in use.
    pub used_ports: Vec<HostPort>,
    /// Pods here with pod affinity or anti-affinity terms (upstream's `PodsWithAffinity`), so
    /// InterPodAffinity skips nodes without any.
    pub pods_with_affinity: usize,
    /// `namespace/claim` -> how many pods here use the claim (upstream's `PVCRefCounts`).
    pub pvc_refs: HashMap<String, usize>,
    /// Pods here with volumes VolumeRestrictions compares (GCE PD, AWS EBS, iSCSI, RBD).
    pub pods_with_conflict_volumes: usize,
    /// The node's name (empty until the node is seen).
    name: Arc<str>,
    /// Allocatable resources, parsed once per node update.
    allocatable: Resources,
    /// Whether the node's Ready condition is True.
    ready: bool,
    /// Image name (qualified) -> size in bytes, for the images the node reports.
    images: Arc<HashMap<String, i64>>,
}

/// The empty image map every node without images shares.
fn no_images() -> Arc<HashMap<String, i64>> {
    static EMPTY: std::sync::OnceLock<Arc<HashMap<String, i64>>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Arc::default).clone()
}

/// The shared map equal to `images`: nodes reporting the same images (every node of a pool
/// pulled the same images) hold one map between them.
fn intern_images(images: HashMap<String, i64>) -> Arc<HashMap<String, i64>> {
    type Interned = HashMap<Vec<(String, i64)>, std::sync::Weak<HashMap<String, i64>>>;
    static INTERNED: std::sync::OnceLock<std::sync::Mutex<Interned>> = std::sync::OnceLock::new();
    let mut key: Vec<(String, i64)> = images.iter().map(|(k, v)| (k.clone(), *v)).collect();
    key.sort_unstable();
    let Ok(mut interned) = INTERNED.get_or_init(Default::default).lock() else {
        return Arc::new(images);
    };
    if let Some(shared) = interned.get(&key).and_then(std::sync::Weak::upgrade) {
        return shared;
    }
    let shared = Arc::new(images);
    // Forget maps no node holds any more before the table doubles.
    if interned.len() >= 64 && interned.len().is_power_of_two() {
        interned.retain(|_, weak| weak.strong_count() > 0);
    }
    interned.insert(key, Arc::downgrade(&shared));
    shared
}

/// Allocatable cpu (milli), memory (bytes) and pods of a node (falls back to capacity).
fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let allocatable = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    Resources {
        milli_cpu: quantity(allocatable, "cpu")
            .map(|q| to_i64(q.milli_value()))
            .unwrap_or(0),
        memory: quantity(allocatable, "memory")
            .map(|q| to_i64(q.value()))
            .unwrap_or(0),
        pods: quantity(allocatable, "pods")
            .map(|q| to_i64(q.value()))
            .unwrap_or(110),
    }
}

impl NodeInfo {
    /// A node without pods.
    pub fn new(node: Arc<Node>) -> Self {
        let mut info = NodeInfo::default();
        info.set_node(node);
        info
    }

    /// Sets (or replaces) the node, keeping its pods.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.name = Arc::from(node.metadata.name.as_deref().unwrap_or_default());
        self.allocatable = node_allocatable(&node);
        self.ready = plugins::node_unschedulable::is_ready(&node);
        let images = plugins::image_locality::node_images(&node);
        // Nodes without images share one empty map, and nodes with the same images share one
        // map: ImageLocality counts the nodes holding an image once per distinct map.
        self.images = if images.is_empty() {
            no_images()
        } else {
            intern_images(images)
        };
        self.node = Some(node);
    }

    /// Forgets the node (its pods stay accounted).
    pub fn clear_node(&mut self) {
        self.node = None;
        self.allocatable = Resources::default();
        self.ready = false;
        self.images = no_images();
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's labels (empty when it has none).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node
            .as_deref()
            .and_then(|n| n.metadata.labels.as_ref())
            .unwrap_or(&EMPTY)
    }

    /// Allocatable cpu (milli), memory (bytes) and pods (falls back to capacity).
    pub fn allocatable(&self) -> Resources {
        self.allocatable
    }

    /// Whether the node is known and its Ready condition is True.
    pub fn ready(&self) -> bool {
        self.ready
    }

    /// Image name (qualified) -> size in bytes, for every image the node reports.
    pub fn images(&self) -> &HashMap<String, i64> {
        &self.images
    }

    /// [`Self::images`] as shared: nodes reporting the same images share one map.
    pub fn shared_images(&self) -> &Arc<HashMap<String, i64>> {
        &self.images
    }

    /// Adds (or replaces) a pod.
    pub fn add_pod(&mut self, info: PodInfo) {
        let uid = info.pod.metadata.uid.clone().unwrap_or_default();
        self.remove_pod(&uid);
        self.requested.add(&info.requests);
        self.non_zero_requested.add(&info.non_zero_requests);
        self.used_ports.extend(info.host_ports.iter().cloned());
        if info.affinity_terms.is_some() {
            self.pods_with_affinity += 1;
        }
        if info.conflict_volumes {
            self.pods_with_conflict_volumes += 1;
        }
        for claim in &info.claims {
            *self.pvc_refs.entry(claim_key(&info, claim)).or_default() += 1;
        }
        Arc::make_mut(&mut self.pods).insert(uid, info);
    }

    /// Removes a pod by uid.
    pub fn remove_pod(&mut self, uid: &str) {
        if !self.pods.contains_key(uid) {
            return;
        }
        if let Some(old) = Arc::make_mut(&mut self.pods).remove(uid) {
            self.requested.sub(&old.requests);
            self.non_zero_requested.sub(&old.non_zero_requests);
            if old.affinity_terms.is_some() {
                self.pods_with_affinity = self.pods_with_affinity.saturating_sub(1);
            }
            if old.conflict_volumes {
                self.pods_with_conflict_volumes = self.pods_with_conflict_volumes.saturating_sub(1);
            }
            for claim in &old.claims {
                let key = claim_key(&old, claim);
                if let Some(count) = self.pvc_refs.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        self.pvc_refs.remove(&key);
                    }
                }
            }
            for port in &old.host_ports {
                if let Some(position) = self.used_ports.iter().position(|p| p == port) {
                    self.used_ports.remove(position);
                }
            }
        }
    }
}

/// `namespace/claim` of one of a pod's claims.
pub fn claim_key(pod: &PodInfo, claim: &VolumeClaim) -> String {
    format!(
        "{}/{}",
        pod.pod.metadata.namespace.as_deref().unwrap_or_default(),
        claim.name
    )
}

/// Why a node does not fit: one or more human-readable reasons (as upstream words them).
pub type Unfit = Vec<String>;

/// Data a plugin computed for one scheduling cycle, cloneable so preemption can try changes.
pub trait StateData: Any + Send + Sync {
    /// A boxed copy.
    fn clone_data(&self) -> Box<dyn StateData>;
    /// For downcasting.
    fn as_any(&self) -> &dyn Any;
    /// For downcasting mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Per-cycle plugin data, keyed by plugin (upstream's `CycleState`).
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn StateData>>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self
                .data
                .iter()
                .map(|(k, v)| (*k, (**v).clone_data()))
                .collect(),
        }
    }
}

impl CycleState {
    /// Stores a plugin's data.
    pub fn write<T: StateData>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// A plugin's data, if written.
    pub fn read<T: 'static>(&self, key: &str) -> Option<&T> {
        self.data
            .get(key)
            .and_then(|v| (**v).as_any().downcast_ref())
    }

    /// A plugin's data, mutably.
    pub fn read_mut<T: 'static>(&mut self, key: &str) -> Option<&mut T> {
        self.data
            .get_mut(key)
            .and_then(|v| (**v).as_any_mut().downcast_mut())
    }
}

/// PreFilter + Filter (+ AddPod/RemovePod) extension points: may the pod run on the node?
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name.
    fn name(&self) -> &'static str;
    /// Computes what [`FilterPlugin::filter`] needs from the whole snapshot (default: nothing);
    /// `Err` rejects the pod on every node for reasons evicting pods cannot fix (upstream's
    /// PreFilter returning `UnschedulableAndUnresolvable`).
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[NodeInfo],
    ) -> Result<(), Unfit> {
        Ok(())
    }
    /// `Ok` if the node fits, otherwise the reasons it does not.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit>;
    /// Updates the pre-filter data as if `added` ran on `node` (used by preemption).
    fn add_pod(&self, _state: &mut CycleState, _pod: &PodInfo, _added: &PodInfo, _node: &NodeInfo) {
    }
    /// Updates the pre-filter data as if `removed` left `node` (used by preemption).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
    ) {
    }
    /// Whether a failure reason cannot be fixed by evicting pods (upstream's
    /// `UnschedulableAndUnresolvable`); such nodes are no preemption candidates.
    fn unresolvable(&self, _reason: &str) -> bool {
        false
    }
}

/// PreScore + Score + NormalizeScore extension points: how good is the node for the pod (0-100)?
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name.
    fn name(&self) -> &'static str;
    /// Computes what [`ScorePlugin::score`] needs from the feasible nodes and the whole snapshot.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _all: &[NodeInfo],
    ) {
    }
    /// The raw score of one node.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Rescales raw scores of all feasible nodes (in `nodes` order) into 0-100 (default: unchanged).
    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], _scores: &mut [i64]) {}
}

/// The default plugin set: filters, and scores with their weights (upstream's defaults).
pub struct Registry {
    /// Filters, run in order.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Scores with weights.
    pub scores: Vec<(Box<dyn ScorePlugin>, i64)>,
    /// `percentageOfNodesToScore`: `None` (or 0) for upstream's adaptive default.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// How long VolumeBinding's PreBind waits for the PV controller (`bindTimeoutSeconds`).
    pub volume_bind_timeout: std::time::Duration,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            filters: vec![
                Box::new(plugins::node_unschedulable::NodeUnschedulable),
                Box::new(plugins::node_unschedulable::NodeReady),
                Box::new(plugins::node_name::NodeName),
                Box::new(plugins::taint_toleration::TaintToleration),
                Box::new(plugins::node_affinity::NodeAffinity),
                Box::new(plugins::node_ports::NodePorts),
                Box::new(plugins::node_resources_fit::NodeResourcesFit::default()),
                Box::new(plugins::volume_restrictions::VolumeRestrictions),
                Box::new(plugins::volume_binding::VolumeBinding),
                Box::new(plugins::pod_topology_spread::PodTopologySpread::default()),
                Box::new(plugins::inter_pod_affinity::InterPodAffinity::default()),
            ],
            scores: vec![
                (Box::new(plugins::taint_toleration::TaintToleration), 3),
                (Box::new(plugins::node_affinity::NodeAffinity), 2),
                (
                    Box::new(plugins::node_resources_fit::NodeResourcesFit::default()),
                    1,
                ),
                (
                    Box::new(plugins::balanced_allocation::BalancedAllocation),
                    1,
                ),
                (
                    Box::new(plugins::pod_topology_spread::PodTopologySpread::default()),
                    2,
                ),
                (
                    Box::new(plugins::inter_pod_affinity::InterPodAffinity::default()),
                    2,
                ),
                (Box::new(plugins::image_locality::ImageLocality), 1),
            ],
            percentage_of_nodes_to_score: None,
            volume_bind_timeout: crate::volumes::BIND_TIMEOUT,
        }
    }
}

/// Scales scores so the best is 100 (`reverse`: so the lowest raw score becomes 100).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *score / max;
        *score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Small builders for plugin tests.
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, NodeSpec, NodeStatus, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> NodeInfo {
        NodeInfo::new(Arc::new(Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), ApiQuantity(cpu.into())),
                        ("memory".to_string(), ApiQuantity(memory.into())),
                        ("pods".to_string(), ApiQuantity(pods.into())),
                    ]
                    .into(),
                ),
                ..NodeStatus::default()
            }),
        }))
    }

    pub fn pod(name: &str, cpu: Option<&str>, memory: Option<&str>) -> PodInfo {
        let mut requests = std::collections::BTreeMap::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".to_string(), ApiQuantity(cpu.into()));
        }
        if let Some(memory) = memory {
            requests.insert("memory".to_string(), ApiQuantity(memory.into()));
        }
        PodInfo::new(Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    resources: Some(ResourceRequirements {
                        requests: Some(requests),
                        ..ResourceRequirements::default()
                    }),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        }))
    }

    pub fn with_spec(info: PodInfo, edit: impl FnOnce(&mut PodSpec)) -> PodInfo {
        let mut pod = (*info.pod).clone();
        edit(pod.spec.get_or_insert_with(PodSpec::default));
        PodInfo::new(Arc::new(pod))
    }

    pub fn ready(info: NodeInfo) -> NodeInfo {
        with_node(info, |n| {
            n.status.get_or_insert_with(Default::default).conditions =
                Some(vec![k8s_openapi::api::core::v1::NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..k8s_openapi::api::core::v1::NodeCondition::default()
                }]);
        })
    }

    pub fn with_node(info: NodeInfo, edit: impl FnOnce(&mut Node)) -> NodeInfo {
        let mut node = info.node.as_deref().cloned().unwrap_or_default();
        edit(&mut node);
        let mut fresh = NodeInfo::new(Arc::new(node));
        for pod in info.pods.values().cloned() {
            fresh.add_pod(pod);
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn pod_requests_sum_containers_and_default_for_scoring() {
        let info = pod("a", Some("250m"), Some("64Mi"));
        assert_eq!(
            info.requests,
            Resources {
                milli_cpu: 250,
                memory: 64 * 1024 * 1024,
                pods: 1
            }
        );
        let empty = pod("b", None, None);
        assert_eq!(empty.requests.milli_cpu, 0);
        assert_eq!(empty.non_zero_requests.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(empty.non_zero_requests.memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn sidecars_add_to_containers_and_plain_init_containers_only_set_a_floor() {
        let container = |name: &str, cpu: &str, restart: Option<&str>| Container {
            name: name.into(),
            restart_policy: restart.map(str::to_string),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some(
                    [(
                        "cpu".to_string(),
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(cpu.into()),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Container::default()
        };
        // Init 1 (plain) 2 cpu; sidecar 1 cpu; init 2 (plain) 3 cpu;
        // regular 1 cpu. Phases: 2, 1+3 = 4, 1+1 = 2; the pod needs 4.
        let info = with_spec(pod("p", Some("1"), None), |spec| {
            spec.init_containers = Some(vec![
                container("init-1", "2", None),
                container("sidecar", "1", Some("Always")),
                container("init-2", "3", None),
            ]);
        });
        assert_eq!(info.requests.milli_cpu, 4000);
        // With a small plain init container the running phase wins: regular 1 + sidecar 1.
        let info = with_spec(pod("q", Some("1"), None), |spec| {
            spec.init_containers = Some(vec![
                container("sidecar", "1", Some("Always")),
                container("init", "500m", None),
            ]);
        });
        assert_eq!(info.requests.milli_cpu, 2000);
        // Scores count the sidecar's default memory too.
        assert_eq!(info.non_zero_requests.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn node_info_tracks_added_and_removed_pods() {
        let mut info = node("n", "2", "4Gi", "110");
        info.add_pod(pod("a", Some("500m"), None));
        info.add_pod(pod("a", Some("500m"), None));
        assert_eq!(info.requested.milli_cpu, 500);
        assert_eq!(info.requested.pods, 1);
        info.remove_pod("a-uid");
        assert_eq!(info.requested, Resources::default());
        assert_eq!(info.allocatable().milli_cpu, 2000);
    }

    #[test]
    fn node_info_counts_claims_and_conflict_volumes_of_its_pods() {
        let mut info = node("n", "2", "4Gi", "110");
        let using = |name: &str| {
            with_spec(pod(name, None, None), |spec| {
                spec.volumes = Some(
                    serde_json::from_value(serde_json::json!([
                        {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
                        {"name": "disk", "awsElasticBlockStore": {"volumeID": "vol-1"}}
                    ]))
                    .unwrap_or_default(),
                );
            })
        };
        info.add_pod(using("a"));
        info.add_pod(using("b"));
        assert_eq!(info.pvc_refs.get("default/shared"), Some(&2));
        assert_eq!(info.pods_with_conflict_volumes, 2);
        info.remove_pod("a-uid");
        assert_eq!(info.pvc_refs.get("default/shared"), Some(&1));
        info.remove_pod("b-uid");
        assert!(info.pvc_refs.is_empty());
        assert_eq!(info.pods_with_conflict_volumes, 0);
    }

    #[test]
    fn normalize_scales_to_the_maximum() {
        let mut scores = [0, 5, 10];
        default_normalize(&mut scores, false);
        assert_eq!(scores, [0, 50, 100]);
        let mut scores = [0, 5, 10];
        default_normalize(&mut scores, true);
        assert_eq!(scores, [100, 50, 0]);
    }
}
