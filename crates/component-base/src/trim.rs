//! Trimming of watched objects before a component caches them.

use kube::runtime::watcher::Event;
use kube::Resource;

/// Drops `metadata.managedFields` from a watched object before it is cached, as upstream's
/// scheduler, controller-manager and kubelet informers do: no component reads them, they are
/// often the largest part of an object, and an update or merge patch without them keeps the
/// stored ones.
pub fn strip_managed_fields<K: Resource>(event: &mut Event<K>) {
    match event {
        Event::Apply(object) | Event::InitApply(object) | Event::Delete(object) => {
            object.meta_mut().managed_fields = None;
        }
        Event::Init | Event::InitDone => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    #[test]
    fn managed_fields_are_dropped_from_every_object_event() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        for mut event in [
            Event::Apply(pod.clone()),
            Event::InitApply(pod.clone()),
            Event::Delete(pod.clone()),
        ] {
            strip_managed_fields(&mut event);
            let (Event::Apply(p) | Event::InitApply(p) | Event::Delete(p)) = event else {
                unreachable!("object events only")
            };
            assert_eq!(p.metadata.managed_fields, None);
            assert_eq!(p.metadata.name.as_deref(), Some("p"));
        }
    }
}
