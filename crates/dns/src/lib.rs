//! kube-dns: the cluster DNS add-on, answering `<svc>.<ns>.svc.<domain>` and friends.
//!
//! Start with [`app::run`]. Watches of Services and EndpointSlices rebuild an [`index::Index`];
//! [`answer::resolve`] answers one question from it (pure, unit-tested);
//! [`server::ClusterDns`] is the hickory-server handler serving UDP and TCP, forwarding other
//! names through [`forward::Forwarder`] and counting in [`metrics::DnsMetrics`]; [`selfreg`] keeps the `kube-dns` Service and its
//! EndpointSlice pointing at this process.

pub mod answer;
pub mod app;
pub mod forward;
pub mod index;
pub mod metrics;
pub mod selfreg;
pub mod server;

pub use app::{run, start, Options, RunError, Started};
