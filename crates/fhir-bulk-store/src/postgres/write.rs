//! Writes: row by row for REST (`write`), `COPY` into a staging table for loads
//! (`write_stream`). Both follow the SQLite backend's rules exactly (`sqlite/write.rs`): one
//! timestamp per transaction, version = previous + 1 for every effective write, a tombstone
//! keeps its compartment rows, and the live version being replaced is copied to
//! `resource_versions` when a running job's snapshot may need it.

use super::tick;
use crate::resource::PreparedPut;
use crate::{Result, Write, WriteResult, WriteSummary};
use deadpool_postgres::{Pool, Transaction};
use fhir_bulk_spec::{compartment, instant::Instant};
use futures::StreamExt;
use futures::future::{BoxFuture, try_join_all};
use futures::stream::BoxStream;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use tokio_postgres::Statement;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

/// The row a write finds.
#[derive(Clone, Copy)]
struct Existing {
    version: i64,
    last_updated: i64,
    deleted: bool,
}

/// Superseded versions at or before this instant may be in a running export's snapshot and
/// are kept; later ones cannot be (every job's transactionTime is before this transaction's
/// timestamp). Read after [`tick`], so no job can start meanwhile.
async fn keep_versions_upto(tx: &Transaction<'_>) -> Result<Option<i64>> {
    Ok(tx
        .query_one(
            "SELECT max(transaction_time) FROM jobs WHERE status = 'running'",
            &[],
        )
        .await?
        .get(0))
}

/// Adds the change of live resources per type.
async fn apply_type_counts(
    tx: &Transaction<'_>,
    tenant: &str,
    live_delta: &HashMap<String, i64>,
) -> Result<()> {
    let mut deltas: Vec<(&str, i64)> = live_delta
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(t, d)| (t.as_str(), *d))
        .collect();
    if deltas.is_empty() {
        return Ok(());
    }
    deltas.sort_unstable();
    let (types, deltas): (Vec<&str>, Vec<i64>) = deltas.into_iter().unzip();
    tx.execute(
        "INSERT INTO type_counts (tenant, type, live)
         SELECT $1, t, d FROM unnest($2::text[], $3::int8[]) AS x(t, d)
         ON CONFLICT (tenant, type) DO UPDATE SET live = type_counts.live + excluded.live",
        &[&tenant, &types, &deltas],
    )
    .await?;
    Ok(())
}

// ---- REST: row by row ----

/// Applies `writes` in one transaction and returns one result per write.
pub(super) async fn write(
    pool: &Pool,
    tenant: &str,
    writes: Vec<Write>,
) -> Result<Vec<WriteResult>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let ts = tick(&tx).await?;
    let mut rows = Rows {
        tx: &tx,
        tenant,
        ts,
        ts_text: ts.to_string(),
        keep_versions_upto: keep_versions_upto(&tx).await?,
        live_delta: HashMap::new(),
    };
    let mut results = Vec::with_capacity(writes.len());
    for w in writes {
        results.push(match w {
            Write::Put(p) => rows.put(*p).await?,
            Write::Delete { resource_type, id } => rows.delete(resource_type, id).await?,
        });
    }
    let live_delta = rows.live_delta;
    apply_type_counts(&tx, tenant, &live_delta).await?;
    tx.commit().await?;
    Ok(results)
}

/// The row-by-row writes of one transaction (the REST path; `sqlite/write.rs`'s `Batch`).
///
/// Each write costs two round trips: the lookup of the row it replaces, then its statements
/// pipelined together. They are written so that their order does not matter: the superseded
/// version is copied in the same statement that overwrites it, and the index rows are
/// replaced by deleting only stale rows and inserting missing ones.
struct Rows<'a, 't> {
    tx: &'a Transaction<'t>,
    tenant: &'a str,
    ts: Instant,
    ts_text: String,
    keep_versions_upto: Option<i64>,
    live_delta: HashMap<String, i64>,
}

type Exec<'a> = BoxFuture<'a, std::result::Result<u64, tokio_postgres::Error>>;
type Sql<'a> = &'a (dyn ToSql + Sync);

/// Copies the row about to be overwritten (`$1`–`$3`) to `resource_versions`, superseded at
/// `$5`. A data-modifying CTE reads the snapshot of the statement, i.e. the old row.
const KEEP_CTE: &str = "WITH kept AS (
       INSERT INTO resource_versions (tenant, type, id, version, last_updated, superseded_at, json)
       SELECT tenant, type, id, version, last_updated, $5, json FROM resources
       WHERE tenant = $1 AND type = $2 AND id = $3
       ON CONFLICT (tenant, type, id, version) DO UPDATE SET
         last_updated = excluded.last_updated,
         superseded_at = excluded.superseded_at, json = excluded.json) ";

const UPSERT: &str =
    "INSERT INTO resources (tenant, type, id, version, last_updated, deleted, json)
     VALUES ($1, $2, $3, $4, $5, false, $6)
     ON CONFLICT (tenant, type, id) DO UPDATE SET version = excluded.version,
       last_updated = excluded.last_updated, deleted = false, json = excluded.json";

const TOMBSTONE: &str = "UPDATE resources SET version = $4, last_updated = $5, deleted = true,
       json = NULL
     WHERE tenant = $1 AND type = $2 AND id = $3";

impl Rows<'_, '_> {
    async fn existing(&self, rt: &str, id: &str) -> Result<Option<Existing>> {
        let st = self
            .tx
            .prepare_cached(
                "SELECT version, last_updated, deleted FROM resources
                 WHERE tenant = $1 AND type = $2 AND id = $3",
            )
            .await?;
        Ok(self
            .tx
            .query_opt(&st, &[&self.tenant, &rt, &id])
            .await?
            .map(|r| Existing {
                version: r.get(0),
                last_updated: r.get(1),
                deleted: r.get(2),
            }))
    }

    /// Whether the live version being replaced may be in a running export's snapshot.
    fn keeps(&self, old: &Existing) -> bool {
        !old.deleted
            && self
                .keep_versions_upto
                .is_some_and(|upto| old.last_updated <= upto)
    }

    /// The statement that overwrites the row, copying the old one first if `keep`.
    async fn overwrite(&self, sql: &str, keep: bool) -> Result<Statement> {
        Ok(if keep {
            self.tx.prepare_cached(&format!("{KEEP_CTE}{sql}")).await?
        } else {
            self.tx.prepare_cached(sql).await?
        })
    }

    async fn put(&mut self, p: PreparedPut) -> Result<WriteResult> {
        let tx = self.tx;
        let (rt, id) = (p.resource_type.as_str(), p.id.as_str());
        let old = self.existing(rt, id).await?;
        let version = old.as_ref().map_or(1, |o| o.version + 1);
        let created = old.as_ref().is_none_or(|o| o.deleted);
        let keep = old.as_ref().is_some_and(|o| self.keeps(o));
        let json = p.json_with_meta(version, &self.ts_text);

        // Everything the pipelined statements borrow, declared before them.
        let upsert = self.overwrite(UPSERT, keep).await?;
        let compartment = if compartment::is_compartment_type(rt) {
            Some(self.compartment_statements().await?)
        } else {
            None
        };
        let members = if rt == "Group" {
            Some(self.member_statements().await?)
        } else {
            None
        };
        let searched = if rt == "Group" || rt == "Patient" {
            Some(self.search_statements().await?)
        } else {
            None
        };
        let (member_types, member_ids): (Vec<&str>, Vec<&str>) = p
            .members
            .iter()
            .map(|(t, i)| (t.as_str(), i.as_str()))
            .unzip();
        let (params, values): (Vec<&str>, Vec<&str>) =
            p.search.iter().map(|(k, v)| (*k, v.as_str())).unzip();
        let (tenant, ts) = (&self.tenant, &self.ts.0);

        let mut execs: Vec<Exec<'_>> = vec![Box::pin(
            tx.execute_raw(&upsert, [tenant as Sql, &rt, &id, &version, ts, &json]),
        )];
        if let Some((stale, missing)) = &compartment {
            if old.is_some() {
                execs.push(Box::pin(
                    tx.execute_raw(stale, [tenant as Sql, &rt, &id, &p.patients]),
                ));
            }
            if !p.patients.is_empty() {
                execs.push(Box::pin(
                    tx.execute_raw(missing, [tenant as Sql, &rt, &id, &p.patients]),
                ));
            }
        }
        if let Some((stale, missing)) = &members {
            if old.is_some() {
                execs.push(Box::pin(tx.execute_raw(
                    stale,
                    [tenant as Sql, &id, &member_types, &member_ids],
                )));
            }
            if !member_ids.is_empty() {
                execs.push(Box::pin(tx.execute_raw(
                    missing,
                    [tenant as Sql, &id, &member_types, &member_ids],
                )));
            }
        }
        if let Some((stale, missing)) = &searched {
            if old.is_some() {
                execs.push(Box::pin(
                    tx.execute_raw(stale, [tenant as Sql, &rt, &id, &params, &values]),
                ));
            }
            if !values.is_empty() {
                execs.push(Box::pin(
                    tx.execute_raw(missing, [tenant as Sql, &rt, &id, &params, &values]),
                ));
            }
        }
        try_join_all(execs).await?;

        if created {
            *self.live_delta.entry(rt.to_string()).or_default() += 1;
        }
        Ok(WriteResult {
            resource_type: p.resource_type.clone(),
            id: p.id.clone(),
            version,
            last_updated: self.ts,
            created,
            existed: !created,
            bytes: json.len() as u64,
            json: Some(json),
        })
    }

    async fn delete(&mut self, rt: String, id: String) -> Result<WriteResult> {
        let tx = self.tx;
        let old = self.existing(&rt, &id).await?;
        let Some(old) = old.filter(|o| !o.deleted) else {
            // Nothing live to delete: no tombstone, no new version (deletes are idempotent).
            return Ok(WriteResult {
                resource_type: rt,
                id,
                version: 0,
                last_updated: self.ts,
                created: false,
                existed: false,
                json: None,
                bytes: 0,
            });
        };
        let version = old.version + 1;
        let tombstone = self.overwrite(TOMBSTONE, self.keeps(&old)).await?;
        // Compartment rows stay: Patient/Group exports report the tombstone (T3). Members
        // and search values go (all of them are stale: none is wanted).
        let members = if rt == "Group" {
            Some(self.member_statements().await?)
        } else {
            None
        };
        let searched = if rt == "Group" || rt == "Patient" {
            Some(self.search_statements().await?)
        } else {
            None
        };
        let none: Vec<&str> = Vec::new();
        let (tenant, ts, rt_, id_) = (&self.tenant, &self.ts.0, rt.as_str(), id.as_str());
        let mut execs: Vec<Exec<'_>> = vec![Box::pin(
            tx.execute_raw(&tombstone, [tenant as Sql, &rt_, &id_, &version, ts]),
        )];
        if let Some((stale, _)) = &members {
            execs.push(Box::pin(
                tx.execute_raw(stale, [tenant as Sql, &id_, &none, &none]),
            ));
        }
        if let Some((stale, _)) = &searched {
            execs.push(Box::pin(
                tx.execute_raw(stale, [tenant as Sql, &rt_, &id_, &none, &none]),
            ));
        }
        try_join_all(execs).await?;
        *self.live_delta.entry(rt.clone()).or_default() -= 1;
        Ok(WriteResult {
            resource_type: rt,
            id,
            version,
            last_updated: self.ts,
            created: false,
            existed: true,
            json: None,
            bytes: 0,
        })
    }

    /// Deletes the compartment rows of `$1`–`$3` not in `$4`; inserts those missing.
    async fn compartment_statements(&self) -> Result<(Statement, Statement)> {
        Ok((
            self.tx
                .prepare_cached(
                    "DELETE FROM compartment WHERE tenant = $1 AND type = $2 AND id = $3
                       AND patient_id <> ALL($4::text[])",
                )
                .await?,
            self.tx
                .prepare_cached(
                    "INSERT INTO compartment (tenant, type, id, patient_id)
                     SELECT $1, $2, $3, p FROM unnest($4::text[]) AS p
                     ON CONFLICT DO NOTHING",
                )
                .await?,
        ))
    }

    /// The same for the members (`$3`, `$4`) of Group `$2`.
    async fn member_statements(&self) -> Result<(Statement, Statement)> {
        Ok((
            self.tx
                .prepare_cached(
                    "DELETE FROM group_members g WHERE g.tenant = $1 AND g.group_id = $2
                       AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::text[]) AS m(t, i)
                                       WHERE m.t = g.member_type AND m.i = g.member_id)",
                )
                .await?,
            self.tx
                .prepare_cached(
                    "INSERT INTO group_members (tenant, group_id, member_type, member_id)
                     SELECT $1, $2, t, i FROM unnest($3::text[], $4::text[]) AS m(t, i)
                     ON CONFLICT DO NOTHING",
                )
                .await?,
        ))
    }

    /// The same for the search values (`$4` params, `$5` values) of `$1`–`$3`.
    async fn search_statements(&self) -> Result<(Statement, Statement)> {
        Ok((
            self.tx
                .prepare_cached(
                    "DELETE FROM search_values s
                     WHERE s.tenant = $1 AND s.type = $2 AND s.id = $3
                       AND NOT EXISTS (SELECT 1 FROM unnest($4::text[], $5::text[]) AS x(p, v)
                                       WHERE x.p = s.param AND x.v = s.value)",
                )
                .await?,
            self.tx
                .prepare_cached(
                    "INSERT INTO search_values (tenant, type, id, param, value)
                     SELECT $1, $2, $3, p, v FROM unnest($4::text[], $5::text[]) AS x(p, v)
                     ON CONFLICT DO NOTHING",
                )
                .await?,
        ))
    }
}

// ---- loads: COPY and set-based merges ----

/// Applies a stream of batches in one transaction: each batch is staged with a binary `COPY`
/// and merged with a handful of set-based statements, so memory holds one batch.
pub(super) async fn write_stream(
    pool: &Pool,
    tenant: &str,
    mut batches: BoxStream<'static, Result<Vec<Write>>>,
) -> Result<WriteSummary> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let ts = tick(&tx).await?;
    let mut load = Load {
        tenant,
        ts,
        ts_text: ts.to_string(),
        keep_versions_upto: keep_versions_upto(&tx).await?,
        summary: WriteSummary::default(),
        live_delta: HashMap::new(),
    };
    // Every statement of a load probes the keys of one batch, and the plan must stay a probe
    // by primary key: a scan per batch (a hash join over the table, or an index range over
    // the type) makes a load quadratic. Without statistics on what is being loaded (a first
    // load, or a type new to the table) the planner thinks a type holds a row or two and
    // picks just that, so the load analyzes the tables as it grows (see `Analyze`), and joins
    // other than nested loops are off. One staging table for the transaction, emptied per
    // batch (TRUNCATE, not DELETE: temp tables are never vacuumed); unqualified names find
    // temp tables first.
    tx.batch_execute(
        "SET LOCAL enable_hashjoin = off;
         SET LOCAL enable_mergejoin = off;
         SET LOCAL enable_material = off;
         SET LOCAL jit = off;
         CREATE TEMP TABLE load_stage (
             type          text    NOT NULL,
             id            text    NOT NULL,
             version       bigint  NOT NULL,
             deleted       boolean NOT NULL,
             json          bytea,
             patients      text[]  NOT NULL,
             member_types  text[]  NOT NULL,
             member_ids    text[]  NOT NULL,
             search_params text[]  NOT NULL,
             search_values text[]  NOT NULL
         ) ON COMMIT DROP",
    )
    .await?;
    let mut analyze = Analyze::new(&tx).await?;
    let mut first = true;
    while let Some(item) = batches.next().await {
        // An Err item returns here: the transaction is dropped, i.e. rolled back.
        let batch = item?;
        if batch.is_empty() {
            continue;
        }
        if !first {
            tx.batch_execute("TRUNCATE load_stage").await?;
        }
        first = false;
        let staged = load.batch(&tx, batch).await?;
        analyze.after_batch(&tx, staged).await?;
    }
    apply_type_counts(&tx, tenant, &load.live_delta).await?;
    analyze.at_end(&tx).await?;
    tx.commit().await?;
    Ok(load.summary)
}

/// Statistics for the planner while a load grows the tables. `ANALYZE` inside the load's
/// transaction counts the rows it inserted, and its statistics commit with them.
struct Analyze {
    /// Rows staged by this load so far.
    written: u64,
    /// `written` at the last ANALYZE.
    analyzed_at: u64,
    /// Rows the table had when the load began (its last statistics; 0 if never analyzed).
    rows_before: f64,
}

impl Analyze {
    /// Rows a load writes before it first analyzes; it analyzes again each time it doubles.
    const FIRST: u64 = 2000;

    async fn new(tx: &Transaction<'_>) -> Result<Analyze> {
        let rows: f32 = tx
            .query_one(
                "SELECT reltuples FROM pg_class WHERE oid = 'resources'::regclass",
                &[],
            )
            .await?
            .get(0);
        Ok(Analyze {
            written: 0,
            analyzed_at: 0,
            rows_before: f64::from(rows.max(0.0)),
        })
    }

    async fn run(&mut self, tx: &Transaction<'_>) -> Result<()> {
        tx.batch_execute("ANALYZE resources, compartment, search_values, group_members")
            .await?;
        self.analyzed_at = self.written;
        Ok(())
    }

    /// While the load grows: at [`Self::FIRST`] rows, then each time it doubles.
    async fn after_batch(&mut self, tx: &Transaction<'_>, staged: u64) -> Result<()> {
        self.written += staged;
        if self.written >= Self::FIRST.max(2 * self.analyzed_at) {
            self.run(tx).await?;
        }
        Ok(())
    }

    /// Before commit, when the load changed the table by a tenth or more (autovacuum's rule;
    /// it would analyze too, but only after the commit, and an export may start at once).
    async fn at_end(&mut self, tx: &Transaction<'_>) -> Result<()> {
        if self.written > self.analyzed_at
            && self.written >= Self::FIRST
            && self.written as f64 >= 0.1 * self.rows_before
        {
            self.run(tx).await?;
        }
        Ok(())
    }
}

/// State of a load across its batches.
struct Load<'a> {
    tenant: &'a str,
    ts: Instant,
    ts_text: String,
    keep_versions_upto: Option<i64>,
    summary: WriteSummary,
    live_delta: HashMap<String, i64>,
}

/// What a batch leaves of one resource: the writes to the same id are applied in order in
/// memory (as SQLite applies them row by row), and only the outcome is staged, so the merge
/// never meets an id twice and versions count every effective write.
struct Outcome {
    resource_type: String,
    id: String,
    /// The row before this batch.
    before: Option<Existing>,
    /// The row now (`None`: none yet).
    version: Option<i64>,
    deleted: bool,
    json: Option<Vec<u8>>,
    /// Some write changed the row (a delete of nothing live does not).
    touched: bool,
    /// The last put, whose patients, members and search values are the resource's now.
    last_put: Option<Box<PreparedPut>>,
}

const STAGE_TYPES: &[Type] = &[
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::BOOL,
    Type::BYTEA,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
];

/// Key arrays for [`KEYS`]. The tenant is repeated per key rather than passed once: a
/// `tenant = $1` restriction gets the planner's default selectivity on tables without
/// statistics (a first load), which makes a scan of the tenant look cheaper than the probes.
struct Keys<'a> {
    tenant: &'a str,
    tenants: Vec<&'a str>,
    types: Vec<&'a str>,
    ids: Vec<&'a str>,
}

/// The keys of a [`Keys`] as a relation `k(tenant, type, id)`.
const KEYS: &str = "unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, type, id)";

impl<'a> Keys<'a> {
    fn new(tenant: &'a str) -> Self {
        Keys {
            tenant,
            tenants: Vec::new(),
            types: Vec::new(),
            ids: Vec::new(),
        }
    }

    fn push(&mut self, o: &'a Outcome) {
        self.tenants.push(self.tenant);
        self.types.push(&o.resource_type);
        self.ids.push(&o.id);
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Load<'_> {
    /// Applies one batch; returns the rows it staged (resources written).
    async fn batch(&mut self, tx: &Transaction<'_>, batch: Vec<Write>) -> Result<u64> {
        let outcomes = self.apply_in_memory(tx, batch).await?;
        let tenant = self.tenant;

        // Keys whose rows before the batch need work first.
        let (mut keep, mut compartments, mut groups, mut searched) = (
            Keys::new(tenant),
            Keys::new(tenant),
            Keys::new(tenant),
            Keys::new(tenant),
        );
        for o in outcomes.iter().filter(|o| o.touched) {
            let Some(before) = o.before else { continue };
            if !before.deleted
                && self
                    .keep_versions_upto
                    .is_some_and(|upto| before.last_updated <= upto)
            {
                keep.push(o);
            }
            let rt = o.resource_type.as_str();
            if o.last_put.is_some() && compartment::is_compartment_type(rt) {
                compartments.push(o);
            }
            if rt == "Group" {
                groups.push(o);
            }
            if rt == "Group" || rt == "Patient" {
                searched.push(o);
            }
        }
        if !keep.is_empty() {
            tx.execute(
                &format!(
                    "INSERT INTO resource_versions
                     (tenant, type, id, version, last_updated, superseded_at, json)
                     SELECT r.tenant, r.type, r.id, r.version, r.last_updated, $4, r.json
                     FROM {KEYS}
                     JOIN resources r ON r.tenant = k.tenant AND r.type = k.type AND r.id = k.id
                     ON CONFLICT (tenant, type, id, version) DO UPDATE SET
                       last_updated = excluded.last_updated,
                       superseded_at = excluded.superseded_at, json = excluded.json"
                ),
                &[&keep.tenants, &keep.types, &keep.ids, &self.ts.0],
            )
            .await?;
        }
        // A put replaces the compartment rows; a tombstone keeps them (T3).
        if !compartments.is_empty() {
            tx.execute(
                &format!(
                    "DELETE FROM compartment c USING {KEYS}
                     WHERE c.tenant = k.tenant AND c.type = k.type AND c.id = k.id"
                ),
                &[
                    &compartments.tenants,
                    &compartments.types,
                    &compartments.ids,
                ],
            )
            .await?;
        }
        if !groups.is_empty() {
            tx.execute(
                &format!(
                    "DELETE FROM group_members g USING {KEYS}
                     WHERE g.tenant = k.tenant AND g.group_id = k.id"
                ),
                &[&groups.tenants, &groups.types, &groups.ids],
            )
            .await?;
        }
        if !searched.is_empty() {
            tx.execute(
                &format!(
                    "DELETE FROM search_values s USING {KEYS}
                     WHERE s.tenant = k.tenant AND s.type = k.type AND s.id = k.id"
                ),
                &[&searched.tenants, &searched.types, &searched.ids],
            )
            .await?;
        }

        let staged = self.stage(tx, &outcomes).await?;
        if staged == 0 {
            return Ok(0);
        }
        tx.execute(
            "INSERT INTO resources (tenant, type, id, version, last_updated, deleted, json)
             SELECT $1, type, id, version, $2, deleted, json FROM load_stage
             ON CONFLICT (tenant, type, id) DO UPDATE SET version = excluded.version,
               last_updated = excluded.last_updated, deleted = excluded.deleted,
               json = excluded.json",
            &[&tenant, &self.ts.0],
        )
        .await?;
        tx.execute(
            "INSERT INTO compartment (tenant, type, id, patient_id)
             SELECT $1, s.type, s.id, p FROM load_stage s, unnest(s.patients) AS p
             ON CONFLICT DO NOTHING",
            &[&tenant],
        )
        .await?;
        if outcomes.iter().any(|o| o.resource_type == "Group") {
            tx.execute(
                "INSERT INTO group_members (tenant, group_id, member_type, member_id)
                 SELECT $1, s.id, m.t, m.i
                 FROM load_stage s, unnest(s.member_types, s.member_ids) AS m(t, i)
                 ON CONFLICT DO NOTHING",
                &[&tenant],
            )
            .await?;
        }
        if outcomes
            .iter()
            .any(|o| o.resource_type == "Group" || o.resource_type == "Patient")
        {
            tx.execute(
                "INSERT INTO search_values (tenant, type, id, param, value)
                 SELECT $1, s.type, s.id, v.p, v.v
                 FROM load_stage s, unnest(s.search_params, s.search_values) AS v(p, v)
                 ON CONFLICT DO NOTHING",
                &[&tenant],
            )
            .await?;
        }
        Ok(staged)
    }

    /// Applies the batch's writes in order to the rows it finds (one query for the batch),
    /// counting the summary and live deltas as SQLite does. Outcomes keep first-write order.
    async fn apply_in_memory(
        &mut self,
        tx: &Transaction<'_>,
        batch: Vec<Write>,
    ) -> Result<Vec<Outcome>> {
        let mut index: HashMap<(String, String), usize> = HashMap::with_capacity(batch.len());
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
        let mut order = Vec::with_capacity(batch.len());
        for w in &batch {
            let (rt, id) = match w {
                Write::Put(p) => (&p.resource_type, &p.id),
                Write::Delete { resource_type, id } => (resource_type, id),
            };
            let next = outcomes.len();
            let i = match index.entry((rt.clone(), id.clone())) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    e.insert(next);
                    outcomes.push(Outcome {
                        resource_type: rt.clone(),
                        id: id.clone(),
                        before: None,
                        version: None,
                        deleted: false,
                        json: None,
                        touched: false,
                        last_put: None,
                    });
                    next
                }
            };
            order.push(i);
        }

        let mut keys = Keys::new(self.tenant);
        outcomes.iter().for_each(|o| keys.push(o));
        let found = tx
            .query(
                &format!(
                    "SELECT r.type, r.id, r.version, r.last_updated, r.deleted
                     FROM {KEYS}
                     JOIN resources r ON r.tenant = k.tenant AND r.type = k.type AND r.id = k.id"
                ),
                &[&keys.tenants, &keys.types, &keys.ids],
            )
            .await?;
        for row in found {
            let key = (row.get::<_, String>(0), row.get::<_, String>(1));
            if let Some(&i) = index.get(&key) {
                let e = Existing {
                    version: row.get(2),
                    last_updated: row.get(3),
                    deleted: row.get(4),
                };
                let o = &mut outcomes[i];
                (o.before, o.version, o.deleted) = (Some(e), Some(e.version), e.deleted);
            }
        }

        for (w, i) in batch.into_iter().zip(order) {
            let o = &mut outcomes[i];
            *self
                .summary
                .per_type
                .entry(o.resource_type.clone())
                .or_default() += 1;
            match w {
                Write::Put(p) => {
                    let created = o.version.is_none() || o.deleted;
                    let version = o.version.map_or(1, |v| v + 1);
                    let json = p.json_with_meta(version, &self.ts_text);
                    self.summary.bytes += json.len() as u64;
                    if created {
                        *self.live_delta.entry(o.resource_type.clone()).or_default() += 1;
                    }
                    (o.version, o.deleted, o.json) = (Some(version), false, Some(json));
                    o.touched = true;
                    o.last_put = Some(p);
                }
                Write::Delete { .. } => {
                    let Some(version) = o.version.filter(|_| !o.deleted) else {
                        continue; // nothing live: no tombstone, no new version
                    };
                    *self.live_delta.entry(o.resource_type.clone()).or_default() -= 1;
                    (o.version, o.deleted, o.json) = (Some(version + 1), true, None);
                    o.touched = true;
                }
            }
        }
        Ok(outcomes)
    }

    /// Copies the touched outcomes into `load_stage`; returns how many.
    async fn stage(&self, tx: &Transaction<'_>, outcomes: &[Outcome]) -> Result<u64> {
        let sink = tx
            .copy_in(
                "COPY load_stage (type, id, version, deleted, json, patients, member_types,
                   member_ids, search_params, search_values) FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(sink, STAGE_TYPES);
        futures::pin_mut!(writer);
        for o in outcomes.iter().filter(|o| o.touched) {
            let rt = o.resource_type.as_str();
            // What the resource's rows in the other tables become. The last put's patients
            // even under a later tombstone (a tombstone keeps its compartment rows, T3);
            // members and search values only while live.
            let put = if o.deleted {
                None
            } else {
                o.last_put.as_deref()
            };
            let patients: Vec<&str> = match &o.last_put {
                Some(p) if compartment::is_compartment_type(rt) => {
                    p.patients.iter().map(String::as_str).collect()
                }
                _ => Vec::new(),
            };
            let (member_types, member_ids): (Vec<&str>, Vec<&str>) = put
                .filter(|_| rt == "Group")
                .map(|p| {
                    p.members
                        .iter()
                        .map(|(t, i)| (t.as_str(), i.as_str()))
                        .unzip()
                })
                .unwrap_or_default();
            let (search_params, search_values): (Vec<&str>, Vec<&str>) = put
                .filter(|_| rt == "Group" || rt == "Patient")
                .map(|p| p.search.iter().map(|(k, v)| (*k, v.as_str())).unzip())
                .unwrap_or_default();
            writer
                .as_mut()
                .write(&[
                    &rt,
                    &o.id.as_str(),
                    &o.version.unwrap_or(1),
                    &o.deleted,
                    &o.json.as_deref(),
                    &patients,
                    &member_types,
                    &member_ids,
                    &search_params,
                    &search_values,
                ])
                .await?;
        }
        Ok(writer.finish().await?)
    }
}

/// Deletes superseded versions no running export can need: those superseded at or before
/// the oldest running job's transactionTime (or all, with no running job).
pub(super) async fn prune_versions(pool: &Pool) -> Result<u64> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    tick(&tx).await?;
    let oldest: Option<i64> = tx
        .query_one(
            "SELECT min(transaction_time) FROM jobs WHERE status = 'running'",
            &[],
        )
        .await?
        .get(0);
    let n = match oldest {
        Some(t) => {
            tx.execute(
                "DELETE FROM resource_versions WHERE superseded_at <= $1",
                &[&t],
            )
            .await?
        }
        None => tx.execute("DELETE FROM resource_versions", &[]).await?,
    };
    tx.commit().await?;
    Ok(n)
}

/// What the tests of this backend share: a store in a fresh schema, jobs without `jobs.rs`,
/// and the SQLite backend to compare with.
#[cfg(test)]
pub(super) mod testing {
    use super::super::{PgStore, tick};
    use crate::sqlite::SqliteStore;
    use crate::{NewJob, NewUnit, Store, UnitKind};
    use fhir_bulk_spec::instant::Instant;
    use fhir_bulk_testkit::TestDatabase;
    use serde_json::Value;

    /// A schema of its own from the testkit (dropped with this value), when the run is on
    /// PostgreSQL (`FHIR_BULK_TEST_DATABASE=postgres://…`).
    pub(crate) struct Schema {
        db: TestDatabase,
        _dir: tempfile::TempDir,
    }

    impl Schema {
        /// `None` (the test is skipped, saying so) when the run is not on PostgreSQL.
        pub(crate) fn new() -> Option<Schema> {
            if fhir_bulk_testkit::backend() != "postgres" {
                eprintln!(
                    "skipped: a PostgreSQL-only test; set {}=postgres://… to run it",
                    fhir_bulk_testkit::DATABASE_ENV
                );
                return None;
            }
            let dir = tempfile::tempdir().unwrap();
            Some(Schema {
                db: TestDatabase::new(dir.path()),
                _dir: dir,
            })
        }

        /// The URL whose connections use the schema.
        pub(crate) fn url(&self) -> &str {
            self.db.database()
        }

        /// A plain connection to the schema, for what the trait cannot do.
        pub(crate) async fn sql(&self) -> tokio_postgres::Client {
            let (client, conn) = tokio_postgres::connect(self.url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
        }
    }

    /// A migrated PgStore in a schema of its own.
    pub(crate) struct TestDb {
        pub(crate) store: PgStore,
        pub(crate) schema: Schema,
    }

    /// A store in a fresh schema; `None` (test skipped) unless the run is on PostgreSQL.
    pub(crate) async fn db() -> Option<TestDb> {
        let schema = Schema::new()?;
        let store = PgStore::connect(schema.url()).await.unwrap();
        Some(TestDb { store, schema })
    }

    /// A SQLite store to compare with (the reference semantics).
    pub(crate) async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path().join("db.sqlite"))
            .await
            .unwrap();
        (s, dir)
    }

    /// Starts a running job in `s` and returns its transactionTime, as `create_job` does
    /// (the job rows of `jobs.rs` are not needed: only status and transaction_time count).
    pub(crate) async fn pg_job(s: &PgStore, tenant: &str) -> Instant {
        let mut conn = s.pool.get().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let t = tick(&tx).await.unwrap();
        tx.execute(
            "INSERT INTO jobs (tenant, id, status, request_url, params, transaction_time,
               created_at, expires_at)
             VALUES ($1, $2, 'running', 'http://x/$export', '{}', $3, $3, $3)",
            &[&tenant, &uuid::Uuid::new_v4().to_string(), &t.0],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        t
    }

    /// The same in SQLite, through its `create_job`.
    pub(crate) async fn sqlite_job(s: &SqliteStore, tenant: &str) -> Instant {
        s.create_job(NewJob {
            tenant: tenant.into(),
            id: uuid::Uuid::new_v4().to_string(),
            client_id: None,
            request_url: "http://x/$export".into(),
            params: serde_json::json!({}),
            units: vec![NewUnit {
                resource_type: "Patient".into(),
                kind: UnitKind::Output,
                estimate: 0,
                ids: crate::IdRange::all(),
            }],
            ttl_seconds: 60,
        })
        .await
        .unwrap()
        .transaction_time
    }

    /// JSON without `meta.lastUpdated` (the two stores' clocks differ).
    pub(crate) fn norm(json: &[u8]) -> Value {
        let mut v: Value = serde_json::from_slice(json).unwrap();
        if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
            meta.remove("lastUpdated");
        }
        v
    }

    /// Lines of NDJSON chunks, normalised and sorted by (type, id, version).
    pub(crate) fn lines(chunks: &[crate::ExportChunk]) -> Vec<Value> {
        let mut out = Vec::new();
        for c in chunks {
            assert!(c.bytes.ends_with(b"\n"), "a chunk ends with a whole line");
            let n = c
                .bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            assert_eq!(n as u64, c.count);
            out.extend(
                c.bytes
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .map(norm),
            );
        }
        out.sort_by_key(|v| (v["resourceType"].to_string(), v["id"].to_string()));
        out
    }

    /// Every row of the resource tables, as sorted lines without times (to compare stores).
    pub(crate) async fn dump_pg(s: &PgStore) -> Vec<String> {
        let conn = s.pool.get().await.unwrap();
        let mut out = Vec::new();
        for r in conn
            .query(
                "SELECT tenant, type, id, version, deleted, json FROM resources",
                &[],
            )
            .await
            .unwrap()
        {
            let json: Option<Vec<u8>> = r.get(5);
            out.push(format!(
                "resources|{}|{}|{}|{}|{}|{:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, i64>(3),
                r.get::<_, bool>(4),
                json.map(|j| norm(&j))
            ));
        }
        for r in conn
            .query(
                "SELECT tenant, type, id, version, json FROM resource_versions",
                &[],
            )
            .await
            .unwrap()
        {
            out.push(format!(
                "versions|{}|{}|{}|{}|{:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2),
                r.get::<_, i64>(3),
                norm(r.get::<_, &[u8]>(4))
            ));
        }
        for (table, cols) in TABLES {
            for r in conn
                .query(&format!("SELECT {cols} FROM {table}"), &[])
                .await
                .unwrap()
            {
                let vals: Vec<String> = (0..r.len())
                    .map(|i| match r.try_get::<_, String>(i) {
                        Ok(s) => s,
                        Err(_) => r.get::<_, i64>(i).to_string(),
                    })
                    .collect();
                out.push(format!("{table}|{}", vals.join("|")));
            }
        }
        out.sort();
        out
    }

    const TABLES: [(&str, &str); 4] = [
        ("compartment", "tenant, type, id, patient_id"),
        ("group_members", "tenant, group_id, member_type, member_id"),
        ("search_values", "tenant, type, id, param, value"),
        ("type_counts", "tenant, type, live"),
    ];

    /// The same lines from a SQLite store's file.
    pub(crate) fn dump_sqlite(s: &SqliteStore) -> Vec<String> {
        let c = rusqlite::Connection::open(s.path()).unwrap();
        let mut out = Vec::new();
        let mut st = c
            .prepare("SELECT tenant, type, id, version, deleted, json FROM resources")
            .unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let json: Option<Vec<u8>> = r.get(5).unwrap();
            out.push(format!(
                "resources|{}|{}|{}|{}|{}|{:?}",
                r.get::<_, String>(0).unwrap(),
                r.get::<_, String>(1).unwrap(),
                r.get::<_, String>(2).unwrap(),
                r.get::<_, i64>(3).unwrap(),
                r.get::<_, i64>(4).unwrap() != 0,
                json.map(|j| norm(&j))
            ));
        }
        let mut st = c
            .prepare("SELECT tenant, type, id, version, json FROM resource_versions")
            .unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.push(format!(
                "versions|{}|{}|{}|{}|{:?}",
                r.get::<_, String>(0).unwrap(),
                r.get::<_, String>(1).unwrap(),
                r.get::<_, String>(2).unwrap(),
                r.get::<_, i64>(3).unwrap(),
                norm(&r.get::<_, Vec<u8>>(4).unwrap())
            ));
        }
        for (table, cols) in TABLES {
            let mut st = c.prepare(&format!("SELECT {cols} FROM {table}")).unwrap();
            let n = st.column_count();
            let mut rows = st.query([]).unwrap();
            while let Some(r) = rows.next().unwrap() {
                let vals: Vec<String> = (0..n)
                    .map(|i| match r.get::<_, String>(i) {
                        Ok(s) => s,
                        Err(_) => r.get::<_, i64>(i).unwrap().to_string(),
                    })
                    .collect();
                out.push(format!("{table}|{}", vals.join("|")));
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{db, dump_pg, dump_sqlite, norm, pg_job, sqlite, sqlite_job};
    use crate::{Store, Write, WriteResult};
    use serde_json::{Value, json};

    fn put(v: Value) -> Write {
        Write::put(v).unwrap()
    }

    fn del(t: &str, id: &str) -> Write {
        Write::delete(t, id).unwrap()
    }

    fn patient(id: &str, name: &str) -> Write {
        put(json!({"resourceType": "Patient", "id": id, "name": name,
            "identifier": [{"system": "urn:s", "value": format!("v-{id}")}]}))
    }

    fn obs(id: &str, p: &str, status: &str) -> Write {
        put(
            json!({"resourceType": "Observation", "id": id, "status": status, "code": {},
            "subject": {"reference": format!("Patient/{p}")}}),
        )
    }

    fn group(id: &str, members: &[(&str, bool)]) -> Write {
        let member: Vec<Value> = members
            .iter()
            .map(|(p, inactive)| {
                json!({"entity": {"reference": format!("Patient/{p}")}, "inactive": inactive})
            })
            .collect();
        put(
            json!({"resourceType": "Group", "id": id, "type": "person", "actual": true,
            "name": format!("Group {id}"), "member": member}),
        )
    }

    /// A result without its time, JSON normalised.
    fn result_key(r: &WriteResult) -> (String, String, i64, bool, bool, u64, Option<Value>) {
        (
            r.resource_type.clone(),
            r.id.clone(),
            r.version,
            r.created,
            r.existed,
            r.bytes,
            r.json.as_deref().map(norm),
        )
    }

    fn rest_script() -> Vec<Vec<Write>> {
        vec![
            vec![
                patient("p1", "Ann"),
                patient("p2", "Bob"),
                obs("o1", "p1", "preliminary"),
                group("g", &[("p1", false), ("p2", true)]),
            ],
            vec![
                obs("o1", "p1", "final"),
                del("Patient", "p2"),
                del("Patient", "nope"),
                patient("p2", "Bea"),
                obs("o2", "p2", "final"),
            ],
            vec![
                group("g", &[("p2", false)]),
                del("Observation", "o1"),
                obs("o1", "p2", "amended"),
                obs("o2", "p1", "final"),
                del("Observation", "o2"),
            ],
            vec![del("Group", "g"), del("Group", "g")],
        ]
    }

    /// REST writes give the same results, rows and reads as SQLite's, including the versions
    /// a running job keeps.
    #[tokio::test]
    async fn rest_writes_match_sqlite() {
        let Some(pg) = db().await else { return };
        let (lite, _dir) = sqlite().await;
        for (i, writes) in rest_script().into_iter().enumerate() {
            if i == 2 {
                pg_job(&pg.store, "t").await;
                sqlite_job(&lite, "t").await;
            }
            let a = pg.store.write("t", writes.clone()).await.unwrap();
            let b = lite.write("t", writes).await.unwrap();
            assert_eq!(
                a.iter().map(result_key).collect::<Vec<_>>(),
                b.iter().map(result_key).collect::<Vec<_>>(),
                "results of write {i}"
            );
            assert!(a.windows(2).all(|w| w[0].last_updated == w[1].last_updated));
        }
        assert_eq!(dump_pg(&pg.store).await, dump_sqlite(&lite));
        for (t, id) in [
            ("Patient", "p1"),
            ("Patient", "p2"),
            ("Observation", "o1"),
            ("Observation", "o2"),
            ("Group", "g"),
            ("Patient", "nope"),
        ] {
            let a = pg.store.read("t", t, id).await.unwrap();
            let b = lite.read("t", t, id).await.unwrap();
            assert_eq!(
                a.as_ref()
                    .map(|r| (r.version, r.deleted, r.json.as_deref().map(norm))),
                b.as_ref()
                    .map(|r| (r.version, r.deleted, r.json.as_deref().map(norm))),
                "{t}/{id}"
            );
        }
        let o1 = pg
            .store
            .read("t", "Observation", "o1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!((o1.version, o1.deleted), (4, false));
        assert!(
            pg.store
                .read("u", "Observation", "o1")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            pg.store.type_counts("t").await.unwrap(),
            vec![("Observation".into(), 1), ("Patient".into(), 2)]
        );
        assert_eq!(pg.store.group_members("t", "g").await.unwrap(), None);
        assert_eq!(pg.store.prune_versions().await.unwrap(), 0, "a job runs");
    }

    /// Loads: one transaction for the stream, the same id several times in a batch and across
    /// batches, deletes, and superseded versions for a running job, all as SQLite does them.
    #[tokio::test]
    async fn write_stream_matches_sqlite() {
        let Some(pg) = db().await else { return };
        let (lite, _dir) = sqlite().await;
        let base = vec![
            patient("p1", "Ann"),
            patient("p2", "Bob"),
            obs("o1", "p1", "preliminary"),
            obs("o2", "p2", "preliminary"),
            group("g", &[("p1", false), ("p2", false)]),
        ];
        pg.store.write("t", base.clone()).await.unwrap();
        lite.write("t", base).await.unwrap();
        pg_job(&pg.store, "t").await;
        sqlite_job(&lite, "t").await;

        let batches = || {
            let mut b1 = vec![
                obs("o1", "p1", "final"),
                obs("o1", "p2", "amended"),
                del("Observation", "o2"),
                del("Observation", "o2"),
                patient("p1", "Anna"),
                group("g", &[("p1", false)]),
                del("Patient", "p2"),
                obs("o3", "p1", "final"),
                del("Observation", "o3"),
                del("Group", "nope"),
            ];
            b1.extend((0..1500).map(|i| obs(&format!("x{i}"), &format!("p{}", i % 7), "final")));
            let mut b2: Vec<Write> = (1000..2500)
                .map(|i| obs(&format!("x{i}"), &format!("p{}", i % 5), "amended"))
                .collect();
            b2.extend([
                obs("o2", "p1", "final"),
                patient("p2", "Bea"),
                del("Group", "g"),
                group("g", &[("p2", false), ("p3", false)]),
                obs("o1", "p3", "final"),
            ]);
            let b3 = vec![
                del("Observation", "x5"),
                obs("x5", "p9", "final"),
                del("Group", "g"),
            ];
            vec![Ok(b1), Ok(b2), Ok(Vec::new()), Ok(b3)]
        };
        let a = pg
            .store
            .write_stream("t", Box::pin(futures::stream::iter(batches())))
            .await
            .unwrap();
        let b = lite
            .write_stream("t", Box::pin(futures::stream::iter(batches())))
            .await
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.per_type["Observation"], 3010);
        let dump = dump_pg(&pg.store).await;
        assert!(
            dump.iter().any(|l| l.starts_with("versions|")),
            "the job keeps versions"
        );
        assert_eq!(dump, dump_sqlite(&lite));
        let x5 = pg
            .store
            .read("t", "Observation", "x5")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(x5.version, 3);
        let o1 = pg
            .store
            .read("t", "Observation", "o1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(o1.version, 4);
        assert_eq!(norm(o1.json.as_deref().unwrap())["meta"]["versionId"], "4");
        let p = pg.store.read("t", "Patient", "p1").await.unwrap().unwrap();
        let x = pg
            .store
            .read("t", "Observation", "x1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            p.last_updated, x.last_updated,
            "one transaction, one timestamp"
        );
    }

    /// Pruning keeps what a running job needs and drops everything once none runs.
    #[tokio::test]
    async fn prune_versions_as_sqlite() {
        let Some(pg) = db().await else { return };
        pg.store
            .write("t", vec![obs("o1", "p1", "a")])
            .await
            .unwrap();
        let t = pg_job(&pg.store, "t").await;
        pg.store
            .write("t", vec![obs("o1", "p1", "b")])
            .await
            .unwrap();
        pg.store
            .write("t", vec![obs("o1", "p1", "c")])
            .await
            .unwrap();
        assert_eq!(pg.store.prune_versions().await.unwrap(), 0);
        let conn = pg.store.pool.get().await.unwrap();
        conn.execute("UPDATE jobs SET status = 'completed'", &[])
            .await
            .unwrap();
        assert!(t.0 > 0);
        assert_eq!(pg.store.prune_versions().await.unwrap(), 1);
    }
}
