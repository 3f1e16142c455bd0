//! kube-proxy: makes Service virtual IPs work on a node with one nftables table (`ip kube-proxy`).
//!
//! Start with [`app::run`]. [`rules::build_ruleset`] turns Services and EndpointSlices into a
//! [`model::Ruleset`]; [`sync::Syncer`] applies it through the [`nft::Nftables`] trait as one
//! atomic `nft -f -` transaction (whole table at first, differences afterwards).
//! [`healthcheck`] serves the `healthCheckNodePort`s of `externalTrafficPolicy: Local` services.

pub mod app;
pub mod conntrack;
pub mod healthcheck;
pub mod model;
pub mod nft;
pub mod rules;
pub mod status;
pub mod sync;
pub mod sysctl;

pub use app::{run, run_with, Options, RunError};
