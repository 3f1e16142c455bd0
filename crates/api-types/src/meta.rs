//! meta (to be written).
