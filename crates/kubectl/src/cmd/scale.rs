//! `kubectl scale TYPE/NAME --replicas=N [--current-replicas=M]` through the `scale` subresource.

use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::create::finish;
use super::{dynamic_api, parse_targets, resolve_targets, scope};
use crate::cli::ScaleArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Runs `kubectl scale`.
pub async fn run(s: &mut Session, args: ScaleArgs) -> Result<()> {
    if args.replicas < 0 {
        return Err(Error::Usage(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
                .into(),
        ));
    }
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&args.args)?;
    let mut errors = Vec::new();
    for (info, names) in resolve_targets(&catalog, &targets)? {
        if names.is_empty() {
            return Err(Error::Usage(
                "resource(s) were provided, but no name was specified".into(),
            ));
        }
        let api = dynamic_api(
            client.clone(),
            &info,
            scope(&info, Some(&namespace)).as_deref(),
        );
        for name in names {
            let result = async {
                if args.current_replicas >= 0 {
                    let current = api.get_scale(&name).await?;
                    let have = current.spec.and_then(|s| s.replicas).unwrap_or(0);
                    if have != args.current_replicas {
                        return Err(Error::Usage(format!(
                            "Expected replicas to be {}, was {have}",
                            args.current_replicas
                        )));
                    }
                }
                let patch = json!({"spec": {"replicas": args.replicas}});
                api.patch_scale(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(())
            }
            .await;
            match result {
                Ok(()) => s.print(&format!("{}/{name} scaled\n", info.group_kind()))?,
                // Upstream finds nothing to scale before it asks the server.
                Err(e) if e.is_not_found() => errors.push(Error::Usage(format!(
                    "no objects passed to scale {}",
                    match &e {
                        Error::Api(status) => status.message.clone(),
                        other => other.to_string(),
                    }
                ))),
                Err(e) => errors.push(e),
            }
        }
    }
    finish(errors)
}
