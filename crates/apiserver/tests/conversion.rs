//! HorizontalPodAutoscalers served as `autoscaling/v1` and `autoscaling/v2` from one storage
//! (stored as v2, as upstream): the upstream `kubectl autoscale` creates one that `kubectl get
//! hpa` lists, `kubectl describe hpa` shows and both versions read (a repeated server-side
//! apply through v1 is a no-op); an HPA created through v2 with several metrics reads
//! through v1 as `targetCPUUtilizationPercentage` plus upstream's annotations, and an update
//! through v1 loses none of the v2 metrics; status written through v2 shows through v1; a v1
//! watch streams v1 objects.

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::{v1, v2};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

const KUBECTL: &str = "/usr/bin/kubectl";

async fn kubectl(server: &TestServer, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    anyhow::ensure!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn deployment(name: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}
    }))?)
}

fn metric_names(hpa: &v2::HorizontalPodAutoscaler) -> Vec<String> {
    hpa.spec
        .as_ref()
        .and_then(|s| s.metrics.clone())
        .unwrap_or_default()
        .iter()
        .map(|m| match (&m.resource, &m.pods) {
            (Some(r), _) => r.name.clone(),
            (_, Some(p)) => p.metric.name.clone(),
            _ => m.type_.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_autoscale_creates_an_hpa_both_versions_read() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let client = server.client().await?;
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &deployment("web")?)
        .await?;

    kubectl(
        &server,
        &[
            "autoscale",
            "deployment",
            "web",
            "--cpu-percent=50",
            "--min=1",
            "--max=3",
        ],
    )
    .await?;
    let table = kubectl(&server, &["get", "hpa"]).await?;
    assert!(
        table.lines().any(|l| l.starts_with("web ")),
        "kubectl get hpa:\n{table}"
    );

    let described = kubectl(&server, &["describe", "hpa", "web"]).await?;
    for line in [
        "Reference:",
        "Deployment/web",
        "Min replicas:",
        "Max replicas:",
    ] {
        assert!(described.contains(line), "{line} missing:\n{described}");
    }
    let on_v1: Api<v1::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let on_v2: Api<v2::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let a = on_v1.get("web").await?;
    let spec = a.spec.clone().expect("spec");
    assert_eq!(spec.target_cpu_utilization_percentage, Some(50));
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(1), 3));
    assert_eq!(spec.scale_target_ref.name, "web");
    let b = on_v2.get("web").await?;
    let metrics = b.spec.clone().expect("spec").metrics.expect("metrics");
    assert_eq!(metrics.len(), 1);
    let cpu = metrics[0].resource.as_ref().expect("resource metric");
    assert_eq!(cpu.name, "cpu");
    assert_eq!(cpu.target.type_, "Utilization");
    assert_eq!(cpu.target.average_utilization, Some(50));
    // One object: same identity and revision through both versions.
    assert_eq!(a.metadata.uid, b.metadata.uid);
    assert_eq!(a.metadata.resource_version, b.metadata.resource_version);

    // kubectl reads either version on request (by the full resource name: kubectl resolves a
    // short name to the preferred version).
    let as_v1: Value = serde_json::from_str(
        &kubectl(
            &server,
            &[
                "get",
                "horizontalpodautoscalers.v1.autoscaling",
                "web",
                "-o",
                "json",
            ],
        )
        .await?,
    )?;
    assert_eq!(as_v1["apiVersion"], "autoscaling/v1");
    assert_eq!(as_v1["spec"]["targetCPUUtilizationPercentage"], 50);
    let as_v2: Value = serde_json::from_str(
        &kubectl(
            &server,
            &[
                "get",
                "horizontalpodautoscalers.v2.autoscaling",
                "web",
                "-o",
                "json",
            ],
        )
        .await?,
    )?;
    assert_eq!(as_v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        as_v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        50
    );

    // Applied (server-side, twice) as v1 with a memory target kept in the annotation, then read
    // through v2: both metrics, and a second apply changes nothing.
    let file = server.dir().join("hpa-v1.yaml");
    std::fs::write(
        &file,
        r#"apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata:
  name: applied
  annotations:
    autoscaling.alpha.kubernetes.io/metrics: '[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"64Mi"}}]'
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 4
  targetCPUUtilizationPercentage: 65
"#,
    )?;
    let path = file.to_string_lossy().into_owned();
    let out = kubectl(&server, &["apply", "--server-side", "-f", &path]).await?;
    assert!(out.contains("serverside-applied"), "{out}");
    let first = on_v2.get("applied").await?;
    let metrics = first.spec.clone().expect("spec").metrics.expect("metrics");
    let names: Vec<_> = metrics
        .iter()
        .filter_map(|m| m.resource.as_ref())
        .map(|r| (r.name.clone(), r.target.average_utilization))
        .collect();
    assert_eq!(
        names,
        [("memory".to_string(), None), ("cpu".to_string(), Some(65))]
    );
    kubectl(&server, &["apply", "--server-side", "-f", &path]).await?;
    let second = on_v2.get("applied").await?;
    assert_eq!(
        first.metadata.resource_version, second.metadata.resource_version,
        "a repeated apply is a no-op"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hpa_created_through_either_version_survives_the_other() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let on_v1: Api<v1::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let on_v2: Api<v2::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let mut watch = on_v1
        .watch(&WatchParams::default().timeout(60), "0")
        .await?
        .boxed();

    // Created through v2 with a CPU target and two more metrics.
    let rich: v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "rich"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2, "maxReplicas": 6,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory",
                    "target": {"type": "AverageValue", "averageValue": "200Mi"}}},
                {"type": "Pods", "pods": {"metric": {"name": "qps"},
                    "target": {"type": "AverageValue", "averageValue": "5"}}}
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}
    }))?;
    on_v2.create(&PostParams::default(), &rich).await?;

    // A v1 watch streams it in the v1 form.
    let event = tokio::time::timeout(Duration::from_secs(20), watch.try_next())
        .await??
        .expect("watch open");
    match event {
        WatchEvent::Added(h) => {
            assert_eq!(h.metadata.name.as_deref(), Some("rich"));
            assert_eq!(
                h.spec.and_then(|s| s.target_cpu_utilization_percentage),
                Some(70)
            );
        }
        other => anyhow::bail!("expected ADDED, got {other:?}"),
    }

    let mut seen = on_v1.get("rich").await?;
    let spec = seen.spec.clone().expect("spec");
    assert_eq!(spec.target_cpu_utilization_percentage, Some(70));
    let annotations = seen.metadata.annotations.clone().unwrap_or_default();
    let others: Value = serde_json::from_str(
        annotations
            .get("autoscaling.alpha.kubernetes.io/metrics")
            .expect("other metrics annotation"),
    )?;
    assert_eq!(
        others,
        json!([
            {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "200Mi"}},
            {"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "5"}}
        ])
    );

    // An update through v1 (read, change, replace) keeps every v2 metric.
    if let Some(spec) = seen.spec.as_mut() {
        spec.max_replicas = 8;
        spec.target_cpu_utilization_percentage = Some(75);
    }
    on_v1.replace("rich", &PostParams::default(), &seen).await?;
    let after = on_v2.get("rich").await?;
    assert_eq!(metric_names(&after), ["memory", "qps", "cpu"]);
    let spec = after.spec.clone().expect("spec");
    assert_eq!(spec.max_replicas, 8);
    let cpu = spec.metrics.as_ref().expect("metrics")[2]
        .resource
        .clone()
        .expect("cpu");
    assert_eq!(cpu.target.average_utilization, Some(75));
    assert!(
        after
            .metadata
            .annotations
            .unwrap_or_default()
            .keys()
            .all(|k| !k.starts_with("autoscaling.alpha.kubernetes.io/")),
        "v2 objects carry no conversion annotations"
    );

    // Status written through v2 shows through v1.
    on_v2
        .patch_status(
            "rich",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"currentReplicas": 3, "desiredReplicas": 4,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 91, "averageValue": "455m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True",
                    "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
            ),
        )
        .await?;
    let status = on_v1.get("rich").await?.status.expect("status");
    assert_eq!(status.current_cpu_utilization_percentage, Some(91));
    assert_eq!((status.current_replicas, status.desired_replicas), (3, 4));

    // Created through v1 with no target: upstream's implicit 80% CPU, readable through v2.
    let plain: v1::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "plain"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 4}
    }))?;
    on_v1.create(&PostParams::default(), &plain).await?;
    let plain = on_v2.get("plain").await?;
    let metrics = plain.spec.expect("spec").metrics.expect("metrics");
    let cpu = metrics[0].resource.as_ref().expect("cpu");
    assert_eq!(
        (cpu.name.as_str(), cpu.target.average_utilization),
        ("cpu", Some(80))
    );
    let names: Vec<_> = on_v1
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|h| h.metadata.name)
        .collect();
    assert_eq!(names, ["plain", "rich"]);
    Ok(())
}
