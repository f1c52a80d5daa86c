//! The small REST search (Patient/Group by `_id`, `identifier`, `name`).

use crate::{Result, SearchPage, SearchQuery};
use rusqlite::{Connection, types::Value as SqlValue};

pub(super) fn search(c: &Connection, tenant: &str, q: &SearchQuery) -> Result<SearchPage> {
    let mut sql =
        String::from("FROM resources r WHERE r.tenant = ?1 AND r.type = ?2 AND r.deleted = 0");
    let mut p: Vec<SqlValue> = vec![
        SqlValue::Text(tenant.into()),
        SqlValue::Text(q.resource_type.clone()),
    ];
    let bind = |p: &mut Vec<SqlValue>, v: String| {
        p.push(SqlValue::Text(v));
        format!("?{}", p.len())
    };
    if !q.ids.is_empty() {
        let slots: Vec<String> = q.ids.iter().map(|i| bind(&mut p, i.clone())).collect();
        sql += &format!(" AND r.id IN ({})", slots.join(", "));
    }
    if !q.identifiers.is_empty() {
        let alts: Vec<String> = q
            .identifiers
            .iter()
            .map(|(system, value)| match system {
                Some(s) => format!(
                    "(s.param = 'identifier' AND s.value = {})",
                    bind(&mut p, format!("{s}|{value}"))
                ),
                None => format!(
                    "(s.param = 'identifier:value' AND s.value = {})",
                    bind(&mut p, value.clone())
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
                format!("substr(s.value, 1, {len}) = {}", bind(&mut p, n))
            })
            .collect();
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM search_values s WHERE s.tenant = r.tenant AND s.type = r.type
               AND s.id = r.id AND s.param = 'name' AND ({}))",
            alts.join(" OR ")
        );
    }
    let total: i64 = c.query_row(
        &format!("SELECT count(*) {sql}"),
        rusqlite::params_from_iter(p.iter()),
        |r| r.get(0),
    )?;
    let mut resources = Vec::new();
    if q.count > 0 {
        let page_sql = format!(
            "SELECT r.json {sql} ORDER BY r.id LIMIT {} OFFSET {}",
            q.count, q.offset
        );
        let mut st = c.prepare(&page_sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(p.iter()))?;
        while let Some(row) = rows.next()? {
            resources.push(row.get::<_, Vec<u8>>(0)?);
        }
    }
    Ok(SearchPage {
        total: total as u64,
        resources,
    })
}
