-- fhir-bulk store schema, version 5 (PostgreSQL): unit id slices and the completing node
-- (see migrations/sqlite/0005_unit_slices.sql).
ALTER TABLE job_units ADD COLUMN id_from text;
ALTER TABLE job_units ADD COLUMN id_to text;
ALTER TABLE job_units ADD COLUMN done_by text;
