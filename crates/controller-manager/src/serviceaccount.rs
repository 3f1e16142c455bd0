//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;
use crate::runner;

/// The ServiceAccount every namespace gets.
pub const DEFAULT: &str = "default";

/// Why the ServiceAccount could not be ensured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating it failed.
    #[error("creating service account default in {namespace}: {source}")]
    Create {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Whether a namespace accepts new objects (not being deleted).
pub fn is_active(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_none()
        && namespace.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    namespaces: Informer<Namespace>,
    accounts: Informer<ServiceAccount>,
}

/// Starts the ServiceAccount controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        namespaces: ctx.informers.get::<Namespace>(),
        accounts: ctx.informers.get::<ServiceAccount>(),
        ctx,
    };
    let queue: WorkQueue<String> = WorkQueue::new();
    tokio::spawn(async move {
        controller.namespaces.ready().await;
        controller.accounts.ready().await;
        runner::forward(
            &controller.namespaces,
            queue.clone(),
            |change| match change {
                Change::Applied { new, .. } => vec![new.name_any()],
                _ => Vec::new(),
            },
        );
        runner::forward(&controller.accounts, queue.clone(), |change| match change {
            Change::Deleted(old) if old.name_any() == DEFAULT => {
                old.namespace().into_iter().collect()
            }
            _ => Vec::new(),
        });
        let worker = controller.clone();
        runner::spawn_workers("serviceaccount", queue, 1, move |key| {
            let worker = worker.clone();
            async move { worker.reconcile(key).await }
        });
    });
}

impl Controller {
    async fn reconcile(&self, namespace: String) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get(None, &namespace) else {
            return Ok(None);
        };
        if !is_active(&ns) || self.accounts.get(Some(&namespace), DEFAULT).is_some() {
            return Ok(None);
        }
        let account = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT.into()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match Api::<ServiceAccount>::namespaced(self.ctx.client.clone(), &namespace)
            .create(&PostParams::default(), &account)
            .await
        {
            Ok(_) => Ok(None),
            // Exists already, or the namespace started terminating meanwhile.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(None),
            Err(source) => Err(Error::Create { namespace, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceStatus;

    #[test]
    fn terminating_namespaces_are_not_active() {
        let mut ns = Namespace::default();
        assert!(is_active(&ns));
        ns.status = Some(NamespaceStatus {
            phase: Some("Terminating".into()),
            ..NamespaceStatus::default()
        });
        assert!(!is_active(&ns));
    }
}
