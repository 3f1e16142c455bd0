//! What `set env` and `set resources` share: finding the objects named on the command line (or in
//! `-f` files, or by `--all` / `-l`), reaching the pod spec inside each (a Pod's own spec, a
//! workload's template, a CronJob's job template), picking containers by a glob, and sending the
//! change as a patch computed from the object before and after, as upstream's `CalculatePatches`
//! does (no change: nothing is sent or printed).

use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::apply::DryRun;
use super::create::placement;
use super::{
    dynamic_api, get_object, list_objects, list_params, parse_targets, resolve_targets, scope,
};
use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::manifest::read_manifests;
use crate::printers::object::print_result;
use crate::printers::OutputFormat;
use crate::session::Session;

/// One object to change: its resource and its live state.
pub struct Found {
    /// The resource type.
    pub info: ResourceInfo,
    /// The object as the server has it (with `apiVersion` and `kind`).
    pub object: Value,
}

/// Which objects a command names.
pub struct Selection<'a> {
    /// `TYPE NAME...` / `TYPE/NAME...`.
    pub args: &'a [String],
    /// `-f` files.
    pub filenames: &'a [String],
    /// `--all`.
    pub all: bool,
    /// `-l`.
    pub selector: Option<&'a str>,
}

/// Fetches the selected objects in the session's namespace, failing on the first missing one (as
/// upstream's resource builder does before any change is made).
pub async fn fetch(s: &Session, selection: &Selection<'_>) -> Result<Vec<Found>> {
    if selection.all && selection.selector.is_some() {
        return Err(Error::Usage(
            "cannot set --all and --selector at the same time".into(),
        ));
    }
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let mut found = Vec::new();
    for manifest in read_manifests(selection.filenames)? {
        let (info, ns) = placement(s, &catalog, &manifest).await?;
        let name = manifest.object["metadata"]["name"].as_str().unwrap_or("");
        let object = get_object(&client, &info, ns.as_deref(), name).await?;
        found.push(Found { info, object });
    }
    let targets = parse_targets(selection.args)?;
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let ns = scope(&info, Some(&namespace));
        if names.is_empty() {
            if !selection.all && selection.selector.is_none() {
                return Err(Error::Usage(
                    "resource(s) were provided, but no name was specified".into(),
                ));
            }
            let params = list_params(selection.selector, None);
            for object in list_objects(&client, &info, ns.as_deref(), &params).await? {
                found.push(Found {
                    info: info.clone(),
                    object,
                });
            }
            continue;
        }
        for name in names {
            let object = get_object(&client, &info, ns.as_deref(), &name).await?;
            found.push(Found {
                info: info.clone(),
                object,
            });
        }
    }
    Ok(found)
}

/// The pod spec inside an object, or upstream's error for kinds without one.
pub fn pod_spec_mut<'a>(info: &ResourceInfo, object: &'a mut Value) -> Result<&'a mut Value> {
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let spec = match kind.as_str() {
        "Pod" => object.get_mut("spec"),
        "CronJob" => object
            .pointer_mut("/spec/jobTemplate/spec/template/spec")
            .filter(|_| info.group == "batch"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicationController"
        | "Job"
        | "PodTemplate" => {
            let path = if kind == "PodTemplate" {
                "/template/spec"
            } else {
                "/spec/template/spec"
            };
            object.pointer_mut(path)
        }
        _ => None,
    };
    match spec {
        Some(spec) if spec.is_object() => Ok(spec),
        _ => Err(Error::Usage(format!(
            "{}/{} the object is not a pod or does not have a pod template: *{}.{}",
            info.plural,
            name,
            if info.version.is_empty() {
                "v1"
            } else {
                info.version.as_str()
            },
            kind
        ))),
    }
}

/// Where the selected containers are: `(field, index)` pairs, regular containers first and then
/// init containers, as upstream orders them.
pub fn select_containers(spec: &Value, pattern: &str) -> Vec<(&'static str, usize)> {
    let mut out = Vec::new();
    for field in ["containers", "initContainers"] {
        for (index, container) in spec[field].as_array().into_iter().flatten().enumerate() {
            if glob_match(pattern, container["name"].as_str().unwrap_or("")) {
                out.push((field, index));
            }
        }
    }
    out
}

/// Shell-style matching of a name against a pattern with `*`, `?` and `[...]` classes
/// (`filepath.Match`, which upstream uses for `--containers`).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_at(&p, &n)
}

fn glob_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|skip| glob_at(&p[1..], &n[skip..])),
        Some('?') => !n.is_empty() && glob_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(close) = p.iter().position(|c| *c == ']') else {
                return false;
            };
            let Some(&c) = n.first() else {
                return false;
            };
            let class = &p[1..close];
            let (negate, class) = match class.first() {
                Some('^') | Some('!') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob_at(&p[close + 1..], &n[1..])
        }
        Some(&literal) => n.first() == Some(&literal) && glob_at(&p[1..], &n[1..]),
    }
}

/// The `creationTimestamp: null` a Go client prints for object metadata without one (in pod
/// templates, typically), since it prints typed objects.
pub fn typed_stamps(mut object: Value) -> Value {
    for path in [
        "/metadata",
        "/spec/template/metadata",
        "/spec/jobTemplate/metadata",
        "/spec/jobTemplate/spec/template/metadata",
        "/template/metadata",
    ] {
        if let Some(meta) = object.pointer_mut(path).and_then(Value::as_object_mut) {
            meta.entry("creationTimestamp").or_insert(Value::Null);
        }
    }
    object
}

/// How a changed object is sent and reported.
pub struct Sending<'a> {
    /// `-o`.
    pub format: &'a OutputFormat,
    /// `--dry-run`.
    pub dry_run: DryRun,
    /// `--field-manager`.
    pub field_manager: &'a str,
    /// What the result line says (`env updated`).
    pub operation: &'a str,
    /// The prefix upstream puts before a failed patch's message.
    pub failure: &'a str,
}

/// Sends the difference between `before` and `after` (nothing when equal) and prints the result
/// line or object; with `--dry-run=client` prints `after` without sending.
pub async fn send_change(
    s: &mut Session,
    info: &ResourceInfo,
    before: &Value,
    after: &Value,
    how: &Sending<'_>,
) -> Result<()> {
    if before == after {
        return Ok(());
    }
    let operation = format!("{}{}", how.operation, how.dry_run.suffix());
    if how.dry_run == DryRun::Client {
        return s.print(&print_result(
            how.format,
            &typed_stamps(after.clone()),
            &operation,
        )?);
    }
    let client = s.client().await?;
    let namespace = before["metadata"]["namespace"].as_str();
    let name = before["metadata"]["name"].as_str().unwrap_or("");
    let api = dynamic_api(client, info, scope(info, namespace).as_deref());
    let params = PatchParams {
        field_manager: Some(how.field_manager.to_string()),
        dry_run: how.dry_run == DryRun::Server,
        ..PatchParams::default()
    };
    let patch = json_patch::diff(before, after);
    match api.patch(name, &params, &Patch::Json::<()>(patch)).await {
        Ok(patched) => {
            let patched = super::to_value(patched, info);
            s.print(&print_result(how.format, &patched, &operation)?)
        }
        Err(e) => match Error::from(e) {
            Error::Api(status) => Err(Error::Usage(format!("{}{}", how.failure, status.message))),
            other => Err(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_globs_match_like_filepath_match() {
        let cases = [
            ("*", "busybox", true),
            ("busy*", "busybox", true),
            ("busy*", "nginx", false),
            ("ng?nx", "nginx", true),
            ("[a-n]ginx", "nginx", true),
            ("[^n]ginx", "nginx", false),
            ("nginx", "nginx", true),
            ("nginx", "nginx2", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(glob_match(pattern, name), want, "{pattern} {name}");
        }
    }

    #[test]
    fn pod_specs_are_found_per_kind() -> anyhow::Result<()> {
        let catalog = crate::discovery::fixtures::catalog();
        let deploy = catalog.resolve("deployments")?.clone();
        let mut d = json!({"kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "a"}],
                "initContainers": [{"name": "init"}]}}}});
        let spec = pod_spec_mut(&deploy, &mut d)?;
        assert_eq!(
            select_containers(spec, "*"),
            vec![("containers", 0), ("initContainers", 0)]
        );
        let svc = catalog.resolve("services")?.clone();
        let mut s = json!({"kind": "Service", "metadata": {"name": "front"}, "spec": {}});
        let err = pod_spec_mut(&svc, &mut s).err().map(|e| e.report());
        assert_eq!(
            err.as_deref(),
            Some("error: services/front the object is not a pod or does not have a pod template: *v1.Service")
        );
        Ok(())
    }
}
