//! Registry credentials from `imagePullSecrets`: parsing `.dockerconfigjson` (and the older
//! `.dockercfg`) and picking the entries that match an image, most specific first, as the
//! upstream kubelet's keyring does.

use base64::Engine as _;

use super::registry::RegistryCredential;

/// The hosts that all mean Docker Hub.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// One entry of a docker config: where it applies and the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringEntry {
    /// Registry host (with port), lower case, Docker Hub as `docker.io`.
    pub host: String,
    /// Repository path prefix (`""` = the whole registry).
    pub path: String,
    /// The credential.
    pub credential: RegistryCredential,
}

/// Why a docker config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Not JSON, or not an object of objects.
    #[error("invalid docker config: {0}")]
    Invalid(String),
}

fn canonical_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB.contains(&host.as_str()) {
        "docker.io".to_string()
    } else {
        host
    }
}

/// Splits a config key (`https://index.docker.io/v1/`, `127.0.0.1:5000`, `r.io/team`) into a
/// canonical host and a path prefix.
fn split_key(key: &str) -> (String, String) {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = key.split_once('/').unwrap_or((key, ""));
    let host = canonical_host(host);
    let path = path.trim_matches('/');
    // Docker Hub's historic key carries the API version, not a repository.
    let path = if host == "docker.io" && (path == "v1" || path == "v2") {
        ""
    } else {
        path
    };
    (host, path.to_string())
}

/// Parses a `.dockerconfigjson` (`{"auths": {KEY: ENTRY}}`) or `.dockercfg` (`{KEY: ENTRY}`)
/// document. An entry has `username` + `password`, or `auth` = base64(`user:password`); entries
/// with neither are skipped.
pub fn parse_docker_config(bytes: &[u8]) -> Result<Vec<KeyringEntry>, CredentialError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| CredentialError::Invalid(e.to_string()))?;
    let auths = value.get("auths").unwrap_or(&value);
    let auths = auths
        .as_object()
        .ok_or_else(|| CredentialError::Invalid("auths is not an object".to_string()))?;
    let mut entries = Vec::new();
    for (key, entry) in auths {
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let credential = match (field("username"), field("password"), field("auth")) {
            (Some(username), Some(password), _) => RegistryCredential { username, password },
            (_, _, Some(auth)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| CredentialError::Invalid(format!("auth of {key}: {e}")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| CredentialError::Invalid(format!("auth of {key}: not UTF-8")))?;
                let Some((username, password)) = decoded.split_once(':') else {
                    return Err(CredentialError::Invalid(format!(
                        "auth of {key}: not user:password"
                    )));
                };
                RegistryCredential {
                    username: username.to_string(),
                    password: password.to_string(),
                }
            }
            _ => continue,
        };
        let (host, path) = split_key(key);
        entries.push(KeyringEntry {
            host,
            path,
            credential,
        });
    }
    Ok(entries)
}

/// The credentials of `entries` that apply to the normalised image `name`, most specific
/// (longest path) first, without duplicates.
pub fn credentials_for(name: &str, entries: &[KeyringEntry]) -> Vec<RegistryCredential> {
    let (host, rest) = name.split_once('/').unwrap_or((name, ""));
    let host = canonical_host(host);
    let repository = rest.split(['@', ':']).next().unwrap_or(rest);
    let mut matching: Vec<&KeyringEntry> = entries
        .iter()
        .filter(|e| e.host == host)
        .filter(|e| {
            e.path.is_empty()
                || repository == e.path
                || repository.starts_with(&format!("{}/", e.path))
        })
        .collect();
    matching.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
    let mut out: Vec<RegistryCredential> = Vec::new();
    for entry in matching {
        if !out.contains(&entry.credential) {
            out.push(entry.credential.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(user: &str) -> RegistryCredential {
        RegistryCredential {
            username: user.into(),
            password: format!("{user}-pw"),
        }
    }

    #[test]
    fn dockerconfigjson_entries_parse_with_user_password_or_auth() {
        let auth = base64::engine::general_purpose::STANDARD.encode("bob:bob-pw");
        let doc = format!(
            r#"{{"auths":{{"127.0.0.1:5000":{{"username":"alice","password":"alice-pw"}},
                 "https://index.docker.io/v1/":{{"auth":"{auth}"}},
                 "empty.io":{{}}}}}}"#
        );
        let mut entries = parse_docker_config(doc.as_bytes()).expect("parse");
        entries.sort_by(|a, b| a.host.cmp(&b.host));
        assert_eq!(
            entries,
            vec![
                KeyringEntry {
                    host: "127.0.0.1:5000".into(),
                    path: String::new(),
                    credential: cred("alice")
                },
                KeyringEntry {
                    host: "docker.io".into(),
                    path: String::new(),
                    credential: cred("bob")
                },
            ]
        );
    }

    #[test]
    fn legacy_dockercfg_parses_and_garbage_is_an_error() {
        let doc = br#"{"http://r.io/team":{"username":"t","password":"t-pw"}}"#;
        let entries = parse_docker_config(doc).expect("parse");
        assert_eq!(entries[0].host, "r.io");
        assert_eq!(entries[0].path, "team");
        assert!(parse_docker_config(b"not json").is_err());
        assert!(parse_docker_config(br#"{"auths":{"r.io":{"auth":"!!"}}}"#).is_err());
    }

    #[test]
    fn matching_prefers_the_longest_path_and_checks_host_and_path() {
        let entries = vec![
            KeyringEntry {
                host: "r.io".into(),
                path: String::new(),
                credential: cred("all"),
            },
            KeyringEntry {
                host: "r.io".into(),
                path: "team".into(),
                credential: cred("team"),
            },
            KeyringEntry {
                host: "other.io".into(),
                path: String::new(),
                credential: cred("other"),
            },
        ];
        assert_eq!(
            credentials_for("r.io/team/app:1", &entries),
            vec![cred("team"), cred("all")]
        );
        assert_eq!(
            credentials_for("r.io/teamx/app:1", &entries),
            vec![cred("all")]
        );
        assert!(credentials_for("docker.io/library/busybox:1", &entries).is_empty());
        let hub = parse_docker_config(
            br#"{"auths":{"https://index.docker.io/v1/":{"username":"h","password":"h-pw"}}}"#,
        )
        .expect("parse");
        assert_eq!(
            credentials_for("docker.io/library/busybox:1.35", &hub),
            vec![cred("h")]
        );
    }
}
