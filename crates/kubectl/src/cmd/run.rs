//! `kubectl run NAME --image=I [--restart=Never] [--port=P] [--env K=V] [-- ARGS...]`: creates a Pod.

use serde_json::{json, Value};

use super::create::create_value;
use super::expose::labels_map;
use crate::cli::RunArgs;
use crate::error::{Error, Result};
use crate::printers::OutputFormat;
use crate::session::Session;

/// Runs `kubectl run`.
pub async fn run(s: &mut Session, args: RunArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let namespace = s.namespace().await?;
    let pod = pod_for(&args, &namespace)?;
    create_value(s, pod, &format).await
}

/// Builds the Pod `kubectl run` creates.
pub fn pod_for(args: &RunArgs, namespace: &str) -> Result<Value> {
    if !matches!(args.restart.as_str(), "Always" | "OnFailure" | "Never") {
        return Err(Error::Usage(format!(
            "invalid restart policy: {}",
            args.restart
        )));
    }
    let labels = match &args.labels {
        Some(l) => labels_map(l)?,
        None => json!({"run": args.name}),
    };
    let mut container = json!({"name": args.name, "image": args.image, "resources": {}});
    if !args.args.is_empty() {
        let field = if args.command { "command" } else { "args" };
        container[field] = json!(args.args);
    }
    if let Some(port) = args.port {
        container["ports"] = json!([{"containerPort": port}]);
    }
    if !args.env.is_empty() {
        let env: Result<Vec<Value>> = args
            .env
            .iter()
            .map(|e| {
                e.split_once('=')
                    .map(|(k, v)| json!({"name": k, "value": v}))
                    .ok_or_else(|| Error::Usage(format!("invalid env: {e}")))
            })
            .collect();
        container["env"] = json!(env?);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": args.name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [container], "dnsPolicy": "ClusterFirst", "restartPolicy": args.restart},
        "status": {}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> Option<RunArgs> {
        match crate::cli::Options::try_parse_from(argv).ok()?.command {
            crate::cli::Command::Run(r) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn run_builds_a_pod_with_args_or_command() -> anyhow::Result<()> {
        let args = parse(&[
            "kubectl",
            "run",
            "t",
            "--image=busybox:1.35",
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo hi",
        ])
        .ok_or_else(|| anyhow::anyhow!("parse"))?;
        let pod = pod_for(&args, "default")?;
        assert_eq!(pod["metadata"]["labels"], json!({"run": "t"}));
        assert_eq!(pod["spec"]["restartPolicy"], json!("Never"));
        assert_eq!(
            pod["spec"]["containers"][0]["args"],
            json!(["sh", "-c", "echo hi"])
        );
        let args = parse(&[
            "kubectl",
            "run",
            "t",
            "--image=b",
            "--command",
            "--env",
            "A=1",
            "--",
            "sleep",
            "5",
        ])
        .ok_or_else(|| anyhow::anyhow!("parse"))?;
        let pod = pod_for(&args, "default")?;
        assert_eq!(
            pod["spec"]["containers"][0]["command"],
            json!(["sleep", "5"])
        );
        assert_eq!(
            pod["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
        assert!(
            parse(&["kubectl", "run", "t", "--image=b", "--restart=Sometimes"])
                .map(|a| pod_for(&a, "d").is_err())
                .unwrap_or(false)
        );
        Ok(())
    }
}
