//! `kubectl apply -f` (client-side): create with the last-applied annotation when absent, else a
//! three-way patch (strategic merge for built-in kinds, merge patch otherwise); prints
//! `created`, `configured` or `unchanged`.

use kube::api::{Patch, PatchParams};

use super::create::{create_object, finish, placement};
use super::{dynamic_api, get_object, name_of};
use crate::cli::ApplyArgs;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::patch::{last_applied, three_way, with_last_applied, PatchKind};
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

/// Runs `kubectl apply`.
pub async fn run(s: &mut Session, args: ApplyArgs) -> Result<()> {
    let format = OutputFormat::parse(args.output.as_deref())?;
    let manifests = read_manifests(&args.filenames)?;
    if manifests.is_empty() {
        return Err(Error::Usage("no objects passed to apply".into()));
    }
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
            let mut modified = with_last_applied(&manifest.object);
            if let (Some(ns), Some(meta)) = (&ns, modified["metadata"].as_object_mut()) {
                meta.insert("namespace".into(), serde_json::Value::String(ns.clone()));
            }
            let live = match get_object(&client, &info, ns.as_deref(), &name).await {
                Ok(live) => Some(live),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e),
            };
            let Some(live) = live else {
                let created = create_object(&client, &info, ns.as_deref(), &modified)
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
            let api = dynamic_api(client.clone(), &info, ns.as_deref());
            let params = PatchParams::default();
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
                s.print(&print_result(&format, &object, operation)?)?
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
