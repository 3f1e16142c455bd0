//! Command-line options of the kubelet, with the upstream flag names.

use std::net::IpAddr;
use std::path::PathBuf;

/// The kubelet's flags (upstream names; see `kubelet --help`).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "kubelet",
    about = "The node agent: runs the pods bound to this node"
)]
pub struct Options {
    /// Path to a kubeconfig file with the kubelet's credentials for the apiserver.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The node name (defaults to the host name).
    #[arg(long = "hostname-override")]
    pub hostname_override: Option<String>,
    /// The node's IP address (defaults to the default-route interface address).
    #[arg(long = "node-ip")]
    pub node_ip: Option<IpAddr>,
    /// The container runtime endpoint, e.g. `unix:///run/containerd/containerd.sock`.
    #[arg(
        long = "container-runtime-endpoint",
        default_value = "unix:///run/containerd/containerd.sock"
    )]
    pub container_runtime_endpoint: String,
    /// Directory for the kubelet's files (pods, CNI config and state).
    #[arg(long = "root-dir", default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// Directory for container log files (`<ns>_<pod>_<uid>/<container>/<n>.log`).
    #[arg(long = "pod-logs-dir", default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// Directory of OCI image archives to import into the runtime at start.
    #[arg(long = "image-archive-dir")]
    pub image_archive_dir: Option<PathBuf>,
    /// Directory holding the CNI plugin binaries.
    #[arg(long = "cni-bin-dir", default_value = "/usr/lib/cni")]
    pub cni_bin_dir: PathBuf,
    /// Cluster DNS server IP written into the pods' resolv.conf.
    #[arg(long = "cluster-dns", value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster DNS domain.
    #[arg(long = "cluster-domain", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Port of the kubelet API (HTTPS).
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// Address the kubelet API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// Serving certificate of the kubelet API.
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key of the kubelet API serving certificate.
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that client certificates of kubelet API callers are verified against.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Port of the plain `/healthz` endpoint on 127.0.0.1 (0 disables it).
    #[arg(long = "healthz-port", default_value_t = 10248)]
    pub healthz_port: u16,
    /// Address of the plain `/healthz` endpoint.
    #[arg(long = "healthz-bind-address", default_value = "127.0.0.1")]
    pub healthz_bind_address: IpAddr,
    /// Use the TokenReview API to determine authentication for bearer tokens on the kubelet API.
    #[arg(long = "authentication-token-webhook", action = clap::ArgAction::Set, num_args = 0..=1,
        default_value_t = false, default_missing_value = "true")]
    pub authentication_token_webhook: bool,
    /// Authorization mode for the kubelet API: AlwaysAllow or Webhook (SubjectAccessReview).
    #[arg(long = "authorization-mode", value_enum, default_value = "AlwaysAllow")]
    pub authorization_mode: crate::server::auth::AuthorizationMode,
    /// Maximum number of pods on this node.
    #[arg(long = "max-pods", default_value_t = 110)]
    pub max_pods: u32,
    /// Image filesystem usage (percent) at which image garbage collection starts.
    #[arg(long = "image-gc-high-threshold", default_value_t = 85)]
    pub image_gc_high_threshold: u8,
    /// Image filesystem usage (percent) image garbage collection frees down to.
    #[arg(long = "image-gc-low-threshold", default_value_t = 80)]
    pub image_gc_low_threshold: u8,
    /// Minimum age of an unused image before image garbage collection may delete it.
    #[arg(long = "minimum-image-ttl-duration", default_value = "2m",
        value_parser = component_base::leaderelection::parse_duration)]
    pub minimum_image_ttl_duration: std::time::Duration,
    /// How often the node status is computed, and posted if it changed (a duration: `10s`).
    #[arg(long = "node-status-update-frequency", default_value = "10s",
        value_parser = component_base::leaderelection::parse_duration)]
    pub node_status_update_frequency: std::time::Duration,
    /// How often the node status is posted when it did not change (a duration: `5m`); any
    /// change is posted at the next `--node-status-update-frequency` tick.
    #[arg(long = "node-status-report-frequency", default_value = "5m",
        value_parser = component_base::leaderelection::parse_duration)]
    pub node_status_report_frequency: std::time::Duration,
    /// Directory of static pod manifests (YAML or JSON Pods) run without the apiserver.
    #[arg(long = "pod-manifest-path")]
    pub pod_manifest_path: Option<PathBuf>,
    /// How often `--pod-manifest-path` is rescanned.
    #[arg(long = "file-check-frequency", default_value = "20s",
        value_parser = component_base::leaderelection::parse_duration)]
    pub file_check_frequency: std::time::Duration,
    /// Hard eviction thresholds (`signal<quantity|percent%`, comma-separated; empty disables).
    #[arg(long = "eviction-hard",
        default_value = crate::node::eviction::DEFAULT_EVICTION_HARD)]
    pub eviction_hard: String,
    /// Soft eviction thresholds (`signal<quantity|percent%`, comma-separated), met once
    /// crossed for their `--eviction-soft-grace-period`.
    #[arg(long = "eviction-soft", default_value = "")]
    pub eviction_soft: String,
    /// Grace periods of the soft thresholds (`signal=duration`, comma-separated).
    #[arg(long = "eviction-soft-grace-period", default_value = "")]
    pub eviction_soft_grace_period: String,
    /// The longest grace period (seconds) a pod evicted under a soft threshold gets.
    #[arg(long = "eviction-max-pod-grace-period", default_value_t = 0)]
    pub eviction_max_pod_grace_period: i64,
    /// How long a pressure condition stays after its threshold was last met.
    #[arg(long = "eviction-pressure-transition-period", default_value = "5m",
        value_parser = component_base::leaderelection::parse_duration)]
    pub eviction_pressure_transition_period: std::time::Duration,
    /// Rotate a container log once it is larger than this (a quantity, e.g. `10Mi`).
    #[arg(long = "container-log-max-size", default_value = "10Mi",
        value_parser = crate::runtime::log_rotation::parse_size)]
    pub container_log_max_size: u64,
    /// Most log files kept per container (the current one included; at least 2).
    #[arg(long = "container-log-max-files", default_value_t = 5,
        value_parser = clap::value_parser!(u16).range(2..))]
    pub container_log_max_files: u16,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::Options;
    use crate::server::auth::AuthorizationMode;

    #[test]
    fn authorization_mode_takes_the_upstream_names() {
        let options = Options::try_parse_from(["kubelet"]).expect("defaults parse");
        assert_eq!(options.authorization_mode, AuthorizationMode::AlwaysAllow);
        assert!(!options.authentication_token_webhook);
        let options = Options::try_parse_from([
            "kubelet",
            "--authentication-token-webhook",
            "--authorization-mode",
            "Webhook",
        ])
        .expect("upstream spelling parses");
        assert_eq!(options.authorization_mode, AuthorizationMode::Webhook);
        assert!(options.authentication_token_webhook);
        assert!(Options::try_parse_from(["kubelet", "--authorization-mode", "Nope"]).is_err());
    }

    #[test]
    fn node_status_frequencies_take_go_durations_with_upstream_defaults() {
        let options = Options::try_parse_from(["kubelet"]).expect("defaults parse");
        assert_eq!(
            options.node_status_update_frequency,
            Duration::from_secs(10)
        );
        assert_eq!(
            options.node_status_report_frequency,
            Duration::from_secs(300)
        );
        let options = Options::try_parse_from([
            "kubelet",
            "--node-status-update-frequency=4s",
            "--node-status-report-frequency",
            "1m30s",
        ])
        .expect("upstream spelling parses");
        assert_eq!(options.node_status_update_frequency, Duration::from_secs(4));
        assert_eq!(
            options.node_status_report_frequency,
            Duration::from_secs(90)
        );
        assert!(
            Options::try_parse_from(["kubelet", "--node-status-report-frequency=soon"]).is_err()
        );
    }
}
