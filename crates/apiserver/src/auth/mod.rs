//! Authentication: the user behind a request. In order, as upstream's union authenticator: the
//! verified TLS client certificate (user = CN, groups = O values + `system:authenticated`), then
//! an `Authorization: Bearer` token from `--token-auth-file` ([`tokens`]) or a service-account
//! JWT ([`serviceaccount`], bound tokens checked against storage). A bearer token that fails is a
//! 401, never anonymous; no credentials at all is `system:anonymous`. [`impersonation`] then
//! applies `Impersonate-*` headers. [`tokenrequest`] serves `serviceaccounts/<name>/token` and
//! [`reviews`] TokenReview and SelfSubjectReview.

pub mod impersonation;
pub mod reviews;
pub mod serviceaccount;
pub mod tokenrequest;
pub mod tokens;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::state::ApiState;
use crate::status::ApiError;
use serviceaccount::{Claims, Signer, TokenError, Verifier};

/// The default issuer when `--service-account-issuer` is not given.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Authentication flags beyond the service-account key flags of [`crate::Options`].
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AuthnOptions {
    /// If set, the file that will be used to secure the secure port of the API server via token
    /// authentication (CSV: token,user,uid,"group1,group2").
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    /// Identifiers of the API. Tokens must name at least one of them; defaults to the issuer.
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The maximum validity duration of a token created by the service account token issuer.
    #[arg(long = "service-account-max-token-expiration", value_parser = component_base::leaderelection::parse_duration)]
    pub service_account_max_token_expiration: Option<Duration>,
}

/// Why the authenticators could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthnError {
    /// The token file is bad.
    #[error("{0}")]
    TokenFile(#[from] tokens::TokenFileError),
    /// A service-account key file is bad.
    #[error("{0}")]
    Key(#[from] serviceaccount::KeyError),
}

/// The configured authenticators and the service-account token issuer.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// Static tokens.
    pub tokens: tokens::TokenFile,
    /// Service-account token verification (no keys: service-account tokens are refused).
    pub verifier: Verifier,
    /// The token signer (None: TokenRequest is not served).
    pub signer: Option<Signer>,
    /// The issuer written into new tokens.
    pub issuer: String,
    /// The API audiences.
    pub audiences: Vec<String>,
    /// Upper bound of TokenRequest `expirationSeconds`.
    pub max_expiration: Option<Duration>,
}

impl Authenticator {
    /// Builds the authenticators from the flags.
    pub fn from_options(options: &crate::Options) -> Result<Self, AuthnError> {
        let tokens = match &options.authn.token_auth_file {
            Some(path) => tokens::TokenFile::load(path)?,
            None => tokens::TokenFile::default(),
        };
        let signer = match &options.service_account_signing_key_file {
            Some(path) => Some(Signer::load(path)?),
            None => None,
        };
        let mut keys = Vec::new();
        for path in &options.service_account_key_file {
            keys.extend(serviceaccount::load_public_keys(path)?);
        }
        if keys.is_empty() {
            if let Some(s) = &signer {
                keys.push(s.public_key());
            }
        }
        let issuer = options
            .service_account_issuer
            .clone()
            .unwrap_or_else(|| DEFAULT_ISSUER.to_string());
        let audiences = if options.authn.api_audiences.is_empty() {
            vec![issuer.clone()]
        } else {
            options.authn.api_audiences.clone()
        };
        Ok(Authenticator {
            tokens,
            verifier: Verifier {
                keys,
                issuers: vec![issuer.clone()],
            },
            signer,
            issuer,
            audiences,
            max_expiration: options.authn.service_account_max_token_expiration,
        })
    }

    /// Authenticates a bearer token for `audiences` (empty: the API audiences), answering the
    /// user and the audiences it was accepted for.
    pub async fn authenticate_token(
        &self,
        state: &ApiState,
        token: &str,
        audiences: &[String],
    ) -> Result<(User, Vec<String>), TokenError> {
        let wanted = if audiences.is_empty() {
            self.audiences.clone()
        } else {
            audiences.to_vec()
        };
        if let Some(user) = self.tokens.user(token) {
            // Not audience-aware: valid for the API audiences only, as upstream's wrapper.
            let common: Vec<String> = wanted
                .iter()
                .filter(|a| self.audiences.contains(a))
                .cloned()
                .collect();
            if common.is_empty() {
                return Err(TokenError::Audience(self.audiences.clone()));
            }
            return Ok((user.clone(), common));
        }
        if !serviceaccount::looks_like_jwt(token) || self.verifier.keys.is_empty() {
            return Err(TokenError::Malformed);
        }
        let claims = self.verifier.verify(token, now())?;
        let accepted = serviceaccount::audiences(&claims, &wanted)?;
        tokenrequest::check_bound_objects(state, &claims).await?;
        Ok((service_account_user(&claims), accepted))
    }
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The user of a verified service-account token.
pub fn service_account_user(claims: &Claims) -> User {
    let k = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert(
            "authentication.kubernetes.io/pod-name".to_string(),
            vec![pod.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".to_string(),
            vec![pod.uid.clone()],
        );
    }
    if let Some(node) = &k.node {
        extra.insert(
            "authentication.kubernetes.io/node-name".to_string(),
            vec![node.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/node-uid".to_string(),
            vec![node.uid.clone()],
        );
    }
    if !claims.jti.is_empty() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec![format!("JTI={}", claims.jti)],
        );
    }
    User {
        name: claims.sub.clone(),
        groups: service_account_groups(&k.namespace),
        uid: k.serviceaccount.uid.clone(),
        extra,
    }
}

/// The groups of a service account in `namespace` (with `system:authenticated`).
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
        "system:authenticated".to_string(),
    ]
}

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// The user of a request: the certificate user if there is one, else the bearer token's
/// user (a bad token is a 401), else anonymous.
pub async fn authenticate(
    state: &ApiState,
    cert_user: &User,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    if !cert_user.is_anonymous() {
        return Ok(cert_user.clone());
    }
    let Some(token) = bearer_token(headers) else {
        return Ok(User::anonymous());
    };
    match state.authn.authenticate_token(state, token, &[]).await {
        Ok((user, _)) => Ok(user),
        Err(error) => {
            tracing::debug!(%error, "bearer token refused");
            Err(ApiError::unauthorized())
        }
    }
}

/// Serves one request: authenticates it, applies impersonation, then hands it to
/// [`crate::handlers::handle`].
pub async fn serve(
    state: Arc<ApiState>,
    cert_user: User,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let user = match authenticate(&state, &cert_user, req.headers()).await {
        Ok(user) => user,
        Err(e) => return crate::handlers::error_response(&e),
    };
    let audit = crate::audit::begin(&state, &user, &mut req);
    let user = match impersonation::impersonate(&state, user, req.headers()) {
        Ok(user) => user,
        Err(e) => return crate::audit::complete(audit, crate::handlers::error_response(&e)).await,
    };
    impersonation::strip_headers(req.headers_mut());
    let audit = audit.map(|audit| audit.impersonated(&user));
    let response = crate::handlers::handle(state, user, req).await;
    crate::audit::complete(audit, response).await
}

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct User {
    /// User name (`system:anonymous` when no certificate was shown).
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Unique id (empty when the authenticator gave none).
    pub uid: String,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// The anonymous user.
    pub fn anonymous() -> Self {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        }
    }

    /// Whether this is the anonymous user.
    pub fn is_anonymous(&self) -> bool {
        self.name == "system:anonymous"
    }
}

/// The user of a connection whose client presented `certs` (already verified by rustls).
pub fn user_from_certs(certs: Option<&[CertificateDer<'_>]>) -> User {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return User::anonymous();
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return User::anonymous();
    };
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .next()
        .map(str::to_string);
    let Some(name) = name else {
        return User::anonymous();
    };
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    groups.push("system:authenticated".into());
    User {
        name,
        groups,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_certificate_bytes_never_panic() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let len = rng.random_range(0..300);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(b) = bytes.first_mut() {
                *b = 0x30; // a DER SEQUENCE, so the parser gets past the first byte
            }
            assert!(user_from_certs(Some(&[CertificateDer::from(bytes)])).is_anonymous());
        }
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().expect("v"));
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().expect("v"));
        assert_eq!(bearer_token(&h), None);
        h.insert(header::AUTHORIZATION, "bearer  ".parse().expect("v"));
        assert_eq!(bearer_token(&h), None);
    }

    #[test]
    fn no_certificate_is_anonymous() {
        assert!(user_from_certs(None).is_anonymous());
    }

    #[test]
    fn common_name_and_organizations_become_user_and_groups() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kubernetes-admin");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let cert = params.self_signed(&key).expect("cert");
        let der = cert.der().clone();
        let user = user_from_certs(Some(&[der]));
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, vec!["system:masters", "system:authenticated"]);
    }
}
