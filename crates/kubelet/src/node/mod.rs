//! This node in the API: registration, the status loop, the Lease heartbeat and the wait for
//! the pod CIDR. Start at [`agent::NodeAgent`]; [`status`] builds the objects, [`info`] reads
//! the machine. Node features: [`static_pods`] (manifest files and mirror pods), [`stats`]
//! (the `/stats/summary` figures, read by [`cgroups`]) and [`eviction`] (node pressure);
//! [`features`] says which are on. [`events`] records what happens to the node as events.

pub mod agent;
pub mod cgroups;
pub mod events;
pub mod eviction;
pub mod features;
pub mod image_gc;
pub mod info;
pub mod static_pods;
pub mod stats;
pub mod status;
