//! `kubectl top node|pod`: resource usage from the `metrics.k8s.io/v1beta1` API. When the server
//! does not serve that API the answer is upstream's `error: Metrics API not available`; otherwise
//! the usage table upstream prints (CPU in millicores, memory in Mi, node percentages of
//! allocatable or capacity).

use api_types::quantity::Quantity;
use kube::core::Request;
use serde_json::Value;

use super::{build_error, list_params};
use crate::cli::{TopArgs, TopCommand, TopNodeArgs, TopPodArgs};
use crate::error::{Error, Result};
use crate::printers::tabwriter;
use crate::session::Session;

const METRICS_PREFIX: &str = "/apis/metrics.k8s.io/v1beta1";

/// Runs `kubectl top`.
pub async fn run(s: &mut Session, args: TopArgs) -> Result<()> {
    match args.command {
        TopCommand::Node(a) => node(s, a).await,
        TopCommand::Pod(a) => pod(s, a).await,
    }
}

fn check_sort(sort_by: Option<&str>) -> Result<()> {
    match sort_by {
        None | Some("") | Some("cpu") | Some("memory") => Ok(()),
        Some(_) => Err(Error::Usage("--sort-by accepts only cpu or memory".into())),
    }
}

/// Whether the server serves `metrics.k8s.io/v1beta1` (upstream looks at the group list only).
async fn metrics_available(s: &Session) -> Result<bool> {
    let client = s.client().await?;
    let request = Request::new("/apis")
        .list(&Default::default())
        .map_err(build_error)?;
    let groups: Value = client.request(request).await?;
    Ok(groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["name"] == "metrics.k8s.io")
        .flat_map(|g| g["versions"].as_array().cloned().unwrap_or_default())
        .any(|v| v["version"] == "v1beta1"))
}

async fn get_json(
    s: &Session,
    path: &str,
    selector: Option<&str>,
    fields: Option<&str>,
) -> Result<Value> {
    let client = s.client().await?;
    let request = Request::new(path)
        .list(&list_params(selector, fields))
        .map_err(build_error)?;
    Ok(client.request::<Value>(request).await?)
}

/// The items of a list answer, or the one object of a get.
fn items(answer: Value, single: bool) -> Vec<Value> {
    if single {
        return vec![answer];
    }
    answer["items"].as_array().cloned().unwrap_or_default()
}

fn quantity(usage: &Value, resource: &str) -> Quantity {
    usage[resource]
        .as_str()
        .and_then(|q| Quantity::parse(q).ok())
        .unwrap_or(Quantity::ZERO)
}

/// Upstream's cell for a usage: cpu in millicores, memory in whole Mi.
fn usage_cell(resource: &str, q: Quantity) -> String {
    match resource {
        "cpu" => format!("{}m", q.milli_value()),
        _ => format!("{}Mi", q.value() / (1024 * 1024)),
    }
}

/// Aligns rows as upstream's tab writer does when every cell is tab-terminated (so the last
/// column is padded too).
fn table(rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|mut r| {
            r.push(String::new());
            r
        })
        .collect();
    tabwriter::align(&rows)
}

async fn node(s: &mut Session, args: TopNodeArgs) -> Result<()> {
    check_sort(args.sort_by.as_deref())?;
    if args.name.is_some() && args.selector.is_some() {
        return Err(Error::Usage(
            "only one of NAME or --selector can be provided".into(),
        ));
    }
    if !metrics_available(s).await? {
        return Err(Error::Usage("Metrics API not available".into()));
    }
    let single = args.name.is_some();
    let suffix = args
        .name
        .as_deref()
        .map(|n| format!("/{n}"))
        .unwrap_or_default();
    let selector = args.selector.as_deref();
    let metrics = items(
        get_json(
            s,
            &format!("{METRICS_PREFIX}/nodes{suffix}"),
            selector,
            None,
        )
        .await?,
        single,
    );
    if metrics.is_empty() {
        return Err(Error::Usage("metrics not available yet".into()));
    }
    let nodes = items(
        get_json(s, &format!("/api/v1/nodes{suffix}"), selector, None).await?,
        single,
    );
    let field = if args.show_capacity {
        "capacity"
    } else {
        "allocatable"
    };
    let mut available: Vec<(String, Value)> = nodes
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                n["status"][field].clone(),
            )
        })
        .collect();
    s.print(&node_table(
        metrics,
        &mut available,
        args.no_headers,
        args.sort_by.as_deref(),
    ))
}

/// The `top node` table: one line per node with metrics, then `<unknown>` lines for listed nodes
/// without metrics.
pub fn node_table(
    mut metrics: Vec<Value>,
    available: &mut Vec<(String, Value)>,
    no_headers: bool,
    sort_by: Option<&str>,
) -> String {
    sort_metrics(&mut metrics, sort_by, |m| m["usage"].clone(), false);
    let mut rows = Vec::new();
    if !no_headers {
        rows.push(
            ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
                .map(String::from)
                .to_vec(),
        );
    }
    for m in &metrics {
        let name = m["metadata"]["name"].as_str().unwrap_or("").to_string();
        let have = available
            .iter()
            .position(|(n, _)| *n == name)
            .map(|i| available.remove(i).1);
        let mut row = vec![name];
        for resource in ["cpu", "memory"] {
            let used = quantity(&m["usage"], resource);
            row.push(usage_cell(resource, used));
            if let Some(total) = have
                .as_ref()
                .and_then(|h| h.get(resource))
                .and_then(Value::as_str)
                .and_then(|q| Quantity::parse(q).ok())
            {
                let fraction = if total.is_zero() {
                    0.0
                } else {
                    used.milli_value() as f64 / total.milli_value() as f64 * 100.0
                };
                row.push(format!("{}%", fraction as i64));
            }
        }
        rows.push(row);
    }
    for (name, _) in available.drain(..) {
        rows.push(vec![
            name,
            "<unknown>".into(),
            "<unknown>".into(),
            "<unknown>".into(),
            "<unknown>".into(),
        ]);
    }
    table(rows)
}

/// Sorts by name (namespace first when asked), or by descending cpu or memory usage.
fn sort_metrics(
    metrics: &mut [Value],
    sort_by: Option<&str>,
    usage: impl Fn(&Value) -> Value,
    with_namespace: bool,
) {
    match sort_by {
        Some("cpu") | Some("memory") => {
            let resource = sort_by.unwrap_or("cpu");
            metrics.sort_by_key(|m| std::cmp::Reverse(quantity(&usage(m), resource)));
        }
        _ => metrics.sort_by(|a, b| {
            let key = |m: &Value| {
                (
                    if with_namespace {
                        m["metadata"]["namespace"]
                            .as_str()
                            .unwrap_or("")
                            .to_string()
                    } else {
                        String::new()
                    },
                    m["metadata"]["name"].as_str().unwrap_or("").to_string(),
                )
            };
            key(a).cmp(&key(b))
        }),
    }
}

/// A pod's usage: the sum over its containers.
fn pod_usage(m: &Value) -> Value {
    let mut cpu = Quantity::ZERO;
    let mut memory = Quantity::ZERO;
    for c in m["containers"].as_array().into_iter().flatten() {
        cpu = cpu + quantity(&c["usage"], "cpu");
        memory = memory + quantity(&c["usage"], "memory");
    }
    serde_json::json!({"cpu": cpu.to_string(), "memory": memory.to_string()})
}

async fn pod(s: &mut Session, args: TopPodArgs) -> Result<()> {
    check_sort(args.sort_by.as_deref())?;
    if args.name.is_some() && (args.selector.is_some() || args.field_selector.is_some()) {
        return Err(Error::Usage(
            "only one of NAME or selector can be provided".into(),
        ));
    }
    if !metrics_available(s).await? {
        return Err(Error::Usage("Metrics API not available".into()));
    }
    let namespace = s.namespace().await?;
    let single = args.name.is_some();
    let path = match (&args.name, args.all_namespaces) {
        (Some(name), _) => format!("{METRICS_PREFIX}/namespaces/{namespace}/pods/{name}"),
        (None, true) => format!("{METRICS_PREFIX}/pods"),
        (None, false) => format!("{METRICS_PREFIX}/namespaces/{namespace}/pods"),
    };
    let selector = args.selector.as_deref();
    let fields = args.field_selector.as_deref();
    let metrics = items(get_json(s, &path, selector, fields).await?, single);
    if metrics.is_empty() {
        // Pods without metrics yet (or none at all): upstream tells which.
        let pods_path = format!("/api/v1/namespaces/{namespace}/pods");
        let pods = items(get_json(s, &pods_path, selector, fields).await?, false);
        if !pods.is_empty() {
            return Err(Error::Usage("metrics not available yet".into()));
        }
        s.eprint(&if args.all_namespaces {
            "No resources found\n".to_string()
        } else {
            format!("No resources found in {namespace} namespace.\n")
        })?;
        return Ok(());
    }
    s.print(&pod_table(metrics, &args))
}

/// The `top pod` table (per container with `--containers`, a sum line with `--sum`).
pub fn pod_table(mut metrics: Vec<Value>, args: &TopPodArgs) -> String {
    let with_namespace = args.all_namespaces;
    sort_metrics(
        &mut metrics,
        args.sort_by.as_deref(),
        pod_usage,
        with_namespace,
    );
    let mut rows = Vec::new();
    let mut width = 3;
    if !args.no_headers {
        let mut header = Vec::new();
        if with_namespace {
            header.push("NAMESPACE".to_string());
            width += 1;
        }
        if args.containers {
            header.push("POD".to_string());
            width += 1;
        }
        header.extend(["NAME", "CPU(cores)", "MEMORY(bytes)"].map(String::from));
        rows.push(header);
    }
    let mut total_cpu = Quantity::ZERO;
    let mut total_memory = Quantity::ZERO;
    for m in &metrics {
        let namespace = m["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = m["metadata"]["name"].as_str().unwrap_or("").to_string();
        let usage = pod_usage(m);
        total_cpu = total_cpu + quantity(&usage, "cpu");
        total_memory = total_memory + quantity(&usage, "memory");
        let mut lines: Vec<(Vec<String>, Value)> = Vec::new();
        if args.containers {
            let mut containers = m["containers"].as_array().cloned().unwrap_or_default();
            sort_metrics(
                &mut containers,
                args.sort_by.as_deref(),
                |c| c["usage"].clone(),
                false,
            );
            for c in containers {
                let cname = c["name"].as_str().unwrap_or("").to_string();
                lines.push((vec![name.clone(), cname], c["usage"].clone()));
            }
        } else {
            lines.push((vec![name.clone()], usage));
        }
        for (names, usage) in lines {
            let mut row = Vec::new();
            if with_namespace {
                row.push(namespace.clone());
            }
            row.extend(names);
            for resource in ["cpu", "memory"] {
                row.push(usage_cell(resource, quantity(&usage, resource)));
            }
            rows.push(row);
        }
    }
    if args.sum {
        let mut line: Vec<String> = vec![String::new(); width - 2];
        line.extend(["________".to_string(), "________".to_string()]);
        rows.push(line);
        let mut line: Vec<String> = vec![String::new(); width - 3];
        line.push(String::new());
        line.push(usage_cell("cpu", total_cpu));
        line.push(usage_cell("memory", total_memory));
        rows.push(line);
    }
    table(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    fn pod_args(extra: &[&str]) -> anyhow::Result<TopPodArgs> {
        let argv = [&["kubectl", "top", "pod"], extra].concat();
        match crate::cli::Options::try_parse_from(argv)?.command {
            crate::cli::Command::Top(TopArgs {
                command: TopCommand::Pod(a),
            }) => Ok(a),
            _ => anyhow::bail!("not top pod"),
        }
    }

    #[test]
    fn node_rows_show_usage_and_percentages() {
        let metrics = vec![
            json!({"metadata": {"name": "n2"}, "usage": {"cpu": "250m", "memory": "1Gi"}}),
            json!({"metadata": {"name": "n1"}, "usage": {"cpu": "1500000n", "memory": "524288Ki"}}),
        ];
        let mut available = vec![
            ("n1".to_string(), json!({"cpu": "2", "memory": "4Gi"})),
            ("n2".to_string(), json!({"cpu": "1", "memory": "2Gi"})),
            ("n3".to_string(), json!({"cpu": "1", "memory": "2Gi"})),
        ];
        let text = node_table(metrics, &mut available, false, None);
        assert_eq!(
            text,
            "NAME   CPU(cores)   CPU(%)      MEMORY(bytes)   MEMORY(%)   \n\
             n1     2m           0%          512Mi           12%         \n\
             n2     250m         25%         1024Mi          50%         \n\
             n3     <unknown>    <unknown>   <unknown>       <unknown>   \n"
        );
    }

    #[test]
    fn pod_rows_sum_containers() -> anyhow::Result<()> {
        let metrics = vec![
            json!({"metadata": {"name": "b", "namespace": "x"}, "containers": [
                {"name": "c1", "usage": {"cpu": "100m", "memory": "10Mi"}},
                {"name": "c2", "usage": {"cpu": "50m", "memory": "6Mi"}}]}),
            json!({"metadata": {"name": "a", "namespace": "y"}, "containers": [
                {"name": "c", "usage": {"cpu": "1m", "memory": "1Mi"}}]}),
        ];
        let text = pod_table(metrics.clone(), &pod_args(&[])?);
        assert_eq!(
            text,
            "NAME   CPU(cores)   MEMORY(bytes)   \na      1m           1Mi             \nb      150m         16Mi            \n"
        );
        let sorted = pod_table(metrics.clone(), &pod_args(&["-A", "--sort-by=cpu"])?);
        assert!(sorted.lines().nth(1).is_some_and(|l| l.starts_with("x ")));
        let containers = pod_table(metrics.clone(), &pod_args(&["--containers"])?);
        assert_eq!(containers.lines().count(), 4);
        assert!(containers.starts_with("POD   NAME"));
        let sum = pod_table(metrics, &pod_args(&["--sum"])?);
        assert!(sum.contains("________"));
        assert!(sum.lines().last().is_some_and(|l| l.contains("151m")));
        Ok(())
    }
}
