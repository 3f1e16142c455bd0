//! `describe deployment`: replicas, strategy, the pod template and conditions.

use serde_json::Value;

use super::{annotations_without_last_applied, line, map_lines, metadata, str_of, time};

use super::pod::{containers, selectors_and_tolerations, volumes};

/// `replicasets` is `{"old": [...], "new": RS or null}` (see [`split_replicasets`]).
pub(super) fn deployment(d: &Value, replicasets: Option<&Value>, w: &mut String) {
    let meta = &d["metadata"];
    let spec = &d["spec"];
    let status = &d["status"];
    metadata(d, w, true);
    line(
        w,
        0,
        &format!("CreationTimestamp:\t{}", time(&meta["creationTimestamp"])),
    );
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
    let selector = spec["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            let mut p: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            p.sort();
            p.join(",")
        })
        .unwrap_or_default();
    line(w, 0, &format!("Selector:\t{selector}"));
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    line(
        w,
        0,
        &format!(
            "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable",
            spec["replicas"].as_i64().unwrap_or(1),
            n(&status["updatedReplicas"]),
            n(&status["replicas"]),
            n(&status["availableReplicas"]),
            n(&status["unavailableReplicas"])
        ),
    );
    let strategy = str_of(&spec["strategy"]["type"], "RollingUpdate");
    line(w, 0, &format!("StrategyType:\t{strategy}"));
    line(
        w,
        0,
        &format!("MinReadySeconds:\t{}", n(&spec["minReadySeconds"])),
    );
    if strategy == "RollingUpdate" {
        let ru = &spec["strategy"]["rollingUpdate"];
        let v = |x: &Value| {
            x.as_str()
                .map(str::to_string)
                .or_else(|| x.as_i64().map(|i| i.to_string()))
                .unwrap_or_else(|| "25%".into())
        };
        line(
            w,
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge",
                v(&ru["maxUnavailable"]),
                v(&ru["maxSurge"])
            ),
        );
    }
    pod_template(&spec["template"], w);
    conditions_and_replicasets(status, replicasets, w);
}

/// The `Pod Template:` block (also what `rollout history --revision=N` prints).
pub(super) fn pod_template(template: &Value, w: &mut String) {
    line(w, 0, "Pod Template:");
    map_lines(w, 0, "  Labels", &template["metadata"]["labels"], "=");
    if template["metadata"]["annotations"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        map_lines(
            w,
            0,
            "  Annotations",
            &template["metadata"]["annotations"],
            ": ",
        );
    }
    if let Some(sa) = template["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        line(w, 1, &format!("Service Account:\t{sa}"));
    }
    if template["spec"]["initContainers"]
        .as_array()
        .is_some_and(|l| !l.is_empty())
    {
        containers(
            w,
            "Init Containers",
            &template["spec"]["initContainers"],
            None,
            "  ",
        );
    }
    containers(w, "Containers", &template["spec"]["containers"], None, "  ");
    volumes(w, &template["spec"]["volumes"], "  ");
    selectors_and_tolerations(w, &template["spec"], "  ");
}

/// `Conditions:` and, when the ReplicaSets were listed, `OldReplicaSets:` / `NewReplicaSet:`.
fn conditions_and_replicasets(status: &Value, replicasets: Option<&Value>, w: &mut String) {
    if let Some(conditions) = status["conditions"].as_array() {
        line(w, 0, "Conditions:");
        line(w, 1, "Type\tStatus\tReason");
        line(w, 1, "----\t------\t------");
        for c in conditions {
            line(
                w,
                1,
                &format!(
                    "{}\t{}\t{}",
                    str_of(&c["type"], ""),
                    str_of(&c["status"], ""),
                    str_of(&c["reason"], "")
                ),
            );
        }
    }
    // Upstream leaves both lines out while the Deployment has no ReplicaSet at all.
    if let Some(sets) = replicasets
        .filter(|r| !r["new"].is_null() || r["old"].as_array().is_some_and(|o| !o.is_empty()))
    {
        let describe_rs = |rs: &Value| {
            format!(
                "{} ({}/{} replicas created)",
                str_of(&rs["metadata"]["name"], ""),
                rs["status"]["replicas"].as_i64().unwrap_or(0),
                rs["spec"]["replicas"].as_i64().unwrap_or(1)
            )
        };
        let old: Vec<String> = sets["old"]
            .as_array()
            .into_iter()
            .flatten()
            .map(describe_rs)
            .collect();
        let old = if old.is_empty() {
            "<none>".to_string()
        } else {
            old.join(", ")
        };
        line(w, 0, &format!("OldReplicaSets:\t{old}"));
        let new = if sets["new"].is_null() {
            "<none>".to_string()
        } else {
            describe_rs(&sets["new"])
        };
        line(w, 0, &format!("NewReplicaSet:\t{new}"));
    }
}

/// Splits the ReplicaSets a Deployment controls into the new one (whose pod template is the
/// Deployment's, ignoring `pod-template-hash`) and the old ones that still have replicas, as
/// upstream's describer does. Returns `{"old": [...], "new": RS or null}`.
pub(super) fn split_replicasets(d: &Value, all: &[Value]) -> Value {
    let uid = &d["metadata"]["uid"];
    let owned = all.iter().filter(|rs| {
        rs["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r["uid"] == *uid && r["controller"] == true)
            })
    });
    let mut new = Value::Null;
    let mut old = Vec::new();
    for rs in owned {
        let mut template = rs["spec"]["template"].clone();
        if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
            labels.remove("pod-template-hash");
        }
        if new.is_null() && template == d["spec"]["template"] {
            new = rs.clone();
        } else if rs["spec"]["replicas"].as_i64().unwrap_or(1) != 0 {
            old.push(rs.clone());
        }
    }
    old.sort_by_key(|rs| {
        rs["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    serde_json::json!({"old": old, "new": new})
}

/// `describe replicaset`; `pods` are the pods its selector matches (for the phase counts).
pub(super) fn replicaset(rs: &Value, pods: Option<&Value>, w: &mut String) {
    let meta = &rs["metadata"];
    let spec = &rs["spec"];
    metadata(rs, w, true);
    let mut selector: Vec<String> = spec["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    selector.sort();
    line(w, 0, &format!("Selector:\t{}", selector.join(",")));
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
    if let Some(owner) = super::controlled_by(meta) {
        line(w, 0, &format!("Controlled By:\t{owner}"));
    }
    line(
        w,
        0,
        &format!(
            "Replicas:\t{} current / {} desired",
            rs["status"]["replicas"].as_i64().unwrap_or(0),
            spec["replicas"].as_i64().unwrap_or(1)
        ),
    );
    let count = |phase: &str| {
        pods.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|p| p["status"]["phase"] == phase)
            .count()
    };
    line(
        w,
        0,
        &format!(
            "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed",
            count("Running"),
            count("Pending"),
            count("Succeeded"),
            count("Failed")
        ),
    );
    pod_template(&spec["template"], w);
}
