//! The `kube-proxy` binary: parses flags and calls [`kube_proxy::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::logging::init();
    component_base::limits::raise_open_files();
    kube_proxy::run(kube_proxy::Options::parse()).await?;
    Ok(())
}
