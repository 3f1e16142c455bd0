//! The `kube-dns` binary: parses flags and calls [`kube_dns::run`].

use clap::Parser;

/// hickory-server logs every request at INFO; keep that at WARN unless `RUST_LOG` says otherwise.
const DEFAULT_LOG_FILTER: &str = "info,hickory_server=warn";

fn main() -> anyhow::Result<()> {
    // Set before the runtime starts any thread.
    if std::env::var_os("RUST_LOG").is_none() {
        std::env::set_var("RUST_LOG", DEFAULT_LOG_FILTER);
    }
    component_base::logging::init();
    component_base::limits::raise_open_files();
    let options = kube_dns::Options::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(kube_dns::run(options))?;
    Ok(())
}
