//! Runs a controller's workers: take a key from the queue, reconcile it, requeue on error with
//! back-off or after the delay the reconcile asked for. Also forwards informer changes to a queue.

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use tokio::sync::broadcast::error::RecvError;
use tracing::Instrument;

use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;

/// Spawns `workers` tasks that reconcile keys from `queue` until the process ends.
///
/// `reconcile` returns `Ok(Some(delay))` to look at the key again after `delay`, `Ok(None)` when
/// done, or an error, which is logged and retried with back-off.
pub fn spawn_workers<T, F, Fut, E>(
    controller: &'static str,
    queue: WorkQueue<T>,
    workers: usize,
    reconcile: F,
) where
    T: Clone + Eq + Hash + Send + Sync + Display + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Duration>, E>> + Send,
    E: std::error::Error + 'static,
{
    queue.set_name(controller);
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tokio::spawn(async move {
            loop {
                let key = queue.next().await;
                tracing::debug!(controller, key = %key, "reconciling");
                let span = tracing::debug_span!("reconcile", controller, key = %key);
                match reconcile(key.clone()).instrument(span).await {
                    Ok(requeue) => {
                        queue.forget(&key);
                        if let Some(delay) = requeue {
                            queue.add_after(key.clone(), delay);
                        }
                    }
                    Err(error) => {
                        if is_conflict(&error) {
                            // A write raced a newer version: normal with caches; just retry.
                            tracing::debug!(controller, key = %key, %error, "conflict; will retry");
                        } else {
                            tracing::warn!(controller, key = %key, %error, "reconcile failed; will retry");
                        }
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
}

/// Whether an error (or one of its sources) is the apiserver's 409 Conflict.
pub fn is_conflict(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(kube::Error::Api(status)) = error.downcast_ref::<kube::Error>() {
            if status.code == 409 {
                return true;
            }
        }
        current = error.source();
    }
    false
}

/// Spawns a task that turns every change of `informer` into keys for `queue` via `keys`.
/// After a re-list (or when this subscriber fell behind) every cached object is offered again as
/// an update with `old == new`.
pub fn forward<K, T, F>(informer: &Informer<K>, queue: WorkQueue<T>, keys: F)
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
    T: Clone + Eq + Hash + Send + Sync + 'static,
    F: Fn(&Change<K>) -> Vec<T> + Send + Sync + 'static,
{
    let mut receiver = informer.subscribe();
    let store = informer.store().clone();
    tokio::spawn(async move {
        // Everything already cached counts as seen once at start.
        let resync = |queue: &WorkQueue<T>| {
            for object in store.state() {
                let change = Change::Applied {
                    old: Some(Arc::clone(&object)),
                    new: object,
                };
                for key in keys(&change) {
                    queue.add(key);
                }
            }
        };
        resync(&queue);
        tracing::debug!(objects = store.state().len(), "forwarding changes");
        loop {
            match receiver.recv().await {
                Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => resync(&queue),
                Ok(change) => {
                    for key in keys(&change) {
                        queue.add(key);
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Spawns a task that queues every key `all` yields each `period` (a safety-net resync).
pub fn resync_every<T, F>(queue: WorkQueue<T>, period: Duration, all: F)
where
    T: Clone + Eq + Hash + Send + Sync + 'static,
    F: Fn() -> Vec<T> + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.tick().await;
        loop {
            interval.tick().await;
            for key in all() {
                queue.add(key);
            }
        }
    });
}
