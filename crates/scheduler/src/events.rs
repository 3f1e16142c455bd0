//! Records core/v1 Events as `default-scheduler` (Scheduled, FailedScheduling, Preempted) through
//! the shared [`EventRecorder`], so a pod that keeps failing has one FailedScheduling event whose
//! count grows. Best effort: a failure is logged and never blocks scheduling.

use component_base::events::{EventRecorder, Report};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;

/// The component name on the events.
pub const COMPONENT: &str = "default-scheduler";

/// Records an event about a pod.
pub async fn record(events: &EventRecorder, pod: &Pod, warning: bool, reason: &str, message: &str) {
    let involved = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: Some(pod.namespace().unwrap_or_else(|| "default".into())),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    };
    events
        .record(Report {
            involved,
            warning,
            reason: reason.into(),
            message: message.into(),
            action: if warning { "Scheduling" } else { "Binding" }.into(),
        })
        .await;
}
