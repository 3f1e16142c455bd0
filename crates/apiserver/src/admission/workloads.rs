//! Defaulting of workload controllers (deployments, replica sets, stateful sets, daemon sets,
//! jobs, cron jobs, replication controllers) and their pod templates.

use serde_json::{json, Value};

use super::pods::default_template;

fn spec(object: &mut Value) -> Option<&mut Value> {
    object.get_mut("spec").filter(|s| s.is_object())
}

fn set_default(object: &mut Value, key: &str, value: Value) {
    if let Some(o) = object.as_object_mut() {
        if o.get(key).is_none_or(Value::is_null) {
            o.insert(key.to_string(), value);
        }
    }
}

/// Deployment defaults: replicas 1, RollingUpdate 25%/25%, revisionHistoryLimit 10,
/// progressDeadlineSeconds 600.
pub fn default_deployment(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "strategy", json!({}));
    if let Some(strategy) = spec.get_mut("strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
    }
    if spec.pointer("/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
        let ru = spec["strategy"]
            .as_object_mut()
            .map(|s| s.entry("rollingUpdate").or_insert_with(|| json!({})));
        if let Some(ru) = ru {
            set_default(ru, "maxUnavailable", json!("25%"));
            set_default(ru, "maxSurge", json!("25%"));
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec.get_mut("template"));
}

/// ReplicaSet defaults: replicas 1.
pub fn default_replicaset(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(spec, "replicas", json!(1));
    default_template(spec.get_mut("template"));
}

/// ReplicationController defaults: replicas 1, selector = template labels.
pub fn default_rc(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(spec, "replicas", json!(1));
    if spec.get("selector").is_none() {
        if let Some(labels) = spec.pointer("/template/metadata/labels").cloned() {
            spec["selector"] = labels;
        }
    }
    default_template(spec.get_mut("template"));
}

/// StatefulSet defaults.
pub fn default_statefulset(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(
        spec,
        "updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    default_template(spec.get_mut("template"));
}

/// DaemonSet defaults.
pub fn default_daemonset(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(
        spec,
        "updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
    );
    set_default(spec, "revisionHistoryLimit", json!(10));
    default_template(spec.get_mut("template"));
}

/// Job defaults.
pub fn default_job(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(spec, "parallelism", json!(1));
    if spec.get("completions").is_none() && spec.get("parallelism") == Some(&json!(1)) {
        spec["completions"] = json!(1);
    }
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    default_template(spec.get_mut("template"));
}

/// CronJob defaults.
pub fn default_cronjob(object: &mut Value) {
    let Some(spec) = spec(object) else { return };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec.pointer_mut("/jobTemplate/spec") {
        default_template(job_spec.get_mut("template"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_rolling_update_defaults() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}});
        default_deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }
}
