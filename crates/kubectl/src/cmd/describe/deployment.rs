//! `describe deployment`: replicas, strategy, the pod template and conditions.

use serde_json::Value;

use super::{annotations_without_last_applied, line, map_lines, metadata, str_of, time};

use super::pod::{containers, selectors_and_tolerations, volumes};

pub(super) fn deployment(d: &Value, w: &mut String) {
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
    let template = &spec["template"];
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
}
