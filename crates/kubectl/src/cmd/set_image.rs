//! `kubectl set image TYPE/NAME CONTAINER=IMAGE...` (`*=IMAGE` for every container): patches the
//! pod template's container images.

use kube::api::{Patch, PatchParams};
use serde_json::{json, Value};

use super::create::finish;
use super::{dynamic_api, get_object, parse_targets, resolve_targets, scope};
use crate::cli::SetImageArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Runs `kubectl set image`.
pub async fn run(s: &mut Session, args: SetImageArgs) -> Result<()> {
    let (images, resources): (Vec<String>, Vec<String>) =
        args.args.into_iter().partition(|a| a.contains('='));
    if images.is_empty() {
        return Err(Error::Usage("at least one image update is required".into()));
    }
    let pairs: Vec<(String, String)> = images
        .iter()
        .filter_map(|p| {
            p.split_once('=')
                .map(|(c, i)| (c.to_string(), i.to_string()))
        })
        .collect();
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&resources)?;
    let mut errors = Vec::new();
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let ns = scope(&info, Some(&namespace));
        for name in names {
            let result = async {
                let object = get_object(&client, &info, ns.as_deref(), &name).await?;
                let patch = image_patch(&object, &pairs)?;
                let api = dynamic_api(client.clone(), &info, ns.as_deref());
                api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                    .await?;
                Ok(())
            }
            .await;
            match result {
                Ok(()) => s.print(&format!("{}/{name} image updated\n", info.group_kind()))?,
                Err(e) => errors.push(e),
            }
        }
    }
    finish(errors)
}

/// The strategic merge patch setting the images on an object's pod spec.
pub fn image_patch(object: &Value, pairs: &[(String, String)]) -> Result<Value> {
    let is_pod = object["kind"] == "Pod";
    let spec = if is_pod {
        &object["spec"]
    } else {
        &object["spec"]["template"]["spec"]
    };
    let mut patched = serde_json::Map::new();
    for field in ["initContainers", "containers"] {
        let mut changes = Vec::new();
        for container in spec[field].as_array().into_iter().flatten() {
            let cname = container["name"].as_str().unwrap_or("");
            for (wanted, image) in pairs {
                if wanted == "*" || wanted == cname {
                    changes.push(json!({"name": cname, "image": image}));
                }
            }
        }
        if !changes.is_empty() {
            patched.insert(field.to_string(), Value::Array(changes));
        }
    }
    for (wanted, _) in pairs {
        let found = wanted == "*"
            || ["initContainers", "containers"].iter().any(|f| {
                spec[*f]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["name"] == wanted.as_str())
            });
        if !found {
            return Err(Error::Usage(format!(
                "unable to find container named \"{wanted}\""
            )));
        }
    }
    let spec_patch = Value::Object(patched);
    Ok(if is_pod {
        json!({"spec": spec_patch})
    } else {
        json!({"spec": {"template": {"spec": spec_patch}}})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_patches_name_the_containers() -> anyhow::Result<()> {
        let d = json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "a"}, {"name": "side", "image": "b"}]}}}});
        let patch = image_patch(&d, &[("web".into(), "busybox:1.36".into())])?;
        assert_eq!(
            patch,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}})
        );
        let all = image_patch(&d, &[("*".into(), "x".into())])?;
        assert_eq!(
            all["spec"]["template"]["spec"]["containers"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let missing = image_patch(&d, &[("nope".into(), "x".into())])
            .err()
            .map(|e| e.report());
        assert_eq!(
            missing.as_deref(),
            Some("error: unable to find container named \"nope\"")
        );
        Ok(())
    }
}
