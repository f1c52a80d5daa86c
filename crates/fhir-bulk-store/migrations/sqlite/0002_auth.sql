-- fhir-bulk store schema, version 2 (SQLite): SMART Backend Services authorization.
-- Every row carries a tenant id; times are integer microseconds since the Unix epoch, UTC.

-- Registered clients. Exactly one credential column is set: a JWKS by value (JSON text),
-- a JWKS URL, or the salted hash of a client secret (never the secret itself).
CREATE TABLE clients (
    tenant      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    jwks        TEXT,
    jwks_url    TEXT,
    secret_hash TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, id),
    CHECK ((jwks IS NOT NULL) + (jwks_url IS NOT NULL) + (secret_hash IS NOT NULL) = 1)
);

-- Replay cache of client assertions (J3): a jti is refused while its row lives. Rows live
-- until the assertion could no longer be accepted anyway (its exp plus clock skew) and are
-- purged after that. In the store, so it holds across restarts and nodes.
CREATE TABLE assertion_jtis (
    tenant     TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, client_id, jti)
) WITHOUT ROWID;
CREATE INDEX assertion_jtis_expiry ON assertion_jtis (expires_at);

-- Secrets the server generates for itself (e.g. the key that signs access tokens), created
-- once per tenant and shared by every node through the store.
CREATE TABLE server_secrets (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
