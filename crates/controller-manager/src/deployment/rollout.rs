//! The arithmetic of a rollout, as pure functions over the Deployment and its ReplicaSets
//! (`all[new]` is the ReplicaSet matching the current template, if any): how far to scale the new
//! ReplicaSet up, the old ones down, proportional scaling, and the Deployment status.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};

use super::util::{self, reason};

/// A scaling decision: set `all[index]` to `replicas`.
pub type Scale = (usize, i32);

fn created(rs: &ReplicaSet) -> (Option<jiff::Timestamp>, String) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

/// Indices of `all` except `new`, oldest first.
pub fn old_indices(all: &[ReplicaSet], new: Option<usize>) -> Vec<usize> {
    let mut old: Vec<usize> = (0..all.len()).filter(|i| Some(*i) != new).collect();
    old.sort_by_key(|i| created(&all[*i]));
    old
}

/// How many replicas the new ReplicaSet should have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_new_replicas(d: &Deployment, all: &[ReplicaSet], new_replicas: i32) -> i32 {
    let desired = util::replicas(d);
    if !util::is_rolling_update(d) {
        return desired;
    }
    let (surge, _) = util::resolve_fenceposts(d);
    let current: i32 = all.iter().map(util::rs_replicas).sum();
    let max_total = desired + surge;
    if current >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - current).min(desired - new_replicas);
    new_replicas + scale_up.max(0)
}

/// The scale-downs of old ReplicaSets in one rolling-update step (upstream's
/// `reconcileOldReplicaSets`: first unhealthy replicas, then healthy ones while availability
/// stays at or above `replicas - maxUnavailable`).
pub fn scale_down_old(d: &Deployment, all: &[ReplicaSet], new: Option<usize>) -> Vec<Scale> {
    let old = old_indices(all, new);
    let mut sizes: Vec<i32> = all.iter().map(util::rs_replicas).collect();
    let old_count: i32 = old.iter().map(|i| sizes[*i]).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count: i32 = sizes.iter().sum();
    let desired = util::replicas(d);
    let max_unavailable = util::max_unavailable(d);
    let min_available = desired - max_unavailable;
    let new_unavailable = new
        .map(|i| util::rs_replicas(&all[i]) - util::rs_available(&all[i]))
        .unwrap_or(0);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut changes = Vec::new();
    // Unhealthy replicas of old ReplicaSets go first: removing them costs no availability.
    let mut cleaned = 0;
    for &i in &old {
        if cleaned >= max_scaled_down {
            break;
        }
        if sizes[i] == 0 {
            continue;
        }
        let unhealthy = sizes[i] - util::rs_available(&all[i]);
        if unhealthy <= 0 {
            continue;
        }
        let count = unhealthy.min(max_scaled_down - cleaned);
        sizes[i] -= count;
        cleaned += count;
        changes.push((i, sizes[i]));
    }
    // Then healthy ones, as long as availability allows. A ReplicaSet's available count is
    // capped at its size: right after a scale-down its status can still count the pods being
    // removed, and counting them would let the next step remove more than maxUnavailable allows.
    let available: i32 = all
        .iter()
        .map(|rs| util::rs_available(rs).min(util::rs_replicas(rs)))
        .sum();
    if available > min_available {
        let budget = available - min_available;
        let mut scaled = 0;
        for &i in &old {
            if scaled >= budget {
                break;
            }
            if sizes[i] == 0 {
                continue;
            }
            let count = sizes[i].min(budget - scaled);
            sizes[i] -= count;
            scaled += count;
            changes.push((i, sizes[i]));
        }
    }
    // Keep only the final size per ReplicaSet.
    let mut last: Vec<Scale> = Vec::new();
    for (i, size) in changes {
        match last.iter_mut().find(|(j, _)| *j == i) {
            Some(entry) => entry.1 = size,
            None => last.push((i, size)),
        }
    }
    last
}

/// The only ReplicaSet with replicas, or the newest if none has any (`FindActiveOrLatest`);
/// `None` when several are active.
pub fn active_or_latest(all: &[ReplicaSet], new: Option<usize>) -> Option<usize> {
    let mut active: Vec<usize> = (0..all.len())
        .filter(|i| util::rs_replicas(&all[*i]) > 0)
        .collect();
    match active.len() {
        0 => new.or_else(|| (0..all.len()).max_by_key(|i| created(&all[*i]))),
        1 => active.pop(),
        _ => None,
    }
}

/// Whether the new ReplicaSet runs all replicas and they are available.
pub fn is_saturated(d: &Deployment, all: &[ReplicaSet], new: Option<usize>) -> bool {
    let Some(rs) = new.map(|i| &all[i]) else {
        return false;
    };
    let desired = util::replicas(d);
    util::rs_replicas(rs) == desired
        && util::int_annotation(rs.metadata.annotations.as_ref(), util::DESIRED_REPLICAS)
            == Some(desired)
        && util::rs_available(rs) == desired
}

/// Whether an active ReplicaSet was last scaled for a different replica count.
pub fn is_scaling_event(d: &Deployment, all: &[ReplicaSet]) -> bool {
    let desired = util::replicas(d);
    all.iter()
        .filter(|rs| util::rs_replicas(rs) > 0)
        .filter_map(|rs| {
            util::int_annotation(rs.metadata.annotations.as_ref(), util::DESIRED_REPLICAS)
        })
        .any(|annotated| annotated != desired)
}

/// Scaling while several ReplicaSets are active (upstream's `scale`): the one active ReplicaSet
/// takes the new size; otherwise replicas are spread in proportion to the sizes.
pub fn scale_plan(d: &Deployment, all: &[ReplicaSet], new: Option<usize>) -> Vec<Scale> {
    let desired = util::replicas(d);
    if let Some(i) = active_or_latest(all, new) {
        if util::rs_replicas(&all[i]) == desired {
            return Vec::new();
        }
        return vec![(i, desired)];
    }
    if is_saturated(d, all, new) {
        return old_indices(all, new)
            .into_iter()
            .filter(|i| util::rs_replicas(&all[*i]) != 0)
            .map(|i| (i, 0))
            .collect();
    }
    if !util::is_rolling_update(d) {
        return Vec::new();
    }
    let surge = util::max_surge(d);
    let mut active: Vec<usize> = (0..all.len())
        .filter(|i| util::rs_replicas(&all[*i]) > 0)
        .collect();
    let current: i32 = active.iter().map(|i| util::rs_replicas(&all[*i])).sum();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add = allowed - current;
    if to_add == 0 {
        return Vec::new();
    }
    active.sort_by(|a, b| {
        let size = util::rs_replicas(&all[*b]).cmp(&util::rs_replicas(&all[*a]));
        let age = created(&all[*a]).cmp(&created(&all[*b]));
        // Growing: larger and newer first; shrinking: larger and older first.
        size.then(if to_add > 0 { age.reverse() } else { age })
    });
    let mut added = 0;
    let mut plan: Vec<Scale> = Vec::new();
    for &i in &active {
        let size = util::rs_replicas(&all[i]);
        let proportion = proportion(&all[i], d, to_add, added);
        added += proportion;
        plan.push((i, size + proportion));
    }
    if let Some(first) = plan.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    plan.into_iter()
        .filter(|(i, size)| util::rs_replicas(&all[*i]) != *size)
        .collect()
}

fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    let size = util::rs_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let size = util::rs_replicas(rs);
    let desired = util::replicas(d);
    if desired == 0 {
        return -size;
    }
    let deployment_max = desired + util::max_surge(d);
    let annotated = util::int_annotation(rs.metadata.annotations.as_ref(), util::MAX_REPLICAS)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let scaled = (f64::from(size) * f64::from(deployment_max) / f64::from(annotated)).round();
    // The product of two i32 ratios stays in range.
    (scaled as i32) - size
}

/// Old ReplicaSets to delete beyond `revisionHistoryLimit` (fully scaled down, not being deleted,
/// oldest revision first).
pub fn cleanup_victims(d: &Deployment, all: &[ReplicaSet], new: Option<usize>) -> Vec<usize> {
    let limit = d
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let mut candidates: Vec<usize> = old_indices(all, new)
        .into_iter()
        .filter(|i| all[*i].metadata.deletion_timestamp.is_none())
        .collect();
    let excess = i32::try_from(candidates.len()).unwrap_or(i32::MAX) - limit.max(0);
    if excess <= 0 {
        return Vec::new();
    }
    candidates.sort_by(|a, b| {
        util::revision(all[*a].metadata.annotations.as_ref())
            .cmp(&util::revision(all[*b].metadata.annotations.as_ref()))
            .then_with(|| created(&all[*a]).cmp(&created(&all[*b])))
    });
    candidates
        .into_iter()
        .take(usize::try_from(excess).unwrap_or(0))
        .filter(|i| {
            let rs = &all[*i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            util::rs_status_replicas(rs) == 0
                && util::rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .collect()
}

fn nonzero(value: i32) -> Option<i32> {
    (value != 0).then_some(value)
}

/// The status the Deployment should report (upstream's `calculateStatus`), with the Available
/// condition set; other conditions carried over.
pub fn calculate_status(
    d: &Deployment,
    all: &[ReplicaSet],
    new: Option<usize>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(util::rs_available).sum();
    let total_spec: i32 = all.iter().map(util::rs_replicas).sum();
    let previous = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(all.iter().map(util::rs_status_replicas).sum()),
        updated_replicas: nonzero(new.map(|i| util::rs_status_replicas(&all[i])).unwrap_or(0)),
        ready_replicas: nonzero(all.iter().map(util::rs_ready).sum()),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero((total_spec - available).max(0)),
        collision_count: previous.collision_count,
        conditions: previous.conditions,
        terminating_replicas: None,
    };
    if available >= util::replicas(d) - util::max_unavailable(d) {
        util::set_condition(
            &mut status,
            util::new_condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.",
                now,
            ),
        );
    } else {
        util::set_condition(
            &mut status,
            util::new_condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.",
                now,
            ),
        );
    }
    status
}

fn count(value: Option<i32>) -> i32 {
    value.unwrap_or(0)
}

/// Whether the rollout is complete (upstream's `DeploymentComplete`).
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = util::replicas(d);
    count(status.updated_replicas) == desired
        && count(status.replicas) == desired
        && count(status.available_replicas) == desired
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether the new status shows progress over the stored one (`DeploymentProgressing`).
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Whether the progress deadline passed without progress (`DeploymentTimedOut`).
pub fn is_timed_out(d: &Deployment, status: &DeploymentStatus, now: jiff::Timestamp) -> bool {
    let Some(deadline) = d.spec.as_ref().and_then(|s| s.progress_deadline_seconds) else {
        return false;
    };
    let Some(condition) = util::get_condition(status, "Progressing") else {
        return false;
    };
    match condition.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => false,
        Some(reason::TIMED_OUT) => true,
        _ => condition
            .last_update_time
            .as_ref()
            .is_some_and(|t| now.as_second() > t.0.as_second() + i64::from(deadline)),
    }
}

/// Sorts by creation (oldest first) for stable output.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a).cmp(&created(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
        RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn deployment(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn rs(name: &str, age_secs: i64, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(1000 - age_secs),
                )),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ready_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    #[test]
    fn new_replicaset_scales_up_within_surge() {
        let d = deployment(3, 1, 0);
        let all = [rs("old", 100, 3, 3), rs("new", 1, 0, 0)];
        assert_eq!(new_rs_new_replicas(&d, &all, 0), 1);
        let all = [rs("old", 100, 3, 3), rs("new", 1, 1, 0)];
        assert_eq!(new_rs_new_replicas(&d, &all, 1), 1, "at max total already");
        let all = [rs("old", 100, 2, 2), rs("new", 1, 1, 1)];
        assert_eq!(new_rs_new_replicas(&d, &all, 1), 2);
    }

    #[test]
    fn old_replicasets_scale_down_only_while_availability_allows() {
        let d = deployment(3, 1, 0);
        // New RS surged to 1 but it is not available yet: nothing may go.
        let all = [rs("old", 100, 3, 3), rs("new", 1, 1, 0)];
        assert_eq!(scale_down_old(&d, &all, Some(1)), Vec::<Scale>::new());
        // New pod available: one old pod may go.
        let all = [rs("old", 100, 3, 3), rs("new", 1, 1, 1)];
        assert_eq!(scale_down_old(&d, &all, Some(1)), vec![(0, 2)]);
    }

    #[test]
    fn a_stale_available_count_after_a_scale_down_does_not_free_more_pods() {
        let d = deployment(4, 1, 1);
        // The old RS was just scaled down to 2 but its status still counts 4 available pods;
        // with two new pods available, 4 pods are really available and min available is 3:
        // one old pod may go, not both.
        let all = [rs("old", 100, 2, 4), rs("new", 1, 2, 2)];
        assert_eq!(scale_down_old(&d, &all, Some(1)), vec![(0, 1)]);
    }

    #[test]
    fn unhealthy_old_replicas_are_removed_first() {
        let d = deployment(4, 1, 1);
        let all = [rs("old", 100, 4, 2), rs("new", 1, 1, 0)];
        // 5 pods, min available 3, new unavailable 1 -> at most 1 may go; it is an unhealthy one.
        assert_eq!(scale_down_old(&d, &all, Some(1)), vec![(0, 3)]);
    }

    #[test]
    fn a_single_active_replicaset_takes_the_new_size() {
        let d = deployment(5, 1, 0);
        let all = [rs("old", 100, 0, 0), rs("new", 1, 3, 3)];
        assert_eq!(scale_plan(&d, &all, Some(1)), vec![(1, 5)]);
    }

    #[test]
    fn proportional_scaling_spreads_new_replicas() {
        let mut d = deployment(20, 2, 0);
        d.status = Some(DeploymentStatus {
            replicas: Some(12),
            ..DeploymentStatus::default()
        });
        let mut old = rs("old", 100, 6, 6);
        let mut new = rs("new", 1, 6, 6);
        for r in [&mut old, &mut new] {
            r.metadata.annotations =
                Some([(util::MAX_REPLICAS.to_string(), "12".to_string())].into());
        }
        let all = [old, new];
        let plan = scale_plan(&d, &all, Some(1));
        let total: i32 = plan.iter().map(|(_, s)| s).sum();
        assert_eq!(total, 22);
    }

    #[test]
    fn status_reports_counts_and_availability() {
        let d = deployment(3, 1, 0);
        let all = [rs("old", 100, 1, 1), rs("new", 1, 3, 2)];
        let status = calculate_status(&d, &all, Some(1), jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(status.replicas, Some(4));
        assert_eq!(status.updated_replicas, Some(3));
        assert_eq!(status.available_replicas, Some(3));
        assert_eq!(status.unavailable_replicas, Some(1));
        let available = util::get_condition(&status, "Available").map(|c| c.status.clone());
        assert_eq!(available.as_deref(), Some("True"));
        assert!(!is_complete(&d, &status));
        let all = [rs("new", 1, 3, 3)];
        let status = calculate_status(&d, &all, Some(0), jiff::Timestamp::UNIX_EPOCH);
        assert!(is_complete(&d, &status));
    }

    #[test]
    fn history_beyond_the_limit_is_cleaned_oldest_revision_first() {
        let mut d = deployment(1, 1, 0);
        if let Some(spec) = d.spec.as_mut() {
            spec.revision_history_limit = Some(1);
        }
        let mut all = vec![rs("r1", 300, 0, 0), rs("r2", 200, 0, 0), rs("r3", 1, 1, 1)];
        for (i, r) in all.iter_mut().enumerate() {
            r.metadata.annotations =
                Some([(util::REVISION.to_string(), (i + 1).to_string())].into());
        }
        assert_eq!(cleanup_victims(&d, &all, Some(2)), vec![0]);
    }

    #[test]
    fn progress_deadline_passes_only_without_progress() {
        let mut d = deployment(3, 1, 0);
        if let Some(spec) = d.spec.as_mut() {
            spec.progress_deadline_seconds = Some(600);
        }
        let t0 = jiff::Timestamp::UNIX_EPOCH;
        let mut status = DeploymentStatus::default();
        util::set_condition(
            &mut status,
            util::new_condition("Progressing", "True", reason::RS_UPDATED, "m", t0),
        );
        let later = |secs| t0 + jiff::SignedDuration::from_secs(secs);
        assert!(!is_timed_out(&d, &status, later(599)));
        assert!(is_timed_out(&d, &status, later(601)));
        util::set_condition(
            &mut status,
            util::new_condition("Progressing", "True", reason::NEW_RS_AVAILABLE, "m", t0),
        );
        assert!(!is_timed_out(&d, &status, later(10_000)));
    }

    #[test]
    fn progress_is_more_updated_ready_or_available_pods() {
        let mut d = deployment(3, 1, 0);
        d.status = Some(DeploymentStatus {
            replicas: Some(3),
            updated_replicas: Some(1),
            ready_replicas: Some(3),
            available_replicas: Some(3),
            ..DeploymentStatus::default()
        });
        let same = d.status.clone().unwrap_or_default();
        assert!(!is_progressing(&d, &same));
        let more_updated = DeploymentStatus {
            updated_replicas: Some(2),
            ..same
        };
        assert!(is_progressing(&d, &more_updated));
    }
}
