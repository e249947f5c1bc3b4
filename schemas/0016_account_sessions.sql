-- Ferry store, migration 16: the most sessions an account may have open at
-- once on each server.

ALTER TABLE accounts ADD COLUMN max_sessions INTEGER;    -- NULL = no cap
