//! Applying writes inside one writer transaction.

use crate::resource::PreparedPut;
use crate::{Result, Write, WriteResult};
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
}

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
        })
    }

    /// Applies one write. `want_json` returns the stored JSON in the result (REST answers it).
    pub(super) fn apply(&mut self, write: Write, want_json: bool) -> Result<WriteResult> {
        match write {
            Write::Put(p) => self.put(*p, want_json),
            Write::Delete { resource_type, id } => self.delete(resource_type, id),
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

    fn put(&mut self, p: PreparedPut, want_json: bool) -> Result<WriteResult> {
        let (rt, id) = (p.resource_type.as_str(), p.id.as_str());
        let old = self.existing(rt, id)?;
        let version = old.as_ref().map_or(1, |o| o.version + 1);
        let created = old.as_ref().is_none_or(|o| o.deleted);
        if let Some(old) = &old {
            self.keep_version(rt, id, old)?;
        }
        let json = p.json_with_meta(version, &self.ts_text);
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO resources (tenant, type, id, version, last_updated, deleted, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            )?
            .execute(params![self.tenant, rt, id, version, self.ts.0, json])?;

        if compartment::is_compartment_type(rt) {
            if old.is_some() {
                self.tx
                    .prepare_cached(
                        "DELETE FROM compartment WHERE tenant = ?1 AND type = ?2 AND id = ?3",
                    )?
                    .execute(params![self.tenant, rt, id])?;
            }
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
            json: want_json.then_some(json),
        })
    }

    fn delete(&mut self, rt: String, id: String) -> Result<WriteResult> {
        let old = self.existing(&rt, &id)?;
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
        self.keep_version(&rt, &id, &old)?;
        let version = old.version + 1;
        self.tx
            .prepare_cached(
                "UPDATE resources SET version = ?4, last_updated = ?5, deleted = 1, json = NULL
                 WHERE tenant = ?1 AND type = ?2 AND id = ?3",
            )?
            .execute(params![self.tenant, rt, id, version, self.ts.0])?;
        // Compartment rows stay: Patient/Group exports report the tombstone (T3).
        if rt == "Group" {
            self.replace_members(&id, &[])?;
        }
        if rt == "Group" || rt == "Patient" {
            self.replace_search_values(&rt, &id, &[])?;
        }
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

    fn replace_members(&self, group_id: &str, members: &[(String, String)]) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM group_members WHERE tenant = ?1 AND group_id = ?2")?
            .execute(params![self.tenant, group_id])?;
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
        let mut ins = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO search_values (tenant, type, id, param, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (param, value) in values {
            ins.execute(params![self.tenant, rt, id, param, value])?;
        }
        Ok(())
    }

    /// Applies the live counts. Call once, before commit.
    pub(super) fn finish(self) -> Result<()> {
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
