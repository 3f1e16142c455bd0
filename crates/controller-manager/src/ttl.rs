//! The TTL controller (upstream's `ttl`): annotates every Node with
//! `node.alpha.kubernetes.io/ttl`, the seconds its kubelet may serve ConfigMaps and Secrets
//! from its cache, chosen from the cluster size. Small clusters get 0 (every refresh reads the
//! apiserver); at thousands of nodes the kubelets' refreshes would load the apiserver, so the
//! TTL grows with the node count. The size bands overlap, so a count going back and forth
//! across one edge does not flip every node's annotation.
//!
//! As upstream, a node is annotated when it is added or next updated (kubelets post their
//! status at least every five minutes); a change of band does not rewrite every node at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::key::ObjectKey;
use crate::queue::WorkQueue;
use crate::runner;

/// The annotation the kubelet reads.
pub const TTL_ANNOTATION: &str = "node.alpha.kubernetes.io/ttl";

/// One size band: from `min` to `max` nodes the TTL is `ttl_seconds`.
struct Band {
    min: usize,
    max: usize,
    ttl_seconds: u64,
}

/// Upstream's bands.
const BANDS: &[Band] = &[
    Band {
        min: 0,
        max: 100,
        ttl_seconds: 0,
    },
    Band {
        min: 90,
        max: 500,
        ttl_seconds: 15,
    },
    Band {
        min: 450,
        max: 1000,
        ttl_seconds: 30,
    },
    Band {
        min: 900,
        max: 2000,
        ttl_seconds: 60,
    },
    Band {
        min: 1800,
        max: usize::MAX,
        ttl_seconds: 300,
    },
];

/// The band for `nodes` nodes, moving from band `current` only when the count leaves it.
pub fn band_for(current: usize, nodes: usize) -> usize {
    let mut band = current.min(BANDS.len() - 1);
    while nodes > BANDS[band].max && band + 1 < BANDS.len() {
        band += 1;
    }
    while nodes < BANDS[band].min && band > 0 {
        band -= 1;
    }
    band
}

/// The TTL of band `band`, in seconds.
pub fn band_ttl(band: usize) -> u64 {
    BANDS[band.min(BANDS.len() - 1)].ttl_seconds
}

/// Why a node could not be annotated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PATCH failed.
    #[error("setting the ttl annotation of node {node}: {source}")]
    Patch {
        /// The node.
        node: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    nodes: Informer<Node>,
    band: Arc<Mutex<usize>>,
}

fn node_ttl(node: &Node) -> Option<u64> {
    node.metadata
        .annotations
        .as_ref()?
        .get(TTL_ANNOTATION)?
        .parse()
        .ok()
}

/// Starts the TTL controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        nodes: ctx.informers.get::<Node>(),
        band: Arc::default(),
        ctx,
    };
    let queue: WorkQueue<ObjectKey> = WorkQueue::new();
    tokio::spawn(async move {
        controller.nodes.ready().await;
        let watcher = controller.clone();
        runner::forward(&controller.nodes, queue.clone(), move |change| {
            let desired = watcher.observe_count();
            match change {
                Change::Applied { new, .. } if node_ttl(new) != Some(desired) => {
                    vec![ObjectKey::of(new.as_ref())]
                }
                Change::Applied { .. } | Change::Deleted(_) | Change::Resynced => Vec::new(),
            }
        });
        // Resyncs re-examine every node: those not yet annotated are queued then.
        let worker = controller.clone();
        runner::spawn_workers("ttl", queue, 5, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

impl Controller {
    /// Moves the band to the informer's node count; the TTL wanted now.
    fn observe_count(&self) -> u64 {
        let count = self.nodes.store().len();
        let mut band = match self.band.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = band_for(*band, count);
        if next != *band {
            tracing::info!(
                nodes = count,
                ttl_seconds = band_ttl(next),
                "node count crossed a band: new ttl for nodes"
            );
            *band = next;
        }
        band_ttl(next)
    }

    async fn reconcile(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(None, &key.name) else {
            return Ok(None);
        };
        let desired = self.observe_count();
        if node_ttl(&node) == Some(desired) {
            return Ok(None);
        }
        let patch = serde_json::json!({
            "metadata": {"annotations": {TTL_ANNOTATION: desired.to_string()}}
        });
        match Api::<Node>::all(self.ctx.client.clone())
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(node = %key.name, ttl_seconds = desired, "node ttl annotated");
                Ok(None)
            }
            // Deleted meanwhile.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(Error::Patch {
                node: key.name,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_grows_with_the_cluster_and_bands_overlap() {
        let walk = |counts: &[usize]| {
            let mut band = 0;
            counts
                .iter()
                .map(|&n| {
                    band = band_for(band, n);
                    band_ttl(band)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(walk(&[1, 100, 101, 500, 501]), [0, 0, 15, 15, 30]);
        assert_eq!(walk(&[1001, 2001, 5000]), [60, 300, 300]);
        // Back down: each band is kept until the count drops below its lower edge.
        assert_eq!(
            walk(&[5000, 1800, 1799, 900, 899, 450, 449, 90, 89, 0]),
            [300, 300, 60, 60, 30, 30, 15, 15, 0, 0]
        );
        // A count jumping straight to 5,000 lands in the last band.
        assert_eq!(band_for(0, 5000), 4);
    }

    #[test]
    fn a_node_ttl_is_read_from_its_annotation() {
        let mut node = Node::default();
        assert_eq!(node_ttl(&node), None);
        node.metadata.annotations = Some([(TTL_ANNOTATION.to_string(), "15".to_string())].into());
        assert_eq!(node_ttl(&node), Some(15));
    }
}
