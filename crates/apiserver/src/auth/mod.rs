//! Authentication: the user behind a request. In order, as upstream's union authenticator: the
//! TLS client certificate (its chain checked against `--client-ca-file` here, see
//! [`crate::tls`]; user = CN, groups = O values + `system:authenticated`), then an
//! `Authorization: Bearer` token from `--token-auth-file` ([`tokens`]) or a service-account JWT
//! ([`serviceaccount`], bound tokens checked against storage). A bearer token that fails is a
//! 401, never anonymous, and so is a certificate that fails (another CA, expired, broken chain)
//! when no token authenticates; no credentials at all is `system:anonymous`. [`impersonation`] then
//! applies `Impersonate-*` headers. [`tokenrequest`] serves `serviceaccounts/<name>/token` and
//! [`reviews`] TokenReview and SelfSubjectReview.

pub mod impersonation;
pub mod reviews;
pub mod serviceaccount;
pub mod tokenrequest;
pub mod tokens;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::state::ApiState;
use crate::status::ApiError;
use crate::tls::ClientCa;
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
    /// The client CA file is bad.
    #[error("{0}")]
    ClientCa(#[from] crate::tls::TlsError),
}

/// The configured authenticators and the service-account token issuer.
#[derive(Debug, Default)]
pub struct Authenticator {
    /// The client CA (None: no client certificate is accepted).
    pub client_ca: Option<ClientCa>,
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
            client_ca: Some(crate::tls::load_client_ca(&options.client_ca_file)?),
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

/// The user of a request: the certificate user if the certificate verifies, else the bearer
/// token's user (a bad token is a 401), else a 401 if a certificate was shown but failed, else
/// anonymous.
pub async fn authenticate(
    state: &ApiState,
    certificate: &ClientCertificate,
    headers: &HeaderMap,
) -> Result<User, ApiError> {
    let cert_failed = match certificate.user(state.authn.client_ca.as_ref()) {
        CertificateUser::Verified(user) => return Ok(user.clone()),
        CertificateUser::Rejected => true,
        CertificateUser::None => false,
    };
    let Some(token) = bearer_token(headers) else {
        return if cert_failed {
            Err(ApiError::unauthorized())
        } else {
            Ok(User::anonymous())
        };
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
    certificate: ClientCertificate,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let user = match authenticate(&state, &certificate, req.headers()).await {
        Ok(user) => user,
        Err(e) => {
            let response = crate::handlers::error_response(&e);
            let shown = certificate.is_present();
            return crate::audit::failed_authentication(&state, shown, &mut req, response);
        }
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

/// The client certificate chain a connection presented (leaf first), checked against the
/// client CA the first time a request on the connection is authenticated; clones share the
/// verdict.
#[derive(Clone, Debug, Default)]
pub struct ClientCertificate {
    presented: Option<Arc<Presented>>,
}

#[derive(Debug)]
struct Presented {
    chain: Vec<CertificateDer<'static>>,
    verdict: OnceLock<CertificateUser>,
}

/// What a client certificate says about the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateUser {
    /// No certificate, or a valid one naming nobody (no common name): other authenticators
    /// decide.
    None,
    /// A valid certificate: its subject.
    Verified(User),
    /// A certificate that does not verify against the client CA: an authentication failure.
    Rejected,
}

impl ClientCertificate {
    /// Whether the client presented any certificate.
    pub fn is_present(&self) -> bool {
        self.presented.is_some()
    }

    /// Verifies the chain against `ca` (None: no certificate can verify) and reads the user.
    pub fn user(&self, ca: Option<&ClientCa>) -> &CertificateUser {
        static NONE: CertificateUser = CertificateUser::None;
        let Some(presented) = &self.presented else {
            return &NONE;
        };
        presented
            .verdict
            .get_or_init(|| check_chain(&presented.chain, ca))
    }
}

/// The verdict on a presented chain.
pub fn check_chain(chain: &[CertificateDer<'_>], ca: Option<&ClientCa>) -> CertificateUser {
    let Some(ca) = ca else {
        tracing::debug!("client certificate refused: no client CA configured");
        return CertificateUser::Rejected;
    };
    if let Err(error) = ca.verify(chain) {
        tracing::debug!(%error, "client certificate refused");
        return CertificateUser::Rejected;
    }
    match chain.first().and_then(subject_user) {
        Some(user) => CertificateUser::Verified(user),
        None => CertificateUser::None,
    }
}

/// The client-certificate credential of a connection whose client presented `certs` (not yet
/// verified: rustls only checked that the client holds the leaf's key).
pub fn user_from_certs(certs: Option<&[CertificateDer<'_>]>) -> ClientCertificate {
    let presented = certs.filter(|c| !c.is_empty()).map(|chain| {
        Arc::new(Presented {
            chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
            verdict: OnceLock::new(),
        })
    });
    ClientCertificate { presented }
}

/// The subject of a certificate as a user: CN = name, O = groups (+ `system:authenticated`);
/// None without a common name or when the certificate does not parse.
pub fn subject_user(leaf: &CertificateDer<'_>) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .next()
        .filter(|cn| !cn.is_empty())
        .map(str::to_string)?;
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    groups.push("system:authenticated".into());
    Some(User {
        name,
        groups,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: CertificateDer<'static>,
    }

    impl Ca {
        fn new(name: &str) -> Ca {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let der = params.self_signed(&key).expect("ca").der().clone();
            Ca { params, key, der }
        }

        fn trust(&self) -> ClientCa {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.der.clone()).expect("root");
            ClientCa::new(roots).expect("client ca")
        }

        fn issue(
            &self,
            cn: &str,
            modify: impl FnOnce(&mut CertificateParams),
        ) -> CertificateDer<'static> {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params
                .distinguished_name
                .push(DnType::OrganizationName, "devs");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            modify(&mut params);
            let issuer = Issuer::from_params(&self.params, &self.key);
            params.signed_by(&key, &issuer).expect("cert").der().clone()
        }
    }

    #[test]
    fn random_certificate_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ca = Ca::new("ca").trust();
        for _ in 0..2000 {
            let len = rng.random_range(0..300);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if let Some(b) = bytes.first_mut() {
                *b = 0x30; // a DER SEQUENCE, so the parser gets past the first byte
            }
            let presented = user_from_certs(Some(&[CertificateDer::from(bytes)]));
            assert_eq!(presented.user(Some(&ca)), &CertificateUser::Rejected);
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
    fn no_certificate_leaves_the_decision_to_other_authenticators() {
        let none = user_from_certs(None);
        assert!(!none.is_present());
        assert_eq!(
            none.user(Some(&Ca::new("ca").trust())),
            &CertificateUser::None
        );
        assert_eq!(
            user_from_certs(Some(&[])).user(None),
            &CertificateUser::None
        );
    }

    #[test]
    fn common_name_and_organizations_become_user_and_groups() {
        let ca = Ca::new("ca");
        let leaf = ca.issue("kubernetes-admin", |_| {});
        let user = match user_from_certs(Some(&[leaf])).user(Some(&ca.trust())) {
            CertificateUser::Verified(user) => user.clone(),
            other => panic!("expected a verified user, got {other:?}"),
        };
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, vec!["devs", "system:authenticated"]);
    }

    #[test]
    fn certificates_of_another_ca_are_rejected() {
        let ours = Ca::new("ours");
        let theirs = Ca::new("ours"); // same name, other key: only the signature tells them apart
        let leaf = theirs.issue("mallory", |_| {});
        assert_eq!(
            check_chain(&[leaf], Some(&ours.trust())),
            CertificateUser::Rejected
        );
    }

    #[test]
    fn expired_and_not_yet_valid_certificates_are_rejected() {
        let ca = Ca::new("ca");
        let expired = ca.issue("old", |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        });
        assert_eq!(
            check_chain(&[expired], Some(&ca.trust())),
            CertificateUser::Rejected
        );
        let future = ca.issue("new", |p| {
            p.not_before = rcgen::date_time_ymd(2999, 1, 1);
            p.not_after = rcgen::date_time_ymd(3000, 1, 1);
        });
        assert_eq!(
            check_chain(&[future], Some(&ca.trust())),
            CertificateUser::Rejected
        );
    }

    #[test]
    fn certificates_without_client_auth_usage_are_rejected() {
        let ca = Ca::new("ca");
        let serving = ca.issue("server", |p| {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        });
        assert_eq!(
            check_chain(&[serving], Some(&ca.trust())),
            CertificateUser::Rejected
        );
    }

    #[test]
    fn garbage_intermediates_do_not_break_a_valid_chain_or_fix_a_foreign_one() {
        let ca = Ca::new("ca");
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let good = ca.issue("alice", |_| {});
        assert!(matches!(
            check_chain(&[good, garbage.clone()], Some(&ca.trust())),
            CertificateUser::Verified(_)
        ));
        let foreign = Ca::new("other").issue("mallory", |_| {});
        assert_eq!(
            check_chain(&[foreign, garbage], Some(&ca.trust())),
            CertificateUser::Rejected
        );
    }

    #[test]
    fn a_chain_through_an_intermediate_ca_verifies() {
        let root = Ca::new("root");
        let inter_key = KeyPair::generate().expect("key");
        let mut inter_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        inter_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        inter_params
            .distinguished_name
            .push(DnType::CommonName, "intermediate");
        let inter_der = inter_params
            .signed_by(&inter_key, &Issuer::from_params(&root.params, &root.key))
            .expect("intermediate")
            .der()
            .clone();
        let inter = Ca {
            params: inter_params,
            key: inter_key,
            der: inter_der.clone(),
        };
        let leaf = inter.issue("bob", |_| {});
        assert!(matches!(
            check_chain(&[leaf.clone(), inter_der], Some(&root.trust())),
            CertificateUser::Verified(_)
        ));
        assert_eq!(
            check_chain(&[leaf], Some(&root.trust())),
            CertificateUser::Rejected
        );
    }

    #[test]
    fn without_a_client_ca_no_certificate_verifies() {
        let leaf = Ca::new("ca").issue("alice", |_| {});
        assert_eq!(check_chain(&[leaf], None), CertificateUser::Rejected);
    }

    #[test]
    fn a_valid_certificate_without_common_name_names_nobody() {
        let ca = Ca::new("ca");
        let leaf = ca.issue("x", |p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
        });
        assert_eq!(
            check_chain(&[leaf], Some(&ca.trust())),
            CertificateUser::None
        );
    }
}
