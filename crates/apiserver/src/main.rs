//! `kube-apiserver`: parses options and runs [`kube_apiserver::run`].

use clap::Parser;

component_base::global_allocator!();

#[tokio::main]
async fn main() {
    component_base::logging::init();
    component_base::limits::raise_open_files();
    let options = kube_apiserver::Options::parse();
    if let Err(error) = kube_apiserver::run(options).await {
        tracing::error!("{error}");
        std::process::exit(1);
    }
}
