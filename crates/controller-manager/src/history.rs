//! ControllerRevision helpers shared by the StatefulSet and DaemonSet controllers (upstream's
//! `pkg/controller/history`): a revision snapshots an owner's pod template as a patch
//! (`{"spec":{"template":{..., "$patch":"replace"}}}`), is named `<owner>-<hash>` and carries a
//! monotonically increasing `revision` number. [`sync_revisions`] finds or creates the update
//! revision, picks the current one and trims old revisions beyond the history limit.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

/// The label carrying a pod's (or revision's) template hash.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Characters upstream's `rand.SafeEncodeString` maps to (no vowels, no confusable digits).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Why revisions could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating a revision failed.
    #[error("creating controller revision {name}: {source}")]
    Create {
        /// The revision name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A revision with the same name but other data exists: the owner's collision count was
    /// raised and the sync must be retried.
    #[error("controller revision {name} collides with an existing revision")]
    Collision {
        /// The revision name.
        name: String,
    },
    /// Updating a revision's number failed.
    #[error("updating controller revision {name}: {source}")]
    Update {
        /// The revision name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an old revision failed.
    #[error("deleting controller revision {name}: {source}")]
    Delete {
        /// The revision name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// The revision data for a pod template: a strategic-merge patch replacing the template.
pub fn template_patch(template: &PodTemplateSpec) -> serde_json::Value {
    let mut template = serde_json::to_value(template).unwrap_or(serde_json::Value::Null);
    if let Some(object) = template.as_object_mut() {
        object.insert("$patch".into(), serde_json::Value::String("replace".into()));
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// The pod template a revision holds (the inverse of [`template_patch`]).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    if let Some(object) = template.as_object_mut() {
        object.remove("$patch");
    }
    serde_json::from_value(template).ok()
}

/// Upstream's `HashControllerRevision`: FNV-32a over the data (and the collision count), as a
/// safe-encoded string of the decimal sum.
pub fn hash(data: &serde_json::Value, collision_count: Option<i32>) -> String {
    let mut sum: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for byte in bytes {
            sum ^= u32::from(*byte);
            sum = sum.wrapping_mul(0x0100_0193);
        }
    };
    write(data.to_string().as_bytes());
    if let Some(count) = collision_count {
        write(&count.to_le_bytes());
    }
    sum.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// Whether two revisions hold the same data.
pub fn equal(a: &ControllerRevision, b_data: &serde_json::Value) -> bool {
    a.data.as_ref().map(|d| &d.0) == Some(b_data)
}

/// Revisions sorted by revision number, then name.
pub fn sorted(mut revisions: Vec<Arc<ControllerRevision>>) -> Vec<Arc<ControllerRevision>> {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
    revisions
}

/// The outcome of [`sync_revisions`].
#[derive(Debug, Clone)]
pub struct Revisions {
    /// The revision pods should converge to (the owner's current template).
    pub update: ControllerRevision,
    /// The revision the owner's status names as current (or `update` when there is none).
    pub current: ControllerRevision,
}

/// Everything [`sync_revisions`] needs about the owner.
pub struct Owner<'a> {
    /// The owner's namespace.
    pub namespace: &'a str,
    /// The owner's name.
    pub name: &'a str,
    /// A controller reference to the owner.
    pub reference: OwnerReference,
    /// The owner's pod template.
    pub template: &'a PodTemplateSpec,
    /// `status.collisionCount`.
    pub collision_count: Option<i32>,
    /// `status.currentRevision` (StatefulSets) or `None`.
    pub current_revision: Option<&'a str>,
}

/// Finds or creates the update revision among `owned` (the owner's revisions), and picks the
/// current one. On a name collision returns [`Error::Collision`]; the caller raises
/// `status.collisionCount` and retries.
pub async fn sync_revisions(
    client: &Client,
    owner: &Owner<'_>,
    owned: &[Arc<ControllerRevision>],
) -> Result<Revisions, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), owner.namespace);
    let owned = sorted(owned.to_vec());
    let data = template_patch(owner.template);
    let next_number = owned.last().map(|r| r.revision + 1).unwrap_or(1);
    let equal_revisions: Vec<&Arc<ControllerRevision>> =
        owned.iter().filter(|r| equal(r, &data)).collect();
    let update = if let Some(existing) = equal_revisions.last() {
        if owned.last().map(|r| r.name_any()) == Some(existing.name_any()) {
            (***existing).clone()
        } else {
            // Rolled back to an older template: it becomes the newest revision again.
            let name = existing.name_any();
            let patch = serde_json::json!({ "revision": next_number });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::Update { name, source })?
        }
    } else {
        let hash = hash(&data, owner.collision_count);
        let name = format!("{}-{}", owner.name, hash);
        // New revisions carry the pod template's labels, as upstream.
        let mut labels = owner
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_LABEL.into(), hash);
        let revision = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(owner.namespace.to_string()),
                labels: Some(labels),
                owner_references: Some(vec![owner.reference.clone()]),
                ..ObjectMeta::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: next_number,
        };
        match api.create(&PostParams::default(), &revision).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(&name).await.map_err(|source| Error::Create {
                    name: name.clone(),
                    source,
                })?;
                let ours = existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == owner.reference.uid);
                if ours && equal(&existing, &data) {
                    existing
                } else {
                    return Err(Error::Collision { name });
                }
            }
            Err(source) => return Err(Error::Create { name, source }),
        }
    };
    let current = owner
        .current_revision
        .and_then(|name| owned.iter().find(|r| r.name_any() == name))
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    Ok(Revisions { update, current })
}

/// Deletes the oldest revisions not in `live` beyond `limit`.
pub async fn truncate(
    client: &Client,
    namespace: &str,
    owned: &[Arc<ControllerRevision>],
    live: &BTreeSet<String>,
    limit: i32,
) -> Result<(), Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), namespace);
    let history: Vec<Arc<ControllerRevision>> = sorted(owned.to_vec())
        .into_iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let limit = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = history.len().saturating_sub(limit);
    for revision in history.iter().take(excess) {
        let name = revision.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(source) => return Err(Error::Delete { name, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap_or_default()
    }

    #[test]
    fn the_patch_round_trips_and_hashes_are_stable_and_safe() {
        let t = template("busybox:1.35");
        let data = template_patch(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let revision = ControllerRevision {
            data: Some(RawExtension(data.clone())),
            ..ControllerRevision::default()
        };
        assert_eq!(template_of(&revision), Some(t));
        let h = hash(&data, None);
        assert_eq!(h, hash(&data, None));
        assert_ne!(h, hash(&data, Some(1)));
        assert_ne!(h, hash(&template_patch(&template("busybox:1.36")), None));
        assert!(h.bytes().all(|b| ALPHANUMS.contains(&b)));
    }

    #[test]
    fn revisions_sort_by_number() {
        let rev = |name: &str, n: i64| {
            Arc::new(ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                revision: n,
                data: None,
            })
        };
        let names: Vec<String> = sorted(vec![rev("c", 3), rev("a", 1), rev("b", 2)])
            .iter()
            .map(|r| r.name_any())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
