//! `kubectl apply -f`. Client-side (the default): create with the last-applied annotation when
//! absent, else a three-way patch (strategic merge for built-in kinds, merge patch otherwise);
//! prints `created`, `configured` or `unchanged`. `--server-side`: an apply patch with the field
//! manager (`kubectl` by default) and `--force-conflicts`; prints `serverside-applied`. Also the
//! `--dry-run=none|client|server` mode shared by apply, create, delete and patch.

use kube::api::{Patch, PatchParams, PostParams};

use super::create::{create_object_with, finish, placement};
use super::{dynamic_api, get_object, name_of};
use crate::cli::ApplyArgs;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::patch::{last_applied, three_way, with_last_applied, PatchKind};
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

/// The `--dry-run` mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DryRun {
    /// Write for real.
    None,
    /// Only print what would be sent.
    Client,
    /// Send with `dryRun=All`: the server validates, stores nothing.
    Server,
}

impl DryRun {
    /// Parses `--dry-run[=none|client|server]` as upstream.
    pub fn parse(value: Option<&str>) -> Result<DryRun> {
        match value {
            None | Some("none") => Ok(DryRun::None),
            Some("client") => Ok(DryRun::Client),
            Some("server") => Ok(DryRun::Server),
            Some(other) => Err(Error::Usage(format!(
                "Invalid dry-run value ({other}). Must be \"none\", \"server\", or \"client\"."
            ))),
        }
    }

    /// What upstream appends to the result line: ` (dry run)`, ` (server dry run)`.
    pub fn suffix(self) -> &'static str {
        match self {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }
}

/// Runs `kubectl apply`.
pub async fn run(s: &mut Session, args: ApplyArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let dry_run = DryRun::parse(args.dry_run.as_deref())?;
    if args.force_conflicts && !args.server_side {
        return Err(Error::Usage(
            "--force-conflicts only works with --server-side".into(),
        ));
    }
    if args.server_side && dry_run == DryRun::Client {
        return Err(Error::Usage(
            "--dry-run=client doesn't work with --server-side (did you mean --dry-run=server instead?)"
                .into(),
        ));
    }
    let manifests = read_manifests(&args.filenames)?;
    if manifests.is_empty() {
        return Err(Error::Usage("no objects passed to apply".into()));
    }
    let server_dry_run = dry_run == DryRun::Server;
    let manager = args.field_manager.clone().unwrap_or_else(|| {
        if args.server_side {
            "kubectl".to_string()
        } else {
            "kubectl-client-side-apply".to_string()
        }
    });
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let mut errors = Vec::new();
    for manifest in manifests {
        let name = name_of(&manifest.object).to_string();
        if name.is_empty() {
            errors.push(Error::Usage(format!(
                "error when retrieving current configuration of {} from \"{}\": resource name may not be empty",
                manifest.object["kind"].as_str().unwrap_or(""),
                manifest.source
            )));
            continue;
        }
        let result = async {
            let (info, ns) = placement(s, &catalog, &manifest).await?;
            if args.server_side {
                let mut object = manifest.object.clone();
                if let (Some(ns), Some(meta)) = (&ns, object["metadata"].as_object_mut()) {
                    meta.insert("namespace".into(), serde_json::Value::String(ns.clone()));
                }
                let api = dynamic_api(client.clone(), &info, ns.as_deref());
                let params = PatchParams {
                    field_manager: Some(manager.clone()),
                    force: args.force_conflicts,
                    dry_run: server_dry_run,
                    ..PatchParams::default()
                };
                let applied = api.patch(&name, &params, &Patch::Apply(object)).await?;
                return Ok((super::to_value(applied, &info), "serverside-applied", None));
            }
            // As upstream: the namespace is set before the annotation is computed.
            let mut object = manifest.object.clone();
            if let (Some(ns), Some(meta)) = (&ns, object["metadata"].as_object_mut()) {
                meta.insert("namespace".into(), serde_json::Value::String(ns.clone()));
            }
            let modified = with_last_applied(&object);
            let live = match get_object(&client, &info, ns.as_deref(), &name).await {
                Ok(live) => Some(live),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            let Some(live) = live else {
                if dry_run == DryRun::Client {
                    return Ok((modified, "created", None));
                }
                let params = PostParams {
                    dry_run: server_dry_run,
                    field_manager: Some(manager.clone()),
                };
                let created = create_object_with(&client, &info, ns.as_deref(), &modified, &params)
                    .await
                    .map_err(|e| match e {
                        Error::Api(mut status) => {
                            status.message = format!(
                                "error when creating \"{}\": {}",
                                manifest.source, status.message
                            );
                            Error::ApiStep(status)
                        }
                        other => other,
                    })?;
                return Ok((created, "created", None));
            };
            let warning = last_applied(&live).is_none().then(|| format!(
                "Warning: resource {}/{name} is missing the kubectl.kubernetes.io/last-applied-configuration annotation which is required by kubectl apply. kubectl apply should only be used on resources created declaratively by either kubectl create --save-config or kubectl apply. The missing annotation will be patched automatically.\n",
                info.plural
            ));
            let kind = if info.is_builtin() { PatchKind::Strategic } else { PatchKind::Merge };
            let patch = three_way(last_applied(&live).as_ref(), &modified, &live, kind);
            if patch.as_object().is_some_and(|p| p.is_empty()) {
                return Ok((live, "unchanged", warning));
            }
            if dry_run == DryRun::Client {
                return Ok((live, "configured", warning));
            }
            let api = dynamic_api(client.clone(), &info, ns.as_deref());
            let params = PatchParams {
                field_manager: Some(manager.clone()),
                dry_run: server_dry_run,
                ..PatchParams::default()
            };
            let patched = match kind {
                PatchKind::Strategic => api.patch(&name, &params, &Patch::Strategic(patch)).await?,
                PatchKind::Merge => api.patch(&name, &params, &Patch::Merge(patch)).await?,
            };
            Ok((super::to_value(patched, &info), "configured", warning))
        }
        .await;
        match result {
            Ok((object, operation, warning)) => {
                if let Some(warning) = warning {
                    s.eprint(&warning)?;
                }
                let operation = format!("{operation}{}", dry_run.suffix());
                s.print(&print_result(&format, &object, &operation)?)?
            }
            Err(Error::ApiStep(status)) => errors.push(Error::Api(status)),
            Err(Error::Api(mut status)) => {
                status.message = format!(
                    "error when applying \"{}\": {}",
                    manifest.source, status.message
                );
                errors.push(Error::Api(status));
            }
            Err(e) => errors.push(e),
        }
    }
    finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_modes_parse_as_upstream() {
        assert_eq!(DryRun::parse(None).ok(), Some(DryRun::None));
        assert_eq!(DryRun::parse(Some("server")).ok(), Some(DryRun::Server));
        assert_eq!(DryRun::parse(Some("client")).ok(), Some(DryRun::Client));
        assert_eq!(DryRun::Server.suffix(), " (server dry run)");
        assert!(DryRun::parse(Some("maybe")).is_err());
    }
}
