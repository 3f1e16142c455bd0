//! `kubectl replace -f FILE`: PUTs each object as written (the server checks a resourceVersion
//! if the manifest carries one); with `--force` deletes the object, waits until it is gone and
//! creates it again.

use std::time::Duration;

use kube::api::{DeleteParams, DynamicObject, PostParams, PropagationPolicy};
use serde_json::Value;

use super::apply::DryRun;
use super::create::{create_object_with, finish, placement};
use super::delete::wait_deleted;
use super::dynamic_api;
use crate::cli::ReplaceArgs;
use crate::duration::parse_duration;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

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

/// Runs `kubectl replace`.
pub async fn run(s: &mut Session, args: ReplaceArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let dry_run = DryRun::parse(args.dry_run.as_deref())?;
    if args.filenames.is_empty() {
        return Err(Error::Usage("must specify one of -f and -k".into()));
    }
    let policy = propagation(&args.cascade)?;
    if args.grace_period >= 0 && !args.force {
        return Err(Error::Usage(
            "--grace-period must have --force specified".into(),
        ));
    }
    if !parse_duration(&args.timeout, false)?.is_zero() && !args.force {
        return Err(Error::Usage("--timeout must have --force specified".into()));
    }
    if args.force && dry_run != DryRun::None {
        return Err(Error::Usage(
            "--dry-run can not be used when --force is set".into(),
        ));
    }
    let manifests = read_manifests(&args.filenames)?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    if args.force {
        return force_replace(s, &args, &format, policy, manifests).await;
    }
    let mut errors = Vec::new();
    for manifest in manifests {
        let result = async {
            let (info, ns) = placement(s, &catalog, &manifest).await?;
            if dry_run == DryRun::Client {
                return Ok(manifest.object.clone());
            }
            let api = dynamic_api(client.clone(), &info, ns.as_deref());
            let name = manifest.object["metadata"]["name"].as_str().unwrap_or("");
            let body: DynamicObject = serde_json::from_value(manifest.object.clone())
                .map_err(|e| Error::Usage(format!("invalid object: {e}")))?;
            let params = PostParams {
                field_manager: Some(args.field_manager.clone()),
                dry_run: dry_run == DryRun::Server,
            };
            let replaced = api.replace(name, &params, &body).await?;
            Ok(super::to_value(replaced, &info))
        }
        .await;
        match result {
            Ok(object) => {
                let operation = format!("replaced{}", dry_run.suffix());
                s.print(&print_result(&format, &object, &operation)?)?;
            }
            Err(Error::Api(mut status)) => {
                status.message = format!(
                    "error when replacing \"{}\": {}",
                    manifest.source, status.message
                );
                errors.push(Error::Api(status));
            }
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

/// `--force`: delete every object (a missing one is fine), wait for each to be gone, then create
/// them again from the manifests.
async fn force_replace(
    s: &mut Session,
    args: &ReplaceArgs,
    format: &OutputFormat,
    policy: PropagationPolicy,
    manifests: Vec<crate::manifest::Manifest>,
) -> Result<()> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let timeout = parse_duration(&args.timeout, false)?;
    // Upstream derives a timeout from the object count when none is given.
    let timeout = if timeout.is_zero() {
        Duration::from_secs(60).saturating_add(Duration::from_secs(manifests.len() as u64))
    } else {
        timeout
    };
    let grace = if args.grace_period >= 0 {
        u32::try_from(args.grace_period).ok()
    } else {
        None
    };
    let params = DeleteParams {
        grace_period_seconds: grace,
        propagation_policy: Some(policy),
        ..DeleteParams::default()
    };
    let mut errors = Vec::new();
    let mut placed = Vec::new();
    for manifest in &manifests {
        let (info, ns) = placement(s, &catalog, manifest).await?;
        let name = manifest.object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let api = dynamic_api(client.clone(), &info, ns.as_deref());
        match api.delete(&name, &params).await {
            Ok(outcome) => {
                s.print(&format!("{} \"{name}\" deleted\n", info.group_kind()))?;
                if let Some(uid) = outcome.left().and_then(|o| o.metadata.uid) {
                    wait_deleted(&client, &info, ns.as_deref(), &name, &uid, timeout).await?;
                }
            }
            Err(e) => {
                let e = Error::from(e);
                if !e.is_not_found() {
                    errors.push(e);
                    continue;
                }
            }
        }
        placed.push((info, ns, manifest));
    }
    let create = PostParams {
        field_manager: Some(args.field_manager.clone()),
        dry_run: false,
    };
    for (info, ns, manifest) in placed {
        let mut object: Value = manifest.object.clone();
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("resourceVersion");
        }
        match create_object_with(&client, &info, ns.as_deref(), &object, &create).await {
            Ok(created) => s.print(&print_result(format, &created, "replaced")?)?,
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}
