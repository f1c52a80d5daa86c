//! Export scans: each runs in ONE `REPEATABLE READ, READ ONLY` transaction on a pooled
//! connection owned by a spawned task, and reads through a server-side cursor (a portal)
//! in fetches of about one chunk. Live rows and superseded versions come from that one
//! snapshot, so an update committed during the scan yields neither a duplicate nor a gap.
//! Chunks of whole lines go to the caller through a channel of two (as in `sqlite/scan.rs`):
//! memory is bounded by bytes, and a dropped receiver stops the scan at its next send.
//!
//! The queries return the same rows as SQLite's; the scope conditions are written for
//! PostgreSQL's planner (`= ANY($5::text[])` for patient lists, no SQLite `+` hints).

use crate::{ExportChunk, ExportScan, ExportSet, OrganizedRow, PatientScope, Result};
use deadpool_postgres::{Object, Pool, Transaction};
use futures::stream::{self, BoxStream};
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, Portal, Row};

type Param = Box<dyn ToSql + Sync + Send>;

/// Rows of the first fetch, before the row size is known.
const FIRST_FETCH: usize = 64;
/// Bounds of later fetches (rows), sized to about one chunk from the mean row so far.
const MIN_FETCH: usize = 16;
const MAX_FETCH: usize = 4096;

/// Tombstones per batch of [`export_deleted`].
const DELETED_BATCH: usize = 1000;

/// The scope condition of a type scan (`$1` tenant, `$2` type, `$5` the scope's value) on
/// alias `{a}`. A Group or a patient list is a semi-join on the cohort's compartment rows of
/// the type (index `compartment_patient`), so the work can follow what the cohort holds.
fn scan_scope(scope: &PatientScope, a: &str) -> String {
    match scope {
        PatientScope::All => String::new(),
        PatientScope::AnyPatient => format!(
            " AND EXISTS (SELECT 1 FROM compartment c
                 WHERE c.tenant = {a}.tenant AND c.type = {a}.type AND c.id = {a}.id)"
        ),
        PatientScope::Group(_) => format!(
            " AND {a}.id IN (SELECT c.id FROM group_members m
                 JOIN compartment c ON c.tenant = m.tenant AND c.patient_id = m.member_id
                   AND c.type = $2
                 WHERE m.tenant = $1 AND m.group_id = $5 AND m.member_type = 'Patient')"
        ),
        PatientScope::Patients(_) => format!(
            " AND {a}.id IN (SELECT c.id FROM compartment c
                 WHERE c.tenant = $1 AND c.type = $2 AND c.patient_id = ANY($5::text[]))"
        ),
    }
}

/// The scope condition on alias `{a}` when the type is a column (lookups); `{p}` is the
/// scope's parameter.
fn row_scope(scope: &PatientScope, a: &str, p: &str) -> String {
    match scope {
        PatientScope::All => String::new(),
        PatientScope::AnyPatient => scan_scope(scope, a),
        PatientScope::Group(_) => format!(
            " AND EXISTS (SELECT 1 FROM compartment c JOIN group_members m
                 ON m.tenant = c.tenant AND m.member_type = 'Patient' AND m.member_id = c.patient_id
                 WHERE c.tenant = {a}.tenant AND c.type = {a}.type AND c.id = {a}.id
                   AND m.group_id = {p})"
        ),
        PatientScope::Patients(_) => format!(
            " AND EXISTS (SELECT 1 FROM compartment c
                 WHERE c.tenant = {a}.tenant AND c.type = {a}.type AND c.id = {a}.id
                   AND c.patient_id = ANY({p}::text[]))"
        ),
    }
}

/// The scope's value, if its SQL has one.
fn scope_param(scope: &PatientScope) -> Option<Param> {
    match scope {
        PatientScope::Group(g) => Some(Box::new(g.clone())),
        PatientScope::Patients(ids) => Some(Box::new(ids.clone())),
        PatientScope::All | PatientScope::AnyPatient => None,
    }
}

/// The parameters of a type scan: `$1` tenant, `$2` type, `$3` since, `$4` until, `$5` the
/// scope's value if it has one, then the bounds of the id slice that are set; and the slice
/// condition on alias `{a}` for each alias asked.
fn scan_params(scan: &ExportScan, aliases: &[&str]) -> (Vec<Param>, Vec<String>) {
    let mut p: Vec<Param> = vec![
        Box::new(scan.tenant.clone()),
        Box::new(scan.resource_type.clone()),
        Box::new(scan.since.map_or(i64::MIN, |s| s.0)),
        Box::new(scan.until.0),
    ];
    p.extend(scope_param(&scan.scope));
    // Only the bounds that are set become conditions, so a slice is a plain range of the
    // primary key (ids compare by byte: COLLATE "C", as SQLite's text order).
    let mut bounds = Vec::new();
    if let Some(from) = &scan.ids.from {
        p.push(Box::new(from.clone()));
        bounds.push((">=", p.len()));
    }
    if let Some(to) = &scan.ids.to {
        p.push(Box::new(to.clone()));
        bounds.push(("<", p.len()));
    }
    let slices = aliases
        .iter()
        .map(|a| {
            bounds
                .iter()
                .map(|(op, n)| format!(" AND {a}.id {op} ${n}"))
                .collect()
        })
        .collect();
    (p, slices)
}

/// Live resources modified in `(since, until]`, plus superseded versions that were current
/// at `until` (the job's snapshot, M1), of the scan's id slice: the SQL and its parameters.
fn export_query(scan: &ExportScan) -> (String, Vec<Param>) {
    let (p, slices) = scan_params(scan, &["r", "v"]);
    let (r_scope, v_scope) = (scan_scope(&scan.scope, "r"), scan_scope(&scan.scope, "v"));
    let sql = format!(
        "SELECT r.json FROM resources r
         WHERE r.tenant = $1 AND r.type = $2 AND NOT r.deleted
           AND r.last_updated > $3 AND r.last_updated <= $4{r_scope}{r_slice}
         UNION ALL
         SELECT v.json FROM resource_versions v
         WHERE v.tenant = $1 AND v.type = $2
           AND v.last_updated > $3 AND v.last_updated <= $4 AND v.superseded_at > $4{v_scope}{v_slice}",
        r_slice = slices[0],
        v_slice = slices[1],
    );
    (sql, p)
}

/// Tombstones: deleted in `(since, until]`, of the scan's id slice.
fn deleted_query(scan: &ExportScan) -> (String, Vec<Param>) {
    let (p, slices) = scan_params(scan, &["r"]);
    let sql = format!(
        "SELECT r.id FROM resources r
         WHERE r.tenant = $1 AND r.type = $2 AND r.deleted
           AND r.last_updated > $3 AND r.last_updated <= $4{}{}",
        scan_scope(&scan.scope, "r"),
        slices[0]
    );
    (sql, p)
}

/// The JSON an export of the window `($2, $3]` returns for the resource `{t}/{i}`: its live
/// row, else the superseded version current at `$3`; NULL if neither (`{scope_r}`/`{scope_v}`
/// restrict both). Version intervals do not overlap, so at most one version qualifies; the
/// LIMIT only keeps PostgreSQL from failing where SQLite would take the first. `+ 0` keeps
/// the planner on the primary key (one id) rather than the type's `superseded_at` range (the
/// unary `+` of the SQLite queries).
fn version_at_sql(t: &str, i: &str, scope_r: &str, scope_v: &str) -> String {
    format!(
        "COALESCE(
           (SELECT r.json FROM resources r
            WHERE r.tenant = $1 AND r.type = {t} AND r.id = {i} AND NOT r.deleted
              AND r.last_updated > $2 AND r.last_updated <= $3{scope_r}),
           (SELECT v.json FROM resource_versions v
            WHERE v.tenant = $1 AND v.type = {t} AND v.id = {i}
              AND v.last_updated > $2 AND v.last_updated <= $3
              AND v.superseded_at + 0 > $3{scope_v}
            LIMIT 1))"
    )
}

/// Organized output (O2): every compartment row of the set's types (`$4`), grouped by
/// patient with the patient's own Patient first. The inner query orders only the keys
/// (index `compartment_patient` already gives patient, type, id); the JSON (the version at
/// `$3`, as in [`export_query`]) is looked up row by row in that order, so a sort never
/// carries resources. Rows whose JSON is NULL (not in the window) are skipped by the reader.
fn organized_sql(scope: &PatientScope) -> String {
    let block_scope = match scope {
        PatientScope::All | PatientScope::AnyPatient => "",
        PatientScope::Group(_) => {
            " AND c.patient_id IN (SELECT m.member_id FROM group_members m
                 WHERE m.tenant = $1 AND m.group_id = $5 AND m.member_type = 'Patient')"
        }
        PatientScope::Patients(_) => " AND c.patient_id = ANY($5::text[])",
    };
    format!(
        "SELECT o.patient_id, o.type, {}
         FROM (SELECT c.type, c.id, c.patient_id,
                      (c.type <> 'Patient' OR c.id <> c.patient_id) AS not_own
               FROM compartment c
               WHERE c.tenant = $1 AND c.type = ANY($4::text[]){block_scope}
               ORDER BY c.patient_id, not_own, c.type, c.id) o
         ORDER BY o.patient_id, o.not_own, o.type, o.id",
        version_at_sql("o.type", "o.id", "", "")
    )
}

fn organized_params(set: &ExportSet) -> Vec<Param> {
    let mut p: Vec<Param> = vec![
        Box::new(set.tenant.clone()),
        Box::new(set.since.map_or(i64::MIN, |s| s.0)),
        Box::new(set.until.0),
        Box::new(set.types.clone()),
    ];
    p.extend(scope_param(&set.scope));
    p
}

/// The references `$4`/`$5` (types, ids), each as an export of the set returns it, in order.
fn lookup_sql(scope: &PatientScope) -> String {
    format!(
        "SELECT {} FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS k(type, id, ord)
         ORDER BY k.ord",
        version_at_sql(
            "k.type",
            "k.id",
            &row_scope(scope, "r", "$6"),
            &row_scope(scope, "v", "$6")
        )
    )
}

/// Starts a read-only snapshot transaction (one for the whole scan).
async fn snapshot(conn: &mut Object) -> Result<Transaction<'_>> {
    Ok(conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// A server-side cursor whose fetches hold about `target_bytes` of rows.
struct Cursor {
    portal: Portal,
    fetch: usize,
    target_bytes: usize,
    rows: u64,
    bytes: u64,
    done: bool,
}

impl Cursor {
    async fn open(
        tx: &Transaction<'_>,
        sql: &str,
        params: &[Param],
        target_bytes: usize,
    ) -> Result<Cursor> {
        let st = tx.prepare(sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|b| &**b as _).collect();
        Ok(Cursor {
            portal: tx.bind(&st, &params).await?,
            fetch: FIRST_FETCH,
            target_bytes: target_bytes.max(1),
            rows: 0,
            bytes: 0,
            done: false,
        })
    }

    /// The next rows; empty at the end.
    async fn next(&mut self, tx: &Transaction<'_>) -> Result<Vec<Row>> {
        if self.done {
            return Ok(Vec::new());
        }
        let rows = tx.query_portal(&self.portal, self.fetch as i32).await?;
        self.done = rows.len() < self.fetch;
        Ok(rows)
    }

    /// Records the bytes the last fetch held, and sizes the next one to about a chunk.
    fn observed(&mut self, rows: usize, bytes: usize) {
        self.rows += rows as u64;
        self.bytes += bytes as u64;
        if let Some(mean) = self.bytes.checked_div(self.rows) {
            let mean = mean.max(1) as usize;
            self.fetch = (self.target_bytes / mean).clamp(MIN_FETCH, MAX_FETCH);
        }
    }
}

fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<Result<T>>,
) -> BoxStream<'static, Result<T>> {
    Box::pin(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Runs `scan` on a spawned task that sends what it reads into a channel of two; its error,
/// if any, is the stream's last item.
fn spawn_scan<T, F, Fut>(scan: F) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<Result<T>>) -> Fut,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(2);
    let run = scan(tx.clone());
    tokio::spawn(async move {
        if let Err(e) = run.await {
            let _ = tx.send(Err(e)).await;
        }
    });
    receiver_stream(rx)
}

pub(super) fn export(
    pool: Pool,
    scan: ExportScan,
    chunk_bytes: usize,
) -> BoxStream<'static, Result<ExportChunk>> {
    spawn_scan(move |out| async move {
        let mut conn = pool.get().await?;
        let tx = snapshot(&mut conn).await?;
        let (sql, params) = export_query(&scan);
        let mut cursor = Cursor::open(&tx, &sql, &params, chunk_bytes).await?;
        let new_chunk = || ExportChunk {
            bytes: Vec::with_capacity(chunk_bytes + 64 * 1024),
            count: 0,
        };
        let mut chunk = new_chunk();
        loop {
            let rows = cursor.next(&tx).await?;
            if rows.is_empty() {
                break;
            }
            let mut fetched = 0;
            for row in &rows {
                let json: &[u8] = row.try_get(0)?;
                fetched += json.len();
                chunk.bytes.extend_from_slice(json);
                chunk.bytes.push(b'\n');
                chunk.count += 1;
                if chunk.bytes.len() >= chunk_bytes {
                    let full = std::mem::replace(&mut chunk, new_chunk());
                    if out.send(Ok(full)).await.is_err() {
                        return Ok(()); // the reader went away: stop scanning
                    }
                }
            }
            cursor.observed(rows.len(), fetched);
        }
        if chunk.count > 0 {
            let _ = out.send(Ok(chunk)).await;
        }
        tx.commit().await?;
        Ok(())
    })
}

pub(super) fn export_deleted(
    pool: Pool,
    scan: ExportScan,
) -> BoxStream<'static, Result<Vec<(String, String)>>> {
    spawn_scan(move |out| async move {
        let mut conn = pool.get().await?;
        let tx = snapshot(&mut conn).await?;
        // Ids are small: fetch a batch's worth at a time (64 bytes a row is plenty).
        let (sql, params) = deleted_query(&scan);
        let mut cursor = Cursor::open(&tx, &sql, &params, DELETED_BATCH * 64).await?;
        let mut batch = Vec::with_capacity(DELETED_BATCH);
        loop {
            let rows = cursor.next(&tx).await?;
            if rows.is_empty() {
                break;
            }
            cursor.observed(rows.len(), rows.len() * 64);
            for row in &rows {
                batch.push((scan.resource_type.clone(), row.try_get::<_, String>(0)?));
                if batch.len() == DELETED_BATCH
                    && out.send(Ok(std::mem::take(&mut batch))).await.is_err()
                {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() {
            let _ = out.send(Ok(batch)).await;
        }
        tx.commit().await?;
        Ok(())
    })
}

pub(super) fn export_organized(
    pool: Pool,
    set: ExportSet,
    chunk_bytes: usize,
) -> BoxStream<'static, Result<Vec<OrganizedRow>>> {
    spawn_scan(move |out| async move {
        let mut conn = pool.get().await?;
        let tx = snapshot(&mut conn).await?;
        let mut cursor = Cursor::open(
            &tx,
            &organized_sql(&set.scope),
            &organized_params(&set),
            chunk_bytes,
        )
        .await?;
        let (mut chunk, mut bytes) = (Vec::new(), 0usize);
        loop {
            let rows = cursor.next(&tx).await?;
            if rows.is_empty() {
                break;
            }
            let mut fetched = 0;
            for row in &rows {
                let Some(json) = row.try_get::<_, Option<Vec<u8>>>(2)? else {
                    continue; // not in the window: changed after `until`, or before `_since`
                };
                fetched += json.len();
                bytes += json.len();
                chunk.push(OrganizedRow {
                    patient_id: row.try_get(0)?,
                    resource_type: row.try_get(1)?,
                    json,
                });
                if bytes >= chunk_bytes {
                    bytes = 0;
                    if out.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                        return Ok(()); // the reader went away: stop scanning
                    }
                }
            }
            cursor.observed(rows.len(), fetched);
        }
        if !chunk.is_empty() {
            let _ = out.send(Ok(chunk)).await;
        }
        tx.commit().await?;
        Ok(())
    })
}

/// Looks each `(type, id)` up as an export of `set` would return it; types outside the set
/// give `None`. One query for the whole batch, in one snapshot.
pub(super) async fn export_lookup(
    pool: &Pool,
    set: ExportSet,
    refs: Vec<(String, String)>,
) -> Result<Vec<Option<Vec<u8>>>> {
    let wanted: Vec<usize> = (0..refs.len())
        .filter(|&i| set.types.iter().any(|t| *t == refs[i].0))
        .collect();
    let mut out = vec![None; refs.len()];
    if wanted.is_empty() {
        return Ok(out);
    }
    let (types, ids): (Vec<&str>, Vec<&str>) = wanted
        .iter()
        .map(|&i| (refs[i].0.as_str(), refs[i].1.as_str()))
        .unzip();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(6);
    let (since, until) = (set.since.map_or(i64::MIN, |s| s.0), set.until.0);
    params.extend([
        &set.tenant as &(dyn ToSql + Sync),
        &since,
        &until,
        &types,
        &ids,
    ]);
    let scope = scope_param(&set.scope);
    if let Some(s) = &scope {
        params.push(&**s);
    }
    let mut conn = pool.get().await?;
    let tx = snapshot(&mut conn).await?;
    let rows = tx.query(&lookup_sql(&set.scope), &params).await?;
    tx.commit().await?;
    for (i, row) in wanted.into_iter().zip(rows) {
        out[i] = row.try_get(0)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::write::testing::{db, lines, norm, pg_job, sqlite, sqlite_job};
    use crate::{ExportChunk, ExportScan, ExportSet, IdRange, PatientScope, Store, Write};
    use fhir_bulk_spec::instant::Instant;
    use futures::StreamExt;
    use serde_json::{Value, json};

    fn put(v: Value) -> Write {
        Write::put(v).unwrap()
    }

    fn obs(id: &str, subject: &str, status: &str) -> Write {
        put(
            json!({"resourceType": "Observation", "id": id, "status": status, "code": {},
            "subject": {"reference": format!("Patient/{subject}")}}),
        )
    }

    async fn chunks(s: &dyn Store, scan: ExportScan, chunk_bytes: usize) -> Vec<ExportChunk> {
        s.export(scan, chunk_bytes)
            .map(|c| c.unwrap())
            .collect()
            .await
    }

    /// A set of resources in several compartments, Groups and tombstones, written to both
    /// stores, with a running job and changes after it.
    fn scoped_data() -> Vec<Vec<Write>> {
        let p = |id: &str| put(json!({"resourceType": "Patient", "id": id}));
        let both = |id: &str, a: &str, b: &str| {
            put(
                json!({"resourceType": "Observation", "id": id, "status": "final", "code": {},
                "subject": {"reference": format!("Patient/{a}")},
                "performer": [{"reference": format!("Patient/{b}")}]}),
            )
        };
        let g = |id: &str, members: &[(&str, bool)]| {
            let member: Vec<Value> = members
                .iter()
                .map(|(m, inactive)| json!({"entity": {"reference": m}, "inactive": inactive}))
                .collect();
            put(
                json!({"resourceType": "Group", "id": id, "type": "person", "actual": true,
                "member": member}),
            )
        };
        vec![
            vec![
                p("a1"),
                p("B2"),
                p("c3"),
                p("Z9"),
                p("gone"),
                put(json!({"resourceType": "Practitioner", "id": "dr"})),
                obs("o1", "a1", "v1"),
                obs("o2", "B2", "v1"),
                obs("o3", "c3", "v1"),
                obs("o4", "Z9", "v1"),
                obs("o5", "gone", "v1"),
                obs("o6", "nobody", "v1"),
                both("o7", "a1", "B2"),
                put(
                    json!({"resourceType": "Observation", "id": "free", "status": "final",
                    "code": {}}),
                ),
                g(
                    "g",
                    &[
                        ("Patient/a1", false),
                        ("Patient/B2", false),
                        ("Patient/c3", true),
                        ("Patient/gone", false),
                        ("Practitioner/dr", false),
                    ],
                ),
                g("h", &[("Patient/Z9", false)]),
            ],
            vec![
                Write::delete("Observation", "o5").unwrap(),
                Write::delete("Patient", "gone").unwrap(),
                obs("o2", "B2", "v2"),
            ],
            // after the job starts:
            vec![
                obs("o1", "a1", "v2"),
                Write::delete("Observation", "o3").unwrap(),
                Write::delete("Observation", "o7").unwrap(),
                obs("o8", "a1", "v1"),
                p("new"),
            ],
        ]
    }

    fn scopes() -> Vec<PatientScope> {
        vec![
            PatientScope::All,
            PatientScope::AnyPatient,
            PatientScope::Group("g".into()),
            PatientScope::Group("h".into()),
            PatientScope::Group("none".into()),
            PatientScope::Patients(vec!["B2".into(), "Z9".into(), "gone".into()]),
            PatientScope::Patients(vec![]),
        ]
    }

    /// Patient, Group and patient-list scans, tombstones, organized output and lookups give
    /// exactly what SQLite gives, organized order included.
    #[tokio::test]
    async fn scoped_scans_match_sqlite() {
        let Some(pg) = db().await else { return };
        let (lite, _dir) = sqlite().await;
        let (a, b): (&dyn Store, &dyn Store) = (&pg.store, &lite);
        let script = scoped_data();
        let mut times = Vec::new();
        for (i, writes) in script.into_iter().enumerate() {
            if i == 2 {
                times.push((pg_job(&pg.store, "t").await, sqlite_job(&lite, "t").await));
            }
            let ra = a.write("t", writes.clone()).await.unwrap();
            let rb = b.write("t", writes).await.unwrap();
            if i == 0 {
                // `_since` right after the first write: only later changes.
                times.push((ra[0].last_updated, rb[0].last_updated));
            }
        }
        let (since_a, since_b) = times[0];
        let (until_a, until_b) = times[1];
        let types = ["Observation", "Patient", "Group", "Practitioner"];
        for scope in scopes() {
            for since in [false, true] {
                let window = |until: Instant, since_t: Instant| ExportSet {
                    tenant: "t".into(),
                    types: types.iter().map(|t| t.to_string()).collect(),
                    since: since.then_some(since_t),
                    until,
                    scope: scope.clone(),
                };
                let (set_a, set_b) = (window(until_a, since_a), window(until_b, since_b));
                for t in types {
                    let what = format!("{t} {scope:?} since={since}");
                    let la = lines(&chunks(a, set_a.scan(t), 100).await);
                    let lb = lines(&chunks(b, set_b.scan(t), 100).await);
                    assert_eq!(la, lb, "export {what}");
                    // Id slices: each as SQLite's, and together the whole scan, once.
                    let mut slices = IdRange::split(3);
                    slices.extend([
                        IdRange {
                            from: Some("B2".into()),
                            to: Some("o3".into()),
                        },
                        IdRange {
                            from: Some("a".into()),
                            to: None,
                        },
                    ]);
                    let mut tiled = Vec::new();
                    for (i, ids) in slices.into_iter().enumerate() {
                        let slice = |set: &ExportSet| ExportScan {
                            ids: ids.clone(),
                            ..set.scan(t)
                        };
                        let sa = lines(&chunks(a, slice(&set_a), 100).await);
                        let sb = lines(&chunks(b, slice(&set_b), 100).await);
                        assert_eq!(sa, sb, "export {what} slice {ids:?}");
                        if i < 3 {
                            tiled.extend(sa);
                        }
                    }
                    tiled.sort_by_key(|v| (v["resourceType"].to_string(), v["id"].to_string()));
                    assert_eq!(tiled, la, "slices tile {what}");
                    let deleted = |s: &dyn Store, set: &ExportSet| {
                        s.export_deleted(set.scan(t))
                            .flat_map(|b| futures::stream::iter(b.unwrap()))
                            .collect::<Vec<_>>()
                    };
                    let mut da = deleted(a, &set_a).await;
                    let mut db_ = deleted(b, &set_b).await;
                    da.sort();
                    db_.sort();
                    assert_eq!(da, db_, "deleted {what}");
                }
                let organized = |s: &dyn Store, set: ExportSet| {
                    s.export_organized(set, 50)
                        .flat_map(|c| futures::stream::iter(c.unwrap()))
                        .map(|r| (r.patient_id, r.resource_type, norm(&r.json)))
                        .collect::<Vec<_>>()
                };
                let oa = organized(a, set_a.clone()).await;
                let ob = organized(b, set_b.clone()).await;
                assert_eq!(oa, ob, "organized {scope:?} since={since}");
                let refs: Vec<(String, String)> = [
                    ("Observation", "o1"),
                    ("Observation", "o3"),
                    ("Observation", "o7"),
                    ("Observation", "o8"),
                    ("Observation", "free"),
                    ("Patient", "gone"),
                    ("Patient", "B2"),
                    ("Patient", "new"),
                    ("Practitioner", "dr"),
                    ("Device", "x"),
                    ("Observation", "o1"),
                ]
                .map(|(t, i)| (t.to_string(), i.to_string()))
                .to_vec();
                let norm_all = |v: Vec<Option<Vec<u8>>>| {
                    v.into_iter()
                        .map(|j| j.map(|j| norm(&j)))
                        .collect::<Vec<_>>()
                };
                let ka = norm_all(a.export_lookup(set_a, refs.clone()).await.unwrap());
                let kb = norm_all(b.export_lookup(set_b, refs).await.unwrap());
                assert_eq!(ka, kb, "lookup {scope:?} since={since}");
            }
        }
        // A few facts, so agreement is not agreement on nothing.
        let set = ExportSet {
            tenant: "t".into(),
            types: types.iter().map(|t| t.to_string()).collect(),
            since: None,
            until: until_a,
            scope: PatientScope::Group("g".into()),
        };
        let keys: Vec<(String, String, String)> = a
            .export_organized(set.clone(), 10)
            .flat_map(|c| futures::stream::iter(c.unwrap()))
            .map(|r| {
                let id = norm(&r.json)["id"].as_str().unwrap().to_string();
                (r.patient_id, r.resource_type, id)
            })
            .collect()
            .await;
        let k = |p: &str, t: &str, i: &str| (p.to_string(), t.to_string(), i.to_string());
        assert_eq!(
            keys,
            vec![
                k("B2", "Patient", "B2"),
                k("B2", "Group", "g"),
                k("B2", "Observation", "o2"),
                k("B2", "Observation", "o7"),
                k("a1", "Patient", "a1"),
                k("a1", "Group", "g"),
                k("a1", "Observation", "o1"),
                k("a1", "Observation", "o7"),
                k("gone", "Group", "g"),
            ],
            "byte order of ids, own Patient first, a resource once per compartment"
        );
        let o1 = lines(&chunks(a, set.scan("Observation"), 10).await);
        assert_eq!(o1.len(), 3);
        assert!(o1.iter().any(|v| v["id"] == "o1" && v["status"] == "v1"));
    }
}
