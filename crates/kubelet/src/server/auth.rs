//! Authentication and authorization of kubelet API callers, as upstream's kubelet does it:
//! the caller is the subject of its verified client certificate (CN = user, O = groups), else
//! the owner of its bearer token as a TokenReview against the apiserver says
//! (`--authentication-token-webhook`); nobody else gets past 401. With
//! `--authorization-mode Webhook` every request is then checked with a SubjectAccessReview on
//! the node object (`nodes/<subresource>` named after this node, the subresource picked from
//! the path as upstream: `stats`, `metrics`, `log`, else `proxy`), and a refusal is a 403
//! `Forbidden (user=..., verb=..., resource=nodes, subresource=...)`. Both answers are cached
//! (token reviews 2 minutes; access decisions 5 minutes when allowed, 30 seconds when not).
//!
//! Client certificates are taken at the TLS handshake whatever CA issued them
//! ([`AcceptAnyClientCert`] still checks the handshake signature, so the caller holds the key)
//! and the chain is checked against `--client-ca-file` afterwards ([`ClientCa::verify`]): a
//! certificate from another CA, an expired one or a broken chain is an unauthenticated caller
//! and gets a 401, not a failed handshake.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
pub use component_base::clientauth::{AcceptAnyClientCert, ClientCa};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long a token review answer is kept (upstream `--authentication-token-webhook-cache-ttl`).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(120);
/// How long an allow is kept (upstream `--authorization-webhook-cache-authorized-ttl`).
pub const AUTHORIZED_TTL: Duration = Duration::from_secs(300);
/// How long a deny is kept (upstream `--authorization-webhook-cache-unauthorized-ttl`).
pub const UNAUTHORIZED_TTL: Duration = Duration::from_secs(30);
/// Entries kept per cache before it is cleared.
const CACHE_LIMIT: usize = 4096;

/// `--authorization-mode` of the kubelet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthorizationMode {
    /// Every authenticated caller may do everything.
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
    /// Ask the apiserver with a SubjectAccessReview.
    #[value(name = "Webhook")]
    Webhook,
}

/// An authenticated caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// User name.
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Unique id, if any.
    pub uid: String,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What the client certificate of a connection establishes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateCheck {
    /// A chain was presented and verified against the client CA.
    pub verified: bool,
    /// The subject of the verified leaf (None without a common name).
    pub identity: Option<Identity>,
}

/// Checks the chain a caller presented (None or empty: no certificate) against `ca`.
pub fn check_certificate(ca: &ClientCa, chain: Option<&[CertificateDer<'_>]>) -> CertificateCheck {
    let Some(chain) = chain.filter(|c| !c.is_empty()) else {
        return CertificateCheck::default();
    };
    if let Err(error) = ca.verify(chain) {
        tracing::debug!(%error, "kubelet API client certificate refused");
        return CertificateCheck::default();
    }
    CertificateCheck {
        verified: true,
        identity: chain
            .first()
            .and_then(|leaf| identity_from_cert(leaf.as_ref())),
    }
}

/// The subject of a (verified) client certificate: CN = user, O = groups.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .next()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    groups.push("system:authenticated".into());
    Some(Identity {
        name,
        groups,
        ..Identity::default()
    })
}

/// The verb and `nodes` subresource of a kubelet API request, as upstream's kubelet maps them.
pub fn request_attributes(method: &Method, path: &str) -> (&'static str, &'static str) {
    let verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    };
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    let subresource = if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else {
        "proxy"
    };
    (verb, subresource)
}

/// Whether a GET is an upgrade into a stream that upstream's apiserver authorizes as `create`
/// (exec, attach, port-forward).
fn is_streaming(path: &str) -> bool {
    ["/exec/", "/attach/", "/portForward/", "/run/"]
        .iter()
        .any(|p| path.starts_with(p))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

type Cache<V> = Mutex<HashMap<String, (Instant, V)>>;

fn cached<V: Clone>(cache: &Cache<V>, key: &str) -> Option<V> {
    let guard = cache.lock().ok()?;
    let (expires, value) = guard.get(key)?;
    (Instant::now() < *expires).then(|| value.clone())
}

fn remember<V>(cache: &Cache<V>, key: String, ttl: Duration, value: V) {
    if let Ok(mut guard) = cache.lock() {
        if guard.len() >= CACHE_LIMIT {
            guard.clear();
        }
        guard.insert(key, (Instant::now() + ttl, value));
    }
}

/// The kubelet API's authenticator and authorizer.
pub struct KubeletAuth {
    client: Client,
    node_name: String,
    token_webhook: bool,
    mode: AuthorizationMode,
    tokens: Cache<Option<Identity>>,
    decisions: Cache<bool>,
}

impl std::fmt::Debug for KubeletAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletAuth")
            .field("node_name", &self.node_name)
            .field("token_webhook", &self.token_webhook)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Why a review could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The TokenReview request failed.
    #[error("TokenReview: {0}")]
    TokenReview(#[source] kube::Error),
    /// The SubjectAccessReview request failed.
    #[error("SubjectAccessReview: {0}")]
    AccessReview(#[source] kube::Error),
}

impl KubeletAuth {
    /// Reviews through `client` (the kubelet's own credentials) for node `node_name`.
    pub fn new(
        client: Client,
        node_name: &str,
        token_webhook: bool,
        mode: AuthorizationMode,
    ) -> Self {
        KubeletAuth {
            client,
            node_name: node_name.to_string(),
            token_webhook,
            mode,
            tokens: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }

    /// The caller: the certificate subject, else the bearer token's owner (webhook enabled).
    pub async fn authenticate(
        &self,
        certificate: Option<&Identity>,
        headers: &HeaderMap,
    ) -> Result<Option<Identity>, ReviewError> {
        if let Some(user) = certificate {
            return Ok(Some(user.clone()));
        }
        if !self.token_webhook {
            return Ok(None);
        }
        let Some(token) = bearer_token(headers) else {
            return Ok(None);
        };
        if let Some(answer) = cached(&self.tokens, token) {
            return Ok(answer);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::TokenReview)?;
        let identity = answer
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
            .map(|u| Identity {
                name: u.username.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
                uid: u.uid.unwrap_or_default(),
                extra: u.extra.unwrap_or_default(),
            })
            .filter(|i| !i.name.is_empty());
        remember(
            &self.tokens,
            token.to_string(),
            TOKEN_CACHE_TTL,
            identity.clone(),
        );
        Ok(identity)
    }

    /// Whether `user` may `verb` the node's `subresource`.
    pub async fn authorize(
        &self,
        user: &Identity,
        verb: &str,
        subresource: &str,
    ) -> Result<bool, ReviewError> {
        if self.mode == AuthorizationMode::AlwaysAllow {
            return Ok(true);
        }
        let key = format!(
            "{}\u{0}{}\u{0}{}\u{0}{}\u{0}{verb}\u{0}{subresource}",
            user.name,
            user.uid,
            user.groups.join(","),
            serde_json::to_string(&user.extra).unwrap_or_default()
        );
        if let Some(allowed) = cached(&self.decisions, &key) {
            return Ok(allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_string()),
                    group: Some(String::new()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(subresource.to_string()),
                    name: Some(self.node_name.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(ReviewError::AccessReview)?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        let ttl = if allowed {
            AUTHORIZED_TTL
        } else {
            UNAUTHORIZED_TTL
        };
        remember(&self.decisions, key, ttl, allowed);
        Ok(allowed)
    }

    /// Authenticates and authorizes one request: `Ok(())` to serve it, else the 401/403 (or 500
    /// when the apiserver could not be asked) to answer.
    pub async fn check(
        &self,
        certificate: Option<&Identity>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), Response> {
        let user = match self.authenticate(certificate, headers).await {
            Ok(Some(user)) => user,
            Ok(None) => return Err((StatusCode::UNAUTHORIZED, "Unauthorized").into_response()),
            Err(error) => {
                tracing::warn!(%error, "authenticating a kubelet API caller failed");
                return Err((StatusCode::UNAUTHORIZED, "Unauthorized").into_response());
            }
        };
        let (verb, subresource) = request_attributes(method, path);
        let mut verbs = vec![verb];
        if verb == "get" && is_streaming(path) {
            verbs.push("create");
        }
        for verb in verbs {
            match self.authorize(&user, verb, subresource).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(user = %user.name, verb, subresource, path, "kubelet API request forbidden");
                    return Err((
                        StatusCode::FORBIDDEN,
                        format!(
                            "Forbidden (user={}, verb={verb}, resource=nodes, subresource={subresource})",
                            user.name
                        ),
                    )
                        .into_response());
                }
                Err(error) => {
                    tracing::warn!(%error, "authorizing a kubelet API request failed");
                    return Err((
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("Authorization error (user={}, verb={verb}, resource=nodes, subresource={subresource})", user.name),
                    )
                        .into_response());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_node_subresources_as_upstream() {
        assert_eq!(
            request_attributes(&Method::GET, "/stats/summary"),
            ("get", "stats")
        );
        assert_eq!(
            request_attributes(&Method::GET, "/metrics"),
            ("get", "metrics")
        );
        assert_eq!(
            request_attributes(&Method::GET, "/metrics/cadvisor"),
            ("get", "metrics")
        );
        assert_eq!(
            request_attributes(&Method::GET, "/logs/syslog"),
            ("get", "log")
        );
        assert_eq!(
            request_attributes(&Method::GET, "/containerLogs/d/p/c"),
            ("get", "proxy")
        );
        assert_eq!(
            request_attributes(&Method::POST, "/exec/d/p/c"),
            ("create", "proxy")
        );
        assert_eq!(
            request_attributes(&Method::GET, "/statsx"),
            ("get", "proxy")
        );
        assert!(is_streaming("/exec/d/p/c"));
        assert!(!is_streaming("/containerLogs/d/p/c"));
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer abc".parse().expect("hv"),
        );
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(
            http::header::AUTHORIZATION,
            "Basic abc".parse().expect("hv"),
        );
        assert_eq!(bearer_token(&h), None);
        h.insert(http::header::AUTHORIZATION, "Bearer ".parse().expect("hv"));
        assert_eq!(bearer_token(&h), None);
    }
}
