-- Named queries of users and API tokens (PostgreSQL).

-- name: insert_user
INSERT INTO users (id, role) VALUES (%(id)s, %(role)s)
ON CONFLICT (id) DO NOTHING
RETURNING *;

-- name: get_user
SELECT * FROM users WHERE id = %(id)s;

-- name: set_role
UPDATE users SET role = %(role)s WHERE id = %(id)s RETURNING *;

-- name: list_users
SELECT u.id, u.role, u.created_at,
       (SELECT count(*) FROM api_tokens t
         WHERE t.user_id = u.id AND t.revoked_at IS NULL) AS active_tokens,
       (SELECT max(t.last_used_at) FROM api_tokens t WHERE t.user_id = u.id) AS last_used_at
FROM users u
ORDER BY u.id;

-- name: count_users
SELECT count(*) AS n FROM users;

-- name: insert_token
INSERT INTO api_tokens (id, user_id, token_hash, session_hash, name)
VALUES (%(id)s, %(user_id)s, %(token_hash)s, %(session_hash)s, %(name)s)
RETURNING *;

-- name: token_by_hash
SELECT t.id, t.user_id, t.token_hash, u.role
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.token_hash = %(hash)s AND t.revoked_at IS NULL;

-- name: token_by_session
SELECT t.id, t.user_id, t.session_hash AS token_hash, u.role
FROM api_tokens t JOIN users u ON u.id = t.user_id
WHERE t.session_hash = %(hash)s AND t.revoked_at IS NULL;

-- name: list_tokens
SELECT id, user_id, name, created_at, last_used_at, revoked_at
FROM api_tokens WHERE user_id = %(user_id)s ORDER BY created_at, id;

-- name: touch_token
UPDATE api_tokens SET last_used_at = now() WHERE id = %(id)s;

-- name: revoke_user_tokens
UPDATE api_tokens SET revoked_at = now()
WHERE user_id = %(user_id)s AND revoked_at IS NULL
  AND (%(token_id)s::text IS NULL OR id = %(token_id)s)
RETURNING id;
