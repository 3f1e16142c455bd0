//! Patch formats beyond what `json-patch` provides: strategic merge patch, and server-side apply
//! with the field sets of `managedFields`.

pub mod apply;
pub mod fieldpath;
pub mod strategic;
