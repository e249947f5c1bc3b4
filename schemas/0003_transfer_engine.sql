-- Ferry store, migration 3: the transfer engine. Partners, routes, schedules
-- and folder monitors (configuration), the event queue with one row per
-- attempt, the schedule firings that make each slot fire once, and the
-- transfer log's link to partners and events.

ALTER TABLE transfers ADD COLUMN partner TEXT;      -- pushes and pulls
ALTER TABLE transfers ADD COLUMN event_id TEXT;     -- the event whose work it was
CREATE INDEX transfers_by_event ON transfers(event_id);

CREATE TABLE partners (
    name               TEXT PRIMARY KEY,
    host               TEXT NOT NULL,
    port               INTEGER NOT NULL,
    username           TEXT NOT NULL,
    password_sealed    TEXT,                 -- sealed with the node's secret key
    private_key_sealed TEXT,                 -- sealed with the node's secret key
    host_key           TEXT NOT NULL,        -- pinned, "TYPE BASE64"
    remote_dir         TEXT NOT NULL,
    after_pull         TEXT NOT NULL,        -- keep | delete | move:DIR
    rate_limit         INTEGER,              -- bytes per second
    created_at         INTEGER NOT NULL
) STRICT;

CREATE TABLE routes (
    name          TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    pattern       TEXT NOT NULL,             -- glob
    actions       TEXT NOT NULL,             -- JSON array of actions, in order
    max_attempts  INTEGER NOT NULL,
    retry_base_ms INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX routes_by_account ON routes(account);

CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    action        TEXT NOT NULL,             -- JSON
    catch_up      INTEGER NOT NULL,
    max_attempts  INTEGER NOT NULL,
    retry_base_ms INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

-- One row per (schedule, slot): the primary key is what makes a slot fire once.
CREATE TABLE schedule_firings (
    schedule  TEXT NOT NULL REFERENCES schedules(name) ON DELETE CASCADE,
    slot      INTEGER NOT NULL,              -- unix ms of the cron slot
    fired_at  INTEGER NOT NULL,
    node      TEXT NOT NULL,
    term      INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (schedule, slot)
) STRICT;

CREATE TABLE monitors (
    name       TEXT PRIMARY KEY,
    dir        TEXT NOT NULL,                -- absolute, on the server
    pattern    TEXT NOT NULL,
    account    TEXT NOT NULL,
    target_dir TEXT NOT NULL,
    stable_ms  INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE events (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,             -- upload | monitor | pull | schedule | resubmit
    route         TEXT,
    schedule      TEXT,
    slot          INTEGER,
    account       TEXT,
    path          TEXT,
    transfer_id   TEXT,
    partners      TEXT NOT NULL DEFAULT '',  -- comma-separated, for filtering
    status        TEXT NOT NULL,             -- pending | running | done | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    retry_base_ms INTEGER NOT NULL,
    next_at       INTEGER NOT NULL,
    lease_node    TEXT,
    lease_until   INTEGER,
    steps_done    INTEGER NOT NULL DEFAULT 0,
    current_path  TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_error    TEXT,
    resubmit_of   TEXT
) STRICT;
CREATE INDEX events_due ON events(status, next_at);
CREATE INDEX events_by_transfer ON events(transfer_id);
CREATE INDEX events_by_created ON events(created_at);

CREATE TABLE event_attempts (
    event_id   TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    node       TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    outcome    TEXT,                         -- done | retry | failed | lease expired
    error      TEXT,
    PRIMARY KEY (event_id, attempt)
) STRICT;
