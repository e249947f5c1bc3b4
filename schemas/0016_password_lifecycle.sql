-- Ferry store, migration 16 (15 is another branch's): an account's password
-- history and the flag that its password must be changed.

-- The last argon2 PHC strings of its passwords, the current one first, as
-- a JSON array of strings (at most PASSWORD_HISTORY_LEN); '[]': none kept yet.
ALTER TABLE accounts ADD COLUMN password_history TEXT NOT NULL DEFAULT '[]';
-- 1: an admin set its password, and it must change it before anything else.
ALTER TABLE accounts ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
