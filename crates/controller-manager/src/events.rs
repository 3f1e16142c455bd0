//! Records core/v1 Events about objects (what `kubectl describe` shows). Recording is best effort:
//! a failure is logged and never fails a reconcile.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};

/// `Normal` or `Warning`, as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Writes Events on behalf of one component.
#[derive(Clone)]
pub struct Recorder {
    client: Option<Client>,
    component: String,
}

impl Recorder {
    /// A recorder writing through `client` as `component` (e.g. `deployment-controller`).
    pub fn new(client: Client, component: &str) -> Self {
        Recorder {
            client: Some(client),
            component: component.to_string(),
        }
    }

    /// A recorder that only logs (for tests).
    pub fn disabled(component: &str) -> Self {
        Recorder {
            client: None,
            component: component.to_string(),
        }
    }

    /// The same client, recording as another component.
    pub fn for_component(&self, component: &str) -> Self {
        Recorder {
            client: self.client.clone(),
            component: component.to_string(),
        }
    }

    /// Records an event about `object`.
    pub async fn record<K>(&self, object: &K, kind: EventType, reason: &str, message: &str)
    where
        K: Resource<DynamicType = ()>,
    {
        tracing::info!(
            component = %self.component,
            object = %object.name_any(),
            reason,
            message,
            "event"
        );
        let Some(client) = &self.client else {
            return;
        };
        let namespace = object.namespace().unwrap_or_else(|| "default".to_string());
        let now = jiff::Timestamp::now();
        let involved = ObjectReference {
            api_version: Some(K::api_version(&()).to_string()),
            kind: Some(K::kind(&()).to_string()),
            name: object.meta().name.clone(),
            namespace: object.namespace(),
            uid: object.meta().uid.clone(),
            resource_version: object.meta().resource_version.clone(),
            field_path: None,
        };
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", object.name_any(), now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(
                match kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(reason.to_string()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            tracing::debug!(%error, reason, "could not record event");
        }
    }
}
