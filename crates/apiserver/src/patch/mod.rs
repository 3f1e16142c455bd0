//! Patch formats beyond what `json-patch` provides: strategic merge patch.

pub mod strategic;
