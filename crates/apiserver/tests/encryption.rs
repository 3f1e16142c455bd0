//! Secrets encrypted at rest (`--encryption-provider-config`) end to end on the in-process
//! apiserver: with each provider a secret created through the API is stored with the
//! `k8s:enc:<provider>:v1:<key>:` prefix and no plaintext (read straight from the SQLite file, and
//! from a real etcd when the `etcd` binary is installed), while GET answers the plaintext; key
//! rotation (a new first key still reads old data, a rewrite re-encrypts with it); an
//! identity-first configuration reads encrypted data and writes plaintext; a bad configuration
//! stops the server from starting.

use std::path::Path;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube_apiserver::storage::{self, StorageConfig};
use kube_apiserver::testing::TestServer;
use kube_apiserver::StorageBackend;

mod support;

const SECRET_VALUE: &[u8] = b"correct-horse-battery-staple";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A base64 key of `len` bytes derived from `seed`.
fn key(seed: u8, len: usize) -> String {
    b64(&(0..len)
        .map(|i| seed.wrapping_add(i as u8))
        .collect::<Vec<_>>())
}

fn provider(name: &str, keys: &[(&str, String)]) -> String {
    let mut text = format!("  - {name}:\n      keys:\n");
    for (key_name, secret) in keys {
        text.push_str(&format!(
            "      - name: {key_name}\n        secret: {secret}\n"
        ));
    }
    text
}

fn config(providers: &[String]) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources:\n  - secrets\n  providers:\n{}",
        providers.concat()
    )
}

/// Starts a server on the SQLite database `dir/state.db` with `config` as its encryption
/// configuration.
async fn start(dir: &Path, name: &str, config: &str) -> anyhow::Result<TestServer> {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config)?;
    let db = dir.join("state.db");
    Ok(TestServer::start_with(move |o| {
        o.sqlite_path = db;
        o.encryption_provider_config = Some(path);
    })
    .await?)
}

/// The latest stored value of `key`, read from the SQLite file behind the server's back.
fn raw_sqlite(dir: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(conn.query_row(
        "SELECT value FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1",
        [key.as_bytes()],
        |row| row.get(0),
    )?)
}

fn secret(name: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some([("password".to_string(), ByteString(SECRET_VALUE.to_vec()))].into());
    s
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw value is encrypted with `prefix` and shows neither the data nor the JSON object.
fn assert_encrypted(raw: &[u8], prefix: &str) {
    assert!(
        raw.starts_with(prefix.as_bytes()),
        "expected prefix {prefix}, got {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(40)])
    );
    assert!(!contains(raw, SECRET_VALUE));
    assert!(!contains(raw, b64(SECRET_VALUE).as_bytes()));
    assert!(!contains(raw, b"\"kind\""));
}

async fn get_password(api: &Api<Secret>, name: &str) -> anyhow::Result<Vec<u8>> {
    let s = api.get(name).await?;
    Ok(s.data
        .and_then(|d| d.get("password").cloned())
        .map(|b| b.0)
        .unwrap_or_default())
}

#[tokio::test]
async fn each_provider_encrypts_secrets_and_get_answers_plaintext() -> anyhow::Result<()> {
    for (name, size) in [
        ("aesgcm", 32),
        ("aescbc", 32),
        ("secretbox", 32),
        ("aesgcm", 16),
    ] {
        let dir = tempfile::tempdir()?;
        let server = start(
            dir.path(),
            "enc",
            &config(&[provider(name, &[("key1", key(7, size))])]),
        )
        .await?;
        let client = server.client().await?;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
        secrets
            .create(&PostParams::default(), &secret("db"))
            .await?;
        let raw = raw_sqlite(dir.path(), "/registry/secrets/default/db")?;
        assert_encrypted(&raw, &format!("k8s:enc:{name}:v1:key1:"));
        assert_eq!(get_password(&secrets, "db").await?, SECRET_VALUE);
        let listed = secrets.list(&Default::default()).await?;
        assert_eq!(listed.items.len(), 1);

        // Resources the configuration does not name are stored as they are.
        let configmaps: Api<ConfigMap> = Api::namespaced(client, "default");
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("plain".into());
        configmaps.create(&PostParams::default(), &cm).await?;
        let raw = raw_sqlite(dir.path(), "/registry/configmaps/default/plain")?;
        assert!(raw.starts_with(b"{"), "configmaps are not encrypted");
    }
    Ok(())
}

#[tokio::test]
async fn rotation_reads_old_keys_and_rewrites_with_the_new_first_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let old = provider("aescbc", &[("key1", key(1, 32))]);
    let key_path = "/registry/secrets/default/db";
    {
        let server = start(dir.path(), "v1", &config(std::slice::from_ref(&old))).await?;
        let secrets: Api<Secret> = Api::namespaced(server.client().await?, "default");
        secrets
            .create(&PostParams::default(), &secret("db"))
            .await?;
        assert_encrypted(
            &raw_sqlite(dir.path(), key_path)?,
            "k8s:enc:aescbc:v1:key1:",
        );
    }

    // A new first key: old data still reads, and is flagged for rewriting.
    let rotated = provider("aescbc", &[("key2", key(2, 32)), ("key1", key(1, 32))]);
    {
        let server = start(dir.path(), "v2", &config(std::slice::from_ref(&rotated))).await?;
        let secrets: Api<Secret> = Api::namespaced(server.client().await?, "default");
        assert_eq!(get_password(&secrets, "db").await?, SECRET_VALUE);
        assert!(server.state.needs_reencryption(key_path).await);
        // Rewriting the object unchanged (`kubectl get -o json | kubectl replace -f -`) stores
        // it under the new first key.
        let current = secrets.get("db").await?;
        secrets
            .replace("db", &PostParams::default(), &current)
            .await?;
        assert_encrypted(
            &raw_sqlite(dir.path(), key_path)?,
            "k8s:enc:aescbc:v1:key2:",
        );
        assert!(!server.state.needs_reencryption(key_path).await);
        assert_eq!(get_password(&secrets, "db").await?, SECRET_VALUE);
    }

    // Dropping the old key is safe now; a config without key2 can no longer read the secret.
    {
        let only_old = start(dir.path(), "v3", &config(std::slice::from_ref(&old))).await?;
        let secrets: Api<Secret> = Api::namespaced(only_old.client().await?, "default");
        let err = secrets.get("db").await.expect_err("key2 is unknown");
        match err {
            kube::Error::Api(status) => assert_eq!(status.code, 500),
            other => panic!("unexpected error {other}"),
        }
    }

    // Identity first (decrypting to turn encryption off): encrypted data still reads, and new
    // writes are plaintext.
    let identity = "  - identity: {}\n".to_string();
    let server = start(dir.path(), "v4", &config(&[identity, rotated])).await?;
    let secrets: Api<Secret> = Api::namespaced(server.client().await?, "default");
    assert_eq!(get_password(&secrets, "db").await?, SECRET_VALUE);
    secrets
        .create(&PostParams::default(), &secret("plain"))
        .await?;
    let raw = raw_sqlite(dir.path(), "/registry/secrets/default/plain")?;
    assert!(raw.starts_with(b"{"));
    assert!(contains(&raw, b64(SECRET_VALUE).as_bytes()));
    assert!(server.state.needs_reencryption(key_path).await);
    Ok(())
}

#[tokio::test]
async fn a_bad_configuration_stops_the_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (name, text) in [
        (
            "short-key",
            config(&[provider("secretbox", &[("k", key(1, 16))])]),
        ),
        (
            "not-base64",
            config(&[provider("aescbc", &[("k", "%%%".into())])]),
        ),
        ("no-providers", config(&[])),
        ("garbage", "{{{ not yaml".to_string()),
    ] {
        let err = match start(dir.path(), name, &text).await {
            Ok(_) => panic!("{name}: the server started"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("encryption provider config"), "{name}: {err}");
        assert!(!err.contains('\n'), "{name}: one line: {err}");
    }
    let missing = dir.path().join("missing.yaml");
    let result = TestServer::start_with(|o| o.encryption_provider_config = Some(missing)).await;
    assert!(result.is_err());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// etcd

#[tokio::test]
async fn secrets_in_etcd_are_encrypted() -> anyhow::Result<()> {
    let Some(etcd) = support::etcd::start("the etcd encryption test").await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("enc.yaml");
    std::fs::write(
        &path,
        config(&[provider("aesgcm", &[("etcdkey", key(9, 32))])]),
    )?;
    let url = etcd.url.clone();
    let server = TestServer::start_with(move |o| {
        o.storage_backend = StorageBackend::Etcd3;
        o.etcd_servers = vec![url];
        o.encryption_provider_config = Some(path);
    })
    .await?;
    let secrets: Api<Secret> = Api::namespaced(server.client().await?, "default");
    secrets
        .create(&PostParams::default(), &secret("db"))
        .await?;
    assert_eq!(get_password(&secrets, "db").await?, SECRET_VALUE);
    let raw_store = storage::open(&StorageConfig::Etcd {
        endpoints: vec![etcd.url.clone()],
        prefix: "/registry".into(),
    })
    .await?;
    let raw = raw_store
        .get("/registry/secrets/default/db")
        .await?
        .expect("the secret is stored")
        .value;
    assert_encrypted(&raw, "k8s:enc:aesgcm:v1:etcdkey:");
    drop(server);
    Ok(())
}
