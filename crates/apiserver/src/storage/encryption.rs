//! Encryption at rest: `--encryption-provider-config` (apiserver.config.k8s.io/v1
//! `EncryptionConfiguration`) and [`EncryptedStorage`], a [`Storage`] wrapper that encrypts the
//! values of configured resources on the way in and decrypts them on the way out.
//!
//! As upstream: for each resource the providers are tried in order; the first one encrypts every
//! write, and a read picks the provider (and key) by the stored value's prefix
//! `k8s:enc:<provider>:v1:<keyname>:` (identity writes plain bytes, no prefix). Rotating a key is
//! adding a new first key and rewriting the objects. Providers: `aesgcm` (AES-GCM, a random
//! 12-byte nonce prepended, the storage key as additional data), `aescbc` (AES-CBC, PKCS#7, a
//! random 16-byte IV prepended), `secretbox` (XSalsa20-Poly1305, a random 24-byte nonce
//! prepended) and `identity`.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Deserialize;

use super::interface::{Event, KeyValue, ListOptions, ListResult, Revision, Storage, StorageError};

/// The prefix every encrypted value starts with.
const ENC_PREFIX: &str = "k8s:enc:";

/// Why an encryption configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading encryption provider config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid EncryptionConfiguration.
    #[error("invalid encryption provider config: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    resources: Vec<RawResourceConfig>,
}

#[derive(Deserialize)]
struct RawResourceConfig {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    providers: Vec<RawProvider>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    aesgcm: Option<RawKeys>,
    aescbc: Option<RawKeys>,
    secretbox: Option<RawKeys>,
    identity: Option<serde_yaml_ng::Value>,
    kms: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
struct RawKeys {
    #[serde(default)]
    keys: Vec<RawKey>,
}

#[derive(Deserialize)]
struct RawKey {
    name: String,
    secret: String,
}

/// One AES-CBC key, by size.
#[derive(Clone)]
enum CbcKey {
    Aes128([u8; 16]),
    Aes192([u8; 24]),
    Aes256([u8; 32]),
}

/// One key's cipher.
#[derive(Clone)]
enum Cipher {
    Gcm(Arc<ring::aead::LessSafeKey>),
    Cbc(CbcKey),
    Secretbox([u8; 32]),
}

/// One named key of a provider, with its value prefix.
#[derive(Clone)]
struct NamedKey {
    /// `k8s:enc:<provider>:v1:<name>:`.
    prefix: Vec<u8>,
    cipher: Cipher,
}

/// A provider: its keys in order, or identity.
#[derive(Clone)]
enum Provider {
    Keys(Vec<NamedKey>),
    Identity,
}

/// The providers of one set of resources.
#[derive(Clone)]
struct Rule {
    /// Storage key prefixes (with a trailing slash) the rule covers.
    prefixes: Vec<String>,
    providers: Vec<Provider>,
}

/// A parsed EncryptionConfiguration.
#[derive(Clone)]
pub struct EncryptionConfig {
    rules: Vec<Rule>,
}

impl std::fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixes: Vec<&String> = self.rules.iter().flat_map(|r| &r.prefixes).collect();
        f.debug_struct("EncryptionConfig")
            .field("prefixes", &prefixes)
            .finish_non_exhaustive()
    }
}

/// The storage key prefix of a configured resource name (`secrets`, `deployments.apps`,
/// `*.apps`, `*.*`).
fn resource_prefix(resource: &str) -> Result<String, ConfigError> {
    let resource = resource.trim();
    if resource == "*.*" {
        return Ok("/registry/".into());
    }
    if resource.is_empty() || resource.contains('/') {
        return Err(invalid(format!("invalid resource {resource:?}")));
    }
    match resource.split_once('.') {
        None => Ok(format!("/registry/{resource}/")),
        Some(("*", "")) => Err(invalid(
            "resource \"*.\" (all core resources) is not supported; list them by name",
        )),
        Some(("*", group)) => Ok(format!("/registry/{group}/")),
        Some((plural, _)) if plural.contains('*') => {
            Err(invalid(format!("invalid resource {resource:?}")))
        }
        Some((plural, group)) => Ok(format!("/registry/{group}/{plural}/")),
    }
}

fn parse_keys(provider: &str, raw: RawKeys) -> Result<Provider, ConfigError> {
    if raw.keys.is_empty() {
        return Err(invalid(format!("{provider}: at least one key is required")));
    }
    let mut keys = Vec::new();
    for key in raw.keys {
        if key.name.is_empty() || key.name.contains(':') {
            return Err(invalid(format!(
                "{provider}: invalid key name {:?}",
                key.name
            )));
        }
        let secret = base64::engine::general_purpose::STANDARD
            .decode(key.secret.trim())
            .map_err(|e| {
                invalid(format!(
                    "{provider}: key {:?}: secret is not valid base64: {e}",
                    key.name
                ))
            })?;
        let bad_size = || {
            invalid(format!(
                "{provider}: key {:?} has an invalid size of {} bytes",
                key.name,
                secret.len()
            ))
        };
        let cipher = match provider {
            "aesgcm" => {
                let algorithm = match secret.len() {
                    16 => &ring::aead::AES_128_GCM,
                    32 => &ring::aead::AES_256_GCM,
                    _ => return Err(bad_size()),
                };
                let unbound =
                    ring::aead::UnboundKey::new(algorithm, &secret).map_err(|_| bad_size())?;
                Cipher::Gcm(Arc::new(ring::aead::LessSafeKey::new(unbound)))
            }
            "aescbc" => Cipher::Cbc(match secret.len() {
                16 => CbcKey::Aes128(secret.as_slice().try_into().map_err(|_| bad_size())?),
                24 => CbcKey::Aes192(secret.as_slice().try_into().map_err(|_| bad_size())?),
                32 => CbcKey::Aes256(secret.as_slice().try_into().map_err(|_| bad_size())?),
                _ => return Err(bad_size()),
            }),
            _ => Cipher::Secretbox(secret.as_slice().try_into().map_err(|_| bad_size())?),
        };
        keys.push(NamedKey {
            prefix: format!("{ENC_PREFIX}{provider}:v1:{}:", key.name).into_bytes(),
            cipher,
        });
    }
    Ok(Provider::Keys(keys))
}

impl EncryptionConfig {
    /// Reads and parses the file `--encryption-provider-config` names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses an EncryptionConfiguration (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig =
            serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string().replace('\n', " ")))?;
        if raw.kind != "EncryptionConfiguration" {
            return Err(invalid(format!(
                "kind is {:?}, expected \"EncryptionConfiguration\"",
                raw.kind
            )));
        }
        if raw.api_version != "apiserver.config.k8s.io/v1" {
            return Err(invalid(format!(
                "apiVersion is {:?}, expected \"apiserver.config.k8s.io/v1\"",
                raw.api_version
            )));
        }
        let mut rules = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for resource_config in raw.resources {
            if resource_config.resources.is_empty() {
                return Err(invalid("resources: at least one resource is required"));
            }
            if resource_config.providers.is_empty() {
                return Err(invalid("providers: at least one provider is required"));
            }
            let mut prefixes = Vec::new();
            for resource in &resource_config.resources {
                let prefix = resource_prefix(resource)?;
                if !seen.insert(prefix.clone()) {
                    return Err(invalid(format!("resource {resource:?} is listed twice")));
                }
                prefixes.push(prefix);
            }
            let mut providers = Vec::new();
            for raw_provider in resource_config.providers {
                let RawProvider {
                    aesgcm,
                    aescbc,
                    secretbox,
                    identity,
                    kms,
                } = raw_provider;
                let set = [
                    aesgcm.is_some(),
                    aescbc.is_some(),
                    secretbox.is_some(),
                    identity.is_some(),
                    kms.is_some(),
                ]
                .iter()
                .filter(|set| **set)
                .count();
                if set != 1 {
                    return Err(invalid(
                        "each provider must name exactly one of aesgcm, aescbc, secretbox, identity",
                    ));
                }
                let provider = if let Some(keys) = aesgcm {
                    parse_keys("aesgcm", keys)?
                } else if let Some(keys) = aescbc {
                    parse_keys("aescbc", keys)?
                } else if let Some(keys) = secretbox {
                    parse_keys("secretbox", keys)?
                } else if identity.is_some() {
                    Provider::Identity
                } else {
                    return Err(invalid("the kms provider is not supported"));
                };
                providers.push(provider);
            }
            rules.push(Rule {
                prefixes,
                providers,
            });
        }
        Ok(EncryptionConfig { rules })
    }

    /// The providers for `key`: the first rule with the longest matching prefix.
    fn providers(&self, key: &str) -> Option<&[Provider]> {
        self.rules
            .iter()
            .flat_map(|rule| rule.prefixes.iter().map(move |p| (p, rule)))
            .filter(|(prefix, _)| key.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, rule)| rule.providers.as_slice())
    }

    /// Encrypts `value` for `key` with the first provider of its rule (unchanged when no rule
    /// covers `key`).
    pub fn encrypt(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let Some(providers) = self.providers(key) else {
            return Ok(value);
        };
        match providers.first() {
            Some(Provider::Keys(keys)) => match keys.first() {
                Some(named) => seal(named, key, &value),
                None => Ok(value),
            },
            Some(Provider::Identity) | None => Ok(value),
        }
    }

    /// Decrypts the stored `value` of `key` with the provider and key its prefix names.
    pub fn decrypt(&self, key: &str, value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let Some(providers) = self.providers(key) else {
            return Ok(value);
        };
        let encrypted = value.starts_with(ENC_PREFIX.as_bytes());
        for provider in providers {
            match provider {
                Provider::Identity if !encrypted => return Ok(value),
                Provider::Identity => {}
                Provider::Keys(keys) => {
                    for named in keys {
                        if let Some(data) = value.strip_prefix(named.prefix.as_slice()) {
                            return open(named, key, data);
                        }
                    }
                }
            }
        }
        Err(transform_error(
            key,
            if encrypted {
                "no configured key matches the stored value's prefix"
            } else {
                "the stored value is not encrypted and identity is not a configured provider"
            },
        ))
    }
}

fn transform_error(key: &str, message: &str) -> StorageError {
    StorageError::Backend(format!("unable to transform key {key:?}: {message}"))
}

fn random<const N: usize>(key: &str) -> Result<[u8; N], StorageError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| transform_error(key, "no randomness available"))?;
    Ok(bytes)
}

fn seal(named: &NamedKey, key: &str, plaintext: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = named.prefix.clone();
    match &named.cipher {
        Cipher::Gcm(cipher) => {
            let nonce = random::<{ ring::aead::NONCE_LEN }>(key)?;
            let mut data = plaintext.to_vec();
            cipher
                .seal_in_place_append_tag(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::from(key.as_bytes()),
                    &mut data,
                )
                .map_err(|_| transform_error(key, "AES-GCM encryption failed"))?;
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&data);
        }
        Cipher::Cbc(cbc_key) => {
            use cbc::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
            let iv = random::<16>(key)?;
            let data = match cbc_key {
                CbcKey::Aes128(k) => cbc::Encryptor::<aes::Aes128>::new(k.into(), &iv.into())
                    .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
                CbcKey::Aes192(k) => cbc::Encryptor::<aes::Aes192>::new(k.into(), &iv.into())
                    .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
                CbcKey::Aes256(k) => cbc::Encryptor::<aes::Aes256>::new(k.into(), &iv.into())
                    .encrypt_padded_vec_mut::<Pkcs7>(plaintext),
            };
            out.extend_from_slice(&iv);
            out.extend_from_slice(&data);
        }
        Cipher::Secretbox(k) => {
            use crypto_secretbox::aead::{Aead, KeyInit};
            let nonce = random::<24>(key)?;
            let data = crypto_secretbox::XSalsa20Poly1305::new(k.into())
                .encrypt(&nonce.into(), plaintext)
                .map_err(|_| transform_error(key, "secretbox encryption failed"))?;
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn open(named: &NamedKey, key: &str, data: &[u8]) -> Result<Vec<u8>, StorageError> {
    match &named.cipher {
        Cipher::Gcm(cipher) => {
            let (nonce, sealed) = split::<{ ring::aead::NONCE_LEN }>(key, data)?;
            let mut buffer = sealed.to_vec();
            let plaintext = cipher
                .open_in_place(
                    ring::aead::Nonce::assume_unique_for_key(nonce),
                    ring::aead::Aad::from(key.as_bytes()),
                    &mut buffer,
                )
                .map_err(|_| transform_error(key, "AES-GCM decryption failed"))?;
            Ok(plaintext.to_vec())
        }
        Cipher::Cbc(cbc_key) => {
            use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
            let (iv, sealed) = split::<16>(key, data)?;
            let fail = |_| transform_error(key, "AES-CBC decryption failed");
            match cbc_key {
                CbcKey::Aes128(k) => cbc::Decryptor::<aes::Aes128>::new(k.into(), &iv.into())
                    .decrypt_padded_vec_mut::<Pkcs7>(sealed)
                    .map_err(fail),
                CbcKey::Aes192(k) => cbc::Decryptor::<aes::Aes192>::new(k.into(), &iv.into())
                    .decrypt_padded_vec_mut::<Pkcs7>(sealed)
                    .map_err(fail),
                CbcKey::Aes256(k) => cbc::Decryptor::<aes::Aes256>::new(k.into(), &iv.into())
                    .decrypt_padded_vec_mut::<Pkcs7>(sealed)
                    .map_err(fail),
            }
        }
        Cipher::Secretbox(k) => {
            use crypto_secretbox::aead::{Aead, KeyInit};
            let (nonce, sealed) = split::<24>(key, data)?;
            crypto_secretbox::XSalsa20Poly1305::new(k.into())
                .decrypt(&nonce.into(), sealed)
                .map_err(|_| transform_error(key, "secretbox decryption failed"))
        }
    }
}

fn split<'a, const N: usize>(
    key: &str,
    data: &'a [u8],
) -> Result<([u8; N], &'a [u8]), StorageError> {
    if data.len() < N {
        return Err(transform_error(key, "the stored value is too short"));
    }
    let (head, rest) = data.split_at(N);
    let head: [u8; N] = head
        .try_into()
        .map_err(|_| transform_error(key, "the stored value is too short"))?;
    Ok((head, rest))
}

/// A [`Storage`] that encrypts values on write and decrypts them on read.
pub struct EncryptedStorage {
    inner: Arc<dyn Storage>,
    config: Arc<EncryptionConfig>,
}

impl EncryptedStorage {
    /// Wraps `inner` with `config`.
    pub fn new(inner: Arc<dyn Storage>, config: EncryptionConfig) -> Self {
        EncryptedStorage {
            inner,
            config: Arc::new(config),
        }
    }

    /// Whether the stored value of `key` was not written by the first provider and key (it was
    /// encrypted with an older key, or is plaintext): an update must then rewrite it even when
    /// the object is unchanged, as upstream's stale-transformer check does for key rotation.
    pub async fn needs_rewrite(&self, key: &str) -> Result<bool, StorageError> {
        let Some(kv) = self.inner.get(key).await? else {
            return Ok(false);
        };
        let Some(providers) = self.config.providers(key) else {
            return Ok(false);
        };
        Ok(match providers.first() {
            Some(Provider::Keys(keys)) => keys
                .first()
                .is_some_and(|first| !kv.value.starts_with(&first.prefix)),
            Some(Provider::Identity) => kv.value.starts_with(ENC_PREFIX.as_bytes()),
            None => false,
        })
    }

    fn decrypt_kv(config: &EncryptionConfig, mut kv: KeyValue) -> Result<KeyValue, StorageError> {
        kv.value = config.decrypt(&kv.key, std::mem::take(&mut kv.value))?;
        Ok(kv)
    }
}

#[async_trait::async_trait]
impl Storage for EncryptedStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        match self.inner.get(key).await? {
            Some(kv) => Ok(Some(Self::decrypt_kv(&self.config, kv)?)),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult, StorageError> {
        let mut result = self.inner.list(prefix, opts).await?;
        result.items = std::mem::take(&mut result.items)
            .into_iter()
            .map(|kv| Self::decrypt_kv(&self.config, kv))
            .collect::<Result<_, _>>()?;
        Ok(result)
    }

    async fn count(&self, prefix: &str) -> Result<i64, StorageError> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision, StorageError> {
        let value = self.config.encrypt(key, value)?;
        self.inner.create(key, value).await
    }

    async fn update(
        &self,
        key: &str,
        expected: Revision,
        value: Vec<u8>,
    ) -> Result<Revision, StorageError> {
        let value = self.config.encrypt(key, value)?;
        self.inner.update(key, expected, value).await
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StorageError> {
        let (kv, revision) = self.inner.delete(key, expected).await?;
        Ok((Self::decrypt_kv(&self.config, kv)?, revision))
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<Event, StorageError>>, StorageError> {
        let config = self.config.clone();
        let stream = self.inner.watch(prefix, after).await?;
        Ok(stream
            .map(move |event| {
                let mut event = event?;
                event.kv = Self::decrypt_kv(&config, event.kv)?;
                event.prev = event
                    .prev
                    .map(|prev| Self::decrypt_kv(&config, prev))
                    .transpose()?;
                Ok(event)
            })
            .boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        self.inner.compact(revision).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(providers: &str) -> EncryptionConfig {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, deployments.apps]\n  providers:\n{providers}"
        );
        EncryptionConfig::parse(&text).expect("valid config")
    }

    const K32: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes
    const K16: &str = "MTIzNDU2Nzg5MGFiY2RlZg=="; // 16 bytes

    #[test]
    fn every_provider_round_trips_with_its_prefix() {
        for (provider, secret) in [
            ("aesgcm", K32),
            ("aesgcm", K16),
            ("aescbc", K32),
            ("aescbc", K16),
            ("secretbox", K32),
        ] {
            let c = config(&format!(
                "  - {provider}:\n      keys:\n      - name: k1\n        secret: {secret}\n"
            ));
            let key = "/registry/secrets/default/s";
            let sealed = c.encrypt(key, b"plain-data".to_vec()).expect("encrypt");
            let prefix = format!("k8s:enc:{provider}:v1:k1:");
            assert!(sealed.starts_with(prefix.as_bytes()), "{provider}");
            assert!(!sealed.windows(10).any(|w| w == b"plain-data"));
            assert_eq!(c.decrypt(key, sealed).expect("decrypt"), b"plain-data");
        }
    }

    #[test]
    fn aesgcm_binds_the_value_to_its_key() {
        let c = config(&format!(
            "  - aesgcm:\n      keys:\n      - name: k1\n        secret: {K32}\n"
        ));
        let sealed = c
            .encrypt("/registry/secrets/default/a", b"x".to_vec())
            .expect("encrypt");
        assert!(c.decrypt("/registry/secrets/default/b", sealed).is_err());
    }

    #[test]
    fn other_resources_pass_through_and_groups_map_to_their_prefix() {
        let c = config(&format!(
            "  - aescbc:\n      keys:\n      - name: k1\n        secret: {K32}\n"
        ));
        let plain = c
            .encrypt("/registry/configmaps/default/c", b"v".to_vec())
            .expect("encrypt");
        assert_eq!(plain, b"v");
        let sealed = c
            .encrypt("/registry/apps/deployments/default/d", b"v".to_vec())
            .expect("encrypt");
        assert!(sealed.starts_with(b"k8s:enc:aescbc:v1:k1:"));
    }

    #[test]
    fn identity_first_reads_encrypted_and_plain_data() {
        let enc = config(&format!(
            "  - secretbox:\n      keys:\n      - name: k1\n        secret: {K32}\n"
        ));
        let sealed = enc
            .encrypt("/registry/secrets/d/s", b"v".to_vec())
            .expect("encrypt");
        let id_first = config(&format!(
            "  - identity: {{}}\n  - secretbox:\n      keys:\n      - name: k1\n        secret: {K32}\n"
        ));
        assert_eq!(
            id_first
                .decrypt("/registry/secrets/d/s", sealed)
                .expect("decrypt"),
            b"v"
        );
        assert_eq!(
            id_first
                .encrypt("/registry/secrets/d/s", b"v".to_vec())
                .expect("encrypt"),
            b"v"
        );
        // Without identity, plaintext is refused.
        assert!(enc
            .decrypt("/registry/secrets/d/s", b"{}".to_vec())
            .is_err());
    }

    #[tokio::test]
    async fn the_wrapper_rotates_keys_on_rewrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw: Arc<dyn Storage> = Arc::new(
            crate::storage::SqliteStorage::open(&dir.path().join("db"))
                .await
                .expect("opens"),
        );
        let key = "/registry/secrets/d/s";
        let k1 = format!("      - name: k1\n        secret: {K32}\n");
        let k2 = format!("      - name: k2\n        secret: {K16}\n");
        let old = EncryptedStorage::new(
            raw.clone(),
            config(&format!("  - aescbc:\n      keys:\n{k1}")),
        );
        let revision = old.create(key, b"v1".to_vec()).await.expect("create");
        let new = EncryptedStorage::new(
            raw.clone(),
            config(&format!(
                "  - aesgcm:\n      keys:\n{k2}  - aescbc:\n      keys:\n{k1}"
            )),
        );
        let kv = new.get(key).await.expect("get").expect("exists");
        assert_eq!(kv.value, b"v1");
        assert!(new.needs_rewrite(key).await.expect("checks"));
        let mut watch = new.watch(key, revision).await.expect("watch");
        new.update(key, kv.mod_revision, b"v2".to_vec())
            .await
            .expect("update");
        let stored = raw.get(key).await.expect("get").expect("exists").value;
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:k2:"));
        assert!(!new.needs_rewrite(key).await.expect("checks"));
        let event = watch.next().await.expect("an event").expect("decrypts");
        assert_eq!(event.kv.value, b"v2");
        assert_eq!(event.prev.map(|p| p.value), Some(b"v1".to_vec()));
        let listed = new
            .list("/registry/secrets/", &ListOptions::default())
            .await
            .expect("list");
        assert_eq!(listed.items[0].value, b"v2");
        // The old configuration does not know the key the value is now written with.
        assert!(old.get(key).await.is_err());
        let (deleted, _) = new.delete(key, None).await.expect("delete");
        assert_eq!(deleted.value, b"v2");
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            "kind: Nope\napiVersion: apiserver.config.k8s.io/v1\n".to_string(),
            format!("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - name: k\n        secret: {K16}x\n"),
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: k\n        secret: MTIzNDU2Nzg5MGFiY2RlZg==\n".to_string(),
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers: []\n".to_string(),
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys: []\n".to_string(),
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - rot13: {}\n".to_string(),
        ];
        for text in bad {
            assert!(EncryptionConfig::parse(&text).is_err(), "{text}");
        }
    }

    #[test]
    fn truncated_or_tampered_values_fail_cleanly() {
        let c = config(&format!(
            "  - aescbc:\n      keys:\n      - name: k1\n        secret: {K32}\n  - aesgcm:\n      keys:\n      - name: k2\n        secret: {K32}\n"
        ));
        for value in [
            b"k8s:enc:aescbc:v1:k1:".to_vec(),
            b"k8s:enc:aescbc:v1:k1:0123456789abcdef0123".to_vec(),
            b"k8s:enc:aesgcm:v1:k2:short".to_vec(),
            b"k8s:enc:aesgcm:v1:other:0123456789abcdef".to_vec(),
        ] {
            assert!(c.decrypt("/registry/secrets/d/s", value).is_err());
        }
    }
}
