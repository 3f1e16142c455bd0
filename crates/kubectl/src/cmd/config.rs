//! `kubectl config view|current-context|get-contexts|use-context`, on the kubeconfig file itself.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::cli::{ConfigArgs, ConfigCommand, ConfigViewArgs};
use crate::error::{Error, Result};
use crate::printers::object::{to_json, to_yaml};
use crate::printers::tabwriter::align;
use crate::session::Session;

/// The kubeconfig file the flags name: `--kubeconfig`, the first `$KUBECONFIG` entry, or `~/.kube/config`.
pub fn kubeconfig_path(flag: Option<&str>) -> Option<PathBuf> {
    if let Some(path) = flag {
        return Some(PathBuf::from(path));
    }
    if let Ok(env) = std::env::var("KUBECONFIG") {
        if let Some(first) = env.split(':').find(|p| !p.is_empty()) {
            return Some(PathBuf::from(first));
        }
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube").join("config"))
}

fn load(s: &Session) -> Result<(PathBuf, Value)> {
    let path = kubeconfig_path(s.flags.kubeconfig.as_deref())
        .ok_or_else(|| Error::Kubeconfig("no kubeconfig file found".into()))?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let value: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::Kubeconfig(format!("parsing {}: {e}", path.display())))?
    };
    Ok((path, value))
}

/// What `config view` prints: defaults filled in, secrets redacted unless `raw`, only the
/// current context's pieces with `minify`.
pub fn view(
    config: &Value,
    args: &ConfigViewArgs,
    context_override: Option<&str>,
) -> Result<Value> {
    let mut out = config.clone();
    let map = out
        .as_object_mut()
        .ok_or_else(|| Error::Kubeconfig("kubeconfig is not a mapping".into()))?;
    map.entry("apiVersion").or_insert(json!("v1"));
    map.entry("kind").or_insert(json!("Config"));
    map.entry("preferences").or_insert(json!({}));
    map.entry("clusters").or_insert(json!(null));
    map.entry("contexts").or_insert(json!(null));
    map.entry("users").or_insert(json!(null));
    map.entry("current-context").or_insert(json!(""));
    if args.minify {
        let current = context_override
            .map(str::to_string)
            .or_else(|| map["current-context"].as_str().map(str::to_string))
            .unwrap_or_default();
        if current.is_empty() {
            return Err(Error::Kubeconfig(
                "current-context must exist in order to minify".into(),
            ));
        }
        let context = map["contexts"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["name"] == current.as_str()).cloned())
            .ok_or_else(|| Error::Kubeconfig(format!("cannot locate context {current}")))?;
        let keep = |list: &Value, name: &Value| -> Value {
            json!(list
                .as_array()
                .map(|l| l
                    .iter()
                    .filter(|e| e["name"] == *name)
                    .cloned()
                    .collect::<Vec<_>>())
                .unwrap_or_default())
        };
        map.insert(
            "clusters".into(),
            keep(&map["clusters"], &context["context"]["cluster"]),
        );
        map.insert(
            "users".into(),
            keep(&map["users"], &context["context"]["user"]),
        );
        map.insert("contexts".into(), json!([context]));
        map.insert("current-context".into(), json!(current));
    }
    if !args.raw {
        for cluster in map["clusters"].as_array_mut().into_iter().flatten() {
            redact(
                &mut cluster["cluster"],
                "certificate-authority-data",
                "DATA+OMITTED",
            );
        }
        for user in map["users"].as_array_mut().into_iter().flatten() {
            redact(&mut user["user"], "client-certificate-data", "DATA+OMITTED");
            redact(&mut user["user"], "client-key-data", "DATA+OMITTED");
            redact(&mut user["user"], "token", "REDACTED");
            redact(&mut user["user"], "password", "REDACTED");
        }
    }
    Ok(out)
}

/// Field order of upstream's kubeconfig structs, which `config view -o json` follows.
fn field_order(path: &str) -> &'static [&'static str] {
    match path {
        "" => &[
            "kind",
            "apiVersion",
            "preferences",
            "clusters",
            "users",
            "contexts",
            "current-context",
            "extensions",
        ],
        "clusters" => &["name", "cluster"],
        "clusters.cluster" => &[
            "server",
            "tls-server-name",
            "insecure-skip-tls-verify",
            "certificate-authority",
            "certificate-authority-data",
            "proxy-url",
            "disable-compression",
            "extensions",
        ],
        "users" => &["name", "user"],
        "users.user" => &[
            "client-certificate",
            "client-certificate-data",
            "client-key",
            "client-key-data",
            "token",
            "tokenFile",
            "as",
            "as-uid",
            "as-groups",
            "as-user-extra",
            "username",
            "password",
            "auth-provider",
            "exec",
            "extensions",
        ],
        "contexts" => &["name", "context"],
        "contexts.context" => &["cluster", "user", "namespace", "extensions"],
        _ => &[],
    }
}

/// A JSON value whose object keys keep a chosen order (serde_json's maps are sorted).
enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    Plain(Value),
}

impl serde::Serialize for Ordered {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Ordered::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Ordered::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Plain(v) => v.serialize(serializer),
        }
    }
}

fn ordered(value: &Value, path: &str) -> Ordered {
    match value {
        Value::Object(map) => {
            let order = field_order(path);
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    order.iter().position(|o| o == k).unwrap_or(order.len()),
                    (*k).clone(),
                )
            });
            Ordered::Object(
                keys.into_iter()
                    .map(|k| {
                        let child = if path.is_empty() {
                            k.clone()
                        } else {
                            format!("{path}.{k}")
                        };
                        (k.clone(), ordered(&map[k], &child))
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Ordered::Array(items.iter().map(|i| ordered(i, path)).collect()),
        other => Ordered::Plain(other.clone()),
    }
}

fn redact(section: &mut Value, key: &str, with: &str) {
    if let Some(map) = section.as_object_mut() {
        if map
            .get(key)
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        {
            map.insert(key.to_string(), json!(with));
        }
    }
}

/// Runs `kubectl config ...`.
pub async fn run(s: &mut Session, args: ConfigArgs) -> Result<()> {
    let (path, config) = load(s)?;
    let current = s
        .flags
        .context
        .clone()
        .or_else(|| config["current-context"].as_str().map(str::to_string))
        .unwrap_or_default();
    match args.command {
        ConfigCommand::View(view_args) => {
            let shown = view(&config, &view_args, s.flags.context.as_deref())?;
            let text = match view_args.output.as_str() {
                "json" => to_json(&ordered(&shown, ""))?,
                "yaml" => to_yaml(&shown)?,
                other if other.starts_with("jsonpath=") => {
                    let template = crate::printers::jsonpath::Template::parse(
                        other.trim_start_matches("jsonpath="),
                    )?;
                    template.render(&shown)
                }
                other => return Err(Error::Usage(format!("unsupported output format {other:?}"))),
            };
            s.print(&text)
        }
        ConfigCommand::CurrentContext => {
            let name = config["current-context"].as_str().unwrap_or("");
            if name.is_empty() {
                return Err(Error::Usage("current-context is not set".into()));
            }
            s.print(&format!("{name}\n"))
        }
        ConfigCommand::GetContexts(get_args) => {
            let mut contexts: Vec<&Value> = config["contexts"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            contexts.sort_by_key(|c| c["name"].as_str().unwrap_or(""));
            if let Some(wanted) = &get_args.name {
                if !contexts.iter().any(|c| c["name"] == wanted.as_str()) {
                    return Err(Error::Usage(format!("context {wanted} not found")));
                }
            }
            let shown = contexts.into_iter().filter(|c| {
                get_args
                    .name
                    .as_ref()
                    .is_none_or(|wanted| c["name"] == wanted.as_str())
            });
            if get_args.output.as_deref() == Some("name") {
                let names: String = shown
                    .map(|c| format!("{}\n", c["name"].as_str().unwrap_or("")))
                    .collect();
                return s.print(&names);
            }
            if let Some(other) = &get_args.output {
                return Err(Error::Usage(format!(
                    "output must be one of '' or 'name': {other}"
                )));
            }
            let mut rows = vec![];
            if !get_args.no_headers {
                rows.push(
                    ["CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE"]
                        .map(String::from)
                        .to_vec(),
                );
            }
            for c in shown {
                let name = c["name"].as_str().unwrap_or("");
                rows.push(vec![
                    if name == current {
                        "*".into()
                    } else {
                        String::new()
                    },
                    name.to_string(),
                    c["context"]["cluster"].as_str().unwrap_or("").to_string(),
                    c["context"]["user"].as_str().unwrap_or("").to_string(),
                    c["context"]["namespace"].as_str().unwrap_or("").to_string(),
                ]);
            }
            s.print(&align(&rows))
        }
        ConfigCommand::UseContext(use_args) => {
            let exists = config["contexts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == use_args.name.as_str());
            if !exists {
                return Err(Error::Usage(format!(
                    "no context exists with the name: \"{}\"",
                    use_args.name
                )));
            }
            let mut updated = config;
            updated["current-context"] = json!(use_args.name);
            let text = to_yaml(&updated)?;
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            s.print(&format!("Switched to context \"{}\".\n", use_args.name))
        }
        ConfigCommand::SetContext(a) => {
            let mut updated = config;
            let message = super::config_set::set_context(&mut updated, &s.flags, &a)?;
            save(&path, &updated)?;
            s.print(&message)
        }
        ConfigCommand::SetCluster(a) => {
            let mut updated = config;
            let message = super::config_set::set_cluster(&mut updated, &s.flags, &a)?;
            save(&path, &updated)?;
            s.print(&message)
        }
        ConfigCommand::SetCredentials(a) => {
            let mut updated = config;
            let message = super::config_set::set_credentials(&mut updated, &s.flags, &a)?;
            save(&path, &updated)?;
            s.print(&message)
        }
        ConfigCommand::DeleteContext(a) => delete(s, &path, config, "contexts", "context", &a),
        ConfigCommand::DeleteCluster(a) => delete(s, &path, config, "clusters", "cluster", &a),
        ConfigCommand::DeleteUser(a) => delete(s, &path, config, "users", "user", &a),
    }
}

fn delete(
    s: &mut Session,
    path: &std::path::Path,
    mut config: Value,
    key: &str,
    what: &str,
    args: &crate::cli::NameArg,
) -> Result<()> {
    let (warning, message) = super::config_set::delete(&mut config, path, key, what, args)?;
    save(path, &config)?;
    s.eprint(&warning)?;
    s.print(&message)
}

/// Writes the kubeconfig back (creating its directory, as upstream does for `~/.kube`).
fn save(path: &std::path::Path, config: &Value) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        map.entry("apiVersion").or_insert(json!("v1"));
        map.entry("kind").or_insert(json!("Config"));
    }
    std::fs::write(path, to_yaml(&config)?)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "local",
            "clusters": [{"name": "local", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}},
                         {"name": "other", "cluster": {"server": "https://x"}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}},
                         {"name": "o", "context": {"cluster": "other", "user": "admin"}}],
            "users": [{"name": "admin", "user": {"client-certificate-data": "Y2VydA==", "client-key-data": "a2V5"}}]
        })
    }

    fn args(minify: bool, raw: bool) -> ConfigViewArgs {
        ConfigViewArgs {
            minify,
            raw,
            output: "yaml".into(),
        }
    }

    #[test]
    fn view_redacts_secrets_like_upstream() -> anyhow::Result<()> {
        let text = to_yaml(&view(&kubeconfig(), &args(true, false), None)?)?;
        assert_eq!(
            text,
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: DATA+OMITTED\n    server: https://127.0.0.1:6443\n  name: local\ncontexts:\n- context:\n    cluster: local\n    user: admin\n  name: local\ncurrent-context: local\nkind: Config\npreferences: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: DATA+OMITTED\n    client-key-data: DATA+OMITTED\n"
        );
        Ok(())
    }

    #[test]
    fn raw_view_keeps_data_and_lists_everything() -> anyhow::Result<()> {
        let shown = view(&kubeconfig(), &args(false, true), None)?;
        assert_eq!(shown["users"][0]["user"]["client-key-data"], json!("a2V5"));
        assert_eq!(shown["clusters"].as_array().map(Vec::len), Some(2));
        Ok(())
    }
}
