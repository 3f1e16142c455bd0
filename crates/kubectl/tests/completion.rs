//! `kubectl completion bash` loaded into a real bash: the completion function, driven the way
//! bash drives it (`COMP_LINE`, `COMP_POINT`, `COMP_WORDS`, `COMP_CWORD`), completes commands and
//! flags from our command tree and resource types and object names from an in-process apiserver.

use std::path::Path;

use kube::api::{Api, PostParams};
use kube_apiserver::testing::TestServer;

const OURS: &str = env!("CARGO_BIN_EXE_kubectl");

/// What the completion function offers for `line` (the cursor at its end).
async fn complete(script: &Path, kubeconfig: &Path, line: &str) -> anyhow::Result<Vec<String>> {
    let driver = r#"
source "$SCRIPT"
COMP_LINE="$LINE"
COMP_POINT=${#LINE}
read -r -a COMP_WORDS <<< "$LINE"
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
if [[ "$LINE" =~ [[:space:]]$ ]]; then COMP_WORDS+=(""); COMP_CWORD=$((COMP_CWORD + 1)); fi
__kubectl_complete
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let output = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(driver)
        .env("SCRIPT", script)
        .env("LINE", format!("{OURS} {line}"))
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "bash failed: {output:?}");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_completion_follows_commands_and_the_server() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(server.client().await?, "default");
    for name in ["alpha", "beta"] {
        let cm = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))?;
        configmaps.create(&PostParams::default(), &cm).await?;
    }
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("kubectl.bash");
    let generated = tokio::process::Command::new(OURS)
        .args(["completion", "bash"])
        .output()
        .await?;
    anyhow::ensure!(generated.status.success(), "completion bash failed");
    std::fs::write(&script, &generated.stdout)?;
    let syntax = tokio::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .await?;
    anyhow::ensure!(syntax.success(), "the bash script does not parse");

    let kc = &server.kubeconfig;
    assert_eq!(complete(&script, kc, "ro").await?, vec!["rollout"]);
    assert_eq!(
        complete(&script, kc, "set ").await?,
        vec!["env", "image", "resources"]
    );
    assert_eq!(
        complete(&script, kc, "autoscale --m").await?,
        vec!["--max", "--min"]
    );
    let types = complete(&script, kc, "get ").await?;
    for wanted in [
        "configmaps",
        "deployments.apps",
        "horizontalpodautoscalers.autoscaling",
    ] {
        assert!(types.iter().any(|t| t == wanted), "{wanted} in {types:?}");
    }
    let names = complete(&script, kc, "get configmaps ").await?;
    assert!(
        names.iter().any(|n| n == "alpha") && names.iter().any(|n| n == "beta"),
        "{names:?}"
    );
    assert_eq!(
        complete(&script, kc, "get configmaps a").await?,
        vec!["alpha"]
    );
    assert_eq!(
        complete(&script, kc, "describe cm/al").await?,
        vec!["cm/alpha"]
    );
    let namespaces = complete(&script, kc, "get pods -n kube-").await?;
    assert!(
        namespaces.iter().any(|n| n == "kube-system"),
        "{namespaces:?}"
    );
    assert_eq!(complete(&script, kc, "get pods -o ya").await?, vec!["yaml"]);
    Ok(())
}
