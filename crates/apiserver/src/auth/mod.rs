//! Authentication: the user behind a request, from the verified TLS client certificate
//! (user = CN, groups = O values + `system:authenticated`); no certificate = `system:anonymous`.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated (or anonymous) user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// User name (`system:anonymous` when no certificate was shown).
    pub name: String,
    /// Groups.
    pub groups: Vec<String>,
}

impl User {
    /// The anonymous user.
    pub fn anonymous() -> Self {
        User {
            name: "system:anonymous".into(),
            groups: vec!["system:unauthenticated".into()],
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
    User { name, groups }
}

#[cfg(test)]
mod tests {
    use super::*;

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
