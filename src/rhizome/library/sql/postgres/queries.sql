-- Named queries of the library (PostgreSQL). Every query is scoped by user_id.

-- name: insert_document
INSERT INTO documents (id, user_id, title, author, source_type, source_path, source_url,
                       status, storage_folder, metadata)
VALUES (%(id)s, %(user_id)s, %(title)s, %(author)s, %(source_type)s, %(source_path)s,
        %(source_url)s, 'pending', %(storage_folder)s, %(metadata)s)
RETURNING *;

-- name: get_document
SELECT * FROM documents WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: list_documents
SELECT * FROM documents
WHERE user_id = %(user_id)s AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: update_document
UPDATE documents
SET status = COALESCE(%(status)s, status),
    title = COALESCE(%(title)s, title),
    author = COALESCE(%(author)s, author),
    word_count = COALESCE(%(word_count)s, word_count),
    page_count = COALESCE(%(page_count)s, page_count),
    chunk_count = COALESCE(%(chunk_count)s, chunk_count),
    error_message = CASE WHEN %(clear_error)s THEN NULL
                         ELSE COALESCE(%(error_message)s, error_message) END,
    metadata = metadata || COALESCE(%(metadata)s, '{}'::jsonb),
    updated_at = now()
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *;

-- name: delete_document
DELETE FROM documents WHERE id = %(id)s AND user_id = %(user_id)s RETURNING *;

-- name: delete_chunks
DELETE FROM chunks WHERE document_id = %(document_id)s AND user_id = %(user_id)s;

-- name: insert_chunk
INSERT INTO chunks (id, user_id, document_id, chunk_index, text, heading_path, start_offset,
                    end_offset, token_count)
VALUES (%(id)s, %(user_id)s, %(document_id)s, %(chunk_index)s, %(text)s, %(heading_path)s::jsonb,
        %(start_offset)s, %(end_offset)s, %(token_count)s);

-- name: set_embedding
UPDATE chunks SET embedding = %(embedding)s, embedding_model = %(model)s
WHERE id = %(id)s AND user_id = %(user_id)s;

-- name: list_chunks
SELECT * FROM chunks
WHERE document_id = %(document_id)s AND user_id = %(user_id)s
ORDER BY chunk_index;

-- name: library_chunks
SELECT c.id, c.document_id, c.text, c.embedding, c.embedding_model, d.title AS document_title
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.user_id = %(user_id)s AND c.embedding IS NOT NULL
  AND (%(exclude)s::uuid IS NULL OR c.document_id <> %(exclude)s::uuid)
ORDER BY c.document_id, c.chunk_index;

-- name: delete_connections
DELETE FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s OR target_document_id = %(document_id)s)
  AND (NOT %(keep_validated)s OR NOT user_validated);

-- name: insert_connection
INSERT INTO connections (id, user_id, source_chunk_id, target_chunk_id, source_document_id,
                         target_document_id, engine_scores, combined_score, reason)
VALUES (%(id)s, %(user_id)s, %(source_chunk_id)s, %(target_chunk_id)s,
        %(source_document_id)s, %(target_document_id)s, %(engine_scores)s,
        %(combined_score)s, %(reason)s)
ON CONFLICT (source_chunk_id, target_chunk_id) DO NOTHING;

-- name: list_connections
SELECT * FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s OR target_document_id = %(document_id)s)
ORDER BY combined_score DESC, id;

-- name: count_connections
SELECT count(*) AS n FROM connections
WHERE user_id = %(user_id)s
  AND (source_document_id = %(document_id)s OR target_document_id = %(document_id)s);

-- name: validate_connection
UPDATE connections SET user_validated = %(value)s
WHERE id = %(id)s AND user_id = %(user_id)s
RETURNING *;

-- name: stuck_documents
-- Documents still pending/processing with no unfinished job for them.
SELECT d.* FROM documents d
WHERE d.status IN ('pending', 'processing')
  AND (%(user_id)s::text IS NULL OR d.user_id = %(user_id)s)
  AND NOT EXISTS (
      SELECT 1 FROM background_jobs j
      WHERE j.entity_type = 'document' AND j.entity_id = d.id::text
        AND j.status IN ('pending', 'processing', 'paused')
  );

-- name: unfinished_documents
SELECT * FROM documents
WHERE status IN ('pending', 'processing')
  AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s);

-- name: chunk_owned
-- Whether the user owns the chunk (the API's ownership check of job inputs).
SELECT id FROM chunks WHERE id = %(id)s AND user_id = %(user_id)s;
