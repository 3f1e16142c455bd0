//! Container environment as upstream builds it: the service link variables
//! (`KUBERNETES_SERVICE_HOST`, `WEB_PORT_80_TCP`...), then `envFrom`, then `env` (with
//! `$(VAR)` expansion and `valueFrom` field, configMap and secret references).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};

/// The API objects a pod's environment and volumes refer to, fetched before containers start.
#[derive(Debug, Clone, Default)]
pub struct PodSources {
    /// ConfigMaps of the pod's namespace by name (missing ones are absent).
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets of the pod's namespace by name.
    pub secrets: BTreeMap<String, Secret>,
    /// Services visible to the pod (its namespace, plus `kubernetes` in `default`).
    pub services: Vec<Service>,
}

/// Values known only at run time: the addresses of the pod and the node.
#[derive(Debug, Clone, Default)]
pub struct RuntimeFields {
    /// The node's IP.
    pub host_ip: String,
    /// The pod's IP (empty before networking).
    pub pod_ip: String,
}

/// Why the environment could not be built: shown as `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A referenced ConfigMap does not exist.
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    /// A referenced Secret does not exist.
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    /// A referenced key is missing from a ConfigMap.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        /// Namespace.
        namespace: String,
        /// ConfigMap name.
        name: String,
        /// The key.
        key: String,
    },
    /// A referenced key is missing from a Secret.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        /// Namespace.
        namespace: String,
        /// Secret name.
        name: String,
        /// The key.
        key: String,
    },
    /// A fieldRef names a field that is not supported.
    #[error("unsupported fieldPath: {0}")]
    FieldPath(String),
}

/// The value of a downward-API field path (`metadata.name`, `metadata.labels['app']`,
/// `status.podIP`...).
pub fn field_value(pod: &Pod, fields: &RuntimeFields, path: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => render_map(meta.labels.as_ref()),
        "metadata.annotations" => render_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => fields.host_ip.clone(),
        "status.podIP" | "status.podIPs" => fields.pod_ip.clone(),
        other => return Err(EnvError::FieldPath(other.to_string())),
    })
}

fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    rest.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn render_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// The Docker-link style variables for the services a pod sees.
pub fn service_env(services: &[Service]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<&Service> = services.iter().collect();
    sorted.sort_by_key(|s| s.metadata.name.clone());
    for service in sorted {
        let Some(spec) = service.spec.as_ref() else {
            continue;
        };
        let Some(ip) = spec.cluster_ip.as_deref() else {
            continue;
        };
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        let name = service
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .to_uppercase()
            .replace('-', "_");
        out.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        out.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        for port in &ports {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let port_name = port_name.to_uppercase().replace('-', "_");
                out.push((
                    format!("{name}_SERVICE_PORT_{port_name}"),
                    port.port.to_string(),
                ));
            }
        }
        let first_proto = first.protocol.as_deref().unwrap_or("TCP").to_lowercase();
        out.push((
            format!("{name}_PORT"),
            format!("{first_proto}://{ip}:{}", first.port),
        ));
        for port in &ports {
            let proto_upper = port.protocol.as_deref().unwrap_or("TCP").to_uppercase();
            let proto = proto_upper.to_lowercase();
            let prefix = format!("{name}_PORT_{}_{proto_upper}", port.port);
            out.push((prefix.clone(), format!("{proto}://{ip}:{}", port.port)));
            out.push((format!("{prefix}_PROTO"), proto.clone()));
            out.push((format!("{prefix}_PORT"), port.port.to_string()));
            out.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// Expands `$(VAR)` references against `vars`; `$$` escapes a `$`; unknown references stay.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'(' {
                if let Some(close) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + close];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => out.push_str(&input[i..i + 3 + close]),
                    }
                    i += 3 + close;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(n, _)| *n == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name, value)),
    }
}

fn secret_string(secret: &Secret, key: &str) -> Option<String> {
    if let Some(data) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&data.0).to_string());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// The full environment of `container` in `pod`.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &PodSources,
    fields: &RuntimeFields,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut env: Vec<(String, String)> = service_env(&sources.services);

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(reference) = &from.config_map_ref {
            let name = reference.name.clone();
            match sources.config_maps.get(&name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        set(&mut env, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(name)),
            }
        }
        if let Some(reference) = &from.secret_ref {
            let name = reference.name.clone();
            match sources.secrets.get(&name) {
                Some(secret) => {
                    for (k, v) in secret.data.iter().flatten() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).to_string(),
                        );
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(name)),
            }
        }
    }

    for var in container.env.iter().flatten() {
        let defined: BTreeMap<String, String> = env.iter().cloned().collect();
        let value = if let Some(value) = &var.value {
            expand(value, &defined)
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(pod, fields, &field.field_path)?
            } else if let Some(key_ref) = &from.config_map_key_ref {
                let optional = key_ref.optional == Some(true);
                match sources.config_maps.get(&key_ref.name) {
                    None if optional => continue,
                    None => return Err(EnvError::ConfigMapNotFound(key_ref.name.clone())),
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&key_ref.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                namespace: namespace.clone(),
                                name: key_ref.name.clone(),
                                key: key_ref.key.clone(),
                            })
                        }
                    },
                }
            } else if let Some(key_ref) = &from.secret_key_ref {
                let optional = key_ref.optional == Some(true);
                match sources.secrets.get(&key_ref.name) {
                    None if optional => continue,
                    None => return Err(EnvError::SecretNotFound(key_ref.name.clone())),
                    Some(secret) => match secret_string(secret, &key_ref.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                namespace: namespace.clone(),
                                name: key_ref.name.clone(),
                                key: key_ref.key.clone(),
                            })
                        }
                    },
                }
            } else if let Some(resource) = &from.resource_field_ref {
                resource_value(container, &resource.resource)
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// `resourceFieldRef` basics: the container's own request or limit as written (else "0").
fn resource_value(container: &Container, resource: &str) -> String {
    let resources = container.resources.as_ref();
    let (which, name) = resource.split_once('.').unwrap_or(("", resource));
    let map = match which {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => None,
    };
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar, EnvVarSource,
        ObjectFieldSelector, PodSpec, SecretKeySelector, ServicePort, ServiceSpec,
    };
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                uid: Some("u-1".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-0".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(name: &str, ip: &str, ports: &[(Option<&str>, i32)]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p)| ServicePort {
                            name: n.map(str::to_string),
                            port: *p,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn service_env_matches_upstream_names() {
        let env = service_env(&[service("kubernetes", "10.96.0.1", &[(Some("https"), 443)])]);
        assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(get(&env, "KUBERNETES_PORT"), Some("tcp://10.96.0.1:443"));
        assert_eq!(
            get(&env, "KUBERNETES_PORT_443_TCP"),
            Some("tcp://10.96.0.1:443")
        );
        assert_eq!(get(&env, "KUBERNETES_PORT_443_TCP_PROTO"), Some("tcp"));
        assert_eq!(get(&env, "KUBERNETES_PORT_443_TCP_PORT"), Some("443"));
        assert_eq!(get(&env, "KUBERNETES_PORT_443_TCP_ADDR"), Some("10.96.0.1"));
        let headless = service_env(&[service("my-db", "None", &[(None, 5432)])]);
        assert!(headless.is_empty());
        let dashed = service_env(&[service("my-web", "10.96.0.7", &[(None, 80)])]);
        assert_eq!(get(&dashed, "MY_WEB_SERVICE_HOST"), Some("10.96.0.7"));
    }

    #[test]
    fn env_resolves_values_fields_config_maps_and_secrets() {
        let container = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cfg".into(),
                    optional: None,
                }),
                prefix: Some("CFG_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                var("GREETING", "hello"),
                var("MSG", "$(GREETING) world $$(NOT) $(MISSING)"),
                EnvVar {
                    name: "POD_NAME".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "POD_IP".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "status.podIP".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "APP".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.labels['app']".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "COLOR".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "cfg".into(),
                            key: "color".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "PASSWORD".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "creds".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
            ]),
            ..Default::default()
        };
        let mut sources = PodSources::default();
        sources.config_maps.insert(
            "cfg".into(),
            ConfigMap {
                data: Some([("color".to_string(), "blue".to_string())].into()),
                ..Default::default()
            },
        );
        sources.secrets.insert(
            "creds".into(),
            Secret {
                data: Some([("password".to_string(), ByteString(b"s3cret".to_vec()))].into()),
                ..Default::default()
            },
        );
        sources.services = vec![service("kubernetes", "10.96.0.1", &[(Some("https"), 443)])];
        let fields = RuntimeFields {
            host_ip: "192.0.2.2".into(),
            pod_ip: "10.244.0.5".into(),
        };
        let env = container_env(&pod(), &container, &sources, &fields).expect("env");
        assert_eq!(get(&env, "MSG"), Some("hello world $(NOT) $(MISSING)"));
        assert_eq!(get(&env, "POD_NAME"), Some("web-1"));
        assert_eq!(get(&env, "POD_IP"), Some("10.244.0.5"));
        assert_eq!(get(&env, "APP"), Some("web"));
        assert_eq!(get(&env, "COLOR"), Some("blue"));
        assert_eq!(get(&env, "CFG_color"), Some("blue"));
        assert_eq!(get(&env, "PASSWORD"), Some("s3cret"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
    }

    #[test]
    fn missing_references_give_upstream_messages() {
        let container = Container {
            name: "c".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "nope".into(),
                        key: "k".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        let err = container_env(
            &pod(),
            &container,
            &PodSources::default(),
            &RuntimeFields::default(),
        )
        .expect_err("missing configmap");
        assert_eq!(err.to_string(), "configmap \"nope\" not found");
        let mut sources = PodSources::default();
        sources
            .config_maps
            .insert("nope".into(), ConfigMap::default());
        let err = container_env(&pod(), &container, &sources, &RuntimeFields::default())
            .expect_err("missing key");
        assert_eq!(
            err.to_string(),
            "couldn't find key k in ConfigMap default/nope"
        );
    }
}
