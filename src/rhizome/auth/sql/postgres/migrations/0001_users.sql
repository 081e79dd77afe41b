-- Users and their API tokens (README, Security). ``users.id`` is the user_id of every
-- other table. Tokens are stored as SHA-256 hashes only: the token itself is shown once.

CREATE TABLE users (
    id          text PRIMARY KEY,
    role        text NOT NULL CHECK (role IN ('admin', 'user')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id            text PRIMARY KEY,
    user_id       text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash    text NOT NULL UNIQUE,
    session_hash  text NOT NULL UNIQUE,
    name          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);
