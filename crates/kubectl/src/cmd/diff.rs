//! `kubectl diff -f FILE`: what `apply` would change. For every object, the live version and the
//! version the server would produce (a dry-run of the apply: `dryRun=All` create for new objects,
//! else the three-way apply patch; `--server-side`: a dry-run server-side apply) are written as
//! YAML to a `LIVE-*` and a `MERGED-*` directory, named `[group.]version.Kind.namespace.name`, and
//! `diff -u -N LIVE MERGED` (or `$KUBECTL_EXTERNAL_DIFF`) runs on them. Exit status as upstream: 0
//! no differences, 1 differences, greater than 1 on error.

use std::io::Write;
use std::path::Path;

use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use super::create::placement;
use super::{dynamic_api, get_object, name_of, to_value};
use crate::cli::DiffArgs;
use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::patch::{last_applied, three_way, without_last_applied, PatchKind};
use crate::session::Session;

/// Runs `kubectl diff`; errors exit with status 2 or more, as upstream's.
pub async fn run(s: &mut Session, args: DiffArgs) -> Result<()> {
    match diff(s, args).await {
        Err(Error::Silent(code)) => Err(Error::Silent(code)),
        Err(e) => {
            let report = e.report();
            if !report.is_empty() {
                s.eprint(&format!("{report}\n"))?;
            }
            Err(Error::Silent(e.exit_code() + 1))
        }
        Ok(()) => Ok(()),
    }
}

/// The file name of an object in the diff directories.
pub fn file_name(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    let group = if info.group.is_empty() {
        String::new()
    } else {
        format!("{}.", info.group)
    };
    format!(
        "{group}{}.{}.{}.{name}",
        info.version,
        info.kind,
        namespace.unwrap_or("")
    )
}

/// Drops `metadata.managedFields` (shown only with `--show-managed-fields`).
fn without_managed_fields(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    object
}

/// The diff program and its arguments: `$KUBECTL_EXTERNAL_DIFF` (arguments limited to safe
/// characters, as upstream) or `diff -u -N`.
pub fn diff_command(external: Option<&str>) -> Result<(String, Vec<String>)> {
    let Some(external) = external.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(("diff".into(), vec!["-u".into(), "-N".into()]));
    };
    let mut words = external.split_whitespace().map(str::to_string);
    let program = words.next().unwrap_or_else(|| "diff".into());
    let args: Vec<String> = words.collect();
    for arg in &args {
        if !arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '=')
        {
            return Err(Error::Usage(format!(
                "arguments in KUBECTL_EXTERNAL_DIFF must match the pattern ^[a-zA-Z0-9-=]+$: {arg}"
            )));
        }
    }
    Ok((program, args))
}

fn write_yaml(dir: &Path, file: &str, object: &Value) -> Result<()> {
    let text = crate::printers::yaml::to_yaml(object);
    std::fs::write(dir.join(file), text).map_err(|e| Error::io(format!("writing {file}"), e))
}

async fn merged_object(
    s: &Session,
    info: &ResourceInfo,
    namespace: Option<&str>,
    object: &Value,
    live: Option<&Value>,
    args: &DiffArgs,
) -> Result<Value> {
    let client = s.client().await?;
    let api = dynamic_api(client, info, namespace);
    let name = name_of(object).to_string();
    // As apply does: the last-applied annotation records the manifest as written.
    let with_namespace = |mut object: Value| {
        if let (Some(ns), Some(meta)) = (namespace, object["metadata"].as_object_mut()) {
            meta.insert("namespace".into(), Value::String(ns.to_string()));
        }
        object
    };
    if args.server_side {
        let params = PatchParams {
            dry_run: true,
            force: args.force_conflicts,
            field_manager: Some(if args.field_manager == "kubectl-client-side-apply" {
                "kubectl".to_string()
            } else {
                args.field_manager.clone()
            }),
            ..PatchParams::default()
        };
        let merged = api
            .patch(
                &name,
                &params,
                &Patch::Apply(with_namespace(object.clone())),
            )
            .await?;
        return Ok(to_value(merged, info));
    }
    // As upstream, the merged object keeps the live last-applied annotation.
    let modified = without_last_applied(&with_namespace(object.clone()));
    let Some(live) = live else {
        // A new object is sent as written (no empty annotations left by the stripping above).
        let mut modified = modified;
        if let Some(meta) = modified["metadata"].as_object_mut() {
            if meta
                .get("annotations")
                .and_then(Value::as_object)
                .is_some_and(|a| a.is_empty())
            {
                meta.remove("annotations");
            }
        }
        let dynamic: DynamicObject = serde_json::from_value(modified)
            .map_err(|e| Error::Usage(format!("invalid object: {e}")))?;
        let params = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        let created = api.create(&params, &dynamic).await?;
        return Ok(to_value(created, info));
    };
    let kind = if info.is_builtin() {
        PatchKind::Strategic
    } else {
        PatchKind::Merge
    };
    let patch = three_way(last_applied(live).as_ref(), &modified, live, kind);
    if patch.as_object().is_some_and(|p| p.is_empty()) {
        return Ok(live.clone());
    }
    let params = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let merged = match kind {
        PatchKind::Strategic => api.patch(&name, &params, &Patch::Strategic(patch)).await?,
        PatchKind::Merge => api.patch(&name, &params, &Patch::Merge(patch)).await?,
    };
    Ok(to_value(merged, info))
}

/// Hides Secret values as upstream's diff does: every `data` value becomes `***`, and a key whose
/// value changes shows `*** (before)` / `*** (after)` so the change stays visible.
pub fn mask_secret_data(live: Option<Value>, mut merged: Value) -> (Option<Value>, Value) {
    const MASK: &str = "***";
    let mut live = live;
    let before = live.as_ref().and_then(|l| l["data"].as_object().cloned());
    let after = merged["data"].as_object().cloned();
    if let (Some(live), Some(before)) = (live.as_mut(), &before) {
        for (key, value) in before {
            let masked = match after.as_ref().and_then(|a| a.get(key)) {
                Some(other) if other != value => "*** (before)",
                _ => MASK,
            };
            live["data"][key] = Value::String(masked.into());
        }
    }
    if let Some(after) = &after {
        for (key, value) in after {
            let masked = match before.as_ref().and_then(|b| b.get(key)) {
                Some(other) if other != value => "*** (after)",
                _ => MASK,
            };
            merged["data"][key] = Value::String(masked.into());
        }
    }
    (live, merged)
}

async fn diff(s: &mut Session, args: DiffArgs) -> Result<()> {
    let manifests = read_manifests(&args.filenames)?;
    let (program, program_args) =
        diff_command(std::env::var("KUBECTL_EXTERNAL_DIFF").ok().as_deref())?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let live_dir = tempfile::Builder::new()
        .prefix("LIVE-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))?;
    let merged_dir = tempfile::Builder::new()
        .prefix("MERGED-")
        .tempdir()
        .map_err(|e| Error::io("creating a temporary directory", e))?;
    for manifest in &manifests {
        let name = name_of(&manifest.object).to_string();
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "error when retrieving current configuration of {} from \"{}\": resource name may not be empty",
                manifest.object["kind"].as_str().unwrap_or(""),
                manifest.source
            )));
        }
        let (info, ns) = placement(s, &catalog, manifest).await?;
        let live = match get_object(&client, &info, ns.as_deref(), &name).await {
            Ok(live) => Some(live),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let merged = merged_object(
            s,
            &info,
            ns.as_deref(),
            &manifest.object,
            live.as_ref(),
            &args,
        )
        .await?;
        let (live, merged) = if info.group.is_empty() && info.kind == "Secret" {
            mask_secret_data(live, merged)
        } else {
            (live, merged)
        };
        let file = file_name(&info, ns.as_deref(), &name);
        let clean = |v: Value| {
            if args.show_managed_fields {
                v
            } else {
                without_managed_fields(v)
            }
        };
        match live {
            Some(live) => write_yaml(live_dir.path(), &file, &clean(live))?,
            // Upstream's Secret masker turns a missing live object into a `null` document.
            None if info.group.is_empty() && info.kind == "Secret" => {
                std::fs::write(live_dir.path().join(&file), "null\n")
                    .map_err(|e| Error::io(format!("writing {file}"), e))?
            }
            None => {}
        }
        write_yaml(merged_dir.path(), &file, &clean(merged))?;
    }
    let output = tokio::process::Command::new(&program)
        .args(&program_args)
        .arg(live_dir.path())
        .arg(merged_dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::io(format!("running {program}"), e))?;
    s.io.out
        .write_all(&output.stdout)
        .map_err(|e| Error::io("writing output", e))?;
    s.io.err
        .write_all(&output.stderr)
        .map_err(|e| Error::io("writing output", e))?;
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(Error::Silent(1)),
        Some(code) => Err(Error::Silent(code)),
        None => Err(Error::Usage(format!("{program} was killed by a signal"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_external_diff_is_honoured_and_checked() {
        assert_eq!(
            diff_command(None).ok(),
            Some(("diff".to_string(), vec!["-u".to_string(), "-N".to_string()]))
        );
        assert_eq!(
            diff_command(Some("colordiff -N --color=always")).ok(),
            Some((
                "colordiff".to_string(),
                vec!["-N".to_string(), "--color=always".to_string()]
            ))
        );
        assert!(diff_command(Some("diff $(rm -rf x)")).is_err());
    }

    #[test]
    fn secret_values_are_masked() {
        let live = serde_json::json!({"kind": "Secret", "data": {"same": "YQ==", "changed": "Yg==", "gone": "Yw=="}});
        let merged = serde_json::json!({"kind": "Secret", "data": {"same": "YQ==", "changed": "Yw==", "new": "ZA=="}});
        let (live, merged) = mask_secret_data(Some(live), merged);
        assert_eq!(
            live.map(|l| l["data"].clone()),
            Some(serde_json::json!({"same": "***", "changed": "*** (before)", "gone": "***"}))
        );
        assert_eq!(
            merged["data"],
            serde_json::json!({"same": "***", "changed": "*** (after)", "new": "***"})
        );
        let (none, created) = mask_secret_data(None, serde_json::json!({"data": {"k": "dg=="}}));
        assert!(none.is_none());
        assert_eq!(created["data"], serde_json::json!({"k": "***"}));
    }

    #[test]
    fn managed_fields_are_dropped() {
        let object = serde_json::json!({"metadata": {"name": "a", "managedFields": []}});
        assert_eq!(
            without_managed_fields(object),
            serde_json::json!({"metadata": {"name": "a"}})
        );
    }
}
