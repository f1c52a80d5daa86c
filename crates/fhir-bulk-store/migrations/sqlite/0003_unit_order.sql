-- fhir-bulk store schema, version 3 (SQLite): the order in which a job's units completed.
-- Pages of a partial manifest (allowPartialManifests, ST4/M8) are the completed units in this
-- order, so a page, once it exists, never changes: later completions only add pages.
ALTER TABLE job_units ADD COLUMN done_seq INTEGER;
-- Units that completed before this migration keep their planned order.
UPDATE job_units SET done_seq = seq + 1 WHERE status = 'done';
