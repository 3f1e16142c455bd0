//! Our kubectl beside the upstream one: the same scenario scripts run with `/usr/bin/kubectl` and
//! with ours (the built `kubectl` binary) against one in-process apiserver (with the deployment
//! and replicaset controllers running, so rollouts have history), each flavour in its own
//! namespace. Stdout, stderr and exit codes must match once ages, generated names, uids,
//! resourceVersions, timestamps, cluster IPs and the namespace name are normalised.
//!
//! Start at [`scenarios`]: one entry per scenario, a list of [`Step`]s. A step's arguments may
//! use `{ns}` (the flavour's namespace) and `{dir}` (its scratch directory holding the files the
//! scenario wrote). Skipped when `/usr/bin/kubectl` is absent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube_apiserver::testing::TestServer;
use regex::Regex;

const UPSTREAM: &str = "/usr/bin/kubectl";
const OURS: &str = env!("CARGO_BIN_EXE_kubectl");

/// One kubectl invocation of a scenario, or a wait between invocations.
#[derive(Clone)]
enum Step {
    /// Run with both kubectls and compare.
    Run {
        args: Vec<String>,
        stdin: Option<String>,
        /// A shell snippet used as `$EDITOR` (the file to edit is `$1`).
        editor: Option<String>,
    },
    /// Not compared: run the upstream kubectl until its stdout equals `expect` (controllers
    /// are asynchronous; this keeps both flavours looking at the same state).
    Until { args: Vec<String>, expect: String },
}

fn run(args: &[&str]) -> Step {
    Step::Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        editor: None,
    }
}

fn stdin(args: &[&str], input: &str) -> Step {
    Step::Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: Some(input.to_string()),
        editor: None,
    }
}

fn edit(args: &[&str], editor: &str) -> Step {
    Step::Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: None,
        editor: Some(editor.to_string()),
    }
}

fn until(args: &[&str], expect: &str) -> Step {
    Step::Until {
        args: args.iter().map(|a| a.to_string()).collect(),
        expect: expect.to_string(),
    }
}

/// A scenario: files written into the flavour's scratch dir, then steps.
struct Scenario {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    steps: Vec<Step>,
}

const OBJECTS: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
  level: \"3\"
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
type: Opaque
stringData:
  user: admin
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-a
  labels:
    app: a
    tier: front
    scenario: {ns}
spec:
  containers:
  - name: main
    image: busybox:1.35
    command: [\"sleep\", \"3600\"]
    ports:
    - containerPort: 80
      name: http
---
apiVersion: v1
kind: Pod
metadata:
  name: pod-b
  labels:
    app: b
    scenario: {ns}
spec:
  containers:
  - name: main
    image: nginx:1.27
  - name: side
    image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: front
spec:
  selector:
    app: a
  ports:
  - name: http
    port: 80
    targetPort: http
";

fn deployment(replicas: u32, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: httpd
        image: {image}
        ports:
        - containerPort: 80
"
    )
}

fn scenarios() -> Vec<Scenario> {
    let web_ready = until(
        &[
            "get",
            "deploy/web",
            "-o",
            "jsonpath={.status.observedGeneration}",
        ],
        "1",
    );
    vec![
        Scenario {
            name: "get",
            files: vec![("objects.yaml", OBJECTS.into()), ("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["create", "-f", "{dir}/web.yaml"]),
                web_ready.clone(),
                until(&["get", "rs", "-o", "jsonpath={.items[*].metadata.annotations.deployment\\.kubernetes\\.io/revision}"], "1"),
                run(&["get", "pods"]),
                run(&["get", "pods", "-o", "wide"]),
                run(&["get", "pod", "pod-a", "-o", "yaml"]),
                run(&["get", "pod", "pod-a", "-o", "json"]),
                run(&["get", "pods", "-o", "name"]),
                run(&["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"]),
                run(&["get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}{.spec.containers[*].image}{\"\\n\"}{end}"]),
                run(&["get", "pods", "-o", "custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[*].image,APP:.metadata.labels.app"]),
                run(&["get", "pods", "--show-labels"]),
                run(&["get", "pods", "-L", "app", "-L", "tier"]),
                run(&["get", "pods", "--sort-by=.spec.containers[0].image"]),
                run(&["get", "pods", "-l", "app=a"]),
                run(&["get", "pods", "-l", "app!=a", "-o", "name"]),
                run(&["get", "pods", "--field-selector", "metadata.name=pod-b"]),
                run(&["get", "pods", "-A", "-l", "scenario={ns}"]),
                run(&["get", "pods,svc,cm"]),
                run(&["get", "all"]),
                run(&["get", "deploy", "-o", "wide"]),
                run(&["get", "rs"]),
                run(&["get", "svc", "-o", "wide"]),
                run(&["get", "cm", "settings", "-o", "yaml"]),
                run(&["get", "secret", "creds", "-o", "jsonpath={.data.user}"]),
                run(&["get", "deployment.apps/web", "service/front", "-o", "name"]),
                run(&["get", "pod", "nope"]),
                run(&["get", "pod", "pod-a", "nope"]),
                run(&["get", "nosuchkind"]),
                run(&["get", "pods", "-o", "bogus"]),
                run(&["get", "ns", "{ns}"]),
                run(&["get", "pods", "-o", "yaml"]),
                run(&["get", "pods", "--no-headers"]),
                run(&["get", "deploy/web", "-o", "custom-columns=NAME:.metadata.name,REPLICAS:.spec.replicas"]),
                run(&["get", "pods", "-L", "app,tier", "--sort-by=.metadata.name", "-o", "wide"]),
            ],
        },
        Scenario {
            name: "describe",
            files: vec![("objects.yaml", OBJECTS.into()), ("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["create", "-f", "{dir}/web.yaml"]),
                web_ready.clone(),
                run(&["describe", "pod", "pod-a"]),
                run(&["describe", "pod", "pod-b"]),
                run(&["describe", "deployment", "web"]),
                run(&["describe", "service", "front"]),
                // upstream prints a ConfigMap's keys in Go map order (random): describe one key
                run(&["create", "configmap", "single", "--from-literal=mode=fast"]),
                run(&["describe", "configmap", "single"]),
                run(&["describe", "secret", "creds"]),
                run(&["describe", "namespace", "{ns}"]),
                run(&["describe", "node", "n1"]),
                run(&["describe", "pod", "nope"]),
                run(&["describe", "rs"]),
                run(&["describe", "pods", "-l", "app=a"]),
            ],
        },
        Scenario {
            name: "create",
            files: vec![("objects.yaml", OBJECTS.into()), ("key.txt", "hello\n".into())],
            steps: vec![
                stdin(&["create", "-f", "-"], &deployment(1, "busybox:1.35")),
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["create", "deployment", "d1", "--image=busybox:1.35", "--replicas=0"]),
                run(&["create", "deployment", "d2", "--image=busybox:1.35", "--port=80", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "service", "clusterip", "s1", "--tcp=80:8080", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "configmap", "c1", "--from-literal=a=b", "--from-file={dir}/key.txt"]),
                run(&["get", "configmap", "c1", "-o", "jsonpath={.data}"]),
                run(&["create", "secret", "generic", "s1", "--from-literal=password=x", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "job", "j1", "--image=busybox:1.35", "--dry-run=client", "-o", "yaml", "--", "echo", "hi"]),
                run(&["create", "cronjob", "cj1", "--image=busybox:1.35", "--schedule=*/5 * * * *", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "serviceaccount", "sa1"]),
                run(&["create", "role", "r1", "--verb=get,list", "--resource=pods"]),
                run(&["create", "rolebinding", "rb1", "--role=r1", "--serviceaccount={ns}:sa1"]),
                run(&["get", "rolebinding", "rb1", "-o", "yaml"]),
                run(&["create", "clusterrole", "{ns}-cr", "--verb=get", "--resource=nodes", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "clusterrolebinding", "{ns}-crb", "--clusterrole=view", "--user=alice", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "namespace", "{ns}-x", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "deployment", "d1", "--image=busybox:1.35"]),
                run(&["create", "configmap", "c1", "--from-literal=a=b"]),
                run(&["create", "serviceaccount", "sa1"]),
                run(&["create", "service", "nodeport", "s2", "--tcp=8080", "--dry-run=client", "-o", "yaml"]),
                run(&["create", "namespace", "{ns}-x", "-o", "name"]),
                run(&["delete", "namespace", "{ns}-x", "--wait=false"]),
            ],
        },
        Scenario {
            name: "apply",
            files: vec![
                ("v1.yaml", deployment(1, "busybox:1.35")),
                ("v2.yaml", deployment(2, "busybox:1.36")),
                ("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n".into()),
            ],
            steps: vec![
                run(&["apply", "-f", "{dir}/v1.yaml"]),
                run(&["apply", "-f", "{dir}/v1.yaml"]),
                run(&["diff", "-f", "{dir}/v1.yaml"]),
                run(&["diff", "-f", "{dir}/v2.yaml"]),
                run(&["apply", "-f", "{dir}/v2.yaml"]),
                run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}"]),
                run(&["apply", "-f", "{dir}/v2.yaml", "--dry-run=server"]),
                run(&["apply", "-f", "{dir}/v1.yaml", "--server-side", "--force-conflicts"]),
                run(&["apply", "-f", "{dir}/bad.yaml"]),
            ],
        },
        Scenario {
            name: "edit",
            files: vec![("web.yaml", deployment(1, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                edit(&["edit", "deploy/web"], "sed -i 's/replicas: 1/replicas: 4/' \"$1\""),
                run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
                edit(&["edit", "deploy/web"], "true"),
                edit(&["edit", "deploy/web", "-o", "name"], "sed -i 's/replicas: 4/replicas: 5/' \"$1\""),
                edit(&["edit", "deploy/nope"], "true"),
            ],
        },
        Scenario {
            name: "patch",
            files: vec![("web.yaml", deployment(1, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["patch", "deploy", "web", "-p", "{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"httpd\",\"image\":\"busybox:1.36\"}]}}}}"]),
                run(&["patch", "deploy", "web", "--type=merge", "-p", "{\"metadata\":{\"labels\":{\"tier\":\"web\"}}}"]),
                run(&["patch", "deploy", "web", "--type=json", "-p", "[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":0}]"]),
                // The controllers settle the status first: a status write in between is a change.
                until(&["get", "deploy/web", "-o", "jsonpath={.status.observedGeneration}:{.status.replicas}"], "3:"),
                run(&["patch", "deploy", "web", "--type=merge", "-p", "{\"metadata\":{\"labels\":{\"tier\":\"web\"}}}"]),
                run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels} {.spec.template.spec.containers[0].image}"]),
                run(&["patch", "deploy", "web", "--type=json", "-p", "[{\"op\":\"remove\",\"path\":\"/nope\"}]"]),
                run(&["patch", "deploy", "nope", "-p", "{}"]),
            ],
        },
        Scenario {
            name: "scale",
            files: vec![("web.yaml", deployment(1, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["scale", "deploy/web", "--replicas=0"]),
                run(&["scale", "deploy", "web", "--replicas=2", "--current-replicas=5"]),
                run(&["scale", "deploy", "web", "--replicas=3", "--current-replicas=0"]),
                run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
                run(&["scale", "deploy/nope", "--replicas=1"]),
            ],
        },
        Scenario {
            name: "rollout",
            files: vec![("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                web_ready.clone(),
                run(&["rollout", "history", "deploy/web"]),
                run(&["set", "image", "deploy/web", "httpd=busybox:1.36"]),
                until(&["get", "rs", "-o", "jsonpath={.items[*].metadata.annotations.deployment\\.kubernetes\\.io/revision}"], "1 2"),
                until(&["get", "deploy/web", "-o", "jsonpath={.status.observedGeneration}"], "2"),
                run(&["rollout", "history", "deploy/web"]),
                run(&["rollout", "history", "deploy/web", "--revision=1"]),
                run(&["rollout", "status", "deploy/web", "--watch=false"]),
                run(&["rollout", "undo", "deploy/web"]),
                run(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
                run(&["rollout", "pause", "deploy/web"]),
                run(&["rollout", "pause", "deploy/web"]),
                run(&["rollout", "resume", "deploy/web"]),
                run(&["rollout", "resume", "deploy/web"]),
                run(&["rollout", "restart", "deploy/web"]),
                run(&["rollout", "undo", "deploy/web", "--to-revision=9"]),
                run(&["rollout", "history", "deploy/nope"]),
            ],
        },
        Scenario {
            name: "wait",
            files: vec![("objects.yaml", OBJECTS.into()), ("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["wait", "deploy/web", "--for=jsonpath={.spec.replicas}=0"]),
                run(&["wait", "deploy/web", "--for=condition=Available", "--timeout=20s"]),
                run(&["wait", "pod/pod-a", "--for=condition=Ready", "--timeout=1s"]),
                run(&["delete", "pod", "pod-b", "--wait=false"]),
                run(&["wait", "pod/pod-b", "--for=delete", "--timeout=10s"]),
                run(&["wait", "pod/nope", "--for=delete"]),
                run(&["wait", "pod/nope", "--for=condition=Ready", "--timeout=1s"]),
            ],
        },
        Scenario {
            name: "delete",
            files: vec![("objects.yaml", OBJECTS.into())],
            steps: vec![
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["delete", "pod", "pod-a"]),
                run(&["delete", "pod", "pod-a"]),
                run(&["delete", "pod", "pod-a", "--ignore-not-found"]),
                run(&["delete", "pods", "-l", "app=b"]),
                run(&["delete", "-f", "{dir}/objects.yaml"]),
                run(&["create", "configmap", "x", "--from-literal=a=b"]),
                run(&["delete", "cm", "--all"]),
                run(&["delete", "pods"]),
            ],
        },
        Scenario {
            name: "logs-exec",
            files: vec![("objects.yaml", OBJECTS.into())],
            steps: vec![
                run(&["create", "-f", "{dir}/objects.yaml"]),
                run(&["logs", "pod-a"]),
                run(&["logs", "pod-b"]),
                run(&["logs", "pod-b", "-c", "nope"]),
                run(&["logs", "nope"]),
                run(&["exec", "pod-a", "--", "true"]),
                run(&["exec", "nope", "--", "true"]),
            ],
        },
        Scenario {
            name: "autoscale",
            files: vec![("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["create", "service", "clusterip", "front", "--tcp=80"]),
                run(&["autoscale", "deploy", "web", "--min=2", "--max=5", "--cpu-percent=80"]),
                run(&["autoscale", "deploy", "web", "--max=5"]),
                run(&["autoscale", "deploy/web", "--max=3", "--name=web-b", "-o", "yaml"]),
                run(&["autoscale", "deploy", "web", "--max=3", "--name=web-c", "-o", "name"]),
                run(&["autoscale", "deploy", "web", "--max=3", "--name=web-d", "--dry-run=client", "-o", "yaml"]),
                run(&["autoscale", "deploy", "web", "--max=2", "--name=web-e", "--dry-run=server"]),
                run(&["autoscale", "deploy", "nope", "--max=5"]),
                run(&["autoscale", "deploy", "web"]),
                run(&["autoscale", "deploy", "web", "--max=3", "--min=4"]),
                run(&["autoscale", "deploy", "web", "--max=0"]),
                run(&["autoscale", "svc", "front", "--max=2"]),
                run(&["autoscale", "--max=1"]),
                run(&["autoscale", "deploy", "--max=1"]),
                run(&["get", "hpa"]),
                run(&["get", "hpa", "web", "-o", "jsonpath={.spec}"]),
            ],
        },
        Scenario {
            name: "replace",
            files: vec![
                ("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rcm\ndata:\n  k: v\n".into()),
                ("cm2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rcm\ndata:\n  k: v2\n".into()),
                ("stale.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rcm\n  resourceVersion: \"1\"\ndata:\n  k: v3\n".into()),
                ("missing.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: absent\ndata:\n  k: v\n".into()),
                ("web.yaml", deployment(0, "busybox:1.35")),
                ("web2.yaml", deployment(0, "busybox:1.36")),
            ],
            steps: vec![
                run(&["create", "-f", "{dir}/cm.yaml"]),
                run(&["replace", "-f", "{dir}/cm2.yaml"]),
                run(&["get", "cm", "rcm", "-o", "jsonpath={.data}"]),
                run(&["replace", "-f", "{dir}/stale.yaml"]),
                run(&["replace", "-f", "{dir}/missing.yaml"]),
                run(&["replace", "-f", "{dir}/missing.yaml", "--force"]),
                run(&["replace", "-f", "{dir}/cm.yaml", "--force"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "-o", "yaml"]),
                run(&["replace", "-f", "{dir}/cm.yaml", "-o", "name"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "--dry-run=client"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "--dry-run=server"]),
                run(&["get", "cm", "rcm", "-o", "jsonpath={.data}"]),
                run(&["replace"]),
                run(&["replace", "-f", "{dir}/absent.yaml"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "--grace-period=3"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "--timeout=3s"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "--force", "--dry-run=server"]),
                run(&["replace", "-f", "{dir}/cm2.yaml", "--cascade=sideways"]),
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["replace", "-f", "{dir}/web2.yaml"]),
                run(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]),
                stdin(&["replace", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rcm\ndata:\n  from: stdin\n"),
                run(&["get", "cm", "rcm", "-o", "jsonpath={.data}"]),
            ],
        },
        Scenario {
            name: "set-env",
            files: vec![("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["create", "deployment", "two", "--image=busybox:1.35", "--image=nginx:1.27", "--replicas=0"]),
                run(&["create", "service", "clusterip", "front", "--tcp=80"]),
                run(&["create", "configmap", "env1", "--from-literal=log.level=debug"]),
                run(&["create", "secret", "generic", "env2", "--from-literal=PASS=x"]),
                run(&["set", "env", "deploy/two", "FOO=bar", "X=1"]),
                run(&["set", "env", "deploy/two", "FOO=bar"]),
                run(&["set", "env", "deploy/two", "--list"]),
                run(&["set", "env", "deploy/two", "-c", "nginx", "Y=2"]),
                run(&["set", "env", "deploy/two", "--list", "-c", "nginx"]),
                run(&["set", "env", "deploy/two", "FOO-"]),
                run(&["set", "env", "deploy/two", "--from=configmap/env1"]),
                run(&["set", "env", "deploy/two", "--from=secret/env2", "--prefix=S_", "-c", "busybox"]),
                run(&["set", "env", "deploy/two", "--list"]),
                run(&["set", "env", "deploy/two", "--list", "--resolve"]),
                run(&["patch", "deploy", "two", "--type=json", "-p", r#"[
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}},
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}}},
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}},
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "MCPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}},
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "env1", "key": "gone"}}}},
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "LOST", "valueFrom": {"configMapKeyRef": {"name": "env1", "key": "lost"}}}},
                    {"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "NOPE", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "a"}}}}
                ]"#]),
                run(&["set", "env", "deploy/two", "--list", "--resolve"]),
                run(&["set", "env", "deploy/two", "--list", "--resolve", "-c", "nginx"]),
                run(&["set", "env", "deploy/two", "ME-", "APP-", "NODE-", "MCPU-", "GONE-", "LOST-", "NOPE-"]),
                run(&["set", "env", "deploy/two", "-c", "nope", "A=1"]),
                run(&["set", "env", "deploy/nope", "A=1"]),
                run(&["set", "env", "deploy/two"]),
                run(&["set", "env", "deploy/two", "A=1", "--dry-run=client", "-o", "yaml"]),
                run(&["set", "env", "deploy", "two", "B=1", "-o", "name"]),
                run(&["set", "env", "deploy/two", "--from=configmap/nope"]),
                run(&["set", "env", "deploy/two", "1A=x"]),
                run(&["set", "env", "A=1", "deploy/two"]),
                run(&["set", "env", "deploy/two", "A=1", "A-"]),
                run(&["set", "env", "deploy/two", "--list", "-o", "yaml"]),
                run(&["set", "env", "deploy/two", "--keys=A"]),
                run(&["set", "env", "deploy/two", "X=2", "--overwrite=false"]),
                run(&["set", "env", "svc/front", "A=1"]),
                run(&["set", "env", "--list"]),
                run(&["set", "env", "deploy/two", "--from=deploy/web"]),
                run(&["set", "env", "deploy/two", "B=2", "--dry-run=server"]),
                run(&["set", "env", "deploy", "--all", "Z=1", "-c", "httpd"]),
                run(&["set", "env", "deploy/two", "X-", "Y-", "B-", "C=3", "-c", "ng*"]),
                run(&["set", "env", "deploy/two", "deploy/web", "--list"]),
                run(&["get", "deploy", "two", "-o", "jsonpath={.spec.template.spec.containers[*].env}"]),
            ],
        },
        Scenario {
            name: "set-resources",
            files: vec![("web.yaml", deployment(0, "busybox:1.35"))],
            steps: vec![
                run(&["create", "-f", "{dir}/web.yaml"]),
                run(&["create", "deployment", "two", "--image=busybox:1.35", "--image=nginx:1.27", "--replicas=0"]),
                run(&["create", "service", "clusterip", "front", "--tcp=80"]),
                run(&["set", "resources", "deploy/two", "--limits=cpu=200m,memory=512Mi"]),
                run(&["set", "resources", "deploy/two", "--limits=cpu=200m,memory=512Mi"]),
                run(&["set", "resources", "deploy/two", "-c", "nginx", "--requests=cpu=100m"]),
                run(&["set", "resources", "deploy/two", "-c", "nope", "--requests=cpu=100m"]),
                run(&["set", "resources", "deploy/nope", "--limits=cpu=1"]),
                run(&["set", "resources", "deploy/two"]),
                run(&["set", "resources", "deploy/two", "--limits=cpu=abc"]),
                run(&["set", "resources", "deploy/two", "--limits=foo"]),
                run(&["set", "resources", "deploy/two", "--limits=cpu=0.5,memory=1024Mi", "--requests=memory=1000000"]),
                run(&["set", "resources", "deploy/two", "--limits=cpu=2", "--dry-run=client", "-o", "yaml"]),
                run(&["set", "resources", "deploy", "two", "--limits=cpu=1", "-o", "name"]),
                run(&["set", "resources", "svc/front", "--limits=cpu=1"]),
                run(&["set", "resources", "deploy", "--all", "--limits=cpu=3", "-c", "busy*"]),
                run(&["set", "resources", "deploy", "--limits=cpu=3"]),
                run(&["get", "deploy", "-o", "jsonpath={range .items[*]}{.metadata.name} {.spec.template.spec.containers[*].resources}{\"\\n\"}{end}"]),
            ],
        },
        Scenario {
            name: "diff-secret",
            files: vec![
                ("sec.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dsec\ndata:\n  same: YQ==\n  changed: Yg==\n".into()),
                ("sec2.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: dsec\ndata:\n  same: YQ==\n  changed: Yw==\n  new: ZA==\nstringData:\n  plain: text\n".into()),
                ("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dcm\ndata:\n  k: v\n".into()),
            ],
            steps: vec![
                run(&["diff", "-f", "{dir}/sec.yaml"]),
                run(&["diff", "-f", "{dir}/cm.yaml"]),
                run(&["apply", "-f", "{dir}/sec.yaml"]),
                run(&["diff", "-f", "{dir}/sec.yaml"]),
                run(&["diff", "-f", "{dir}/sec2.yaml"]),
                run(&["diff", "-f", "{dir}/sec2.yaml", "--server-side", "--force-conflicts"]),
            ],
        },
        Scenario {
            name: "top-completion",
            files: vec![],
            steps: vec![
                run(&["top", "node"]),
                run(&["top", "nodes", "n1", "--no-headers"]),
                run(&["top", "pod"]),
                run(&["top", "pods", "-A", "--containers"]),
                run(&["top", "pod", "--sort-by=name"]),
                run(&["top", "node", "n1", "-l", "a=b"]),
                run(&["top", "frob"]),
                run(&["completion"]),
                run(&["completion", "fish-and-chips"]),
                run(&["completion", "bash", "zsh"]),
            ],
        },
        Scenario {
            name: "config",
            files: vec![],
            steps: vec![
                run(&["config", "view"]),
                run(&["config", "view", "--minify", "-o", "jsonpath={.contexts[0].name}"]),
                run(&["config", "get-contexts"]),
                run(&["config", "current-context"]),
                run(&["config", "set-context", "other", "--cluster=test", "--user=admin", "--namespace=elsewhere"]),
                run(&["config", "set-cluster", "c2", "--server=https://127.0.0.1:1"]),
                run(&["config", "set-credentials", "u2", "--token=abc"]),
                run(&["config", "get-contexts"]),
                run(&["config", "use-context", "other"]),
                run(&["config", "current-context"]),
                run(&["config", "use-context", "missing"]),
                run(&["config", "set-context", "--current", "--namespace={ns}"]),
                run(&["config", "get-contexts", "other"]),
                run(&["config", "use-context", "test"]),
                run(&["config", "delete-context", "other"]),
                run(&["config", "delete-context", "other"]),
                run(&["config", "view", "-o", "jsonpath={.users[*].name}"]),
            ],
        },
        Scenario {
            name: "bad-input",
            files: vec![
                ("broken.kubeconfig", "apiVersion: v1\nkind: Config\nclusters: [\n".into()),
                ("invalid.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: 5\n".into()),
                ("unknown.yaml", "apiVersion: v1\nkind: Widget\nmetadata:\n  name: w\n".into()),
                ("nokind.yaml", "apiVersion: v1\nmetadata:\n  name: w\n".into()),
            ],
            steps: vec![
                run(&["--kubeconfig={dir}/broken.kubeconfig", "get", "pods"]),
                run(&["--kubeconfig={dir}/missing.kubeconfig", "get", "pods"]),
                run(&["--server=https://127.0.0.1:1", "get", "pods"]),
                run(&["create", "-f", "{dir}/invalid.yaml"]),
                // Without --validate=false upstream first fails to fetch the OpenAPI document.
                run(&["create", "-f", "{dir}/unknown.yaml", "--validate=false"]),
                run(&["create", "-f", "{dir}/nokind.yaml"]),
                run(&["create", "-f", "{dir}/absent.yaml"]),
                run(&["get", "widgets"]),
                run(&["describe", "widgets", "x"]),
            ],
        },
    ]
}

/// What one kubectl run produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: String,
    err: String,
    code: i32,
}

/// A flavour's private world: its namespace, scratch dir, kubeconfig and `$HOME`.
struct Flavour {
    binary: &'static str,
    ns: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Flavour {
    fn prepare(
        binary: &'static str,
        ns: String,
        root: &Path,
        admin: &str,
        scenario: &Scenario,
    ) -> anyhow::Result<Self> {
        let dir = root.join(&ns);
        std::fs::create_dir_all(dir.join("home"))?;
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            admin.replace("namespace: default", &format!("namespace: {ns}")),
        )?;
        for (name, text) in &scenario.files {
            std::fs::write(dir.join(name), text.replace("{ns}", &ns))?;
        }
        Ok(Flavour {
            binary,
            ns,
            dir,
            kubeconfig,
        })
    }

    fn expand(&self, arg: &str) -> String {
        arg.replace("{ns}", &self.ns)
            .replace("{dir}", &self.dir.display().to_string())
    }

    async fn kubectl(
        &self,
        args: &[String],
        stdin: Option<&str>,
        editor: Option<&str>,
    ) -> anyhow::Result<Outcome> {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(self.binary);
        cmd.args(args.iter().map(|a| self.expand(a)))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.join("home"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TMPDIR", self.dir.join("home"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(script) = editor {
            let path = self.dir.join("editor.sh");
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n"))?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            cmd.env("EDITOR", &path);
        }
        let mut child = cmd.spawn()?;
        let mut input = child
            .stdin
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await?;
        }
        drop(input);
        let output =
            tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
        Ok(Outcome {
            out: String::from_utf8_lossy(&output.stdout).into_owned(),
            err: String::from_utf8_lossy(&output.stderr).into_owned(),
            code: output.status.code().unwrap_or(-1),
        })
    }
}

/// Rewrites what legitimately differs between two runs of the same script.
struct Normaliser {
    rules: Vec<(Regex, &'static str)>,
}

impl Normaliser {
    fn new() -> anyhow::Result<Self> {
        let rules = [
            // Timestamps: RFC 3339, describe's RFC 1123Z, diff's header time.
            (
                r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                "<time>",
            ),
            (
                r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
                "<time>",
            ),
            (
                r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4}",
                "<time>",
            ),
            (
                r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                "<uid>",
            ),
            (r#"(resourceVersion"?:\s*)"\d+""#, "${1}\"<rv>\""),
            (r"\b10\.\d+\.\d+\.\d+\b", "<ip>"),
            // diff's temp directories (random decimal suffixes). Before the name-suffix rules:
            // a suffix made only of the digits those rules accept would turn into `<hash>`.
            (r"/(LIVE|MERGED)-\w+", "/${1}-<n>"),
            // Random name suffixes (generateName, pods of a ReplicaSet).
            (r"-[bcdfghjklmnpqrstvwxz2456789]{5}\b", "-<rand>"),
            // A ReplicaSet's pod-template hash: which ReplicaSet a Deployment's status names
            // right after a template change depends on whether the controller has caught up.
            (r"(\w)-[bcdfghjklmnpqrstvwxz2456789]{8,10}\b", "${1}-<hash>"),
            // go-yaml and serde_yaml_ng word parse errors differently (and count lines from
            // different marks): only the `yaml:` prefix is compared.
            (r"yaml: line \d+: [^\n]*", "yaml: <parser message>"),
            // client-go's klog lines (upstream only, before its one-line error).
            (r"(?m)^E\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [^\n]*\n", ""),
            // Ages, alone in a table cell or in describe's "x ago" forms.
            (r"(?m)(^|\s|\()(\d+[smhdy])+(\s|$|\))", "${1}<age>${3}"),
            (r"(?m)(^|\s)<invalid>(\s|$)", "${1}<age>${2}"),
            // Column widths follow the (normalised) cell contents.
            (r" {2,}", "  "),
            (r"\t+", "  "),
        ];
        Ok(Normaliser {
            rules: rules
                .into_iter()
                .map(|(re, to)| Ok((Regex::new(re)?, to)))
                .collect::<anyhow::Result<_>>()?,
        })
    }

    fn apply(&self, text: &str, flavour: &Flavour) -> String {
        let mut text = text
            .replace(&flavour.dir.display().to_string(), "<dir>")
            .replace(&flavour.ns, "<ns>");
        for (re, to) in &self.rules {
            // Applied twice: adjacent matches share their separating space.
            text = re.replace_all(&text, *to).into_owned();
            text = re.replace_all(&text, *to).into_owned();
        }
        text
    }
}

#[test]
fn replica_set_hashes_and_pod_suffixes_are_normalised() -> anyhow::Result<()> {
    let flavour = Flavour {
        binary: UPSTREAM,
        ns: "ns-a".to_string(),
        dir: PathBuf::from("/tmp/dir-a"),
        kubeconfig: PathBuf::from("/tmp/kubeconfig"),
    };
    let normaliser = Normaliser::new()?;
    for (text, expected) in [
        (
            r#"message: ReplicaSet "two-5f487d84dd" has successfully progressed."#,
            r#"message: ReplicaSet "two-<hash>" has successfully progressed."#,
        ),
        (
            r#"message: ReplicaSet "two-5c5bc8468" has successfully progressed."#,
            r#"message: ReplicaSet "two-<hash>" has successfully progressed."#,
        ),
        (
            "pod/web-66b964f7d8-7jwlq in ns-a",
            "pod/web-<hash>-<rand> in <ns>",
        ),
        ("deployment.apps/web-server", "deployment.apps/web-server"),
        // diff's temp directories: a decimal suffix made only of digits the hash rule
        // accepts still reads as a temp directory.
        (
            "diff -u -N /tmp/dir-a/home/LIVE-2954476285/apps.v1.Deployment.ns-a.web",
            "diff -u -N <dir>/home/LIVE-<n>/apps.v1.Deployment.<ns>.web",
        ),
        (
            "+++ /tmp/dir-a/home/MERGED-47295/apps.v1.Deployment.ns-a.web",
            "+++ <dir>/home/MERGED-<n>/apps.v1.Deployment.<ns>.web",
        ),
    ] {
        assert_eq!(normaliser.apply(text, &flavour), expected);
    }
    Ok(())
}

async fn create_namespace(kubeconfig: &Path, ns: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(UPSTREAM)
        .args(["create", "namespace", ns])
        .env("KUBECONFIG", kubeconfig)
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "creating namespace {ns}");
    Ok(())
}

/// Registers node `n1` (no kubelet behind it) so describe node has something to show.
async fn create_node(server: &TestServer) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, PostParams};
    let nodes: Api<Node> = Api::all(server.client().await?);
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "spec": {"podCIDR": "10.244.0.0/24"}
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ours_matches_upstream_kubectl_on_every_scenario() -> anyhow::Result<()> {
    if !Path::new(UPSTREAM).exists() {
        eprintln!("skipping: {UPSTREAM} not installed");
        return Ok(());
    }
    let only = std::env::var("COMPARE_ONLY").ok();
    let server = TestServer::start().await?;
    let client = server.client().await?;
    let _controllers = kube_controller_manager::testing::start(
        client,
        Default::default(),
        &["deployment", "replicaset"],
    );
    create_node(&server).await?;
    let admin = std::fs::read_to_string(&server.kubeconfig)?;
    let root = tempfile::tempdir()?;
    let normaliser = Normaliser::new()?;
    let mut report = String::new();
    let mut compared = 0;
    for scenario in scenarios() {
        if only.as_deref().is_some_and(|o| o != scenario.name) {
            continue;
        }
        // Same length, so table columns line up the same way.
        let upstream = Flavour::prepare(
            UPSTREAM,
            format!("cmpa-{}", scenario.name),
            root.path(),
            &admin,
            &scenario,
        )?;
        let ours = Flavour::prepare(
            OURS,
            format!("cmpb-{}", scenario.name),
            root.path(),
            &admin,
            &scenario,
        )?;
        let mut results: [Vec<Option<String>>; 2] = [vec![], vec![]];
        for (i, flavour) in [&upstream, &ours].into_iter().enumerate() {
            create_namespace(&server.kubeconfig, &flavour.ns).await?;
            for step in &scenario.steps {
                match step {
                    Step::Run {
                        args,
                        stdin,
                        editor,
                    } => {
                        let outcome = flavour
                            .kubectl(args, stdin.as_deref(), editor.as_deref())
                            .await?;
                        results[i].push(Some(format!(
                            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
                            outcome.code,
                            normaliser.apply(&outcome.out, flavour),
                            normaliser.apply(&outcome.err, flavour)
                        )));
                    }
                    Step::Until { args, expect } => {
                        let reference = Flavour {
                            binary: UPSTREAM,
                            ns: flavour.ns.clone(),
                            dir: flavour.dir.clone(),
                            kubeconfig: flavour.kubeconfig.clone(),
                        };
                        let mut last = String::new();
                        // Generous: the controllers share two loaded cores with the builds.
                        for _ in 0..600 {
                            last = reference.kubectl(args, None, None).await?.out;
                            if last == *expect {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        anyhow::ensure!(
                            last == *expect,
                            "{}: waiting for {args:?} = {expect:?}, last {last:?}",
                            scenario.name
                        );
                        results[i].push(None);
                    }
                }
            }
        }
        for (step, (a, b)) in scenario
            .steps
            .iter()
            .zip(results[0].iter().zip(results[1].iter()))
        {
            let (Step::Run { args, .. }, Some(a), Some(b)) = (step, a, b) else {
                continue;
            };
            compared += 1;
            if a != b {
                report.push_str(&format!(
                    "==== {}: kubectl {}\n---- upstream: {a}\n---- ours: {b}\n",
                    scenario.name,
                    args.join(" ")
                ));
            }
        }
    }
    if let Ok(path) = std::env::var("COMPARE_REPORT") {
        std::fs::write(path, &report)?;
    }
    assert!(
        report.is_empty(),
        "ours differs from upstream kubectl ({compared} steps compared):\n{report}"
    );
    Ok(())
}
