//! Reads and the small REST search (same criteria, totals and paging as `sqlite/search.rs`;
//! ids order by byte in both, as the resource tables' text columns are COLLATE "C").

use crate::{Result, SearchPage, SearchQuery, StoredResource};
use deadpool_postgres::Pool;
use fhir_bulk_spec::instant::Instant;
use tokio_postgres::types::ToSql;

pub(super) async fn read(
    pool: &Pool,
    tenant: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>> {
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(
            "SELECT version, last_updated, deleted, json FROM resources
             WHERE tenant = $1 AND type = $2 AND id = $3",
        )
        .await?;
    Ok(conn
        .query_opt(&st, &[&tenant, &resource_type, &id])
        .await?
        .map(|r| StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version: r.get(0),
            last_updated: Instant(r.get(1)),
            deleted: r.get(2),
            json: r.get(3),
        }))
}

pub(super) async fn search(pool: &Pool, tenant: &str, q: SearchQuery) -> Result<SearchPage> {
    let mut p: Vec<Box<dyn ToSql + Sync + Send>> = vec![
        Box::new(tenant.to_string()),
        Box::new(q.resource_type.clone()),
    ];
    let mut sql =
        String::from("FROM resources r WHERE r.tenant = $1 AND r.type = $2 AND NOT r.deleted");
    if !q.ids.is_empty() {
        p.push(Box::new(q.ids.clone()));
        sql += &format!(" AND r.id = ANY(${}::text[])", p.len());
    }
    let first = p.len() + 1;
    let (criteria, values) = crate::search::value_criteria(&q, |i| format!("${}", first + i));
    sql += &criteria;
    p.extend(
        values
            .into_iter()
            .map(|v| Box::new(v) as Box<dyn ToSql + Sync + Send>),
    );
    let params: Vec<&(dyn ToSql + Sync)> = p.iter().map(|b| &**b as _).collect();
    let conn = pool.get().await?;
    let total: i64 = conn
        .query_one(&format!("SELECT count(*) {sql}"), &params)
        .await?
        .get(0);
    let mut resources = Vec::new();
    if q.count > 0 {
        let page_sql = format!(
            "SELECT r.json {sql} ORDER BY r.id LIMIT {} OFFSET {}",
            q.count, q.offset
        );
        for row in conn.query(&page_sql, &params).await? {
            resources.push(row.get::<_, Vec<u8>>(0));
        }
    }
    Ok(SearchPage {
        total: total as u64,
        resources,
    })
}

pub(super) async fn type_counts(pool: &Pool, tenant: &str) -> Result<Vec<(String, u64)>> {
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(
            "SELECT type, live FROM type_counts WHERE tenant = $1 AND live > 0 ORDER BY type",
        )
        .await?;
    Ok(conn
        .query(&st, &[&tenant])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
        .collect())
}

pub(super) async fn group_members(
    pool: &Pool,
    tenant: &str,
    group_id: &str,
) -> Result<Option<Vec<(String, String)>>> {
    let mut conn = pool.get().await?;
    // One snapshot for the Group's liveness and its members.
    let tx = conn
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let live = tx
        .query_opt(
            "SELECT NOT deleted FROM resources WHERE tenant = $1 AND type = 'Group' AND id = $2",
            &[&tenant, &group_id],
        )
        .await?
        .is_some_and(|r| r.get::<_, bool>(0));
    if !live {
        return Ok(None);
    }
    let rows = tx
        .query(
            "SELECT member_type, member_id FROM group_members
             WHERE tenant = $1 AND group_id = $2 ORDER BY member_type, member_id",
            &[&tenant, &group_id],
        )
        .await?;
    tx.commit().await?;
    Ok(Some(rows.iter().map(|r| (r.get(0), r.get(1))).collect()))
}

#[cfg(test)]
mod tests {
    use super::super::write::testing::{db, norm, sqlite};
    use crate::{SearchQuery, Store, Write};
    use serde_json::{Value, json};

    fn put(v: Value) -> Write {
        Write::put(v).unwrap()
    }

    fn data() -> Vec<Write> {
        let mut w = Vec::new();
        for (id, name, sys, value) in [
            ("a", "Ärzte Ann", "urn:a", "1"),
            ("B", "anna", "urn:b", "1"),
            ("c", "Bob", "urn:a", "2"),
            ("d", "ANNABEL", "", "3"),
            ("e", "Zoë", "urn:a", "4"),
            ("f.1", "annex", "urn:a", "5"),
            ("F-2", "Ann", "urn:c", "6"),
        ] {
            w.push(put(
                json!({"resourceType": "Patient", "id": id, "name": name,
                "identifier": [{"system": sys, "value": value}, {"value": format!("x{value}")}]}),
            ));
        }
        w.push(put(
            json!({"resourceType": "Group", "id": "g", "name": "Ann's group",
            "type": "person", "actual": true, "member": [
                {"entity": {"reference": "Patient/c"}},
                {"entity": {"reference": "Patient/a"}},
                {"entity": {"reference": "Practitioner/dr"}},
                {"entity": {"reference": "Patient/B"}, "inactive": true},
                {"entity": {"reference": "Patient/a"}}]}),
        ));
        w.push(put(
            json!({"resourceType": "Group", "id": "empty", "type": "person",
            "actual": true}),
        ));
        w.push(put(
            json!({"resourceType": "Observation", "id": "o", "status": "final",
            "code": {}, "subject": {"reference": "Patient/a"}}),
        ));
        w
    }

    fn queries() -> Vec<SearchQuery> {
        let q = |f: &dyn Fn(&mut SearchQuery)| {
            let mut q = SearchQuery {
                resource_type: "Patient".into(),
                count: 3,
                ..SearchQuery::default()
            };
            f(&mut q);
            q
        };
        vec![
            q(&|_| {}),
            q(&|q| q.offset = 3),
            q(&|q| q.offset = 6),
            q(&|q| q.count = 0),
            q(&|q| q.count = 100),
            q(&|q| q.ids = vec!["a".into(), "F-2".into(), "zz".into()]),
            q(&|q| q.identifiers = vec![(Some("urn:a".into()), "1".into())]),
            q(&|q| q.identifiers = vec![(Some("".into()), "3".into())]),
            q(&|q| q.identifiers = vec![(None, "1".into()), (None, "x4".into())]),
            q(&|q| q.identifiers = vec![(Some("urn:b".into()), "2".into())]),
            q(&|q| q.names = vec!["ann".into()]),
            q(&|q| q.names = vec!["ÄR".into(), "zo".into()]),
            q(&|q| {
                q.names = vec!["an".into()];
                q.identifiers = vec![(None, "1".into())];
                q.ids = vec!["B".into(), "a".into()];
            }),
            q(&|q| {
                q.resource_type = "Group".into();
                q.names = vec!["ann".into()];
            }),
            q(&|q| q.resource_type = "Observation".into()),
        ]
    }

    /// Every query pages, orders and counts as SQLite's; reads, counts and members too.
    #[tokio::test]
    async fn search_and_reads_match_sqlite() {
        let Some(pg) = db().await else { return };
        let (lite, _dir) = sqlite().await;
        let (a, b): (&dyn Store, &dyn Store) = (&pg.store, &lite);
        for s in [a, b] {
            s.write("t", data()).await.unwrap();
            s.write("t", vec![Write::delete("Patient", "e").unwrap()])
                .await
                .unwrap();
            s.write(
                "u",
                vec![put(json!({"resourceType": "Patient", "id": "a"}))],
            )
            .await
            .unwrap();
        }
        for q in queries() {
            let pa = a.search("t", q.clone()).await.unwrap();
            let pb = b.search("t", q.clone()).await.unwrap();
            let ids = |p: &crate::SearchPage| {
                p.resources
                    .iter()
                    .map(|j| norm(j)["id"].as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
            };
            assert_eq!((pa.total, ids(&pa)), (pb.total, ids(&pb)), "{q:?}");
        }
        let all = a
            .search(
                "t",
                SearchQuery {
                    resource_type: "Patient".into(),
                    count: 100,
                    ..SearchQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(all.total, 6, "the tombstone is not found");
        let first = norm(&all.resources[0]);
        assert_eq!(first["id"], "B", "ids in byte order");

        assert_eq!(
            a.type_counts("t").await.unwrap(),
            b.type_counts("t").await.unwrap()
        );
        assert_eq!(
            a.type_counts("t").await.unwrap(),
            vec![
                ("Group".into(), 2),
                ("Observation".into(), 1),
                ("Patient".into(), 6)
            ]
        );
        assert!(a.type_counts("nobody").await.unwrap().is_empty());
        for g in ["g", "empty", "nope", "a"] {
            assert_eq!(
                a.group_members("t", g).await.unwrap(),
                b.group_members("t", g).await.unwrap(),
                "{g}"
            );
        }
        assert_eq!(
            a.group_members("t", "g").await.unwrap().unwrap(),
            [("Patient", "a"), ("Patient", "c"), ("Practitioner", "dr")]
                .map(|(t, i)| (t.to_string(), i.to_string()))
                .to_vec()
        );
        a.write("t", vec![Write::delete("Group", "g").unwrap()])
            .await
            .unwrap();
        assert_eq!(a.group_members("t", "g").await.unwrap(), None);

        let e = a.read("t", "Patient", "e").await.unwrap().unwrap();
        assert!(e.deleted && e.json.is_none() && e.version == 2);
        let p = a.read("t", "Patient", "a").await.unwrap().unwrap();
        let q = b.read("t", "Patient", "a").await.unwrap().unwrap();
        assert_eq!(
            (p.version, p.deleted, norm(p.json.as_deref().unwrap())),
            (q.version, q.deleted, norm(q.json.as_deref().unwrap()))
        );
        let raw: Value = serde_json::from_slice(p.json.as_deref().unwrap()).unwrap();
        assert_eq!(raw["meta"]["lastUpdated"], p.last_updated.to_string());
        assert!(a.read("t", "Patient", "zz").await.unwrap().is_none());
        let other = a.read("u", "Patient", "a").await.unwrap().unwrap();
        assert_eq!(norm(other.json.as_deref().unwrap())["name"], Value::Null);
    }
}
