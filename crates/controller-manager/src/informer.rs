//! Shared informers: one watch + reflector store per resource type, shared by every controller,
//! with a broadcast of changes (old and new object) that controllers turn into work-queue keys.
//!
//! Start with [`Informers::get`] (typed) or [`Informers::dynamic`] (any resource, used by the
//! garbage collector). [`Informer::fixed`] builds a pre-filled informer for unit tests.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};

/// How many changes a slow subscriber may fall behind before it gets a resync instead.
const CHANNEL_CAPACITY: usize = 8192;

/// One change seen by an informer.
#[derive(Debug)]
pub enum Change<K> {
    /// An object was added (`old` is `None`) or updated.
    Applied {
        /// The object before the change, when it was already known.
        old: Option<Arc<K>>,
        /// The object now.
        new: Arc<K>,
    },
    /// An object was deleted (its last known state).
    Deleted(Arc<K>),
    /// The watch was re-listed (or the subscriber fell behind): re-examine everything in the store.
    Resynced,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied {
                old: old.clone(),
                new: new.clone(),
            },
            Change::Deleted(object) => Change::Deleted(object.clone()),
            Change::Resynced => Change::Resynced,
        }
    }
}

/// A reflector store and the stream of its changes.
pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: Clone + Eq + Hash,
{
    store: Store<K>,
    events: broadcast::Sender<Change<K>>,
    resource: Arc<str>,
    /// True once the first list is in the store. (The store's own readiness future wakes only
    /// one waiter, and informers are shared.)
    synced: watch::Receiver<bool>,
}

impl<K: Resource + 'static> Clone for Informer<K>
where
    K::DynamicType: Clone + Eq + Hash,
{
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            events: self.events.clone(),
            resource: self.resource.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    /// Starts watching `api` in a background task (re-listing with back-off on errors).
    pub fn spawn(api: Api<K>, dyntype: K::DynamicType, resource: String) -> Self {
        Self::spawn_stream(watcher(api), dyntype, resource)
    }

    /// Starts feeding the store from the watch `stream` (re-listing with back-off on errors).
    fn spawn_stream(
        stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
        dyntype: K::DynamicType,
        resource: String,
    ) -> Self {
        let writer = Writer::new(dyntype.clone());
        let store = writer.as_reader();
        let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
        let sender = events.clone();
        let name: Arc<str> = Arc::from(resource.as_str());
        let (synced_tx, synced) = watch::channel(false);
        let mut applier = Applier::new(writer, dyntype);
        tokio::spawn(async move {
            let stream = stream.default_backoff();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                let mut event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::warn!(%resource, %error, "watch failed; retrying");
                        continue;
                    }
                };
                component_base::trim::strip_managed_fields(&mut event);
                let changes = applier.apply(&event);
                if matches!(event, Event::InitDone) {
                    synced_tx.send_replace(true);
                }
                for change in changes {
                    // No subscribers yet is fine: they resync from the store when they start.
                    if sender.send(change).is_err() {
                        tracing::trace!(%resource, "no subscribers for change");
                    }
                }
            }
        });
        Informer {
            store,
            events,
            resource: name,
            synced,
        }
    }

    /// An informer over a fixed set of objects, already synced (for tests).
    pub fn fixed_with(objects: impl IntoIterator<Item = K>, dyntype: K::DynamicType) -> Self {
        let mut writer = Writer::new(dyntype);
        let store = writer.as_reader();
        writer.apply_watcher_event(&Event::Init);
        for object in objects {
            writer.apply_watcher_event(&Event::InitApply(object));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let (events, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (_, synced) = watch::channel(true);
        Informer {
            store,
            events,
            resource: Arc::from("fixed"),
            synced,
        }
    }

    /// The read side of the cache.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Subscribes to changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change<K>> {
        self.events.subscribe()
    }

    /// Waits until the first list has been stored.
    pub async fn ready(&self) {
        let mut synced = self.synced.clone();
        if synced.wait_for(|ready| *ready).await.is_err() {
            tracing::warn!(resource = %self.resource, "informer stopped before it was ready");
        }
        tracing::debug!(resource = %self.resource, "informer synced");
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Cached objects in `namespace`.
    pub fn list_in(&self, namespace: &str) -> Vec<Arc<K>> {
        self.store
            .state_filter(|o| o.meta().namespace.as_deref() == Some(namespace))
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// An informer over a fixed set of typed objects, already synced (for tests).
    pub fn fixed(objects: impl IntoIterator<Item = K>) -> Self {
        Informer::fixed_with(objects, ())
    }

    /// A cached object by namespace (`None` for cluster-scoped) and name.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut key = ObjectRef::new(name);
        if let Some(namespace) = namespace {
            key = key.within(namespace);
        }
        self.store.get(&key)
    }
}

impl Informer<DynamicObject> {
    /// A cached dynamic object by namespace and name.
    pub fn get_dynamic(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Arc<DynamicObject>> {
        let mut key = ObjectRef::new_with(name, resource.clone());
        if let Some(namespace) = namespace {
            key = key.within(namespace);
        }
        self.store.get(&key)
    }
}

/// Applies watch events to the store and says what changed, as an informer's handlers see it:
/// re-listed objects are reported once the list is complete (with their previous state), and
/// objects missing from a re-list are reported deleted.
pub struct Applier<K: Resource + Clone + 'static>
where
    K::DynamicType: Clone + Eq + Hash,
{
    writer: Writer<K>,
    reader: Store<K>,
    dyntype: K::DynamicType,
    listed: Vec<Change<K>>,
    listed_keys: HashSet<ObjectRef<K>>,
}

impl<K> Applier<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + Hash,
{
    /// An applier writing into `writer`.
    pub fn new(writer: Writer<K>, dyntype: K::DynamicType) -> Self {
        Applier {
            reader: writer.as_reader(),
            writer,
            dyntype,
            listed: Vec::new(),
            listed_keys: HashSet::new(),
        }
    }

    /// The store this applier writes.
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// Applies one event; returns the changes to announce.
    pub fn apply(&mut self, event: &Event<K>) -> Vec<Change<K>> {
        let key = |o: &K| ObjectRef::from_obj_with(o, self.dyntype.clone());
        match event {
            Event::Apply(object) => {
                let old = self.reader.get(&key(object));
                self.writer.apply_watcher_event(event);
                vec![Change::Applied {
                    old,
                    new: Arc::new(object.clone()),
                }]
            }
            Event::Delete(object) => {
                self.writer.apply_watcher_event(event);
                vec![Change::Deleted(Arc::new(object.clone()))]
            }
            Event::Init => {
                self.listed.clear();
                self.listed_keys.clear();
                self.writer.apply_watcher_event(event);
                Vec::new()
            }
            Event::InitApply(object) => {
                let object_key = key(object);
                self.listed.push(Change::Applied {
                    old: self.reader.get(&object_key),
                    new: Arc::new(object.clone()),
                });
                self.listed_keys.insert(object_key);
                self.writer.apply_watcher_event(event);
                Vec::new()
            }
            Event::InitDone => {
                // Cached before the re-list but absent from it: deleted while the watch was down.
                let vanished: Vec<Arc<K>> = self
                    .reader
                    .state()
                    .into_iter()
                    .filter(|o| !self.listed_keys.contains(&key(o.as_ref())))
                    .collect();
                self.writer.apply_watcher_event(event);
                let mut changes: Vec<Change<K>> = std::mem::take(&mut self.listed);
                self.listed_keys.clear();
                changes.extend(vanished.into_iter().map(Change::Deleted));
                changes.push(Change::Resynced);
                changes
            }
        }
    }
}

/// `event` with its objects converted by `f`.
fn map_event<A, B>(event: Event<A>, f: impl Fn(A) -> B) -> Event<B> {
    match event {
        Event::Apply(object) => Event::Apply(f(object)),
        Event::InitApply(object) => Event::InitApply(f(object)),
        Event::Delete(object) => Event::Delete(f(object)),
        Event::Init => Event::Init,
        Event::InitDone => Event::InitDone,
    }
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = Result<Event<K>, watcher::Error>>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
}

/// An object of `resource` that carries only `metadata`: what a dynamic informer caches, and
/// what a metadata list (`as=PartialObjectMetadata`) of that kind reads as.
pub fn metadata_only(resource: &ApiResource, metadata: kube::api::ObjectMeta) -> DynamicObject {
    DynamicObject {
        types: Some(kube::api::TypeMeta {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
        }),
        metadata,
        data: serde_json::Value::Object(Default::default()),
    }
}

/// The key of a dynamic informer among [`Informers`].
fn dynamic_key(resource: &ApiResource) -> String {
    format!("{}/{}", resource.api_version, resource.plural)
}

/// Every informer the controller-manager runs, created on first use and shared afterwards.
#[derive(Clone)]
pub struct Informers {
    client: Client,
    typed: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
    dynamic: Arc<Mutex<HashMap<String, Informer<DynamicObject>>>>,
}

impl Informers {
    /// An empty set of informers over `client`.
    pub fn new(client: Client) -> Self {
        Informers {
            client,
            typed: Arc::default(),
            dynamic: Arc::default(),
        }
    }

    /// The client the informers watch with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The shared informer for `K` across all namespaces, started on first use.
    pub fn get<K>(&self) -> Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let mut typed = match self.typed.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = typed
            .get(&TypeId::of::<K>())
            .and_then(|any| any.downcast_ref::<Informer<K>>())
        {
            return existing.clone();
        }
        let informer = Informer::spawn(
            Api::<K>::all(self.client.clone()),
            (),
            K::plural(&()).to_string(),
        );
        typed.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        informer
    }

    /// Installs `informer` as the shared dynamic informer for `resource` before any controller
    /// asks for it (tests: a cache that never catches up with the apiserver).
    pub fn set_dynamic(&self, resource: &ApiResource, informer: Informer<DynamicObject>) {
        let key = dynamic_key(resource);
        let mut dynamic = match self.dynamic.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        dynamic.insert(key, informer);
    }

    /// The shared dynamic informer for `resource`, started on first use.
    pub fn dynamic(&self, resource: &ApiResource) -> Informer<DynamicObject> {
        let key = dynamic_key(resource);
        let mut dynamic = match self.dynamic.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = dynamic.get(&key) {
            return existing.clone();
        }
        // Metadata only (`as=PartialObjectMetadata`), as upstream's garbage collector watches:
        // its users read nothing else, and a whole pod decoded as JSON is ten times larger.
        let kind = resource.clone();
        let stream = watcher::watcher(
            Api::<PartialObjectMeta<DynamicObject>>::all_with(self.client.clone(), resource),
            watcher::Config::default(),
        )
        .map(move |event| {
            event.map(|event| map_event(event, |meta| metadata_only(&kind, meta.metadata)))
        });
        let informer = Informer::spawn_stream(stream, resource.clone(), key.clone());
        dynamic.insert(key, informer.clone());
        informer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::ResourceExt;

    fn config_map(name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn describe(changes: &[Change<ConfigMap>]) -> Vec<String> {
        changes
            .iter()
            .map(|c| match c {
                Change::Applied { old, new } => format!(
                    "applied {} {}->{}",
                    new.name_any(),
                    old.as_ref()
                        .and_then(|o| o.resource_version())
                        .unwrap_or_default(),
                    new.resource_version().unwrap_or_default()
                ),
                Change::Deleted(o) => format!("deleted {}", o.name_any()),
                Change::Resynced => "resynced".into(),
            })
            .collect()
    }

    #[test]
    fn relisted_objects_are_announced_after_the_swap_and_vanished_ones_as_deleted() {
        let mut applier = Applier::new(Writer::<ConfigMap>::default(), ());
        let store = applier.store();
        applier.apply(&Event::Init);
        applier.apply(&Event::InitApply(config_map("a", "1")));
        applier.apply(&Event::InitApply(config_map("b", "1")));
        assert!(
            store.state().is_empty(),
            "nothing visible before the list completes"
        );
        let changes = applier.apply(&Event::InitDone);
        assert_eq!(
            describe(&changes),
            ["applied a ->1", "applied b ->1", "resynced"]
        );
        assert_eq!(store.state().len(), 2);

        let changes = applier.apply(&Event::Apply(config_map("a", "2")));
        assert_eq!(describe(&changes), ["applied a 1->2"]);

        // The watch broke; b was deleted meanwhile.
        applier.apply(&Event::Init);
        assert!(applier
            .apply(&Event::InitApply(config_map("a", "3")))
            .is_empty());
        let changes = applier.apply(&Event::InitDone);
        assert_eq!(
            describe(&changes),
            ["applied a 2->3", "deleted b", "resynced"]
        );
        assert_eq!(store.state().len(), 1);
    }

    #[test]
    fn deletes_are_announced_with_the_last_state() {
        let mut applier = Applier::new(Writer::<ConfigMap>::default(), ());
        applier.apply(&Event::Init);
        applier.apply(&Event::InitDone);
        applier.apply(&Event::Apply(config_map("a", "1")));
        let changes = applier.apply(&Event::Delete(config_map("a", "2")));
        assert_eq!(describe(&changes), ["deleted a"]);
        assert!(applier.store().state().is_empty());
    }
}
