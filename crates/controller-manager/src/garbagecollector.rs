//! The garbage collector: deletes objects whose owners are all gone (checked by uid, confirmed
//! with a live read), and carries out foreground and orphan deletion of owners: with the
//! `foregroundDeletion` finalizer it deletes dependents and removes the finalizer once no
//! dependent with `blockOwnerDeletion` is left; with `orphan` it strips the owner reference from
//! dependents, then removes the finalizer.
//!
//! It watches a fixed set of kinds that have owners in this cluster (and their owners) as dynamic
//! objects; [`classify_owners`] is the pure decision for one dependent.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::{metadata_only, Change, Informer};
use crate::queue::WorkQueue;
use crate::runner;

/// Finalizer asking for dependents to be deleted before the owner.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer asking for dependents to be orphaned.
pub const ORPHAN: &str = "orphan";

/// Kinds watched: those that have owners here, and their owners.
const WATCHED: &[&str] = &[
    "pods",
    "replicasets",
    "deployments",
    "endpointslices",
    "controllerrevisions",
    "jobs",
    "cronjobs",
    "statefulsets",
    "daemonsets",
    "services",
];

/// Why a garbage-collection step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an owner failed.
    #[error("looking up owner {owner}: {source}")]
    GetOwner {
        /// The owner reference.
        owner: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a dependent failed.
    #[error("deleting {object}: {source}")]
    Delete {
        /// The object.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing an owner's dependents failed.
    #[error("listing dependents of {owner}: {source}")]
    ListDependents {
        /// The owner.
        owner: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the latest copy of a dependent failed.
    #[error("reading {object}: {source}")]
    Get {
        /// The object.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Patching owner references or finalizers failed.
    #[error("patching {object}: {source}")]
    Patch {
        /// The object.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// A queued object: which watched resource, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GcKey {
    resource: usize,
    namespace: String,
    name: String,
}

impl fmt::Display for GcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}/{}", self.resource, self.namespace, self.name)
    }
}

/// What is known about one owner of a dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// The owner exists and is being deleted in the foreground.
    WaitingForDependents,
    /// No object with that uid exists.
    Absent,
}

/// What to do with a dependent given its owners' states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Keep,
    /// Remove the references to these owner uids (some owner is still alive).
    RemoveReferences(Vec<String>),
    /// Delete it in the background (every owner is gone).
    DeleteBackground,
    /// Delete it in the foreground (its owners are gone or waiting on it).
    DeleteForeground,
}

/// The decision for one dependent (upstream's `attemptToDeleteItem`).
pub fn classify_owners(owners: &[(OwnerReference, OwnerState)]) -> Verdict {
    if owners.is_empty() {
        return Verdict::Keep;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let dangling: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Absent)
        .map(|(r, _)| r.uid.clone())
        .collect();
    let waiting = owners
        .iter()
        .any(|(_, s)| *s == OwnerState::WaitingForDependents);
    if solid {
        if dangling.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RemoveReferences(dangling)
        }
    } else if waiting {
        Verdict::DeleteForeground
    } else {
        Verdict::DeleteBackground
    }
}

struct Watched {
    resource: ApiResource,
    namespaced: bool,
    informer: Informer<DynamicObject>,
}

/// The watched objects that name each owner uid, kept from the informers' changes so that an
/// owner's deletion finds its dependents without scanning every cached object (at 150,000 pods
/// and 20 deletions a second the scan took 0.4 core). Entries may outlive a reference (after a
/// re-list, say): a stale key only queues an object that is then found to need nothing.
#[derive(Debug, Default)]
struct OwnerIndex {
    by_owner: HashMap<String, HashSet<GcKey>>,
}

impl OwnerIndex {
    /// Records that `key` changed from `old` to `new` (`None`: absent).
    fn apply(&mut self, key: &GcKey, old: Option<&DynamicObject>, new: Option<&DynamicObject>) {
        let new_refs = new.map(|o| o.owner_references()).unwrap_or_default();
        for gone in old.map(|o| o.owner_references()).unwrap_or_default() {
            if new_refs.iter().any(|r| r.uid == gone.uid) {
                continue;
            }
            if let Some(keys) = self.by_owner.get_mut(&gone.uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_owner.remove(&gone.uid);
                }
            }
        }
        for reference in new_refs {
            if let Some(keys) = self.by_owner.get_mut(&reference.uid) {
                if !keys.contains(key) {
                    keys.insert(key.clone());
                }
            } else {
                self.by_owner
                    .insert(reference.uid.clone(), HashSet::from([key.clone()]));
            }
        }
    }

    /// Keys of the objects last seen referring to `uid`.
    fn dependents(&self, uid: &str) -> Vec<GcKey> {
        self.by_owner
            .get(uid)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Clone)]
struct Collector {
    ctx: Arc<Context>,
    watched: Arc<Vec<Watched>>,
    queue: WorkQueue<GcKey>,
    owners: Arc<Mutex<OwnerIndex>>,
}

fn api_resource(resource: &api_types::registry::Resource) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(resource.group, resource.version, resource.kind),
        resource.plural,
    )
}

fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

fn has_finalizer(object: &DynamicObject, finalizer: &str) -> bool {
    object.finalizers().iter().any(|f| f == finalizer)
}

/// Starts the garbage collector.
pub fn start(ctx: Arc<Context>) {
    let watched: Vec<Watched> = api_types::registry::RESOURCES
        .iter()
        .filter(|r| WATCHED.contains(&r.plural) && r.supports("watch") && r.supports("delete"))
        .map(|r| {
            let resource = api_resource(r);
            Watched {
                informer: ctx.informers.dynamic(&resource),
                resource,
                namespaced: r.namespaced,
            }
        })
        .collect();
    let collector = Collector {
        ctx,
        watched: Arc::new(watched),
        queue: WorkQueue::new(),
        owners: Arc::default(),
    };
    tokio::spawn(async move {
        for watched in collector.watched.iter() {
            // A kind the apiserver does not serve must not stop the collector.
            if tokio::time::timeout(Duration::from_secs(30), watched.informer.ready())
                .await
                .is_err()
            {
                tracing::warn!(resource = %watched.resource.plural, "not synced after 30s; collecting without it");
            }
        }
        for (index, watched) in collector.watched.iter().enumerate() {
            let handler = collector.clone();
            runner::forward(&watched.informer, collector.queue.clone(), move |change| {
                handler.keys_for(index, change)
            });
        }
        let all = collector.clone();
        runner::resync_every(
            collector.queue.clone(),
            Duration::from_secs(60),
            move || all.all_candidates(),
        );
        let worker = collector.clone();
        runner::spawn_workers(
            "garbagecollector",
            collector.queue.clone(),
            collector.ctx.settings.workers.garbagecollector,
            move |key| {
                let worker = worker.clone();
                async move { worker.reconcile(key).await }
            },
        );
    });
}

impl Collector {
    fn key(index: usize, object: &DynamicObject) -> GcKey {
        GcKey {
            resource: index,
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        }
    }

    fn is_candidate(object: &DynamicObject) -> bool {
        !object.owner_references().is_empty()
            || (object.metadata.deletion_timestamp.is_some()
                && (has_finalizer(object, FOREGROUND) || has_finalizer(object, ORPHAN)))
    }

    fn all_candidates(&self) -> Vec<GcKey> {
        let mut keys = Vec::new();
        for (index, watched) in self.watched.iter().enumerate() {
            for object in watched.informer.list() {
                if Self::is_candidate(&object) {
                    keys.push(Self::key(index, &object));
                }
            }
        }
        keys
    }

    /// Keys for a change: the object itself, its owners (they may be waiting on it) and, when it
    /// is deleted, its dependents.
    fn keys_for(&self, index: usize, change: &Change<DynamicObject>) -> Vec<GcKey> {
        let mut keys = Vec::new();
        let (object, old, deleted) = match change {
            Change::Applied { old, new } => (new, old.as_deref(), false),
            Change::Deleted(old) => (old, Some(&**old), true),
            Change::Resynced => return keys,
        };
        let key = Self::key(index, object);
        {
            let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            owners.apply(&key, old, (!deleted).then_some(&**object));
            if deleted {
                if let Some(uid) = object.uid() {
                    keys.extend(owners.dependents(&uid));
                }
            }
        }
        if !deleted && Self::is_candidate(object) {
            keys.push(key);
        }
        for reference in object.owner_references() {
            if let Some((owner_index, owner)) =
                self.find_owner(reference, object.namespace().as_deref())
            {
                keys.push(Self::key(owner_index, &owner));
            }
        }
        keys
    }

    fn watched_index(&self, reference: &OwnerReference) -> Option<usize> {
        let (group, _) = split_api_version(&reference.api_version);
        self.watched
            .iter()
            .position(|w| w.resource.group == group && w.resource.kind == reference.kind)
    }

    fn find_owner(
        &self,
        reference: &OwnerReference,
        namespace: Option<&str>,
    ) -> Option<(usize, Arc<DynamicObject>)> {
        let index = self.watched_index(reference)?;
        let watched = &self.watched[index];
        let namespace = if watched.namespaced { namespace } else { None };
        watched
            .informer
            .get_dynamic(&watched.resource, namespace, &reference.name)
            .filter(|o| o.uid().as_deref() == Some(reference.uid.as_str()))
            .map(|o| (index, o))
    }

    /// Every cached object with an owner reference to `uid`, with that reference: a scan of
    /// every cache, for the rare owners deleted in the foreground or orphaning. The caches may
    /// not yet hold a dependent created just before its owner was deleted (each kind's watch
    /// runs at its own pace); [`Self::live_dependents_of`] is the consistent answer.
    fn dependents_of(&self, uid: &str) -> Vec<(usize, Arc<DynamicObject>, OwnerReference)> {
        let mut dependents = Vec::new();
        for (index, watched) in self.watched.iter().enumerate() {
            for object in watched.informer.list() {
                if let Some(reference) = object.owner_references().iter().find(|r| r.uid == uid) {
                    dependents.push((index, Arc::clone(&object), reference.clone()));
                }
            }
        }
        dependents
    }

    /// Every object with an owner reference to `owner`, read from the apiserver with consistent
    /// metadata lists (one per watched kind, in the owner's namespace when it has one): what an
    /// owner must check before its orphan or foreground finalizer is removed, since a dependent
    /// the caches have not seen yet would otherwise keep a reference to a deleted owner and be
    /// collected.
    async fn live_dependents_of(
        &self,
        owner: &DynamicObject,
        uid: &str,
    ) -> Result<Vec<(usize, Arc<DynamicObject>, OwnerReference)>, Error> {
        let owner_namespace = owner.namespace();
        let lists = self
            .watched
            .iter()
            .enumerate()
            // A namespaced owner cannot own cluster-scoped objects.
            .filter(|(_, watched)| watched.namespaced || owner_namespace.is_none())
            .map(|(index, watched)| {
                let api = match &owner_namespace {
                    Some(namespace) => self.api(&watched.resource, true, namespace),
                    None => Api::all_with(self.ctx.client.clone(), &watched.resource),
                };
                async move { (index, api.list_metadata(&ListParams::default()).await) }
            });
        let mut dependents = Vec::new();
        for (index, listed) in join_all(lists).await {
            let listed = listed.map_err(|source| Error::ListDependents {
                owner: owner.name_any(),
                source,
            })?;
            for object in listed.items {
                if let Some(reference) = object.owner_references().iter().find(|r| r.uid == uid) {
                    let reference = reference.clone();
                    let object = metadata_only(&self.watched[index].resource, object.metadata);
                    dependents.push((index, Arc::new(object), reference));
                }
            }
        }
        Ok(dependents)
    }

    fn api(&self, resource: &ApiResource, namespaced: bool, namespace: &str) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(self.ctx.client.clone(), namespace, resource)
        } else {
            Api::all_with(self.ctx.client.clone(), resource)
        }
    }

    /// The owner's state, from the cache or (when the cache does not have it) a live read.
    async fn owner_state(
        &self,
        reference: &OwnerReference,
        namespace: &str,
    ) -> Result<OwnerState, Error> {
        let state_of = |owner: &DynamicObject| {
            if owner.metadata.deletion_timestamp.is_some() && has_finalizer(owner, FOREGROUND) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            }
        };
        if let Some((_, owner)) = self.find_owner(reference, Some(namespace)) {
            return Ok(state_of(&owner));
        }
        let (group, version) = split_api_version(&reference.api_version);
        let Some(entry) = api_types::registry::find_by_kind(group, version, &reference.kind) else {
            // A kind we cannot look up: never delete on a guess.
            return Ok(OwnerState::Solid);
        };
        let api = self.api(&api_resource(entry), entry.namespaced, namespace);
        let owner = api
            .get_opt(&reference.name)
            .await
            .map_err(|source| Error::GetOwner {
                owner: format!("{}/{}", reference.kind, reference.name),
                source,
            })?;
        Ok(match owner {
            Some(owner) if owner.uid().as_deref() == Some(reference.uid.as_str()) => {
                state_of(&owner)
            }
            _ => OwnerState::Absent,
        })
    }

    /// What its owners' states call for.
    async fn verdict(&self, object: &DynamicObject, namespace: &str) -> Result<Verdict, Error> {
        let mut owners = Vec::new();
        for reference in object.owner_references() {
            owners.push((
                reference.clone(),
                self.owner_state(reference, namespace).await?,
            ));
        }
        Ok(classify_owners(&owners))
    }

    /// The object's metadata as the apiserver has it now (`None`: gone).
    async fn latest(
        &self,
        index: usize,
        object: &DynamicObject,
    ) -> Result<Option<DynamicObject>, Error> {
        let watched = &self.watched[index];
        let api = self.api(
            &watched.resource,
            watched.namespaced,
            &object.namespace().unwrap_or_default(),
        );
        let latest = api
            .get_metadata_opt(&object.name_any())
            .await
            .map_err(|source| Error::Get {
                object: format!("{}/{}", watched.resource.kind, object.name_any()),
                source,
            })?;
        Ok(latest.map(|meta| metadata_only(&watched.resource, meta.metadata)))
    }

    async fn delete(
        &self,
        index: usize,
        object: &DynamicObject,
        policy: PropagationPolicy,
    ) -> Result<(), Error> {
        let watched = &self.watched[index];
        let api = self.api(
            &watched.resource,
            watched.namespaced,
            &object.namespace().unwrap_or_default(),
        );
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: object.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        tracing::info!(kind = %watched.resource.kind, object = %object.name_any(), "garbage collecting");
        match api.delete(&object.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(source) => Err(Error::Delete {
                object: object.name_any(),
                source,
            }),
        }
    }

    async fn patch(
        &self,
        index: usize,
        object: &DynamicObject,
        patch: serde_json::Value,
    ) -> Result<(), Error> {
        let watched = &self.watched[index];
        let api = self.api(
            &watched.resource,
            watched.namespaced,
            &object.namespace().unwrap_or_default(),
        );
        match api
            .patch(
                &object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Patch {
                object: object.name_any(),
                source,
            }),
        }
    }

    async fn remove_finalizer(
        &self,
        index: usize,
        object: &DynamicObject,
        finalizer: &str,
    ) -> Result<(), Error> {
        let remaining: Vec<&String> = object
            .finalizers()
            .iter()
            .filter(|f| *f != finalizer)
            .collect();
        let patch = serde_json::json!({
            "metadata": {
                "finalizers": if remaining.is_empty() { serde_json::Value::Null } else { serde_json::json!(remaining) },
                "resourceVersion": object.resource_version(),
            }
        });
        self.patch(index, object, patch).await
    }

    async fn reconcile(&self, key: GcKey) -> Result<Option<Duration>, Error> {
        let Some(watched) = self.watched.get(key.resource) else {
            return Ok(None);
        };
        let namespace = if watched.namespaced {
            Some(key.namespace.as_str())
        } else {
            None
        };
        let Some(object) = watched
            .informer
            .get_dynamic(&watched.resource, namespace, &key.name)
        else {
            return Ok(None);
        };
        let Some(uid) = object.uid() else {
            return Ok(None);
        };
        if object.metadata.deletion_timestamp.is_some() {
            if has_finalizer(&object, ORPHAN) {
                for (index, dependent, _) in self.live_dependents_of(&object, &uid).await? {
                    let references: Vec<&OwnerReference> = dependent
                        .owner_references()
                        .iter()
                        .filter(|r| r.uid != uid)
                        .collect();
                    let patch = serde_json::json!({
                        "metadata": {"ownerReferences": if references.is_empty() { serde_json::Value::Null } else { serde_json::json!(references) }}
                    });
                    self.patch(index, &dependent, patch).await?;
                }
                self.remove_finalizer(key.resource, &object, ORPHAN).await?;
                return Ok(None);
            }
            if has_finalizer(&object, FOREGROUND) {
                let blocks = |(_, _, reference): &(usize, Arc<DynamicObject>, OwnerReference)| {
                    reference.block_owner_deletion == Some(true)
                };
                let mut dependents = self.dependents_of(&uid);
                if !dependents.iter().any(blocks) {
                    // The owner may go once this pass is done: confirm against the apiserver.
                    dependents = self.live_dependents_of(&object, &uid).await?;
                }
                let deletes = dependents
                    .iter()
                    .filter(|(_, d, _)| d.metadata.deletion_timestamp.is_none())
                    .map(|(index, dependent, reference)| {
                        let policy = if reference.block_owner_deletion == Some(true) {
                            PropagationPolicy::Foreground
                        } else {
                            PropagationPolicy::Background
                        };
                        self.delete(*index, dependent, policy)
                    });
                for result in join_all(deletes).await {
                    result?;
                }
                if dependents.iter().any(blocks) {
                    // Dependents' deletion events bring us back; the delay is a safety net.
                    return Ok(Some(Duration::from_secs(5)));
                }
                self.remove_finalizer(key.resource, &object, FOREGROUND)
                    .await?;
            }
            return Ok(None);
        }
        let namespace = object.namespace().unwrap_or_default();
        let mut object = object;
        let mut verdict = self.verdict(&object, &namespace).await?;
        if verdict != Verdict::Keep {
            // Act on the latest copy, as upstream does: the cache may still show a reference an
            // orphaning owner has just removed before it went, and that owner is gone now.
            let Some(latest) = self.latest(key.resource, &object).await? else {
                return Ok(None);
            };
            if latest.uid().as_deref() != Some(uid.as_str())
                || latest.metadata.deletion_timestamp.is_some()
            {
                // Replaced or being deleted: its own change brings it back.
                return Ok(None);
            }
            if latest.owner_references() != object.owner_references() {
                verdict = self.verdict(&latest, &namespace).await?;
                object = Arc::new(latest);
            }
        }
        match verdict {
            Verdict::Keep => {}
            Verdict::RemoveReferences(uids) => {
                let references: Vec<&OwnerReference> = object
                    .owner_references()
                    .iter()
                    .filter(|r| !uids.contains(&r.uid))
                    .collect();
                let patch =
                    serde_json::json!({"metadata": {"ownerReferences": references, "uid": uid}});
                self.patch(key.resource, &object, patch).await?;
            }
            Verdict::DeleteBackground => {
                let policy = if has_finalizer(&object, ORPHAN) {
                    PropagationPolicy::Orphan
                } else if has_finalizer(&object, FOREGROUND) {
                    PropagationPolicy::Foreground
                } else {
                    PropagationPolicy::Background
                };
                self.delete(key.resource, &object, policy).await?;
            }
            Verdict::DeleteForeground => {
                self.delete(key.resource, &object, PropagationPolicy::Foreground)
                    .await?;
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn dependents_are_deleted_only_when_every_owner_is_gone() {
        use OwnerState::*;
        let cases = [
            (vec![], Verdict::Keep),
            (vec![(reference("a"), Solid)], Verdict::Keep),
            (vec![(reference("a"), Absent)], Verdict::DeleteBackground),
            (
                vec![(reference("a"), Absent), (reference("b"), Solid)],
                Verdict::RemoveReferences(vec!["a".into()]),
            ),
            (
                vec![(reference("a"), WaitingForDependents)],
                Verdict::DeleteForeground,
            ),
            (
                vec![
                    (reference("a"), WaitingForDependents),
                    (reference("b"), Absent),
                ],
                Verdict::DeleteForeground,
            ),
            (
                vec![
                    (reference("a"), WaitingForDependents),
                    (reference("b"), Solid),
                ],
                Verdict::Keep,
            ),
        ];
        for (owners, verdict) in cases {
            assert_eq!(classify_owners(&owners), verdict, "{owners:?}");
        }
    }

    fn dependent(name: &str, owners: &[&str]) -> DynamicObject {
        let mut object = DynamicObject::new(
            name,
            &ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()),
        )
        .within("default");
        object.metadata.owner_references = Some(owners.iter().map(|u| reference(u)).collect());
        object
    }

    #[test]
    fn the_owner_index_follows_references_as_they_change() {
        let key = |name: &str| GcKey {
            resource: 0,
            namespace: "default".into(),
            name: name.into(),
        };
        let sorted = |mut keys: Vec<GcKey>| {
            keys.sort_by(|a, b| a.name.cmp(&b.name));
            keys
        };
        let mut index = OwnerIndex::default();
        let a1 = dependent("a", &["rs-1"]);
        let b = dependent("b", &["rs-1", "rs-2"]);
        index.apply(&key("a"), None, Some(&a1));
        index.apply(&key("b"), None, Some(&b));
        // A re-offer of the same object changes nothing.
        index.apply(&key("b"), Some(&b), Some(&b));
        assert_eq!(sorted(index.dependents("rs-1")), vec![key("a"), key("b")]);
        assert_eq!(index.dependents("rs-2"), vec![key("b")]);

        // "a" is adopted by rs-2 and released by rs-1.
        let a2 = dependent("a", &["rs-2"]);
        index.apply(&key("a"), Some(&a1), Some(&a2));
        assert_eq!(index.dependents("rs-1"), vec![key("b")]);
        assert_eq!(sorted(index.dependents("rs-2")), vec![key("a"), key("b")]);

        index.apply(&key("b"), Some(&b), None);
        index.apply(&key("a"), Some(&a2), None);
        assert!(index.dependents("rs-1").is_empty());
        assert!(index.dependents("rs-2").is_empty());
        assert!(index.by_owner.is_empty(), "no empty sets are kept");
    }

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}
