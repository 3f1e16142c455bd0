//! `kubectl drain NODE`: cordon, then evict (POST `pods/{name}/eviction`) or delete every pod on
//! the node except mirror pods and (with `--ignore-daemonsets`) DaemonSet pods, refusing unmanaged
//! pods without `--force` and emptyDir pods without `--delete-emptydir-data`, as upstream does;
//! then wait for the pods to be gone.

use std::time::Duration;

use kube::api::{DeleteParams, ListParams};
use serde_json::{json, Value};

use super::name_of;
use super::node::{select_nodes, set_unschedulable};
use crate::cli::DrainArgs;
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::session::Session;

/// Which pods of a node drain removes, and the warnings and errors upstream reports.
#[derive(Debug, Default, PartialEq)]
pub struct PodPlan {
    /// `namespace/name` of the pods to evict or delete.
    pub remove: Vec<(String, String)>,
    /// `Warning: ...` text (without the prefix), `; `-joined as upstream.
    pub warnings: Vec<String>,
    /// Reasons the drain cannot proceed.
    pub errors: Vec<String>,
}

/// Applies upstream's filters (mirror, finished, DaemonSet, unmanaged, local storage) to the
/// node's pods. `missing_daemonsets` holds `namespace/name` of DaemonSets that no longer exist.
pub fn plan(pods: &[Value], args: &DrainArgs, missing_daemonsets: &[String]) -> PodPlan {
    let mut out = PodPlan::default();
    // Message -> pods, in first-seen order (upstream groups the same way, in map order).
    let mut errors: Vec<(String, Vec<String>)> = Vec::new();
    let mut warnings: Vec<(String, Vec<String>)> = Vec::new();
    let note = |list: &mut Vec<(String, Vec<String>)>, message: String, id: String| match list
        .iter_mut()
        .find(|(m, _)| *m == message)
    {
        Some((_, pods)) => pods.push(id),
        None => list.push((message, vec![id])),
    };
    for pod in pods {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = name_of(pod).to_string();
        let id = format!("{ns}/{name}");
        if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string() {
            continue;
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        let finished = phase == "Succeeded" || phase == "Failed";
        let owner = controller(pod);
        if let (Some(("DaemonSet", ds)), false) = (owner, finished) {
            let key = format!("{ns}/{ds}");
            if missing_daemonsets.contains(&key) {
                let message = format!("daemonsets.apps {ds:?} not found");
                if args.force {
                    note(&mut warnings, message, id);
                    out.remove.push((ns, name));
                } else {
                    note(&mut errors, message, id);
                }
            } else if args.ignore_daemonsets {
                note(&mut warnings, "ignoring DaemonSet-managed Pods".into(), id);
            } else {
                note(
                    &mut errors,
                    "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)".into(),
                    id,
                );
            }
            continue;
        }
        if owner.is_none() && !finished {
            if args.force {
                note(
                    &mut warnings,
                    "deleting Pods that declare no controller".into(),
                    id.clone(),
                );
            } else {
                // Upstream's message really does repeat "cannot delete".
                note(
                    &mut errors,
                    "cannot delete Pods that declare no controller (use --force to override)"
                        .into(),
                    id,
                );
                continue;
            }
        }
        let has_empty_dir = pod["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["emptyDir"].is_object()));
        if has_empty_dir && !finished {
            if args.delete_emptydir_data {
                note(&mut warnings, "deleting Pods with local storage".into(), id);
            } else {
                note(
                    &mut errors,
                    "Pods with local storage (use --delete-emptydir-data to override)".into(),
                    id,
                );
                continue;
            }
        }
        out.remove.push((ns, name));
    }
    out.errors = errors
        .into_iter()
        .map(|(m, pods)| format!("cannot delete {m}: {}", pods.join(", ")))
        .collect();
    out.warnings = warnings
        .into_iter()
        .map(|(m, pods)| format!("{m}: {}", pods.join(", ")))
        .collect();
    out
}

fn controller(pod: &Value) -> Option<(&str, &str)> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool().unwrap_or(false))
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
            )
        })
}

/// Upstream's aggregate error text: one message bare, several as `[a, b]`.
pub fn aggregate(errors: &[String]) -> String {
    if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    }
}

/// Runs `kubectl drain`.
pub async fn run(s: &mut Session, args: DrainArgs) -> Result<()> {
    let timeout = parse_duration(&args.timeout, false)?;
    let (_, nodes) = select_nodes(s, &args.nodes, args.selector.as_deref()).await?;
    let names: Vec<String> = nodes.iter().map(|n| name_of(n).to_string()).collect();
    for (i, node) in nodes.iter().enumerate() {
        let name = name_of(node).to_string();
        let changed = set_unschedulable(s, node, true).await?;
        let already = if changed { "" } else { "already " };
        s.print(&format!("node/{name} {already}cordoned\n"))?;
        if let Err(e) = drain_node(s, &name, &args, timeout).await {
            // Upstream then prints each reason on its own line, without `error:`.
            let texts: Vec<String> = match e {
                Error::Many(errors) => errors
                    .iter()
                    .map(|e| match e {
                        Error::Configuration(m) => m.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                Error::Usage(m) => vec![m],
                other => vec![other.to_string()],
            };
            let lines: String = texts.iter().map(|m| format!("{m}\n")).collect();
            let message = aggregate(&texts);

            s.eprint(&format!(
                "error: unable to drain node {name:?} due to error: {message}, continuing command...\n"
            ))?;
            let pending: String = names[i..].iter().map(|n| format!(" {n}\n")).collect();
            s.eprint(&format!(
                "There are pending nodes to be drained:\n{pending}{lines}"
            ))?;
            return Err(Error::Silent(1));
        }
        s.print(&format!("node/{name} drained\n"))?;
    }
    Ok(())
}

async fn drain_node(
    s: &mut Session,
    node: &str,
    args: &DrainArgs,
    timeout: Duration,
) -> Result<()> {
    let client = s.client().await?;
    let pods_api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client.clone());
    let mut params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    if let Some(selector) = &args.pod_selector {
        params = params.labels(selector);
    }
    let list = pods_api.list(&params).await?;
    let pods: Vec<Value> = list
        .items
        .into_iter()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .filter(|p| p["spec"]["nodeName"] == node)
        .collect();
    let mut missing_daemonsets = Vec::new();
    for pod in &pods {
        if let Some(("DaemonSet", ds)) = controller(pod) {
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
            let api: kube::Api<k8s_openapi::api::apps::v1::DaemonSet> =
                kube::Api::namespaced(client.clone(), ns);
            if api.get_opt(ds).await?.is_none() {
                missing_daemonsets.push(format!("{ns}/{ds}"));
            }
        }
    }
    let plan = plan(&pods, args, &missing_daemonsets);
    if !plan.errors.is_empty() {
        return Err(Error::Many(
            plan.errors.into_iter().map(Error::Configuration).collect(),
        ));
    }

    if !plan.warnings.is_empty() {
        s.eprint(&format!("Warning: {}\n", plan.warnings.join("; ")))?;
    }
    let mut waiting = Vec::new();
    for (ns, name) in &plan.remove {
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client.clone(), ns);
        let uid = pods
            .iter()
            .find(|p| p["metadata"]["namespace"] == ns.as_str() && name_of(p) == name)
            .and_then(|p| p["metadata"]["uid"].as_str())
            .unwrap_or("")
            .to_string();
        if args.disable_eviction {
            let mut dp = DeleteParams::default();
            if args.grace_period >= 0 {
                dp = dp.grace_period(u32::try_from(args.grace_period).unwrap_or(0));
            }
            match api.delete(name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(st)) if st.code == 404 => continue,
                Err(e) => return Err(e.into()),
            }
        } else {
            s.print(&format!("evicting pod {ns}/{name}\n"))?;
            evict(&client, ns, name, args.grace_period, s).await?;
        }
        waiting.push((ns.clone(), name.clone(), uid));
    }
    let verb = if args.disable_eviction {
        "deleted"
    } else {
        "evicted"
    };
    let wait = async {
        for (ns, name, uid) in &waiting {
            let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(client.clone(), ns);
            loop {
                match api.get_opt(name).await? {
                    Some(p) if p.metadata.uid.as_deref() == Some(uid.as_str()) => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    _ => break,
                }
            }
            s.print(&format!("pod/{name} {verb}\n"))?;
        }
        Ok::<(), Error>(())
    };
    if timeout.is_zero() {
        wait.await
    } else {
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Usage(format!("drain did not complete within {}", args.timeout)))?
    }
}

/// POSTs an Eviction for one pod, retrying while a disruption budget refuses it (429).
async fn evict(
    client: &kube::Client,
    ns: &str,
    name: &str,
    grace_period: i64,
    s: &mut Session,
) -> Result<()> {
    let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": name, "namespace": ns}});
    if grace_period >= 0 {
        body["deleteOptions"] = json!({"gracePeriodSeconds": grace_period});
    }
    let bytes =
        serde_json::to_vec(&body).map_err(|e| Error::Usage(format!("encoding eviction: {e}")))?;
    loop {
        let request = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/eviction"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(bytes.clone())
            .map_err(|e| Error::Usage(format!("building request: {e}")))?;
        match super::request_json(client, request, "application/json").await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(Error::Api(status)) if status.code == 429 => {
                s.eprint(&format!(
                    "error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {}\n",
                    Error::Api(status.clone())
                ))?;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(flags: &[&str]) -> anyhow::Result<DrainArgs> {
        let mut argv = vec!["kubectl", "drain", "n"];
        argv.extend(flags);
        match crate::Options::try_parse_from(argv)?.command {
            crate::cli::Command::Drain(a) => Ok(a),
            _ => anyhow::bail!("not drain"),
        }
    }

    fn pod(name: &str, owner: Option<&str>, empty_dir: bool) -> Value {
        let mut p = json!({"metadata": {"namespace": "default", "name": name}, "spec": {}, "status": {"phase": "Running"}});
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "x", "controller": true}]);
        }
        if empty_dir {
            p["spec"]["volumes"] = json!([{"name": "v", "emptyDir": {}}]);
        }
        p
    }

    #[test]
    fn drain_refuses_what_upstream_refuses() -> anyhow::Result<()> {
        let pods = vec![
            pod("web", Some("ReplicaSet"), false),
            pod("ds", Some("DaemonSet"), false),
            pod("bare", None, false),
            pod("cache", Some("ReplicaSet"), true),
        ];
        let p = plan(&pods, &args(&[])?, &[]);
        assert_eq!(
            aggregate(&p.errors),
            "[cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/ds, cannot delete cannot delete Pods that declare no controller (use --force to override): default/bare, cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache]"
        );
        let p = plan(
            &pods,
            &args(&["--force", "--ignore-daemonsets", "--delete-emptydir-data"])?,
            &[],
        );
        assert!(p.errors.is_empty());
        assert_eq!(
            p.remove.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            vec!["web", "bare", "cache"]
        );
        assert_eq!(
            p.warnings.join("; "),
            "ignoring DaemonSet-managed Pods: default/ds; deleting Pods that declare no controller: default/bare; deleting Pods with local storage: default/cache"
        );
        Ok(())
    }

    #[test]
    fn mirror_and_finished_pods_need_no_flags() -> anyhow::Result<()> {
        let mut mirror = pod("static", None, false);
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
        let mut done = pod("done", None, true);
        done["status"]["phase"] = json!("Succeeded");
        let p = plan(&[mirror, done], &args(&[])?, &[]);
        assert!(p.errors.is_empty());
        assert_eq!(p.remove, vec![("default".to_string(), "done".to_string())]);
        Ok(())
    }
}
