//! `kubectl set resources TYPE NAME --limits=cpu=200m,memory=512Mi --requests=...`: sets container
//! resource limits and requests in pod templates (quantities in their canonical form, as the Go
//! client encodes them).

use api_types::quantity::{Quantity, QuantityError};
use serde_json::{Map, Value};

use super::apply::DryRun;
use super::pod_template::{
    fetch, pod_spec_mut, select_containers, send_change, Selection, Sending,
};
use crate::cli::SetResourcesArgs;
use crate::error::{Error, Result};
use crate::printers::OutputFormat;
use crate::session::Session;

/// Parses `cpu=200m,memory=512Mi` into canonical quantities, with upstream's errors.
pub fn parse_resource_list(text: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    if text.is_empty() {
        return Ok(out);
    }
    for pair in text.split(',') {
        let Some((name, value)) = pair
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        else {
            return Err(Error::Usage(format!(
                "Invalid argument syntax {pair}, expected <resource>=<value>"
            )));
        };
        let quantity = Quantity::parse(value).map_err(|e| {
            Error::Usage(match e {
                QuantityError::Suffix(_) => "unable to parse quantity's suffix".to_string(),
                _ => QuantityError::Empty.to_string(),
            })
        })?;
        out.insert(name.to_string(), Value::String(quantity.to_string()));
    }
    Ok(out)
}

/// Runs `kubectl set resources`.
pub async fn run(s: &mut Session, args: SetResourcesArgs) -> Result<()> {
    let dry_run = DryRun::parse(args.dry_run.as_deref())?;
    if args.all && args.selector.is_some() {
        return Err(Error::Usage(
            "cannot set --all and --selector at the same time".into(),
        ));
    }
    let format = OutputFormat::parse(args.output.as_deref())?;
    let selection = Selection {
        args: &args.args,
        filenames: &args.filenames,
        all: args.all,
        selector: args.selector.as_deref(),
    };
    let found = fetch(s, &selection).await?;
    if args.limits.is_empty() && args.requests.is_empty() {
        return Err(Error::Usage(
            "you must specify an update to requests or limits (in the form of --requests/--limits)"
                .into(),
        ));
    }
    let limits = parse_resource_list(&args.limits)?;
    let requests = parse_resource_list(&args.requests)?;
    let sending = Sending {
        format: &format,
        dry_run,
        field_manager: &args.field_manager,
        operation: "resource requirements updated",
        failure: "failed to patch resources update to pod template ",
    };
    let mut errors = Vec::new();
    for item in found {
        let mut after = item.object.clone();
        let spec = match pod_spec_mut(&item.info, &mut after) {
            Ok(spec) => spec,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let selected = select_containers(spec, &args.containers);
        if selected.is_empty() {
            errors.push(Error::Usage(format!(
                "unable to find container named {}",
                args.containers
            )));
            continue;
        }
        for (field, index) in selected {
            let resources = &mut spec[field][index]["resources"];
            if !resources.is_object() {
                *resources = Value::Object(Map::new());
            }
            for (key, wanted) in [("limits", &limits), ("requests", &requests)] {
                if wanted.is_empty() {
                    continue;
                }
                let list = &mut resources[key];
                if !list.is_object() {
                    *list = Value::Object(Map::new());
                }
                if let Some(map) = list.as_object_mut() {
                    map.extend(wanted.clone());
                }
            }
        }
        if let Err(e) = send_change(s, &item.info, &item.object, &after, &sending).await {
            errors.push(e);
        }
    }
    super::create::finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resource_lists_parse_to_canonical_quantities() -> anyhow::Result<()> {
        let list = parse_resource_list("cpu=0.5,memory=1024Mi")?;
        assert_eq!(Value::Object(list), json!({"cpu": "500m", "memory": "1Gi"}));
        let syntax = parse_resource_list("foo").err().map(|e| e.report());
        assert_eq!(
            syntax.as_deref(),
            Some("error: Invalid argument syntax foo, expected <resource>=<value>")
        );
        let quantity = parse_resource_list("cpu=abc").err().map(|e| e.report());
        assert_eq!(
            quantity.as_deref(),
            Some("error: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
        );
        Ok(())
    }
}
