-- Ferry store, migration 20 (retention): retention policies, replicated
-- like the rest of the configuration, and the horizon below which this
-- store deleted history rows.

CREATE TABLE retention_policies (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,      -- transfers, events, attempts, files, partials
    older_than_ms INTEGER NOT NULL,
    account       TEXT,               -- files: the home; partials: only this home
    folder        TEXT,               -- files: absolute inside the home
    action        TEXT,               -- files: delete or archive:DIR
    created_at    INTEGER NOT NULL
) STRICT;

-- Written by Command::PurgeHistory only: per kind (transfers, events,
-- attempts), the newest cutoff a purge of this store used. A history merge
-- takes no row of that kind from below it that nothing here needs, so a
-- peer that still holds the deleted rows does not bring them back. Not
-- synced and not history: each store has its own.
CREATE TABLE retention_horizons (
    kind   TEXT PRIMARY KEY,
    before INTEGER NOT NULL
) STRICT;

-- The purges read the oldest rows first.
CREATE INDEX transfers_by_end ON transfers(ended_at);
CREATE INDEX events_by_update ON events(status, updated_at);
CREATE INDEX events_by_resubmit ON events(resubmit_of);
CREATE INDEX event_attempts_by_end ON event_attempts(ended_at);
