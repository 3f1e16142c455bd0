//! Command-line options of `kube-apiserver` (upstream flag names).

use std::net::IpAddr;
use std::path::PathBuf;

/// Which storage backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageBackend {
    /// Embedded SQLite (kine-style revision log).
    Sqlite,
    /// etcd v3.
    Etcd3,
}

/// `kube-apiserver` options.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "kube-apiserver", about = "The Kubernetes API server")]
pub struct Options {
    /// The port on which to serve HTTPS.
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// The IP address on which to listen for the --secure-port port.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// The IP address on which to advertise the apiserver to members of the cluster.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// File containing the default x509 certificate for HTTPS (CA cert, if any, concatenated after
    /// the server cert).
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: PathBuf,
    /// File containing the default x509 private key matching --tls-cert-file.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: PathBuf,
    /// If set, any request presenting a client certificate signed by one of the authorities in the
    /// client-ca-file is authenticated with an identity corresponding to the CommonName of the
    /// client certificate.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: PathBuf,
    /// The storage backend for persistence.
    #[arg(long = "storage-backend", value_enum, default_value = "sqlite")]
    pub storage_backend: StorageBackend,
    /// Path of the SQLite database (sqlite backend).
    #[arg(
        long = "sqlite-path",
        default_value = "/tmp/kube-local/apiserver/state.db"
    )]
    pub sqlite_path: PathBuf,
    /// List of etcd servers to connect with (scheme://ip:port), comma separated.
    #[arg(long = "etcd-servers", value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The prefix to prepend to all resource paths in etcd.
    #[arg(long = "etcd-prefix", default_value = "/registry")]
    pub etcd_prefix: String,
    /// A CIDR notation IP range from which to assign service cluster IPs.
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    /// A port range to reserve for services with NodePort visibility.
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Path to a client cert file for TLS to kubelets.
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<PathBuf>,
    /// Path to a client key file for TLS to kubelets.
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<PathBuf>,
    /// Path to a cert file for the certificate authority of kubelet serving certificates.
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// File containing PEM-encoded x509 RSA or ECDSA keys used to verify service account tokens
    /// (may be given several times).
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<PathBuf>,
    /// Path to the file that contains the current private key of the service account token issuer.
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// Ordered list of plug-ins to do authorization on the secure port: AlwaysAllow, AlwaysDeny,
    /// Node, RBAC.
    #[arg(
        long = "authorization-mode",
        value_delimiter = ',',
        default_value = "AlwaysAllow"
    )]
    pub authorization_mode: Vec<String>,
    /// admission plugins that should be enabled in addition to default enabled ones
    /// (NamespaceLifecycle, LimitRanger, ServiceAccount, PodSecurity, Priority,
    /// DefaultTolerationSeconds, ResourceQuota, ...). NodeRestriction is off by default.
    #[arg(long = "enable-admission-plugins", value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// admission plugins that should be disabled although they are in the default enabled
    /// plugins list.
    #[arg(long = "disable-admission-plugins", value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// Identifier of the service account token issuer.
    #[arg(long = "service-account-issuer")]
    pub service_account_issuer: Option<String>,
    /// Token authentication flags.
    #[command(flatten)]
    pub authn: crate::auth::AuthnOptions,
    /// Enable watch caching in the apiserver (`--watch-cache=false` serves lists and watches
    /// from storage).
    #[arg(
        long = "watch-cache",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub watch_cache: bool,
    /// The file containing configuration for encryption providers to be used for storing
    /// secrets in etcd (apiserver.config.k8s.io/v1 EncryptionConfiguration).
    #[arg(long = "encryption-provider-config")]
    pub encryption_provider_config: Option<PathBuf>,
    /// Path to the file that defines the audit policy configuration (audit.k8s.io/v1 Policy).
    #[arg(long = "audit-policy-file")]
    pub audit_policy_file: Option<PathBuf>,
    /// If set, all requests coming to the apiserver will be logged to this file. '-' means
    /// standard out.
    #[arg(long = "audit-log-path")]
    pub audit_log_path: Option<PathBuf>,
    /// The maximum size in megabytes of the audit log file before it gets rotated (0: never).
    #[arg(long = "audit-log-maxsize", default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// The maximum number of old audit log files to retain (0: all).
    #[arg(long = "audit-log-maxbackup", default_value_t = 0)]
    pub audit_log_maxbackup: usize,
}
