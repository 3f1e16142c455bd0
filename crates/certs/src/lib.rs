//! `kube-certs`: the certificate and kubeconfig tool of the cluster (no openssl needed).
//!
//! Start at [`cli`] for the subcommands. [`pki`] issues the CA and the leaf certificates (ECDSA P-256,
//! via rcgen), [`kubeconfig`] renders kubeconfig files, [`local_cluster`] lays out everything a
//! one-node cluster needs, and [`files`] writes files atomically with the right modes.

pub mod cli;
pub mod files;
pub mod kubeconfig;
pub mod local_cluster;
pub mod pki;

pub use cli::{run, Command, Options, RunError};
