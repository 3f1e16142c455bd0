//! The root CA certificate publisher: keeps a ConfigMap `kube-root-ca.crt` with key `ca.crt` =
//! the `--root-ca-file` PEM in every active namespace, and puts it back when it is changed or
//! deleted (upstream's root-ca-cert-publisher).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::informer::{Change, Informer};
use crate::queue::WorkQueue;
use crate::runner;

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// The key holding the CA bundle.
pub const DATA_KEY: &str = "ca.crt";
/// The description annotation upstream sets.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other \
usage is guaranteed across distributions of Kubernetes clusters.";

/// Why a namespace's ConfigMap could not be synced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Creating the ConfigMap failed.
    #[error("creating {CONFIG_MAP} in {namespace}: {source}")]
    Create {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Updating the ConfigMap failed.
    #[error("updating {CONFIG_MAP} in {namespace}: {source}")]
    Update {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

#[derive(Clone)]
struct Controller {
    ctx: Arc<Context>,
    namespaces: Informer<Namespace>,
    config_maps: Informer<ConfigMap>,
    ca: Arc<String>,
}

/// Starts the publisher with the CA bundle of the settings (idle when there is none).
pub fn start(ctx: Arc<Context>) {
    match ctx.settings.root_ca.clone() {
        Some(ca) => start_with(ctx, ca),
        None => tracing::warn!(
            "no --root-ca-file and no kubeconfig CA; not publishing kube-root-ca.crt"
        ),
    }
}

/// The certificate authority (PEM) of the kubeconfig's current context's cluster, as upstream
/// falls back to when `--root-ca-file` is not given.
pub fn kubeconfig_ca(path: &std::path::Path) -> Option<String> {
    use base64::Engine as _;
    let config = kube::config::Kubeconfig::read_from(path).ok()?;
    let context_name = config.current_context.as_deref()?;
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)?
        .context
        .as_ref()?
        .cluster
        .clone();
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)?
        .cluster
        .as_ref()?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    let file = cluster.certificate_authority.as_deref()?;
    let file = std::path::Path::new(file);
    let file = if file.is_relative() {
        path.parent().map(|dir| dir.join(file))?
    } else {
        file.to_path_buf()
    };
    std::fs::read_to_string(file).ok()
}

/// Starts the publisher with the CA bundle `ca`.
pub fn start_with(ctx: Arc<Context>, ca: String) {
    let controller = Controller {
        namespaces: ctx.informers.get::<Namespace>(),
        config_maps: ctx.informers.get::<ConfigMap>(),
        ca: Arc::new(ca),
        ctx,
    };
    let queue: WorkQueue<String> = WorkQueue::new();
    tokio::spawn(async move {
        controller.namespaces.ready().await;
        controller.config_maps.ready().await;
        runner::forward(
            &controller.namespaces,
            queue.clone(),
            |change| match change {
                Change::Applied { new, .. } => vec![new.name_any()],
                _ => Vec::new(),
            },
        );
        runner::forward(
            &controller.config_maps,
            queue.clone(),
            |change| match change {
                Change::Applied { new, .. } if new.name_any() == CONFIG_MAP => {
                    vec![new.namespace().unwrap_or_default()]
                }
                Change::Deleted(old) if old.name_any() == CONFIG_MAP => {
                    vec![old.namespace().unwrap_or_default()]
                }
                _ => Vec::new(),
            },
        );
        let worker = controller.clone();
        runner::spawn_workers("root-ca-cert-publisher", queue, 1, move |namespace| {
            let worker = worker.clone();
            async move { worker.reconcile(namespace).await }
        });
    });
}

/// The data the ConfigMap must hold.
pub fn desired_data(ca: &str) -> BTreeMap<String, String> {
    [(DATA_KEY.to_string(), ca.to_string())].into()
}

impl Controller {
    async fn reconcile(&self, namespace: String) -> Result<Option<std::time::Duration>, Error> {
        let Some(ns) = self.namespaces.get(None, &namespace) else {
            return Ok(None);
        };
        let active = ns.metadata.deletion_timestamp.is_none()
            && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating");
        if !active {
            return Ok(None);
        }
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let data = desired_data(&self.ca);
        match self.config_maps.get(Some(&namespace), CONFIG_MAP) {
            None => {
                let config_map = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(CONFIG_MAP.into()),
                        namespace: Some(namespace.clone()),
                        annotations: Some(
                            [(
                                "kubernetes.io/description".to_string(),
                                DESCRIPTION.to_string(),
                            )]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                match api.create(&PostParams::default(), &config_map).await {
                    Ok(_) => Ok(None),
                    // Already there (cache lag) or the namespace is going away.
                    Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => {
                        Ok(None)
                    }
                    Err(source) => Err(Error::Create { namespace, source }),
                }
            }
            Some(existing) if existing.data.as_ref() != Some(&data) => {
                let mut updated = (*existing).clone();
                updated.data = Some(data);
                updated.binary_data = None;
                api.replace(CONFIG_MAP, &PostParams::default(), &updated)
                    .await
                    .map_err(|source| Error::Update { namespace, source })?;
                Ok(None)
            }
            Some(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_published_under_ca_crt() {
        let data = desired_data("-----BEGIN CERTIFICATE-----\n");
        assert_eq!(
            data.get("ca.crt").map(String::as_str),
            Some("-----BEGIN CERTIFICATE-----\n")
        );
        assert_eq!(data.len(), 1);
    }

    #[test]
    fn the_kubeconfig_ca_is_the_fallback() -> anyhow::Result<()> {
        use base64::Engine as _;
        let pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        let path = std::env::temp_dir().join(format!("kcm-kubeconfig-{}", std::process::id()));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {encoded}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )?;
        let found = kubeconfig_ca(&path);
        std::fs::remove_file(&path)?;
        assert_eq!(found.as_deref(), Some(pem));
        Ok(())
    }
}
