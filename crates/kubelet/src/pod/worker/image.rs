//! Getting a container's image onto the node per its `imagePullPolicy`, with the pod's
//! `imagePullSecrets` and the upstream events (`Pulling`, `Pulled`, `Failed`).

use k8s_openapi::api::core::v1::Container;

use super::{pull_policy, PodWorker};
use crate::runtime::credentials::{credentials_for, parse_docker_config, KeyringEntry};
use crate::runtime::{normalize_image, PullPolicy, RegistryCredential};

/// The secret keys holding docker configs (`kubernetes.io/dockerconfigjson`, `.../dockercfg`).
const DOCKER_CONFIG_KEYS: [&str; 2] = [".dockerconfigjson", ".dockercfg"];

/// Go's `time.Duration` rendering for the sub-minute values pulls take (`1.234s`, `850ms`).
fn go_duration(d: std::time::Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.3}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl PodWorker {
    /// Makes sure `container`'s image is present, pulling it as its policy says. Errors are
    /// (reason, message) for the container's waiting state.
    pub(super) async fn ensure_container_image(
        &self,
        container: &Container,
    ) -> Result<(), (String, String)> {
        let image = container.image.clone().unwrap_or_default();
        let runtime = self.ctx.runtime.clone();
        let policy = pull_policy(container);
        if policy != PullPolicy::Always {
            let present = runtime.image_present(&image).await.map_err(|e| {
                (
                    "ImageInspectError".to_string(),
                    format!("Failed to inspect image \"{image}\": {e}"),
                )
            })?;
            if present {
                self.event(
                    Some(&container.name),
                    false,
                    "Pulled",
                    format!("Container image \"{image}\" already present on machine"),
                );
                return Ok(());
            }
            if policy == PullPolicy::Never {
                return Err((
                    "ErrImageNeverPull".into(),
                    format!("Container image \"{image}\" is not present with pull policy of Never"),
                ));
            }
        }
        self.event(
            Some(&container.name),
            false,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let credentials = self.pull_credentials(&image).await;
        let started = std::time::Instant::now();
        match runtime.pull_image(&image, &credentials).await {
            Ok(size) => {
                let took = go_duration(started.elapsed());
                self.event(
                    Some(&container.name),
                    false,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
                    ),
                );
                Ok(())
            }
            Err(error) => Err((
                "ErrImagePull".into(),
                format!("Failed to pull image \"{image}\": {error}"),
            )),
        }
    }

    /// The credentials from the pod's `imagePullSecrets` that apply to `image`. Secrets that
    /// cannot be read are reported with a `FailedToRetrieveImagePullSecret` event and skipped.
    async fn pull_credentials(&self, image: &str) -> Vec<RegistryCredential> {
        let names: Vec<String> = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .map(|refs| refs.iter().map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        if names.is_empty() {
            return Vec::new();
        }
        let namespace = self.namespace();
        let mut entries: Vec<KeyringEntry> = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            let secret = match self.ctx.api.secret(&namespace, &name).await {
                Ok(Some(secret)) => secret,
                Ok(None) => {
                    missing.push(name);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(pod = %self.key(), secret = %name, %error, "reading image pull secret failed");
                    missing.push(name);
                    continue;
                }
            };
            let data = secret.data.unwrap_or_default();
            for key in DOCKER_CONFIG_KEYS {
                let Some(bytes) = data.get(key) else {
                    continue;
                };
                match parse_docker_config(&bytes.0) {
                    Ok(parsed) => entries.extend(parsed),
                    Err(error) => {
                        tracing::warn!(pod = %self.key(), secret = %name, %error, "unusable image pull secret");
                    }
                }
            }
        }
        if !missing.is_empty() {
            self.event(
                None,
                true,
                "FailedToRetrieveImagePullSecret",
                format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        credentials_for(&normalize_image(image), &entries)
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;
    use std::time::Duration;

    #[test]
    fn durations_render_like_go() {
        assert_eq!(go_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
    }
}
