//! The `kubelet` binary: parses flags and runs [`kubelet::run`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    component_base::logging::init();
    component_base::limits::raise_open_files();
    let options = kubelet::Options::parse();
    match kubelet::run(options).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            std::process::ExitCode::FAILURE
        }
    }
}
