//! Per-resource table columns, following upstream's printers
//! (`pkg/printers/internalversion/printers.go`); the cells are in [`super::cells`].

use api_types::registry::Resource;
use serde_json::Value;

use super::cells::*;
use super::{col, Column};

type Printer = fn(&Value) -> Vec<Value>;

const NAME: Column = col("Name", 0, "The object's name.");
const AGE: Column = col("Age", 0, "Time since the object was created.");

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
                col("Desired", 0, "Desired replicas."),
                col("Current", 0, "Replicas that exist."),
                col("Ready", 0, "Ready replicas."),
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
                col("Desired", 0, "Nodes that should run the pod."),
                col("Current", 0, "Eligible nodes running the pod."),
                col("Ready", 0, "Eligible nodes with the pod ready."),
                col("Up-to-date", 0, "Nodes running the current template."),
                col("Available", 0, "Nodes with the pod available."),
                col("Node Selector", 0, "Node selector of the pod template."),
                AGE,
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
            endpoints,
        ),
        ("discovery.k8s.io", "endpointslices") => (
            vec![
                NAME,
                col("AddressType", 0, "Address family."),
                col("Ports", 0, "Ports of the endpoints."),
                col("Endpoints", 0, "Endpoint addresses."),
                AGE,
            ],
            endpointslice,
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
        ("", "events") => (
            vec![
                col("Last Seen", 0, "Time since the event was last seen."),
                col("Type", 0, "Normal or Warning."),
                col("Reason", 0, "Short machine-readable reason."),
                col("Object", 0, "The object the event is about."),
                col("Message", 0, "What happened."),
            ],
            event,
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
                col("Suspend", 0, "Whether new runs are held back."),
                col("Active", 0, "Jobs running now."),
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
                col("Allowed Disruptions", 0, "Evictions allowed now."),
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
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => {
            (vec![NAME, col("Created At", 0, "Creation time.")], role)
        }
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
                col("Value", 0, "Priority of pods in this class."),
                col(
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
        _ => (vec![NAME, AGE], default_row),
    }
}
