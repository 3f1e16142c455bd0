//! Server-side tables (`as=Table;g=meta.k8s.io;v=v1`) with upstream's columns for every served
//! resource: a walk over the registry lists each listable resource as a Table and compares
//! its column names (and a few types, formats and priorities) with upstream's printers, every
//! row having one cell per column; and the upstream `kubectl get` (and `-o wide`) prints the
//! kinds that got printers lately exactly as against a real cluster (ages normalised).

use std::path::Path;

use kube_apiserver::testing::TestServer;
use serde_json::{json, Value};

mod support;
use support::{call, code};

const KUBECTL: &str = "/usr/bin/kubectl";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

const EVENT: &[&str] = &[
    "Last Seen",
    "Type",
    "Reason",
    "Object",
    "Subobject",
    "Source",
    "Message",
    "First Seen",
    "Count",
    "Name",
];
const DEFAULT: &[&str] = &["Name", "Created At"];
const BINDING: &[&str] = &["Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"];
const HPA: &[&str] = &[
    "Name",
    "Reference",
    "Targets",
    "MinPods",
    "MaxPods",
    "Replicas",
    "Age",
];
const REPLICAS: &[&str] = &[
    "Name",
    "Desired",
    "Current",
    "Ready",
    "Age",
    "Containers",
    "Images",
    "Selector",
];

/// Upstream's columns (pkg/printers/internalversion), by group and resource.
fn upstream_columns(group: &str, plural: &str) -> Option<&'static [&'static str]> {
    Some(match (group, plural) {
        ("", "configmaps") => &["Name", "Data", "Age"],
        ("", "endpoints") => &["Name", "Endpoints", "Age"],
        ("", "events") | ("events.k8s.io", "events") => EVENT,
        ("", "limitranges") => DEFAULT,
        ("", "namespaces") => &["Name", "Status", "Age"],
        ("", "nodes") => &[
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP",
            "External-IP",
            "OS-Image",
            "Kernel-Version",
            "Container-Runtime",
        ],
        ("", "persistentvolumeclaims") => &[
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "VolumeAttributesClass",
            "Age",
            "VolumeMode",
        ],
        ("", "persistentvolumes") => &[
            "Name",
            "Capacity",
            "Access Modes",
            "Reclaim Policy",
            "Status",
            "Claim",
            "StorageClass",
            "VolumeAttributesClass",
            "Reason",
            "Age",
            "VolumeMode",
        ],
        ("", "pods") => &[
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates",
        ],
        ("", "podtemplates") => &["Name", "Containers", "Images", "Pod Labels"],
        ("", "replicationcontrollers") | ("apps", "replicasets") => REPLICAS,
        ("", "resourcequotas") => &["Name", "Request", "Limit", "Age"],
        ("", "secrets") => &["Name", "Type", "Data", "Age"],
        ("", "serviceaccounts") => &["Name", "Secrets", "Age"],
        ("", "services") => &[
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector",
        ],
        ("apps", "controllerrevisions") => &["Name", "Controller", "Revision", "Age"],
        ("apps", "daemonsets") => &[
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            "Containers",
            "Images",
            "Selector",
        ],
        ("apps", "deployments") => &[
            "Name",
            "Ready",
            "Up-to-date",
            "Available",
            "Age",
            "Containers",
            "Images",
            "Selector",
        ],
        ("apps", "statefulsets") => &["Name", "Ready", "Age", "Containers", "Images"],
        ("autoscaling", "horizontalpodautoscalers") => HPA,
        ("batch", "cronjobs") => &[
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age",
            "Containers",
            "Images",
            "Selector",
        ],
        ("batch", "jobs") => &[
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers",
            "Images",
            "Selector",
        ],
        ("networking.k8s.io", "ingresses") => {
            &["Name", "Class", "Hosts", "Address", "Ports", "Age"]
        }
        ("networking.k8s.io", "ingressclasses") => &["Name", "Controller", "Parameters", "Age"],
        ("networking.k8s.io", "networkpolicies") => &["Name", "Pod-Selector", "Age"],
        ("policy", "poddisruptionbudgets") => &[
            "Name",
            "Min Available",
            "Max Unavailable",
            "Allowed Disruptions",
            "Age",
        ],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => BINDING,
        ("rbac.authorization.k8s.io", "roles" | "clusterroles") => DEFAULT,
        ("storage.k8s.io", "storageclasses") => &[
            "Name",
            "Provisioner",
            "ReclaimPolicy",
            "VolumeBindingMode",
            "AllowVolumeExpansion",
            "Age",
        ],
        ("scheduling.k8s.io", "priorityclasses") => {
            &["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        }
        ("coordination.k8s.io", "leases") => &["Name", "Holder", "Age"],
        ("discovery.k8s.io", "endpointslices") => {
            &["Name", "AddressType", "Ports", "Endpoints", "Age"]
        }
        _ => return None,
    })
}

async fn get_table(client: &kube::Client, path: &str) -> anyhow::Result<Value> {
    let request = http::Request::get(path)
        .header("Accept", TABLE)
        .body(Vec::new())?;
    Ok(client.request(request).await?)
}

fn collection(r: &api_types::registry::Resource, namespace: &str) -> String {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    if r.namespaced {
        format!("{base}/namespaces/{namespace}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    }
}

/// A column definition by name.
fn column<'a>(table: &'a Value, name: &str) -> &'a Value {
    table["columnDefinitions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

async fn create(client: &kube::Client, path: &str, body: Value) {
    let r = call(client, "POST", path, Some(body)).await;
    assert_eq!(code(&r), 200, "{path}: {r:?}");
}

/// One object of each kind that got a printer lately, in namespace `tables`.
async fn seed(client: &kube::Client) {
    create(
        client,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "tables"}}),
    )
    .await;
    let ns = "/api/v1/namespaces/tables";
    create(
        client,
        &format!("{ns}/podtemplates"),
        json!({"metadata": {"name": "tpl"},
        "template": {"metadata": {"labels": {"tier": "web", "app": "shop"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"},
                {"name": "d", "image": "nginx:1.25"}]}}}),
    )
    .await;
    create(
        client,
        &format!("{ns}/resourcequotas"),
        json!({"metadata": {"name": "quota"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "2", "limits.memory": "1Gi"}}}),
    )
    .await;
    let status = json!({"status": {"hard": {"pods": "10", "requests.cpu": "2",
        "limits.memory": "1Gi"}, "used": {"pods": "1", "requests.cpu": "500m",
        "limits.memory": "0"}}});
    let r = call(
        client,
        "PATCH",
        &format!("{ns}/resourcequotas/quota/status"),
        Some(status),
    )
    .await;
    assert_eq!(code(&r), 200, "{r:?}");
    create(
        client,
        &format!("{ns}/limitranges"),
        json!({"metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "100m"}}]}}),
    )
    .await;
    create(
        client,
        &format!("{ns}/secrets"),
        json!({"metadata": {"name": "creds"},
        "type": "Opaque", "data": {"user": "YWRtaW4=", "pass": "c2VjcmV0"}}),
    )
    .await;
    create(
        client,
        &format!("{ns}/events"),
        json!({"metadata": {"name": "p.1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "tables",
            "fieldPath": "spec.containers{c}"},
        "reason": "Pulled", "message": "Pulled image", "type": "Normal", "count": 2,
        "source": {"component": "kubelet", "host": "n1"},
        "firstTimestamp": "2020-01-01T00:00:00Z", "lastTimestamp": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let net = "/apis/networking.k8s.io/v1/namespaces/tables";
    create(
        client,
        &format!("{net}/ingresses"),
        json!({"metadata": {"name": "shop"},
        "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["shop.example"]}],
            "rules": [{"host": "shop.example", "http": {"paths": [{"path": "/",
                "pathType": "Prefix", "backend": {"service": {"name": "web",
                    "port": {"number": 80}}}}]}}]}}),
    )
    .await;
    create(
        client,
        &format!("{net}/networkpolicies"),
        json!({"metadata": {"name": "web-only"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}),
    )
    .await;
    create(
        client,
        "/apis/storage.k8s.io/v1/storageclasses",
        json!({
        "metadata": {"name": "local", "annotations":
            {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listable_resource_has_upstream_columns() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;
    seed(&client).await;
    let mut checked = 0;
    for r in api_types::registry::RESOURCES
        .iter()
        .filter(|r| r.supports("list"))
    {
        let want = upstream_columns(r.group, r.plural)
            .unwrap_or_else(|| panic!("no expected columns for {}/{}", r.group, r.plural));
        let table = get_table(&client, &collection(r, "tables")).await?;
        assert_eq!(table["kind"], "Table", "{}", r.plural);
        let names: Vec<&str> = table["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, want, "{}/{}", r.group, r.plural);
        let name = column(&table, "Name");
        assert_eq!(name["format"], "name", "{}", r.plural);
        assert_eq!(name["type"], "string", "{}", r.plural);
        for row in table["rows"].as_array().into_iter().flatten() {
            assert_eq!(
                row["cells"].as_array().map(Vec::len),
                Some(want.len()),
                "{}: {row}",
                r.plural
            );
        }
        checked += 1;
    }
    assert!(checked >= 30, "{checked}");

    // Types and priorities as upstream declares them.
    let table = |path: &'static str| get_table(&client, path);
    let ds = table("/apis/apps/v1/namespaces/tables/daemonsets").await?;
    assert_eq!(column(&ds, "Desired")["type"], "integer");
    assert_eq!(column(&ds, "Selector")["priority"], 1);
    let cj = table("/apis/batch/v1/namespaces/tables/cronjobs").await?;
    assert_eq!(column(&cj, "Suspend")["type"], "boolean");
    assert_eq!(column(&cj, "Active")["type"], "integer");
    let pc = table("/apis/scheduling.k8s.io/v1/priorityclasses").await?;
    assert_eq!(column(&pc, "Global-Default")["type"], "boolean");
    assert_eq!(column(&pc, "Value")["type"], "integer");
    let roles = table("/apis/rbac.authorization.k8s.io/v1/clusterroles").await?;
    assert_eq!(column(&roles, "Created At")["type"], "date");
    let events = table("/api/v1/namespaces/tables/events").await?;
    assert_eq!(column(&events, "Name")["priority"], 1);
    assert_eq!(column(&events, "Subobject")["priority"], 1);
    assert_eq!(column(&events, "Message")["priority"], 0);

    // Cells of the seeded objects (events.k8s.io shows the same core Event).
    let cells = |t: &Value| t["rows"][0]["cells"].clone();
    assert_eq!(
        cells(&events).as_array().map(|c| c[3..].to_vec()),
        Some(vec![
            json!("pod/p"),
            json!("spec.containers{c}"),
            json!("kubelet, n1"),
            json!("Pulled image"),
            cells(&events)[7].clone(),
            json!(2),
            json!("p.1"),
        ])
    );
    let v1_events = table("/apis/events.k8s.io/v1/namespaces/tables/events").await?;
    let tail = |t: &Value| t["rows"][0]["cells"].as_array().map(|c| c[3..].to_vec());
    assert_eq!(tail(&v1_events), tail(&events));
    let quota = table("/api/v1/namespaces/tables/resourcequotas").await?;
    assert_eq!(cells(&quota)[1], "pods: 1/10, requests.cpu: 500m/2");
    assert_eq!(cells(&quota)[2], "limits.memory: 0/1Gi");
    let secrets = table("/api/v1/namespaces/tables/secrets").await?;
    let creds = secrets["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["cells"][0] == "creds"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(creds["cells"][1], "Opaque");
    assert_eq!(creds["cells"][2], 2);
    let sc = table("/apis/storage.k8s.io/v1/storageclasses").await?;
    assert_eq!(cells(&sc)[0], "local (default)");
    assert_eq!(cells(&sc)[4], false);
    Ok(())
}

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

/// Replaces the cells under the `AGE` and `CREATED AT` headers with fixed text of the same
/// width (`0s`, a fixed timestamp), so the alignment kubectl chose is kept.
fn normalise(output: &str) -> String {
    let mut lines = output.lines();
    let Some(header) = lines.next() else {
        return String::new();
    };
    let starts: Vec<(usize, &str)> = [("AGE", "0s"), ("CREATED AT", "2000-01-01T00:00:00Z")]
        .iter()
        .filter_map(|(name, fixed)| {
            header
                .match_indices(name)
                .find(|(i, _)| {
                    (*i == 0 || header.as_bytes()[i - 1] == b' ')
                        && header[i + name.len()..]
                            .chars()
                            .next()
                            .is_none_or(|c| c == ' ')
                })
                .map(|(i, _)| (i, *fixed))
        })
        .collect();
    let mut out = vec![header.trim_end().to_string()];
    for line in lines {
        let mut line = line.to_string();
        for (start, fixed) in &starts {
            let Some(rest) = line.get(*start..) else {
                continue;
            };
            let token_len = rest.find(' ').unwrap_or(rest.len());
            let replacement = format!("{fixed:<token_len$}");
            line.replace_range(*start..*start + token_len, &replacement);
        }
        out.push(line.trim_end().to_string());
    }
    out.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_prints_the_new_kinds_as_upstream() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let client = server.client().await?;
    seed(&client).await;
    let cases: &[(&[&str], &str)] = &[
        (
            &["get", "ingress", "-n", "tables"],
            "NAME   CLASS   HOSTS          ADDRESS   PORTS     AGE\n\
             shop   nginx   shop.example             80, 443   0s",
        ),
        (
            &["get", "ingress", "-n", "tables", "-o", "wide"],
            "NAME   CLASS   HOSTS          ADDRESS   PORTS     AGE\n\
             shop   nginx   shop.example             80, 443   0s",
        ),
        (
            &["get", "networkpolicy", "-n", "tables"],
            "NAME       POD-SELECTOR   AGE\n\
             web-only   app=web        0s",
        ),
        (
            &["get", "storageclass", "local"],
            "NAME              PROVISIONER             RECLAIMPOLICY   VOLUMEBINDINGMODE      ALLOWVOLUMEEXPANSION   AGE\n\
             local (default)   rancher.io/local-path   Delete          WaitForFirstConsumer   false                  0s",
        ),
        (
            &["get", "resourcequota", "-n", "tables"],
            "NAME    REQUEST                            LIMIT                  AGE\n\
             quota   pods: 1/10, requests.cpu: 500m/2   limits.memory: 0/1Gi   0s",
        ),
        (
            &["get", "podtemplate", "-n", "tables", "-o", "wide"],
            "NAME   CONTAINERS   IMAGES                    POD LABELS\n\
             tpl    c,d          busybox:1.35,nginx:1.25   app=shop,tier=web",
        ),
        (
            &["get", "limitrange", "-n", "tables"],
            "NAME     CREATED AT\n\
             limits   2000-01-01T00:00:00Z",
        ),
        (
            &["get", "secret", "creds", "-n", "tables"],
            "NAME    TYPE     DATA   AGE\n\
             creds   Opaque   2      0s",
        ),
    ];
    for (args, want) in cases {
        let got = kubectl(&server, args).await?;
        assert_eq!(normalise(&got), *want, "kubectl {args:?}:\n{got}");
    }
    // Events: wide adds SUBOBJECT, SOURCE, FIRST SEEN, COUNT and NAME.
    let got = kubectl(&server, &["get", "events", "-n", "tables", "-o", "wide"]).await?;
    let header: Vec<&str> = got
        .lines()
        .next()
        .unwrap_or_default()
        .split("   ")
        .collect();
    let header: Vec<&str> = header
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "LAST SEEN",
            "TYPE",
            "REASON",
            "OBJECT",
            "SUBOBJECT",
            "SOURCE",
            "MESSAGE",
            "FIRST SEEN",
            "COUNT",
            "NAME"
        ],
        "{got}"
    );
    assert!(
        got.contains("Normal   Pulled   pod/p    spec.containers{c}   kubelet, n1   Pulled image"),
        "{got}"
    );
    Ok(())
}
