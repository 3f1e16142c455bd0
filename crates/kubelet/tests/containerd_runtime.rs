//! The containerd runtime against a real, private containerd (root only; skipped otherwise):
//! image import, a container in its own network namespace with CRI logs, exec, stop, remove.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use kubelet::runtime::containerd::testing::unavailable_reason;
use kubelet::runtime::containerd::ContainerdRuntime;
use kubelet::runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, ExecRequest, PullPolicy, RuntimeError,
    LABEL_CONTAINER_NAME, LABEL_POD_UID,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;

use support::{connect, containerd_and_archive, finish};

/// A network namespace that is deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Result<Self> {
        // A leftover of a crashed run is replaced.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        let status = Command::new("ip").args(["netns", "add", name]).status()?;
        if !status.success() {
            bail!("ip netns add {name} failed");
        }
        Ok(Self(name.to_string()))
    }
    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.0))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Rewrites the OCI archive as a docker-archive (`docker save` layout) tagged `tag`.
fn to_docker_archive(oci: &Path, out: &Path, tag: &str) -> Result<()> {
    use std::collections::HashMap;
    use std::io::Read;
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(oci)?);
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
    let blob = |digest: &str| -> Result<Vec<u8>> {
        let hex = digest.trim_start_matches("sha256:");
        files
            .get(&format!("blobs/sha256/{hex}"))
            .cloned()
            .context("blob")
    };
    let index: serde_json::Value =
        serde_json::from_slice(files.get("index.json").context("index")?)?;
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .context("manifest")?;
    let manifest: serde_json::Value = serde_json::from_slice(&blob(manifest_digest)?)?;
    let config_digest = manifest["config"]["digest"].as_str().context("config")?;
    let config = blob(config_digest)?;
    let mut builder = tar::Builder::new(std::fs::File::create(out)?);
    let mut add = |name: &str, data: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data)?;
        Ok(())
    };
    let config_name = format!("{}.json", config_digest.trim_start_matches("sha256:"));
    add(&config_name, &config)?;
    let mut layers = Vec::new();
    for (i, layer) in manifest["layers"]
        .as_array()
        .context("layers")?
        .iter()
        .enumerate()
    {
        let gz = blob(layer["digest"].as_str().context("layer digest")?)?;
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice()).read_to_end(&mut plain)?;
        let name = format!("layer{i}/layer.tar");
        add(&name, &plain)?;
        layers.push(name);
    }
    let docker_manifest =
        serde_json::json!([{ "Config": config_name, "RepoTags": [tag], "Layers": layers }]);
    add("manifest.json", &serde_json::to_vec(&docker_manifest)?)?;
    builder.finish()?;
    Ok(())
}

async fn wait_for_log(path: &Path, needles: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| text.contains(n)) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            bail!("log {} never had {needles:?}: {text:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_exec(
    runtime: &ContainerdRuntime,
    id: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
) -> Result<(String, String, i32)> {
    let request = ExecRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: stdin.is_some(),
        stdout: true,
        stderr: true,
    };
    let mut session = runtime.exec(id, request).await?;
    if let (Some(data), Some(mut writer)) = (stdin, session.stdin.take()) {
        writer.write_all(data).await?;
        drop(writer);
    }
    let mut stdout = session.stdout.take().context("stdout")?;
    let mut stderr = session.stderr.take().context("stderr")?;
    let (mut out, mut err) = (String::new(), String::new());
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a?;
    b?;
    let code = tokio::time::timeout(Duration::from_secs(10), session.exit).await??;
    Ok((out, err, code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runtime_imports_runs_logs_execs_stops_and_removes() -> Result<()> {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping containerd runtime test: {reason}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let (archive, containerd, runtime) = containerd_and_archive(work.path()).await?;
    let result = scenario(&runtime, &archive, work.path()).await;
    finish(&runtime, &containerd, result).await
}

async fn scenario(runtime: &ContainerdRuntime, archive: &Path, work: &Path) -> Result<()> {
    let version = runtime.version().await?;
    assert_eq!(version.runtime_name, "containerd");
    assert!(version.runtime_version.starts_with("1."), "{version:?}");

    let names = runtime.import_image_archive(archive).await?;
    assert_eq!(names, vec!["docker.io/library/busybox:1.35".to_string()]);
    let again = runtime.import_image_archive(archive).await?;
    assert_eq!(again, names, "importing twice is a no-op");
    assert!(runtime.image_present("busybox:1.35").await?);
    assert!(!runtime.image_present("busybox:9.99").await?);
    runtime
        .ensure_image("busybox:1.35", PullPolicy::IfNotPresent)
        .await?;
    assert!(matches!(
        runtime.ensure_image("nginx", PullPolicy::Never).await,
        Err(RuntimeError::ImageNeverPull { .. })
    ));
    let images = runtime.list_images().await?;
    assert!(images
        .iter()
        .any(|i| i.names.contains(&names[0]) && i.size > 500_000));

    let netns = Netns::create(&format!("kube-rt-test-{}", std::process::id()))?;
    let log_path = work.join("logs/default_web_uid/web/0.log");
    let config = ContainerConfig {
        name: "web".into(),
        labels: [
            (LABEL_POD_UID.to_string(), "uid-1".to_string()),
            (LABEL_CONTAINER_NAME.to_string(), "web".to_string()),
        ]
        .into(),
        image: "busybox:1.35".into(),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["echo hello; echo err >&2; hostname; sleep 100".into()],
        env: vec![("GREETING".into(), "hi there".into())],
        hostname: "web-pod".into(),
        netns_path: Some(netns.path()),
        log_path: log_path.clone(),
        cgroup_parent: "/kubepods/besteffort/poduid-1".into(),
        ..Default::default()
    };
    let id = runtime.create_container(&config).await?;
    assert_eq!(
        runtime.container_status(&id).await?,
        ContainerState::Created
    );
    runtime.start_container(&id).await?;
    let log = wait_for_log(
        &log_path,
        &[" stdout F hello", " stderr F err", " stdout F web-pod"],
    )
    .await?;
    for line in log.lines() {
        assert!(
            kubelet::runtime::cri_log::parse_record(line.as_bytes()).is_some(),
            "{line}"
        );
    }
    assert!(matches!(
        runtime.container_status(&id).await?,
        ContainerState::Running { pid, .. } if pid > 0
    ));
    let listed = runtime.list_containers().await?;
    let summary = listed.iter().find(|c| c.id == id).context("listed")?;
    assert_eq!(summary.pod_uid(), Some("uid-1"));
    assert_eq!(summary.image, "docker.io/library/busybox:1.35");
    assert!(summary
        .labels
        .keys()
        .all(|k| !k.starts_with("kubelet.runtime/")));

    let (out, _, code) = run_exec(runtime, &id, &["echo", "hi"], None).await?;
    assert_eq!((out.as_str(), code), ("hi\n", 0));
    let (_, _, code) = run_exec(runtime, &id, &["sh", "-c", "exit 3"], None).await?;
    assert_eq!(code, 3);
    assert!(run_exec(runtime, &id, &["/no/such/binary"], None)
        .await
        .is_err());
    let (out, err, code) = run_exec(
        runtime,
        &id,
        &["sh", "-c", "cat; echo \"$GREETING\" >&2; ls /sys/class/net"],
        Some(b"from stdin\n"),
    )
    .await?;
    assert_eq!(code, 0);
    // Only the fresh namespace's loopback: the container is in the pod's netns.
    assert_eq!(out, "from stdin\nlo\n");
    assert_eq!(err, "hi there\n");

    // sh as pid 1 ignores SIGTERM: the grace period runs out and SIGKILL follows.
    let started = Instant::now();
    runtime.stop_container(&id, Duration::from_secs(1)).await?;
    assert!(started.elapsed() < Duration::from_secs(8));
    match runtime.container_status(&id).await? {
        ContainerState::Exited { exit_code, .. } => assert_eq!(exit_code, 137),
        other => bail!("expected exited, got {other:?}"),
    }
    runtime.stop_container(&id, Duration::from_secs(1)).await?;

    // docker-archives import too; a container that exits by itself reports its code.
    let docker_archive = work.join("docker-busybox.tar");
    to_docker_archive(archive, &docker_archive, "example.com/busybox:docker")?;
    let names = runtime.import_image_archive(&docker_archive).await?;
    assert_eq!(names, vec!["example.com/busybox:docker".to_string()]);
    assert!(runtime.image_present("example.com/busybox:docker").await?);
    let quick = ContainerConfig {
        name: "quick".into(),
        image: "example.com/busybox:docker".into(),
        command: vec!["sh".into(), "-c".into(), "echo bye; exit 7".into()],
        netns_path: Some(netns.path()),
        log_path: work.join("logs/quick/0.log"),
        ..Default::default()
    };
    let quick_id = runtime.create_container(&quick).await?;
    runtime.start_container(&quick_id).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match runtime.container_status(&quick_id).await? {
            ContainerState::Exited { exit_code, .. } => {
                assert_eq!(exit_code, 7);
                break;
            }
            _ if Instant::now() > deadline => bail!("quick container never exited"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    wait_for_log(&work.join("logs/quick/0.log"), &[" stdout F bye"]).await?;

    runtime.remove_container(&id).await?;
    runtime.remove_container(&id).await?;
    runtime.remove_container(&quick_id).await?;
    assert!(matches!(
        runtime.container_status(&id).await,
        Err(RuntimeError::ContainerNotFound { .. })
    ));
    assert!(runtime.list_containers().await?.is_empty());
    Ok(())
}

/// The `tick N` numbers in a CRI log, in order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| kubelet::runtime::cri_log::parse_record(l.as_bytes()))
        .filter_map(|r| {
            std::str::from_utf8(r.content)
                .ok()?
                .strip_prefix("tick ")?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runtime_recovers_log_copying_and_serves_tty_exec_and_attach() -> Result<()> {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping containerd runtime test: {reason}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let (archive, containerd, first) = containerd_and_archive(work.path()).await?;
    first.import_image_archive(&archive).await?;
    let log_path = work.path().join("logs/ticker/0.log");
    let config = ContainerConfig {
        name: "ticker".into(),
        image: "busybox:1.35".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done".into(),
        ],
        log_path: log_path.clone(),
        ..Default::default()
    };
    let id = first.create_container(&config).await?;
    first.start_container(&id).await?;
    wait_for_log(&log_path, &["tick 3\n"]).await?;

    // A kubelet restart: the old instance stops copying, a new one reattaches.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runtime = connect(&containerd).await?;
    let result = recovered_scenario(&runtime, &id, &log_path).await;
    if result.is_err() {
        eprintln!("containerd log:\n{}", containerd.log());
    }
    runtime.remove_container(&id).await?;
    assert!(runtime.list_containers().await?.is_empty());
    result
}

async fn recovered_scenario(runtime: &ContainerdRuntime, id: &str, log_path: &Path) -> Result<()> {
    runtime.recover().await?;
    let before = ticks(&std::fs::read_to_string(log_path)?).len() as u64;
    let target = format!("tick {}\n", before + 10);
    wait_for_log(log_path, &[&target]).await?;
    let seen = ticks(&std::fs::read_to_string(log_path)?);
    let expected: Vec<u64> = (0..seen.len() as u64).collect();
    assert_eq!(
        seen, expected,
        "no output lost or repeated across the restart"
    );

    // Exec with a terminal: resize, then stdin, then read the terminal.
    let mut session = runtime
        .exec(
            id,
            ExecRequest {
                command: vec!["sh".into(), "-c".into(), "read x; stty size; exit 4".into()],
                tty: true,
                stdin: true,
                stdout: true,
                stderr: true,
            },
        )
        .await?;
    assert!(session.stderr.is_none(), "a tty has one output stream");
    session
        .resize
        .as_ref()
        .context("resize")?
        .send(kubelet::runtime::TerminalSize {
            width: 100,
            height: 30,
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut stdin = session.stdin.take().context("stdin")?;
    stdin.write_all(b"go\n").await?;
    let mut out = String::new();
    session
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut out)
        .await?;
    drop(stdin);
    assert!(out.contains("30 100"), "{out:?}");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), session.exit).await??,
        4
    );

    // Attach sees the live output; its exit resolves when the container dies.
    let mut attached = runtime
        .attach(
            id,
            kubelet::runtime::AttachRequest {
                stdout: true,
                ..Default::default()
            },
        )
        .await?;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        attached.stdout.as_mut().context("stdout")?.read(&mut buf),
    )
    .await??;
    assert!(String::from_utf8_lossy(&buf[..n]).contains("tick"));
    runtime.stop_container(id, Duration::from_secs(1)).await?;
    let code = tokio::time::timeout(Duration::from_secs(5), attached.exit).await??;
    assert_eq!(code, 137);
    Ok(())
}
