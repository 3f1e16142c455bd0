//! `kubectl cordon|uncordon NODE` (toggle `spec.unschedulable`) and `kubectl taint` (add, overwrite
//! and remove `spec.taints`), worded as upstream.

use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use super::{get_object, list_objects, name_of, parse_targets};
use crate::cli::{CordonArgs, TaintArgs};
use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::session::Session;

/// The nodes named on the command line or matched by `-l`.
pub async fn select_nodes(
    s: &Session,
    names: &[String],
    selector: Option<&str>,
) -> Result<(ResourceInfo, Vec<Value>)> {
    let client = s.client().await?;
    let info = s.catalog().await?.resolve("nodes")?.clone();
    let mut nodes = Vec::new();
    if let Some(selector) = selector {
        if !names.is_empty() {
            return Err(Error::Usage(
                "error: cannot specify both a node name and a selector".into(),
            ));
        }
        nodes = list_objects(
            &client,
            &info,
            None,
            &ListParams::default().labels(selector),
        )
        .await?;
    } else {
        if names.is_empty() {
            return Err(Error::Usage("USAGE: kubectl cordon NODE [flags]".into()));
        }
        for name in names {
            let name = name
                .strip_prefix("node/")
                .or_else(|| name.strip_prefix("nodes/"))
                .unwrap_or(name);
            nodes.push(get_object(&client, &info, None, name).await?);
        }
    }
    Ok((info, nodes))
}

/// Sets `spec.unschedulable` on a node; returns whether anything changed.
pub async fn set_unschedulable(s: &Session, node: &Value, desired: bool) -> Result<bool> {
    let current = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
    if current == desired {
        return Ok(false);
    }
    let client = s.client().await?;
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    let patch = json!({"spec": {"unschedulable": if desired { json!(true) } else { Value::Null }}});
    api.patch(
        name_of(node),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

/// Runs `kubectl cordon` (`cordon = true`) or `kubectl uncordon`.
pub async fn cordon(s: &mut Session, args: CordonArgs, cordon: bool) -> Result<()> {
    let (_, nodes) = select_nodes(s, &args.nodes, args.selector.as_deref()).await?;
    let verb = if cordon { "cordoned" } else { "uncordoned" };
    for node in nodes {
        let changed = set_unschedulable(s, &node, cordon).await?;
        let already = if changed { "" } else { "already " };
        s.print(&format!("node/{} {already}{verb}\n", name_of(&node)))?;
    }
    Ok(())
}

/// One taint given on the command line: to add (`key=value:Effect`) or remove (`key[:Effect]-`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaintSpec {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    pub value: String,
    /// NoSchedule, PreferNoSchedule or NoExecute (empty on removal = any effect).
    pub effect: String,
}

fn valid_effect(effect: &str) -> bool {
    matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute")
}

/// Splits taint arguments into those to add and those to remove, with upstream's errors.
pub fn parse_taints(specs: &[String]) -> Result<(Vec<TaintSpec>, Vec<TaintSpec>)> {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for spec in specs {
        if let Some(rest) = spec.strip_suffix('-') {
            let (key, effect) = match rest.split_once(':') {
                Some((k, e)) => (k, e),
                None => (rest, ""),
            };
            if !effect.is_empty() && !valid_effect(effect) {
                return Err(Error::Usage(format!(
                    "invalid taint effect: {effect}, unsupported taint effect"
                )));
            }
            remove.push(TaintSpec {
                key: key.into(),
                value: String::new(),
                effect: effect.into(),
            });
            continue;
        }
        let Some((kv, effect)) = spec.split_once(':') else {
            return Err(Error::Usage(format!("invalid taint spec: {spec}")));
        };
        if !valid_effect(effect) {
            return Err(Error::Usage(format!(
                "invalid taint effect: {effect}, unsupported taint effect"
            )));
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            return Err(Error::Usage(format!("invalid taint spec: {spec}")));
        }
        add.push(TaintSpec {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        });
    }
    for a in &add {
        if remove
            .iter()
            .any(|r| r.key == a.key && r.effect == a.effect)
        {
            return Err(Error::Usage(
                "can not both modify and remove the following taint(s) in the same command: "
                    .to_string()
                    + &a.key,
            ));
        }
    }
    Ok((add, remove))
}

/// Applies taint changes to a node's current taints; returns the new list and the operation word
/// upstream prints (`tainted`, `untainted` or `modified`).
pub fn apply_taints(
    node_name: &str,
    current: &[Value],
    add: &[TaintSpec],
    remove: &[TaintSpec],
    overwrite: bool,
) -> Result<(Vec<Value>, &'static str)> {
    if !overwrite {
        let clashes: Vec<&TaintSpec> = add
            .iter()
            .filter(|a| {
                current
                    .iter()
                    .any(|t| t["key"] == a.key.as_str() && t["effect"] == a.effect.as_str())
            })
            .collect();
        if !clashes.is_empty() {
            let keys: Vec<&str> = clashes.iter().map(|a| a.key.as_str()).collect();
            return Err(Error::Usage(format!(
                "node {node_name} already has {} taint(s) with same effect(s) and --overwrite is false",
                keys.join(",")
            )));
        }
    }
    // As upstream: the added taints first, then the old ones they do not replace.
    let mut taints: Vec<Value> = add
        .iter()
        .map(|a| {
            let mut taint = json!({"key": a.key, "effect": a.effect});
            if !a.value.is_empty() {
                taint["value"] = json!(a.value);
            }
            taint
        })
        .collect();
    for old in current {
        if !taints
            .iter()
            .any(|t| t["key"] == old["key"] && t["effect"] == old["effect"])
        {
            taints.push(old.clone());
        }
    }
    let added = taints.len() != current.len();
    for r in remove {
        let before = taints.len();
        taints.retain(|t| {
            !(t["key"] == r.key.as_str()
                && (r.effect.is_empty() || t["effect"] == r.effect.as_str()))
        });
        if taints.len() == before {
            let what = if r.effect.is_empty() {
                r.key.clone()
            } else {
                format!("{}:{}", r.key, r.effect)
            };
            return Err(Error::Usage(format!("taint {what:?} not found")));
        }
    }
    let deleted = !remove.is_empty();
    let operation = if (added && deleted) || overwrite {
        "modified"
    } else if added {
        "tainted"
    } else {
        "untainted"
    };
    Ok((taints, operation))
}

/// Runs `kubectl taint nodes NAME SPEC...`.
pub async fn taint(s: &mut Session, args: TaintArgs) -> Result<()> {
    // The first argument is the type (`nodes`, `node/NAME`); names follow until the first taint.
    let mut names: Vec<String> = Vec::new();
    let mut specs: Vec<String> = Vec::new();
    let Some(first) = args.args.first() else {
        return Err(Error::Usage("at least one taint update is required".into()));
    };
    if first.contains('/') {
        // Upstream takes the first argument as a bare type here and prints this without `error:`.
        s.eprint(&format!(
            "the server doesn't have a resource type {first:?}\n"
        ))?;
        return Err(Error::Silent(1));
    }
    let typed = parse_targets(std::slice::from_ref(first))?;
    let type_name = typed
        .first()
        .map(|t| t.type_name.clone())
        .unwrap_or_default();
    names.extend(typed.into_iter().flat_map(|t| t.names));
    for arg in &args.args[1..] {
        if arg.contains(':') || arg.ends_with('-') || arg.contains('=') {
            specs.push(arg.clone());
        } else if specs.is_empty() {
            names.push(arg.clone());
        } else {
            return Err(Error::Usage(
                "at least one taint update is required".to_string(),
            ));
        }
    }
    let info = s.catalog().await?.resolve(&type_name)?.clone();
    if info.kind != "Node" {
        return Err(Error::Usage(format!(
            "invalid resource type {type_name}, only nodes are supported"
        )));
    }
    if specs.is_empty() {
        return Err(Error::Usage("at least one taint update is required".into()));
    }
    let (add, remove) = parse_taints(&specs).map_err(|e| match e {
        Error::Usage(m) => {
            Error::Usage(format!("{m}\nSee 'kubectl taint -h' for help and examples"))
        }
        other => other,
    })?;
    let (_, nodes) = if args.all {
        select_nodes(s, &[], Some("")).await?
    } else {
        select_nodes(s, &names, args.selector.as_deref()).await?
    };
    let client = s.client().await?;
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
    for node in nodes {
        let name = name_of(&node).to_string();
        let current = node["spec"]["taints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (taints, operation) = apply_taints(&name, &current, &add, &remove, args.overwrite)?;
        let patch = json!({"spec": {"taints": taints}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        s.print(&format!("node/{name} {operation}\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn taint_specs_parse_like_upstream() -> anyhow::Result<()> {
        let (add, remove) = parse_taints(&strings(&[
            "a=b:NoSchedule",
            "c:NoExecute",
            "d-",
            "e:NoSchedule-",
        ]))?;
        assert_eq!(add.len(), 2);
        assert_eq!(add[0].value, "b");
        assert_eq!(add[1].value, "");
        assert_eq!(remove[0].effect, "");
        assert_eq!(remove[1].effect, "NoSchedule");
        assert_eq!(
            parse_taints(&strings(&["a=b:Sometimes"]))
                .err()
                .map(|e| e.report())
                .as_deref(),
            Some("error: invalid taint effect: Sometimes, unsupported taint effect")
        );
        Ok(())
    }

    #[test]
    fn taints_are_added_replaced_and_removed() -> anyhow::Result<()> {
        let current = vec![json!({"key": "a", "value": "1", "effect": "NoSchedule"})];
        let (add, _) = parse_taints(&strings(&["a=2:NoSchedule"]))?;
        assert_eq!(
            apply_taints("n", &current, &add, &[], false)
                .err()
                .map(|e| e.report())
                .as_deref(),
            Some(
                "error: node n already has a taint(s) with same effect(s) and --overwrite is false"
            )
        );
        let (taints, op) = apply_taints("n", &current, &add, &[], true)?;
        assert_eq!(
            (taints, op),
            (
                vec![json!({"key": "a", "value": "2", "effect": "NoSchedule"})],
                "modified"
            )
        );
        let (_, remove) = parse_taints(&strings(&["a-"]))?;
        let (taints, op) = apply_taints("n", &current, &[], &remove, false)?;
        assert_eq!((taints.len(), op), (0, "untainted"));
        let (_, remove) = parse_taints(&strings(&["zz-"]))?;
        assert_eq!(
            apply_taints("n", &current, &[], &remove, false)
                .err()
                .map(|e| e.report())
                .as_deref(),
            Some("error: taint \"zz\" not found")
        );
        Ok(())
    }
}
