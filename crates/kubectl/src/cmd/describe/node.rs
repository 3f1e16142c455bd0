//! `describe node`: taints, conditions, addresses, capacity and system info.

use serde_json::Value;

use super::{line, map_lines, metadata, str_of, time};

pub(super) fn node(n: &Value, w: &mut String) {
    let meta = &n["metadata"];
    let spec = &n["spec"];
    let status = &n["status"];
    metadata(n, w, false);
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(w, 0, "Annotations", &meta["annotations"], ": ");
    line(
        w,
        0,
        &format!("CreationTimestamp:\t{}", time(&meta["creationTimestamp"])),
    );
    let taints: Vec<String> = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}{}:{}",
                str_of(&t["key"], ""),
                t["value"]
                    .as_str()
                    .map(|v| format!("={v}"))
                    .unwrap_or_default(),
                str_of(&t["effect"], "")
            )
        })
        .collect();
    line(
        w,
        0,
        &format!(
            "Taints:\t{}",
            if taints.is_empty() {
                "<none>".to_string()
            } else {
                taints.join(", ")
            }
        ),
    );
    line(
        w,
        0,
        &format!(
            "Unschedulable:\t{}",
            spec["unschedulable"].as_bool().unwrap_or(false)
        ),
    );
    if let Some(conditions) = status["conditions"].as_array() {
        line(w, 0, "Conditions:");
        line(
            w,
            1,
            "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
        );
        line(
            w,
            1,
            "----\t------\t-----------------\t------------------\t------\t-------",
        );
        for c in conditions {
            line(
                w,
                1,
                &format!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    str_of(&c["type"], ""),
                    str_of(&c["status"], ""),
                    time(&c["lastHeartbeatTime"]),
                    time(&c["lastTransitionTime"]),
                    str_of(&c["reason"], ""),
                    str_of(&c["message"], "")
                ),
            );
        }
    }
    line(w, 0, "Addresses:");
    for a in status["addresses"].as_array().into_iter().flatten() {
        line(
            w,
            1,
            &format!("{}:\t{}", str_of(&a["type"], ""), str_of(&a["address"], "")),
        );
    }
    for (field, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(map) = status[field].as_object() {
            line(w, 0, &format!("{title}:"));
            for (k, v) in map {
                line(w, 1, &format!("{k}:\t{}", str_of(v, "")));
            }
        }
    }
    let info = &status["nodeInfo"];
    if info.is_object() {
        line(w, 0, "System Info:");
        for (key, title) in [
            ("machineID", "Machine ID"),
            ("systemUUID", "System UUID"),
            ("bootID", "Boot ID"),
            ("kernelVersion", "Kernel Version"),
            ("osImage", "OS Image"),
            ("operatingSystem", "Operating System"),
            ("architecture", "Architecture"),
            ("containerRuntimeVersion", "Container Runtime Version"),
            ("kubeletVersion", "Kubelet Version"),
            ("kubeProxyVersion", "Kube-Proxy Version"),
        ] {
            line(w, 1, &format!("{title}:\t{}", str_of(&info[key], "")));
        }
    }
    if let Some(cidr) = spec["podCIDR"].as_str() {
        line(w, 0, &format!("PodCIDR:\t{cidr}"));
        let cidrs: Vec<&str> = spec["podCIDRs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        line(w, 0, &format!("PodCIDRs:\t{}", cidrs.join(",")));
    }
}
