-- Ferry store, migration 13: an account's quota, in bytes and in files.

ALTER TABLE accounts ADD COLUMN quota_bytes INTEGER;   -- NULL = none
ALTER TABLE accounts ADD COLUMN quota_files INTEGER;   -- NULL = none
