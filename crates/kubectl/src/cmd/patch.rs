//! `kubectl patch TYPE NAME -p PATCH [--type strategic|merge|json] [--subresource S]
//! [--dry-run=none|client|server]`.

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::{dynamic_api, get_object, parse_targets, resolve_targets, scope};
use crate::cli::PatchArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Parses `-p` (JSON or YAML) for the given `--type`.
pub fn parse_patch(text: &str, patch_type: &str) -> Result<Patch<Value>> {
    let value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| Error::Usage(format!("unable to parse \"{text}\": {e}")))?;
    match patch_type {
        "strategic" => Ok(Patch::Strategic(value)),
        "merge" => Ok(Patch::Merge(value)),
        "json" => {
            let ops: json_patch::Patch = serde_json::from_value(value)
                .map_err(|e| Error::Usage(format!("unable to parse \"{text}\": {e}")))?;
            Ok(Patch::Json(ops))
        }
        other => Err(Error::Usage(format!(
            "--type must be one of [json merge strategic], not \"{other}\""
        ))),
    }
}

/// Runs `kubectl patch`.
pub async fn run(s: &mut Session, args: PatchArgs) -> Result<()> {
    let patch = parse_patch(&args.patch, &args.patch_type)?;
    let dry_run = super::apply::DryRun::parse(args.dry_run.as_deref())?;
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&args.args)?;
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let ns = scope(&info, Some(&namespace));
        let api = dynamic_api(client.clone(), &info, ns.as_deref());
        for name in names {
            let before = get_object(&client, &info, ns.as_deref(), &name).await?;
            if dry_run == super::apply::DryRun::Client {
                s.print(&format!("{}/{name} patched (dry run)\n", info.group_kind()))?;
                continue;
            }
            let params = PatchParams {
                field_manager: Some("kubectl-patch".into()),
                dry_run: dry_run == super::apply::DryRun::Server,
                ..PatchParams::default()
            };
            let after = match args.subresource.as_deref() {
                Some(sub) => api.patch_subresource(sub, &name, &params, &patch).await?,
                None => api.patch(&name, &params, &patch).await?,
            };
            let unchanged = before["metadata"]["resourceVersion"].as_str()
                == after.metadata.resource_version.as_deref();
            let suffix = if unchanged { " (no change)" } else { "" };
            s.print(&format!(
                "{}/{name} patched{suffix}{}\n",
                info.group_kind(),
                dry_run.suffix()
            ))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_parse_by_type() {
        assert!(matches!(
            parse_patch(r#"{"spec":{"replicas":2}}"#, "strategic"),
            Ok(Patch::Strategic(_))
        ));
        assert!(matches!(
            parse_patch("spec: {replicas: 2}", "merge"),
            Ok(Patch::Merge(_))
        ));
        assert!(matches!(
            parse_patch(
                r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
                "json"
            ),
            Ok(Patch::Json(_))
        ));
        assert!(parse_patch(r#"{"op":"x"}"#, "json").is_err());
        assert!(parse_patch("{}", "apply").is_err());
        assert!(parse_patch("{a", "merge").is_err());
    }
}
