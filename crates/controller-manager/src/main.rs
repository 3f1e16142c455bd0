//! kube-controller-manager binary: parses options and calls [`kube_controller_manager::run`].

use clap::Parser;

component_base::global_allocator!();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::logging::init();
    component_base::limits::raise_open_files();
    let options = kube_controller_manager::Options::parse();
    kube_controller_manager::run(options).await?;
    Ok(())
}
