//! Registry pulls into a real, private containerd (root only; skipped otherwise): from an
//! in-memory registry (credentials, a missing tag, an index, blob reuse, a container run from the
//! pulled image), and from the real Debian `docker-registry` on loopback over plain HTTP, filled
//! with `skopeo copy` from the archive `hack/images/build.sh` makes.

use std::collections::HashMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kubelet::runtime::containerd::testing::{unavailable_reason, TestContainerd};
use kubelet::runtime::containerd::ContainerdRuntime;
use kubelet::runtime::registry::{
    manifest_media_type, FetchedManifest, Registry, RegistryCredential, RegistryError,
};
use kubelet::runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, PullPolicy, RuntimeError,
};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

mod support;

use support::{build_images, connect};

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A registry in memory: `busybox:1.35` (the archive's manifest) and `busybox:multi` (an index
/// around it) in any repository named `.../busybox`, optionally behind one credential.
struct MemoryRegistry {
    blobs: HashMap<String, Vec<u8>>,
    tags: HashMap<String, String>,
    required: Option<RegistryCredential>,
    blob_fetches: AtomicUsize,
}

impl MemoryRegistry {
    fn from_archive(path: &Path, required: Option<RegistryCredential>) -> Result<Self> {
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(path)?);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            files.insert(name, data);
        }
        let mut blobs = HashMap::new();
        for (name, data) in &files {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                blobs.insert(format!("sha256:{hex}"), data.clone());
            }
        }
        let index: serde_json::Value =
            serde_json::from_slice(files.get("index.json").context("index.json")?)?;
        let manifest = index["manifests"][0].clone();
        let manifest_digest = manifest["digest"].as_str().context("digest")?.to_string();
        let multi = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                 "digest": sha256(b"arm"), "size": 3,
                 "platform": {"architecture": "arm64", "os": "linux"}},
                {"mediaType": manifest["mediaType"], "digest": manifest_digest,
                 "size": manifest["size"],
                 "platform": {"architecture": "amd64", "os": "linux"}}
            ]
        });
        let multi = serde_json::to_vec(&multi)?;
        let multi_digest = sha256(&multi);
        blobs.insert(multi_digest.clone(), multi);
        let tags = HashMap::from([
            ("1.35".to_string(), manifest_digest),
            ("multi".to_string(), multi_digest),
        ]);
        Ok(Self {
            blobs,
            tags,
            required,
            blob_fetches: AtomicUsize::new(0),
        })
    }

    fn check(&self, credential: Option<&RegistryCredential>) -> Result<(), RegistryError> {
        match &self.required {
            Some(required) if Some(required) != credential => Err(RegistryError::Unauthorized {
                reason: "authentication required".to_string(),
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Registry for MemoryRegistry {
    async fn manifest(
        &self,
        reference: &str,
        credential: Option<&RegistryCredential>,
    ) -> Result<FetchedManifest, RegistryError> {
        self.check(credential)?;
        let not_found = || RegistryError::NotFound {
            reference: reference.to_string(),
        };
        let digest = match reference.split_once('@') {
            Some((_, digest)) => digest.to_string(),
            None => {
                let (repository, tag) = reference.rsplit_once(':').ok_or_else(not_found)?;
                if !repository.ends_with("/busybox") {
                    return Err(not_found());
                }
                self.tags.get(tag).cloned().ok_or_else(not_found)?
            }
        };
        let bytes = self.blobs.get(&digest).cloned().ok_or_else(not_found)?;
        Ok(FetchedManifest {
            media_type: manifest_media_type(&bytes),
            bytes,
            digest,
        })
    }

    async fn blob(
        &self,
        reference: &str,
        digest: &str,
        credential: Option<&RegistryCredential>,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<(), RegistryError> {
        self.check(credential)?;
        self.blob_fetches.fetch_add(1, Ordering::SeqCst);
        let data = self
            .blobs
            .get(digest)
            .ok_or_else(|| RegistryError::NotFound {
                reference: format!("{reference}@{digest}"),
            })?;
        out.write_all(data)
            .await
            .map_err(|e| RegistryError::Other {
                reason: e.to_string(),
            })?;
        out.flush().await.map_err(|e| RegistryError::Other {
            reason: e.to_string(),
        })
    }
}

fn cred(user: &str, password: &str) -> RegistryCredential {
    RegistryCredential {
        username: user.into(),
        password: password.into(),
    }
}

/// Runs `sh -c script` in a host-network container from `image` and returns its log.
async fn run_once(runtime: &ContainerdRuntime, image: &str, work: &Path) -> Result<String> {
    let log_path = work.join(format!("logs/{}.log", sha256(image.as_bytes())));
    let config = ContainerConfig {
        name: "once".into(),
        labels: [(
            kubelet::runtime::LABEL_CONTAINER_NAME.to_string(),
            "once".to_string(),
        )]
        .into(),
        image: image.into(),
        command: vec!["sh".into(), "-c".into(), "echo pulled-image-runs".into()],
        hostname: "once".into(),
        log_path: log_path.clone(),
        ..Default::default()
    };
    let id = runtime.create_container(&config).await?;
    let result = async {
        runtime.start_container(&id).await?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let ContainerState::Exited { exit_code, .. } = runtime.container_status(&id).await? {
                if exit_code != 0 {
                    bail!("container exited {exit_code}");
                }
                break;
            }
            if Instant::now() > deadline {
                bail!("container never exited");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("pulled-image-runs") || Instant::now() > deadline {
                return Ok(text);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    .await;
    runtime.remove_container(&id).await?;
    result
}

async fn memory_scenario(
    runtime: &ContainerdRuntime,
    registry: &MemoryRegistry,
    work: &Path,
) -> Result<()> {
    let image = "127.0.0.1:5000/busybox:1.35";
    assert!(!runtime.image_present(image).await?);
    let anonymous = runtime.pull_image(image, &[]).await;
    match anonymous {
        Err(RuntimeError::Pull {
            image: name,
            reason,
        }) => {
            assert_eq!(name, image);
            assert!(reason.contains("authorization"), "{reason}");
        }
        other => bail!("anonymous pull: {other:?}"),
    }
    let size = runtime
        .pull_image(image, &[cred("me", "wrong"), cred("me", "right")])
        .await?;
    assert!(size > 500_000, "size {size}");
    assert!(runtime.image_present(image).await?);
    let fetches = registry.blob_fetches.load(Ordering::SeqCst);
    assert!(fetches >= 2, "config and layer fetched: {fetches}");

    let missing = runtime
        .pull_image("127.0.0.1:5000/busybox:nope", &[cred("me", "right")])
        .await;
    match missing {
        Err(err @ RuntimeError::Pull { .. }) => {
            let text = err.to_string();
            assert!(text.contains("not found"), "{text}");
            assert!(
                text.starts_with("failed to pull and unpack image \"127.0.0.1:5000/busybox:nope\""),
                "{text}"
            );
        }
        other => bail!("missing tag: {other:?}"),
    }

    // An index resolves to its linux/amd64 manifest; the layers already held are not fetched.
    let multi = "127.0.0.1:5000/busybox:multi";
    runtime.pull_image(multi, &[cred("me", "right")]).await?;
    assert!(runtime.image_present(multi).await?);
    assert_eq!(registry.blob_fetches.load(Ordering::SeqCst), fetches);
    let images = runtime.list_images().await?;
    assert!(
        images
            .iter()
            .any(|i| i.names.iter().any(|n| n == multi) && i.digest.starts_with("sha256:")),
        "{images:?}"
    );

    let log = run_once(runtime, image, work).await?;
    assert!(log.contains("pulled-image-runs"), "{log:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_from_a_registry_with_credentials_indexes_and_blob_reuse() -> Result<()> {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping registry pull test: {reason}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let archive = build_images(&work.path().join("images"))?;
    let registry = Arc::new(MemoryRegistry::from_archive(
        &archive,
        Some(cred("me", "right")),
    )?);
    let containerd = TestContainerd::start()?;
    let runtime = connect(&containerd).await?.with_registry(registry.clone());
    let result = memory_scenario(&runtime, &registry, work.path()).await;
    if result.is_err() {
        eprintln!("containerd log:\n{}", containerd.log());
    }
    let leftovers: Vec<_> = std::fs::read_dir(containerd.state_dir().join(".pulls"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "downloads left behind: {leftovers:?}");
    result
}

/// The Debian `docker-registry` on a free loopback port, killed on drop.
struct LocalRegistry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    fn start() -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let registry = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry never listened on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        if let Err(err) = self.child.kill() {
            eprintln!("killing docker-registry: {err}");
        }
        if let Err(err) = self.child.wait() {
            eprintln!("waiting for docker-registry: {err}");
        }
    }
}

fn have(binary: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(binary).is_file()))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_from_the_debian_docker_registry_over_plain_http() -> Result<()> {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping docker-registry pull test: {reason}");
        return Ok(());
    }
    if !have("docker-registry") || !have("skopeo") {
        eprintln!("skipping docker-registry pull test: docker-registry or skopeo not installed");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let archive = build_images(&work.path().join("images"))?;
    let registry = LocalRegistry::start()?;
    let image = format!("127.0.0.1:{}/test/busybox:1.35", registry.port);
    let output = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", "--insecure-policy"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{image}"))
        .output()?;
    if !output.status.success() {
        bail!(
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let containerd = TestContainerd::start()?;
    let runtime = connect(&containerd).await?;
    let result = async {
        runtime.ensure_image(&image, PullPolicy::Always).await?;
        assert!(runtime.image_present(&image).await?);
        let log = run_once(&runtime, &image, work.path()).await?;
        assert!(log.contains("pulled-image-runs"), "{log:?}");
        let missing = format!("127.0.0.1:{}/test/busybox:nope", registry.port);
        let err = runtime
            .ensure_image(&missing, PullPolicy::IfNotPresent)
            .await
            .err()
            .context("pulling a missing tag succeeded")?;
        assert!(err.to_string().contains("not found"), "{err}");
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("containerd log:\n{}", containerd.log());
    }
    result
}
