//! Impersonation, as upstream's filter: `Impersonate-User`, `Impersonate-Group` (repeatable),
//! `Impersonate-Uid` and `Impersonate-Extra-<key>` headers. Each requested attribute is
//! authorized for the real user with verb `impersonate` (users, groups and serviceaccounts in
//! the core group; uids and userextras in `authentication.k8s.io`); any denial is the upstream
//! 403. The request then runs as the impersonated user (plus `system:authenticated`).

use std::collections::BTreeMap;

use http::HeaderMap;

use super::User;
use crate::authz::Attributes;
use crate::state::ApiState;
use crate::status::ApiError;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Decodes `%XX` escapes of an extra key (upstream escapes keys that are not header-safe).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

/// What the headers ask to impersonate.
#[derive(Debug, Default, PartialEq)]
struct Requested {
    user: Option<String>,
    groups: Vec<String>,
    uid: Option<String>,
    extra: BTreeMap<String, Vec<String>>,
}

fn requested(headers: &HeaderMap) -> Result<Requested, ApiError> {
    let mut r = Requested::default();
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("impersonate-") {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("invalid {name} header")))?
            .to_string();
        match name {
            USER => r.user = Some(value),
            GROUP => r.groups.push(value),
            UID => r.uid = Some(value),
            _ => {
                if let Some(key) = name.strip_prefix(EXTRA_PREFIX) {
                    r.extra.entry(unescape(key)).or_default().push(value);
                }
            }
        }
    }
    Ok(r)
}

/// Whether the request carries any impersonation header.
pub fn is_impersonating(headers: &HeaderMap) -> bool {
    headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
}

/// Removes the impersonation headers (after they have been applied).
pub fn strip_headers(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Applies the impersonation headers for `user` (unchanged when there are none).
pub fn impersonate(state: &ApiState, user: User, headers: &HeaderMap) -> Result<User, ApiError> {
    if !is_impersonating(headers) {
        return Ok(user);
    }
    let r = requested(headers)?;
    let Some(name) = r.user.clone() else {
        let mut what: Vec<String> = r.groups.iter().map(|g| format!("group {g}")).collect();
        if let Some(uid) = &r.uid {
            what.push(format!("uid {uid}"));
        }
        for (k, v) in &r.extra {
            what.push(format!("extra {k}={}", v.join(",")));
        }
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            what.join(" ")
        )));
    };
    let check = |group: &str, resource: &str, sub: &str, ns: &str, obj: &str| {
        state.authorizer.check(&Attributes::resource(
            user.clone(),
            "impersonate",
            group,
            resource,
            sub,
            ns,
            obj,
        ))
    };
    let mut groups = r.groups.clone();
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    match sa {
        Some((ns, sa_name)) => {
            check("", "serviceaccounts", "", ns, sa_name)?;
            if r.groups.is_empty() {
                groups = vec![
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check("", "users", "", "", &name)?,
    }
    for g in &r.groups {
        check("", "groups", "", "", g)?;
    }
    for (key, values) in &r.extra {
        for v in values {
            check("authentication.k8s.io", "userextras", key, "", v)?;
        }
    }
    if let Some(uid) = &r.uid {
        check("authentication.k8s.io", "uids", "", "", uid)?;
    }
    let marker = if name == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !groups.iter().any(|g| g == marker) {
        groups.push(marker.to_string());
    }
    tracing::debug!(user = %user.name, as_user = %name, "impersonating");
    Ok(User {
        name,
        groups,
        uid: r.uid.unwrap_or_default(),
        extra: r.extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_collected() {
        let mut h = HeaderMap::new();
        h.insert("Impersonate-User", "bob".parse().expect("v"));
        h.append("Impersonate-Group", "a".parse().expect("v"));
        h.append("Impersonate-Group", "b".parse().expect("v"));
        h.insert("Impersonate-Extra-Scopes%2Fx", "s".parse().expect("v"));
        let r = requested(&h).expect("requested");
        assert_eq!(r.user.as_deref(), Some("bob"));
        assert_eq!(r.groups, vec!["a", "b"]);
        assert_eq!(r.extra.get("scopes/x"), Some(&vec!["s".to_string()]));
        strip_headers(&mut h);
        assert!(!is_impersonating(&h));
    }

    #[test]
    fn escapes_decode() {
        assert_eq!(unescape("a%2fb"), "a/b");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz"), "%zz");
    }
}
