//! kube-scheduler binary: parses options and calls [`kube_scheduler::run`].

use clap::Parser;

component_base::global_allocator!();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    component_base::logging::init();
    component_base::limits::raise_open_files();
    let options = kube_scheduler::Options::parse();
    kube_scheduler::run(options).await?;
    Ok(())
}
