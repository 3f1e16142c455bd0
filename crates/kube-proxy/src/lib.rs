//! kube-proxy: makes Service virtual IPs work on a node with one nftables table (`ip kube-proxy`).
//!
//! Start with [`app::run`]. [`rules::service_rules`] turns one Service and its EndpointSlices
//! into a fragment of the [`model::Ruleset`]; [`table::DesiredTable`] merges the fragments and
//! [`proxier::Proxier`] applies the table through the [`nft::Nftables`] trait as one atomic
//! `nft -f -` transaction: the whole table at first and at each full resync, then only the
//! differences of the services [`objects::Objects`] saw change. ([`sync::Syncer`] applies whole
//! rulesets from [`rules::build_ruleset`] the same way.)
//! [`healthcheck`] serves the `healthCheckNodePort`s of `externalTrafficPolicy: Local` services.

pub mod app;
pub mod conntrack;
pub mod healthcheck;
pub mod model;
pub mod nft;
pub mod objects;
pub mod proxier;
pub mod rules;
pub mod status;
pub mod sync;
pub mod sysctl;
pub mod table;

pub use app::{run, run_with, Options, RunError};
