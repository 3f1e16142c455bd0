//! kube-perf entry point: parses the options and runs the scenario (see the crate docs).

use clap::Parser;

component_base::global_allocator!();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The hollow kubelets log every pod at info: keep kube-perf's own output readable (and the
    // client's connect errors while the apiserver starts are expected).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,kube_perf=info,kube_client::client::builder=off")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // Thousands of hollow kubelets hold a watch each, on both ends of the loopback: raise the
    // open files limit (hard too, when root) before starting the components, which inherit it.
    component_base::limits::raise_open_files_to(Some(1 << 20));
    let options = kube_perf::Options::parse();
    // On SIGINT/SIGTERM the scenario is dropped, which stops the processes it started.
    let result = tokio::select! {
        result = kube_perf::run(options) => result,
        () = component_base::signals::shutdown() => {
            eprintln!("interrupted: stopping the components kube-perf started");
            return std::process::ExitCode::from(130);
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "kube-perf failed");
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
