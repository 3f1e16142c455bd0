//! Small helpers over object metadata that controllers, the scheduler and the kubelet share:
//! owner references (controller refs, adoption), finalizers, deletion state and keys.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether the object's controller is the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// Whether any owner reference points at `uid`.
pub fn is_owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| r.uid == uid)
}

/// A controller owner reference to the object (`api_version`, `kind`, `owner`), with
/// `blockOwnerDeletion: true` as upstream controllers set it.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone()?,
        uid: owner.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Whether the object carries `finalizer`.
pub fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|f| f == finalizer)
}

/// Whether the object is being deleted (has a deletion timestamp).
pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// `namespace/name` (or `name` for cluster-scoped objects), the key controllers queue.
pub fn key(meta: &ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(name)) if !ns.is_empty() => format!("{ns}/{name}"),
        (_, Some(name)) => name.clone(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn controller_refs_point_at_their_owner() {
        let r = controller_ref("apps/v1", "ReplicaSet", &owner()).expect("ref");
        let child = ObjectMeta {
            owner_references: Some(vec![r]),
            ..Default::default()
        };
        assert!(is_controlled_by(&child, "u1"));
        assert!(is_owned_by(&child, "u1"));
        assert!(!is_controlled_by(&child, "u2"));
        assert_eq!(
            controller_of(&child).map(|r| r.kind.as_str()),
            Some("ReplicaSet")
        );
    }

    #[test]
    fn keys_and_finalizers() {
        let mut m = owner();
        assert_eq!(key(&m), "default/web");
        m.namespace = None;
        assert_eq!(key(&m), "web");
        m.finalizers = Some(vec!["kubernetes".into()]);
        assert!(has_finalizer(&m, "kubernetes"));
        assert!(!is_deleting(&m));
    }
}
