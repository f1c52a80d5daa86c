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

/// The `identifier` and `name` criteria of `q` as SQL, each ` AND EXISTS (…)` over the
/// `search_values s` of the resource row `r`, and the text values they bind, in order. Both
/// backends build their search from it; they differ only in placeholder syntax and in how
/// they write the `_id` criterion, which stays theirs. `placeholder(i)` names the `i`-th of
/// the values returned (from 0) as the backend writes it, counting whatever the caller binds
/// before them (`?5`, `$5`).
pub(crate) fn value_criteria(
    q: &SearchQuery,
    placeholder: impl Fn(usize) -> String,
) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    let mut bind = |v: String| {
        values.push(v);
        placeholder(values.len() - 1)
    };
    if !q.identifiers.is_empty() {
        let alts: Vec<String> = q
            .identifiers
            .iter()
            .map(|(system, value)| match system {
                Some(s) => format!(
                    "(s.param = 'identifier' AND s.value = {})",
                    bind(format!("{s}|{value}"))
                ),
                None => format!(
                    "(s.param = 'identifier:value' AND s.value = {})",
                    bind(value.clone())
                ),
            })
            .collect();
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM search_values s WHERE s.tenant = r.tenant AND s.type = r.type
               AND s.id = r.id AND ({}))",
            alts.join(" OR ")
        );
    }
    if !q.names.is_empty() {
        let alts: Vec<String> = q
            .names
            .iter()
            .map(|n| {
                let n = n.to_lowercase();
                let len = n.chars().count();
                format!("substr(s.value, 1, {len}) = {}", bind(n))
            })
            .collect();
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM search_values s WHERE s.tenant = r.tenant AND s.type = r.type
               AND s.id = r.id AND s.param = 'name' AND ({}))",
            alts.join(" OR ")
        );
    }
    (sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values bind in order, numbered after the caller's; `name` matches a lower-cased
    /// prefix of its length in characters.
    #[test]
    fn value_criteria_bind_in_order() {
        let q = SearchQuery {
            resource_type: "Patient".into(),
            identifiers: vec![(Some("urn:a".into()), "1".into()), (None, "x".into())],
            names: vec!["ÄRz".into()],
            ..SearchQuery::default()
        };
        let (sql, values) = value_criteria(&q, |i| format!("${}", i + 4));
        assert_eq!(values, ["urn:a|1", "x", "ärz"]);
        assert!(sql.contains(
            "((s.param = 'identifier' AND s.value = $4) OR (s.param = 'identifier:value' AND s.value = $5))"
        ));
        assert!(sql.contains("s.param = 'name' AND (substr(s.value, 1, 3) = $6)"));
        assert_eq!(sql.matches(" AND EXISTS (").count(), 2);

        let none = SearchQuery::default();
        assert_eq!(
            value_criteria(&none, |_| unreachable!()),
            (String::new(), vec![])
        );
    }
}
