//! Starting one container: image, ConfigMaps/Secrets/Services, environment, mounts, the
//! per-pod files, then create + start through the runtime, with events.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Container;
use tokio::time::Instant;

use super::hooks::{run_hook, HookTarget};
use super::security::security_settings;
use super::{exit_code, running_state, Instance, PodWorker};
use crate::pod::env::{container_env, PodSources, RuntimeFields};
use crate::pod::files;
use crate::pod::objects::Read;
use crate::pod::probe::ContainerProbes;
use crate::pod::resources::{
    cgroup_parent, container_resources, machine_memory_bytes, oom_score_adj,
};
use crate::pod::volumes::{container_mounts, referenced_objects};
use crate::runtime::{
    ContainerConfig, ContainerState, Mount, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
    LABEL_POD_NAMESPACE, LABEL_POD_UID, LABEL_RESTART_COUNT,
};

impl PodWorker {
    pub(super) fn fields(&self) -> RuntimeFields {
        RuntimeFields {
            host_ip: self.ctx.settings.node_ip.to_string(),
            pod_ip: self.pod_ip().map(|ip| ip.to_string()).unwrap_or_default(),
        }
    }

    /// The pod's sources, read at most once per sync (`cache` holds them for the sync).
    /// `None` (logged) when the API could not be read.
    pub(super) async fn sources_once(&self, cache: &mut Option<PodSources>) -> Option<PodSources> {
        if cache.is_none() {
            match self.fetch_sources().await {
                Ok(sources) => *cache = Some(sources),
                Err(error) => {
                    tracing::warn!(pod = %self.key(), %error, "reading ConfigMaps, Secrets or Services failed; will retry");
                    return None;
                }
            }
        }
        cache.clone()
    }

    /// The ConfigMaps and Secrets the pod refers to (no Services), through the node's cache.
    pub(super) async fn fetch_objects(
        &self,
        read: Read,
    ) -> Result<PodSources, crate::pod::api::ApiError> {
        let namespace = self.namespace();
        let (config_maps, secrets) = referenced_objects(&self.pod);
        let mut sources = PodSources::default();
        let (api, objects) = (self.ctx.api.as_ref(), &self.ctx.objects);
        for name in config_maps {
            if let Some(cm) = objects.config_map(api, &namespace, &name, read).await? {
                sources.config_maps.insert(name, cm);
            }
        }
        for name in secrets {
            if let Some(secret) = objects.secret(api, &namespace, &name, read).await? {
                sources.secrets.insert(name, secret);
            }
        }
        Ok(sources)
    }

    /// The pod's ConfigMaps, Secrets and Services. The first read for a pod (its volume
    /// set-up) is from storage, as upstream's cache-based manager fetches afresh on the first
    /// read after a pod is registered; later ones (container starts in later syncs, restarts)
    /// take the node's cached copy while it is younger than the TTL.
    pub(super) async fn fetch_sources(&self) -> Result<PodSources, crate::pod::api::ApiError> {
        let namespace = self.namespace();
        let read = match self.volume_dirs {
            None => Read::Latest,
            Some(_) => Read::Refresh,
        };
        let mut sources = self.fetch_objects(read).await?;
        let links = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let services = self.ctx.api.services(&namespace).await?;
        sources.services = services
            .into_iter()
            .filter(|s| {
                let ns = s
                    .metadata
                    .namespace
                    .as_deref()
                    .unwrap_or(namespace.as_str());
                let name = s.metadata.name.as_deref().unwrap_or_default();
                (links && ns == namespace) || (ns == "default" && name == "kubernetes")
            })
            .collect();
        Ok(sources)
    }

    pub(super) fn write_pod_files(&self, ip: Option<IpAddr>) -> std::io::Result<()> {
        let dir = self.ctx.settings.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir)?;
        let domain = &self.ctx.settings.dns.cluster_domain;
        std::fs::write(
            dir.join("etc-hosts"),
            files::hosts_file(&self.pod, ip, domain),
        )?;
        std::fs::write(
            dir.join("etc-hostname"),
            format!("{}\n", files::hostname(&self.pod)),
        )?;
        std::fs::write(
            dir.join("etc-resolv.conf"),
            files::resolv_conf(&self.pod, &self.ctx.settings.dns),
        )?;
        Ok(())
    }

    pub(super) fn log_path(&self, container: &str, restart_count: i32) -> PathBuf {
        self.ctx
            .settings
            .pod_log_dir(&self.namespace(), &self.name(), &self.uid)
            .join(container)
            .join(format!("{restart_count}.log"))
    }

    /// Pulls, configures, creates and starts one container. Errors are (reason, message) for
    /// the container's waiting state.
    pub(super) async fn start_container(
        &mut self,
        container: &Container,
        sources: &PodSources,
    ) -> Result<(), (String, String)> {
        let image = container.image.clone().unwrap_or_default();
        let runtime = self.ctx.runtime.clone();
        self.ensure_container_image(container).await?;
        let env = container_env(&self.pod, container, sources, &self.fields())
            .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?;
        let dirs = self.volume_dirs.clone().unwrap_or_default();
        let mut mounts = container_mounts(container, &dirs)
            .map_err(|e| ("CreateContainerConfigError".to_string(), e.to_string()))?;
        let pod_dir = self.ctx.settings.pod_dir(&self.uid);
        for (file, target) in [
            ("etc-hosts", "/etc/hosts"),
            ("etc-hostname", "/etc/hostname"),
            ("etc-resolv.conf", "/etc/resolv.conf"),
        ] {
            if !mounts.iter().any(|m| m.container_path == target) {
                mounts.push(Mount {
                    host_path: pod_dir.join(file),
                    container_path: target.into(),
                    read_only: false,
                });
            }
        }
        let restart_count = self
            .tracks
            .get(&container.name)
            .map(|t| t.restart_count)
            .unwrap_or(0);
        let labels = BTreeMap::from([
            (LABEL_POD_UID.to_string(), self.uid.clone()),
            (LABEL_POD_NAME.to_string(), self.name()),
            (LABEL_POD_NAMESPACE.to_string(), self.namespace()),
            (LABEL_CONTAINER_NAME.to_string(), container.name.clone()),
            (LABEL_RESTART_COUNT.to_string(), restart_count.to_string()),
        ]);
        let security = security_settings(&self.pod, container);
        let host_ipc = self.host_ipc();
        if let (false, Some(ipc)) = (host_ipc, &self.ipc) {
            if !mounts.iter().any(|m| m.container_path == "/dev/shm") {
                mounts.push(Mount {
                    host_path: ipc.shm_path.clone(),
                    container_path: "/dev/shm".into(),
                    read_only: false,
                });
            }
        }
        let oom_score_adj =
            machine_memory_bytes().map(|memory| oom_score_adj(&self.pod, container, memory));
        let config = ContainerConfig {
            name: container.name.clone(),
            labels,
            image: image.clone(),
            command: container.command.clone().unwrap_or_default(),
            args: container.args.clone().unwrap_or_default(),
            env,
            working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
            hostname: files::hostname(&self.pod),
            netns_path: if self.host_network() {
                None
            } else {
                self.network.as_ref().map(|n| n.netns_path.clone())
            },
            mounts,
            log_path: self.log_path(&container.name, restart_count),
            tty: container.tty.unwrap_or(false),
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            cgroup_parent: cgroup_parent(&self.pod),
            resources: container_resources(container),
            run_as_user: security.run_as_user,
            run_as_group: security.run_as_group,
            privileged: security.privileged,
            supplemental_groups: security.supplemental_groups,
            read_only_root_filesystem: security.read_only_root_filesystem,
            capabilities_add: security.capabilities_add,
            capabilities_drop: security.capabilities_drop,
            no_new_privileges: security.no_new_privileges,
            oom_score_adj,
            ipc_ns_path: if host_ipc {
                None
            } else {
                self.ipc.as_ref().map(|i| i.ns_path.clone())
            },
            host_ipc,
        };
        let id = runtime
            .create_container(&config)
            .await
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        self.event(
            Some(&container.name),
            false,
            "Created",
            format!("Created container: {}", container.name),
        );
        let now = Instant::now();
        if let Err(error) = runtime.start_container(&id).await {
            if let Err(remove) = runtime.remove_container(&id).await {
                tracing::warn!(%id, error = %remove, "removing the container that failed to start");
            }
            return Err(("RunContainerError".into(), error.to_string()));
        }
        let state = runtime
            .container_status(&id)
            .await
            .unwrap_or(ContainerState::Unknown);
        tracing::info!(pod = %self.key(), container = %container.name, %id, restart_count, "container started");
        let image_id = self.image_id(&image).await;
        self.event(
            Some(&container.name),
            false,
            "Started",
            format!("Started container {}", container.name),
        );
        let running = running_state(&state);
        let exited = exit_code(&state).is_some();
        let track = self.tracks.entry(container.name.clone()).or_default();
        track.image_id = image_id;
        track.current = Some(Instance {
            id: id.clone(),
            probes: ContainerProbes::new(container, now),
            running_since: (running || exited).then_some(now),
            exited_seen: exited.then_some(now),
            state,
        });
        if let Some(handler) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.post_start.as_ref())
        {
            if let Err(message) = self.post_start(container, &id, handler).await {
                return Err(("PostStartHookError".into(), message));
            }
        }
        Ok(())
    }

    /// Runs the postStart hook of a container that just started; on failure records
    /// `FailedPostStartHook`, kills the container and returns the message.
    async fn post_start(
        &mut self,
        container: &Container,
        id: &str,
        handler: &k8s_openapi::api::core::v1::LifecycleHandler,
    ) -> Result<(), String> {
        let pod_ref = self.pod_ref();
        let result = run_hook(
            handler,
            &HookTarget {
                runtime: &self.ctx.runtime,
                container_id: id,
                container,
                ip: self.pod_ip(),
                pod_ref: &pod_ref,
                pod: &self.pod,
                api: self.ctx.api.as_ref(),
            },
        )
        .await;
        let Err(message) = result else {
            return Ok(());
        };
        tracing::warn!(pod = %self.key(), container = %container.name, %message, "postStart hook failed; killing the container");
        self.event(
            Some(&container.name),
            true,
            "FailedPostStartHook",
            message.clone(),
        );
        self.event(
            Some(&container.name),
            false,
            "Killing",
            "FailedPostStartHook".to_string(),
        );
        self.kill_container(&container.name).await;
        Err(message)
    }

    /// `repo@sha256:...` of an image, as `imageID` reports it.
    pub(super) async fn image_id(&self, image: &str) -> Option<String> {
        let name = crate::runtime::normalize_image(image);
        let images = self.ctx.runtime.list_images().await.ok()?;
        let info = images.into_iter().find(|i| i.names.contains(&name))?;
        Some(format!(
            "{}@{}",
            crate::node::status::repository(&name),
            info.digest
        ))
    }
}
