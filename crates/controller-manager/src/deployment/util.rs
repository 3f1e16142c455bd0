//! Pure helpers of the Deployment controller: defaults, the pod-template hash, annotations,
//! rolling-update fenceposts and status conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, DeploymentStrategy, ReplicaSet,
    RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label carrying the template hash on ReplicaSets and their pods.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The revision of a Deployment / ReplicaSet.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a ReplicaSet had before (not maintained here, never copied).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas + maxSurge when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Condition reasons, as upstream.
pub mod reason {
    /// A new ReplicaSet was created.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// An existing ReplicaSet matches the template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout moved forward.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout is complete.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// The rollout made no progress within the deadline.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Enough pods are available.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Not enough pods are available.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
    /// The Deployment is paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// The Deployment was resumed.
    pub const RESUMED: &str = "DeploymentResumed";
}

const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Fills in what the apiserver defaults upstream, so the controller never depends on it.
pub fn with_defaults(mut deployment: Deployment) -> Deployment {
    let spec = deployment.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    if strategy.type_.is_none() {
        strategy.type_ = Some("RollingUpdate".into());
    }
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        rolling
            .max_surge
            .get_or_insert(IntOrString::String("25%".into()));
        rolling
            .max_unavailable
            .get_or_insert(IntOrString::String("25%".into()));
    }
    deployment
}

/// `spec.replicas` (after defaults).
pub fn replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas`.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `status.availableReplicas`.
pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// A ReplicaSet's `status.replicas`.
pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

/// A ReplicaSet's `status.readyReplicas`.
pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// Whether the strategy is RollingUpdate.
pub fn is_rolling_update(deployment: &Deployment) -> bool {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// Resolves an int-or-percent against `total`; percentages round up or down as asked.
pub fn scaled_value(value: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                // Validation rejects anything else; treat garbage as 0 rather than panic.
                return 0;
            };
            let product = i64::from(total) * percent;
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

/// `(maxSurge, maxUnavailable)` resolved against the replicas: surge rounds up, unavailable down,
/// and both zero becomes unavailable 1 (upstream's `ResolveFenceposts`).
pub fn resolve_fenceposts(deployment: &Deployment) -> (i32, i32) {
    let rolling = deployment
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let desired = replicas(deployment);
    let surge = scaled_value(rolling.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled_value(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        desired,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// maxSurge for a rolling update, 0 otherwise.
pub fn max_surge(deployment: &Deployment) -> i32 {
    if is_rolling_update(deployment) {
        resolve_fenceposts(deployment).0
    } else {
        0
    }
}

/// maxUnavailable for a rolling update (at most replicas), 0 otherwise.
pub fn max_unavailable(deployment: &Deployment) -> i32 {
    let desired = replicas(deployment);
    if !is_rolling_update(deployment) || desired == 0 {
        return 0;
    }
    resolve_fenceposts(deployment).1.min(desired)
}

/// FNV-1a, 32 bits.
fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Maps a string onto characters that cannot form bad words (upstream's `SafeEncodeString`).
fn safe_encode(input: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    input
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The `pod-template-hash` of a template: FNV-32a over its canonical JSON plus the collision
/// count, printed in decimal and safe-encoded.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
    }
    safe_encode(&fnv32a(&bytes).to_string())
}

/// Whether two templates are equal once the `pod-template-hash` label is ignored.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut() {
            if let Some(labels) = meta.labels.as_mut() {
                labels.remove(POD_TEMPLATE_HASH);
                if labels.is_empty() {
                    meta.labels = None;
                }
            }
        }
        serde_json::to_value(t).unwrap_or_default()
    };
    strip(a) == strip(b)
}

/// The revision annotation as a number (0 when absent or bad).
pub fn revision(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Longest `deployment.kubernetes.io/revision-history` value kept (upstream's 2000 characters).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Raises a ReplicaSet's revision annotation to `new_revision` (never lowers it). When it had
/// a revision before, that one is appended to the revision-history annotation, dropping the oldest
/// entries beyond [`MAX_REVISION_HISTORY_CHARS`] (upstream's SetNewReplicaSetAnnotations: a
/// rolled-back-to ReplicaSet remembers the revisions it served). Returns whether anything changed.
pub fn bump_revision(annotations: &mut BTreeMap<String, String>, new_revision: i64) -> bool {
    let old = annotations.get(REVISION).cloned();
    let old_number = old
        .as_deref()
        .and_then(|r| r.parse::<i64>().ok())
        .unwrap_or(0);
    if old_number >= new_revision {
        return false;
    }
    annotations.insert(REVISION.into(), new_revision.to_string());
    if let Some(old) = old.filter(|o| !o.is_empty()) {
        let history = annotations
            .get(REVISION_HISTORY)
            .cloned()
            .unwrap_or_default();
        if history.is_empty() {
            annotations.insert(REVISION_HISTORY.into(), old);
        } else {
            let mut entries: Vec<&str> = history.split(',').collect();
            let mut total = history.len() + old.len() + 1;
            let mut start = 0;
            while total > MAX_REVISION_HISTORY_CHARS && start < entries.len() {
                total -= entries[start].len() + 1;
                start += 1;
            }
            if total <= MAX_REVISION_HISTORY_CHARS {
                entries.drain(..start);
                entries.push(&old);
                annotations.insert(REVISION_HISTORY.into(), entries.join(","));
            }
        }
    }
    true
}

/// An integer annotation.
pub fn int_annotation(annotations: Option<&BTreeMap<String, String>>, name: &str) -> Option<i32> {
    annotations
        .and_then(|a| a.get(name))
        .and_then(|v| v.parse().ok())
}

/// The Deployment's annotations that a ReplicaSet should carry too.
pub fn copyable_annotations(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The condition of `type_`.
pub fn get_condition<'a>(
    status: &'a DeploymentStatus,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// A fresh condition stamped `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition (upstream's `SetDeploymentCondition`): nothing changes when status and reason
/// are the same; the transition time is kept when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

/// The first `ReplicaFailure=True` condition of the new ReplicaSet, else of any other, as a
/// Deployment condition (upstream's getReplicaFailures).
pub fn replica_failure(all: &[ReplicaSet], new: Option<usize>) -> Option<DeploymentCondition> {
    let order = new
        .into_iter()
        .chain((0..all.len()).filter(|i| Some(*i) != new));
    order
        .filter_map(|i| all.get(i))
        .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| DeploymentCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time.clone(),
        })
}

/// Removes the condition of `type_`.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;

    fn deployment(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        let cases = [
            (3, pct("25%"), pct("25%"), (1, 0)),
            (10, pct("25%"), pct("25%"), (3, 2)),
            (4, pct("25%"), pct("25%"), (1, 1)),
            (3, IntOrString::Int(0), IntOrString::Int(0), (0, 1)),
            (5, IntOrString::Int(2), pct("50%"), (2, 2)),
            (1, pct("0%"), pct("0%"), (0, 1)),
        ];
        for (replicas, surge, unavailable, expected) in cases {
            let d = deployment(replicas, surge.clone(), unavailable.clone());
            assert_eq!(
                resolve_fenceposts(&d),
                expected,
                "{replicas} {surge:?} {unavailable:?}"
            );
        }
    }

    #[test]
    fn defaults_match_upstream() {
        let d = with_defaults(Deployment::default());
        assert_eq!(replicas(&d), 1);
        assert!(is_rolling_update(&d));
        assert_eq!(
            resolve_fenceposts(&with_defaults(deployment(
                4,
                IntOrString::String("25%".into()),
                IntOrString::String("25%".into())
            ))),
            (1, 1)
        );
        assert_eq!(
            d.spec.as_ref().and_then(|s| s.revision_history_limit),
            Some(10)
        );
    }

    #[test]
    fn hash_is_stable_safe_and_depends_on_template_and_collisions() {
        let template = PodTemplateSpec::default();
        let a = compute_hash(&template, None);
        assert_eq!(a, compute_hash(&template, None));
        assert_ne!(a, compute_hash(&template, Some(1)));
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert!(!a.is_empty() && a.len() <= 10);
    }

    #[test]
    fn bumping_a_revision_remembers_the_old_one_in_the_history() {
        let mut annotations = BTreeMap::new();
        assert!(bump_revision(&mut annotations, 1));
        assert_eq!(annotations.get(REVISION).map(String::as_str), Some("1"));
        assert!(!annotations.contains_key(REVISION_HISTORY));
        assert!(bump_revision(&mut annotations, 3));
        assert!(!bump_revision(&mut annotations, 2));
        assert!(bump_revision(&mut annotations, 5));
        assert_eq!(annotations.get(REVISION).map(String::as_str), Some("5"));
        assert_eq!(
            annotations.get(REVISION_HISTORY).map(String::as_str),
            Some("1,3")
        );
    }

    #[test]
    fn templates_compare_equal_ignoring_the_hash_label() {
        let mut a = PodTemplateSpec::default();
        let mut b = PodTemplateSpec::default();
        a.metadata = Some(Default::default());
        b.metadata = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            labels: Some([(POD_TEMPLATE_HASH.to_string(), "x".to_string())].into()),
            ..Default::default()
        });
        assert!(equal_ignore_hash(&a, &b));
        a.metadata = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        });
        assert!(!equal_ignore_hash(&a, &b));
    }

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let mut status = DeploymentStatus::default();
        let t0 = jiff::Timestamp::UNIX_EPOCH;
        let t1 = t0 + jiff::SignedDuration::from_secs(10);
        set_condition(
            &mut status,
            new_condition("Progressing", "True", reason::NEW_RS_CREATED, "m", t0),
        );
        set_condition(
            &mut status,
            new_condition("Progressing", "True", reason::RS_UPDATED, "m", t1),
        );
        let condition = get_condition(&status, "Progressing")
            .cloned()
            .unwrap_or_else(|| panic!("missing"));
        assert_eq!(condition.reason.as_deref(), Some(reason::RS_UPDATED));
        assert_eq!(condition.last_transition_time, Some(Time(t0)));
        assert_eq!(condition.last_update_time, Some(Time(t1)));
    }
}
