-- Ferry store, migration 2: API tokens of accounts (HTTPS bearer tokens).
-- Only the SHA-256 of a token is stored; the token itself is shown once when created.

CREATE TABLE account_tokens (
    id          TEXT PRIMARY KEY,            -- public id, part of the token text
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    sha256      TEXT NOT NULL,               -- hex SHA-256 of the whole token
    label       TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,            -- unix milliseconds
    expires_at  INTEGER                      -- NULL = no expiry
) STRICT;

CREATE INDEX account_tokens_by_account ON account_tokens(account_id);
