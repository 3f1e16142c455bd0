//! `kubectl rollout status|restart deployment/NAME`: status watches the Deployment and prints
//! upstream's progress lines until it is rolled out (or `--timeout`); restart stamps the pod
//! template with `kubectl.kubernetes.io/restartedAt`.

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

use super::{dynamic_api, get_object, parse_targets, resolve_targets, scope};
use crate::cli::{RolloutArgs, RolloutCommand, RolloutStatusArgs};
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::session::Session;

/// Runs `kubectl rollout`.
pub async fn run(s: &mut Session, args: RolloutArgs) -> Result<()> {
    match args.command {
        RolloutCommand::Status(a) => status(s, a).await,
        RolloutCommand::Restart(a) => restart(s, a).await,
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
}
