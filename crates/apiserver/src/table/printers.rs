//! Per-resource table columns, following upstream's printers
//! (`pkg/printers/internalversion/printers.go`); the cells are in [`super::cells`].

use api_types::registry::Resource;
use serde_json::Value;

use super::cells::*;
use super::{col, Column};

type Printer = fn(&Value) -> Vec<Value>;

const NAME: Column = col("Name", 0, "Name must be unique within a namespace.");
const AGE: Column = col(
    "Age",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

/// Columns and cell printer for `resource`.
pub fn printer(resource: &Resource) -> (Vec<Column>, Printer) {
    match (resource.group, resource.plural) {
        ("", "pods") => (
            vec![
                NAME,
                col("Ready", 0, "The aggregate readiness state of this pod for accepting traffic."),
                col("Status", 0, "The aggregate status of the containers in this pod."),
                col("Restarts", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                AGE,
                col("IP", 1, "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
                col("Node", 1, "NodeName is a request to schedule this pod onto a specific node."),
                col("Nominated Node", 1, "nominatedNodeName is set only when this pod preempts other pods on the node."),
                col("Readiness Gates", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
            ],
            pod,
        ),
        ("apps", "deployments") => (
            vec![
                NAME,
                col("Ready", 0, "Number of the pod with ready state"),
                col("Up-to-date", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
                col("Available", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
                AGE,
                col("Containers", 1, "Names of each container in the template."),
                col("Images", 1, "Images referenced by each container in the template."),
                col("Selector", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
            ],
            deployment,
        ),
        ("apps", "replicasets") | ("", "replicationcontrollers") => (
            vec![
                NAME,
                col("Desired", 0, "Replicas is the number of desired replicas."),
                col("Current", 0, "Replicas is the most recently observed number of replicas."),
                col("Ready", 0, "The number of ready replicas for this replica set."),
                AGE,
                col("Containers", 1, "Names of each container in the template."),
                col("Images", 1, "Images referenced by each container in the template."),
                col("Selector", 1, "Selector is a label query over pods that should match the replica count."),
            ],
            replicaset,
        ),
        ("apps", "statefulsets") => (
            vec![
                NAME,
                col("Ready", 0, "Number of the pod with ready state"),
                AGE,
                col("Containers", 1, "Names of each container in the template."),
                col("Images", 1, "Images referenced by each container in the template."),
            ],
            statefulset,
        ),
        ("apps", "daemonsets") => (
            vec![
                NAME,
                col("Desired", 0, "The total number of nodes that should be running the daemon pod."),
                col("Current", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
                col("Ready", 0, "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready."),
                col("Up-to-date", 0, "The total number of nodes that are running updated daemon pod"),
                col("Available", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
                col("Node Selector", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
                AGE,
            ],
            daemonset,
        ),
        ("", "services") => (
            vec![
                NAME,
                col("Type", 0, "type determines how the Service is exposed."),
                col("Cluster-IP", 0, "clusterIP is the IP address of the service."),
                col("External-IP", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
                col("Port(s)", 0, "The list of ports that are exposed by this service."),
                AGE,
                col("Selector", 1, "Route service traffic to pods with label keys and values matching this selector."),
            ],
            service,
        ),
        ("", "endpoints") => (
            vec![NAME, col("Endpoints", 0, "Endpoints is the list of endpoints."), AGE],
            endpoints,
        ),
        ("discovery.k8s.io", "endpointslices") => (
            vec![
                NAME,
                col("AddressType", 0, "addressType specifies the type of address carried by this EndpointSlice."),
                col("Ports", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
                col("Endpoints", 0, "endpoints is a list of unique endpoints in this slice."),
                AGE,
            ],
            endpointslice,
        ),
        ("", "nodes") => (
            vec![
                NAME,
                col("Status", 0, "The status of the node"),
                col("Roles", 0, "The roles of the node"),
                AGE,
                col("Version", 0, "Kubelet Version reported by the node."),
                col("Internal-IP", 1, "List of internal IPs."),
                col("External-IP", 1, "List of external IPs."),
                col("OS-Image", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
                col("Kernel-Version", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                col("Container-Runtime", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
            ],
            node,
        ),
        ("", "namespaces") => (
            vec![NAME, col("Status", 0, "The status of the namespace"), AGE],
            namespace,
        ),
        ("", "events") => (
            vec![
                col("Last Seen", 0, "Time when last event occurred"),
                col("Type", 0, "Type of this event (Normal, Warning), new types could be added in the future."),
                col("Reason", 0, "This should be a short, machine understandable string that gives the reason for this event being generated."),
                col("Object", 0, "Object this event is about."),
                col("Message", 0, "A human-readable description of the status of this operation."),
            ],
            event,
        ),
        ("coordination.k8s.io", "leases") => (
            vec![NAME, col("Holder", 0, "The holder of the lease."), AGE],
            lease,
        ),
        ("", "configmaps") => (
            vec![NAME, col("Data", 0, "Number of data entries in the ConfigMap."), AGE],
            configmap,
        ),
        ("", "secrets") => (
            vec![
                NAME,
                col("Type", 0, "The type of the secret"),
                col("Data", 0, "The number of entries in data and stringData."),
                AGE,
            ],
            secret,
        ),
        ("", "serviceaccounts") => (
            vec![NAME, col("Secrets", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE],
            serviceaccount,
        ),
        _ => (vec![NAME, AGE], default_row),
    }
}
