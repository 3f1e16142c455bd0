//! The `serviceAccountToken` files of the pod's projected volumes: requested through the
//! TokenRequest API (bound to the pod, for the source's audience and lifetime), written
//! atomically, and renewed on a later sync once 80% of a token's lifetime has passed (or after
//! 24 hours), as upstream's kubelet does. The other projected sources are written with the
//! volume in [`crate::pod::volumes`].

use std::time::Duration;

use tokio::time::Instant;

use super::PodWorker;
use crate::pod::tokens::{write_atomic, TokenAsk, TokenKey, DEFAULT_EXPIRATION_SECONDS};

impl PodWorker {
    /// Makes every token file current; `Some(retry)` when a token could not be had.
    pub(super) async fn sync_service_account_tokens(&mut self) -> Option<Duration> {
        let dirs = self.volume_dirs.clone()?;
        // The pod is shared: holding it does not copy its spec at every sync.
        let pod = std::sync::Arc::clone(&self.pod);
        let spec = pod.spec.as_ref()?;
        let service_account = spec
            .service_account_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_string());
        for volume in spec.volumes.iter().flatten() {
            let (Some(projected), Some(dir)) = (&volume.projected, dirs.get(&volume.name)) else {
                continue;
            };
            for source in projected.sources.iter().flatten() {
                let Some(sat) = &source.service_account_token else {
                    continue;
                };
                let relative = sat.path.trim_start_matches('/');
                if relative.is_empty() || relative.split('/').any(|p| p == "..") {
                    continue;
                }
                let path = dir.join(relative);
                let audience = sat.audience.clone().filter(|a| !a.is_empty());
                let key: TokenKey = (
                    audience.clone(),
                    sat.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
                );
                if self.tokens.fresh(&key, Instant::now()).is_some() && path.exists() {
                    continue;
                }
                let ask = TokenAsk {
                    namespace: self.namespace(),
                    service_account: service_account.clone(),
                    pod_name: self.name(),
                    pod_uid: self.uid.clone(),
                    audience,
                    expiration_seconds: key.1,
                };
                let written = match self.ctx.api.service_account_token(&ask).await {
                    Ok(issued) => {
                        let now = Instant::now();
                        let unix_now = jiff::Timestamp::now().as_second();
                        self.tokens.store(key, &issued, now, unix_now);
                        write_atomic(&path, issued.token.as_bytes()).map_err(|e| e.to_string())
                    }
                    Err(error) => Err(format!("failed to fetch token: {error}")),
                };
                if let Err(error) = written {
                    tracing::warn!(pod = %self.key(), volume = %volume.name, %error,
                        "service account token set-up failed; will retry");
                    let message = format!(
                        "MountVolume.SetUp failed for volume \"{}\" : {error}",
                        volume.name
                    );
                    self.pod_message = Some(message.clone());
                    self.event(None, true, "FailedMount", message);
                    return Some(Duration::from_secs(2));
                }
                tracing::debug!(pod = %self.key(), volume = %volume.name, "service account token written");
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{
        ConfigMap, ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
        KeyToPath, ObjectFieldSelector, Pod, PodSpec, ProjectedVolumeSource,
        ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
    };
    use kube::api::ObjectMeta;

    use super::super::SyncOutcome;
    use super::*;
    use crate::network::fake::FakeNetwork;
    use crate::pod::api::{ApiCall, FakePodApi};
    use crate::pod::files::DnsSettings;
    use crate::pod::{PodContext, PodSettings, PodStore};
    use crate::runtime::fake::FakeRuntime;

    const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("web-uid".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-0".into()),
                service_account_name: Some("robot".into()),
                containers: vec![Container {
                    name: "c".into(),
                    image: Some("busybox:1.35".into()),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "kube-api-access-abcde".into(),
                        mount_path: MOUNT.into(),
                        read_only: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "kube-api-access-abcde".into(),
                    projected: Some(ProjectedVolumeSource {
                        default_mode: Some(420),
                        sources: Some(vec![
                            VolumeProjection {
                                service_account_token: Some(ServiceAccountTokenProjection {
                                    expiration_seconds: Some(3607),
                                    path: "token".into(),
                                    audience: None,
                                }),
                                ..Default::default()
                            },
                            VolumeProjection {
                                config_map: Some(ConfigMapProjection {
                                    name: "kube-root-ca.crt".into(),
                                    items: Some(vec![KeyToPath {
                                        key: "ca.crt".into(),
                                        path: "ca.crt".into(),
                                        mode: None,
                                    }]),
                                    optional: None,
                                }),
                                ..Default::default()
                            },
                            VolumeProjection {
                                downward_api: Some(DownwardAPIProjection {
                                    items: Some(vec![DownwardAPIVolumeFile {
                                        path: "namespace".into(),
                                        field_ref: Some(ObjectFieldSelector {
                                            api_version: Some("v1".into()),
                                            field_path: "metadata.namespace".into(),
                                        }),
                                        ..Default::default()
                                    }]),
                                }),
                                ..Default::default()
                            },
                        ]),
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn tokens_issued(api: &FakePodApi) -> Vec<(String, String, String)> {
        api.calls()
            .into_iter()
            .filter_map(|c| match c {
                ApiCall::Token(sa, pod, token) => Some((sa, pod, token)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn token_files_are_written_and_renewed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Arc::new(FakeRuntime::new());
        runtime.add_image("busybox:1.35");
        let api = Arc::new(FakePodApi::new());
        if let Ok(mut cms) = api.config_maps.lock() {
            cms.insert(
                ("default".into(), "kube-root-ca.crt".into()),
                ConfigMap {
                    data: Some([("ca.crt".to_string(), "CA PEM".to_string())].into()),
                    ..Default::default()
                },
            );
        }
        let ctx = Arc::new(PodContext {
            runtime: runtime.clone(),
            network: Arc::new(FakeNetwork::ready_network()),
            api: api.clone(),
            settings: PodSettings {
                node_name: "node-0".into(),
                node_ip: "192.0.2.2".parse().expect("ip"),
                root_dir: dir.path().join("root"),
                pod_logs_dir: dir.path().join("logs"),
                dns: DnsSettings {
                    cluster_dns: vec!["10.96.0.10".parse().expect("ip")],
                    cluster_domain: "cluster.local".into(),
                    host_resolv_conf: String::new(),
                },
            },
            store: PodStore::new(),
            mounter: Arc::new(crate::pod::mounts::FakeMounter::new()),
            resync: crate::pod::worker::RESYNC,
            objects: Default::default(),
        });
        let mut worker = PodWorker::new(ctx.clone(), pod(), vec![]);
        assert!(matches!(worker.sync().await, SyncOutcome::Continue(_)));

        let volume = ctx
            .settings
            .pod_dir("web-uid")
            .join("volumes/kubernetes.io~projected/kube-api-access-abcde");
        let read = |f: &str| std::fs::read_to_string(volume.join(f)).expect(f);
        assert_eq!(read("token"), "token-robot-1");
        assert_eq!(read("ca.crt"), "CA PEM");
        assert_eq!(read("namespace"), "default");
        assert_eq!(
            tokens_issued(&api),
            vec![(
                "default/robot".to_string(),
                "web".to_string(),
                "token-robot-1".to_string()
            )]
        );
        let containers = runtime.containers();
        let config = &containers.values().next().expect("one container").config;
        let mount = config
            .mounts
            .iter()
            .find(|m| m.container_path == MOUNT)
            .expect("token mount");
        assert!(mount.read_only);
        assert_eq!(mount.host_path, volume);

        // Not renewed early...
        tokio::time::advance(Duration::from_secs(2800)).await;
        worker.sync().await;
        assert_eq!(tokens_issued(&api).len(), 1);
        assert_eq!(read("token"), "token-robot-1");
        // ...but once 80% of its 3607 s have passed.
        tokio::time::advance(Duration::from_secs(100)).await;
        worker.sync().await;
        assert_eq!(tokens_issued(&api).len(), 2);
        assert_eq!(read("token"), "token-robot-2");
    }
}
