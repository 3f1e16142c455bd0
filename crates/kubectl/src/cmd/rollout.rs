//! `kubectl rollout status|restart|history|undo|pause|resume deployment/NAME`: status watches the
//! Deployment and prints upstream's progress lines until it is rolled out (or `--timeout`); restart
//! stamps the pod template with `kubectl.kubernetes.io/restartedAt`; history and undo read the
//! owned ReplicaSets' `deployment.kubernetes.io/revision` annotations (undo is client-side, as
//! upstream: it patches the Deployment's template back to the chosen ReplicaSet's); pause and
//! resume toggle `spec.paused`.

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use super::{dynamic_api, get_object, list_objects, parse_targets, resolve_targets, scope};
use crate::cli::{RolloutArgs, RolloutCommand, RolloutStatusArgs, RolloutTargetArgs};
use crate::discovery::ResourceInfo;
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::printers::tabwriter;
use crate::session::Session;

/// Runs `kubectl rollout`.
pub async fn run(s: &mut Session, args: RolloutArgs) -> Result<()> {
    match args.command {
        RolloutCommand::Status(a) => status(s, a).await,
        RolloutCommand::Restart(a) => restart(s, a).await,
        RolloutCommand::History(a) => history(s, a).await,
        RolloutCommand::Undo(a) => undo(s, a).await,
        RolloutCommand::Pause(a) => pause(s, a, true).await,
        RolloutCommand::Resume(a) => pause(s, a, false).await,
    }
}

/// Upstream's deployment status line and whether the rollout is complete.
pub fn deployment_status(d: &Value) -> Result<(String, bool)> {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    let status = &d["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if generation > observed {
        return Ok((
            "Waiting for deployment spec update to be observed...\n".into(),
            false,
        ));
    }
    let progress_deadline = status["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    if progress_deadline {
        return Err(Error::Usage(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        )));
    }
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let (updated, replicas, available) = (
        count("updatedReplicas"),
        count("replicas"),
        count("availableReplicas"),
    );
    if let Some(desired) = d["spec"]["replicas"].as_i64() {
        if updated < desired {
            return Ok((format!("Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} new replicas have been updated...\n"), false));
        }
    }
    if replicas > updated {
        return Ok((format!("Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...\n", replicas - updated), false));
    }
    if available < updated {
        return Ok((format!("Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available...\n"), false));
    }
    Ok((
        format!("deployment \"{name}\" successfully rolled out\n"),
        true,
    ))
}

async fn status(s: &mut Session, args: RolloutStatusArgs) -> Result<()> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&args.args)?;
    let resolved = resolve_targets(&catalog, &targets)?;
    let Some((info, names)) = resolved.into_iter().next() else {
        return Err(Error::Usage("required resource not specified".into()));
    };
    if info.kind != "Deployment" {
        return Err(Error::Usage(format!(
            "no status viewer has been implemented for {}",
            info.kind
        )));
    }
    let name = names
        .first()
        .cloned()
        .ok_or_else(|| Error::Usage("resource name may not be empty".into()))?;
    let ns = scope(&info, Some(&namespace));
    let first = get_object(&client, &info, ns.as_deref(), &name).await?;
    let (message, done) = deployment_status(&first)?;
    s.print(&message)?;
    if done || !args.watch {
        return Ok(());
    }
    let timeout = parse_duration(&args.timeout, false)?;
    let api = dynamic_api(client, &info, ns.as_deref());
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut last = message;
    let watch = async {
        let mut stream = std::pin::pin!(watcher(api, config).applied_objects());
        while let Some(event) = stream.next().await {
            let object = event.map_err(|e| Error::Usage(format!("watching deployment: {e}")))?;
            let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
            value["metadata"]["name"] = json!(name);
            let (message, done) = deployment_status(&value)?;
            if message != last {
                s.print(&message)?;
                last = message;
            }
            if done {
                return Ok(());
            }
        }
        Ok(())
    };
    if timeout.is_zero() {
        watch.await
    } else {
        tokio::time::timeout(timeout, watch)
            .await
            .map_err(|_| Error::Timeout("timed out waiting for the condition".into()))?
    }
}

async fn restart(s: &mut Session, args: RolloutStatusArgs) -> Result<()> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&args.args)?;
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let api = dynamic_api(
            client.clone(),
            &info,
            scope(&info, Some(&namespace)).as_deref(),
        );
        for name in names {
            let now = jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
            s.print(&format!("{}/{name} restarted\n", info.group_kind()))?;
        }
    }
    Ok(())
}

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// Deployment annotations undo keeps from the Deployment rather than copying from the ReplicaSet.
const SKIPPED_ANNOTATIONS: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// The deployments named by `TYPE NAME` / `TYPE/NAME` arguments.
async fn deployments(
    s: &Session,
    args: &[String],
    verb: &str,
) -> Result<Vec<(ResourceInfo, Value)>> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let mut out = Vec::new();
    for (info, names) in resolve_targets(&catalog, &parse_targets(args)?)? {
        if info.kind != "Deployment" {
            return Err(Error::Usage(format!(
                "no {verb} has been implemented for {{{} {}}}",
                info.group, info.kind
            )));
        }
        if names.is_empty() {
            return Err(Error::Usage(
                "resource(s) were provided, but no name was specified".into(),
            ));
        }
        for name in names {
            let object = get_object(&client, &info, Some(&namespace), &name).await?;
            out.push((info.clone(), object));
        }
    }
    if out.is_empty() {
        return Err(Error::Usage("required resource not specified".into()));
    }
    Ok(out)
}

/// The ReplicaSets a Deployment controls, with their revision numbers, oldest first.
async fn owned_replicasets(s: &Session, deployment: &Value) -> Result<Vec<(i64, Value)>> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let info = catalog.resolve("replicasets.apps")?.clone();
    let namespace = deployment["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let all = list_objects(&client, &info, Some(namespace), &Default::default()).await?;
    Ok(revisions(deployment, all))
}

/// Keeps the ReplicaSets controlled by `deployment` and pairs them with their revisions, sorted.
pub fn revisions(deployment: &Value, replicasets: Vec<Value>) -> Vec<(i64, Value)> {
    let uid = &deployment["metadata"]["uid"];
    let mut out: Vec<(i64, Value)> = replicasets
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| &r["uid"] == uid && r["controller"].as_bool().unwrap_or(false))
                })
        })
        .filter_map(|rs| {
            let revision = rs["metadata"]["annotations"][REVISION]
                .as_str()
                .and_then(|r| r.parse::<i64>().ok())?;
            Some((revision, rs))
        })
        .collect();
    out.sort_by_key(|(r, _)| *r);
    out
}

/// The history table upstream prints after the object name.
pub fn history_table(revisions: &[(i64, Value)]) -> String {
    if revisions.is_empty() {
        return "No rollout history found.".into();
    }
    let mut rows = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for (revision, rs) in revisions {
        let cause = rs["metadata"]["annotations"][CHANGE_CAUSE]
            .as_str()
            .unwrap_or("<none>");
        rows.push(vec![revision.to_string(), cause.to_string()]);
    }
    format!("\n{}", tabwriter::format(&rows, 0, 2))
}

async fn history(s: &mut Session, args: RolloutTargetArgs) -> Result<()> {
    for (info, deployment) in deployments(s, &args.args, "history viewer").await? {
        let revisions = owned_replicasets(s, &deployment).await?;
        let name = super::name_of(&deployment).to_string();
        if args.revision > 0 {
            let Some((_, rs)) = revisions.iter().find(|(r, _)| *r == args.revision) else {
                return Err(Error::Usage(
                    "unable to find the specified revision".to_string(),
                ));
            };
            let template = rs["spec"]["template"].clone();
            s.print(&format!(
                "{}/{name} with revision #{}\n{}\n",
                info.group_kind(),
                args.revision,
                super::describe::pod_template_text(&template)
            ))?;
            continue;
        }
        s.print(&format!(
            "{}/{name} {}\n",
            info.group_kind(),
            history_table(&revisions)
        ))?;
    }
    Ok(())
}

fn strip_hash(template: &mut Value) {
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
}

/// What undo does to a Deployment: the JSON patch to send, or the "skipped" message.
pub fn rollback_patch(
    deployment: &Value,
    revisions: &[(i64, Value)],
    to_revision: i64,
) -> Result<std::result::Result<Value, String>> {
    let name = super::name_of(deployment);
    if deployment["spec"]["paused"].as_bool().unwrap_or(false) {
        return Err(Error::Usage("you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again".to_string()));
    }
    let target = if to_revision == 0 {
        if revisions.len() <= 1 {
            return Err(Error::Usage(format!(
                "no rollout history found for deployment {name:?}"
            )));
        }
        revisions.get(revisions.len() - 2)
    } else {
        revisions.iter().find(|(r, _)| *r == to_revision)
    };
    let Some((revision, rs)) = target else {
        return Err(Error::Usage(format!(
            "unable to find specified revision {to_revision} in history"
        )));
    };
    let mut template = rs["spec"]["template"].clone();
    strip_hash(&mut template);
    if template == deployment["spec"]["template"] {
        return Ok(Err(format!(
            "skipped rollback (current template already matches revision {revision})"
        )));
    }
    let mut annotations = serde_json::Map::new();
    if let Some(current) = deployment["metadata"]["annotations"].as_object() {
        for (k, v) in current {
            if SKIPPED_ANNOTATIONS.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(from_rs) = rs["metadata"]["annotations"].as_object() {
        for (k, v) in from_rs {
            if !SKIPPED_ANNOTATIONS.contains(&k.as_str()) {
                annotations.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(Ok(json!([
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations}
    ])))
}

async fn undo(s: &mut Session, args: RolloutTargetArgs) -> Result<()> {
    let client = s.client().await?;
    for (info, deployment) in deployments(s, &args.args, "rollbacker").await? {
        let revisions = owned_replicasets(s, &deployment).await?;
        let name = super::name_of(&deployment).to_string();
        match rollback_patch(&deployment, &revisions, args.revision)? {
            Err(skipped) => s.print(&format!("{}/{name} {skipped}\n", info.group_kind()))?,
            Ok(patch) => {
                let patch: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| Error::Usage(format!("building rollback patch: {e}")))?;
                let ns = deployment["metadata"]["namespace"].as_str();
                dynamic_api(client.clone(), &info, ns)
                    .patch(&name, &PatchParams::default(), &Patch::Json::<()>(patch))
                    .await
                    .map_err(|e| match e {
                        kube::Error::Api(status) => Error::Usage(format!(
                            "failed restoring revision {}: {}",
                            args.revision, status.message
                        )),
                        other => other.into(),
                    })?;
                s.print(&format!("{}/{name} rolled back\n", info.group_kind()))?;
            }
        }
    }
    Ok(())
}

async fn pause(s: &mut Session, args: RolloutTargetArgs, paused: bool) -> Result<()> {
    let client = s.client().await?;
    let mut errors = Vec::new();
    for (info, deployment) in deployments(s, &args.args, "pauser").await? {
        let name = super::name_of(&deployment).to_string();
        let current = deployment["spec"]["paused"].as_bool().unwrap_or(false);
        if current == paused {
            let state = if paused {
                "is already paused"
            } else {
                "is not paused"
            };
            errors.push(Error::Usage(format!(
                "{} {name:?} {state}",
                info.group_resource()
            )));
            continue;
        }
        let ns = deployment["metadata"]["namespace"].as_str();
        let patch = json!({"spec": {"paused": if paused { json!(true) } else { Value::Null }}});
        dynamic_api(client.clone(), &info, ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let word = if paused { "paused" } else { "resumed" };
        s.print(&format!("{}/{name} {word}\n", info.group_kind()))?;
    }
    super::create::finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(
        generation: i64,
        observed: i64,
        desired: i64,
        updated: i64,
        replicas: i64,
        available: i64,
    ) -> Value {
        json!({"metadata": {"name": "web", "generation": generation},
               "spec": {"replicas": desired},
               "status": {"observedGeneration": observed, "updatedReplicas": updated,
                          "replicas": replicas, "availableReplicas": available}})
    }

    #[test]
    fn rollout_status_lines_match_upstream() {
        let cases = [
            (deployment(2, 1, 3, 3, 3, 3), "Waiting for deployment spec update to be observed...\n", false),
            (deployment(2, 2, 3, 1, 4, 1), "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n", false),
            (deployment(2, 2, 3, 3, 4, 3), "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n", false),
            (deployment(2, 2, 3, 3, 3, 1), "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...\n", false),
            (deployment(2, 2, 3, 3, 3, 3), "deployment \"web\" successfully rolled out\n", true),
        ];
        for (d, want, done) in cases {
            let got = deployment_status(&d).ok();
            assert_eq!(got, Some((want.to_string(), done)));
        }
    }

    #[test]
    fn a_missed_progress_deadline_is_an_error() {
        let mut d = deployment(1, 1, 1, 0, 1, 0);
        d["status"]["conditions"] =
            json!([{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]);
        assert_eq!(
            deployment_status(&d).err().map(|e| e.report()).as_deref(),
            Some("error: deployment \"web\" exceeded its progress deadline")
        );
    }

    fn rs(name: &str, revision: i64, image: &str) -> Value {
        json!({"metadata": {"name": name,
                            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                            "ownerReferences": [{"uid": "d1", "controller": true}]},
               "spec": {"template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "h"}},
                                      "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn current(image: &str) -> Value {
        json!({"metadata": {"name": "web", "uid": "d1", "annotations": {"deployment.kubernetes.io/revision": "2"}},
               "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn history_lists_owned_revisions_in_order() {
        let mut other = rs("x", 9, "a");
        other["metadata"]["ownerReferences"][0]["uid"] = json!("zz");
        let revs = revisions(
            &current("b"),
            vec![rs("r2", 2, "b"), other, rs("r1", 1, "a")],
        );
        assert_eq!(revs.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            history_table(&revs),
            "\nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n"
        );
    }

    #[test]
    fn undo_patches_back_to_the_previous_revision() -> anyhow::Result<()> {
        let revs = revisions(&current("b"), vec![rs("r1", 1, "a"), rs("r2", 2, "b")]);
        let patch = rollback_patch(&current("b"), &revs, 0)?;
        let Ok(patch) = patch else {
            anyhow::bail!("skipped")
        };
        assert_eq!(patch[0]["value"]["spec"]["containers"][0]["image"], "a");
        assert_eq!(
            patch[0]["value"]["metadata"]["labels"],
            json!({"app": "web"})
        );
        assert_eq!(
            patch[1]["value"],
            json!({"deployment.kubernetes.io/revision": "2"})
        );
        assert_eq!(
            rollback_patch(&current("b"), &revs, 2)?.err().as_deref(),
            Some("skipped rollback (current template already matches revision 2)")
        );
        assert_eq!(
            rollback_patch(&current("b"), &revs, 7)
                .err()
                .map(|e| e.report())
                .as_deref(),
            Some("error: unable to find specified revision 7 in history")
        );
        assert_eq!(
            rollback_patch(&current("b"), &revs[..1], 0)
                .err()
                .map(|e| e.report())
                .as_deref(),
            Some("error: no rollout history found for deployment \"web\"")
        );
        let mut paused = current("b");
        paused["spec"]["paused"] = json!(true);
        assert!(rollback_patch(&paused, &revs, 0).is_err());
        Ok(())
    }
}
