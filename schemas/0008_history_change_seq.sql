-- Ferry store, migration 8: a change sequence on every history row, so that
-- active/passive servers pull each other's history by a position in this
-- store's own order of commits instead of by wall-clock times.
--
-- `change_counter` holds the last sequence number handed out. Triggers give
-- a history row the next number when it is inserted and whenever an update
-- changes any of its columns, whoever writes it (a command, a merge of a
-- peer's rows, a recovered intent). SQLite has one writer at a time and the
-- number is taken inside the writing transaction, so the order of numbers
-- is the order of commits. An update that leaves every column as it was
-- (a merge that takes nothing) takes no number.
--
-- The numbers mean something only in this store: `change_seq` is never
-- exported, merged, synced or digested (ferry-store leaves the column out
-- of the history and sync tables' column lists).
--
-- A migration that adds a column to one of these tables must recreate its
-- update trigger with the new column in the comparison (a unit test checks).

CREATE TABLE change_counter (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
) STRICT;

INSERT INTO change_counter (id, seq) VALUES (1, 0);

ALTER TABLE transfers ADD COLUMN change_seq INTEGER;
ALTER TABLE events ADD COLUMN change_seq INTEGER;
ALTER TABLE event_attempts ADD COLUMN change_seq INTEGER;
ALTER TABLE schedule_firings ADD COLUMN change_seq INTEGER;

-- Rows written before this migration: numbers in table order, events before
-- their attempts, no number given twice.
UPDATE transfers SET change_seq = rowid + (SELECT seq FROM change_counter);
UPDATE change_counter SET seq = MAX(seq, (SELECT COALESCE(MAX(change_seq), 0) FROM transfers));
UPDATE events SET change_seq = rowid + (SELECT seq FROM change_counter);
UPDATE change_counter SET seq = MAX(seq, (SELECT COALESCE(MAX(change_seq), 0) FROM events));
UPDATE event_attempts SET change_seq = rowid + (SELECT seq FROM change_counter);
UPDATE change_counter SET seq = MAX(seq, (SELECT COALESCE(MAX(change_seq), 0) FROM event_attempts));
UPDATE schedule_firings SET change_seq = rowid + (SELECT seq FROM change_counter);
UPDATE change_counter SET seq = MAX(seq, (SELECT COALESCE(MAX(change_seq), 0) FROM schedule_firings));

CREATE INDEX transfers_by_change ON transfers(change_seq);
CREATE INDEX events_by_change ON events(change_seq);
CREATE INDEX event_attempts_by_change ON event_attempts(change_seq);
CREATE INDEX schedule_firings_by_change ON schedule_firings(change_seq);

-- The insert triggers' own update sets change_seq, so the update triggers
-- (which fire only while change_seq stays as it was) do not fire on it.

CREATE TRIGGER transfers_change_seq_insert AFTER INSERT ON transfers
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE transfers SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER transfers_change_seq_update AFTER UPDATE ON transfers
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.id, NEW.account, NEW.protocol, NEW.direction, NEW.path, NEW.bytes,
      NEW.sha256, NEW.started_at, NEW.ended_at, NEW.status, NEW.node,
      NEW.client_addr, NEW.error, NEW.format, NEW.partner, NEW.event_id, NEW.size)
     IS NOT
     (OLD.id, OLD.account, OLD.protocol, OLD.direction, OLD.path, OLD.bytes,
      OLD.sha256, OLD.started_at, OLD.ended_at, OLD.status, OLD.node,
      OLD.client_addr, OLD.error, OLD.format, OLD.partner, OLD.event_id, OLD.size)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE transfers SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER events_change_seq_insert AFTER INSERT ON events
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE events SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER events_change_seq_update AFTER UPDATE ON events
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.id, NEW.kind, NEW.route, NEW.schedule, NEW.slot, NEW.account, NEW.path,
      NEW.transfer_id, NEW.partners, NEW.status, NEW.attempts, NEW.max_attempts,
      NEW.retry_base_ms, NEW.next_at, NEW.lease_node, NEW.lease_until,
      NEW.steps_done, NEW.current_path, NEW.created_at, NEW.updated_at,
      NEW.last_error, NEW.resubmit_of)
     IS NOT
     (OLD.id, OLD.kind, OLD.route, OLD.schedule, OLD.slot, OLD.account, OLD.path,
      OLD.transfer_id, OLD.partners, OLD.status, OLD.attempts, OLD.max_attempts,
      OLD.retry_base_ms, OLD.next_at, OLD.lease_node, OLD.lease_until,
      OLD.steps_done, OLD.current_path, OLD.created_at, OLD.updated_at,
      OLD.last_error, OLD.resubmit_of)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE events SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER event_attempts_change_seq_insert AFTER INSERT ON event_attempts
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE event_attempts SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER event_attempts_change_seq_update AFTER UPDATE ON event_attempts
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.event_id, NEW.attempt, NEW.node, NEW.started_at, NEW.ended_at,
      NEW.outcome, NEW.error)
     IS NOT
     (OLD.event_id, OLD.attempt, OLD.node, OLD.started_at, OLD.ended_at,
      OLD.outcome, OLD.error)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE event_attempts SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER schedule_firings_change_seq_insert AFTER INSERT ON schedule_firings
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE schedule_firings SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;

CREATE TRIGGER schedule_firings_change_seq_update AFTER UPDATE ON schedule_firings
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.schedule, NEW.slot, NEW.fired_at, NEW.node, NEW.term, NEW.event_id)
     IS NOT
     (OLD.schedule, OLD.slot, OLD.fired_at, OLD.node, OLD.term, OLD.event_id)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE schedule_firings SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;
