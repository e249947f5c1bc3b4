-- Ferry store, migration 9: what an account may do in each folder of its
-- home. No row for an account: it may do everything. The rule of the
-- deepest folder containing a path decides for it.

CREATE TABLE folder_permissions (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    path       TEXT NOT NULL,                -- absolute inside the home, '/' = the home
    allow      TEXT NOT NULL,                -- comma-separated permission names, may be empty
    PRIMARY KEY (account_id, path)
) STRICT;
