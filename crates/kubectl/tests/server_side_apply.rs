//! Our kubectl's `apply --server-side [--force-conflicts] [--field-manager]` and
//! `--dry-run=server|client` on apply, create, patch and delete, against the in-process
//! apiserver.

use std::path::Path;

use clap::Parser;
use kube_apiserver::testing::TestServer;
use kubectl::session::{Io, Session};
use kubectl::Options;

struct Run {
    out: String,
    err: String,
    ok: bool,
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Run> {
    let mut argv = vec![
        "kubectl".to_string(),
        format!("--kubeconfig={}", kubeconfig.display()),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let options = Options::try_parse_from(&argv)?;
    let (io, out, err) = Io::buffers();
    let mut session = Session::new(options.global.clone(), io);
    let result = kubectl::execute(&mut session, options.command).await;
    let mut err_text = err.contents();
    if let Err(e) = &result {
        err_text.push_str(&e.report());
    }
    Ok(Run {
        out: out.contents(),
        err: err_text,
        ok: result.is_ok(),
    })
}

fn manifest(replicas: u32) -> String {
    format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc\nspec:\n  replicas: {replicas}\n  selector: {{app: rc}}\n  template:\n    metadata:\n      labels: {{app: rc}}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.35\n"
    )
}

#[tokio::test]
async fn server_side_apply_conflicts_force_and_dry_runs() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let kc = server.kubeconfig.clone();
    let file = server.dir().join("rc.yaml");
    let path = file.display().to_string();
    std::fs::write(&file, manifest(1))?;

    let dry = kubectl(
        &kc,
        &["apply", "--server-side", "--dry-run=server", "-f", &path],
    )
    .await?;
    assert!(dry.ok, "{}", dry.err);
    assert_eq!(
        dry.out,
        "replicationcontroller/rc serverside-applied (server dry run)\n"
    );
    let missing = kubectl(&kc, &["get", "rc", "rc"]).await?;
    assert!(!missing.ok, "server dry run stored nothing");

    let run = kubectl(&kc, &["apply", "--server-side", "-f", &path]).await?;
    assert!(run.ok, "{}", run.err);
    assert_eq!(run.out, "replicationcontroller/rc serverside-applied\n");
    std::fs::write(&file, manifest(2))?;
    let conflict = kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &path,
        ],
    )
    .await?;
    assert!(!conflict.ok);
    assert!(
        conflict
            .err
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{}",
        conflict.err
    );
    let forced = kubectl(
        &kc,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            &path,
        ],
    )
    .await?;
    assert!(forced.ok, "{}", forced.err);
    let replicas = kubectl(&kc, &["get", "rc", "rc", "-o", "jsonpath={.spec.replicas}"]).await?;
    assert_eq!(replicas.out, "2");

    let bad = kubectl(&kc, &["apply", "--force-conflicts", "-f", &path]).await?;
    assert!(!bad.ok);

    let patched = kubectl(
        &kc,
        &[
            "patch",
            "rc",
            "rc",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":5}}"#,
            "--dry-run=server",
        ],
    )
    .await?;
    assert!(patched.ok, "{}", patched.err);
    assert!(
        patched.out.ends_with("(server dry run)\n"),
        "{}",
        patched.out
    );
    let deleted = kubectl(&kc, &["delete", "rc", "rc", "--dry-run=server"]).await?;
    assert!(deleted.ok, "{}", deleted.err);
    assert_eq!(
        deleted.out,
        "replicationcontroller \"rc\" deleted (server dry run)\n"
    );
    let client = kubectl(&kc, &["delete", "rc", "rc", "--dry-run=client"]).await?;
    assert_eq!(
        client.out,
        "replicationcontroller \"rc\" deleted (dry run)\n"
    );
    let replicas = kubectl(&kc, &["get", "rc", "rc", "-o", "jsonpath={.spec.replicas}"]).await?;
    assert_eq!(replicas.out, "2", "dry runs changed nothing");

    let cm = server.dir().join("cm.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    )?;
    let cm = cm.display().to_string();
    let created = kubectl(&kc, &["create", "-f", &cm, "--dry-run=server"]).await?;
    assert_eq!(
        created.out, "configmap/c created (server dry run)\n",
        "{}",
        created.err
    );
    let applied = kubectl(&kc, &["apply", "-f", &cm, "--dry-run=client"]).await?;
    assert_eq!(
        applied.out, "configmap/c created (dry run)\n",
        "{}",
        applied.err
    );
    assert!(!kubectl(&kc, &["get", "cm", "c"]).await?.ok);
    Ok(())
}
