//! Command line of `kube-certs`: one subcommand per job, each idempotent: files that still match
//! are kept, stale ones (other names or IPs, another CA, expiring soon) are replaced, and `--force`
//! replaces them regardless (the CA and the service-account key are only replaced with `--force`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::kubeconfig::{self, KubeconfigError, Sources};
use crate::local_cluster::{LocalCluster, LocalClusterError};
use crate::pki::{self, Ca, CertSpec, PkiError, Usage};

/// Creates the cluster CA, certificates, service-account keys and kubeconfigs.
#[derive(Debug, Parser)]
#[command(name = "kube-certs", version, about)]
pub struct Options {
    /// What to generate.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a self-signed CA (`ca.crt`, `ca.key`, 10 years).
    Ca {
        /// Directory to write into.
        #[arg(long)]
        out_dir: PathBuf,
        /// Common name of the CA.
        #[arg(long, default_value = "kubernetes-ca")]
        cn: String,
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate signed by the CA (`NAME.crt`, `NAME.key`, ECDSA P-256, 1 year).
    Cert {
        /// Directory holding `ca.crt` and `ca.key`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// File base name.
        #[arg(long)]
        name: String,
        /// Subject common name (user name for client certificates).
        #[arg(long)]
        cn: String,
        /// Subject organization (group for client certificates); repeatable, at most 2.
        #[arg(long = "org")]
        org: Vec<String>,
        /// Subject alternative name, an IP address or DNS name; repeatable.
        #[arg(long = "san")]
        san: Vec<String>,
        /// Usable as a TLS server certificate.
        #[arg(long)]
        server: bool,
        /// Usable as a TLS client certificate.
        #[arg(long)]
        client: bool,
        /// Directory to write into.
        #[arg(long)]
        out_dir: PathBuf,
        /// Reissue even when the existing certificate still matches (stale ones are always
        /// reissued: other names, another CA, expiring within 30 days).
        #[arg(long)]
        force: bool,
    },
    /// Write a kubeconfig that embeds the CA and a client certificate and key.
    Kubeconfig {
        /// Directory holding `ca.crt`.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Directory holding `NAME.crt` and `NAME.key`.
        #[arg(long)]
        cert_dir: PathBuf,
        /// Base name of the client certificate.
        #[arg(long)]
        name: String,
        /// Apiserver URL.
        #[arg(long)]
        server: String,
        /// User name in the kubeconfig (default: NAME).
        #[arg(long)]
        user: Option<String>,
        /// Cluster and context name.
        #[arg(long, default_value = "kubernetes")]
        cluster: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Write even when the file is already up to date.
        #[arg(long)]
        force: bool,
    },
    /// Create the service-account signing key pair (`sa.key`, `sa.pub`; ECDSA P-256, ES256).
    SaKey {
        /// Directory to write into.
        #[arg(long)]
        out_dir: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Generate everything a local one-node cluster needs under DIR (certs/ and six kubeconfigs).
    LocalCluster {
        /// Cluster state directory.
        #[arg(long, env = "KUBE_LOCAL_DIR", default_value = "/tmp/kube-local")]
        dir: PathBuf,
        /// Node name.
        #[arg(long)]
        node_name: String,
        /// Node IP address.
        #[arg(long)]
        node_ip: String,
        /// Apiserver URL for the kubeconfigs.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        apiserver: String,
        /// Cluster and context name in the kubeconfigs.
        #[arg(long, default_value = "kubernetes")]
        cluster_name: String,
    },
}

/// Errors of a `kube-certs` run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Certificate work failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Kubeconfig work failed.
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// Local cluster layout failed.
    #[error(transparent)]
    LocalCluster(#[from] LocalClusterError),
    /// `--node-ip` is not an IP address.
    #[error("--node-ip {0:?} is not an IP address")]
    NodeIp(String),
}

/// Runs one subcommand.
pub fn run(options: Options) -> Result<(), RunError> {
    match options.command {
        Command::Ca { out_dir, cn, force } => {
            pki::ensure_ca(&out_dir, &cn, force)?;
        }
        Command::Cert {
            ca_dir,
            name,
            cn,
            org,
            san,
            server,
            client,
            out_dir,
            force,
        } => {
            let ca = Ca::load(&ca_dir)?;
            let spec = CertSpec {
                name,
                common_name: cn,
                organizations: org,
                sans: san,
                usage: Usage { server, client },
            };
            ca.issue_to(&spec, &out_dir, force)?;
        }
        Command::Kubeconfig {
            ca_dir,
            cert_dir,
            name,
            server,
            user,
            cluster,
            out,
            force,
        } => {
            let user = user.unwrap_or_else(|| name.clone());
            let sources = Sources {
                ca_dir: &ca_dir,
                cert_dir: &cert_dir,
                name: &name,
                cluster: &cluster,
                user: &user,
                server: &server,
            };
            kubeconfig::write(&sources, &out, force)?;
        }
        Command::SaKey { out_dir, force } => {
            pki::ensure_sa_key(&out_dir, force)?;
        }
        Command::LocalCluster {
            dir,
            node_name,
            node_ip,
            apiserver,
            cluster_name,
        } => {
            if node_ip.parse::<std::net::IpAddr>().is_err() {
                return Err(RunError::NodeIp(node_ip));
            }
            LocalCluster {
                dir,
                node_name,
                node_ip,
                apiserver,
                cluster_name,
            }
            .ensure()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Options::command().debug_assert();
    }

    #[test]
    fn subcommands_chain_into_a_usable_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf8");
        let out = format!("{d}/x.kubeconfig");
        for args in [
            vec!["kube-certs", "ca", "--out-dir", d],
            vec![
                "kube-certs",
                "cert",
                "--ca-dir",
                d,
                "--name",
                "x",
                "--cn",
                "alice",
                "--org",
                "devs",
                "--client",
                "--out-dir",
                d,
            ],
            vec![
                "kube-certs",
                "kubeconfig",
                "--ca-dir",
                d,
                "--cert-dir",
                d,
                "--name",
                "x",
                "--server",
                "https://10.0.0.1:6443",
                "--out",
                &out,
            ],
            vec!["kube-certs", "sa-key", "--out-dir", d],
        ] {
            run(Options::try_parse_from(args).expect("parse")).expect("run");
        }
        let text = std::fs::read_to_string(&out).expect("kubeconfig");
        let kc = kube::config::Kubeconfig::from_yaml(&text).expect("parses");
        assert_eq!(kc.auth_infos[0].name, "x");
        assert!(dir.path().join("sa.pub").exists());
    }

    #[test]
    fn local_cluster_rejects_a_bad_node_ip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_str().expect("utf8");
        let options = Options::try_parse_from([
            "kube-certs",
            "local-cluster",
            "--dir",
            d,
            "--node-name",
            "n",
            "--node-ip",
            "nope",
        ])
        .expect("parse");
        assert!(matches!(run(options), Err(RunError::NodeIp(_))));
    }
}
