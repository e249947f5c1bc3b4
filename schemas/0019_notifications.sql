-- Ferry store, migration 19: notifications. Endpoints (a webhook or an
-- SMTP server with its recipients) and the rules that send to them are
-- replicated configuration; a notification itself is an event of kind
-- `notify` in the queue, with what it says in the event's `notice`.

CREATE TABLE notify_endpoints (
    name           TEXT PRIMARY KEY,
    target         TEXT NOT NULL,           -- JSON: {"type":"webhook",...} | {"type":"email",...}
    secret_sealed  TEXT,                    -- HMAC key or SMTP password, sealed
    ca_pem         TEXT,                    -- extra trusted certificates
    link_base      TEXT,                    -- base URL of links to events
    max_attempts   INTEGER NOT NULL,
    retry_base_ms  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE notify_rules (
    name        TEXT PRIMARY KEY,
    trigger     TEXT NOT NULL,              -- JSON: {"type":"event_failed"} …
    kind        TEXT NOT NULL,              -- the trigger's kind, to look rules up by
    account     TEXT,
    route       TEXT,
    partner     TEXT,
    endpoint    TEXT NOT NULL REFERENCES notify_endpoints(name),
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX notify_rules_by_kind ON notify_rules(kind);

ALTER TABLE events ADD COLUMN notice TEXT;  -- JSON, for kind = 'notify'

-- The history trigger compares every column, the new one included.
DROP TRIGGER events_change_seq_update;
CREATE TRIGGER events_change_seq_update AFTER UPDATE ON events
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.id, NEW.kind, NEW.route, NEW.schedule, NEW.slot, NEW.account, NEW.path,
      NEW.transfer_id, NEW.partners, NEW.status, NEW.attempts, NEW.max_attempts,
      NEW.retry_base_ms, NEW.next_at, NEW.lease_node, NEW.lease_until,
      NEW.steps_done, NEW.current_path, NEW.created_at, NEW.updated_at,
      NEW.last_error, NEW.resubmit_of, NEW.notice)
     IS NOT
     (OLD.id, OLD.kind, OLD.route, OLD.schedule, OLD.slot, OLD.account, OLD.path,
      OLD.transfer_id, OLD.partners, OLD.status, OLD.attempts, OLD.max_attempts,
      OLD.retry_base_ms, OLD.next_at, OLD.lease_node, OLD.lease_until,
      OLD.steps_done, OLD.current_path, OLD.created_at, OLD.updated_at,
      OLD.last_error, OLD.resubmit_of, OLD.notice)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE events SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;
