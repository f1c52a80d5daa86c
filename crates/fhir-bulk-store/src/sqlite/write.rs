//! Applying writes inside one writer transaction.

use crate::resource::PreparedPut;
use crate::{Result, StoreError, Write, WriteResult};
use fhir_bulk_spec::{compartment, instant::Instant};
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::HashMap;

/// The writes of one transaction. Everything written shares the transaction's timestamp:
/// a transaction is one point in the store's history.
pub(super) struct Batch<'a, 'c> {
    tx: &'a Transaction<'c>,
    tenant: &'a str,
    ts: Instant,
    ts_text: String,
    /// Superseded versions at or before this instant may be in a running export's snapshot
    /// and are kept; later ones cannot be (every job's transactionTime is at most this).
    keep_versions_upto: Option<i64>,
    /// Change of live resources per type, applied to `type_counts` at the end.
    live_delta: HashMap<String, i64>,
    /// The JSON of the last put: one buffer for all, not an allocation per resource.
    json: Vec<u8>,
    /// Compartment rows of new resources not inserted yet (see [`Pending`]).
    pending: Pending,
}

/// Compartment rows of new resources, waiting to be inserted. One statement per row, each
/// at a random place of the primary key (ids are random), cost nearly half of a load
/// (10,000 patients: 77k resources/s, 136k without compartment rows); buffered, sorted by
/// key and inserted 64 to a statement, rows share B-tree pages and statements (+12%).
/// Flushed before anything reads or deletes compartment rows, and at the end.
#[derive(Default)]
struct Pending {
    /// type, id and patient of each row, one after the other.
    text: String,
    /// Per row: where its type starts and where type, id and patient end in `text`.
    rows: Vec<(usize, usize, usize, usize)>,
}

/// Rows buffered before a flush: enough to share pages, few enough to stay small (a few MB).
const PENDING_ROWS: usize = 32 * 1024;

/// Rows per multi-row INSERT.
const INSERT_ROWS: usize = 64;

struct Existing {
    version: i64,
    last_updated: i64,
    deleted: bool,
}

impl<'a, 'c> Batch<'a, 'c> {
    pub(super) fn new(tx: &'a Transaction<'c>, tenant: &'a str, ts: Instant) -> Result<Self> {
        let keep_versions_upto: Option<i64> = tx.query_row(
            "SELECT max(transaction_time) FROM jobs WHERE status = 'running'",
            [],
            |r| r.get(0),
        )?;
        Ok(Batch {
            tx,
            tenant,
            ts,
            ts_text: ts.to_string(),
            keep_versions_upto,
            live_delta: HashMap::new(),
            json: Vec::new(),
            pending: Pending::default(),
        })
    }

    /// Applies one write. `want_json` returns the stored JSON in the result (REST answers it).
    pub(super) fn apply(&mut self, write: Write, want_json: bool) -> Result<WriteResult> {
        match write {
            Write::Put(p) => {
                let (version, created) = self.put(&p)?;
                let p = *p;
                Ok(WriteResult {
                    resource_type: p.resource_type,
                    id: p.id,
                    version,
                    last_updated: self.ts,
                    created,
                    existed: !created,
                    bytes: self.json.len() as u64,
                    json: want_json.then(|| self.json.clone()),
                })
            }
            Write::Delete { resource_type, id } => {
                let version = self.delete(&resource_type, &id)?;
                Ok(WriteResult {
                    resource_type,
                    id,
                    // Nothing live to delete: no tombstone, no new version (deletes are
                    // idempotent).
                    version: version.unwrap_or(0),
                    last_updated: self.ts,
                    created: false,
                    existed: version.is_some(),
                    json: None,
                    bytes: 0,
                })
            }
        }
    }

    /// Applies one write of a load, leaving it to the caller (which drops it on another
    /// thread, see `write_stream`). Returns the bytes of JSON stored.
    pub(super) fn apply_ref(&mut self, write: &Write) -> Result<u64> {
        match write {
            Write::Put(p) => {
                self.put(p)?;
                Ok(self.json.len() as u64)
            }
            Write::Delete { resource_type, id } => {
                self.delete(resource_type, id)?;
                Ok(0)
            }
        }
    }

    fn existing(&self, rt: &str, id: &str) -> Result<Option<Existing>> {
        self.tx
            .prepare_cached(
                "SELECT version, last_updated, deleted FROM resources
                 WHERE tenant = ?1 AND type = ?2 AND id = ?3",
            )?
            .query_row(params![self.tenant, rt, id], |r| {
                Ok(Existing {
                    version: r.get(0)?,
                    last_updated: r.get(1)?,
                    deleted: r.get::<_, i64>(2)? != 0,
                })
            })
            .optional()
            .map_err(Into::into)
    }

    /// Keeps the live version being replaced if a running export's snapshot may need it
    /// (copied inside SQLite: the JSON never leaves the database).
    fn keep_version(&self, rt: &str, id: &str, old: &Existing) -> Result<()> {
        let Some(upto) = self.keep_versions_upto else {
            return Ok(());
        };
        if !old.deleted && old.last_updated <= upto {
            self.tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO resource_versions
                     (tenant, type, id, version, last_updated, superseded_at, json)
                     SELECT tenant, type, id, version, last_updated, ?4, json FROM resources
                     WHERE tenant = ?1 AND type = ?2 AND id = ?3",
                )?
                .execute(params![self.tenant, rt, id, self.ts.0])?;
        }
        Ok(())
    }

    /// Writes `p` (its JSON is left in `self.json`): (version, created).
    fn put(&mut self, p: &PreparedPut) -> Result<(i64, bool)> {
        let (rt, id) = (p.resource_type.as_str(), p.id.as_str());
        // Most puts of a load create: try the insert first, so a new resource costs one
        // key lookup (inside the insert) instead of a SELECT followed by an upsert.
        p.write_json_with_meta(&mut self.json, 1, &self.ts_text);
        let json = &self.json;
        let inserted = self
            .tx
            .prepare_cached(
                "INSERT INTO resources (tenant, type, id, version, last_updated, deleted, json)
                 VALUES (?1, ?2, ?3, 1, ?4, 0, ?5) ON CONFLICT DO NOTHING",
            )?
            .execute(params![self.tenant, rt, id, self.ts.0, json])?
            == 1;
        let (version, created) = if inserted {
            // New: no compartment, member or search rows can exist for it (they go with
            // the resource row, which is only ever removed with its tenant).
            for patient in &p.patients {
                self.pending.push(rt, id, patient);
            }
            if self.pending.rows.len() >= PENDING_ROWS {
                self.flush_compartment()?;
            }
            if rt == "Group" {
                self.insert_members(id, &p.members)?;
            }
            if rt == "Group" || rt == "Patient" {
                self.insert_search_values(rt, id, &p.search)?;
            }
            (1, true)
        } else {
            self.flush_compartment()?;
            let old = self.existing(rt, id)?.ok_or_else(|| {
                StoreError::Database(format!("{rt}/{id} conflicted but is not there"))
            })?;
            let version = old.version + 1;
            self.keep_version(rt, id, &old)?;
            p.write_json_with_meta(&mut self.json, version, &self.ts_text);
            let json = &self.json;
            // REPLACE (not UPDATE) moves the row to the end of the table, as it always has:
            // rows of one transaction are exported in the order they were written.
            self.tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO resources (tenant, type, id, version, last_updated, deleted, json)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                )?
                .execute(params![self.tenant, rt, id, version, self.ts.0, json])?;
            if compartment::is_compartment_type(rt) {
                self.tx
                    .prepare_cached(
                        "DELETE FROM compartment WHERE tenant = ?1 AND type = ?2 AND id = ?3",
                    )?
                    .execute(params![self.tenant, rt, id])?;
                let mut ins = self.tx.prepare_cached(
                    "INSERT OR IGNORE INTO compartment (tenant, type, id, patient_id) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for patient in &p.patients {
                    ins.execute(params![self.tenant, rt, id, patient])?;
                }
            }
            if rt == "Group" {
                self.replace_members(id, &p.members)?;
            }
            if rt == "Group" || rt == "Patient" {
                self.replace_search_values(rt, id, &p.search)?;
            }
            (version, old.deleted)
        };
        if created {
            self.count(rt, 1);
        }
        Ok((version, created))
    }

    /// Adds `delta` to the live count of `rt` (allocating only for a type's first write).
    fn count(&mut self, rt: &str, delta: i64) {
        match self.live_delta.get_mut(rt) {
            Some(n) => *n += delta,
            None => {
                self.live_delta.insert(rt.to_string(), delta);
            }
        }
    }

    /// Deletes `rt/id`: the tombstone's version, or `None` when nothing live was there.
    fn delete(&mut self, rt: &str, id: &str) -> Result<Option<i64>> {
        let old = self.existing(rt, id)?;
        let Some(old) = old.filter(|o| !o.deleted) else {
            return Ok(None);
        };
        self.keep_version(rt, id, &old)?;
        let version = old.version + 1;
        self.tx
            .prepare_cached(
                "UPDATE resources SET version = ?4, last_updated = ?5, deleted = 1, json = NULL
                 WHERE tenant = ?1 AND type = ?2 AND id = ?3",
            )?
            .execute(params![self.tenant, rt, id, version, self.ts.0])?;
        // Compartment rows stay: Patient/Group exports report the tombstone (T3).
        if rt == "Group" {
            self.replace_members(id, &[])?;
        }
        if rt == "Group" || rt == "Patient" {
            self.replace_search_values(rt, id, &[])?;
        }
        self.count(rt, -1);
        Ok(Some(version))
    }

    fn replace_members(&self, group_id: &str, members: &[(String, String)]) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM group_members WHERE tenant = ?1 AND group_id = ?2")?
            .execute(params![self.tenant, group_id])?;
        self.insert_members(group_id, members)
    }

    fn insert_members(&self, group_id: &str, members: &[(String, String)]) -> Result<()> {
        let mut ins = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO group_members (tenant, group_id, member_type, member_id)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (t, i) in members {
            ins.execute(params![self.tenant, group_id, t, i])?;
        }
        Ok(())
    }

    fn replace_search_values(&self, rt: &str, id: &str, values: &[(&str, String)]) -> Result<()> {
        self.tx
            .prepare_cached(
                "DELETE FROM search_values WHERE tenant = ?1 AND type = ?2 AND id = ?3",
            )?
            .execute(params![self.tenant, rt, id])?;
        self.insert_search_values(rt, id, values)
    }

    fn insert_search_values(&self, rt: &str, id: &str, values: &[(&str, String)]) -> Result<()> {
        let mut ins = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO search_values (tenant, type, id, param, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (param, value) in values {
            ins.execute(params![self.tenant, rt, id, param, value])?;
        }
        Ok(())
    }

    /// Inserts the pending compartment rows, in key order.
    fn flush_compartment(&mut self) -> Result<()> {
        let Pending { text, rows } = &mut self.pending;
        if rows.is_empty() {
            return Ok(());
        }
        let key =
            |&(s, t, i, p): &(usize, usize, usize, usize)| (&text[s..t], &text[t..i], &text[i..p]);
        rows.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
        let mut chunks = rows.chunks_exact(INSERT_ROWS);
        let mut many = self
            .tx
            .prepare_cached(&insert_compartment_sql(INSERT_ROWS))?;
        for chunk in chunks.by_ref() {
            many.raw_bind_parameter(1, self.tenant)?;
            for (n, row) in chunk.iter().enumerate() {
                let (t, i, p) = key(row);
                many.raw_bind_parameter(2 + 3 * n, t)?;
                many.raw_bind_parameter(3 + 3 * n, i)?;
                many.raw_bind_parameter(4 + 3 * n, p)?;
            }
            many.raw_execute()?;
        }
        let mut one = self.tx.prepare_cached(&insert_compartment_sql(1))?;
        for row in chunks.remainder() {
            let (t, i, p) = key(row);
            one.execute(params![self.tenant, t, i, p])?;
        }
        text.clear();
        rows.clear();
        Ok(())
    }

    /// Applies the pending compartment rows and the live counts. Call once, before commit.
    pub(super) fn finish(mut self) -> Result<()> {
        self.flush_compartment()?;
        let mut st = self.tx.prepare_cached(
            "INSERT INTO type_counts (tenant, type, live) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, type) DO UPDATE SET live = live + excluded.live",
        )?;
        for (rt, delta) in &self.live_delta {
            if *delta != 0 {
                st.execute(params![self.tenant, rt, delta])?;
            }
        }
        Ok(())
    }
}

impl Pending {
    fn push(&mut self, rt: &str, id: &str, patient: &str) {
        let start = self.text.len();
        self.text.push_str(rt);
        let t = self.text.len();
        self.text.push_str(id);
        let i = self.text.len();
        self.text.push_str(patient);
        self.rows.push((start, t, i, self.text.len()));
    }
}

/// `INSERT OR IGNORE` of `rows` compartment rows: tenant `?1`, then type, id, patient.
fn insert_compartment_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT OR IGNORE INTO compartment (tenant, type, id, patient_id) VALUES ");
    for n in 0..rows {
        if n > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(?1, ?{}, ?{}, ?{})",
            2 + 3 * n,
            3 + 3 * n,
            4 + 3 * n
        ));
    }
    sql
}

/// Deletes superseded versions no running export can need: those superseded at or before
/// the oldest running job's transactionTime (or all, with no running job).
pub(super) fn prune_versions(tx: &Transaction<'_>) -> Result<u64> {
    let oldest: Option<i64> = tx.query_row(
        "SELECT min(transaction_time) FROM jobs WHERE status = 'running'",
        [],
        |r| r.get(0),
    )?;
    let n = match oldest {
        Some(t) => tx.execute(
            "DELETE FROM resource_versions WHERE superseded_at <= ?1",
            params![t],
        )?,
        None => tx.execute("DELETE FROM resource_versions", [])?,
    };
    Ok(n as u64)
}
