//! Service-account tokens: ES256 JSON Web Tokens as upstream's bound tokens (`iss`, `sub`,
//! `aud`, `exp`, `iat`, `nbf`, `jti` and the private `kubernetes.io` claim naming the
//! namespace, service account and the bound pod, secret or node), signed with the PKCS#8 P-256
//! key of `--service-account-signing-key-file` and verified against the public keys of
//! `--service-account-key-file`. The key id (`kid` header) is, as upstream, the unpadded
//! base64url SHA-256 of the DER public key (SubjectPublicKeyInfo).

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// DER prefix of a P-256 SubjectPublicKeyInfo (followed by the 65-byte uncompressed point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds no usable key.
    #[error("{path}: no ECDSA P-256 key found (PUBLIC KEY or PKCS#8 PRIVATE KEY PEM blocks)")]
    NoKeys {
        /// The file.
        path: PathBuf,
    },
    /// A private key was rejected.
    #[error("{path}: invalid private key: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// ring's reason.
        reason: String,
    },
}

/// Why a token was refused (or could not be made).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("token is malformed")]
    Malformed,
    /// Not an ES256 token from a known key, or the signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// Not issued by this cluster.
    #[error("token issuer is not accepted")]
    Issuer,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`/`iat`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// No audience in common with the accepted ones.
    #[error("token audiences {0:?} is invalid for the target audiences")]
    Audience(Vec<String>),
    /// Not a service-account token of this cluster.
    #[error("token is not a bound service account token")]
    NotServiceAccount,
    /// The bound object (or the service account) is gone or was replaced.
    #[error("{0}")]
    Invalidated(String),
    /// Signing failed.
    #[error("signing the token failed")]
    Sign,
}

/// `{name, uid}` of an object a token names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// The private `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// Namespace of the service account.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// The bound pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The bound secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The node of the bound pod (or the bound node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    /// When the caller should refresh (extended tokens; unused here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a bound service-account token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Audiences (a string is accepted on input, as the JWT spec allows).
    #[serde(deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id (the credential id is `JTI=<jti>`).
    #[serde(default)]
    pub jti: String,
    /// The Kubernetes claims.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()),
        _ => Err(serde::de::Error::custom("aud must be a string or a list")),
    }
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn unb64(data: &str) -> Result<Vec<u8>, TokenError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(data)
        .map_err(|_| TokenError::Malformed)
}

/// The key id of a P-256 public key (uncompressed point).
fn key_id(point: &[u8]) -> String {
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point);
    b64(ring::digest::digest(&ring::digest::SHA256, &spki).as_ref())
}

/// A verification key.
#[derive(Clone, Debug)]
pub struct PublicKey {
    kid: String,
    point: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses every P-256 key of a PEM file (public keys, or private keys whose public half is
/// used), as upstream accepts both in `--service-account-key-file`.
pub fn load_public_keys(path: &Path) -> Result<Vec<PublicKey>, KeyError> {
    let data = read(path)?;
    let mut keys = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(&data).flatten() {
        match pem.label.as_str() {
            "PUBLIC KEY" => {
                if pem.contents.len() == P256_SPKI_PREFIX.len() + 65
                    && pem.contents.starts_with(&P256_SPKI_PREFIX)
                {
                    let point = pem.contents[P256_SPKI_PREFIX.len()..].to_vec();
                    keys.push(PublicKey {
                        kid: key_id(&point),
                        point,
                    });
                } else {
                    tracing::warn!(path = %path.display(), "skipping a non-P-256 public key");
                }
            }
            "PRIVATE KEY" | "EC PRIVATE KEY" => {
                if let Ok(signer) = Signer::from_pkcs8(&pem.contents) {
                    let point = signer.key.public_key().as_ref().to_vec();
                    keys.push(PublicKey {
                        kid: key_id(&point),
                        point,
                    });
                }
            }
            _ => {}
        }
    }
    if keys.is_empty() {
        return Err(KeyError::NoKeys {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

/// The token signer (`--service-account-signing-key-file`).
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// A signer from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, ring::error::KeyRejected> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)?;
        let kid = key_id(key.public_key().as_ref());
        Ok(Signer { key, kid, rng })
    }

    /// Loads the first PKCS#8 private key of a PEM file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let data = read(path)?;
        let pem = x509_parser::pem::Pem::iter_from_buffer(&data)
            .flatten()
            .find(|p| p.label == "PRIVATE KEY")
            .ok_or_else(|| KeyError::NoKeys {
                path: path.to_path_buf(),
            })?;
        Signer::from_pkcs8(&pem.contents).map_err(|e| KeyError::BadKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The public key (for verification).
    pub fn public_key(&self) -> PublicKey {
        let point = self.key.public_key().as_ref().to_vec();
        PublicKey {
            kid: self.kid.clone(),
            point,
        }
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Sign)?;
        let input = format!("{}.{}", b64(&header), b64(&payload));
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| TokenError::Sign)?;
        Ok(format!("{input}.{}", b64(sig.as_ref())))
    }
}

/// Checks signatures, issuer and validity period of service-account tokens.
#[derive(Clone, Debug, Default)]
pub struct Verifier {
    /// The verification keys.
    pub keys: Vec<PublicKey>,
    /// Accepted issuers.
    pub issuers: Vec<String>,
}

/// Whether `token` looks like a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

impl Verifier {
    /// Verifies `token` at Unix time `now`: signature by a known key, an accepted issuer, not
    /// expired, not used before `nbf`. Audiences and bound objects are checked by the caller.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value =
            serde_json::from_slice(&unb64(h)?).map_err(|_| TokenError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(TokenError::Signature);
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let sig = unb64(s)?;
        let input = &token[..h.len() + 1 + p.len()];
        let verified = self
            .keys
            .iter()
            .filter(|k| kid.is_none_or(|kid| kid == k.kid))
            .any(|k| {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &k.point)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            });
        if !verified {
            return Err(TokenError::Signature);
        }
        let payload: Value =
            serde_json::from_slice(&unb64(p)?).map_err(|_| TokenError::Malformed)?;
        let iss = payload.get("iss").and_then(Value::as_str).unwrap_or("");
        if !self.issuers.iter().any(|i| i == iss) {
            return Err(TokenError::Issuer);
        }
        let claims: Claims =
            serde_json::from_value(payload).map_err(|_| TokenError::NotServiceAccount)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        let expected = format!(
            "system:serviceaccount:{}:{}",
            claims.kubernetes.namespace, claims.kubernetes.serviceaccount.name
        );
        if claims.sub != expected {
            return Err(TokenError::NotServiceAccount);
        }
        Ok(claims)
    }
}

/// The audiences of `claims` that are also in `accepted` (an error when none are).
pub fn audiences(claims: &Claims, accepted: &[String]) -> Result<Vec<String>, TokenError> {
    let common: Vec<String> = claims
        .aud
        .iter()
        .filter(|a| accepted.contains(a))
        .cloned()
        .collect();
    if common.is_empty() {
        return Err(TokenError::Audience(claims.aud.clone()));
    }
    Ok(common)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let key = rcgen::KeyPair::generate().expect("key");
        Signer::from_pkcs8(&key.serialize_der()).expect("signer")
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "https://kubernetes.default.svc.cluster.local".into(),
            sub: "system:serviceaccount:default:default".into(),
            aud: vec!["api".into()],
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "default".into(),
                    uid: "u".into(),
                },
                ..Default::default()
            },
        }
    }

    fn verifier(s: &Signer) -> Verifier {
        Verifier {
            keys: vec![s.public_key()],
            issuers: vec!["https://kubernetes.default.svc.cluster.local".into()],
        }
    }

    #[test]
    fn signed_tokens_verify_and_carry_their_claims() {
        let s = signer();
        let c = claims(1000);
        let token = s.sign(&c).expect("sign");
        assert_eq!(verifier(&s).verify(&token, 1000), Ok(c.clone()));
        assert_eq!(audiences(&c, &["api".into()]), Ok(vec!["api".to_string()]));
        assert!(audiences(&c, &["other".into()]).is_err());
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let s = signer();
        let token = s.sign(&claims(1000)).expect("sign");
        let v = verifier(&s);
        assert_eq!(v.verify(&token, 1600), Err(TokenError::Expired));
        assert_eq!(v.verify(&token, 900), Err(TokenError::NotYetValid));
        let mut parts: Vec<&str> = token.split('.').collect();
        let mut other = claims(1000);
        other.sub = "system:serviceaccount:kube-system:admin".into();
        other.kubernetes.namespace = "kube-system".into();
        let forged = b64(&serde_json::to_vec(&other).expect("json"));
        parts[1] = &forged;
        assert_eq!(v.verify(&parts.join("."), 1000), Err(TokenError::Signature));
        assert_eq!(
            verifier(&signer()).verify(&token, 1000),
            Err(TokenError::Signature)
        );
        assert_eq!(v.verify("a.b", 1000), Err(TokenError::Malformed));
    }

    #[test]
    fn public_keys_load_from_spki_and_pkcs8_pem() {
        let key = rcgen::KeyPair::generate().expect("key");
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("sa.pub");
        std::fs::write(
            &path,
            format!("{}{}", key.public_key_pem(), key.serialize_pem()),
        )
        .expect("write");
        let keys = load_public_keys(&path).expect("keys");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid, keys[1].kid);
        let s = Signer::from_pkcs8(&key.serialize_der()).expect("signer");
        assert_eq!(s.public_key().kid, keys[0].kid);
    }

    #[test]
    fn random_bytes_never_panic_the_parser() {
        use rand::Rng;
        let v = verifier(&signer());
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let len = rng.random_range(0..200);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let text = String::from_utf8_lossy(&bytes).to_string();
            assert!(v.verify(&text, 0).is_err());
            let dotted = format!("{}.{}.{}", b64(&bytes), b64(&bytes), b64(&bytes));
            assert!(v.verify(&dotted, 0).is_err());
        }
    }
}
