//! `kubectl delete`: by TYPE NAME, TYPE/NAME, `-f`, `-l` or `--all`; `--grace-period`, `--force`,
//! `--now`, `--cascade`; waits (by watching) until the objects are gone unless `--wait=false`.

use std::time::Duration;

use kube::api::{DeleteParams, PropagationPolicy};
use kube::runtime::wait::{await_condition, conditions};
use kube::Client;

use super::apply::DryRun;
use super::create::{finish, placement};
use super::{
    dynamic_api, list_objects, list_params, name_of, parse_targets, resolve_targets, scope,
};
use crate::cli::DeleteArgs;
use crate::discovery::ResourceInfo;
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::session::Session;

/// What upstream warns when deleting with `--force --grace-period=0`.
const FORCE_WARNING: &str = "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.\n";

/// The grace period to send, after upstream's adjustments (`--now`, `--force`, 0 without force).
pub fn effective_grace_period(args: &DeleteArgs) -> Result<i64> {
    let mut grace = args.grace_period;
    if args.now {
        if grace != -1 {
            return Err(Error::Usage(
                "--now and --grace-period cannot be specified together".into(),
            ));
        }
        grace = 1;
    }
    if grace == 0 && !args.force {
        grace = 1;
    }
    if args.force && grace < 0 {
        grace = 0;
    }
    Ok(grace)
}

fn propagation(cascade: &str) -> Result<PropagationPolicy> {
    match cascade {
        "background" | "true" => Ok(PropagationPolicy::Background),
        "foreground" => Ok(PropagationPolicy::Foreground),
        "orphan" | "false" => Ok(PropagationPolicy::Orphan),
        other => Err(Error::Usage(format!(
            "invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""
        ))),
    }
}

/// Runs `kubectl delete`.
pub async fn run(s: &mut Session, args: DeleteArgs) -> Result<()> {
    let grace = effective_grace_period(&args)?;
    let dry_run = DryRun::parse(args.dry_run.as_deref())?;
    let policy = propagation(&args.cascade)?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(s.namespace().await?)
    };

    // (resource, namespace, name, the manifest it came from)
    let mut victims: Vec<(ResourceInfo, Option<String>, String, Option<String>)> = Vec::new();
    let mut errors = Vec::new();
    if !args.filenames.is_empty() {
        for manifest in read_manifests(&args.filenames)? {
            let (info, ns) = placement(s, &catalog, &manifest).await?;
            victims.push((
                info,
                ns,
                name_of(&manifest.object).to_string(),
                Some(manifest.source.clone()),
            ));
        }
    } else {
        let targets = parse_targets(&args.args)?;
        if targets.is_empty() {
            return Err(Error::Usage(
                "You must provide one or more resources by argument or filename.\nExample resource specifications include:\n   '-f rsrc.yaml'\n   '--filename=rsrc.json'\n   '<resource> <name>'\n   '<resource>'".into(),
            ));
        }
        for (info, names) in resolve_targets(&catalog, &targets)? {
            let ns = scope(&info, namespace.as_deref());
            if names.is_empty() {
                if args.selector.is_none() && !args.all {
                    return Err(Error::Usage(
                        "resource(s) were provided, but no name was specified".into(),
                    ));
                }
                let params = list_params(args.selector.as_deref(), None);
                for object in list_objects(&client, &info, ns.as_deref(), &params).await? {
                    let object_ns = object["metadata"]["namespace"].as_str().map(str::to_string);
                    victims.push((
                        info.clone(),
                        object_ns.or(ns.clone()),
                        name_of(&object).to_string(),
                        None,
                    ));
                }
            } else {
                victims.extend(
                    names
                        .into_iter()
                        .map(|n| (info.clone(), ns.clone(), n, None)),
                );
            }
        }
        if victims.is_empty() {
            s.print("No resources found\n")?;
            return Ok(());
        }
    }

    if args.force && grace == 0 {
        s.eprint(FORCE_WARNING)?;
    }
    let params = DeleteParams {
        grace_period_seconds: u32::try_from(grace).ok(),
        propagation_policy: Some(policy),
        dry_run: dry_run == DryRun::Server,
        ..DeleteParams::default()
    };
    let mut waits = Vec::new();
    for (info, ns, name, source) in victims {
        if dry_run == DryRun::Client {
            s.print(&format!(
                "{} \"{name}\" deleted (dry run)\n",
                info.group_kind()
            ))?;
            continue;
        }
        let api = dynamic_api(client.clone(), &info, ns.as_deref());
        match api.delete(&name, &params).await {
            Ok(outcome) => {
                let operation = if grace == 0 {
                    "force deleted"
                } else {
                    "deleted"
                };
                s.print(&format!(
                    "{} \"{name}\" {operation}{}\n",
                    info.group_kind(),
                    dry_run.suffix()
                ))?;
                if dry_run == DryRun::Server {
                    continue;
                }
                if let Some(object) = outcome.left() {
                    if let Some(uid) = object.metadata.uid.clone() {
                        waits.push((info, ns, name, uid));
                    }
                }
            }
            Err(e) => {
                let e = Error::from(e);
                if !(e.is_not_found() && args.ignore_not_found) {
                    errors.push(match (e, &source) {
                        (Error::Api(mut status), Some(source)) => {
                            status.message =
                                format!("error when deleting \"{source}\": {}", status.message);
                            Error::Api(status)
                        }
                        (e, _) => e,
                    });
                }
            }
        }
    }
    if args.wait {
        let timeout = parse_duration(&args.timeout, false)?;
        for (info, ns, name, uid) in waits {
            if let Err(e) = wait_deleted(&client, &info, ns.as_deref(), &name, &uid, timeout).await
            {
                errors.push(e);
            }
        }
    }
    finish(errors)
}

/// Waits (watching) until the object with `uid` is gone; a zero timeout waits forever.
pub async fn wait_deleted(
    client: &Client,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    uid: &str,
    timeout: Duration,
) -> Result<()> {
    let api = dynamic_api(client.clone(), info, ns);
    let wait = await_condition(api, name, conditions::is_deleted(uid));
    let result = if timeout.is_zero() {
        wait.await
    } else {
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            Error::Timeout(format!(
                "timed out waiting for the condition on {}/{name}",
                info.group_resource()
            ))
        })?
    };
    result
        .map(|_| ())
        .map_err(|e| Error::Usage(format!("waiting for deletion of {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> Option<DeleteArgs> {
        let mut argv = vec!["kubectl", "delete", "pod", "x"];
        argv.extend_from_slice(extra);
        match crate::cli::Options::try_parse_from(argv).ok()?.command {
            crate::cli::Command::Delete(d) => Some(d),
            _ => None,
        }
    }

    #[test]
    fn grace_periods_follow_upstream_rules() {
        let cases: [(&[&str], Option<i64>); 6] = [
            (&[], Some(-1)),
            (&["--now"], Some(1)),
            (&["--grace-period=0"], Some(1)),
            (&["--grace-period=0", "--force"], Some(0)),
            (&["--force"], Some(0)),
            (&["--now", "--grace-period=5"], None),
        ];
        for (flags, want) in cases {
            let got = parse(flags).and_then(|a| effective_grace_period(&a).ok());
            assert_eq!(got, want, "{flags:?}");
        }
    }

    #[test]
    fn wait_and_cascade_flags_parse() {
        let args = parse(&["--wait=false", "--cascade=orphan"]);
        assert_eq!(args.as_ref().map(|a| a.wait), Some(false));
        assert!(matches!(
            args.map(|a| propagation(&a.cascade)),
            Some(Ok(PropagationPolicy::Orphan))
        ));
        assert_eq!(parse(&[]).map(|a| a.wait), Some(true));
        assert!(propagation("sideways").is_err());
    }
}
