//! The kubelet: the node agent that runs the pods bound to its node.
//!
//! - [`run`] (in [`app`]) wires everything from [`Options`]: the container runtime
//!   ([`runtime`]), the pod network ([`network`]), node registration and heartbeats ([`node`]),
//!   the pod workers ([`pod`]) and the kubelet API ([`server`]).
//! - [`testing`] starts a kubelet in-process on fakes.

pub mod app;
pub mod network;
pub mod node;
pub mod options;
pub mod pod;
pub mod runtime;
pub mod server;
pub mod testing;

pub use app::{run, RunError};
pub use options::Options;
