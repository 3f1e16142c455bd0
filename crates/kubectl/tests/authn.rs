//! Our kubectl's authentication commands against the in-process apiserver with
//! service-account keys: `create token` (the token authenticates as the service account),
//! `auth whoami` (as the admin, as a token, and impersonating with `--as`/`--as-group`).

use std::path::{Path, PathBuf};

use base64::Engine;
use clap::Parser;
use kube_apiserver::testing::TestServer;
use kubectl::session::{Io, Session};
use kubectl::Options;

struct Run {
    out: String,
    err: String,
    code: i32,
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
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            err_text.push_str(&e.report());
            e.exit_code()
        }
    };
    Ok(Run {
        out: out.contents(),
        err: err_text,
        code,
    })
}

fn token_kubeconfig(server: &TestServer, token: &str) -> anyhow::Result<PathBuf> {
    let ca = base64::engine::general_purpose::STANDARD.encode(&server.pki.ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: u\n    namespace: default\ncurrent-context: test\n",
        server.url
    );
    let path = server.dir().join("token.kubeconfig");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[tokio::test]
async fn create_token_whoami_and_impersonation() -> anyhow::Result<()> {
    let keys = tempfile::tempdir()?;
    let key = rcgen::KeyPair::generate()?;
    std::fs::write(keys.path().join("sa.key"), key.serialize_pem())?;
    std::fs::write(keys.path().join("sa.pub"), key.public_key_pem())?;
    let server = TestServer::start_with(|o| {
        o.service_account_key_file = vec![keys.path().join("sa.pub")];
        o.service_account_signing_key_file = Some(keys.path().join("sa.key"));
    })
    .await?;
    let admin = &server.kubeconfig;

    let r = kubectl(admin, &["auth", "whoami"]).await?;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("kubernetes-admin"), "{}", r.out);

    let r = kubectl(admin, &["create", "serviceaccount", "robot"]).await?;
    assert_eq!(r.code, 0, "{}", r.err);
    let r = kubectl(admin, &["create", "token", "robot", "--duration=15m"]).await?;
    assert_eq!(r.code, 0, "{}", r.err);
    let token = r.out.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let r = kubectl(
        &token_kubeconfig(&server, &token)?,
        &["auth", "whoami", "-o", "json"],
    )
    .await?;
    assert_eq!(r.code, 0, "{}", r.err);
    let review: serde_json::Value = serde_json::from_str(&r.out)?;
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:serviceaccount:default:robot"
    );

    let r = kubectl(admin, &["create", "token", "ghost"]).await?;
    assert_ne!(r.code, 0);
    assert!(
        r.err
            .contains("failed to create token: serviceaccounts \"ghost\" not found"),
        "{}",
        r.err
    );

    let r = kubectl(
        admin,
        &["auth", "whoami", "--as", "carol", "--as-group", "devs"],
    )
    .await?;
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("carol"), "{}", r.out);
    assert!(r.out.contains("[devs system:authenticated]"), "{}", r.out);
    Ok(())
}
