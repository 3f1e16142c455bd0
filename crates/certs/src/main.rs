//! `kube-certs`: creates the cluster CA, certificates and kubeconfigs. All logic is in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    component_base::logging::init();
    let options = kube_certs::Options::parse();
    kube_certs::run(options)?;
    Ok(())
}
