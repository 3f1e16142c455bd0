//! NamespaceLifecycle admission: the immortal namespaces (`default`, `kube-system`,
//! `kube-public`) may not be deleted. Creates in a missing or terminating namespace are refused
//! by the create handler's namespace check (`handlers::create::check_namespace`), which answers
//! the same 404 and 403 as upstream's plugin.

use super::plugins::{forbidden, Operation, Request};
use crate::status::ApiError;

/// Namespaces that can never be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

/// Checks `req`.
pub fn admit(req: &Request<'_>) -> Result<(), ApiError> {
    if req.operation == Operation::Delete
        && req.is("", "namespaces")
        && req.subresource.is_none()
        && IMMORTAL.contains(&req.name)
    {
        return Err(forbidden(
            req,
            req.name,
            "this namespace may not be deleted",
        ));
    }
    Ok(())
}
