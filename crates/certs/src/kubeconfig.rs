//! Kubeconfig files with the CA, client certificate and client key embedded as base64 data, so a
//! kubeconfig is self-contained. The context is named after the cluster and is the current one.

use std::path::Path;

use base64::Engine;
use serde::Serialize;

use crate::files::{self, FileError};

/// Errors while writing a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Serializing to YAML failed.
    #[error("serializing kubeconfig: {0}")]
    Serialize(#[source] serde_yaml_ng::Error),
    /// Reading the certificates or writing the file failed.
    #[error(transparent)]
    File(#[from] FileError),
}

/// What goes into one kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec {
    /// Cluster name (and context name).
    pub cluster: String,
    /// User name inside the kubeconfig (informational; the apiserver uses the certificate's CN).
    pub user: String,
    /// Apiserver URL, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Client certificate, PEM.
    pub cert_pem: String,
    /// Client key, PEM.
    pub key_pem: String,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Config<'a> {
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, Cluster>; 1],
    users: [Named<'a, User>; 1],
    contexts: [Named<'a, Context<'a>>; 1],
    current_context: &'a str,
    preferences: Preferences,
}

#[derive(Serialize)]
struct Preferences {}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct Cluster {
    cluster: ClusterBody,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterBody {
    server: String,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct User {
    user: UserBody,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserBody {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextBody<'a>,
}

#[derive(Serialize)]
struct ContextBody<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// Renders `spec` as kubeconfig YAML.
pub fn render(spec: &KubeconfigSpec) -> Result<String, KubeconfigError> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let config = Config {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name: &spec.cluster,
            body: Cluster {
                cluster: ClusterBody {
                    server: spec.server.clone(),
                    certificate_authority_data: b64(&spec.ca_pem),
                },
            },
        }],
        users: [Named {
            name: &spec.user,
            body: User {
                user: UserBody {
                    client_certificate_data: b64(&spec.cert_pem),
                    client_key_data: b64(&spec.key_pem),
                },
            },
        }],
        contexts: [Named {
            name: &spec.cluster,
            body: Context {
                context: ContextBody {
                    cluster: &spec.cluster,
                    user: &spec.user,
                },
            },
        }],
        current_context: &spec.cluster,
        preferences: Preferences {},
    };
    serde_yaml_ng::to_string(&config).map_err(KubeconfigError::Serialize)
}

/// Where a kubeconfig's certificates come from and whom it names.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// Directory holding `ca.crt`.
    pub ca_dir: &'a Path,
    /// Directory holding `<name>.crt` and `<name>.key`.
    pub cert_dir: &'a Path,
    /// Base name of the client certificate.
    pub name: &'a str,
    /// Cluster and context name.
    pub cluster: &'a str,
    /// User name.
    pub user: &'a str,
    /// Apiserver URL.
    pub server: &'a str,
}

impl Sources<'_> {
    /// Reads the certificates into a [`KubeconfigSpec`].
    pub fn load(&self) -> Result<KubeconfigSpec, KubeconfigError> {
        let (cert_path, key_path) = crate::pki::pair_paths(self.cert_dir, self.name);
        Ok(KubeconfigSpec {
            cluster: self.cluster.to_string(),
            user: self.user.to_string(),
            server: self.server.to_string(),
            ca_pem: files::read(&self.ca_dir.join("ca.crt"))?,
            cert_pem: files::read(&cert_path)?,
            key_pem: files::read(&key_path)?,
        })
    }
}

/// Writes the kubeconfig described by `sources` to `out` (mode 0600, it embeds a key), unless `out`
/// already holds exactly that. Returns true when written.
pub fn write(sources: &Sources<'_>, out: &Path, force: bool) -> Result<bool, KubeconfigError> {
    let yaml = render(&sources.load()?)?;
    // Rendering is deterministic, so an up-to-date file is byte-identical; a stale one (new CA or
    // client certificate) is rewritten.
    if !force && out.exists() && files::read(out)? == yaml {
        tracing::info!(kubeconfig = %out.display(), "kubeconfig up to date, kept");
        return Ok(false);
    }
    files::write(out, yaml.as_bytes(), files::PRIVATE)?;
    tracing::info!(kubeconfig = %out.display(), user = sources.user, "kubeconfig written");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, CertSpec, Usage};

    #[test]
    fn rendered_kubeconfig_parses_as_a_kube_kubeconfig() {
        let ca = Ca::generate("ca").expect("ca");
        let pair = ca
            .issue(&CertSpec {
                name: "admin".into(),
                common_name: "kubernetes-admin".into(),
                organizations: vec!["system:masters".into()],
                sans: vec![],
                usage: Usage {
                    server: false,
                    client: true,
                },
            })
            .expect("issue");
        let yaml = render(&KubeconfigSpec {
            cluster: "local".into(),
            user: "system:node:vm".into(),
            server: "https://127.0.0.1:6443".into(),
            ca_pem: ca.cert_pem.clone(),
            cert_pem: pair.cert_pem.clone(),
            key_pem: pair.key_pem.clone(),
        })
        .expect("render");
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("kube parses it");
        assert_eq!(kc.current_context.as_deref(), Some("local"));
        let ctx = kc.contexts[0].context.as_ref().expect("context");
        assert_eq!(ctx.cluster, "local");
        assert_eq!(ctx.user.as_deref(), Some("system:node:vm"));
        let cluster = kc.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        let b64 = base64::engine::general_purpose::STANDARD;
        let ca_data = cluster
            .certificate_authority_data
            .as_deref()
            .expect("ca data");
        assert_eq!(b64.decode(ca_data).expect("b64"), ca.cert_pem.as_bytes());
        let user = kc.auth_infos[0].auth_info.as_ref().expect("user");
        assert_eq!(
            b64.decode(user.client_certificate_data.as_deref().expect("cert"))
                .expect("b64"),
            pair.cert_pem.as_bytes()
        );
        assert!(user.client_key_data.is_some());
    }
}
