//! The OpenAPI v3 documents as the upstream `kubectl` reads them: `kubectl get --raw
//! /openapi/v3` lists every group version, `/openapi/v3/apis/apps/v1` is a complete document
//! (the paths of each apps/v1 resource and its subresources, schemas under the upstream names
//! with `x-kubernetes-group-version-kind`, resolvable `$ref`s, the patch merge keys that
//! strategic merge and apply rely on), and `kubectl explain` reads both HPA versions. Skipped
//! with a note when kubectl is not installed.

use std::path::Path;

use kube_apiserver::testing::TestServer;
use serde_json::Value;

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

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_openapi_v3_documents() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;

    let index: Value =
        serde_json::from_str(&kubectl(&server, &["get", "--raw", "/openapi/v3"]).await?)?;
    let paths = index["paths"].as_object().cloned().unwrap_or_default();
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/autoscaling/v1",
        "apis/autoscaling/v2",
    ] {
        let link = paths
            .get(gv)
            .and_then(|p| p["serverRelativeURL"].as_str())
            .unwrap_or_default();
        assert!(
            link.starts_with(&format!("/openapi/v3/{gv}?hash=")),
            "{gv}: {link:?}"
        );
    }

    let doc: Value = serde_json::from_str(
        &kubectl(&server, &["get", "--raw", "/openapi/v3/apis/apps/v1"]).await?,
    )?;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/apis/apps/v1/namespaces/{namespace}/deployments",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
        "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/status",
        "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
        "/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}",
        "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
        "/apis/apps/v1/namespaces/{namespace}/controllerrevisions/{name}",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    assert!(
        paths.keys().all(|p| p.starts_with("/apis/apps/v1/")),
        "only apps/v1 paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    let patch = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(patch.is_object(), "no PATCH operation");

    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"][0],
        serde_json::json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    // Every reference resolves inside the document.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }

    // explain reads each HPA version from its own document.
    let v1 = kubectl(
        &server,
        &["explain", "hpa.spec", "--api-version=autoscaling/v1"],
    )
    .await?;
    assert!(v1.contains("targetCPUUtilizationPercentage"), "{v1}");
    let v2 = kubectl(
        &server,
        &["explain", "hpa.spec", "--api-version=autoscaling/v2"],
    )
    .await?;
    assert!(v2.contains("metrics") && v2.contains("behavior"), "{v2}");
    Ok(())
}
