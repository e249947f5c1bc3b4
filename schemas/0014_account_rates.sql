-- Ferry store, migration 14: an account's bandwidth limits, in bytes a second.

ALTER TABLE accounts ADD COLUMN upload_rate INTEGER;     -- NULL = none
ALTER TABLE accounts ADD COLUMN download_rate INTEGER;   -- NULL = none
