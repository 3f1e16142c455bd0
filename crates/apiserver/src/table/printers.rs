//! Per-resource table columns (names, types, priorities), following upstream's printers
//! (`pkg/printers/internalversion/printers.go`); the cells are in [`super::cells`] and
//! [`super::extra`]. Resources without a printer get upstream's default table.

use api_types::registry::Resource;
use serde_json::Value;

use super::cells::*;
use super::extra;
use super::{bool_col, col, int_col, typed, Column};

type Printer = fn(&Value) -> Vec<Value>;

const NAME: Column = col("Name", 0, "The object's name.");
const AGE: Column = col("Age", 0, "Time since the object was created.");
const CREATED_AT: Column = typed("Created At", "date", 0, "When the object was created.");
const CONTAINERS: Column = col("Containers", 1, "Container names of the pod template.");
const IMAGES: Column = col("Images", 1, "Container images of the pod template.");
const SELECTOR: Column = col("Selector", 1, "Label selector of the pods.");

/// Columns and cell printer for `resource`.
pub fn printer(resource: &Resource) -> (Vec<Column>, Printer) {
    match (resource.group, resource.plural) {
        ("", "pods") => (
            vec![
                NAME,
                col("Ready", 0, "Ready containers out of all containers."),
                col("Status", 0, "Phase or most telling container state."),
                col(
                    "Restarts",
                    0,
                    "Container restarts, and how long ago the last one was.",
                ),
                AGE,
                col("IP", 1, "The pod's IP address."),
                col("Node", 1, "The node the pod is bound to."),
                col(
                    "Nominated Node",
                    1,
                    "The node the pod preempted others on, if any.",
                ),
                col(
                    "Readiness Gates",
                    1,
                    "Readiness gates met out of all gates.",
                ),
            ],
            pod,
        ),
        ("apps", "deployments") => (
            vec![
                NAME,
                col("Ready", 0, "Ready pods out of desired replicas."),
                col("Up-to-date", 0, "Pods running the current template."),
                col("Available", 0, "Pods ready for at least minReadySeconds."),
                AGE,
                col("Containers", 1, "Container names of the pod template."),
                col("Images", 1, "Container images of the pod template."),
                col("Selector", 1, "Label selector of the pods."),
            ],
            deployment,
        ),
        ("apps", "replicasets") | ("", "replicationcontrollers") => (
            vec![
                NAME,
                int_col("Desired", 0, "Desired replicas."),
                int_col("Current", 0, "Replicas that exist."),
                int_col("Ready", 0, "Ready replicas."),
                AGE,
                col("Containers", 1, "Container names of the pod template."),
                col("Images", 1, "Container images of the pod template."),
                col("Selector", 1, "Label selector of the pods."),
            ],
            replicaset,
        ),
        ("apps", "statefulsets") => (
            vec![
                NAME,
                col("Ready", 0, "Ready pods out of desired replicas."),
                AGE,
                col("Containers", 1, "Container names of the pod template."),
                col("Images", 1, "Container images of the pod template."),
            ],
            statefulset,
        ),
        ("apps", "daemonsets") => (
            vec![
                NAME,
                int_col("Desired", 0, "Nodes that should run the pod."),
                int_col("Current", 0, "Eligible nodes running the pod."),
                int_col("Ready", 0, "Eligible nodes with the pod ready."),
                int_col("Up-to-date", 0, "Nodes running the current template."),
                int_col("Available", 0, "Nodes with the pod available."),
                col("Node Selector", 0, "Node selector of the pod template."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ],
            daemonset,
        ),
        ("", "services") => (
            vec![
                NAME,
                col("Type", 0, "How the service is exposed."),
                col("Cluster-IP", 0, "The virtual IP inside the cluster."),
                col(
                    "External-IP",
                    0,
                    "Addresses reachable from outside the cluster.",
                ),
                col("Port(s)", 0, "Service ports."),
                AGE,
                col("Selector", 1, "Labels of the backing pods."),
            ],
            service,
        ),
        ("", "endpoints") => (
            vec![
                NAME,
                col("Endpoints", 0, "Backend addresses and ports."),
                AGE,
            ],
            extra::endpoints,
        ),
        ("discovery.k8s.io", "endpointslices") => (
            vec![
                NAME,
                col("AddressType", 0, "Address family."),
                col("Ports", 0, "Ports of the endpoints."),
                col("Endpoints", 0, "Endpoint addresses."),
                AGE,
            ],
            extra::endpointslice,
        ),
        ("", "nodes") => (
            vec![
                NAME,
                col("Status", 0, "Node readiness, and whether it is cordoned."),
                col("Roles", 0, "Roles from node-role labels."),
                AGE,
                col("Version", 0, "Kubelet version."),
                col("Internal-IP", 1, "Internal addresses."),
                col("External-IP", 1, "External addresses."),
                col("OS-Image", 1, "Operating system image."),
                col("Kernel-Version", 1, "Kernel release."),
                col("Container-Runtime", 1, "Container runtime and version."),
            ],
            node,
        ),
        ("", "namespaces") => (
            vec![NAME, col("Status", 0, "Active or Terminating."), AGE],
            namespace,
        ),
        ("", "events") => (event_columns(), extra::core_event),
        ("events.k8s.io", "events") => (event_columns(), extra::events_v1_event),
        ("", "podtemplates") => (
            vec![
                NAME,
                col("Containers", 0, "Container names of the template."),
                col("Images", 0, "Container images of the template."),
                col("Pod Labels", 0, "Labels of the template's pods."),
            ],
            extra::pod_template,
        ),
        ("", "resourcequotas") => (
            vec![
                NAME,
                col("Request", 0, "Used and hard request quotas."),
                col("Limit", 0, "Used and hard limit quotas."),
                AGE,
            ],
            extra::resource_quota,
        ),
        ("networking.k8s.io", "ingresses") => (
            vec![
                NAME,
                col("Class", 0, "The ingress class."),
                col("Hosts", 0, "Hosts the rules match."),
                col("Address", 0, "Load-balancer addresses."),
                col("Ports", 0, "Ports served."),
                AGE,
            ],
            extra::ingress,
        ),
        ("networking.k8s.io", "ingressclasses") => (
            vec![
                NAME,
                col("Controller", 0, "The controller handling the class."),
                col("Parameters", 0, "The parameters resource."),
                AGE,
            ],
            extra::ingress_class,
        ),
        ("networking.k8s.io", "networkpolicies") => (
            vec![
                NAME,
                col("Pod-Selector", 0, "The pods the policy applies to."),
                AGE,
            ],
            extra::network_policy,
        ),
        ("storage.k8s.io", "storageclasses") => (
            vec![
                NAME,
                col("Provisioner", 0, "The volume provisioner."),
                col("ReclaimPolicy", 0, "What happens to released volumes."),
                col("VolumeBindingMode", 0, "When volumes are bound."),
                col(
                    "AllowVolumeExpansion",
                    0,
                    "Whether volumes may be expanded.",
                ),
                AGE,
            ],
            extra::storage_class,
        ),
        ("coordination.k8s.io", "leases") => {
            (vec![NAME, col("Holder", 0, "Current holder."), AGE], lease)
        }
        ("", "configmaps") => (
            vec![NAME, col("Data", 0, "Number of keys."), AGE],
            configmap,
        ),
        ("", "secrets") => (
            vec![
                NAME,
                col("Type", 0, "Secret type."),
                col("Data", 0, "Number of keys."),
                AGE,
            ],
            secret,
        ),
        ("", "serviceaccounts") => (
            vec![
                NAME,
                col("Secrets", 0, "Number of referenced secrets."),
                AGE,
            ],
            serviceaccount,
        ),
        ("batch", "jobs") => (
            vec![
                NAME,
                col("Status", 0, "Complete, Failed, Suspended or Running."),
                col(
                    "Completions",
                    0,
                    "Succeeded pods out of the completions wanted.",
                ),
                col("Duration", 0, "How long the job ran or has been running."),
                AGE,
                col("Containers", 1, "Container names of the pod template."),
                col("Images", 1, "Container images of the pod template."),
                col("Selector", 1, "Label selector of the pods."),
            ],
            job,
        ),
        ("batch", "cronjobs") => (
            vec![
                NAME,
                col("Schedule", 0, "Cron schedule."),
                col("Timezone", 0, "Time zone of the schedule."),
                bool_col("Suspend", 0, "Whether new runs are held back."),
                int_col("Active", 0, "Jobs running now."),
                col("Last Schedule", 0, "Time since a job was last started."),
                AGE,
                col(
                    "Containers",
                    1,
                    "Container names of the job's pod template.",
                ),
                col("Images", 1, "Container images of the job's pod template."),
                col("Selector", 1, "Label selector of the job's pods."),
            ],
            cronjob,
        ),
        ("autoscaling", "horizontalpodautoscalers") => (
            vec![
                NAME,
                col("Reference", 0, "The scaled object."),
                col("Targets", 0, "Current and target metric values."),
                col("MinPods", 0, "Lowest replica count."),
                col("MaxPods", 0, "Highest replica count."),
                col("Replicas", 0, "Current replicas."),
                AGE,
            ],
            horizontal_pod_autoscaler,
        ),
        ("", "persistentvolumeclaims") => (
            vec![
                NAME,
                col("Status", 0, "Pending, Bound or Lost."),
                col("Volume", 0, "The bound volume."),
                col("Capacity", 0, "Capacity of the bound volume."),
                col("Access Modes", 0, "Access modes of the bound volume."),
                col("StorageClass", 0, "Storage class asked for."),
                col("VolumeAttributesClass", 0, "Volume attributes class."),
                AGE,
                col("VolumeMode", 1, "Filesystem or Block."),
            ],
            persistent_volume_claim,
        ),
        ("", "persistentvolumes") => (
            vec![
                NAME,
                col("Capacity", 0, "Size of the volume."),
                col("Access Modes", 0, "Ways the volume can be mounted."),
                col(
                    "Reclaim Policy",
                    0,
                    "What happens when the claim is released.",
                ),
                col("Status", 0, "Available, Bound, Released or Failed."),
                col("Claim", 0, "The claim bound to the volume."),
                col("StorageClass", 0, "Storage class of the volume."),
                col("VolumeAttributesClass", 0, "Volume attributes class."),
                col("Reason", 0, "Why the volume is in its phase."),
                AGE,
                col("VolumeMode", 1, "Filesystem or Block."),
            ],
            persistent_volume,
        ),
        ("policy", "poddisruptionbudgets") => (
            vec![
                NAME,
                col("Min Available", 0, "Pods that must stay available."),
                col("Max Unavailable", 0, "Pods that may be unavailable."),
                int_col("Allowed Disruptions", 0, "Evictions allowed now."),
                AGE,
            ],
            pod_disruption_budget,
        ),
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => (
            vec![
                NAME,
                col("Role", 0, "The bound role."),
                AGE,
                col("Users", 1, "Users bound."),
                col("Groups", 1, "Groups bound."),
                col("ServiceAccounts", 1, "Service accounts bound."),
            ],
            role_binding,
        ),
        ("apps", "controllerrevisions") => (
            vec![
                NAME,
                col("Controller", 0, "The owning controller."),
                col("Revision", 0, "Revision number."),
                AGE,
            ],
            controller_revision,
        ),
        ("scheduling.k8s.io", "priorityclasses") => (
            vec![
                NAME,
                int_col("Value", 0, "Priority of pods in this class."),
                bool_col(
                    "Global-Default",
                    0,
                    "Whether pods without a class get this one.",
                ),
                AGE,
                col(
                    "PreemptionPolicy",
                    0,
                    "Whether pods of this class preempt others.",
                ),
            ],
            priority_class,
        ),
        // Upstream's default table (roles, cluster roles, limit ranges, ...).
        _ => (vec![NAME, CREATED_AT], extra::created_at_row),
    }
}

/// The columns of core and `events.k8s.io` Events.
fn event_columns() -> Vec<Column> {
    vec![
        col("Last Seen", 0, "Time since the event was last seen."),
        col("Type", 0, "Normal or Warning."),
        col("Reason", 0, "Short machine-readable reason."),
        col("Object", 0, "The object the event is about."),
        col(
            "Subobject",
            1,
            "The part of the object, such as a container.",
        ),
        col(
            "Source",
            1,
            "The component (and host) that reported the event.",
        ),
        col("Message", 0, "What happened."),
        col("First Seen", 1, "Time since the event was first seen."),
        col("Count", 1, "How many times the event occurred."),
        Column {
            priority: 1,
            ..NAME
        },
    ]
}
