//! Applying writes inside one writer transaction.

use crate::{Result, StoreError, Write, WriteResult};
use fhir_bulk_spec::{compartment, instant::Instant};
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::{Map, Value};
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
            Write::Put {
                resource_type,
                id,
                resource,
            } => self.put(resource_type, id, resource, want_json),
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

    fn put(
        &mut self,
        rt: String,
        id: String,
        mut resource: Value,
        want_json: bool,
    ) -> Result<WriteResult> {
        let old = self.existing(&rt, &id)?;
        let version = old.as_ref().map_or(1, |o| o.version + 1);
        let created = old.as_ref().is_none_or(|o| o.deleted);
        if let Some(old) = &old {
            self.keep_version(&rt, &id, old)?;
        }
        set_meta(&mut resource, version, &self.ts_text);
        let json = serde_json::to_vec(&resource)
            .map_err(|e| StoreError::Invalid(format!("cannot serialise {rt}/{id}: {e}")))?;
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO resources (tenant, type, id, version, last_updated, deleted, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
            )?
            .execute(params![self.tenant, rt, id, version, self.ts.0, json])?;

        if compartment::is_compartment_type(&rt) {
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
            for patient in compartment::patients_of(&resource) {
                ins.execute(params![self.tenant, rt, id, patient])?;
            }
        }
        if rt == "Group" {
            self.replace_members(&id, Some(&resource))?;
        }
        if rt == "Group" || rt == "Patient" {
            self.replace_search_values(&rt, &id, Some(&resource))?;
        }
        if created {
            *self.live_delta.entry(rt.clone()).or_default() += 1;
        }
        Ok(WriteResult {
            resource_type: rt,
            id,
            version,
            last_updated: self.ts,
            created,
            existed: !created,
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
            self.replace_members(&id, None)?;
        }
        if rt == "Group" || rt == "Patient" {
            self.replace_search_values(&rt, &id, None)?;
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
        })
    }

    fn replace_members(&self, group_id: &str, group: Option<&Value>) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM group_members WHERE tenant = ?1 AND group_id = ?2")?
            .execute(params![self.tenant, group_id])?;
        let Some(members) = group
            .and_then(|g| g.get("member"))
            .and_then(Value::as_array)
        else {
            return Ok(());
        };
        let mut ins = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO group_members (tenant, group_id, member_type, member_id)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for m in members {
            if m.get("inactive").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let reference = m.pointer("/entity/reference").and_then(Value::as_str);
            if let Some((t, i)) = reference.and_then(split_reference) {
                ins.execute(params![self.tenant, group_id, t, i])?;
            }
        }
        Ok(())
    }

    fn replace_search_values(&self, rt: &str, id: &str, resource: Option<&Value>) -> Result<()> {
        self.tx
            .prepare_cached(
                "DELETE FROM search_values WHERE tenant = ?1 AND type = ?2 AND id = ?3",
            )?
            .execute(params![self.tenant, rt, id])?;
        let Some(resource) = resource else {
            return Ok(());
        };
        let mut ins = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO search_values (tenant, type, id, param, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for ident in resource
            .get("identifier")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(value) = ident.get("value").and_then(Value::as_str) else {
                continue;
            };
            let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
            ins.execute(params![
                self.tenant,
                rt,
                id,
                "identifier",
                format!("{system}|{value}")
            ])?;
            ins.execute(params![self.tenant, rt, id, "identifier:value", value])?;
        }
        if let Some(name) = resource.get("name").and_then(Value::as_str) {
            ins.execute(params![self.tenant, rt, id, "name", name.to_lowercase()])?;
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

/// Sets `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`.
fn set_meta(resource: &mut Value, version: i64, last_updated: &str) {
    let Value::Object(obj) = resource else { return };
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Value::Object(m) = meta {
        m.insert("versionId".into(), Value::String(version.to_string()));
        m.insert(
            "lastUpdated".into(),
            Value::String(last_updated.to_string()),
        );
    }
}

/// `Type/id` (relative, or the tail of an absolute URL, without `_history`).
pub(super) fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let r = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let (head, id) = r.rsplit_once('/')?;
    let t = head.rsplit('/').next()?;
    (!t.is_empty() && !id.is_empty()).then_some((t, id))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_reference("Patient/p1"), Some(("Patient", "p1")));
        assert_eq!(
            split_reference("https://x/fhir/Patient/p1"),
            Some(("Patient", "p1"))
        );
        assert_eq!(
            split_reference("Patient/p1/_history/3"),
            Some(("Patient", "p1"))
        );
        assert_eq!(split_reference("p1"), None);
        assert_eq!(split_reference("Patient/"), None);
    }
}
