//! containerd's event stream against a real, private containerd (root only; skipped otherwise):
//! the state cache goes live, answers for a running container, and an exit is both broadcast
//! and seen by the next status read.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kubelet::runtime::containerd::events::ContainerExit;
use kubelet::runtime::containerd::testing::unavailable_reason;
use kubelet::runtime::containerd::ContainerdRuntime;
use kubelet::runtime::{ContainerConfig, ContainerRuntime, ContainerState, LABEL_POD_UID};

mod support;

use support::{containerd_and_archive, finish};

async fn wait_live(runtime: &ContainerdRuntime) -> Result<()> {
    for _ in 0..200 {
        if runtime.states().is_live() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the containerd event stream never went live")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_are_broadcast_and_never_hidden_by_the_state_cache() -> Result<()> {
    if let Some(reason) = unavailable_reason() {
        eprintln!("skipping containerd events test: {reason}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let (archive, containerd, runtime) = containerd_and_archive(work.path()).await?;
    let result = scenario(&runtime, &archive, work.path()).await;
    finish(&runtime, &containerd, result).await
}

async fn scenario(runtime: &ContainerdRuntime, archive: &Path, work: &Path) -> Result<()> {
    runtime.import_image_archive(archive).await?;
    wait_live(runtime).await?;
    let config = ContainerConfig {
        name: "short".into(),
        labels: [(LABEL_POD_UID.to_string(), "uid-events".to_string())].into(),
        image: "busybox:1.35".into(),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["sleep 2; exit 3".into()],
        hostname: "short".into(),
        log_path: work.join("logs/short/0.log"),
        cgroup_parent: "/kubepods/besteffort/poduid-events".into(),
        ..Default::default()
    };
    let id = runtime.create_container(&config).await?;
    assert_eq!(
        runtime.container_status(&id).await?,
        ContainerState::Created
    );
    let mut exits = runtime.states().exits();
    runtime.start_container(&id).await?;
    let state = runtime.container_status(&id).await?;
    assert!(
        matches!(state, ContainerState::Running { .. }),
        "read after start: {state:?}"
    );
    // A second read is served from the cache, and is the same.
    assert_eq!(runtime.container_status(&id).await?, state);

    let exit = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match exits.recv().await {
                Ok(exit) if exit.id == id => return Ok(exit),
                Ok(_) => continue,
                Err(error) => return Err(error),
            }
        }
    })
    .await
    .context("no exit event within 30 s")??;
    assert_eq!(
        exit,
        ContainerExit {
            id: id.clone(),
            exit_code: 3
        }
    );
    match runtime.container_status(&id).await? {
        ContainerState::Exited { exit_code: 3, .. } => {}
        other => bail!("status after the exit event: {other:?}"),
    }

    runtime.remove_container(&id).await?;
    assert!(runtime
        .container_status(&id)
        .await
        .is_err_and(|e| e.is_not_found()));
    Ok(())
}
