//! Authorization attributes of a request, derived as upstream's RequestInfo does: the verb from
//! the method (GET -> get/list/watch, POST -> create, PUT -> update, PATCH -> patch, DELETE ->
//! delete/deletecollection), the resource, subresource, name, namespace and API group, or the
//! path of a non-resource request.

use http::Method;

use crate::auth::User;
use crate::request::{Query, Route};

/// What a request asks to do, as the authorizers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Attributes {
    /// The requesting user.
    pub user: User,
    /// `get`, `list`, `watch`, `create`, ... (non-resource: the lower-cased method).
    pub verb: String,
    /// Whether this addresses an API resource (else a non-resource path).
    pub resource_request: bool,
    /// API group (`""` for core).
    pub api_group: String,
    /// Resource plural.
    pub resource: String,
    /// Subresource, or empty.
    pub subresource: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Object name, or empty.
    pub name: String,
    /// The request path (non-resource requests).
    pub path: String,
}

impl Attributes {
    /// Attributes of a resource request.
    pub fn resource(
        user: User,
        verb: &str,
        api_group: &str,
        resource: &str,
        subresource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        Attributes {
            user,
            verb: verb.into(),
            resource_request: true,
            api_group: api_group.into(),
            resource: resource.into(),
            subresource: subresource.into(),
            namespace: namespace.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    /// Attributes of a non-resource request.
    pub fn non_resource(user: User, verb: &str, path: &str) -> Self {
        Attributes {
            user,
            verb: verb.into(),
            resource_request: false,
            api_group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            path: path.into(),
        }
    }

    /// The attributes of a request with `method` on `path` (already routed as `route`).
    pub fn from_request(
        user: User,
        method: &Method,
        path: &str,
        route: &Route,
        query: &Query,
    ) -> Self {
        let Route::Resource(rp) = route else {
            return Self::non_resource(user, &method.as_str().to_ascii_lowercase(), path);
        };
        let mut name = rp.name.clone().unwrap_or_default();
        let verb = match *method {
            Method::GET | Method::HEAD => {
                if rp.watch || (rp.name.is_none() && query.flag("watch")) {
                    "watch"
                } else if rp.name.is_none() {
                    "list"
                } else {
                    "get"
                }
            }
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if rp.name.is_none() => "deletecollection",
            Method::DELETE => "delete",
            _ => "",
        };
        let verb = if verb.is_empty() {
            method.as_str().to_ascii_lowercase()
        } else {
            verb.to_string()
        };
        // A list or watch restricted to one name by `metadata.name=` counts as that name.
        if (verb == "list" || verb == "watch") && name.is_empty() {
            if let Some(selector) = query.get("fieldSelector") {
                let terms: Vec<&str> = selector.split(',').collect();
                if let [term] = terms.as_slice() {
                    if let Some(n) = term
                        .strip_prefix("metadata.name==")
                        .or_else(|| term.strip_prefix("metadata.name="))
                    {
                        name = n.to_string();
                    }
                }
            }
        }
        // `/api/v1/namespaces/<name>` sits in the namespace it names.
        let namespace = if rp.resource.plural == "namespaces" {
            rp.name.clone().unwrap_or_default()
        } else {
            rp.namespace.clone().unwrap_or_default()
        };
        Attributes {
            user,
            verb,
            resource_request: true,
            api_group: rp.resource.group.to_string(),
            resource: rp.resource.plural.to_string(),
            subresource: rp.subresource.clone().unwrap_or_default(),
            namespace,
            name,
            path: path.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::route;

    fn attrs(method: Method, path_and_query: &str) -> Attributes {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let u = User::anonymous();
        Attributes::from_request(u, &method, path, &route(path), &Query::parse(Some(query)))
    }

    #[test]
    fn verbs_follow_upstream() {
        assert_eq!(attrs(Method::GET, "/api/v1/namespaces/d/pods").verb, "list");
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/d/pods?watch=true").verb,
            "watch"
        );
        assert_eq!(attrs(Method::GET, "/api/v1/watch/pods").verb, "watch");
        assert_eq!(
            attrs(Method::GET, "/api/v1/namespaces/d/pods/p").verb,
            "get"
        );
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/d/pods").verb,
            "deletecollection"
        );
        assert_eq!(
            attrs(Method::DELETE, "/api/v1/namespaces/d/pods/p").verb,
            "delete"
        );
        assert_eq!(
            attrs(
                Method::PATCH,
                "/apis/apps/v1/namespaces/d/deployments/x/scale"
            )
            .verb,
            "patch"
        );
        let a = attrs(
            Method::GET,
            "/apis/apps/v1/namespaces/d/deployments/x/scale",
        );
        assert_eq!(
            (
                a.api_group.as_str(),
                a.resource.as_str(),
                a.subresource.as_str(),
                a.namespace.as_str(),
                a.name.as_str()
            ),
            ("apps", "deployments", "scale", "d", "x")
        );
        let a = attrs(Method::GET, "/api/v1/namespaces/kube-system");
        assert_eq!(
            (a.namespace.as_str(), a.name.as_str()),
            ("kube-system", "kube-system")
        );
        let a = attrs(
            Method::GET,
            "/api/v1/nodes?fieldSelector=metadata.name%3Dn1",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "n1"));
        let a = attrs(Method::GET, "/apis");
        assert!(!a.resource_request);
        assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", "/apis"));
    }
}
