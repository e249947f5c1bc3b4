-- Ferry store, migration 18 (15 to 17 are other branches'): an account's password
-- history, the flag that its password must be changed, and what the
-- disable-after-idle-days rule measures.

-- The last argon2 PHC strings of its passwords, the current one first, as
-- a JSON array of strings (at most PASSWORD_HISTORY_LEN); '[]': none kept yet.
ALTER TABLE accounts ADD COLUMN password_history TEXT NOT NULL DEFAULT '[]';
-- 1: an admin set its password, and it must change it before anything else.
ALTER TABLE accounts ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
-- Its last login (unix ms; recorded at most once an hour), NULL: none since
-- this migration.
ALTER TABLE accounts ADD COLUMN last_login_at INTEGER;
-- An admin enabled it again at this time (unix ms): its idle time counts from
-- then, as from a login.
ALTER TABLE accounts ADD COLUMN active_since INTEGER;
