//! `kubectl set env RESOURCE/NAME KEY=VAL... KEY-...`: sets, replaces and removes container
//! environment variables in pod templates (`--from=configmap/NAME|secret/NAME` imports keys as
//! references, `--prefix`, `--keys`), or with `--list` prints them in env syntax (with
//! `--resolve`, the values behind references: see [`super::set_env_resolve`]).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::apply::DryRun;
use super::pod_template::{
    fetch, pod_spec_mut, select_containers, send_change, Selection, Sending,
};
use super::set_env_resolve::Resolver;
use super::{get_object, parse_targets, resolve_targets};
use crate::cli::SetEnvArgs;
use crate::error::{Error, Result};
use crate::printers::OutputFormat;
use crate::session::Session;

/// What upstream says for a name that is not a valid environment variable name.
const NAME_RULE: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

/// The parsed environment changes.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Variables to set (`{"name", "value"}` or `{"name", "valueFrom"}` objects), in order.
    pub set: Vec<Value>,
    /// Names to remove.
    pub remove: Vec<String>,
}

/// Splits arguments into resources (first) and environment changes (`K=V`, `K-`), as upstream.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut resources = Vec::new();
    let mut env = Vec::new();
    for arg in args {
        let is_env = arg.find('=').is_some_and(|at| at > 0) || arg.ends_with('-');
        match (is_env, env.is_empty()) {
            (true, _) => env.push(arg.clone()),
            (false, true) => resources.push(arg.clone()),
            (false, false) => {
                return Err(Error::Usage(format!(
                    "all resources must be specified before environment changes: {}",
                    args.join(" ")
                )))
            }
        }
    }
    Ok((resources, env))
}

/// Whether `name` is a valid environment variable name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// Parses `K=V` and `K-` arguments (`-` reads `K=V` lines from `stdin`).
pub fn parse_env(specs: &[String], stdin: &mut dyn FnMut() -> Result<String>) -> Result<Changes> {
    let mut changes = Changes::default();
    for spec in specs {
        if spec == "-" {
            let text = stdin()?;
            for line in text.lines() {
                let line = line.split('#').next().unwrap_or("");
                if let Some((name, value)) = line.split_once('=') {
                    changes.set.push(json!({"name": name, "value": value}));
                }
            }
        } else if let Some((name, value)) = spec.split_once('=') {
            if !valid_name(name) {
                return Err(Error::Usage(format!(
                    "\"{name}\" is not a valid key name: {NAME_RULE}"
                )));
            }
            changes.set.push(json!({"name": name, "value": value}));
        } else if let Some(name) = spec.strip_suffix('-') {
            changes.remove.push(name.to_string());
        } else {
            return Err(Error::Usage(format!(
                "unknown environment variable: {spec}"
            )));
        }
    }
    if changes
        .remove
        .iter()
        .any(|r| changes.set.iter().any(|e| e["name"] == r.as_str()))
    {
        return Err(Error::Usage(
            "can not both modify and remove the same environment variable in the same command"
                .into(),
        ));
    }
    Ok(changes)
}

/// The environment variable name upstream derives from a ConfigMap or Secret key.
pub fn key_to_env_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Upstream's `updateEnv`: drops removed names, replaces existing ones in place, appends new ones.
pub fn update_env(existing: &[Value], set: &[Value], remove: &[String]) -> Vec<Value> {
    let mut covered: Vec<String> = remove.to_vec();
    let mut out = Vec::new();
    for e in existing {
        let name = e["name"].as_str().unwrap_or("").to_string();
        if covered.contains(&name) {
            continue;
        }
        match set.iter().find(|n| n["name"] == name.as_str()) {
            Some(newer) => {
                covered.push(name);
                out.push(newer.clone());
            }
            None => out.push(e.clone()),
        }
    }
    for e in set {
        let name = e["name"].as_str().unwrap_or("").to_string();
        if covered.contains(&name) {
            continue;
        }
        covered.push(name);
        out.push(e.clone());
    }
    out
}

/// How `--list` shows a `valueFrom` reference.
pub fn ref_string(from: &Value) -> String {
    if let Some(r) = from.get("configMapKeyRef") {
        return format!(
            "configmap {}, key {}",
            r["name"].as_str().unwrap_or(""),
            r["key"].as_str().unwrap_or("")
        );
    }
    if let Some(r) = from.get("secretKeyRef") {
        return format!(
            "secret {}, key {}",
            r["name"].as_str().unwrap_or(""),
            r["key"].as_str().unwrap_or("")
        );
    }
    if let Some(r) = from.get("fieldRef") {
        return format!("field path {}", r["fieldPath"].as_str().unwrap_or(""));
    }
    if let Some(r) = from.get("resourceFieldRef") {
        let container = match r["containerName"].as_str() {
            Some(c) if !c.is_empty() => format!("{c}/"),
            _ => String::new(),
        };
        return format!(
            "resource field {container}{}",
            r["resource"].as_str().unwrap_or("")
        );
    }
    "invalid valueFrom".to_string()
}

/// Runs `kubectl set env`.
pub async fn run(s: &mut Session, args: SetEnvArgs) -> Result<()> {
    let (resources, env_args) = split_args(&args.args)?;
    let dry_run = DryRun::parse(args.dry_run.as_deref())?;
    if args.filenames.is_empty() && resources.is_empty() {
        return Err(Error::Usage(
            "one or more resources must be specified as <resource> <name> or <resource>/<name>"
                .into(),
        ));
    }
    if args.list && args.output.is_some() {
        return Err(Error::Usage(
            "--list and --output may not be specified together".into(),
        ));
    }
    if !args.keys.is_empty() && args.from.is_none() {
        return Err(Error::Usage(
            "when specifying --keys, a configmap or secret must be provided with --from".into(),
        ));
    }
    let format = OutputFormat::parse(args.output.as_deref())?;
    let specs: Vec<String> = args.env.iter().chain(env_args.iter()).cloned().collect();
    let mut read_stdin = || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Error::io("reading STDIN", e))?;
        Ok(text)
    };
    let mut changes = parse_env(&specs, &mut read_stdin)?;
    if let Some(from) = &args.from {
        let imported = import_from(s, from, &args.keys).await?;
        changes.set.extend(imported);
    }
    if !args.prefix.is_empty() {
        for e in changes.set.iter_mut() {
            let name = format!("{}{}", args.prefix, e["name"].as_str().unwrap_or(""));
            e["name"] = Value::String(name);
        }
    }
    let selection = Selection {
        args: &resources,
        filenames: &args.filenames,
        all: args.all,
        selector: args.selector.as_deref(),
    };
    let found = fetch(s, &selection).await?;
    let sending = Sending {
        format: &format,
        dry_run,
        field_manager: &args.field_manager,
        operation: "env updated",
        failure: "failed to patch env update to pod template: ",
    };
    let mut resolver = match args.list && args.resolve {
        true => Some(Resolver::new(s.client().await?, s.namespace().await?)),
        false => None,
    };
    let mut errors = Vec::new();
    for item in found {
        let kind = item.object["kind"].as_str().unwrap_or("").to_string();
        let name = item.object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
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
            s.eprint(&format!(
                "Warning: {kind}/{name} does not have any containers matching \"{}\"\n",
                args.containers
            ))?;
            continue;
        }
        let mut listing = String::new();
        let mut listing_errors = Vec::new();
        let mut refused = None;
        for (field, index) in selected {
            let container = &mut spec[field][index];
            let existing: Vec<Value> = container["env"].as_array().cloned().unwrap_or_default();
            if !args.overwrite {
                if let Some(clash) = changes.set.iter().find_map(|e| {
                    existing
                        .iter()
                        .find(|x| x["name"] == e["name"] && x["value"] != e["value"])
                }) {
                    refused = Some(Error::Usage(format!(
                        "{}/{name} '{}' already has a value ({}), and --overwrite is false",
                        item.info.plural,
                        clash["name"].as_str().unwrap_or(""),
                        clash["value"].as_str().unwrap_or("")
                    )));
                    break;
                }
            }
            let updated = update_env(&existing, &changes.set, &changes.remove);
            if args.list {
                listing.push_str(&format!(
                    "# {kind} {name}, container {}\n",
                    container["name"].as_str().unwrap_or("")
                ));
                // Resolution errors of this container: message -> variable names.
                let mut unresolved: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for e in &updated {
                    let name = e["name"].as_str().unwrap_or("");
                    let Some(from) = e.get("valueFrom") else {
                        let value = e["value"].as_str().unwrap_or("");
                        listing.push_str(&format!("{name}={value}\n"));
                        continue;
                    };
                    if let Some(resolver) = resolver.as_mut() {
                        match resolver.value(from, &item.object, container).await {
                            Ok(value) => {
                                listing.push_str(&format!("{name}={value}\n"));
                                continue;
                            }
                            Err(error) => unresolved.entry(error).or_default().push(name.into()),
                        }
                    }
                    listing.push_str(&format!("# {name} from {}\n", ref_string(from)));
                }
                let mut messages: Vec<String> = unresolved
                    .into_iter()
                    .map(|(error, mut names)| {
                        names.sort();
                        let names = names.join(", ");
                        format!("error retrieving reference for {names}: {error}\n")
                    })
                    .collect();
                messages.sort();
                listing_errors.extend(messages);
            }
            if let Some(map) = container.as_object_mut() {
                if updated.is_empty() {
                    map.remove("env");
                } else {
                    map.insert("env".into(), Value::Array(updated));
                }
            }
        }
        if let Some(e) = refused {
            errors.push(e);
            continue;
        }
        if args.list {
            s.print(&listing)?;
            // Upstream reports what it could not resolve but still succeeds.
            for message in &listing_errors {
                s.eprint(message)?;
            }
            continue;
        }
        if let Err(e) = send_change(s, &item.info, &item.object, &after, &sending).await {
            errors.push(e);
        }
    }
    super::create::finish(errors)
}

/// The references `--from=configmap/NAME|secret/NAME` brings in (sorted by key), warning about
/// keys renamed to be valid variable names.
async fn import_from(s: &mut Session, from: &str, keys: &[String]) -> Result<Vec<Value>> {
    let client = s.client().await?;
    let catalog = s.catalog().await?.clone();
    let namespace = s.namespace().await?;
    let targets = parse_targets(&[from.to_string()])?;
    let mut out = Vec::new();
    for (info, names) in resolve_targets(&catalog, &targets)? {
        if names.is_empty() {
            return Err(Error::Usage(
                "resource(s) were provided, but no name was specified".into(),
            ));
        }
        for name in names {
            let object = get_object(&client, &info, Some(&namespace), &name).await?;
            let reference = match (info.group.as_str(), info.kind.as_str()) {
                ("", "Secret") => "secretKeyRef",
                ("", "ConfigMap") => "configMapKeyRef",
                _ => {
                    return Err(Error::Usage(
                        "unsupported resource specified in --from".into(),
                    ))
                }
            };
            let data = object["data"].as_object().cloned().unwrap_or_default();
            for key in data.keys() {
                if !keys.is_empty() && !keys.contains(key) {
                    continue;
                }
                let env_name = key_to_env_name(key);
                if env_name != *key {
                    s.eprint(&format!("Warning: key {key} transferred to {env_name}\n"))?;
                }
                out.push(json!({
                    "name": env_name,
                    "valueFrom": {reference: {"key": key, "name": name}}
                }));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn resources_come_before_environment() -> anyhow::Result<()> {
        let (r, e) = split_args(&strings(&["deploy/web", "A=1", "B-"]))?;
        assert_eq!((r, e), (strings(&["deploy/web"]), strings(&["A=1", "B-"])));
        let err = split_args(&strings(&["A=1", "deploy/web"]))
            .err()
            .map(|e| e.report());
        assert_eq!(
            err.as_deref(),
            Some(
                "error: all resources must be specified before environment changes: A=1 deploy/web"
            )
        );
        Ok(())
    }

    #[test]
    fn environment_arguments_parse_and_validate() -> anyhow::Result<()> {
        let mut no_stdin = || Ok(String::new());
        let changes = parse_env(&strings(&["A=1", "B=x=y", "C-"]), &mut no_stdin)?;
        assert_eq!(
            changes.set,
            vec![
                json!({"name": "A", "value": "1"}),
                json!({"name": "B", "value": "x=y"})
            ]
        );
        assert_eq!(changes.remove, strings(&["C"]));
        let bad = parse_env(&strings(&["1A=x"]), &mut no_stdin)
            .err()
            .map(|e| e.report());
        assert_eq!(
            bad,
            Some(format!(
                "error: \"1A\" is not a valid key name: {NAME_RULE}"
            ))
        );
        let both = parse_env(&strings(&["A=1", "A-"]), &mut no_stdin).err();
        assert!(both.is_some());
        let mut stdin = || Ok("X=1 # comment\n# only\nY=2\n".to_string());
        let read = parse_env(&strings(&["-"]), &mut stdin)?;
        assert_eq!(read.set.len(), 2);
        assert_eq!(read.set[0], json!({"name": "X", "value": "1 "}));
        Ok(())
    }

    #[test]
    fn updates_replace_in_place_and_append() {
        let existing = vec![
            json!({"name": "A", "value": "1"}),
            json!({"name": "B", "value": "2"}),
            json!({"name": "C", "value": "3"}),
        ];
        let set = vec![
            json!({"name": "D", "value": "4"}),
            json!({"name": "B", "value": "20"}),
        ];
        let out = update_env(&existing, &set, &strings(&["A"]));
        let names: Vec<&str> = out.iter().filter_map(|e| e["name"].as_str()).collect();
        assert_eq!(names, vec!["B", "C", "D"]);
        assert_eq!(out[0]["value"], "20");
    }

    #[test]
    fn keys_become_variable_names() {
        assert_eq!(key_to_env_name("b.c-d"), "B_C_D");
        assert_eq!(key_to_env_name("Mode_1"), "MODE_1");
        assert_eq!(
            ref_string(&json!({"configMapKeyRef": {"name": "cm", "key": "k"}})),
            "configmap cm, key k"
        );
        assert_eq!(
            ref_string(&json!({"fieldRef": {"fieldPath": "metadata.name"}})),
            "field path metadata.name"
        );
    }
}
