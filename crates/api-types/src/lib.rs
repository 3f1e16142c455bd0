//! The API objects and what every component shares about them, with no I/O.
//!
//! - [`k8s_openapi`] is re-exported: the exact upstream object shapes.
//! - [`registry`]: every served resource (group, version, kind, plural, scope, verbs, subresources).
//! - [`selector`]: label and field selectors (parse and match).
//! - [`quantity`]: `resource.Quantity` parsing and arithmetic.
//! - [`duration`]: ages as `kubectl get` prints them.
//! - [`meta`]: small helpers over object metadata (owner references, conditions).

pub use k8s_openapi;

pub mod duration;
pub mod meta;
pub mod quantity;
pub mod registry;
pub mod selector;
