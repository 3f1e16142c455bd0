//! NodeAffinity: `spec.nodeSelector` and required node affinity must match the node; preferred
//! node affinity terms add their weights to the score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm};

use crate::framework::{
    default_normalize, CycleState, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Unfit,
};

/// Whether one requirement holds for a label/field value map.
pub fn requirement_matches(
    requirement: &NodeSelectorRequirement,
    values: &BTreeMap<String, String>,
) -> bool {
    let actual = values.get(&requirement.key);
    let wanted: &[String] = requirement.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match requirement.operator.as_str() {
        "In" => actual.is_some_and(|v| wanted.contains(v)),
        "NotIn" => actual.is_none_or(|v| !wanted.contains(v)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" | "Lt" => {
            let (Some(actual), Some(limit)) = (
                actual.and_then(|v| number(v)),
                wanted.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if requirement.operator == "Gt" {
                actual > limit
            } else {
                actual < limit
            }
        }
        _ => false,
    }
}

/// Whether a term matches the node (all its expressions and fields; an empty term matches nothing).
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let expressions: &[NodeSelectorRequirement] =
        term.match_expressions.as_deref().unwrap_or_default();
    let fields: &[NodeSelectorRequirement] = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref().unwrap_or(&EMPTY);
    if !expressions.iter().all(|r| requirement_matches(r, labels)) {
        return false;
    }
    if fields.is_empty() {
        return true;
    }
    let field_values: BTreeMap<String, String> = [(
        "metadata.name".to_string(),
        node.metadata.name.clone().unwrap_or_default(),
    )]
    .into();
    fields.iter().all(|r| requirement_matches(r, &field_values))
}

/// Whether the pod's nodeSelector and required node affinity match the node.
pub fn fits(pod: &PodInfo, node: &Node) -> bool {
    let Some(spec) = pod.pod.spec.as_ref() else {
        return true;
    };
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&EMPTY);
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok = required.is_none_or(|selector| {
        selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, node))
    });
    selector_ok && affinity_ok
}

/// The NodeAffinity plugin.
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn unresolvable(&self, _reason: &str) -> bool {
        true
    }

    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        match node.node.as_deref() {
            Some(n) if fits(pod, n) => Ok(()),
            _ => Err(vec![
                "node(s) didn't match Pod's node affinity/selector".into()
            ]),
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(node) = node.node.as_deref() else {
            return 0;
        };
        pod.pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .filter(|t| t.weight != 0 && term_matches(&t.preference, node))
                    .map(|t| i64::from(t.weight))
                    .sum()
            })
            .unwrap_or(0)
    }

    fn normalize(&self, _state: &CycleState, _nodes: &[&NodeInfo], scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::test_util::*;
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity as ApiNodeAffinity, NodeSelector, PreferredSchedulingTerm,
    };

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn labelled(labels: &[(&str, &str)]) -> NodeInfo {
        with_node(node("node-0", "1", "1Gi", "10"), |n| {
            n.metadata.labels = Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
        })
    }

    #[test]
    fn requirements_match_as_upstream() {
        let values: BTreeMap<String, String> = [
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]
        .into();
        let cases = [
            (requirement("zone", "In", &["a", "b"]), true),
            (requirement("zone", "NotIn", &["a"]), false),
            (requirement("zone", "Exists", &[]), true),
            (requirement("gpu", "DoesNotExist", &[]), true),
            (requirement("cores", "Gt", &["4"]), true),
            (requirement("cores", "Lt", &["4"]), false),
            (requirement("zone", "Bogus", &[]), false),
        ];
        for (r, expected) in cases {
            assert_eq!(requirement_matches(&r, &values), expected, "{r:?}");
        }
    }

    #[test]
    fn node_selector_and_required_affinity_filter_nodes() {
        let selected = with_spec(pod("p", None, None), |s| {
            s.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        });
        assert!(NodeAffinity
            .filter(
                &CycleState::default(),
                &selected,
                &labelled(&[("disk", "ssd")])
            )
            .is_ok());
        assert!(NodeAffinity
            .filter(
                &CycleState::default(),
                &selected,
                &labelled(&[("disk", "hdd")])
            )
            .is_err());
        let required = with_spec(pod("p", None, None), |s| {
            s.affinity = Some(Affinity {
                node_affinity: Some(ApiNodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_fields: Some(vec![requirement(
                                "metadata.name",
                                "In",
                                &["node-0"],
                            )]),
                            match_expressions: None,
                        }],
                    }),
                    preferred_during_scheduling_ignored_during_execution: Some(vec![
                        PreferredSchedulingTerm {
                            weight: 5,
                            preference: NodeSelectorTerm {
                                match_expressions: Some(vec![requirement("disk", "In", &["ssd"])]),
                                match_fields: None,
                            },
                        },
                    ]),
                }),
                ..Affinity::default()
            });
        });
        assert!(NodeAffinity
            .filter(&CycleState::default(), &required, &labelled(&[]))
            .is_ok());
        assert_eq!(
            ScorePlugin::score(
                &NodeAffinity,
                &CycleState::default(),
                &required,
                &labelled(&[("disk", "ssd")])
            ),
            5
        );
        assert_eq!(
            ScorePlugin::score(
                &NodeAffinity,
                &CycleState::default(),
                &required,
                &labelled(&[])
            ),
            0
        );
    }
}
