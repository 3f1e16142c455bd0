//! Records core/v1 Events about objects (what `kubectl describe` shows), through the shared
//! [`component_base::events::EventRecorder`]. Recording is best effort: a failure is logged and
//! never fails a reconcile.

use component_base::events::{EventRecorder, Report};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Client, Resource, ResourceExt};

/// `Normal` or `Warning`, as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Writes Events on behalf of one component; a repeat of an event bumps its count (see
/// [`component_base::events`]).
#[derive(Clone)]
pub struct Recorder(EventRecorder);

impl Recorder {
    /// A recorder writing through `client` as `component` (e.g. `deployment-controller`).
    pub fn new(client: Client, component: &str) -> Self {
        Recorder(EventRecorder::new(client, component))
    }

    /// A recorder that only logs (for tests).
    pub fn disabled(component: &str) -> Self {
        Recorder(EventRecorder::disabled(component))
    }

    /// The same client, recording as another component.
    pub fn for_component(&self, component: &str) -> Self {
        Recorder(self.0.for_source(component))
    }

    /// Records an event about `object`.
    pub async fn record<K>(&self, object: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).to_string()),
            kind: Some(K::kind(&()).to_string()),
            name: object.meta().name.clone(),
            namespace: object.namespace(),
            uid: object.meta().uid.clone(),
            resource_version: object.meta().resource_version.clone(),
            field_path: None,
        };
        self.0
            .record(Report {
                involved,
                warning: kind == EventType::Warning,
                reason: reason.to_string(),
                message: message.to_string(),
                action: reason.to_string(),
            })
            .await;
    }
}
