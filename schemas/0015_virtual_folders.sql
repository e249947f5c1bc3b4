-- Ferry store, migration 15: virtual folders, directories of the
-- repository mounted into several accounts' homes, each mount with the
-- permissions of its account there.

CREATE TABLE virtual_folders (
    name       TEXT PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,         -- relative to the repository
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE folder_mounts (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    path       TEXT NOT NULL,                -- absolute inside the home
    folder     TEXT NOT NULL REFERENCES virtual_folders(name),
    allow      TEXT NOT NULL,                -- comma-separated permission names
    PRIMARY KEY (account_id, path)
) STRICT;

CREATE INDEX folder_mounts_by_folder ON folder_mounts(folder);
