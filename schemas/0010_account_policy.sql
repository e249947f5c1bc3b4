-- Ferry store, migration 10: an account's expiry and the client networks it
-- may log in from.

ALTER TABLE accounts ADD COLUMN expires_at INTEGER;                        -- unix ms, NULL = never
ALTER TABLE accounts ADD COLUMN allowed_networks TEXT NOT NULL DEFAULT ''; -- canonical CIDRs, commas; '' = anywhere
