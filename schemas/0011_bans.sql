-- Ferry store, migration 11: client addresses no login is taken from (the
-- defender's bans and the operator's), replicated like the rest.

CREATE TABLE bans (
    address   TEXT PRIMARY KEY,              -- canonical IP address
    until     INTEGER NOT NULL,              -- unix ms: the ban ends
    banned_at INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    by        TEXT NOT NULL                  -- node id, or 'admin'
) STRICT;
