//! What pod workers ask of the apiserver, behind the [`PodApi`] trait: post a pod's status,
//! delete a terminated pod, and read the ConfigMaps, Secrets and Services a pod refers to.
//! [`KubePodApi`] is the real client; [`FakePodApi`] records for tests.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod, PodStatus, Secret, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;

use super::tokens::{IssuedToken, TokenAsk};

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Patching `pods/status` failed.
    #[error("updating status of pod {namespace}/{name}: {source}")]
    UpdateStatus {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting the pod failed.
    #[error("deleting pod {namespace}/{name}: {source}")]
    Delete {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Reading a ConfigMap, Secret or Service list failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was read.
        what: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A failure injected by the fake.
    #[error("injected failure: {0}")]
    Injected(String),
    /// A TokenRequest failed.
    #[error("requesting a token for serviceaccount {what}: {source}")]
    Token {
        /// `namespace/name` of the service account.
        what: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// A TokenRequest answered no token.
    #[error("the TokenRequest for serviceaccount {0} returned no token")]
    NoToken(String),
    /// The Service watch has not listed once yet (upstream's wording).
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotSynced,
}

/// Every Service of the cluster from one watch, as upstream's kubelet keeps them in a Service
/// informer: a pod start then reads the service link variables from memory instead of listing
/// its namespace's Services and getting `default/kubernetes` from the apiserver. Hollow nodes
/// share one lister, as they share one client.
#[derive(Clone)]
pub struct ServiceLister {
    store: Store<Service>,
    synced: Arc<AtomicBool>,
}

impl std::fmt::Debug for ServiceLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceLister")
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ServiceLister {
    /// Starts the watch of all Services on `client`; it runs until the runtime stops.
    pub fn spawn(client: Client) -> Self {
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let flag = synced.clone();
        component_base::reflect::spawn(
            Api::<Service>::all(client),
            component_base::reflect::watch_config(),
            writer,
            move |event| {
                if matches!(event, watcher::Event::InitDone) {
                    flag.store(true, Ordering::Release);
                }
            },
        );
        Self { store, synced }
    }

    /// The Services of `namespace` and `default/kubernetes`, or `None` before the first list.
    pub fn services(&self, namespace: &str) -> Option<Vec<Service>> {
        if !self.synced.load(Ordering::Acquire) {
            return None;
        }
        Some(
            self.store
                .state_filter(|s| {
                    let ns = s.metadata.namespace.as_deref().unwrap_or_default();
                    ns == namespace
                        || (ns == "default" && s.metadata.name.as_deref() == Some("kubernetes"))
                })
                .into_iter()
                .map(Arc::unwrap_or_clone)
                .collect(),
        )
    }
}

/// Every ConfigMap and Secret of the cluster from one watch each, for a fleet of hollow nodes:
/// upstream's kubelet (`configMapAndSecretChangeDetectionStrategy: Watch`, the default) keeps
/// the objects its pods use current through watches multiplexed over its HTTP/2 connection;
/// over HTTP/1.1 a watch per node and object would cost a connection each, so the fleet
/// shares these two. A refresh (a read at any version) is answered from them once they have
/// listed; an object they do not hold is read from the apiserver. A real kubelet does not use
/// it: the node authorizer lets a kubelet read only the objects of its own pods.
#[derive(Clone)]
pub struct ObjectLister {
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
    synced: Arc<[AtomicBool; 2]>,
}

impl std::fmt::Debug for ObjectLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectLister")
            .field("config_maps", &self.synced[0].load(Ordering::Relaxed))
            .field("secrets", &self.synced[1].load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ObjectLister {
    /// Starts the watches of all ConfigMaps and Secrets on `client`; they run until the
    /// runtime stops.
    pub fn spawn(client: Client) -> Self {
        let synced = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let (config_maps, writer) = reflector::store();
        let flag = synced.clone();
        component_base::reflect::spawn(
            Api::<ConfigMap>::all(client.clone()),
            component_base::reflect::watch_config(),
            writer,
            move |event| {
                if matches!(event, watcher::Event::InitDone) {
                    flag[0].store(true, Ordering::Release);
                }
            },
        );
        let (secrets, writer) = reflector::store();
        let flag = synced.clone();
        component_base::reflect::spawn(
            Api::<Secret>::all(client),
            component_base::reflect::watch_config(),
            writer,
            move |event| {
                if matches!(event, watcher::Event::InitDone) {
                    flag[1].store(true, Ordering::Release);
                }
            },
        );
        Self {
            config_maps,
            secrets,
            synced,
        }
    }

    /// The ConfigMap `namespace/name` if the watch has listed and holds it.
    pub fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        lookup(&self.config_maps, &self.synced[0], namespace, name)
    }

    /// The Secret `namespace/name` if the watch has listed and holds it.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        lookup(&self.secrets, &self.synced[1], namespace, name)
    }
}

fn lookup<K>(store: &Store<K>, synced: &AtomicBool, namespace: &str, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    if !synced.load(Ordering::Acquire) {
        return None;
    }
    let key = reflector::ObjectRef::new(name).within(namespace);
    store.get(&key).map(Arc::unwrap_or_clone)
}

/// The apiserver as pod workers see it.
#[async_trait::async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// Writes `status` to the pod's `status` subresource (uid-checked).
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError>;
    /// Deletes the pod for good (`gracePeriodSeconds=0`, uid precondition). Not-found is Ok.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    /// A ConfigMap, `None` if it does not exist.
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError>;
    /// A Secret, `None` if it does not exist.
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError>;
    /// A ConfigMap at any version the apiserver has (`resourceVersion=0`: from its watch
    /// cache); for refreshes of a copy already read.
    async fn config_map_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
        self.config_map(namespace, name).await
    }
    /// A Secret at any version the apiserver has, as [`Self::config_map_any_version`].
    async fn secret_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, ApiError> {
        self.secret(namespace, name).await
    }
    /// The Services of `namespace`, plus `kubernetes` in `default`.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError>;
    /// Records an event about the pod (or one of its containers); best effort, never blocks
    /// the caller for long.
    fn event(&self, event: PodEvent);
    /// Requests a token for the pod's service account, bound to the pod (TokenRequest).
    async fn service_account_token(&self, ask: &TokenAsk) -> Result<IssuedToken, ApiError> {
        Err(ApiError::NoToken(format!(
            "{}/{}",
            ask.namespace, ask.service_account
        )))
    }
}

/// An event the kubelet reports about a pod, as `kubectl describe pod` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEvent {
    /// The pod.
    pub reference: ObjectReference,
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Upstream reason (`Pulled`, `Created`, `Started`, `Killing`, `BackOff`, `Failed`...).
    pub reason: String,
    /// Human-readable note.
    pub message: String,
}

impl PodEvent {
    /// An event about `pod`, about its container `container` when given.
    pub fn new(
        pod: &Pod,
        container: Option<&str>,
        warning: bool,
        reason: &str,
        message: String,
    ) -> Self {
        let field_path = container.map(|name| {
            let init = pod
                .spec
                .iter()
                .flat_map(|s| s.init_containers.iter().flatten())
                .any(|c| c.name == name);
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        });
        Self {
            reference: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                resource_version: pod.metadata.resource_version.clone(),
                field_path,
            },
            warning,
            reason: reason.to_string(),
            message,
        }
    }
}

/// [`PodApi`] over a kube client.
#[derive(Clone)]
pub struct KubePodApi {
    client: Client,
    recorder: Recorder,
    services: Option<ServiceLister>,
    objects: Option<ObjectLister>,
}

impl KubePodApi {
    /// Wraps a client; events are reported as `kubelet` on `node_name`.
    pub fn new(client: Client, node_name: &str) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "kubelet".into(),
                instance: Some(node_name.to_string()),
            },
        );
        Self {
            client,
            recorder,
            services: None,
            objects: None,
        }
    }

    /// Answers reads at any version (refreshes) from `lister`; see [`ObjectLister`].
    pub fn with_object_lister(mut self, lister: ObjectLister) -> Self {
        self.objects = Some(lister);
        self
    }

    /// Reads Services from `lister` instead of listing them at each pod start.
    pub fn with_service_lister(mut self, lister: ServiceLister) -> Self {
        self.services = Some(lister);
        self
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

#[async_trait::async_trait]
impl PodApi for KubePodApi {
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let patch = json!({
            "metadata": { "uid": pod.metadata.uid },
            "status": status,
        });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| ApiError::UpdateStatus {
                namespace,
                name,
                source,
            })
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(error) if is_not_found(&error) => Ok(()),
            // A uid mismatch: the pod was replaced by a new one of the same name; ours is gone.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(ApiError::Delete {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            }),
        }
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Read {
            what: format!("configmap {namespace}/{name}"),
            source,
        })
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Read {
            what: format!("secret {namespace}/{name}"),
            source,
        })
    }

    async fn config_map_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
        if let Some(found) = self
            .objects
            .as_ref()
            .and_then(|o| o.config_map(namespace, name))
        {
            return Ok(Some(found));
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        get_any_version(&api, name)
            .await
            .map_err(|source| ApiError::Read {
                what: format!("configmap {namespace}/{name}"),
                source,
            })
    }

    async fn secret_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, ApiError> {
        if let Some(found) = self
            .objects
            .as_ref()
            .and_then(|o| o.secret(namespace, name))
        {
            return Ok(Some(found));
        }
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        get_any_version(&api, name)
            .await
            .map_err(|source| ApiError::Read {
                what: format!("secret {namespace}/{name}"),
                source,
            })
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        if let Some(lister) = &self.services {
            return lister
                .services(namespace)
                .ok_or(ApiError::ServicesNotSynced);
        }
        let read = |what: &str| {
            let what = what.to_string();
            move |source| ApiError::Read { what, source }
        };
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let mut services = api
            .list(&ListParams::default())
            .await
            .map_err(read(&format!("services in {namespace}")))?
            .items;
        if namespace != "default" {
            let default: Api<Service> = Api::namespaced(self.client.clone(), "default");
            if let Some(kubernetes) = default
                .get_opt("kubernetes")
                .await
                .map_err(read("service default/kubernetes"))?
            {
                services.push(kubernetes);
            }
        }
        Ok(services)
    }

    async fn service_account_token(&self, ask: &TokenAsk) -> Result<IssuedToken, ApiError> {
        use k8s_openapi::api::authentication::v1::{
            BoundObjectReference, TokenRequest, TokenRequestSpec,
        };
        use k8s_openapi::api::core::v1::ServiceAccount;
        let what = format!("{}/{}", ask.namespace, ask.service_account);
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ask.namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: ask.audience.iter().cloned().collect(),
                expiration_seconds: Some(ask.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    kind: Some("Pod".into()),
                    api_version: Some("v1".into()),
                    name: Some(ask.pod_name.clone()),
                    uid: Some(ask.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let issued = api
            .create_token_request(
                &ask.service_account,
                &kube::api::PostParams::default(),
                &request,
            )
            .await
            .map_err(|source| ApiError::Token {
                what: what.clone(),
                source,
            })?;
        let status = issued
            .status
            .filter(|s| !s.token.is_empty())
            .ok_or(ApiError::NoToken(what))?;
        Ok(IssuedToken {
            token: status.token,
            expiration: status.expiration_timestamp.0.as_second(),
        })
    }

    fn event(&self, event: PodEvent) {
        crate::node::events::publish(
            self.recorder.clone(),
            event.reference,
            event.warning,
            event.reason,
            event.message,
        );
    }
}

/// What the fake recorded.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    /// A status update: pod name and the status.
    UpdateStatus(String, Box<PodStatus>),
    /// A delete: namespace, name, uid.
    Delete(String, String, String),
    /// An event, whole.
    Event(PodEvent),
    /// A TokenRequest: `namespace/serviceaccount`, pod name and the token issued.
    Token(String, String, String),
    /// A read of a ConfigMap or Secret.
    ReadObject {
        /// `configmap` or `secret`.
        kind: &'static str,
        /// `namespace/name`.
        key: String,
        /// Whether any version would do (`resourceVersion=0`).
        any_version: bool,
    },
}

/// GET with `resourceVersion=0`; a 404 is `None`.
async fn get_any_version<K>(api: &Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.get_with(name, &kube::api::GetParams::any()).await {
        Ok(object) => Ok(Some(object)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A recording [`PodApi`] holding its own ConfigMaps, Secrets and Services.
#[derive(Default)]
pub struct FakePodApi {
    calls: Mutex<Vec<ApiCall>>,
    /// ConfigMaps by (namespace, name).
    pub config_maps: Mutex<BTreeMap<(String, String), ConfigMap>>,
    /// Secrets by (namespace, name).
    pub secrets: Mutex<BTreeMap<(String, String), Secret>>,
    /// Services returned for every namespace.
    pub services: Mutex<Vec<Service>>,
}

impl FakePodApi {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<ApiCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The statuses posted for the pod `name`, in order.
    pub fn statuses(&self, name: &str) -> Vec<PodStatus> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::UpdateStatus(n, s) if n == name => Some(*s),
                _ => None,
            })
            .collect()
    }

    /// The (reason, message) of every event so far.
    pub fn events(&self) -> Vec<(String, String)> {
        self.pod_events()
            .into_iter()
            .map(|e| (e.reason, e.message))
            .collect()
    }

    /// Every event so far, whole (type and object reference included).
    pub fn pod_events(&self) -> Vec<PodEvent> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::Event(event) => Some(event),
                _ => None,
            })
            .collect()
    }

    /// The last status posted for the pod `name`.
    pub fn last_status(&self, name: &str) -> Option<PodStatus> {
        self.statuses(name).pop()
    }

    /// Adds or replaces a ConfigMap.
    pub fn set_config_map(&self, config_map: ConfigMap) {
        let key = (
            config_map.metadata.namespace.clone().unwrap_or_default(),
            config_map.metadata.name.clone().unwrap_or_default(),
        );
        if let Ok(mut map) = self.config_maps.lock() {
            map.insert(key, config_map);
        }
    }

    /// Removes a ConfigMap.
    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        if let Ok(mut map) = self.config_maps.lock() {
            map.remove(&(namespace.to_string(), name.to_string()));
        }
    }

    fn read_object<T: Clone>(
        &self,
        map: &Mutex<BTreeMap<(String, String), T>>,
        kind: &'static str,
        namespace: &str,
        name: &str,
        any_version: bool,
    ) -> Option<T> {
        self.record(ApiCall::ReadObject {
            kind,
            key: format!("{namespace}/{name}"),
            any_version,
        });
        map.lock()
            .ok()
            .and_then(|m| m.get(&(namespace.to_string(), name.to_string())).cloned())
    }

    fn record(&self, call: ApiCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

#[async_trait::async_trait]
impl PodApi for FakePodApi {
    async fn update_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        self.record(ApiCall::UpdateStatus(
            pod.metadata.name.clone().unwrap_or_default(),
            Box::new(status.clone()),
        ));
        Ok(())
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        self.record(ApiCall::Delete(namespace.into(), name.into(), uid.into()));
        Ok(())
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        Ok(self.read_object(&self.config_maps, "configmap", namespace, name, false))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        Ok(self.read_object(&self.secrets, "secret", namespace, name, false))
    }

    async fn config_map_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
        Ok(self.read_object(&self.config_maps, "configmap", namespace, name, true))
    }

    async fn secret_any_version(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Secret>, ApiError> {
        Ok(self.read_object(&self.secrets, "secret", namespace, name, true))
    }

    async fn services(&self, _namespace: &str) -> Result<Vec<Service>, ApiError> {
        Ok(self.services.lock().map(|s| s.clone()).unwrap_or_default())
    }

    fn event(&self, event: PodEvent) {
        self.record(ApiCall::Event(event));
    }

    async fn service_account_token(&self, ask: &TokenAsk) -> Result<IssuedToken, ApiError> {
        let n = self
            .calls()
            .iter()
            .filter(|c| matches!(c, ApiCall::Token(..)))
            .count();
        let token = format!("token-{}-{}", ask.service_account, n + 1);
        self.record(ApiCall::Token(
            format!("{}/{}", ask.namespace, ask.service_account),
            ask.pod_name.clone(),
            token.clone(),
        ));
        Ok(IssuedToken {
            token,
            expiration: jiff::Timestamp::now().as_second() + ask.expiration_seconds,
        })
    }
}
