//! What every component binary shares: logging setup, the API client built from a kubeconfig,
//! the plain health endpoint and shutdown signals.
//!
//! Start with [`client::from_kubeconfig`] (how every component reaches the apiserver) and
//! [`logging::init`] (called first thing in every `main`).

pub mod alloc;
pub mod client;
pub mod clientauth;
pub mod events;
pub mod health;
pub mod jitter;
pub mod leaderelection;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod reflect;
pub mod signals;
pub mod trim;
