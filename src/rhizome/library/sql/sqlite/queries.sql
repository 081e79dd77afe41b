-- Named queries of the library (SQLite). Every query is scoped by user_id.

-- name: insert_document
INSERT INTO documents (id, user_id, title, author, source_type, source_path, source_url,
                       status, storage_folder, metadata)
VALUES (:id, :user_id, :title, :author, :source_type, :source_path, :source_url,
        'pending', :storage_folder, :metadata)
RETURNING *;

-- name: get_document
SELECT * FROM documents WHERE id = :id AND user_id = :user_id;

-- name: list_documents
SELECT * FROM documents
WHERE user_id = :user_id AND (:status IS NULL OR status = :status)
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: update_document
UPDATE documents
SET status = COALESCE(:status, status),
    title = COALESCE(:title, title),
    author = COALESCE(:author, author),
    word_count = COALESCE(:word_count, word_count),
    page_count = COALESCE(:page_count, page_count),
    chunk_count = COALESCE(:chunk_count, chunk_count),
    error_message = CASE WHEN :clear_error THEN NULL ELSE COALESCE(:error_message, error_message) END,
    metadata = json_patch(metadata, COALESCE(:metadata, '{}')),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND user_id = :user_id
RETURNING *;

-- name: delete_document
DELETE FROM documents WHERE id = :id AND user_id = :user_id RETURNING *;

-- name: delete_chunks
DELETE FROM chunks WHERE document_id = :document_id AND user_id = :user_id;

-- name: insert_chunk
INSERT INTO chunks (id, user_id, document_id, chunk_index, text, heading_path, start_offset,
                    end_offset, token_count)
VALUES (:id, :user_id, :document_id, :chunk_index, :text, :heading_path, :start_offset,
        :end_offset, :token_count);

-- name: set_embedding
UPDATE chunks SET embedding = :embedding, embedding_model = :model
WHERE id = :id AND user_id = :user_id;

-- name: list_chunks
SELECT * FROM chunks
WHERE document_id = :document_id AND user_id = :user_id
ORDER BY chunk_index;

-- name: library_chunks
SELECT c.id, c.document_id, c.text, c.embedding, c.embedding_model, d.title AS document_title
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.user_id = :user_id AND c.embedding IS NOT NULL
  AND (:exclude IS NULL OR c.document_id <> :exclude)
ORDER BY c.document_id, c.chunk_index;

-- name: delete_connections
DELETE FROM connections
WHERE user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id)
  AND (NOT :keep_validated OR NOT user_validated);

-- name: insert_connection
INSERT INTO connections (id, user_id, source_chunk_id, target_chunk_id, source_document_id,
                         target_document_id, engine_scores, combined_score, reason)
VALUES (:id, :user_id, :source_chunk_id, :target_chunk_id, :source_document_id,
        :target_document_id, :engine_scores, :combined_score, :reason)
ON CONFLICT (source_chunk_id, target_chunk_id) DO NOTHING;

-- name: list_connections
SELECT * FROM connections
WHERE user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id)
ORDER BY combined_score DESC, id;

-- name: count_connections
SELECT count(*) AS n FROM connections
WHERE user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id);

-- name: validate_connection
UPDATE connections SET user_validated = :value
WHERE id = :id AND user_id = :user_id
RETURNING *;

-- name: stuck_documents
SELECT d.* FROM documents d
WHERE d.status IN ('pending', 'processing')
  AND (:user_id IS NULL OR d.user_id = :user_id)
  AND NOT EXISTS (
      SELECT 1 FROM background_jobs j
      WHERE j.entity_type = 'document' AND j.entity_id = d.id
        AND j.status IN ('pending', 'processing', 'paused')
  );

-- name: unfinished_documents
SELECT * FROM documents
WHERE status IN ('pending', 'processing')
  AND (:user_id IS NULL OR user_id = :user_id);

-- name: chunk_owned
-- Whether the user owns the chunk (the API's ownership check of job inputs).
SELECT id FROM chunks WHERE id = :id AND user_id = :user_id;
