-- Ferry store, migration 4: node-local values that are not shared state —
-- for instance the position in the cluster's replicated log that this
-- node's tables reflect. Written together with the change it describes.

CREATE TABLE node_local (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
