//! kube-perf entry point (not written yet; see the crate docs).

fn main() -> std::process::ExitCode {
    eprintln!("error: kube-perf is not written yet (the benchmarks are a later issue)");
    std::process::ExitCode::FAILURE
}
