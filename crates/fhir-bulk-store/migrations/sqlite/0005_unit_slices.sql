-- fhir-bulk store schema, version 5 (SQLite): units that cover a slice of a type's ids
-- (id_from inclusive, id_to exclusive, NULL open), so several workers of several nodes can
-- export one large type at once; and which node completed a unit (operations, benchmarks).
ALTER TABLE job_units ADD COLUMN id_from TEXT;
ALTER TABLE job_units ADD COLUMN id_to TEXT;
ALTER TABLE job_units ADD COLUMN done_by TEXT;
