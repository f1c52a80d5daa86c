//! The small REST search around export: Patient and Group by `_id`, `identifier`, `name`.

/// A search of one resource type. Every given criterion must match (AND); the values inside
/// one criterion are alternatives (OR).
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Resource type searched.
    pub resource_type: String,
    /// `_id` values.
    pub ids: Vec<String>,
    /// `identifier` tokens: `(Some(system), value)` for `system|value`, `(None, value)` for
    /// a bare value (any system).
    pub identifiers: Vec<(Option<String>, String)>,
    /// `name`: case-insensitive starts-with.
    pub names: Vec<String>,
    /// Page size (`_count`).
    pub count: usize,
    /// Entries to skip (paging).
    pub offset: usize,
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// Total matches.
    pub total: u64,
    /// The JSON of this page's resources.
    pub resources: Vec<Vec<u8>>,
}
