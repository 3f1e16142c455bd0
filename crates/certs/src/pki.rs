//! The cluster PKI: a self-signed CA (10 years) and leaf certificates it signs (1 year), all with
//! ECDSA P-256 keys in PKCS#8 PEM. Subjects follow the Kubernetes convention that the apiserver maps
//! CN to the user name and each O to a group.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

use crate::files::{self, FileError};

/// Lifetime of the CA certificate, in days (10 years).
pub const CA_DAYS: i64 = 3650;
/// Lifetime of leaf certificates, in days (1 year).
pub const LEAF_DAYS: i64 = 365;
/// Existing leaf certificates that expire within this many days are reissued.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Object identifier of the X.520 organizationName attribute (2.5.4.10).
const OID_ORGANIZATION: [u64; 4] = [2, 5, 4, 10];

/// Errors while creating or loading certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A key pair could not be generated.
    #[error("generating key pair: {0}")]
    GenerateKey(#[source] rcgen::Error),
    /// A subject alternative name is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {0:?}: not an IP address or DNS name")]
    InvalidSan(String),
    /// More organizations than rcgen's distinguished name can carry.
    #[error("at most 2 --org values are supported, got {0}")]
    TooManyOrganizations(usize),
    /// Signing the certificate failed.
    #[error("signing certificate {name}: {source}")]
    Sign {
        /// Certificate name.
        name: String,
        /// Underlying error.
        source: rcgen::Error,
    },
    /// The CA files are missing (create them with `kube-certs ca`).
    #[error("CA not found at {0} (create it with `kube-certs ca --out-dir DIR`)")]
    CaMissing(PathBuf),
    /// The CA key could not be parsed.
    #[error("parsing CA key {path}: {source}")]
    ParseCaKey {
        /// Key file.
        path: PathBuf,
        /// Underlying error.
        source: rcgen::Error,
    },
    /// The CA certificate could not be parsed.
    #[error("parsing CA certificate {path}: {source}")]
    ParseCaCert {
        /// Certificate file.
        path: PathBuf,
        /// Underlying error.
        source: rcgen::Error,
    },
    /// The CA certificate and key do not belong together.
    #[error("CA certificate {0} does not match its key")]
    CaKeyMismatch(PathBuf),
    /// The validity period could not be computed.
    #[error("computing validity period: {0}")]
    Validity(#[source] jiff::Error),
    /// Reading or writing a file failed.
    #[error(transparent)]
    File(#[from] FileError),
}

/// What a leaf certificate is for: extended key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// TLS server authentication.
    pub server: bool,
    /// TLS client authentication.
    pub client: bool,
}

/// Everything that describes one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// File base name: `<name>.crt` and `<name>.key`.
    pub name: String,
    /// Subject common name (the user name for client certificates).
    pub common_name: String,
    /// Subject organizations (the groups for client certificates).
    pub organizations: Vec<String>,
    /// Subject alternative names: IP addresses or DNS names.
    pub sans: Vec<String>,
    /// Server and/or client usage.
    pub usage: Usage,
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// The certificate authority, loaded and ready to sign.
pub struct Ca {
    /// CA certificate, PEM (as written to `ca.crt`).
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Paths of a certificate and key named `name` in `dir`.
pub fn pair_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    )
}

/// Sets a validity window that starts yesterday (tolerating clock skew between hosts) and lasts
/// `days` days from today.
fn set_validity(params: &mut CertificateParams, days: i64) -> Result<(), PkiError> {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    let start = today
        .checked_sub(jiff::Span::new().days(1))
        .map_err(PkiError::Validity)?;
    let end = today
        .checked_add(jiff::Span::new().days(days))
        .map_err(PkiError::Validity)?;
    // Dates from jiff are always valid calendar dates, and month/day fit in u8.
    params.not_before = rcgen::date_time_ymd(
        i32::from(start.year()),
        start.month().unsigned_abs(),
        start.day().unsigned_abs(),
    );
    params.not_after = rcgen::date_time_ymd(
        i32::from(end.year()),
        end.month().unsigned_abs(),
        end.day().unsigned_abs(),
    );
    Ok(())
}

/// Builds a subject from a common name and up to two organizations. rcgen keeps one value per
/// attribute type, so the second organization is written under the same OID as a custom type.
fn subject(common_name: &str, organizations: &[String]) -> Result<DistinguishedName, PkiError> {
    let mut dn = DistinguishedName::new();
    match organizations {
        [] => {}
        [one] => dn.push(DnType::OrganizationName, one.as_str()),
        [one, two] => {
            dn.push(DnType::OrganizationName, one.as_str());
            dn.push(
                DnType::CustomDnType(OID_ORGANIZATION.to_vec()),
                two.as_str(),
            );
        }
        more => return Err(PkiError::TooManyOrganizations(more.len())),
    }
    dn.push(DnType::CommonName, common_name);
    Ok(dn)
}

fn parse_san(san: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
    };
    if san.len() > 253 || !san.split('.').all(label_ok) {
        return Err(PkiError::InvalidSan(san.to_string()));
    }
    san.to_string()
        .try_into()
        .map(SanType::DnsName)
        .map_err(|_| PkiError::InvalidSan(san.to_string()))
}

impl Ca {
    /// Generates a new self-signed CA with common name `common_name`.
    pub fn generate(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, &[])?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut params, CA_DAYS)?;
        let cert = params.self_signed(&key).map_err(|source| PkiError::Sign {
            name: "ca".to_string(),
            source,
        })?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA key, PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Loads `ca.crt` and `ca.key` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let (cert_path, key_path) = pair_paths(dir, "ca");
        if !files::all_exist(&[&cert_path, &key_path]) {
            return Err(PkiError::CaMissing(dir.to_path_buf()));
        }
        let cert_pem = files::read(&cert_path)?;
        let key_pem = files::read(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::ParseCaKey {
            path: key_path.clone(),
            source,
        })?;
        let parsed = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|_| PkiError::ParseCaCert {
                path: cert_path.clone(),
                source: rcgen::Error::CouldNotParseCertificate,
            })?
            .1;
        let cert = parsed.parse_x509().map_err(|_| PkiError::ParseCaCert {
            path: cert_path.clone(),
            source: rcgen::Error::CouldNotParseCertificate,
        })?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::CaKeyMismatch(cert_path));
        }
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| PkiError::ParseCaCert {
                path: cert_path.clone(),
                source,
            })?;
        Ok(Self { cert_pem, issuer })
    }

    /// Writes `ca.crt` and `ca.key` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        let (cert_path, key_path) = pair_paths(dir, "ca");
        files::write(&key_path, self.key_pem().as_bytes(), files::PRIVATE)?;
        files::write(&cert_path, self.cert_pem.as_bytes(), files::PUBLIC)?;
        Ok(())
    }

    /// Issues a leaf certificate for `spec` with a fresh key.
    pub fn issue(&self, spec: &CertSpec) -> Result<Pair, PkiError> {
        let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&spec.common_name, &spec.organizations)?;
        params.subject_alt_names = spec
            .sans
            .iter()
            .map(|s| parse_san(s))
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.usage.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.usage.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_DAYS)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Sign {
                name: spec.name.clone(),
                source,
            })?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues `spec` into `<dir>/<name>.crt|.key` unless both files exist and `force` is false.
    /// Returns true when it wrote new files.
    pub fn issue_to(&self, spec: &CertSpec, dir: &Path, force: bool) -> Result<bool, PkiError> {
        let (cert_path, key_path) = pair_paths(dir, &spec.name);
        if !force && files::all_exist(&[&cert_path, &key_path]) {
            match self.stale_reason(spec, &files::read(&cert_path)?) {
                None => {
                    tracing::info!(cert = %cert_path.display(), "certificate exists, kept");
                    return Ok(false);
                }
                Some(reason) => {
                    tracing::info!(cert = %cert_path.display(), reason, "certificate is stale, reissuing");
                }
            }
        }
        let pair = self.issue(spec)?;
        files::write(&key_path, pair.key_pem.as_bytes(), files::PRIVATE)?;
        files::write(&cert_path, pair.cert_pem.as_bytes(), files::PUBLIC)?;
        tracing::info!(cert = %cert_path.display(), cn = %spec.common_name, "certificate written");
        Ok(true)
    }
}

impl Ca {
    /// Why an existing certificate no longer matches `spec` (or this CA), if it does not: then it
    /// is reissued, so a changed node IP or a new CA never leaves a silently wrong certificate.
    pub fn stale_reason(&self, spec: &CertSpec, cert_pem: &str) -> Option<&'static str> {
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
            return Some("unparsable PEM");
        };
        let Ok(cert) = pem.parse_x509() else {
            return Some("unparsable certificate");
        };
        let Ok((_, ca_pem)) = x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes()) else {
            return Some("unparsable CA");
        };
        let Ok(ca) = ca_pem.parse_x509() else {
            return Some("unparsable CA");
        };
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            return Some("not signed by the current CA");
        }
        let renew_after = jiff::Timestamp::now().as_second() + RENEW_BEFORE_DAYS * 86_400;
        if cert.validity().not_after.timestamp() < renew_after {
            return Some("expires soon");
        }
        let strings =
            |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
                it.map(|a| a.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            };
        if strings(&mut cert.subject().iter_common_name()) != [spec.common_name.clone()] {
            return Some("common name changed");
        }
        if strings(&mut cert.subject().iter_organization()) != spec.organizations {
            return Some("organizations changed");
        }
        let mut have: Vec<String> = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                    x509_parser::extensions::GeneralName::IPAddress(b) => ip_string(b),
                    other => format!("{other:?}"),
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(_) => return Some("unparsable subject alternative names"),
        };
        let mut want: Vec<String> = spec
            .sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => ip.to_string(),
                Err(_) => s.clone(),
            })
            .collect();
        have.sort();
        want.sort();
        if have != want {
            return Some("subject alternative names changed");
        }
        None
    }
}

/// Renders the raw bytes of an IP SAN.
fn ip_string(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return IpAddr::from(v4).to_string();
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return IpAddr::from(v6).to_string();
    }
    hex_string(bytes)
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the CA in `dir` unless it exists (or `force`). Returns the loaded or created CA.
pub fn ensure_ca(dir: &Path, common_name: &str, force: bool) -> Result<Ca, PkiError> {
    let (cert_path, key_path) = pair_paths(dir, "ca");
    if !force && files::all_exist(&[&cert_path, &key_path]) {
        tracing::info!(dir = %dir.display(), "CA exists, kept");
        return Ca::load(dir);
    }
    let ca = Ca::generate(common_name)?;
    ca.write(dir)?;
    tracing::info!(cert = %cert_path.display(), "CA written");
    Ok(ca)
}

/// Writes a service-account signing key pair (`sa.key`, PKCS#8 ECDSA P-256; `sa.pub`, SPKI PEM)
/// into `dir` unless both exist (or `force`). Returns true when it wrote new files.
pub fn ensure_sa_key(dir: &Path, force: bool) -> Result<bool, PkiError> {
    let key_path = dir.join("sa.key");
    let pub_path = dir.join("sa.pub");
    if !force && files::all_exist(&[&key_path, &pub_path]) {
        tracing::info!(dir = %dir.display(), "service-account key exists, kept");
        return Ok(false);
    }
    let key = KeyPair::generate().map_err(PkiError::GenerateKey)?;
    files::write(&key_path, key.serialize_pem().as_bytes(), files::PRIVATE)?;
    files::write(&pub_path, key.public_key_pem().as_bytes(), files::PUBLIC)?;
    tracing::info!(key = %key_path.display(), "service-account key written");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::*;

    fn spec(name: &str, usage: Usage, sans: &[&str], orgs: &[&str]) -> CertSpec {
        CertSpec {
            name: name.to_string(),
            common_name: format!("cn-{name}"),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            usage,
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        p.contents
    }

    #[test]
    fn leaf_certificate_is_signed_by_the_ca_with_names_and_usages() {
        let ca = Ca::generate("kubernetes-ca").expect("ca");
        let pair = ca
            .issue(&spec(
                "apiserver",
                Usage {
                    server: true,
                    client: false,
                },
                &["127.0.0.1", "kubernetes.default.svc", "10.96.0.1"],
                &["system:masters", "extra"],
            ))
            .expect("issue");
        let ca_der = der(&ca.cert_pem);
        let (_, ca_cert) = parse_x509_certificate(&ca_der).expect("ca parse");
        let leaf_der = der(&pair.cert_pem);
        let (_, leaf) = parse_x509_certificate(&leaf_der).expect("leaf parse");

        assert!(ca_cert.is_ca());
        assert_eq!(leaf.issuer(), ca_cert.subject());
        leaf.verify_signature(Some(ca_cert.public_key()))
            .expect("signature verifies against the CA");
        let cn: Vec<_> = leaf
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().expect("utf8"))
            .collect();
        assert_eq!(cn, ["cn-apiserver"]);
        let orgs: Vec<_> = leaf
            .subject()
            .iter_organization()
            .map(|a| a.as_str().expect("utf8"))
            .collect();
        assert_eq!(orgs, ["system:masters", "extra"]);

        let san = leaf
            .subject_alternative_name()
            .expect("ext")
            .expect("present");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(b) => {
                    let octets: [u8; 4] = (*b).try_into().expect("ipv4");
                    std::net::Ipv4Addr::from(octets).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["127.0.0.1", "kubernetes.default.svc", "10.96.0.1"]);

        let eku = leaf.extended_key_usage().expect("ext").expect("present");
        assert!(eku.value.server_auth);
        assert!(!eku.value.client_auth);
        assert!(!leaf.is_ca());
        let validity = leaf.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert_eq!(days, LEAF_DAYS + 1);
    }

    #[test]
    fn client_certificate_has_client_auth_only() {
        let ca = Ca::generate("ca").expect("ca");
        let pair = ca
            .issue(&spec(
                "admin",
                Usage {
                    server: false,
                    client: true,
                },
                &[],
                &[],
            ))
            .expect("issue");
        let d = der(&pair.cert_pem);
        let (_, leaf) = parse_x509_certificate(&d).expect("parse");
        let eku = leaf.extended_key_usage().expect("ext").expect("present");
        assert!(eku.value.client_auth);
        assert!(!eku.value.server_auth);
    }

    #[test]
    fn three_organizations_are_rejected() {
        let ca = Ca::generate("ca").expect("ca");
        let err = ca
            .issue(&spec("x", Usage::default(), &[], &["a", "b", "c"]))
            .expect_err("too many");
        assert!(matches!(err, PkiError::TooManyOrganizations(3)));
    }

    #[test]
    fn bad_san_is_rejected() {
        let ca = Ca::generate("ca").expect("ca");
        let err = ca
            .issue(&spec("x", Usage::default(), &["bad name!"], &[]))
            .expect_err("invalid");
        assert!(matches!(err, PkiError::InvalidSan(_)));
    }

    #[test]
    fn ca_round_trips_through_files_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ensure_ca(dir.path(), "ca", false).expect("create");
        let again = ensure_ca(dir.path(), "ca", false).expect("load");
        assert_eq!(ca.cert_pem, again.cert_pem, "existing CA is kept");
        let pair = again
            .issue(&spec(
                "x",
                Usage {
                    server: true,
                    client: true,
                },
                &[],
                &[],
            ))
            .expect("issue with loaded CA");
        let ca_der = der(&ca.cert_pem);
        let (_, ca_cert) = parse_x509_certificate(&ca_der).expect("ca");
        let leaf_der = der(&pair.cert_pem);
        let (_, leaf) = parse_x509_certificate(&leaf_der).expect("leaf");
        leaf.verify_signature(Some(ca_cert.public_key()))
            .expect("loaded CA signs");
        let forced = ensure_ca(dir.path(), "ca", true).expect("force");
        assert_ne!(forced.cert_pem, ca.cert_pem);
    }

    #[test]
    fn existing_certificate_is_kept_until_its_spec_or_ca_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::generate("ca").expect("ca");
        let mut s = spec(
            "kubelet",
            Usage {
                server: true,
                client: false,
            },
            &["192.0.2.2", "node-a"],
            &["g"],
        );
        assert!(ca.issue_to(&s, dir.path(), false).expect("first"));
        assert!(!ca
            .issue_to(&s, dir.path(), false)
            .expect("same spec is kept"));
        s.sans = vec!["node-a".into(), "192.0.2.2".into()];
        assert!(!ca
            .issue_to(&s, dir.path(), false)
            .expect("order does not matter"));
        s.sans.push("10.0.0.9".into());
        assert!(ca
            .issue_to(&s, dir.path(), false)
            .expect("new SAN reissues"));
        s.organizations = vec![];
        assert!(ca
            .issue_to(&s, dir.path(), false)
            .expect("new org reissues"));
        let other = Ca::generate("other").expect("ca");
        assert!(other
            .issue_to(&s, dir.path(), false)
            .expect("new CA reissues"));
        assert_eq!(other.stale_reason(&s, "garbage"), Some("unparsable PEM"));
    }

    #[test]
    fn missing_ca_names_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Ca::load(dir.path()).expect_err("missing");
        assert!(err.to_string().contains("kube-certs ca"));
    }

    #[test]
    fn sa_key_is_written_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(ensure_sa_key(dir.path(), false).expect("first"));
        assert!(!ensure_sa_key(dir.path(), false).expect("second"));
        let pub_pem = files::read(&dir.path().join("sa.pub")).expect("pub");
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let key_pem = files::read(&dir.path().join("sa.key")).expect("key");
        KeyPair::from_pem(&key_pem).expect("key parses");
    }
}
