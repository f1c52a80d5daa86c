-- fhir-bulk store schema, version 1 (SQLite).
-- Every row carries a tenant id (design: tenants from day one).
-- Times are integer microseconds since the Unix epoch, UTC.

-- The latest version of every resource, or its tombstone (deleted = 1, json NULL).
-- A rowid table, not WITHOUT ROWID: rows (about 1 KB of JSON each) are appended in write
-- order, and only the small key index takes random inserts, so loading millions of resources
-- with random ids does not rewrite the table's pages at random.
CREATE TABLE resources (
    tenant       TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    json         BLOB
);
CREATE UNIQUE INDEX resources_key ON resources (tenant, type, id);
-- Export scans a type by modification time (_since/_until/transactionTime).
CREATE INDEX resources_export ON resources (tenant, type, last_updated);

-- Superseded versions (and the live version a delete replaced), kept only while an export's
-- snapshot may still need them: an export at transactionTime T reads the version that was
-- current at T (last_updated <= T < superseded_at).
CREATE TABLE resource_versions (
    tenant        TEXT    NOT NULL,
    type          TEXT    NOT NULL,
    id            TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL,
    superseded_at INTEGER NOT NULL,
    json          BLOB    NOT NULL,
    PRIMARY KEY (tenant, type, id, version)
) WITHOUT ROWID;
CREATE INDEX resource_versions_export ON resource_versions (tenant, type, superseded_at);

-- Patient compartment: resource (type, id) is in the compartment of patient_id.
-- Kept for tombstones too, so Patient/Group exports can report deletions (T3).
CREATE TABLE compartment (
    tenant     TEXT NOT NULL,
    type       TEXT NOT NULL,
    id         TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (tenant, type, id, patient_id)
) WITHOUT ROWID;
CREATE INDEX compartment_patient ON compartment (tenant, patient_id, type);

-- Active members of each Group (Group.member.entity without inactive = true).
CREATE TABLE group_members (
    tenant      TEXT NOT NULL,
    group_id    TEXT NOT NULL,
    member_type TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    PRIMARY KEY (tenant, group_id, member_type, member_id)
) WITHOUT ROWID;

-- Search values for the small REST search surface (Patient/Group: identifier, name).
CREATE TABLE search_values (
    tenant TEXT NOT NULL,
    type   TEXT NOT NULL,
    id     TEXT NOT NULL,
    param  TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, type, param, value, id)
) WITHOUT ROWID;
CREATE INDEX search_values_resource ON search_values (tenant, type, id);

-- Live resources per type: the types a tenant holds and export size estimates.
CREATE TABLE type_counts (
    tenant TEXT    NOT NULL,
    type   TEXT    NOT NULL,
    live   INTEGER NOT NULL,
    PRIMARY KEY (tenant, type)
) WITHOUT ROWID;

-- The store clock: every write transaction takes its timestamps from here, under the
-- writer lock, so timestamps are strictly increasing across processes and a job's
-- transactionTime separates committed writes (<= T) from later ones (> T).
CREATE TABLE clock (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    last      INTEGER NOT NULL
);
INSERT INTO clock (singleton, last) VALUES (1, 0);

-- Export jobs. params is the parsed kick-off request as JSON.
CREATE TABLE jobs (
    tenant           TEXT    NOT NULL,
    id               TEXT    NOT NULL PRIMARY KEY,
    client_id        TEXT,
    status           TEXT    NOT NULL,
    request_url      TEXT    NOT NULL,
    params           TEXT    NOT NULL,
    transaction_time INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    expires_at       INTEGER NOT NULL,
    error            TEXT
);
CREATE INDEX jobs_client ON jobs (tenant, client_id, status);

-- Units of work of a job: claimed with a lease, completed together with their files.
CREATE TABLE job_units (
    job_id        TEXT    NOT NULL,
    seq           INTEGER NOT NULL,
    resource_type TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    estimate      INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    lease_owner   TEXT,
    lease_until   INTEGER,
    written       INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, seq)
);
CREATE INDEX job_units_claim ON job_units (status, lease_until);

-- Files of a job, committed with the unit that wrote them.
CREATE TABLE job_files (
    job_id        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    unit_seq      INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    resource_type TEXT    NOT NULL,
    count         INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
