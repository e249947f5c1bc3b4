-- Ferry store, migration 7: idempotency keys. An admin change sent with a
-- key is applied once; the same key sent again (a retry after an unknown
-- outcome) gets the first answer back instead of a second change or a
-- conflict. Keys are kept for a day.

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,               -- the command's name
    result      TEXT NOT NULL,               -- JSON: {"rows": N} or {"error": KIND, "message": M}
    created_at  INTEGER NOT NULL
) STRICT;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys(created_at);
