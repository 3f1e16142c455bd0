//! One module per scheduler plugin; each keeps its predicate or score as a pure function.

pub mod balanced_allocation;
pub mod node_affinity;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod taint_toleration;
