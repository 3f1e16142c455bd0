//! The `kubectl` binary: parse flags, run, print the error the way upstream does, exit.

use clap::Parser;

#[tokio::main]
async fn main() {
    let argv: Vec<String> = std::env::args().collect();
    // The shell completion scripts ask the binary: `kubectl __complete WORD... CURRENT`.
    if argv.get(1).map(String::as_str) == Some("__complete") {
        for candidate in kubectl::cmd::completion::complete(&argv[2..]).await {
            println!("{candidate}");
        }
        return;
    }
    let options = match kubectl::Options::try_parse_from(&argv) {
        Ok(options) => options,
        Err(err) if !err.use_stderr() => {
            // --help: clap's text on stdout, status 0 (1 if stdout is gone, e.g. a closed pipe).
            std::process::exit(if err.print().is_ok() { 0 } else { 1 });
        }
        Err(err) => {
            eprintln!("{}", kubectl::cli::upstream_usage_error(&err, &argv));
            std::process::exit(1);
        }
    };
    if options.global.verbosity.is_some_and(|v| v > 0) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .init();
    }
    let code = match kubectl::run(options).await {
        Ok(()) => 0,
        Err(err) => {
            let report = err.report();
            if !report.is_empty() {
                eprintln!("{report}");
            }
            err.exit_code()
        }
    };
    // Exit here rather than returning: a blocked stdin reader (exec -i) must not hold the runtime.
    std::process::exit(code);
}
