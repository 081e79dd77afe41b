-- Named queries of highlights (PostgreSQL). Every query is scoped by user_id.

-- name: insert_highlight
INSERT INTO highlights (id, user_id, document_id, chunk_id, chunk_ids, text, note, color, tags,
                        source, external_id, start_offset, end_offset, match_method,
                        confidence, status, created_at, updated_at)
SELECT %(id)s, %(user_id)s, %(document_id)s, %(chunk_id)s, %(chunk_ids)s::jsonb, %(text)s,
       %(note)s, %(color)s, %(tags)s::jsonb, %(source)s, %(external_id)s, %(start_offset)s,
       %(end_offset)s, %(match_method)s, %(confidence)s, %(status)s,
       COALESCE(%(created_at)s::timestamptz, now()),
       COALESCE(%(updated_at)s::timestamptz, %(created_at)s::timestamptz, now())
WHERE EXISTS (SELECT 1 FROM documents WHERE id = %(document_id)s AND user_id = %(user_id)s)
ON CONFLICT DO NOTHING;

-- name: get_highlight
SELECT * FROM highlights WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: list_highlights
SELECT * FROM highlights
WHERE user_id = %(user_id)s
  AND (%(document_id)s::uuid IS NULL OR document_id = %(document_id)s::uuid)
  AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY document_id, start_offset, created_at, id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: delete_highlight
DELETE FROM highlights WHERE id = %(id)s AND user_id = %(user_id)s RETURNING *;

-- name: count_highlights
SELECT count(*) AS n FROM highlights
WHERE user_id = %(user_id)s AND document_id = %(document_id)s;

-- name: anchor_highlight
UPDATE highlights
SET chunk_id = %(chunk_id)s, chunk_ids = %(chunk_ids)s::jsonb, status = %(status)s,
    updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s
  AND (chunk_ids IS DISTINCT FROM %(chunk_ids)s::jsonb OR status IS DISTINCT FROM %(status)s
       OR chunk_id IS DISTINCT FROM %(chunk_id)s::uuid);
