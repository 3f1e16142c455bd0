//! `kubectl label` and `kubectl annotate`: `KEY=VALUE` sets, `KEY-` removes, `--overwrite` to
//! replace existing values; a merge patch on `metadata.labels` / `metadata.annotations`.

use kube::api::{Patch, PatchParams};
use serde_json::{json, Map, Value};

use super::create::finish;
use super::{
    dynamic_api, get_object, list_objects, list_params, name_of, parse_targets, resolve_targets,
    scope,
};
use crate::cli::MetaArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// Which metadata map a command edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `metadata.labels` (`kubectl label`).
    Labels,
    /// `metadata.annotations` (`kubectl annotate`).
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Field::Labels => "labeled",
            Field::Annotations => "annotated",
        }
    }
}

/// Requested changes: values to set and keys to remove.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    /// `KEY=VALUE` pairs.
    pub set: Vec<(String, String)>,
    /// `KEY-` removals.
    pub remove: Vec<String>,
}

/// Splits the arguments into resource arguments and changes.
pub fn split_args(args: &[String]) -> (Vec<String>, Changes) {
    let mut resources = Vec::new();
    let mut changes = Changes::default();
    for arg in args {
        if let Some((k, v)) = arg.split_once('=') {
            changes.set.push((k.to_string(), v.to_string()));
        } else if let Some(k) = arg.strip_suffix('-').filter(|_| !resources.is_empty()) {
            changes.remove.push(k.to_string());
        } else {
            resources.push(arg.clone());
        }
    }
    (resources, changes)
}

/// The merge patch for one object, or an error when a value would be overwritten without
/// `--overwrite`.
pub fn meta_patch(
    object: &Value,
    field: Field,
    changes: &Changes,
    overwrite: bool,
) -> Result<Value> {
    let current = &object["metadata"][field.key()];
    let mut map = Map::new();
    for (k, v) in &changes.set {
        if let Some(existing) = current.get(k).and_then(Value::as_str) {
            if existing != v && !overwrite {
                return Err(Error::Usage(format!(
                    "'{k}' already has a value ({existing}), and --overwrite is false"
                )));
            }
        }
        map.insert(k.clone(), json!(v));
    }
    for k in &changes.remove {
        map.insert(k.clone(), Value::Null);
    }
    Ok(json!({"metadata": {field.key(): map}}))
}

/// Upstream's wording: `labeled`, `unlabeled` (only shrank, without --overwrite) or `not labeled`
/// (nothing changed); annotate always says `annotated`.
pub fn change_message(
    object: &Value,
    field: Field,
    changes: &Changes,
    overwrite: bool,
) -> &'static str {
    if field == Field::Annotations {
        return field.verb();
    }
    let old = object["metadata"][field.key()]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut new = old.clone();
    for (k, v) in &changes.set {
        new.insert(k.clone(), json!(v));
    }
    for k in &changes.remove {
        new.remove(k);
    }
    if new == old {
        "not labeled"
    } else if !overwrite
        && Value::Object(new).to_string().len() < Value::Object(old).to_string().len()
    {
        "unlabeled"
    } else {
        "labeled"
    }
}

/// Runs `kubectl label` / `kubectl annotate`.
pub async fn run(s: &mut Session, args: MetaArgs, field: Field) -> Result<()> {
    let (resources, changes) = split_args(&args.args);
    if changes.set.is_empty() && changes.remove.is_empty() {
        return Err(Error::Usage(format!(
            "at least one {} update is required",
            &field.key()[..field.key().len() - 1]
        )));
    }
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&resources)?;
    let mut errors = Vec::new();
    for (info, names) in resolve_targets(&catalog, &targets)? {
        let ns = scope(&info, Some(&namespace));
        let mut objects = Vec::new();
        if names.is_empty() {
            if args.selector.is_none() && !args.all {
                return Err(Error::Usage(
                    "resource(s) were provided, but no name was specified".into(),
                ));
            }
            objects = list_objects(
                &client,
                &info,
                ns.as_deref(),
                &list_params(args.selector.as_deref(), None),
            )
            .await?;
        }
        for name in &names {
            match get_object(&client, &info, ns.as_deref(), name).await {
                Ok(o) => objects.push(o),
                Err(e) => errors.push(e),
            }
        }
        let api = dynamic_api(client.clone(), &info, ns.as_deref());
        for object in objects {
            let name = name_of(&object).to_string();
            let result = async {
                let patch = meta_patch(&object, field, &changes, args.overwrite)?;
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok(change_message(&object, field, &changes, args.overwrite))
            }
            .await;
            match result {
                Ok(verb) => {
                    if field == Field::Labels {
                        for k in &changes.remove {
                            if object["metadata"]["labels"].get(k).is_none() {
                                s.print(&format!("label \"{k}\" not found.\n"))?;
                            }
                        }
                    }
                    s.print(&format!("{}/{name} {verb}\n", info.group_kind()))?
                }
                Err(e) => errors.push(e),
            }
        }
    }
    finish(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_split_into_resources_and_changes() {
        let (resources, changes) = split_args(&strings(&["pod", "web", "a=1", "b-"]));
        assert_eq!(resources, strings(&["pod", "web"]));
        assert_eq!(changes.set, vec![("a".to_string(), "1".to_string())]);
        assert_eq!(changes.remove, strings(&["b"]));
    }

    #[test]
    fn messages_say_what_changed() {
        let object = json!({"metadata": {"labels": {"a": "1"}}});
        let set = |k: &str, v: &str| Changes {
            set: vec![(k.into(), v.into())],
            remove: vec![],
        };
        let remove = |k: &str| Changes {
            set: vec![],
            remove: vec![k.into()],
        };
        assert_eq!(
            change_message(&object, Field::Labels, &set("b", "2"), false),
            "labeled"
        );
        assert_eq!(
            change_message(&object, Field::Labels, &set("a", "1"), false),
            "not labeled"
        );
        assert_eq!(
            change_message(&object, Field::Labels, &remove("a"), false),
            "unlabeled"
        );
        assert_eq!(
            change_message(&object, Field::Labels, &remove("zz"), false),
            "not labeled"
        );
        assert_eq!(
            change_message(&object, Field::Annotations, &remove("a"), false),
            "annotated"
        );
    }

    #[test]
    fn overwriting_needs_the_flag() {
        let object = json!({"metadata": {"labels": {"a": "1"}}});
        let changes = Changes {
            set: vec![("a".into(), "2".into())],
            remove: vec!["gone".into()],
        };
        let err = meta_patch(&object, Field::Labels, &changes, false)
            .err()
            .map(|e| e.report());
        assert_eq!(
            err.as_deref(),
            Some("error: 'a' already has a value (1), and --overwrite is false")
        );
        let patch = meta_patch(&object, Field::Labels, &changes, true).ok();
        assert_eq!(
            patch,
            Some(json!({"metadata": {"labels": {"a": "2", "gone": null}}}))
        );
        let same = Changes {
            set: vec![("a".into(), "1".into())],
            remove: vec![],
        };
        assert!(meta_patch(&object, Field::Annotations, &same, false).is_ok());
    }
}
