//! `kubectl logs POD|TYPE/NAME [-c C] [-f] [--tail N] [--timestamps] [--since D] [--previous]`:
//! streams the pod's `log` subresource. For a workload (deployment/NAME, ...) the first of its pods
//! is used, as upstream does.

use std::io::Write;

use futures::AsyncReadExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use kube::Client;
use serde_json::Value;

use super::{get_object, parse_targets};
use crate::cli::LogsArgs;
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::session::Session;

/// Runs `kubectl logs`.
pub async fn run(s: &mut Session, args: LogsArgs) -> Result<()> {
    let client = s.client().await?;
    let namespace = s.namespace().await?;
    let mut container = args.container.clone();
    if args.args.len() == 2 {
        if container.is_some() {
            return Err(Error::Usage(
                "only one of -c or an inline [CONTAINER] arg is allowed".into(),
            ));
        }
        container = Some(args.args[1].clone());
    }
    let pod = resolve_pod(s, &client, &namespace, &args.args[0]).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let container = match container {
        Some(c) => Some(c),
        None => default_container(s, &pods, &pod).await.map_err(|e| {
            if e.is_not_found() {
                Error::Usage(format!(
                    "error from server (NotFound): pods \"{pod}\" not found in namespace \"{namespace}\""
                ))
            } else {
                e
            }
        })?,
    };
    let since_seconds = match &args.since {
        Some(d) => Some(parse_duration(d, false)?.as_secs().max(1) as i64),
        None => None,
    };
    let params = LogParams {
        container,
        follow: args.follow,
        limit_bytes: args.limit_bytes,
        previous: args.previous,
        since_seconds,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        timestamps: args.timestamps,
        ..LogParams::default()
    };
    let stream = pods.log_stream(&pod, &params).await.map_err(|e| match e {
        // Upstream checks the container name itself and says so without "from server".
        kube::Error::Api(status)
            if status.code == 400
                && status
                    .message
                    .ends_with(&format!("is not valid for pod {pod}")) =>
        {
            Error::Usage(status.message)
        }
        other => Error::from(other),
    })?;
    let mut stream = std::pin::pin!(stream);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // Bytes are copied as they come: a last line without a newline stays that way.
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| Error::io("reading logs", e))?;
        if n == 0 {
            return Ok(());
        }
        s.io.out
            .write_all(&buf[..n])
            .and_then(|()| s.io.out.flush())
            .map_err(|e| Error::io("writing output", e))?;
    }
}

/// Resolves `POD`, `pod/NAME` or a workload `TYPE/NAME` to a pod name.
pub async fn resolve_pod(
    s: &mut Session,
    client: &Client,
    namespace: &str,
    arg: &str,
) -> Result<String> {
    if !arg.contains('/') {
        return Ok(arg.to_string());
    }
    let targets = parse_targets(&[arg.to_string()])?;
    let target = targets
        .first()
        .ok_or_else(|| Error::Usage(format!("invalid resource {arg}")))?;
    let catalog = s.catalog().await?.clone();
    let info = catalog.resolve(&target.type_name)?;
    let name = target.names.first().cloned().unwrap_or_default();
    if info.kind == "Pod" {
        return Ok(name);
    }
    let object = get_object(client, info, Some(namespace), &name).await?;
    let selector = selector_of(&object).ok_or_else(|| {
        Error::Usage(format!(
            "cannot attach to {}: selector for {} not implemented",
            info.kind, name
        ))
    })?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut list = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    list.sort_by_key(|p| {
        let running = p.status.as_ref().and_then(|st| st.phase.clone()) == Some("Running".into());
        (!running, p.metadata.creation_timestamp.clone().map(|t| t.0))
    });
    let first = list.first().ok_or_else(|| {
        Error::Usage(format!(
            "timed out waiting for the condition: no pods found for {} {name}",
            info.kind.to_lowercase()
        ))
    })?;
    let pod_name = first.metadata.name.clone().unwrap_or_default();
    if list.len() > 1 {
        s.eprint(&format!(
            "Found {} pods, using pod/{pod_name}\n",
            list.len()
        ))?;
    }
    Ok(pod_name)
}

/// `spec.selector.matchLabels` (or a plain `spec.selector` map, as Services have) as `k=v,...`.
pub fn selector_of(object: &Value) -> Option<String> {
    let selector = &object["spec"]["selector"];
    let labels = selector
        .get("matchLabels")
        .unwrap_or(selector)
        .as_object()?;
    if labels.is_empty() {
        return None;
    }
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    Some(pairs.join(","))
}

/// Picks the container when none was named: the `kubectl.kubernetes.io/default-container`
/// annotation, else the first, saying so on stderr when there was a choice.
pub async fn default_container(
    s: &mut Session,
    pods: &Api<Pod>,
    pod: &str,
) -> Result<Option<String>> {
    let pod_object = pods.get(pod).await?;
    let names: Vec<String> = pod_object
        .spec
        .as_ref()
        .map(|spec| spec.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    if names.len() <= 1 {
        return Ok(names.into_iter().next());
    }
    let annotated = pod_object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container").cloned());
    if let Some(name) = annotated.filter(|n| names.contains(n)) {
        return Ok(Some(name));
    }
    s.eprint(&format!(
        "Defaulted container \"{}\" out of: {}\n",
        names[0],
        names.join(", ")
    ))?;
    Ok(names.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_come_from_match_labels_or_plain_maps() {
        let deployment =
            json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "a"}}}});
        assert_eq!(selector_of(&deployment).as_deref(), Some("app=web,tier=a"));
        let service = json!({"spec": {"selector": {"app": "web"}}});
        assert_eq!(selector_of(&service).as_deref(), Some("app=web"));
        assert_eq!(selector_of(&json!({"spec": {}})), None);
    }
}
