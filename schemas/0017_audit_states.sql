-- Ferry store, migration 17: what an audited change touched, before and
-- after it (JSON with its secrets as '***'; '' when it named nothing
-- stored, as in records written before this migration).

ALTER TABLE audit ADD COLUMN before TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN after TEXT NOT NULL DEFAULT '';

-- The update trigger compares every column, the new ones too.
DROP TRIGGER audit_change_seq_update;
CREATE TRIGGER audit_change_seq_update AFTER UPDATE ON audit
WHEN NEW.change_seq IS OLD.change_seq
 AND (NEW.id, NEW.at, NEW.admin, NEW.role, NEW.client_addr, NEW.request, NEW.body,
      NEW.status, NEW.outcome, NEW.node, NEW.before, NEW.after)
     IS NOT
     (OLD.id, OLD.at, OLD.admin, OLD.role, OLD.client_addr, OLD.request, OLD.body,
      OLD.status, OLD.outcome, OLD.node, OLD.before, OLD.after)
BEGIN
    UPDATE change_counter SET seq = seq + 1 WHERE id = 1;
    UPDATE audit SET change_seq = (SELECT seq FROM change_counter WHERE id = 1)
     WHERE rowid = NEW.rowid;
END;
