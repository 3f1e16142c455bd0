//! Events the kubelet records about its Node, as `kubectl describe node` shows them: `Starting`
//! when the kubelet starts, one per node condition that changes (`NodeReady`,
//! `NodeHasSufficientMemory`...) and `EvictionThresholdMet` while the eviction manager reclaims.
//! As upstream's kubelet does, the events name the node with its name as UID and land in the
//! `default` namespace. Recording is best effort: it never blocks or fails the caller.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;

/// One event about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Upstream reason (`Starting`, `NodeReady`, `EvictionThresholdMet`...).
    pub reason: String,
    /// Human-readable note.
    pub message: String,
}

impl NodeEvent {
    /// A Normal event.
    pub fn normal(reason: &str, message: String) -> Self {
        Self {
            warning: false,
            reason: reason.to_string(),
            message,
        }
    }

    /// A Warning event.
    pub fn warning(reason: &str, message: String) -> Self {
        Self {
            warning: true,
            reason: reason.to_string(),
            message,
        }
    }

    /// Upstream's node status event: `Node <node> status is now: <reason>`.
    pub fn status(node: &str, reason: &str) -> Self {
        Self::normal(reason, format!("Node {node} status is now: {reason}"))
    }
}

/// Where node events go.
pub trait NodeEventSink: Send + Sync {
    /// Records `event`; returns at once.
    fn record(&self, event: NodeEvent);
}

/// [`NodeEventSink`] over the API: events reported by `kubelet` on the node.
pub struct KubeNodeEvents {
    recorder: Recorder,
    reference: ObjectReference,
}

impl KubeNodeEvents {
    /// Events about node `node_name`, reported as `kubelet` on it.
    pub fn new(client: Client, node_name: &str) -> Self {
        Self {
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "kubelet".into(),
                    instance: Some(node_name.to_string()),
                },
            ),
            reference: node_reference(node_name),
        }
    }
}

/// How upstream's kubelet refers to its node in events: kind and name, the name as UID.
pub fn node_reference(node_name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(node_name.to_string()),
        uid: Some(node_name.to_string()),
        ..Default::default()
    }
}

impl NodeEventSink for KubeNodeEvents {
    fn record(&self, event: NodeEvent) {
        publish(
            self.recorder.clone(),
            self.reference.clone(),
            event.warning,
            event.reason,
            event.message,
        );
    }
}

/// Publishes an event about `reference` through `recorder` in the background (the kubelet's
/// node and pod events); a failure is logged at debug level.
pub fn publish(
    recorder: Recorder,
    reference: ObjectReference,
    warning: bool,
    reason: String,
    message: String,
) {
    tokio::spawn(async move {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            action: reason.clone(),
            reason,
            note: Some(message),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &reference).await {
            tracing::debug!(%error, reason = %event.reason, "recording event failed");
        }
    });
}

/// A [`NodeEventSink`] that keeps what it is given (tests).
#[derive(Default)]
pub struct RecordedNodeEvents(Mutex<Vec<NodeEvent>>);

impl RecordedNodeEvents {
    /// A new, empty recorder.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// The events recorded so far, oldest first.
    pub fn events(&self) -> Vec<NodeEvent> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// The reasons recorded so far, oldest first.
    pub fn reasons(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.reason).collect()
    }
}

impl NodeEventSink for RecordedNodeEvents {
    fn record(&self, event: NodeEvent) {
        if let Ok(mut events) = self.0.lock() {
            events.push(event);
        }
    }
}
