-- fhir-bulk store schema, version 1 (PostgreSQL). The same tables and columns as
-- migrations/sqlite/0001_init.sql (read that file for what each one is for); types are
-- PostgreSQL's. Times are bigint microseconds since the Unix epoch, UTC. Resource JSON is
-- bytea: the exact bytes written are the bytes exported, never re-parsed (no jsonb).
-- The text columns of the resource tables are COLLATE "C": ids sort by byte as in SQLite
-- (search pages, organized output by patient id) whatever the database's locale, and the
-- indexes give that order without a sort.

CREATE TABLE resources (
    tenant       text COLLATE "C" NOT NULL,
    type         text COLLATE "C" NOT NULL,
    id           text COLLATE "C" NOT NULL,
    version      bigint           NOT NULL,
    last_updated bigint           NOT NULL,
    deleted      boolean          NOT NULL DEFAULT false,
    json         bytea,
    PRIMARY KEY (tenant, type, id)
);
CREATE INDEX resources_export ON resources (tenant, type, last_updated);

CREATE TABLE resource_versions (
    tenant        text COLLATE "C" NOT NULL,
    type          text COLLATE "C" NOT NULL,
    id            text COLLATE "C" NOT NULL,
    version       bigint           NOT NULL,
    last_updated  bigint           NOT NULL,
    superseded_at bigint           NOT NULL,
    json          bytea            NOT NULL,
    PRIMARY KEY (tenant, type, id, version)
);
CREATE INDEX resource_versions_export ON resource_versions (tenant, type, superseded_at);

CREATE TABLE compartment (
    tenant     text COLLATE "C" NOT NULL,
    type       text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    patient_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, type, id, patient_id)
);
-- With id, a cohort's rows of a type come from the index alone (Group/patient-list scans),
-- already in the order organized output wants.
CREATE INDEX compartment_patient ON compartment (tenant, patient_id, type, id);

CREATE TABLE group_members (
    tenant      text COLLATE "C" NOT NULL,
    group_id    text COLLATE "C" NOT NULL,
    member_type text COLLATE "C" NOT NULL,
    member_id   text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, group_id, member_type, member_id)
);

CREATE TABLE search_values (
    tenant text COLLATE "C" NOT NULL,
    type   text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    param  text COLLATE "C" NOT NULL,
    value  text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, type, param, value, id)
);
CREATE INDEX search_values_resource ON search_values (tenant, type, id);

CREATE TABLE type_counts (
    tenant text COLLATE "C" NOT NULL,
    type   text COLLATE "C" NOT NULL,
    live   bigint           NOT NULL,
    PRIMARY KEY (tenant, type)
);

-- The store clock. Every write transaction updates this one row first, so its row lock is
-- the writer lock: timestamps are strictly increasing in commit order across all nodes, and
-- a job's transactionTime separates committed writes (<= T) from later ones (> T).
CREATE TABLE clock (
    singleton integer PRIMARY KEY CHECK (singleton = 1),
    last      bigint  NOT NULL
);
INSERT INTO clock (singleton, last) VALUES (1, 0);

CREATE TABLE jobs (
    tenant           text   NOT NULL,
    id               text   NOT NULL PRIMARY KEY,
    client_id        text,
    status           text   NOT NULL,
    request_url      text   NOT NULL,
    params           text   NOT NULL,
    transaction_time bigint NOT NULL,
    created_at       bigint NOT NULL,
    finished_at      bigint,
    expires_at       bigint NOT NULL,
    error            text
);
CREATE INDEX jobs_client ON jobs (tenant, client_id, status);

CREATE TABLE job_units (
    job_id        text   NOT NULL,
    seq           bigint NOT NULL,
    resource_type text   NOT NULL,
    kind          text   NOT NULL,
    estimate      bigint NOT NULL,
    status        text   NOT NULL,
    lease_owner   text,
    lease_until   bigint,
    written       bigint NOT NULL DEFAULT 0,
    attempts      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_units_claim ON job_units (status, lease_until);

CREATE TABLE job_files (
    job_id        text   NOT NULL,
    name          text   NOT NULL,
    unit_seq      bigint NOT NULL,
    kind          text   NOT NULL,
    resource_type text   NOT NULL,
    count         bigint NOT NULL,
    bytes         bigint NOT NULL,
    PRIMARY KEY (job_id, name)
);
