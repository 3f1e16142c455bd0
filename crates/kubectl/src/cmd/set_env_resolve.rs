//! `kubectl set env --list --resolve`: the values behind `valueFrom` references, resolved as
//! upstream's kubectl resolves them: keys of Secrets and ConfigMaps in the command's namespace
//! (each read once), field paths of the listed object's metadata, and resource fields of the
//! container (`0` for a resource the container does not set). A reference that cannot be resolved
//! keeps its `# NAME from ...` line and its error is reported on stderr (the command still
//! succeeds, as upstream's does).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use api_types::quantity::Quantity;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use serde_json::Value;

/// Resolves references against one namespace, remembering the Secrets and ConfigMaps it read.
pub struct Resolver {
    client: Client,
    namespace: String,
    secrets: HashMap<String, Secret>,
    config_maps: HashMap<String, ConfigMap>,
}

/// An API error as client-go's `err.Error()` renders it (the Status message alone).
fn api_error(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

impl Resolver {
    /// A resolver reading Secrets and ConfigMaps from `namespace`.
    pub fn new(client: Client, namespace: String) -> Self {
        Resolver {
            client,
            namespace,
            secrets: HashMap::new(),
            config_maps: HashMap::new(),
        }
    }

    /// The value of `from` (an `EnvVarSource`) for `container` of `object`, or why not.
    pub async fn value(
        &mut self,
        from: &Value,
        object: &Value,
        container: &Value,
    ) -> Result<String, String> {
        if let Some(r) = from.get("secretKeyRef") {
            let (name, key) = name_and_key(r);
            let secret = self.secret(name).await?;
            let data = secret.data.as_ref().and_then(|d| d.get(key));
            return match data {
                Some(bytes) => Ok(String::from_utf8_lossy(&bytes.0).into_owned()),
                None => Err(format!("key {key} not found in secret {name}")),
            };
        }
        if let Some(r) = from.get("configMapKeyRef") {
            let (name, key) = name_and_key(r);
            let map = self.config_map(name).await?;
            return match map.data.as_ref().and_then(|d| d.get(key)) {
                Some(value) => Ok(value.clone()),
                None => Err(format!("key {key} not found in config map {name}")),
            };
        }
        if let Some(r) = from.get("fieldRef") {
            return field_path_value(object, r["fieldPath"].as_str().unwrap_or(""));
        }
        if let Some(r) = from.get("resourceFieldRef") {
            return resource_field_value(r, container);
        }
        Err("invalid valueFrom".to_string())
    }

    async fn secret(&mut self, name: &str) -> Result<&Secret, String> {
        read_once(&self.client, &self.namespace, &mut self.secrets, name).await
    }

    async fn config_map(&mut self, name: &str) -> Result<&ConfigMap, String> {
        read_once(&self.client, &self.namespace, &mut self.config_maps, name).await
    }
}

/// Object `name` from `cache`, read from the apiserver the first time it is asked for.
async fn read_once<'a, K>(
    client: &Client,
    namespace: &str,
    cache: &'a mut HashMap<String, K>,
    name: &str,
) -> Result<&'a K, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    match cache.entry(name.to_string()) {
        Entry::Occupied(kept) => Ok(kept.into_mut()),
        Entry::Vacant(slot) => {
            let api: Api<K> = Api::namespaced(client.clone(), namespace);
            Ok(slot.insert(api.get(name).await.map_err(api_error)?))
        }
    }
}

fn name_and_key(reference: &Value) -> (&str, &str) {
    (
        reference["name"].as_str().unwrap_or(""),
        reference["key"].as_str().unwrap_or(""),
    )
}

/// A metadata field path of `object`: `metadata.name`, `.namespace`, `.uid`, `.labels` and
/// `.annotations` (all, as sorted `key="value"` lines, or one with `['key']`).
pub fn field_path_value(object: &Value, path: &str) -> Result<String, String> {
    let meta = &object["metadata"];
    let unsupported = || format!("unsupported fieldPath: {path}");
    if let Some((map, rest)) = path.split_once('[') {
        let field = match map {
            "metadata.labels" => "labels",
            "metadata.annotations" => "annotations",
            _ => return Err(unsupported()),
        };
        let key = rest
            .strip_suffix(']')
            .and_then(|k| k.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
            .ok_or_else(unsupported)?;
        return Ok(meta[field][key].as_str().unwrap_or("").to_string());
    }
    match path {
        "metadata.name" | "metadata.namespace" | "metadata.uid" => {
            let field = &path["metadata.".len()..];
            Ok(meta[field].as_str().unwrap_or("").to_string())
        }
        "metadata.labels" | "metadata.annotations" => {
            let field = &path["metadata.".len()..];
            let mut pairs: Vec<String> = meta[field]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            pairs.sort();
            Ok(pairs.join("\n"))
        }
        _ => Err(unsupported()),
    }
}

/// A resource field of `container` (`limits.cpu`, `requests.memory`...), divided by the
/// reference's divisor (default 1) and rounded up; a resource the container does not set is 0.
pub fn resource_field_value(reference: &Value, container: &Value) -> Result<String, String> {
    let resource = reference["resource"].as_str().unwrap_or("");
    let unsupported = || format!("unsupported container resource : {resource}");
    let (section, name) = resource.split_once('.').ok_or_else(unsupported)?;
    if !matches!(section, "limits" | "requests") {
        return Err(unsupported());
    }
    let cpu = match name {
        "cpu" => true,
        "memory" | "ephemeral-storage" => false,
        n if n.starts_with("hugepages-") => false,
        _ => return Err(unsupported()),
    };
    let parse = |text: &str| Quantity::parse(text).map_err(|e| e.to_string());
    let amount = match container["resources"][section][name].as_str() {
        Some(text) => parse(text)?,
        None => Quantity::from_milli(0),
    };
    let divisor = match reference["divisor"].as_str() {
        Some(text) if !parse(text)?.is_zero() => parse(text)?,
        _ => parse("1")?,
    };
    let (value, by) = if cpu {
        (amount.milli_value(), divisor.milli_value())
    } else {
        (amount.value(), divisor.value())
    };
    if by == 0 {
        return Err(unsupported());
    }
    // Ceiling division of non-negative amounts.
    Ok(((value + by - 1) / by).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_read_the_objects_metadata_as_upstream_formats_it() {
        let object = json!({"metadata": {
            "name": "two", "namespace": "default", "uid": "u-1",
            "labels": {"b": "2", "a": "1"},
            "annotations": {"note": "say \"hi\""}
        }});
        let cases = [
            ("metadata.name", Ok("two")),
            ("metadata.namespace", Ok("default")),
            ("metadata.uid", Ok("u-1")),
            ("metadata.labels", Ok("a=\"1\"\nb=\"2\"")),
            ("metadata.labels['b']", Ok("2")),
            ("metadata.labels['none']", Ok("")),
            ("metadata.annotations", Ok("note=\"say \\\"hi\\\"\"")),
            ("status.podIP", Err("unsupported fieldPath: status.podIP")),
            ("spec.nodeName", Err("unsupported fieldPath: spec.nodeName")),
        ];
        for (path, want) in cases {
            let got = field_path_value(&object, path);
            assert_eq!(
                got.as_deref(),
                want.map_err(str::to_string).as_deref(),
                "{path}"
            );
        }
    }

    #[test]
    fn resource_fields_divide_and_round_up() {
        let container = json!({"resources": {
            "limits": {"cpu": "1500m", "memory": "1Gi"},
            "requests": {"cpu": "250m", "memory": "100M"}
        }});
        let cases = [
            (json!({"resource": "limits.cpu"}), Ok("2")),
            (
                json!({"resource": "limits.cpu", "divisor": "1m"}),
                Ok("1500"),
            ),
            (
                json!({"resource": "requests.cpu", "divisor": "100m"}),
                Ok("3"),
            ),
            (json!({"resource": "limits.memory"}), Ok("1073741824")),
            (
                json!({"resource": "limits.memory", "divisor": "1Mi"}),
                Ok("1024"),
            ),
            (
                json!({"resource": "requests.memory", "divisor": "1Mi"}),
                Ok("96"),
            ),
            (json!({"resource": "requests.ephemeral-storage"}), Ok("0")),
            (
                json!({"resource": "limits.gpu"}),
                Err("unsupported container resource : limits.gpu"),
            ),
            (
                json!({"resource": "cpu"}),
                Err("unsupported container resource : cpu"),
            ),
        ];
        for (reference, want) in cases {
            let got = resource_field_value(&reference, &container);
            assert_eq!(
                got.as_deref(),
                want.map_err(str::to_string).as_deref(),
                "{reference}"
            );
        }
    }
}
