//! `kubectl autoscale TYPE NAME --max=N [--min=M] [--cpu-percent=P]`: creates an
//! `autoscaling/v2` HorizontalPodAutoscaler for a workload with a `scale` subresource, as kubectl
//! 1.32 does (field manager `kubectl-autoscale`).

use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{json, Value};

use super::apply::DryRun;
use super::create::{finish, placement};
use super::generators::as_go_client_prints;
use super::{get_object, parse_targets, resolve_targets, scope};
use crate::cli::AutoscaleArgs;
use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

/// The resource-arguments error upstream's builder gives when nothing was named.
pub const NO_RESOURCES: &str = "You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'";

/// The HorizontalPodAutoscaler upstream builds for a target.
pub fn hpa(args: &AutoscaleArgs, target: &ResourceInfo, target_name: &str, max: i32) -> Value {
    let name = args.name.clone().unwrap_or_else(|| target_name.to_string());
    let mut spec = json!({
        "scaleTargetRef": {
            "apiVersion": target.api_version(),
            "kind": target.kind,
            "name": target_name,
        },
        "maxReplicas": max,
    });
    if args.min > 0 {
        spec["minReplicas"] = json!(args.min);
    }
    if args.cpu_percent > 0 {
        spec["metrics"] = json!([{
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": args.cpu_percent}
            }
        }]);
    }
    json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// Checks the flags as upstream does before contacting the server.
pub fn validate(args: &AutoscaleArgs) -> Result<i32> {
    let Some(max) = args.max else {
        return Err(Error::Usage("required flag(s) \"max\" not set".into()));
    };
    if max < 1 {
        return Err(Error::Usage(format!(
            "--max=MAXPODS is required and must be at least 1, max: {max}"
        )));
    }
    if max < args.min {
        return Err(Error::Usage(format!(
            "--max=MAXPODS must be larger or equal to --min=MINPODS, max: {max}, min: {}",
            args.min
        )));
    }
    Ok(max)
}

/// Runs `kubectl autoscale`.
pub async fn run(s: &mut Session, args: AutoscaleArgs) -> Result<()> {
    let max = validate(&args)?;
    let dry_run = DryRun::parse(args.dry_run.as_deref())?;
    let format = OutputFormat::parse(args.output.as_deref())?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;

    // The targets, fetched as upstream's builder does (a missing one is an error of its own).
    let mut targets: Vec<Result<(ResourceInfo, Value)>> = Vec::new();
    for manifest in read_manifests(&args.filenames)? {
        let (info, ns) = placement(s, &catalog, &manifest).await?;
        let name = manifest.object["metadata"]["name"].as_str().unwrap_or("");
        targets.push(
            get_object(&client, &info, ns.as_deref(), name)
                .await
                .map(|o| (info, o)),
        );
    }
    let parsed = parse_targets(&args.args)?;
    if parsed.is_empty() && args.filenames.is_empty() {
        return Err(Error::Usage(NO_RESOURCES.into()));
    }
    for (info, names) in resolve_targets(&catalog, &parsed)? {
        if names.is_empty() {
            return Err(Error::Usage(
                "resource(s) were provided, but no name was specified".into(),
            ));
        }
        for name in names {
            let ns = scope(&info, Some(&namespace));
            targets.push(
                get_object(&client, &info, ns.as_deref(), &name)
                    .await
                    .map(|o| (info.clone(), o)),
            );
        }
    }

    let hpas = catalog.by_kind("autoscaling/v2", "HorizontalPodAutoscaler")?;
    let mut errors = Vec::new();
    let mut count = 0;
    for target in targets {
        let (info, object) = match target {
            Ok(found) => found,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if !info.subresources.iter().any(|s| s == "scale") {
            errors.push(Error::Usage(format!(
                "cannot autoscale a {}: could not find scale subresource for {}/{}, Resource={} in discovery information",
                info.kind, info.group, info.version, info.plural
            )));
            continue;
        }
        let target_name = object["metadata"]["name"].as_str().unwrap_or("");
        let ns = object["metadata"]["namespace"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| namespace.clone());
        let hpa = hpa(&args, &info, target_name, max);
        count += 1;
        if dry_run == DryRun::Client {
            let shown = with_empty_status(as_go_client_prints(hpa));
            s.print(&print_result(&format, &shown, "created (dry run)")?)?;
            continue;
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &hpas.api_resource());
        let params = PostParams {
            field_manager: Some(args.field_manager.clone()),
            dry_run: dry_run == DryRun::Server,
        };
        let body: DynamicObject = serde_json::from_value(hpa)
            .map_err(|e| Error::Usage(format!("invalid object: {e}")))?;
        match api.create(&params, &body).await {
            Ok(created) => {
                let created = with_typed_status(super::to_value(created, &hpas));
                let operation = format!("autoscaled{}", dry_run.suffix());
                s.print(&print_result(&format, &created, &operation)?)?;
            }
            Err(e) => errors.push(e.into()),
        }
    }
    if errors.is_empty() && count == 0 {
        return Err(Error::Usage("no objects passed to autoscale".into()));
    }
    finish(errors)
}

/// The status fields a Go client always prints for an HPA it decoded (`currentMetrics` and
/// `desiredReplicas` have no `omitempty`).
fn with_typed_status(mut hpa: Value) -> Value {
    if !hpa["status"].is_object() {
        hpa["status"] = json!({});
    }
    if hpa["status"].get("currentMetrics").is_none() {
        hpa["status"]["currentMetrics"] = Value::Null;
    }
    if hpa["status"].get("desiredReplicas").is_none() {
        hpa["status"]["desiredReplicas"] = json!(0);
    }
    hpa
}

/// The status a Go client prints for an HPA it has not sent (`desiredReplicas: 0`,
/// `currentMetrics: null`).
fn with_empty_status(mut hpa: Value) -> Value {
    hpa["status"] = json!({"currentMetrics": null, "desiredReplicas": 0});
    hpa
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Option<AutoscaleArgs> {
        let argv = [&["kubectl", "autoscale"], extra].concat();
        match crate::cli::Options::try_parse_from(argv).ok()?.command {
            crate::cli::Command::Autoscale(a) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn flags_are_checked_as_upstream() -> anyhow::Result<()> {
        let report = |extra: &[&str]| {
            parse(extra)
                .and_then(|a| validate(&a).err())
                .map(|e| e.report())
        };
        assert_eq!(
            report(&["deploy/web"]).as_deref(),
            Some("error: required flag(s) \"max\" not set")
        );
        assert_eq!(
            report(&["deploy/web", "--max=0"]).as_deref(),
            Some("error: --max=MAXPODS is required and must be at least 1, max: 0")
        );
        assert_eq!(
            report(&["deploy/web", "--max=3", "--min=4"]).as_deref(),
            Some("error: --max=MAXPODS must be larger or equal to --min=MINPODS, max: 3, min: 4")
        );
        assert_eq!(report(&["deploy/web", "--max=3"]), None);
        Ok(())
    }

    #[test]
    fn the_hpa_targets_the_workload() -> anyhow::Result<()> {
        let catalog = crate::discovery::fixtures::catalog();
        let deploy = catalog.resolve("deployments")?.clone();
        let args = parse(&["deploy/web", "--max=5", "--min=2", "--cpu-percent=80"])
            .ok_or_else(|| anyhow::anyhow!("parse"))?;
        let hpa = hpa(&args, &deploy, "web", 5);
        assert_eq!(hpa["apiVersion"], "autoscaling/v2");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"],
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
        );
        assert_eq!(hpa["spec"]["minReplicas"], 2);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let plain = parse(&["deploy/web", "--max=5", "--name=other"])
            .ok_or_else(|| anyhow::anyhow!("parse"))?;
        let hpa = super::hpa(&plain, &deploy, "web", 5);
        assert_eq!(hpa["metadata"]["name"], "other");
        assert!(hpa["spec"].get("metrics").is_none());
        assert!(hpa["spec"].get("minReplicas").is_none());
        Ok(())
    }
}
