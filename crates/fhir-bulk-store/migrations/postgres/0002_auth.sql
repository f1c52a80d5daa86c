-- fhir-bulk store schema, version 2 (PostgreSQL): SMART Backend Services authorization.
-- Same tables as migrations/sqlite/0002_auth.sql.

CREATE TABLE clients (
    tenant      text   NOT NULL,
    id          text   NOT NULL,
    name        text   NOT NULL,
    scopes      text   NOT NULL,
    jwks        text,
    jwks_url    text,
    secret_hash text,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    PRIMARY KEY (tenant, id),
    CHECK ((jwks IS NOT NULL)::int + (jwks_url IS NOT NULL)::int + (secret_hash IS NOT NULL)::int = 1)
);

CREATE TABLE assertion_jtis (
    tenant     text   NOT NULL,
    client_id  text   NOT NULL,
    jti        text   NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (tenant, client_id, jti)
);
CREATE INDEX assertion_jtis_expiry ON assertion_jtis (expires_at);

CREATE TABLE server_secrets (
    tenant     text   NOT NULL,
    name       text   NOT NULL,
    value      bytea  NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (tenant, name)
);
