-- Ferry store, migration 5: cluster-wide settings, replicated like every
-- other table (for instance the SHA-256 of the active/active join token).

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
