//! Node IPAM (`--allocate-node-cidrs`): gives every Node without `spec.podCIDR` the next free
//! `/--node-cidr-mask-size` subnet of `--cluster-cidr` (the first node gets `10.244.0.0/24`).
//!
//! The choice of a subnet is serial (under one lock, against the subnets the node cache shows
//! plus those written but not yet seen); the Node PATCHes that record the choices run in
//! [`UPDATE_WORKERS`] workers, as upstream's range allocator updates nodes in parallel.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use crate::cidr::Ipv4Cidr;
use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::WorkQueue;
use crate::runner;

/// Why a CIDR could not be assigned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every subnet is taken.
    #[error("no free /{mask} left in {cluster} for node {node}")]
    Exhausted {
        /// The cluster CIDR.
        cluster: String,
        /// The subnet size.
        mask: u8,
        /// The node.
        node: String,
    },
    /// Writing the node failed.
    #[error("setting podCIDR of node {node}: {source}")]
    Patch {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Node PATCHes in flight at once (upstream's `cidrUpdateWorkers`). With one, each
/// allocation waited for the previous PATCH: on a busy apiserver 5,000 registering nodes got
/// their subnets at 4/s, and polled their Node for it meanwhile.
const UPDATE_WORKERS: usize = 30;

/// The first subnet of `cluster` of length `mask` not in `used`.
pub fn next_free(cluster: &Ipv4Cidr, mask: u8, used: &HashSet<Ipv4Cidr>) -> Option<Ipv4Cidr> {
    (0..cluster.subnet_count(mask))
        .filter_map(|i| cluster.subnet(mask, i))
        .find(|candidate| !used.contains(candidate))
}

/// A node's pod CIDRs (`podCIDRs`, else `podCIDR`).
pub fn node_cidrs(node: &Node) -> Vec<Ipv4Cidr> {
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if cidrs.is_empty() {
        cidrs.extend(spec.and_then(|s| s.pod_cidr.clone()));
    }
    cidrs.iter().filter_map(|c| c.parse().ok()).collect()
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    cluster: Ipv4Cidr,
    nodes: Informer<Node>,
    /// Assignments written but maybe not yet in the cache.
    pending: Arc<Mutex<HashMap<String, Ipv4Cidr>>>,
}

/// Starts node IPAM (only meaningful with `--allocate-node-cidrs` and `--cluster-cidr`).
pub fn start(ctx: Arc<Context>) {
    let Some(cluster) = ctx.settings.cluster_cidr else {
        tracing::warn!("nodeipam needs --cluster-cidr; not started");
        return;
    };
    let controller = Controller {
        nodes: ctx.informers.get::<Node>(),
        cluster,
        pending: Arc::default(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.nodes.ready().await;
        let pending = controller.pending.clone();
        runner::forward(
            &controller.nodes,
            queue.clone(),
            move |change| match change {
                Change::Applied { new, .. } => vec![ObjectKey::of(new.as_ref())],
                Change::Deleted(old) => {
                    if let Ok(mut pending) = pending.lock() {
                        pending.remove(&old.name_any());
                    }
                    Vec::new()
                }
                Change::Resynced => Vec::new(),
            },
        );
        let worker = controller.clone();
        // The queue hands a key to one worker at a time; subnets are chosen under a lock.
        runner::spawn_workers("nodeipam", queue, UPDATE_WORKERS, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

impl Controller {
    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(None, &key.name) else {
            return Ok(None);
        };
        if !node_cidrs(&node).is_empty() {
            return Ok(None);
        }
        let assigned = {
            let mut pending = match self.pending.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Forget pending entries the cache now shows (or whose nodes are gone).
            let cached: HashMap<String, Vec<Ipv4Cidr>> = self
                .nodes
                .list()
                .iter()
                .map(|n| (n.name_any(), node_cidrs(n)))
                .collect();
            pending.retain(|name, _| cached.get(name).is_some_and(|c| c.is_empty()));
            if let Some(existing) = pending.get(&key.name) {
                *existing
            } else {
                let mut used: HashSet<Ipv4Cidr> = cached.values().flatten().copied().collect();
                used.extend(pending.values().copied());
                let mask = self.ctx.settings.node_cidr_mask_size;
                let free =
                    next_free(&self.cluster, mask, &used).ok_or_else(|| Error::Exhausted {
                        cluster: self.cluster.to_string(),
                        mask,
                        node: key.name.clone(),
                    })?;
                pending.insert(key.name.clone(), free);
                free
            }
        };
        let cidr = assigned.to_string();
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        Api::<Node>::all(self.ctx.client.clone())
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| Error::Patch {
                node: key.name.clone(),
                source,
            })?;
        tracing::info!(node = %key.name, %cidr, "assigned pod CIDR");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cidr::CidrError;

    #[test]
    fn the_first_node_gets_the_first_subnet_and_later_ones_skip_used_subnets(
    ) -> Result<(), CidrError> {
        let cluster: Ipv4Cidr = "10.244.0.0/16".parse()?;
        assert_eq!(
            next_free(&cluster, 24, &HashSet::new())
                .map(|c| c.to_string())
                .as_deref(),
            Some("10.244.0.0/24")
        );
        let used = HashSet::from(["10.244.0.0/24".parse()?, "10.244.2.0/24".parse()?]);
        assert_eq!(
            next_free(&cluster, 24, &used)
                .map(|c| c.to_string())
                .as_deref(),
            Some("10.244.1.0/24")
        );
        let tiny: Ipv4Cidr = "10.0.0.0/24".parse()?;
        assert_eq!(
            next_free(&tiny, 24, &HashSet::from(["10.0.0.0/24".parse()?])),
            None
        );
        Ok(())
    }
}
