//! This node in the API: registration, the status loop, the Lease heartbeat and the wait for
//! the pod CIDR. Start at [`agent::NodeAgent`]; [`status`] builds the objects, [`info`] reads
//! the machine.

pub mod agent;
pub mod image_gc;
pub mod info;
pub mod status;
