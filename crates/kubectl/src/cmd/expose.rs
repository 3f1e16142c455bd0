//! `kubectl expose deployment NAME --port=P [--target-port=T] [--name=N] [--type=T]`: creates a
//! Service selecting the workload's pods.

use serde_json::{json, Value};

use super::create::create_generated;
use super::logs::selector_of;
use super::{get_object, parse_targets, resolve_targets, scope};
use crate::cli::ExposeArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Runs `kubectl expose`.
pub async fn run(s: &mut Session, args: ExposeArgs) -> Result<()> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&args.args)?;
    let (info, names) = resolve_targets(&catalog, &targets)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Usage("You must provide the resource to expose".into()))?;
    let name = names
        .first()
        .cloned()
        .ok_or_else(|| Error::Usage("You must provide the resource to expose".into()))?;
    let object = get_object(
        &client,
        &info,
        scope(&info, Some(&namespace)).as_deref(),
        &name,
    )
    .await?;
    let service = service_for(&object, &args, &namespace)?;
    let created = create_generated(s, service).await?;
    s.print(&format!("service/{} exposed\n", super::name_of(&created)))
}

/// Builds the Service `expose` creates for a workload or pod.
pub fn service_for(object: &Value, args: &ExposeArgs, namespace: &str) -> Result<Value> {
    let name = args.name.clone().unwrap_or_else(|| {
        object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    let selector: Value = match &args.selector {
        Some(sel) => labels_map(sel)?,
        None => {
            let from_object = if object["kind"] == "Pod" {
                object["metadata"]["labels"].as_object().map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
            } else {
                selector_of(object)
            };
            let sel = from_object.ok_or_else(|| {
                Error::Usage(format!(
                    "couldn't retrieve selectors via --selector flag or introspection: the {} has no selector",
                    object["kind"].as_str().unwrap_or("object").to_lowercase()
                ))
            })?;
            labels_map(&sel)?
        }
    };
    let port = match args.port {
        Some(p) => i64::from(p),
        None => first_container_port(object).ok_or_else(|| {
            Error::Usage("couldn't find port via --port flag or introspection".into())
        })?,
    };
    let target_port: Value = match &args.target_port {
        Some(t) => match t.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!(t),
        },
        None => json!(port),
    };
    let mut spec = json!({
        "ports": [{"port": port, "protocol": args.protocol, "targetPort": target_port}],
        "selector": selector,
    });
    if let Some(t) = &args.service_type {
        spec["type"] = json!(t);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": object["metadata"]["labels"].clone()},
        "spec": spec,
    }))
}

fn first_container_port(object: &Value) -> Option<i64> {
    let spec = if object["kind"] == "Pod" {
        &object["spec"]
    } else {
        &object["spec"]["template"]["spec"]
    };
    spec["containers"]
        .as_array()?
        .iter()
        .filter_map(|c| c["ports"].as_array())
        .flatten()
        .find_map(|p| p["containerPort"].as_i64())
}

/// Parses `a=b,c=d` into a JSON map.
pub fn labels_map(text: &str) -> Result<Value> {
    let mut map = serde_json::Map::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("invalid label spec: {pair}")))?;
        map.insert(k.trim().to_string(), json!(v.trim()));
    }
    Ok(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(port: Option<i32>, target: Option<&str>, name: Option<&str>) -> ExposeArgs {
        ExposeArgs {
            args: vec![],
            port,
            target_port: target.map(str::to_string),
            name: name.map(str::to_string),
            protocol: "TCP".into(),
            service_type: None,
            selector: None,
        }
    }

    fn deployment() -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}})
    }

    #[test]
    fn services_select_the_workloads_pods() -> anyhow::Result<()> {
        let svc = service_for(
            &deployment(),
            &args(Some(80), Some("8080"), None),
            "default",
        )?;
        assert_eq!(svc["metadata"]["name"], json!("web"));
        assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 80, "protocol": "TCP", "targetPort": 8080}])
        );
        let named = service_for(
            &deployment(),
            &args(None, Some("http"), Some("front")),
            "default",
        )?;
        assert_eq!(named["metadata"]["name"], json!("front"));
        assert_eq!(named["spec"]["ports"][0]["port"], json!(8080));
        assert_eq!(named["spec"]["ports"][0]["targetPort"], json!("http"));
        Ok(())
    }
}
