//! `describe pod`, plus the container, volume and scheduling blocks pod templates share.

use serde_json::Value;

use super::{
    annotations_without_last_applied, controlled_by, line, map_lines, metadata, str_of, time,
};

pub(super) fn pod(p: &Value, w: &mut String) {
    let meta = &p["metadata"];
    let spec = &p["spec"];
    let status = &p["status"];
    metadata(p, w, true);
    line(
        w,
        0,
        &format!("Priority:\t{}", spec["priority"].as_i64().unwrap_or(0)),
    );
    line(
        w,
        0,
        &format!(
            "Service Account:\t{}",
            str_of(&spec["serviceAccountName"], "default")
        ),
    );
    let node = match (spec["nodeName"].as_str(), status["hostIP"].as_str()) {
        (Some(n), Some(ip)) => format!("{n}/{ip}"),
        (Some(n), None) => n.to_string(),
        _ => "<none>".into(),
    };
    line(w, 0, &format!("Node:\t{node}"));
    if !status["startTime"].is_null() {
        line(
            w,
            0,
            &format!("Start Time:\t{}", time(&status["startTime"])),
        );
    }
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
    let phase = if meta["deletionTimestamp"].is_null() {
        str_of(&status["phase"], "Pending").to_string()
    } else {
        "Terminating".into()
    };
    line(w, 0, &format!("Status:\t{phase}"));
    line(w, 0, &format!("IP:\t{}", str_of(&status["podIP"], "")));
    let ips: Vec<&str> = status["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str())
        .collect();
    if ips.is_empty() {
        line(w, 0, "IPs:\t<none>");
    } else {
        line(w, 0, "IPs:");
        for ip in ips {
            line(w, 1, &format!("IP:\t{ip}"));
        }
    }
    if let Some(owner) = controlled_by(meta) {
        line(w, 0, &format!("Controlled By:\t{owner}"));
    }
    let statuses = status["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    containers(w, "Containers", &spec["containers"], Some(&statuses), "");
    if let Some(conditions) = status["conditions"].as_array() {
        line(w, 0, "Conditions:");
        line(w, 1, "Type\tStatus");
        for c in conditions {
            line(
                w,
                1,
                &format!("{}\t{}", str_of(&c["type"], ""), str_of(&c["status"], "")),
            );
        }
    }
    volumes(w, &spec["volumes"], "");
    line(
        w,
        0,
        &format!("QoS Class:\t{}", str_of(&status["qosClass"], "BestEffort")),
    );
    selectors_and_tolerations(w, spec, "");
}

pub(super) fn containers(
    w: &mut String,
    label: &str,
    list: &Value,
    statuses: Option<&[Value]>,
    space: &str,
) {
    line(w, 0, &format!("{space}{label}:"));
    let name_indent = if space.is_empty() { "" } else { " " };
    for c in list.as_array().into_iter().flatten() {
        let name = str_of(&c["name"], "");
        let cs = statuses.and_then(|all| all.iter().find(|s| s["name"] == name));
        line(w, 1, &format!("{name_indent}{name}:"));
        if let Some(cs) = cs {
            line(
                w,
                2,
                &format!("Container ID:\t{}", str_of(&cs["containerID"], "")),
            );
        }
        line(w, 2, &format!("Image:\t{}", str_of(&c["image"], "")));
        if let Some(cs) = cs {
            line(w, 2, &format!("Image ID:\t{}", str_of(&cs["imageID"], "")));
        }
        let ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}/{}", p["containerPort"], str_of(&p["protocol"], "TCP")))
            .collect();
        let host_ports: Vec<String> = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{}/{}",
                    p["hostPort"].as_i64().unwrap_or(0),
                    str_of(&p["protocol"], "TCP")
                )
            })
            .collect();
        if ports.len() > 1 {
            line(w, 2, &format!("Ports:\t{}", ports.join(", ")));
            line(w, 2, &format!("Host Ports:\t{}", host_ports.join(", ")));
        } else {
            line(
                w,
                2,
                &format!(
                    "Port:\t{}",
                    ports.first().map(String::as_str).unwrap_or("<none>")
                ),
            );
            line(
                w,
                2,
                &format!(
                    "Host Port:\t{}",
                    host_ports.first().map(String::as_str).unwrap_or("<none>")
                ),
            );
        }
        for (field, title) in [("command", "Command"), ("args", "Args")] {
            if let Some(items) = c[field].as_array() {
                line(w, 2, &format!("{title}:"));
                for item in items {
                    line(w, 3, str_of(item, ""));
                }
            }
        }
        if let Some(cs) = cs {
            container_state(w, "State", &cs["state"]);
            if cs["lastState"].as_object().is_some_and(|m| !m.is_empty()) {
                container_state(w, "Last State", &cs["lastState"]);
            }
            line(
                w,
                2,
                &format!(
                    "Ready:\t{}",
                    if cs["ready"].as_bool() == Some(true) {
                        "True"
                    } else {
                        "False"
                    }
                ),
            );
            line(
                w,
                2,
                &format!(
                    "Restart Count:\t{}",
                    cs["restartCount"].as_i64().unwrap_or(0)
                ),
            );
        }
        let env: Vec<String> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{}:\t{}", str_of(&e["name"], ""), str_of(&e["value"], "")))
            .collect();
        if env.is_empty() {
            line(w, 2, "Environment:\t<none>");
        } else {
            line(w, 2, "Environment:");
            for e in env {
                line(w, 3, &e);
            }
        }
        let mounts: Vec<String> = c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{} from {} ({})",
                    str_of(&m["mountPath"], ""),
                    str_of(&m["name"], ""),
                    if m["readOnly"].as_bool() == Some(true) {
                        "ro"
                    } else {
                        "rw"
                    }
                )
            })
            .collect();
        if mounts.is_empty() {
            line(w, 2, "Mounts:\t<none>");
        } else {
            line(w, 2, "Mounts:");
            for m in mounts {
                line(w, 3, &m);
            }
        }
    }
}

pub(super) fn volumes(w: &mut String, list: &Value, space: &str) {
    let volumes: Vec<&Value> = list.as_array().into_iter().flatten().collect();
    if volumes.is_empty() {
        line(w, 0, &format!("{space}Volumes:\t<none>"));
        return;
    }
    line(w, 0, &format!("{space}Volumes:"));
    for v in volumes {
        line(w, 1, &format!("{space}{}:", str_of(&v["name"], "")));
        let kind = v
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "name").cloned())
            .unwrap_or_default();
        line(w, 2, &format!("{space}Type:\t{kind}"));
    }
}

pub(super) fn selectors_and_tolerations(w: &mut String, spec: &Value, space: &str) {
    map_lines(
        w,
        0,
        &format!("{space}Node-Selectors"),
        &spec["nodeSelector"],
        "=",
    );
    let tolerations: Vec<String> = spec["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let mut s = str_of(&t["key"], "").to_string();
            if let Some(v) = t["value"].as_str() {
                s.push('=');
                s.push_str(v);
            }
            if let Some(e) = t["effect"].as_str() {
                s.push(':');
                s.push_str(e);
            }
            // Operator Exists without a value tolerates every value.
            if t["operator"] == "Exists" && t["value"].as_str().unwrap_or("").is_empty() {
                if s.is_empty() {
                    s = "op=Exists".into();
                } else {
                    s.push_str(" op=Exists");
                }
            }
            if let Some(secs) = t["tolerationSeconds"].as_i64() {
                s.push_str(&format!(" for {secs}s"));
            }
            s
        })
        .collect();
    if tolerations.is_empty() {
        line(w, 0, &format!("{space}Tolerations:\t<none>"));
    } else {
        for (i, t) in tolerations.iter().enumerate() {
            line(
                w,
                0,
                &if i == 0 {
                    format!("{space}Tolerations:\t{t}")
                } else {
                    format!("\t{t}")
                },
            );
        }
    }
}

fn container_state(w: &mut String, title: &str, state: &Value) {
    if let Some(running) = state.get("running") {
        line(w, 2, &format!("{title}:\tRunning"));
        line(w, 3, &format!("Started:\t{}", time(&running["startedAt"])));
    } else if let Some(waiting) = state.get("waiting") {
        line(w, 2, &format!("{title}:\tWaiting"));
        line(
            w,
            3,
            &format!("Reason:\t{}", str_of(&waiting["reason"], "")),
        );
    } else if let Some(t) = state.get("terminated") {
        line(w, 2, &format!("{title}:\tTerminated"));
        line(w, 3, &format!("Reason:\t{}", str_of(&t["reason"], "")));
        line(
            w,
            3,
            &format!("Exit Code:\t{}", t["exitCode"].as_i64().unwrap_or(0)),
        );
        line(w, 3, &format!("Started:\t{}", time(&t["startedAt"])));
        line(w, 3, &format!("Finished:\t{}", time(&t["finishedAt"])));
    } else {
        line(w, 2, &format!("{title}:\tWaiting"));
    }
}
