//! Restarting the apiserver loses nothing, on both storage backends: the real `kube-apiserver`
//! binary runs as a child process on a SQLite file (and on a real etcd started for the test when
//! the `etcd` binary is installed), objects of several kinds are written (a namespace, a
//! configmap, an encrypted secret, a deployment, a pod with status, an object held by a
//! finalizer), the process is stopped (SIGTERM, then SIGKILL for a crash) and a new one started
//! on the same storage. Every object reads back byte-for-byte identical (uid, resourceVersion,
//! creationTimestamp, generation, managedFields), list resourceVersions never go backwards, a watch
//! resumed from the last resourceVersion a watch saw before the restart streams the new changes,
//! a watch from an older one replays the changes since (or answers 410 Expired, as upstream's
//! watch cache does for revisions before its start), and new writes get larger resourceVersions.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube_apiserver::testing::{write_kubeconfig, TestPki};
use serde_json::{json, Value};

mod support;

const NS: &str = "restart";

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            eprintln!("killing child: {e}");
        }
        if let Err(e) = self.0.wait() {
            eprintln!("waiting for child: {e}");
        }
    }
}

/// Where the apiserver keeps its state between runs.
#[derive(Clone)]
enum Backend {
    Sqlite(PathBuf),
    Etcd(String),
}

/// Certificates, kubeconfig and flags shared by every run of the apiserver.
struct Setup {
    dir: tempfile::TempDir,
    backend: Backend,
    kubeconfig: PathBuf,
    port: u16,
}

impl Setup {
    fn new(dir: tempfile::TempDir, backend: Backend) -> anyhow::Result<Self> {
        let pki = TestPki::new()?;
        let (serving_cert, serving_key) =
            pki.issue("kube-apiserver", &[], &["127.0.0.1", "localhost"])?;
        let (admin_cert, admin_key) = pki.issue("kubernetes-admin", &["system:masters"], &[])?;
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ca.crt"), &pki.ca_pem)?;
        std::fs::write(p("apiserver.crt"), serving_cert)?;
        std::fs::write(p("apiserver.key"), serving_key)?;
        std::fs::write(
            p("encryption.yaml"),
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n  - aescbc:\n      keys:\n      - name: k1\n        secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n  - identity: {}\n",
        )?;
        let port = free_port()?;
        let kubeconfig = p("admin.kubeconfig");
        write_kubeconfig(
            &kubeconfig,
            &format!("https://127.0.0.1:{port}"),
            &pki.ca_pem,
            &admin_cert,
            &admin_key,
        )?;
        Ok(Setup {
            dir,
            backend,
            kubeconfig,
            port,
        })
    }

    /// Starts the apiserver binary and waits until it answers; `run` names its log file.
    async fn start(&self, run: usize) -> anyhow::Result<(Proc, kube::Client)> {
        let p = |n: &str| self.dir.path().join(n);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-apiserver"));
        cmd.args(["--secure-port", &self.port.to_string()])
            .args(["--bind-address", "127.0.0.1"])
            .args(["--advertise-address", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(p("apiserver.crt"))
            .arg("--tls-private-key-file")
            .arg(p("apiserver.key"))
            .arg("--client-ca-file")
            .arg(p("ca.crt"))
            .arg("--encryption-provider-config")
            .arg(p("encryption.yaml"))
            .args(["--disable-admission-plugins", "ServiceAccount"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(p(&format!("apiserver-{run}.log")))?);
        match &self.backend {
            Backend::Sqlite(path) => {
                cmd.args(["--storage-backend", "sqlite"])
                    .arg("--sqlite-path")
                    .arg(path);
            }
            Backend::Etcd(url) => {
                cmd.args(["--storage-backend", "etcd3", "--etcd-servers", url]);
            }
        }
        let mut child = Proc(cmd.spawn()?);
        let client = component_base::client::from_kubeconfig(Some(&self.kubeconfig)).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.0.try_wait()? {
                anyhow::bail!(
                    "apiserver run {run} exited with {status}; log in {}",
                    self.dir.path().display()
                );
            }
            let ready = client
                .request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await;
            if matches!(ready.as_deref(), Ok("ok")) {
                return Ok((child, client));
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "apiserver run {run} not ready: {ready:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Stops the apiserver with SIGTERM and waits for it to exit.
fn stop_gracefully(mut proc: Proc) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &proc.0.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while proc.0.try_wait()?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "apiserver ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

async fn get(client: &kube::Client, path: &str) -> anyhow::Result<Value> {
    Ok(client
        .request::<Value>(http::Request::get(path).body(Vec::new())?)
        .await?)
}

async fn post(client: &kube::Client, path: &str, body: Value) -> anyhow::Result<Value> {
    Ok(client
        .request::<Value>(
            http::Request::post(path)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body)?)?,
        )
        .await?)
}

fn rv(object: &Value) -> anyhow::Result<i64> {
    let text = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("no resourceVersion in {object}"))?;
    Ok(text.parse()?)
}

/// The objects written before the restart, by path.
const OBJECTS: &[&str] = &[
    "/api/v1/namespaces/restart",
    "/api/v1/namespaces/restart/configmaps/plain",
    "/api/v1/namespaces/restart/configmaps/held",
    "/api/v1/namespaces/restart/configmaps/late",
    "/api/v1/namespaces/restart/secrets/token",
    "/apis/apps/v1/namespaces/restart/deployments/web",
    "/api/v1/namespaces/restart/pods/runner",
];

/// Lists whose items and resourceVersion are compared across restarts.
const LISTS: &[&str] = &[
    "/api/v1/namespaces/restart/configmaps",
    "/api/v1/namespaces/restart/secrets",
    "/apis/apps/v1/deployments",
    "/api/v1/pods",
    "/api/v1/namespaces",
];

/// What the first run wrote and saw.
struct Before {
    objects: Vec<Value>,
    lists: Vec<Value>,
    /// A resourceVersion seen by a watch before the later changes.
    watch_from: String,
    /// Names and types of the configmap changes after `watch_from`, in order.
    later: Vec<(String, String)>,
    /// The resourceVersion of the last event a configmap watch saw.
    last_seen: String,
}

async fn write_objects(client: &kube::Client) -> anyhow::Result<Before> {
    post(
        client,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
    )
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    post(
        client,
        "/api/v1/namespaces/restart/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "plain", "labels": {"app": "x"}}, "data": {"k": "v"}}),
    )
    .await?;
    post(
        client,
        "/api/v1/namespaces/restart/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/keep"]}, "data": {"k": "v"}}),
    )
    .await?;
    // Held by its finalizer: deleting only marks it.
    cms.delete("held", &DeleteParams::default()).await?;
    post(
        client,
        "/api/v1/namespaces/restart/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"},
            "stringData": {"password": "hunter2"}}),
    )
    .await?;
    post(
        client,
        "/apis/apps/v1/namespaces/restart/deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}}}),
    )
    .await?;
    // A second generation through server-side apply (managedFields of two managers).
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    deployments
        .patch(
            "web",
            &PatchParams::apply("restart-test").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"}, "spec": {"replicas": 3}})),
        )
        .await?;
    post(
        client,
        "/api/v1/namespaces/restart/pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.35"}]}}),
    )
    .await?;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    pods.patch_status(
        "runner",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.244.0.9",
            "conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await?;

    // The watch position, then more configmap changes after it.
    let list = get(client, "/api/v1/namespaces/restart/configmaps").await?;
    let watch_from = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow::anyhow!("list without resourceVersion"))?
        .to_string();
    let mut watch = cms
        .watch(&WatchParams::default().timeout(60), &watch_from)
        .await?
        .boxed();
    post(
        client,
        "/api/v1/namespaces/restart/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"},
            "data": {"k": "1"}}),
    )
    .await?;
    cms.patch(
        "plain",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await?;
    post(
        client,
        "/api/v1/namespaces/restart/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone"}}),
    )
    .await?;
    cms.delete("gone", &DeleteParams::default()).await?;
    let mut later = Vec::new();
    let mut last_seen = String::new();
    while later.len() < 4 {
        match next_change(&mut watch).await? {
            Change::Event(kind, name, rv) => {
                later.push((name, kind.to_string()));
                last_seen = rv;
            }
            Change::Expired => anyhow::bail!("live watch expired"),
        }
    }
    let expected = [
        ("late", "ADDED"),
        ("plain", "MODIFIED"),
        ("gone", "ADDED"),
        ("gone", "DELETED"),
    ];
    assert_eq!(
        later,
        expected
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .to_vec()
    );
    let (objects, lists) = snapshot(client).await?;
    Ok(Before {
        objects,
        lists,
        watch_from,
        later,
        last_seen,
    })
}

/// One watch event on a configmap, or the 410 Expired answer.
enum Change {
    Event(&'static str, String, String),
    Expired,
}

type Events = futures::stream::BoxStream<'static, kube::Result<WatchEvent<ConfigMap>>>;

/// The next non-bookmark watch event.
async fn next_change(events: &mut Events) -> anyhow::Result<Change> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), events.try_next())
            .await??
            .ok_or_else(|| anyhow::anyhow!("watch ended"))?;
        let (kind, cm) = match event {
            WatchEvent::Added(cm) => ("ADDED", cm),
            WatchEvent::Modified(cm) => ("MODIFIED", cm),
            WatchEvent::Deleted(cm) => ("DELETED", cm),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) if e.code == 410 && e.reason == "Expired" => {
                return Ok(Change::Expired)
            }
            WatchEvent::Error(e) => anyhow::bail!("watch error: {e:?}"),
        };
        let name = cm.metadata.name.unwrap_or_default();
        let rv = cm.metadata.resource_version.unwrap_or_default();
        return Ok(Change::Event(kind, name, rv));
    }
}

async fn snapshot(client: &kube::Client) -> anyhow::Result<(Vec<Value>, Vec<Value>)> {
    let mut objects = Vec::new();
    for path in OBJECTS {
        objects.push(get(client, path).await?);
    }
    let mut lists = Vec::new();
    for path in LISTS {
        lists.push(get(client, path).await?);
    }
    Ok((objects, lists))
}

/// The checks after a restart; `max_rv` is the largest resourceVersion seen so far.
async fn check_after_restart(
    client: &kube::Client,
    before: &mut Before,
    max_rv: i64,
) -> anyhow::Result<i64> {
    let (objects, lists) = snapshot(client).await?;
    for ((path, was), now) in OBJECTS.iter().zip(&before.objects).zip(&objects) {
        assert_eq!(was, now, "{path} changed across the restart");
    }
    let held = &objects[2];
    assert!(
        held.pointer("/metadata/deletionTimestamp").is_some(),
        "{held}"
    );
    assert_eq!(objects[4]["data"]["password"], json!("aHVudGVyMg=="));
    assert_eq!(objects[5]["metadata"]["generation"], json!(2));
    assert_eq!(objects[6]["status"]["podIP"], json!("10.244.0.9"));
    for ((path, was), now) in LISTS.iter().zip(&before.lists).zip(&lists) {
        assert_eq!(was["items"], now["items"], "{path} items changed");
        assert!(
            rv(now)? >= rv(was)?,
            "{path}: list resourceVersion went back from {} to {}",
            rv(was)?,
            rv(now)?
        );
    }

    // A watch from before the later changes either replays them or, when the new server's
    // watch cache starts after that revision, answers 410 Expired as upstream's does (the
    // client then relists; the list above already holds every change).
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let params = WatchParams::default().timeout(60);
    let mut old = cms.watch(&params, &before.watch_from).await?.boxed();
    let mut seen = Vec::new();
    while seen.len() < before.later.len() {
        match next_change(&mut old).await? {
            Change::Event(kind, name, _) => seen.push((name, kind.to_string())),
            Change::Expired => break,
        }
    }
    if !seen.is_empty() {
        assert_eq!(seen, before.later, "replay from {}", before.watch_from);
    }
    drop(old);

    // A watch resumed from the last resourceVersion a watch saw before the restart streams
    // the changes made after it, with no gap and no error.
    let mut events = cms.watch(&params, &before.last_seen).await?.boxed();
    let fresh = post(
        client,
        "/api/v1/namespaces/restart/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "fresh-"}}),
    )
    .await?;
    let fresh_rv = rv(&fresh)?;
    assert!(
        fresh_rv > max_rv,
        "a write after the restart got resourceVersion {fresh_rv}, not above {max_rv}"
    );
    let fresh_name = fresh["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    cms.delete(&fresh_name, &DeleteParams::default()).await?;
    for expected in ["ADDED", "DELETED"] {
        match next_change(&mut events).await? {
            Change::Event(kind, name, rv) => {
                assert_eq!((kind, name.as_str()), (expected, fresh_name.as_str()));
                before.last_seen = rv;
            }
            Change::Expired => {
                anyhow::bail!("watch from the last seen {} expired", before.last_seen)
            }
        }
    }
    // The stored objects are as they were; the next run's replay also has these two.
    before.later.push((fresh_name.clone(), "ADDED".to_string()));
    before.later.push((fresh_name, "DELETED".to_string()));
    let after = get(client, "/api/v1/namespaces/restart/configmaps").await?;
    Ok(rv(&after)?.max(fresh_rv))
}

async fn restart_loses_nothing(setup: Setup) -> anyhow::Result<()> {
    let (first, client) = setup.start(0).await?;
    let mut before = write_objects(&client).await?;
    let mut max_rv = before
        .lists
        .iter()
        .map(rv)
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    stop_gracefully(first)?;
    if let Backend::Sqlite(db) = &setup.backend {
        // The secret is stored encrypted, so the restarted server must reload the key to serve it.
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let stored: Vec<u8> = conn.query_row(
            "SELECT value FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1",
            [b"/registry/secrets/restart/token".as_slice()],
            |row| row.get(0),
        )?;
        assert!(
            stored.starts_with(b"k8s:enc:aescbc:v1:k1:"),
            "{}",
            String::from_utf8_lossy(&stored)
        );
    }

    let (second, client) = setup.start(1).await?;
    max_rv = check_after_restart(&client, &mut before, max_rv).await?;
    // A crash (SIGKILL) loses nothing either.
    drop(second);

    let (_third, client) = setup.start(2).await?;
    check_after_restart(&client, &mut before, max_rv).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_apiserver_on_sqlite_loses_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("state.db");
    restart_loses_nothing(Setup::new(dir, Backend::Sqlite(db))?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_apiserver_on_etcd_loses_nothing() -> anyhow::Result<()> {
    let Some(etcd) = support::etcd::start("the etcd restart test").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    restart_loses_nothing(Setup::new(dir, Backend::Etcd(etcd.url.clone()))?).await
}
