//! TaintToleration: a node's NoSchedule/NoExecute taints must be tolerated; PreferNoSchedule
//! taints that are not tolerated lower the score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    default_normalize, CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit,
};

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key with Equal matches nothing but the empty key.
            (!key.is_empty() || taint.key.is_empty())
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .as_ref()
        .and_then(|n| n.spec.as_ref())
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The first NoSchedule/NoExecute taint the pod does not tolerate.
pub fn untolerated(taints: &[Taint], tolerations: &[Toleration]) -> Option<Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .cloned()
}

/// The TaintToleration plugin.
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn unresolvable(&self, _reason: &str) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match untolerated(taints(node), tolerations(pod)) {
            None => Ok(()),
            Some(taint) => Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.unwrap_or_default()
            )]),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let taints = taints(node);
        if taints.is_empty() {
            return 0;
        }
        let tolerations: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| {
                t.effect
                    .as_deref()
                    .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
            })
            .collect();
        let count = taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(
        key: Option<&str>,
        operator: Option<&str>,
        value: Option<&str>,
        effect: Option<&str>,
    ) -> Toleration {
        Toleration {
            key: key.map(str::to_string),
            operator: operator.map(str::to_string),
            value: value.map(str::to_string),
            effect: effect.map(str::to_string),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = taint("dedicated", Some("gpu"), "NoSchedule");
        let cases = [
            (toleration(Some("dedicated"), None, Some("gpu"), None), true),
            (
                toleration(Some("dedicated"), Some("Equal"), Some("cpu"), None),
                false,
            ),
            (
                toleration(Some("dedicated"), Some("Exists"), None, Some("NoSchedule")),
                true,
            ),
            (
                toleration(Some("dedicated"), Some("Exists"), None, Some("NoExecute")),
                false,
            ),
            (toleration(None, Some("Exists"), None, None), true),
            (toleration(Some("other"), Some("Exists"), None, None), false),
        ];
        for (tol, expected) in cases {
            assert_eq!(tolerates(&tol, &t), expected, "{tol:?}");
        }
    }

    #[test]
    fn untolerated_no_schedule_taints_fail_and_prefer_no_schedule_ones_do_not() {
        let taints = vec![
            taint("soft", None, "PreferNoSchedule"),
            taint("hard", Some("x"), "NoExecute"),
        ];
        assert_eq!(
            untolerated(&taints, &[]).map(|t| t.key),
            Some("hard".into())
        );
        let tol = toleration(Some("hard"), Some("Exists"), None, None);
        assert_eq!(untolerated(&taints, &[tol]), None);
    }
}
