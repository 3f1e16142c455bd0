//! The pure parts of the Job controller: completed-index sets, back-off delays, pod failure
//! policy matching and condition helpers. Table-tested without an apiserver.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{JobCondition, PodFailurePolicy};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Annotation (and label) carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// Finalizer that keeps a finished pod around until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Label with the owning Job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Label with the owning Job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Legacy label with the owning Job's uid.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// Legacy label with the owning Job's name.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Parses a `completedIndexes` string such as `1,3-5,7`; bad parts are skipped.
pub fn parse_indexes(text: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.parse() {
                    set.insert(v);
                }
            }
        }
    }
    set
}

/// Formats an index set the way upstream does: ascending, consecutive runs as `a-b`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if end > start {
            parts.push(format!("{start}-{end}"));
        } else {
            parts.push(start.to_string());
        }
    }
    parts.join(",")
}

/// The completion index of a pod (annotation first, then label), if valid.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let from = |map: &Option<std::collections::BTreeMap<String, String>>| {
        map.as_ref()
            .and_then(|m| m.get(COMPLETION_INDEX_ANNOTATION))
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|v| *v >= 0)
    };
    from(&pod.metadata.annotations).or_else(|| from(&pod.metadata.labels))
}

/// The delay before the next pod may be created after `failures` consecutive failures:
/// `base * 2^(failures-1)`, capped at `max`; zero without failures.
pub fn backoff_delay(failures: u32, base: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.checked_pow(failures - 1).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// How many pods a NonIndexed Job wants running.
pub fn wanted_active(parallelism: i32, completions: Option<i32>, succeeded: i32) -> i32 {
    let parallelism = parallelism.max(0);
    match completions {
        // Work-queue style: once one pod succeeded, no new pods.
        None => {
            if succeeded > 0 {
                0
            } else {
                parallelism
            }
        }
        Some(completions) => (completions - succeeded).max(0).min(parallelism),
    }
}

/// Whether a `restartPolicy: OnFailure` Job's running or pending pods restarted their containers
/// `backoffLimit` times in total (any restart when the limit is 0): upstream's
/// pastBackoffLimitOnFailure.
pub fn past_backoff_limit_on_failure<'a>(
    restart_policy: Option<&str>,
    backoff_limit: i32,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> bool {
    if restart_policy != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = pods
        .into_iter()
        .filter_map(|p| p.status.as_ref())
        .filter(|s| matches!(s.phase.as_deref(), Some("Running" | "Pending") | None))
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    if backoff_limit == 0 {
        restarts > 0
    } else {
        restarts >= i64::from(backoff_limit)
    }
}

/// What the pod failure policy says about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Fail the whole Job, with this message.
    FailJob(String),
    /// Do not count the failure.
    Ignore,
    /// Count it against backoffLimit (also when no rule matched).
    Count,
}

/// Applies `policy` to a failed pod (upstream's matchPodFailurePolicy).
pub fn match_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> FailureVerdict {
    let Some(policy) = policy else {
        return FailureVerdict::Count;
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(requirement) = &rule.on_exit_codes {
            let containers = status
                .init_container_statuses
                .iter()
                .flatten()
                .chain(status.container_statuses.iter().flatten());
            containers
                .filter(|c| {
                    requirement
                        .container_name
                        .as_ref()
                        .is_none_or(|n| *n == c.name)
                })
                .find_map(|c| {
                    let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                    let listed = requirement.values.contains(&code);
                    let hit = code != 0
                        && match requirement.operator.as_str() {
                            "In" => listed,
                            "NotIn" => !listed,
                            _ => false,
                        };
                    hit.then(|| {
                        format!(
                            "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                            c.name, rule.action
                        )
                    })
                })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            patterns.iter().find_map(|pattern| {
                let wanted = if pattern.status.is_empty() {
                    "True"
                } else {
                    pattern.status.as_str()
                };
                status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == pattern.type_ && c.status == wanted)
                    .then(|| {
                        format!(
                            "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                            pattern.type_, rule.action
                        )
                    })
            })
        } else {
            None
        };
        if let Some(message) = matched {
            return match rule.action.as_str() {
                "FailJob" => FailureVerdict::FailJob(message),
                "Ignore" => FailureVerdict::Ignore,
                _ => FailureVerdict::Count,
            };
        }
    }
    FailureVerdict::Count
}

/// Whether the Job has a condition of `type_` with status `True`.
pub fn has_condition(conditions: &[JobCondition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition, keeping its transition time when the status did not change. Returns
/// whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> bool {
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status == status
            && existing.reason.as_deref() == Some(reason)
            && existing.message.as_deref() == Some(message)
        {
            return false;
        }
        if existing.status != status {
            existing.last_transition_time = Some(Time(now));
        }
        existing.status = status.to_string();
        existing.reason = Some(reason.to_string());
        existing.message = Some(message.to_string());
        existing.last_probe_time = Some(Time(now));
        return true;
    }
    conditions.push(JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
    true
}

/// Whether the Job is finished: `Complete` or `Failed` is `True`.
pub fn is_finished(conditions: &[JobCondition]) -> bool {
    has_condition(conditions, "Complete") || has_condition(conditions, "Failed")
}

/// When the Job finished (the transition time of its `Complete` or `Failed` condition).
pub fn finish_time(conditions: &[JobCondition]) -> Option<jiff::Timestamp> {
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sets_round_trip() {
        let cases = [
            ("", vec![]),
            ("0", vec![0]),
            ("0-1", vec![0, 1]),
            ("0-2", vec![0, 1, 2]),
            ("1,3-5,7", vec![1, 3, 4, 5, 7]),
            ("0-3,5-6,9-10", vec![0, 1, 2, 3, 5, 6, 9, 10]),
        ];
        for (text, values) in cases {
            let set: BTreeSet<i32> = values.into_iter().collect();
            assert_eq!(parse_indexes(text), set, "{text}");
            assert_eq!(format_indexes(&set), text);
        }
        assert_eq!(parse_indexes("x,2,a-b"), BTreeSet::from([2]));
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(360);
        let cases = [
            (0, 0),
            (1, 10),
            (2, 20),
            (3, 40),
            (4, 80),
            (5, 160),
            (6, 320),
            (7, 360),
            (40, 360),
        ];
        for (failures, seconds) in cases {
            assert_eq!(
                backoff_delay(failures, base, max),
                Duration::from_secs(seconds),
                "{failures}"
            );
        }
    }

    #[test]
    fn active_pods_wanted() {
        let cases = [
            (2, Some(3), 0, 2),
            (2, Some(3), 2, 1),
            (2, Some(3), 3, 0),
            (2, Some(3), 5, 0),
            (4, None, 0, 4),
            (4, None, 1, 0),
            (0, Some(3), 0, 0),
        ];
        for (parallelism, completions, succeeded, want) in cases {
            assert_eq!(wanted_active(parallelism, completions, succeeded), want);
        }
    }

    fn failed_pod(exit_code: i32, condition: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {
                "phase": "Failed",
                "conditions": condition.map(|c| vec![serde_json::json!({"type": c, "status": "True"})]),
                "containerStatuses": [{
                    "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code}}
                }]
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn restarts_count_against_the_limit_with_on_failure() {
        let running = |restarts: i32| -> Pod {
            serde_json::from_value(serde_json::json!({"status": {"phase": "Running",
                "containerStatuses": [{"name": "main", "image": "i", "imageID": "", "ready": true,
                    "restartCount": restarts}]}}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let pods = [running(1), running(2)];
        assert!(past_backoff_limit_on_failure(Some("OnFailure"), 3, &pods));
        assert!(!past_backoff_limit_on_failure(Some("OnFailure"), 4, &pods));
        assert!(!past_backoff_limit_on_failure(Some("Never"), 1, &pods));
        assert!(past_backoff_limit_on_failure(
            Some("OnFailure"),
            0,
            &[running(1)]
        ));
        assert!(!past_backoff_limit_on_failure(
            Some("OnFailure"),
            0,
            &[running(0)]
        ));
    }

    #[test]
    fn failure_policy_rules_match_in_order() {
        let policy: PodFailurePolicy = serde_json::from_value(serde_json::json!({"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            match_failure_policy(Some(&policy), &failed_pod(1, Some("DisruptionTarget"))),
            FailureVerdict::Ignore
        );
        assert_eq!(
            match_failure_policy(Some(&policy), &failed_pod(42, None)),
            FailureVerdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        assert_eq!(
            match_failure_policy(Some(&policy), &failed_pod(3, None)),
            FailureVerdict::Count
        );
        assert_eq!(
            match_failure_policy(Some(&policy), &failed_pod(1, None)),
            FailureVerdict::Count
        );
        assert_eq!(
            match_failure_policy(None, &failed_pod(42, None)),
            FailureVerdict::Count
        );
    }

    #[test]
    fn conditions_keep_transition_time_when_unchanged() {
        let t0: jiff::Timestamp = "2024-01-01T00:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let t1 = t0 + jiff::SignedDuration::from_secs(5);
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            t0
        ));
        assert!(!set_condition(
            &mut conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            t1
        ));
        assert!(set_condition(
            &mut conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            t1
        ));
        assert_eq!(conditions[0].last_transition_time, Some(Time(t1)));
        assert!(!is_finished(&conditions));
        set_condition(
            &mut conditions,
            "Complete",
            "True",
            "CompletionsReached",
            "m",
            t1,
        );
        assert!(is_finished(&conditions));
        assert_eq!(finish_time(&conditions), Some(t1));
    }
}
