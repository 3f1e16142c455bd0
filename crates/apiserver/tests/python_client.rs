//! The Python `kubernetes` client (installed from PyPI with `pip install --target` into a
//! directory under `target/` that later runs reuse) against the in-process apiserver:
//! `tests/python/client_test.py` does CRUD on several kinds, a watch and
//! `utils.create_from_yaml`. Skipped with a note when python3 is missing or PyPI unreachable.

use std::path::PathBuf;
use std::process::Command;

use kube_apiserver::testing::TestServer;

/// The cached client installation, installed on first use.
fn client_dir() -> anyhow::Result<Option<PathBuf>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/python-kubernetes");
    let marker = dir.join(".installed");
    if marker.exists() {
        return Ok(Some(dir));
    }
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("NOTE: python3 not installed; skipping the Python client test");
        return Ok(None);
    }
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(&dir)
        .arg("kubernetes")
        .status()?;
    if !status.success() {
        eprintln!("NOTE: `pip install kubernetes` failed (PyPI unreachable?); skipping");
        return Ok(None);
    }
    std::fs::write(&marker, b"")?;
    Ok(Some(dir))
}

#[tokio::test]
async fn python_client_crud_watch_and_create_from_yaml() -> anyhow::Result<()> {
    let Some(dir) = tokio::task::spawn_blocking(client_dir).await?? else {
        return Ok(());
    };
    let server = TestServer::start().await?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_test.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(&server.kubeconfig)
        .arg(server.dir())
        .env("PYTHONPATH", &dir)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("OK"), "{stdout}\n{stderr}");
    Ok(())
}
