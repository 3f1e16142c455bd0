//! VolumeRestrictions: volumes that only one pod (or one writer) may use, as upstream.
//!
//! Filter: the same GCE persistent disk, AWS EBS volume, iSCSI target or RBD image already used
//! by a pod on the node conflicts unless both mount it read-only (EBS always conflicts):
//! `node(s) had no available disk`. PreFilter: a `ReadWriteOncePod` claim already used by any
//! pod in the cluster makes every node fail with upstream's ReadWriteOncePod reason; that reason
//! is resolvable, so preemption may evict the pod holding the claim (AddPod/RemovePod keep the
//! count). A claim that does not exist rejects the pod in PreFilter.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Pod, Volume};

use crate::framework::{claim_key, CycleState, FilterPlugin, NodeInfo, PodInfo, Unfit};

/// Upstream's reason for a disk already used on the node.
pub const REASON_DISK_CONFLICT: &str = "node(s) had no available disk";
/// Upstream's reason for a ReadWriteOncePod claim in use.
pub const REASON_RWOP_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";

const STATE_KEY: &str = "VolumeRestrictions";

/// Whether the volume is of a kind whose conflicts the plugin checks.
fn restricted(volume: &Volume) -> bool {
    volume.gce_persistent_disk.is_some()
        || volume.aws_elastic_block_store.is_some()
        || volume.iscsi.is_some()
        || volume.rbd.is_some()
}

/// Whether the pod has a GCE PD, AWS EBS, iSCSI or RBD volume.
pub fn has_conflict_volumes(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(restricted))
}

/// Upstream `isVolumeConflict`: whether `volume` clashes with a volume of `existing`.
pub fn conflicts(volume: &Volume, existing: &Pod) -> bool {
    let others = existing
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    others.iter().any(|other| {
        if let (Some(a), Some(b)) = (&volume.gce_persistent_disk, &other.gce_persistent_disk) {
            let both_read_only = a.read_only.unwrap_or(false) && b.read_only.unwrap_or(false);
            if a.pd_name == b.pd_name && !both_read_only {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (
            &volume.aws_elastic_block_store,
            &other.aws_elastic_block_store,
        ) {
            if a.volume_id == b.volume_id {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (&volume.iscsi, &other.iscsi) {
            let both_read_only = a.read_only.unwrap_or(false) && b.read_only.unwrap_or(false);
            if a.iqn == b.iqn && !both_read_only {
                return true;
            }
        }
        if let (Some(a), Some(b)) = (&volume.rbd, &other.rbd) {
            let pool = |p: &Option<String>| p.clone().unwrap_or_else(|| "rbd".into());
            let overlap = a.monitors.iter().any(|m| b.monitors.contains(m));
            let both_read_only = a.read_only.unwrap_or(false) && b.read_only.unwrap_or(false);
            if overlap && pool(&a.pool) == pool(&b.pool) && a.image == b.image && !both_read_only {
                return true;
            }
        }
        false
    })
}

/// Whether none of the pod's restricted volumes clashes with a pod on the node.
pub fn fits(pod: &Pod, node: &NodeInfo) -> bool {
    if node.pods_with_conflict_volumes == 0 {
        return true;
    }
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default();
    volumes.iter().filter(|v| restricted(v)).all(|volume| {
        node.pods
            .values()
            .filter(|p| p.conflict_volumes)
            .all(|existing| !conflicts(volume, &existing.pod))
    })
}

/// PreFilter's result: the pod's ReadWriteOncePod claims and how many of them pods use.
#[derive(Debug, Clone, Default)]
struct State {
    /// `namespace/claim` of each ReadWriteOncePod claim of the pod.
    read_write_once_pod: HashSet<String>,
    /// Uses of those claims by other pods.
    conflicts: i64,
}

impl State {
    fn update(&mut self, other: &PodInfo, sign: i64) {
        for claim in other.claims.iter().filter(|c| !c.ephemeral) {
            if self.read_write_once_pod.contains(&claim_key(other, claim)) {
                self.conflicts += sign;
            }
        }
    }
}

/// The VolumeRestrictions plugin.
pub struct VolumeRestrictions;

impl FilterPlugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        "VolumeRestrictions"
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Result<(), Unfit> {
        let Some(volumes) = pod.volumes.as_ref().filter(|_| !pod.claims.is_empty()) else {
            return Ok(());
        };
        let mut data = State::default();
        for entry in volumes.claims.iter().filter(|c| !c.ephemeral) {
            let Some(claim) = &entry.claim else {
                return Err(vec![format!(
                    "persistentvolumeclaim {:?} not found",
                    entry.name
                )]);
            };
            let rwop = claim
                .spec
                .as_ref()
                .and_then(|s| s.access_modes.as_ref())
                .is_some_and(|m| m.iter().any(|m| m == "ReadWriteOncePod"));
            if rwop {
                let namespace = pod.pod.metadata.namespace.as_deref().unwrap_or_default();
                data.read_write_once_pod
                    .insert(format!("{namespace}/{}", entry.name));
            }
        }
        if data.read_write_once_pod.is_empty() {
            return Ok(());
        }
        let uid = pod.pod.metadata.uid.as_deref();
        for key in &data.read_write_once_pod {
            // At most one pod may use such a claim; count the claim once if any does.
            let used = nodes.iter().any(|n| {
                n.pvc_refs.contains_key(key)
                    && n.pods.values().any(|p| {
                        p.pod.metadata.uid.as_deref() != uid
                            && p.claims.iter().any(|c| &claim_key(p, c) == key)
                    })
            });
            if used {
                data.conflicts += 1;
            }
        }
        state.write(STATE_KEY, data);
        Ok(())
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if pod.conflict_volumes && !fits(&pod.pod, node) {
            return Err(vec![REASON_DISK_CONFLICT.into()]);
        }
        if pod.claims.is_empty() {
            return Ok(());
        }
        match state.read::<State>(STATE_KEY) {
            Some(data) if data.conflicts > 0 => Err(vec![REASON_RWOP_CONFLICT.into()]),
            _ => Ok(()),
        }
    }

    fn add_pod(&self, state: &mut CycleState, _pod: &PodInfo, added: &PodInfo, _node: &NodeInfo) {
        if let Some(data) = state.read_mut::<State>(STATE_KEY) {
            data.update(added, 1);
        }
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        _pod: &PodInfo,
        removed: &PodInfo,
        _node: &NodeInfo,
    ) {
        if let Some(data) = state.read_mut::<State>(STATE_KEY) {
            data.update(removed, -1);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plugins::volume_binding::tests::{claim, from_json, host, pod_with};

    fn pod_using(name: &str, volumes: serde_json::Value) -> PodInfo {
        let pod: Pod = from_json(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}}));
        PodInfo::new(Arc::new(pod))
    }

    fn fits_beside(incoming: serde_json::Value, existing: serde_json::Value) -> bool {
        let mut node = host("a");
        node.add_pod(pod_using("old", existing));
        let pod = pod_using("new", incoming);
        let mut state = CycleState::default();
        assert!(VolumeRestrictions.pre_filter(&mut state, &pod, &[]).is_ok());
        VolumeRestrictions.filter(&state, &pod, &node).is_ok()
    }

    #[test]
    fn the_same_disk_conflicts_unless_every_user_is_read_only() {
        let gce = |pd: &str, ro: bool| serde_json::json!([{"name": "d", "gcePersistentDisk": {"pdName": pd, "readOnly": ro}}]);
        assert!(!fits_beside(gce("foo", false), gce("foo", false)));
        assert!(!fits_beside(gce("foo", true), gce("foo", false)));
        assert!(fits_beside(gce("foo", true), gce("foo", true)));
        assert!(fits_beside(gce("foo", false), gce("bar", false)));
        let ebs =
            |id: &str| serde_json::json!([{"name": "d", "awsElasticBlockStore": {"volumeID": id}}]);
        assert!(!fits_beside(ebs("foo"), ebs("foo")));
        assert!(fits_beside(ebs("foo"), ebs("bar")));
        let iscsi = |iqn: &str, ro: bool| serde_json::json!([{"name": "d", "iscsi": {"targetPortal": "127.0.0.1:3260", "iqn": iqn, "lun": 0, "readOnly": ro}}]);
        assert!(!fits_beside(
            iscsi("iqn.2016-12.server:storage.target01", false),
            iscsi("iqn.2016-12.server:storage.target01", false)
        ));
        assert!(fits_beside(
            iscsi("iqn.2016-12.server:storage.target01", true),
            iscsi("iqn.2016-12.server:storage.target01", true)
        ));
        assert!(fits_beside(
            iscsi("iqn.2016-12.server:storage.target01", false),
            iscsi("iqn.2017-12.server:storage.target01", false)
        ));
        let rbd = |monitors: &[&str], pool: &str, image: &str| serde_json::json!([{"name": "d", "rbd": {"monitors": monitors, "pool": pool, "image": image}}]);
        assert!(!fits_beside(
            rbd(&["a", "b"], "foo", "bar"),
            rbd(&["b", "c"], "foo", "bar")
        ));
        assert!(fits_beside(
            rbd(&["a"], "foo", "bar"),
            rbd(&["c"], "foo", "bar")
        ));
        assert!(fits_beside(
            rbd(&["a"], "foo", "bar"),
            rbd(&["a"], "foo", "baz")
        ));
        // Other volume kinds never conflict.
        let empty = serde_json::json!([{"name": "d", "emptyDir": {}}]);
        assert!(fits_beside(empty.clone(), empty));
    }

    #[test]
    fn a_read_write_once_pod_claim_in_use_blocks_every_node_until_its_user_goes() {
        let rwop = claim(
            "x",
            "",
            "1Gi",
            serde_json::json!({"spec": {"accessModes": ["ReadWriteOncePod"]}}),
        );
        let incoming = pod_with(&["x"], (vec![rwop], vec![], vec![]));
        let holder = pod_using(
            "holder",
            serde_json::json!([{"name": "v", "persistentVolumeClaim": {"claimName": "x"}}]),
        );
        let mut busy = host("a");
        busy.add_pod(holder.clone());
        let nodes = [busy, host("b")];
        let mut state = CycleState::default();
        assert!(VolumeRestrictions
            .pre_filter(&mut state, &incoming, &nodes)
            .is_ok());
        for node in &nodes {
            assert_eq!(
                VolumeRestrictions.filter(&state, &incoming, node),
                Err(vec![REASON_RWOP_CONFLICT.to_string()])
            );
        }
        // Preemption's dry run removes the holder: the claim is free.
        VolumeRestrictions.remove_pod(&mut state, &incoming, &holder, &nodes[0]);
        assert!(VolumeRestrictions
            .filter(&state, &incoming, &nodes[1])
            .is_ok());
        VolumeRestrictions.add_pod(&mut state, &incoming, &holder, &nodes[0]);
        assert!(VolumeRestrictions
            .filter(&state, &incoming, &nodes[1])
            .is_err());
        // A ReadWriteOnce claim may be shared.
        let rwo = claim("x", "", "1Gi", serde_json::json!({}));
        let incoming = pod_with(&["x"], (vec![rwo], vec![], vec![]));
        let mut state = CycleState::default();
        assert!(VolumeRestrictions
            .pre_filter(&mut state, &incoming, &nodes)
            .is_ok());
        assert!(VolumeRestrictions
            .filter(&state, &incoming, &nodes[0])
            .is_ok());
    }

    #[test]
    fn a_missing_claim_is_rejected_in_pre_filter() {
        let incoming = pod_with(&["x"], (vec![], vec![], vec![]));
        let mut state = CycleState::default();
        assert_eq!(
            VolumeRestrictions.pre_filter(&mut state, &incoming, &[host("a")]),
            Err(vec![r#"persistentvolumeclaim "x" not found"#.to_string()])
        );
    }
}
