//! The certificate layout of a local one-node cluster (see the cluster contracts): the CA, the
//! apiserver and kubelet serving certificates, the apiserver's kubelet client certificate, the
//! service-account key pair, and one client certificate plus kubeconfig per component.
//! What already exists and still matches is kept, so running it again is harmless.

use std::path::PathBuf;

use crate::kubeconfig::{self, KubeconfigError, Sources};
use crate::pki::{self, CertSpec, PkiError, Usage};

/// Errors while laying out a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// Creating a certificate or key failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Writing a kubeconfig failed.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
}

/// Inputs of the local cluster layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalCluster {
    /// State directory (`$KUBE_LOCAL_DIR`).
    pub dir: PathBuf,
    /// Node name (the kubelet's `--hostname-override`).
    pub node_name: String,
    /// Node IP (the kubelet's `--node-ip`, the apiserver's advertise address).
    pub node_ip: String,
    /// Apiserver URL written into the kubeconfigs.
    pub apiserver: String,
    /// Cluster (and context) name in the kubeconfigs.
    pub cluster_name: String,
}

/// The in-cluster IP of the `kubernetes` service (first address of 10.96.0.0/12).
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// One kubeconfig: file stem, certificate name, common name, organization.
struct Client {
    kubeconfig: &'static str,
    cert: &'static str,
    user: String,
    org: Option<&'static str>,
}

impl LocalCluster {
    /// Directory of certificates and keys.
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs")
    }

    /// The leaf certificates to issue (serving and client certificates that are files of their own).
    pub fn cert_specs(&self) -> Vec<CertSpec> {
        let mut apiserver_sans: Vec<String> = [
            "127.0.0.1",
            "localhost",
            self.node_ip.as_str(),
            KUBERNETES_SERVICE_IP,
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            self.node_name.as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut seen = std::collections::HashSet::new();
        apiserver_sans.retain(|s| seen.insert(s.clone()));
        let mut specs = vec![
            CertSpec {
                name: "apiserver".into(),
                common_name: "kube-apiserver".into(),
                organizations: vec![],
                sans: apiserver_sans,
                usage: Usage {
                    server: true,
                    client: false,
                },
            },
            CertSpec {
                name: "apiserver-kubelet-client".into(),
                common_name: "kube-apiserver-kubelet-client".into(),
                organizations: vec!["system:masters".into()],
                sans: vec![],
                usage: Usage {
                    server: false,
                    client: true,
                },
            },
            CertSpec {
                name: "kubelet".into(),
                common_name: self.node_name.clone(),
                organizations: vec![],
                sans: vec![
                    self.node_ip.clone(),
                    "127.0.0.1".into(),
                    self.node_name.clone(),
                    "localhost".into(),
                ],
                usage: Usage {
                    server: true,
                    client: false,
                },
            },
        ];
        specs.extend(self.clients().into_iter().map(|c| CertSpec {
            name: c.cert.into(),
            common_name: c.user,
            organizations: c.org.into_iter().map(String::from).collect(),
            sans: vec![],
            usage: Usage {
                server: false,
                client: true,
            },
        }));
        specs
    }

    fn clients(&self) -> Vec<Client> {
        let client = |kubeconfig, cert, user: &str, org| Client {
            kubeconfig,
            cert,
            user: user.to_string(),
            org,
        };
        vec![
            client("admin", "admin", "kubernetes-admin", Some("system:masters")),
            client("scheduler", "kube-scheduler", "system:kube-scheduler", None),
            client(
                "controller-manager",
                "kube-controller-manager",
                "system:kube-controller-manager",
                None,
            ),
            client(
                "kubelet",
                "kubelet-client",
                &format!("system:node:{}", self.node_name),
                Some("system:nodes"),
            ),
            client("kube-proxy", "kube-proxy", "system:kube-proxy", None),
            client("kube-dns", "kube-dns", "system:kube-dns", None),
        ]
    }

    /// Paths of the kubeconfigs this layout writes.
    pub fn kubeconfig_paths(&self) -> Vec<PathBuf> {
        self.clients()
            .iter()
            .map(|c| self.kubeconfig_path(c.kubeconfig))
            .collect()
    }

    fn kubeconfig_path(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}.kubeconfig"))
    }

    /// Generates whatever is missing.
    pub fn ensure(&self) -> Result<(), LocalClusterError> {
        let certs = self.certs_dir();
        let ca = pki::ensure_ca(&certs, "kubernetes-ca", false)?;
        for spec in self.cert_specs() {
            ca.issue_to(&spec, &certs, false)?;
        }
        pki::ensure_sa_key(&certs, false)?;
        for client in self.clients() {
            let sources = Sources {
                ca_dir: &certs,
                cert_dir: &certs,
                name: client.cert,
                cluster: &self.cluster_name,
                user: &client.user,
                server: &self.apiserver,
            };
            kubeconfig::write(&sources, &self.kubeconfig_path(client.kubeconfig), false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    use x509_parser::prelude::*;

    fn layout(dir: &Path) -> LocalCluster {
        LocalCluster {
            dir: dir.to_path_buf(),
            node_name: "node-a".into(),
            node_ip: "192.0.2.2".into(),
            apiserver: "https://127.0.0.1:6443".into(),
            cluster_name: "kubernetes".into(),
        }
    }

    fn cert_der(path: &Path) -> CertificateDer<'static> {
        let text = std::fs::read(path).expect("read cert");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("pem");
        CertificateDer::from(pem.contents)
    }

    fn key_der(path: &Path) -> PrivateKeyDer<'static> {
        let text = std::fs::read(path).expect("read key");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&text).expect("pem");
        PrivateKeyDer::Pkcs8(pem.contents.into())
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn roots(certs: &Path) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(cert_der(&certs.join("ca.crt")))
            .expect("add root");
        Arc::new(roots)
    }

    #[test]
    fn local_cluster_writes_the_contract_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = layout(dir.path());
        cluster.ensure().expect("ensure");
        let certs = cluster.certs_dir();
        for f in [
            "ca.crt",
            "ca.key",
            "apiserver.crt",
            "apiserver.key",
            "apiserver-kubelet-client.crt",
            "apiserver-kubelet-client.key",
            "kubelet.crt",
            "kubelet.key",
            "sa.key",
            "sa.pub",
        ] {
            assert!(certs.join(f).exists(), "{f} missing");
        }
        for k in [
            "admin",
            "scheduler",
            "controller-manager",
            "kubelet",
            "kube-proxy",
            "kube-dns",
        ] {
            let path = dir.path().join(format!("{k}.kubeconfig"));
            let text = std::fs::read_to_string(&path).expect("kubeconfig");
            kube::config::Kubeconfig::from_yaml(&text).expect("parses");
        }
        assert_eq!(cluster.kubeconfig_paths().len(), 6);
    }

    #[test]
    fn local_cluster_keeps_existing_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = layout(dir.path());
        cluster.ensure().expect("first");
        let before = std::fs::read(cluster.certs_dir().join("apiserver.crt")).expect("read");
        let kc_before = std::fs::read(dir.path().join("admin.kubeconfig")).expect("read");
        cluster.ensure().expect("second");
        let after = std::fs::read(cluster.certs_dir().join("apiserver.crt")).expect("read");
        let kc_after = std::fs::read(dir.path().join("admin.kubeconfig")).expect("read");
        assert_eq!(before, after);
        assert_eq!(kc_before, kc_after);
    }

    #[test]
    fn rustls_accepts_serving_and_client_pairs_against_the_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = layout(dir.path());
        cluster.ensure().expect("ensure");
        let certs = cluster.certs_dir();
        let now = UnixTime::now();

        let server_verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(&certs), provider())
                .build()
                .expect("server verifier");
        for (name, host) in [
            ("apiserver", "127.0.0.1"),
            ("apiserver", "192.0.2.2"),
            ("apiserver", "10.96.0.1"),
            ("apiserver", "kubernetes.default.svc.cluster.local"),
            ("kubelet", "192.0.2.2"),
            ("kubelet", "node-a"),
        ] {
            let leaf = cert_der(&certs.join(format!("{name}.crt")));
            let server_name = ServerName::try_from(host).expect("server name");
            server_verifier
                .verify_server_cert(&leaf, &[], &server_name, &[], now)
                .unwrap_or_else(|e| panic!("{name} for {host}: {e}"));
            // The key matches the certificate.
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_no_client_auth()
                .with_single_cert(vec![leaf], key_der(&certs.join(format!("{name}.key"))))
                .expect("server config accepts the pair");
        }

        let client_verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&certs), provider())
                .build()
                .expect("client verifier");
        for name in [
            "admin",
            "apiserver-kubelet-client",
            "kubelet-client",
            "kube-proxy",
            "kube-dns",
            "kube-scheduler",
            "kube-controller-manager",
        ] {
            let leaf = cert_der(&certs.join(format!("{name}.crt")));
            client_verifier
                .verify_client_cert(&leaf, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots(&certs))
                .with_client_auth_cert(vec![leaf], key_der(&certs.join(format!("{name}.key"))))
                .expect("client config accepts the pair");
        }

        // A client certificate must not pass as a server certificate.
        let admin = cert_der(&certs.join("admin.crt"));
        let name = ServerName::try_from("127.0.0.1").expect("name");
        assert!(server_verifier
            .verify_server_cert(&admin, &[], &name, &[], now)
            .is_err());
    }

    #[test]
    fn kubelet_client_certificate_names_the_node_and_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = layout(dir.path());
        cluster.ensure().expect("ensure");
        let der = cert_der(&cluster.certs_dir().join("kubelet-client.crt"));
        let (_, cert) = parse_x509_certificate(&der).expect("parse");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().expect("utf8").to_string())
            .collect();
        let o: Vec<_> = cert
            .subject()
            .iter_organization()
            .map(|a| a.as_str().expect("utf8").to_string())
            .collect();
        assert_eq!(cn, ["system:node:node-a"]);
        assert_eq!(o, ["system:nodes"]);
    }
}
