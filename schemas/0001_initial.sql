-- Ferry store, migration 1: accounts, their keys, and the transfer log.
-- Applied in one transaction by ferry-store; the version is kept in PRAGMA user_version.

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,          -- UUID, never reused
    name          TEXT NOT NULL UNIQUE,      -- login name
    home          TEXT NOT NULL,             -- relative to the repository root
    password_hash TEXT,                      -- argon2 PHC string, NULL = no password login
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL           -- unix milliseconds
) STRICT;

CREATE TABLE account_keys (
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,               -- SHA256:...
    public_key  TEXT NOT NULL,               -- OpenSSH one-line form, no comment
    comment     TEXT NOT NULL DEFAULT '',
    added_at    INTEGER NOT NULL,
    PRIMARY KEY (account_id, fingerprint)
) STRICT;

CREATE TABLE transfers (
    id          TEXT PRIMARY KEY,            -- UUID v7
    account     TEXT NOT NULL,               -- kept as a name: the log outlives accounts
    protocol    TEXT NOT NULL,               -- sftp | https
    direction   TEXT NOT NULL,               -- upload | download
    path        TEXT NOT NULL,               -- inside the account's home
    bytes       INTEGER NOT NULL,
    sha256      TEXT,                        -- hex, of the whole file
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER NOT NULL,
    status      TEXT NOT NULL,               -- completed | interrupted | failed
    node        TEXT NOT NULL,               -- node id of the server that served it
    client_addr TEXT NOT NULL,
    error       TEXT,
    format      INTEGER NOT NULL DEFAULT 1   -- record format version
) STRICT;

CREATE INDEX transfers_by_account ON transfers(account, started_at);
CREATE INDEX transfers_by_start ON transfers(started_at);
