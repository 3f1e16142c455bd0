//! `kubectl config set-context|set-cluster|set-credentials|delete-context|delete-cluster|
//! delete-user`: edits of the kubeconfig file, with upstream's messages. The values come from
//! the global connection flags (`--cluster`, `--user`, `--namespace`, `--server`, `--token`...),
//! as upstream's flags are shared the same way.

use std::path::Path;

use serde_json::{json, Map, Value};

use crate::cli::{GlobalFlags, NameArg, SetClusterArgs, SetContextArgs, SetCredentialsArgs};
use crate::error::{Error, Result};

/// The entry named `name` of list `key` (`clusters`, `users`, `contexts`), created when missing;
/// returns whether it existed and its inner map (`cluster`, `user`, `context`).
fn entry<'a>(
    config: &'a mut Value,
    key: &str,
    inner: &str,
    name: &str,
) -> (bool, &'a mut Map<String, Value>) {
    if !config[key].is_array() {
        config[key] = json!([]);
    }
    let list = config[key].as_array_mut().expect("just made an array");
    let position = list.iter().position(|e| e["name"] == name);
    let existed = position.is_some();
    let index = match position {
        Some(i) => i,
        None => {
            list.push(json!({"name": name, inner: {}}));
            list.len() - 1
        }
    };
    let item = &mut list[index];
    if !item[inner].is_object() {
        item[inner] = json!({});
    }
    let map = item[inner].as_object_mut().expect("just made an object");
    (existed, map)
}

fn set(map: &mut Map<String, Value>, key: &str, value: Option<&String>) {
    if let Some(v) = value {
        if v.is_empty() {
            map.remove(key);
        } else {
            map.insert(key.to_string(), json!(v));
        }
    }
}

fn read_base64(path: &str) -> Result<String> {
    use base64::Engine;
    let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {path}"), e))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `config set-context`: prints `Context "x" created.` or `... modified.`.
pub fn set_context(
    config: &mut Value,
    flags: &GlobalFlags,
    args: &SetContextArgs,
) -> Result<String> {
    let name = match (&args.name, args.current) {
        (Some(_), true) => {
            return Err(Error::Usage(
                "you cannot specify both a context name and --current".into(),
            ))
        }
        (Some(name), false) => name.clone(),
        (None, true) => {
            let current = config["current-context"].as_str().unwrap_or("").to_string();
            if current.is_empty() {
                return Err(Error::Usage("no current context is set".into()));
            }
            current
        }
        (None, false) => {
            return Err(Error::Usage(
                "you must specify a non-empty context name or --current".into(),
            ))
        }
    };
    let (existed, map) = entry(config, "contexts", "context", &name);
    set(map, "cluster", flags.cluster.as_ref());
    set(map, "user", flags.user.last());
    set(map, "namespace", flags.namespace.as_ref());
    Ok(format!(
        "Context \"{name}\" {}.\n",
        if existed { "modified" } else { "created" }
    ))
}

/// `config set-cluster`: prints `Cluster "x" set.`.
pub fn set_cluster(
    config: &mut Value,
    flags: &GlobalFlags,
    args: &SetClusterArgs,
) -> Result<String> {
    let ca_data = match (&flags.certificate_authority, args.embed_certs) {
        (Some(path), true) => Some(read_base64(path)?),
        _ => None,
    };
    let (_, map) = entry(config, "clusters", "cluster", &args.name);
    set(map, "server", flags.server.as_ref());
    set(map, "tls-server-name", flags.tls_server_name.as_ref());
    if let Some(data) = ca_data {
        map.remove("certificate-authority");
        map.insert("certificate-authority-data".into(), json!(data));
    } else if let Some(path) = &flags.certificate_authority {
        map.remove("certificate-authority-data");
        map.insert("certificate-authority".into(), json!(path));
    }
    if let Some(insecure) = flags.insecure_skip_tls_verify {
        if insecure {
            map.insert("insecure-skip-tls-verify".into(), json!(true));
        } else {
            map.remove("insecure-skip-tls-verify");
        }
    }
    Ok(format!("Cluster \"{}\" set.\n", args.name))
}

/// `config set-credentials`: prints `User "x" set.`.
pub fn set_credentials(
    config: &mut Value,
    flags: &GlobalFlags,
    args: &SetCredentialsArgs,
) -> Result<String> {
    let embedded = if args.embed_certs {
        let cert = flags
            .client_certificate
            .as_deref()
            .map(read_base64)
            .transpose()?;
        let key = flags.client_key.as_deref().map(read_base64).transpose()?;
        Some((cert, key))
    } else {
        None
    };
    let (_, map) = entry(config, "users", "user", &args.name);
    set(map, "token", flags.token.as_ref());
    set(map, "username", flags.username.as_ref());
    set(map, "password", flags.password.as_ref());
    match embedded {
        Some((cert, key)) => {
            if let Some(cert) = cert {
                map.remove("client-certificate");
                map.insert("client-certificate-data".into(), json!(cert));
            }
            if let Some(key) = key {
                map.remove("client-key");
                map.insert("client-key-data".into(), json!(key));
            }
        }
        None => {
            set(map, "client-certificate", flags.client_certificate.as_ref());
            set(map, "client-key", flags.client_key.as_ref());
        }
    }
    Ok(format!("User \"{}\" set.\n", args.name))
}

/// `config delete-context|delete-cluster|delete-user`: prints `deleted context x from FILE`
/// (and upstream's warning on stderr when the current context goes).
pub fn delete(
    config: &mut Value,
    path: &Path,
    key: &str,
    what: &str,
    args: &NameArg,
) -> Result<(String, String)> {
    let list = config[key].as_array_mut();
    let Some(list) = list.filter(|l| l.iter().any(|e| e["name"] == args.name.as_str())) else {
        return Err(Error::Usage(format!(
            "cannot delete {what} {}, not in {}",
            args.name,
            path.display()
        )));
    };
    list.retain(|e| e["name"] != args.name.as_str());
    let mut warning = String::new();
    if key == "contexts" && config["current-context"] == args.name.as_str() {
        warning = "warning: this removed your active context, use \"kubectl config use-context\" to select a different one\n".into();
    }
    let out = format!("deleted {what} {} from {}\n", args.name, path.display());
    Ok((warning, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_context_creates_then_modifies() -> anyhow::Result<()> {
        let mut config = json!({"contexts": [], "current-context": ""});
        let flags = GlobalFlags {
            cluster: Some("c".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        };
        let args = SetContextArgs {
            name: Some("x".into()),
            current: false,
        };
        assert_eq!(
            set_context(&mut config, &flags, &args)?,
            "Context \"x\" created.\n"
        );
        assert_eq!(
            set_context(&mut config, &flags, &args)?,
            "Context \"x\" modified.\n"
        );
        assert_eq!(
            config["contexts"],
            json!([{"name": "x", "context": {"cluster": "c", "namespace": "ns"}}])
        );
        Ok(())
    }

    #[test]
    fn deleting_a_missing_context_names_the_file() {
        let mut config = json!({"contexts": []});
        let err = delete(
            &mut config,
            Path::new("/k"),
            "contexts",
            "context",
            &NameArg { name: "x".into() },
        )
        .err()
        .map(|e| e.report());
        assert_eq!(
            err.as_deref(),
            Some("error: cannot delete context x, not in /k")
        );
    }
}
