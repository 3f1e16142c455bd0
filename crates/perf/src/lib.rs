//! kube-perf: load and density benchmarks with hollow nodes (issue 10). Not written yet: the binary
//! says so and exits with status 1, so no script mistakes it for a benchmark run.
