//! Fuzz tests (ordinary `#[test]`s with a seeded PRNG, so a failure replays) for everything
//! that parses credentials off the network: the service-account JWT verifier, the static token
//! lookup and token file parser, the `Authorization` header reader, and the client-certificate
//! subject parser and chain check. Random bytes and mutations of valid inputs (bit flips,
//! truncations, segment swaps, re-encoded payloads under the old signature) must never panic and
//! never authenticate. Over HTTP, garbled, expired, wrongly-signed and mutated tokens get the
//! upstream 401 `Status`, never a 500, and the server keeps serving.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube_apiserver::auth::serviceaccount::{
    looks_like_jwt, Claims, KubernetesClaims, ObjectRef, Signer, Verifier,
};
use kube_apiserver::auth::tokens::TokenFile;
use kube_apiserver::auth::{bearer_token, check_chain, subject_user, CertificateUser};
use kube_apiserver::testing::TestServer;
use kube_apiserver::tls::ClientCa;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const NOW: i64 = 1_900_000_000;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

fn signer() -> Signer {
    let key = rcgen::KeyPair::generate().expect("key");
    Signer::from_pkcs8(&key.serialize_der()).expect("signer")
}

fn claims(name: &str, exp: i64) -> Claims {
    Claims {
        iss: ISSUER.into(),
        sub: format!("system:serviceaccount:default:{name}"),
        aud: vec![ISSUER.into()],
        exp,
        iat: exp - 3600,
        nbf: exp - 3600,
        jti: format!("jti-{name}"),
        kubernetes: KubernetesClaims {
            namespace: "default".into(),
            serviceaccount: ObjectRef {
                name: name.into(),
                uid: format!("uid-{name}"),
            },
            ..KubernetesClaims::default()
        },
    }
}

fn random_bytes(rng: &mut StdRng, max: usize) -> Vec<u8> {
    let len = rng.random_range(0..max);
    (0..len).map(|_| rng.random()).collect()
}

fn random_ascii(rng: &mut StdRng, max: usize) -> String {
    let len = rng.random_range(0..max);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A random token-shaped string: random bytes, random base64 text with dots, or three
/// segments of base64-encoded random (sometimes JSON-looking) data.
fn random_token(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        0 => String::from_utf8_lossy(&random_bytes(rng, 200)).into_owned(),
        1 => random_ascii(rng, 300),
        2 => {
            let parts: Vec<String> = (0..3).map(|_| b64(&random_bytes(rng, 120))).collect();
            parts.join(".")
        }
        _ => {
            let header = match rng.random_range(0..3) {
                0 => json!({"alg": "ES256", "kid": random_ascii(rng, 20)}),
                1 => json!({"alg": "none"}),
                _ => json!({"alg": "HS256", "typ": "JWT"}),
            };
            let payload = json!({"iss": ISSUER, "sub": random_ascii(rng, 30), "exp": rng.random::<i64>(),
                "aud": [ISSUER], "kubernetes.io": {"namespace": "default"}});
            format!(
                "{}.{}.{}",
                b64(header.to_string().as_bytes()),
                b64(payload.to_string().as_bytes()),
                b64(&random_bytes(rng, 80))
            )
        }
    }
}

/// Mutations of a valid token: character substitutions, byte-level bit flips, truncations,
/// extra or missing segments, segments swapped with another valid token, a changed payload
/// under the old signature, and `alg` downgrades.
fn token_mutations(rng: &mut StdRng, token: &str, other: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = token.as_bytes();
    for i in 0..bytes.len() {
        let mut b = bytes.to_vec();
        b[i] = ALPHABET[rng.random_range(0..ALPHABET.len())];
        out.push(String::from_utf8_lossy(&b).into_owned());
        let mut b = bytes.to_vec();
        b[i] ^= 1 << rng.random_range(0..8);
        out.push(String::from_utf8_lossy(&b).into_owned());
    }
    for len in 0..bytes.len() {
        out.push(token[..len].to_string());
    }
    let parts: Vec<&str> = token.split('.').collect();
    let others: Vec<&str> = other.split('.').collect();
    for mask in 1..7u8 {
        let pick = |i: usize| {
            if mask & (1 << i) != 0 {
                others[i]
            } else {
                parts[i]
            }
        };
        out.push(format!("{}.{}.{}", pick(0), pick(1), pick(2)));
    }
    out.push(format!("{}.{}", parts[0], parts[1]));
    out.push(format!("{token}."));
    out.push(format!(".{token}"));
    out.push(format!("{token}.{}", parts[2]));
    out.push(format!("{}.{}.{}", parts[1], parts[0], parts[2]));
    out.push(format!("{}.{}.", parts[0], parts[1]));
    out.push(format!("{}={}", token, "="));
    // A payload made more powerful, kept under the old signature.
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload"),
    )
    .expect("json");
    let mut changed = payload.clone();
    changed["sub"] = json!("system:serviceaccount:kube-system:admin");
    changed["kubernetes.io"]["namespace"] = json!("kube-system");
    changed["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    out.push(format!(
        "{}.{}.{}",
        parts[0],
        b64(changed.to_string().as_bytes()),
        parts[2]
    ));
    let mut later = payload;
    later["exp"] = json!(NOW + 1_000_000);
    out.push(format!(
        "{}.{}.{}",
        parts[0],
        b64(later.to_string().as_bytes()),
        parts[2]
    ));
    for alg in ["none", "HS256", "RS256", "ES384"] {
        let header = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        out.push(format!("{header}.{}.{}", parts[1], parts[2]));
        out.push(format!("{header}.{}.", parts[1]));
    }
    out.retain(|m| m != token);
    out
}

#[test]
fn random_bytes_never_pass_the_token_authenticators() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let signer = signer();
    let verifier = Verifier {
        keys: vec![signer.public_key()],
        issuers: vec![ISSUER.into()],
    };
    let file = TokenFile::parse(Path::new("t.csv"), "s3cr3t-token,alice,1,devs\n").expect("file");
    for _ in 0..20_000 {
        let token = random_token(&mut rng);
        looks_like_jwt(&token);
        assert!(verifier.verify(&token, NOW).is_err(), "{token:?}");
        assert!(file.user(&token).is_none(), "{token:?}");
        if let Ok(value) = http::HeaderValue::from_str(&token) {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            bearer_token(&headers);
        }
    }
}

#[test]
fn mutated_service_account_tokens_never_verify() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    let signer = signer();
    let verifier = Verifier {
        keys: vec![signer.public_key()],
        issuers: vec![ISSUER.into()],
    };
    let mut tried = 0;
    for i in 0..4 {
        let token = signer
            .sign(&claims(&format!("sa{i}"), NOW + 3600))
            .expect("sign");
        let other = signer
            .sign(&claims(&format!("other{i}"), NOW + 7200))
            .expect("sign");
        assert!(verifier.verify(&token, NOW).is_ok());
        for mutated in token_mutations(&mut rng, &token, &other) {
            tried += 1;
            assert!(
                verifier.verify(&mutated, NOW).is_err(),
                "a mutation verified: {mutated:?} (from {token:?})"
            );
        }
    }
    assert!(tried > 4000, "only {tried} mutations");
}

#[test]
fn expired_early_foreign_and_wrong_issuer_tokens_never_verify() {
    let ours = signer();
    let theirs = signer();
    let verifier = Verifier {
        keys: vec![ours.public_key()],
        issuers: vec![ISSUER.into()],
    };
    let expired = ours.sign(&claims("a", NOW - 1)).expect("sign");
    assert!(verifier.verify(&expired, NOW).is_err());
    let early = ours.sign(&claims("a", NOW + 7200)).expect("sign");
    assert!(verifier.verify(&early, NOW - 3601).is_err());
    let foreign = theirs.sign(&claims("a", NOW + 3600)).expect("sign");
    assert!(verifier.verify(&foreign, NOW).is_err());
    let mut other_issuer = claims("a", NOW + 3600);
    other_issuer.iss = "https://evil.example".into();
    let other_issuer = ours.sign(&other_issuer).expect("sign");
    assert!(verifier.verify(&other_issuer, NOW).is_err());
    let mut wrong_subject = claims("a", NOW + 3600);
    wrong_subject.sub = "system:serviceaccount:kube-system:admin".into();
    let wrong_subject = ours.sign(&wrong_subject).expect("sign");
    assert!(verifier.verify(&wrong_subject, NOW).is_err());
}

#[test]
fn the_token_file_parser_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    let pieces = [
        "tok", "user", "1", ",", "\"", "\"a,b\"", "\n", "#", " ", "\r\n", "", "é",
    ];
    for _ in 0..20_000 {
        let text: String = if rng.random_bool(0.5) {
            String::from_utf8_lossy(&random_bytes(&mut rng, 200)).into_owned()
        } else {
            (0..rng.random_range(0..30))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect()
        };
        if let Ok(file) = TokenFile::parse(Path::new("t.csv"), &text) {
            assert!(file.user("").is_none(), "{text:?}");
        }
    }
}

/// A CA and a client certificate it issued (DER), plus the CA's trust.
fn pki() -> (ClientCa, CertificateDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ca");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "devs");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = params.signed_by(&key, &issuer).expect("leaf").der().clone();
    (ClientCa::new(roots).expect("client ca"), leaf)
}

#[test]
fn mutated_and_random_client_certificates_never_verify() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0004);
    let (ca, leaf) = pki();
    assert!(matches!(
        check_chain(std::slice::from_ref(&leaf), Some(&ca)),
        CertificateUser::Verified(_)
    ));
    let original = leaf.as_ref().to_vec();
    let mut mutations: Vec<Vec<u8>> = Vec::new();
    for i in 0..original.len() {
        let mut b = original.clone();
        b[i] ^= 1 << rng.random_range(0..8);
        mutations.push(b);
        mutations.push(original[..i].to_vec());
    }
    for _ in 0..3000 {
        let mut b = original.clone();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
        }
        mutations.push(b);
        let mut spliced = original.clone();
        let at = rng.random_range(0..spliced.len());
        let junk = random_bytes(&mut rng, 40);
        spliced.splice(at..at, junk);
        mutations.push(spliced);
    }
    for _ in 0..5000 {
        let mut b = random_bytes(&mut rng, 600);
        if let Some(first) = b.first_mut() {
            *first = 0x30;
        }
        mutations.push(b);
    }
    for bytes in mutations {
        if bytes == original {
            continue;
        }
        let der = CertificateDer::from(bytes);
        subject_user(&der);
        assert_eq!(
            check_chain(std::slice::from_ref(&der), Some(&ca)),
            CertificateUser::Rejected,
            "a mutated certificate verified: {:02x?}",
            der.as_ref()
        );
        // As an intermediate after a valid leaf it changes nothing.
        assert!(matches!(
            check_chain(&[leaf.clone(), der], Some(&ca)),
            CertificateUser::Verified(_)
        ));
    }
}

/// One TLS connection to the server, reused for many requests.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(server: &TestServer) -> anyhow::Result<Connection> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(server.pki.ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(server.addr).await?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Connection { sender })
    }

    /// GET `path` with `Authorization: <authorization>`; (status, JSON body).
    async fn get(&mut self, path: &str, authorization: &str) -> anyhow::Result<(u16, Value)> {
        self.sender.ready().await?;
        let request = http::Request::get(path)
            .header("host", "localhost")
            .header("authorization", authorization)
            .body(Full::new(Bytes::new()))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

fn assert_unauthorized((code, body): &(u16, Value), token: &str) {
    assert_eq!(*code, 401, "{token:?}: {body}");
    assert_eq!(body["kind"], "Status", "{token:?}: {body}");
    assert_eq!(body["status"], "Failure", "{token:?}: {body}");
    assert_eq!(body["reason"], "Unauthorized", "{token:?}: {body}");
    assert_eq!(body["code"], 401, "{token:?}: {body}");
}

#[tokio::test]
async fn garbled_expired_and_wrongly_signed_tokens_get_401_status_never_500() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let key = rcgen::KeyPair::generate()?;
    std::fs::write(dir.path().join("sa.key"), key.serialize_pem())?;
    std::fs::write(dir.path().join("sa.pub"), key.public_key_pem())?;
    std::fs::write(dir.path().join("tokens.csv"), "alice-token,alice,1\n")?;
    let server = TestServer::start_with(|o| {
        o.service_account_key_file = vec![dir.path().join("sa.pub")];
        o.service_account_signing_key_file = Some(dir.path().join("sa.key"));
        o.service_account_issuer = Some(ISSUER.into());
        o.authn.token_auth_file = Some(dir.path().join("tokens.csv"));
    })
    .await?;
    // A real token from the TokenRequest API, for a service account that exists.
    let admin = server.client().await?;
    let post = |path: &str, body: Value| {
        http::Request::post(path.to_string())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
    };
    admin
        .request_text(post(
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
        )?)
        .await?;
    let answer: Value = serde_json::from_str(
        &admin
            .request_text(post(
                "/api/v1/namespaces/default/serviceaccounts/robot/token",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"audiences": [ISSUER]}}),
            )?)
            .await?,
    )?;
    let valid = answer["status"]["token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token in {answer}"))?
        .to_string();

    let path = "/api/v1/namespaces/default/configmaps";
    let mut conn = Connection::open(&server).await?;
    assert_eq!(conn.get(path, &format!("Bearer {valid}")).await?.0, 200);
    assert_eq!(conn.get(path, "Bearer alice-token").await?.0, 200);

    let ours = Signer::load(&dir.path().join("sa.key"))?;
    let theirs = signer();
    let now = jiff::Timestamp::now().as_second();
    let mut expired = claims("robot", now - 60);
    expired.iat = now - 7200;
    expired.nbf = now - 7200;
    let mut bad: Vec<String> = vec![
        ours.sign(&expired)?,
        theirs.sign(&claims("robot", now + 3600))?,
        "garbage".into(),
        "a.b.c".into(),
        "....".into(),
        "alice-token2".into(),
        "Alice-token".into(),
    ];
    let mut rng = StdRng::seed_from_u64(0x5eed_0005);
    let twin = ours.sign(&claims("robot", now + 7200))?;
    let mutations = token_mutations(&mut rng, &valid, &twin);
    for _ in 0..300 {
        bad.push(mutations[rng.random_range(0..mutations.len())].clone());
        bad.push(random_token(&mut rng));
    }
    let mut sent = 0;
    for token in &bad {
        let authorization = format!("Bearer {token}");
        if http::HeaderValue::from_str(&authorization).is_err() || bearer_token_is_empty(token) {
            continue;
        }
        sent += 1;
        let answer = conn.get(path, &authorization).await?;
        assert_unauthorized(&answer, token);
    }
    assert!(sent > 300, "only {sent} tokens sent");
    // Still serving, on the same connection.
    assert_eq!(conn.get(path, &format!("Bearer {valid}")).await?.0, 200);
    Ok(())
}

/// Tokens that are empty after trimming are no bearer token at all (anonymous, not a 401).
fn bearer_token_is_empty(token: &str) -> bool {
    token.trim().is_empty()
}
