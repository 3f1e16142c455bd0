//! Static pods against the in-process apiserver (fake runtime and network): a manifest in
//! `--pod-manifest-path` runs without any API object, shows up as a mirror pod (annotated,
//! owned by the Node, with the pod's status), a deleted mirror is recreated while the
//! container keeps running, a restarted kubelet adopts the container (same uid from the
//! manifest hash), and removing the manifest stops the pod and deletes the mirror.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, Client};
use kubelet::app::{start_with_features, RunningKubelet};
use kubelet::node::features::{NodeFeatures, StaticPodSettings};
use kubelet::runtime::fake::FakeRuntime;
use kubelet::runtime::LABEL_POD_UID;

mod support;

use support::{apiserver, eventually, fake_dependencies, fake_runtime, NODE};

async fn start(
    client: Client,
    runtime: Arc<FakeRuntime>,
    dir: &Path,
    manifests: &Path,
) -> RunningKubelet {
    start_with_features(
        fake_dependencies(client, runtime, dir, Duration::from_secs(10)),
        None,
        NodeFeatures {
            static_pods: Some(StaticPodSettings {
                dir: manifests.to_path_buf(),
                period: Duration::from_millis(200),
            }),
            ..Default::default()
        },
    )
    .await
    .expect("kubelet")
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// The running mirror pod whose uid is not `not_uid`.
async fn running_mirror(pods: &Api<Pod>, not_uid: Option<&str>) -> Pod {
    eventually("a running mirror pod", || async move {
        let pod = pods.get_opt("web-node-0").await.ok()??;
        if pod.metadata.deletion_timestamp.is_some() || pod.metadata.uid.as_deref() == not_uid {
            return None;
        }
        (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
    })
    .await
}

fn static_containers(runtime: &FakeRuntime) -> Vec<(String, String)> {
    runtime
        .containers()
        .into_iter()
        .filter(|(_, c)| matches!(c.state, kubelet::runtime::ContainerState::Running { .. }))
        .map(|(id, c)| {
            (
                id,
                c.config
                    .labels
                    .get(LABEL_POD_UID)
                    .cloned()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_static_pod_runs_with_a_mirror_that_is_recreated_and_removed_with_its_manifest() {
    let (_server, client) = apiserver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(
        manifests.join("web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: httpd\n    image: busybox:1.35\n",
    )
    .expect("manifest");
    let runtime = fake_runtime();
    let kubelet = start(client.clone(), runtime.clone(), dir.path(), &manifests).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mirror = running_mirror(&pods, None).await;
    let hash = annotation(&mirror, "kubernetes.io/config.mirror")
        .expect("mirror annotation")
        .to_string();
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.source"),
        Some("file")
    );
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.hash"),
        Some(hash.as_str())
    );
    let owner = &mirror.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", NODE));
    assert_eq!(owner.controller, Some(true));
    assert_ne!(mirror.metadata.uid.as_deref(), Some(hash.as_str()));
    let containers = static_containers(&runtime);
    assert_eq!(containers.len(), 1, "one container runs: {containers:?}");
    let (container_id, pod_uid) = containers[0].clone();
    assert_eq!(pod_uid, hash, "the container belongs to the static pod");

    // Deleting the mirror (as `kubectl delete pod` does) does not stop the static pod: the
    // kubelet recreates the mirror.
    pods.delete("web-node-0", &DeleteParams::default())
        .await
        .expect("delete mirror");
    let recreated = running_mirror(&pods, mirror.metadata.uid.as_deref()).await;
    assert_eq!(
        annotation(&recreated, "kubernetes.io/config.mirror"),
        Some(hash.as_str())
    );
    assert_eq!(
        static_containers(&runtime),
        vec![(container_id.clone(), hash.clone())]
    );

    // A restarted kubelet computes the same uid and adopts the running container.
    kubelet.stop();
    let kubelet = start(client.clone(), runtime.clone(), dir.path(), &manifests).await;
    let uid = recreated.metadata.uid.clone();
    tokio::time::sleep(Duration::from_millis(600)).await;
    running_mirror(&pods, None).await;
    assert_eq!(
        static_containers(&runtime),
        vec![(container_id.clone(), hash.clone())],
        "the container was adopted, not restarted"
    );
    assert_eq!(
        pods.get("web-node-0").await.expect("mirror").metadata.uid,
        uid,
        "the up-to-date mirror is kept"
    );

    // The manifest goes away: the pod stops and its mirror is deleted.
    std::fs::remove_file(manifests.join("web.yaml")).expect("remove manifest");
    eventually("mirror deleted", || {
        let pods = pods.clone();
        async move {
            pods.get_opt("web-node-0")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    eventually("container removed", || {
        let runtime = runtime.clone();
        async move { runtime.containers().is_empty().then_some(()) }
    })
    .await;
    drop(kubelet);
}
