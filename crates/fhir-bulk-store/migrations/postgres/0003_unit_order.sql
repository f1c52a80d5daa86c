-- fhir-bulk store schema, version 3 (PostgreSQL): the order in which a job's units completed
-- (pages of a partial manifest; see migrations/sqlite/0003_unit_order.sql).
ALTER TABLE job_units ADD COLUMN done_seq bigint;
UPDATE job_units SET done_seq = seq + 1 WHERE status = 'done';
