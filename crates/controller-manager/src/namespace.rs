//! The namespace controller: when a namespace is being deleted, marks it `Terminating`, deletes
//! every namespaced object in it (the resources in the registry that can be listed and deleted),
//! and once nothing is left removes the `kubernetes` finalizer through `namespaces/{name}/finalize`.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceStatus};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
    PropagationPolicy,
};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;
use crate::runner;

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// Why a namespace could not be cleaned up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing a resource in the namespace failed.
    #[error("listing {resource} in {namespace}: {source}")]
    List {
        /// The resource.
        resource: String,
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an object failed.
    #[error("deleting {resource} {name} in {namespace}: {source}")]
    Delete {
        /// The resource.
        resource: String,
        /// The object.
        name: String,
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Updating the namespace (phase or finalize) failed.
    #[error("updating namespace {namespace}: {source}")]
    Update {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The namespaced resources to empty: listable and deletable ones from the registry.
pub fn namespaced_resources() -> Vec<ApiResource> {
    let mut seen = Vec::new();
    api_types::registry::RESOURCES
        .iter()
        .filter(|r| r.namespaced && r.supports("list") && r.supports("delete"))
        .filter(|r| {
            // One version per resource is enough.
            let key = (r.group, r.plural);
            if seen.contains(&key) {
                false
            } else {
                seen.push(key);
                true
            }
        })
        .map(|r| {
            ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(r.group, r.version, r.kind),
                r.plural,
            )
        })
        .collect()
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    namespaces: Informer<Namespace>,
}

/// Starts the namespace controller.
pub fn start(ctx: Arc<Context>) {
    let controller = Controller {
        namespaces: ctx.informers.get::<Namespace>(),
        ctx,
    };
    let queue: WorkQueue<String> = WorkQueue::new();
    tokio::spawn(async move {
        controller.namespaces.ready().await;
        runner::forward(
            &controller.namespaces,
            queue.clone(),
            |change| match change {
                Change::Applied { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                    vec![new.name_any()]
                }
                _ => Vec::new(),
            },
        );
        let worker = controller.clone();
        runner::spawn_workers(
            "namespace",
            queue,
            controller.ctx.settings.workers.namespace,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

impl Controller {
    async fn reconcile(&self, name: String) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get(None, &name) else {
            return Ok(None);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(None);
        }
        let api: Api<Namespace> = Api::all(self.ctx.client.clone());
        let update_error = |source| Error::Update {
            namespace: name.clone(),
            source,
        };
        let mut current = (*ns).clone();
        if current.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
            current
                .status
                .get_or_insert_with(NamespaceStatus::default)
                .phase = Some("Terminating".into());
            current = match api
                .replace_status(&name, &PostParams::default(), &current)
                .await
            {
                Ok(updated) => updated,
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
                Err(source) => return Err(update_error(source)),
            };
        }
        let finalizers = current
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(None);
        }
        let remaining = self.delete_content(&name).await?;
        if remaining > 0 {
            tracing::debug!(namespace = %name, remaining, "waiting for namespace content to go");
            return Ok(Some(Duration::from_secs(2)));
        }
        if let Some(spec) = current.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(source) => Err(update_error(source)),
        }
    }

    /// Deletes what is left in the namespace; returns how many objects still exist.
    async fn delete_content(&self, namespace: &str) -> Result<usize, Error> {
        let mut remaining = 0;
        for resource in namespaced_resources() {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.ctx.client.clone(), namespace, &resource);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                // Not served after all: nothing of it can exist.
                Err(kube::Error::Api(status)) if matches!(status.code, 404 | 405) => continue,
                Err(source) => {
                    return Err(Error::List {
                        resource: resource.plural.clone(),
                        namespace: namespace.into(),
                        source,
                    })
                }
            };
            for object in list.items {
                remaining += 1;
                if object.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                let params = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                match api.delete(&object.name_any(), &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if matches!(status.code, 404 | 405) => {}
                    Err(source) => {
                        return Err(Error::Delete {
                            resource: resource.plural.clone(),
                            name: object.name_any(),
                            namespace: namespace.into(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_covers_workloads_and_skips_cluster_scoped_kinds() {
        let plurals: Vec<String> = namespaced_resources()
            .into_iter()
            .map(|r| r.plural)
            .collect();
        for expected in [
            "pods",
            "services",
            "deployments",
            "replicasets",
            "configmaps",
        ] {
            assert!(plurals.iter().any(|p| p == expected), "{expected} missing");
        }
        assert!(!plurals.iter().any(|p| p == "nodes" || p == "namespaces"));
        assert!(!plurals.iter().any(|p| p == "bindings"));
    }
}
