-- Ferry store, migration 12: named admins with roles, their API tokens, and
-- the audit trail of every change made through the admin API.

CREATE TABLE admins (
    name          TEXT PRIMARY KEY,
    role          TEXT NOT NULL,             -- admin | operator | auditor
    password_hash TEXT,                      -- argon2 PHC string, NULL = tokens only
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE admin_tokens (
    id         TEXT PRIMARY KEY,             -- public id, part of the token text
    admin      TEXT NOT NULL REFERENCES admins(name) ON DELETE CASCADE,
    sha256     TEXT NOT NULL UNIQUE,         -- hex SHA-256 of the whole token
    label      TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
) STRICT;

-- History: written once, never changed; merged by id between active/passive
-- servers like the transfer log, so a failback keeps both servers' records.
CREATE TABLE audit (
    id          TEXT PRIMARY KEY,            -- UUID v7
    at          INTEGER NOT NULL,            -- unix ms
    admin       TEXT NOT NULL,               -- admin name, or 'bootstrap'
    role        TEXT NOT NULL,
    client_addr TEXT NOT NULL,
    request     TEXT NOT NULL,               -- 'METHOD /path?query'
    body        TEXT NOT NULL,               -- JSON, secrets as '***'
    status      INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    node        TEXT NOT NULL,
    change_seq  INTEGER
) STRICT;

CREATE INDEX audit_by_time ON audit(at);
CREATE INDEX audit_by_change ON audit(change_seq);

CREATE TRIGGER audit_change_seq_insert AFTER INSERT ON audit
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE audit SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

-- Never fires in practice (audit rows are not changed), but every history
-- table numbers its updates too.
CREATE TRIGGER audit_change_seq_update AFTER UPDATE ON audit
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.id, NEW.at, NEW.admin, NEW.role, NEW.client_addr, NEW.request, NEW.body,
      NEW.status, NEW.outcome, NEW.node)
     IS NOT
     (OLD.id, OLD.at, OLD.admin, OLD.role, OLD.client_addr, OLD.request, OLD.body,
      OLD.status, OLD.outcome, OLD.node)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE audit SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;
