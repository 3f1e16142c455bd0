//! `describe service`: selector, IPs, ports with their endpoints.

use k8s_openapi::api::core::v1::Endpoints;
use kube::api::Api;
use kube::Client;
use serde_json::Value;

use super::{annotations_without_last_applied, line, map_lines, metadata, str_of};

pub(super) async fn endpoints_for(client: &Client, service: &Value) -> Option<Value> {
    let ns = service["metadata"]["namespace"].as_str()?;
    let name = service["metadata"]["name"].as_str()?;
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|e| serde_json::to_value(e).ok())
}

/// `ip:port,...` for a service port from its Endpoints, as upstream's `formatEndpoints`.
fn format_endpoints(endpoints: Option<&Value>, port_name: &str) -> String {
    let mut list = Vec::new();
    for subset in endpoints
        .and_then(|e| e["subsets"].as_array())
        .into_iter()
        .flatten()
    {
        for port in subset["ports"].as_array().into_iter().flatten() {
            if str_of(&port["name"], "") != port_name {
                continue;
            }
            for address in subset["addresses"].as_array().into_iter().flatten() {
                list.push(format!("{}:{}", str_of(&address["ip"], ""), port["port"]));
            }
        }
    }
    match list.len() {
        0 => "<none>".into(),
        1..=3 => list.join(","),
        n => format!("{} + {} more...", list[..3].join(","), n - 3),
    }
}

pub(super) fn service(svc: &Value, endpoints: Option<&Value>, w: &mut String) {
    let meta = &svc["metadata"];
    let spec = &svc["spec"];
    metadata(svc, w, true);
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
    map_lines(w, 0, "Selector", &spec["selector"], "=");
    line(
        w,
        0,
        &format!("Type:\t{}", str_of(&spec["type"], "ClusterIP")),
    );
    line(
        w,
        0,
        &format!(
            "IP Family Policy:\t{}",
            str_of(&spec["ipFamilyPolicy"], "SingleStack")
        ),
    );
    let families: Vec<&str> = spec["ipFamilies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    line(
        w,
        0,
        &format!(
            "IP Families:\t{}",
            if families.is_empty() {
                "IPv4".to_string()
            } else {
                families.join(",")
            }
        ),
    );
    line(
        w,
        0,
        &format!("IP:\t{}", str_of(&spec["clusterIP"], "None")),
    );
    let ips: Vec<&str> = spec["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    line(
        w,
        0,
        &format!(
            "IPs:\t{}",
            if ips.is_empty() {
                str_of(&spec["clusterIP"], "None").to_string()
            } else {
                ips.join(",")
            }
        ),
    );
    for p in spec["ports"].as_array().into_iter().flatten() {
        let name = str_of(&p["name"], "<unset>");
        let proto = str_of(&p["protocol"], "TCP");
        line(w, 0, &format!("Port:\t{name}\t{}/{proto}", p["port"]));
        let target = p["targetPort"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| p["targetPort"].to_string());
        line(w, 0, &format!("TargetPort:\t{target}/{proto}"));
        if let Some(np) = p["nodePort"].as_i64() {
            line(w, 0, &format!("NodePort:\t{name}\t{np}/{proto}"));
        }
        line(
            w,
            0,
            &format!(
                "Endpoints:\t{}",
                format_endpoints(endpoints, str_of(&p["name"], ""))
            ),
        );
    }
    line(
        w,
        0,
        &format!(
            "Session Affinity:\t{}",
            str_of(&spec["sessionAffinity"], "None")
        ),
    );
    line(
        w,
        0,
        &format!(
            "Internal Traffic Policy:\t{}",
            str_of(&spec["internalTrafficPolicy"], "Cluster")
        ),
    );
}
