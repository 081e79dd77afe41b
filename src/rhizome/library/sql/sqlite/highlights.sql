-- Named queries of highlights (SQLite). Every query is scoped by user_id.

-- name: insert_highlight
INSERT INTO highlights (id, user_id, document_id, chunk_id, chunk_ids, text, note, color, tags,
                        source, external_id, start_offset, end_offset, match_method,
                        confidence, status, created_at, updated_at)
SELECT :id, :user_id, :document_id, :chunk_id, :chunk_ids, :text, :note, :color, :tags,
       :source, :external_id, :start_offset, :end_offset, :match_method, :confidence, :status,
       COALESCE(:created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
       COALESCE(:updated_at, :created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
WHERE EXISTS (SELECT 1 FROM documents WHERE id = :document_id AND user_id = :user_id)
ON CONFLICT DO NOTHING;

-- name: get_highlight
SELECT * FROM highlights WHERE id = :id AND user_id = :user_id;

-- name: list_highlights
SELECT * FROM highlights
WHERE user_id = :user_id AND (:document_id IS NULL OR document_id = :document_id)
  AND (:status IS NULL OR status = :status)
ORDER BY document_id, start_offset, created_at, id
LIMIT :limit OFFSET :offset;

-- name: delete_highlight
DELETE FROM highlights WHERE id = :id AND user_id = :user_id RETURNING *;

-- name: count_highlights
SELECT count(*) AS n FROM highlights WHERE user_id = :user_id AND document_id = :document_id;

-- name: anchor_highlight
UPDATE highlights
SET chunk_id = :chunk_id, chunk_ids = :chunk_ids, status = :status,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND user_id = :user_id
  AND (chunk_ids IS NOT :chunk_ids OR status IS NOT :status OR chunk_id IS NOT :chunk_id);
