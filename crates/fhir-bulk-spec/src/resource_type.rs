//! The R4 resource types. (Stub: filled by the generator in `xtask`.)

/// Every R4 resource type, sorted.
pub static RESOURCE_TYPES: &[&str] = &[];

/// True for a known R4 resource type name (case-sensitive).
pub fn is_resource_type(s: &str) -> bool {
    RESOURCE_TYPES.binary_search(&s).is_ok()
}
