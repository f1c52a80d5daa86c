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
    if !q.ids.is_empty() {
        let slots: Vec<String> = q
            .ids
            .iter()
            .map(|i| {
                p.push(SqlValue::Text(i.clone()));
                format!("?{}", p.len())
            })
            .collect();
        sql += &format!(" AND r.id IN ({})", slots.join(", "));
    }
    let first = p.len() + 1;
    let (criteria, values) = crate::search::value_criteria(q, |i| format!("?{}", first + i));
    sql += &criteria;
    p.extend(values.into_iter().map(SqlValue::Text));
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
