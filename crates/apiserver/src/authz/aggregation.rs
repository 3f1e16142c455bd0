//! ClusterRole aggregation: a ClusterRole with `aggregationRule.clusterRoleSelectors` gets as
//! `rules` the union of the rules of every other ClusterRole whose labels match one of the
//! selectors (upstream's clusterrole-aggregation controller, run here inside the apiserver after
//! every change to the RBAC index).

use serde_json::{json, Value};

use super::rbac::{rules_of, Rule, Snapshot, PREFIX};
use crate::storage::{Storage, StorageError};

/// Whether `labels` satisfy a metav1 LabelSelector (`matchLabels`, `matchExpressions`).
pub fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
        if ml.iter().any(|(k, v)| label(k) != v.as_str()) {
            return false;
        }
    }
    let exprs = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    exprs.iter().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => label(key).is_some_and(|v| values.contains(&v)),
            Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
            Some("Exists") => label(key).is_some(),
            Some("DoesNotExist") => label(key).is_none(),
            _ => false,
        }
    })
}

/// The aggregated rules of `role` (None when it has no aggregation rule).
pub fn aggregated_rules(role: &Value, snapshot: &Snapshot) -> Option<Vec<Rule>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?;
    let own = crate::objects::name(role).unwrap_or("");
    let mut names: Vec<&String> = snapshot.cluster_roles.keys().collect();
    names.sort();
    let mut rules: Vec<Rule> = Vec::new();
    for name in names {
        if name == own {
            continue;
        }
        let Some(other) = snapshot.cluster_roles.get(name) else {
            continue;
        };
        let labels = other.pointer("/metadata/labels");
        if selectors.iter().any(|s| selector_matches(s, labels)) {
            for r in rules_of(other) {
                if !rules.contains(&r) {
                    rules.push(r);
                }
            }
        }
    }
    Some(rules)
}

async fn write_rules(
    storage: &dyn Storage,
    name: &str,
    rules: &[Rule],
) -> Result<bool, StorageError> {
    let key = format!("{PREFIX}clusterroles/{name}");
    let Some(kv) = storage.get(&key).await? else {
        return Ok(false);
    };
    let Ok(mut object) = serde_json::from_slice::<Value>(&kv.value) else {
        return Ok(false);
    };
    if rules_of(&object) == rules {
        return Ok(false);
    }
    object["rules"] = json!(rules);
    let value = serde_json::to_vec(&object).map_err(|e| StorageError::Backend(e.to_string()))?;
    storage.update(&key, kv.mod_revision, value).await?;
    Ok(true)
}

/// Brings every aggregated ClusterRole's rules up to date (writes only what changed).
pub async fn aggregate(storage: &dyn Storage, snapshot: &Snapshot) {
    for (name, role) in &snapshot.cluster_roles {
        let Some(rules) = aggregated_rules(role, snapshot) else {
            continue;
        };
        if rules_of(role) == rules {
            continue;
        }
        match write_rules(storage, name, &rules).await {
            Ok(true) => tracing::debug!(clusterrole = %name, rules = rules.len(), "aggregated"),
            Ok(false) => {}
            Err(StorageError::Conflict { .. }) => {}
            Err(error) => tracing::warn!(clusterrole = %name, %error, "aggregating ClusterRole"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"});
        let s = json!({"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}});
        assert!(selector_matches(&s, Some(&labels)));
        assert!(!selector_matches(&s, None));
        let s = json!({"matchExpressions": [{"key": "rbac.authorization.k8s.io/aggregate-to-view",
            "operator": "Exists"}]});
        assert!(selector_matches(&s, Some(&labels)));
        let s = json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["a"]}]});
        assert!(selector_matches(&s, Some(&labels)));
    }
}
