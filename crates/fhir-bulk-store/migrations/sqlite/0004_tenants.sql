-- fhir-bulk store schema, version 4 (SQLite): the tenants of a multi-tenant server.
-- Every other row already carries a tenant id (0001); this table says which ids exist and
-- holds their limits. The default tenant always exists (it is the plain /fhir base).
CREATE TABLE tenants (
    id              TEXT    NOT NULL PRIMARY KEY,
    -- Running exports allowed in the tenant at once, across all nodes (NULL: no limit).
    max_exports     INTEGER,
    -- Requests per second allowed per node (NULL: no limit).
    rate_per_second REAL,
    created_at      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO tenants (id, created_at) VALUES ('default', 0);
-- Per-tenant concurrency counts running jobs of a tenant.
CREATE INDEX jobs_tenant_status ON jobs (tenant, status);
