-- fhir-bulk store schema, version 4 (PostgreSQL): the tenants of a multi-tenant server
-- (see migrations/sqlite/0004_tenants.sql).
CREATE TABLE tenants (
    id              text   NOT NULL PRIMARY KEY,
    max_exports     bigint,
    rate_per_second double precision,
    created_at      bigint NOT NULL
);
INSERT INTO tenants (id, created_at) VALUES ('default', 0);
CREATE INDEX jobs_tenant_status ON jobs (tenant, status);
