-- The in-memory embedding index of a long-running worker (rhizome.library.embedding_index):
-- per-document version stamps (migration 0005's triggers keep them), and the chunks of
-- the documents whose stamp moved.

-- name: index_versions
SELECT document_id, version FROM library_index_versions WHERE user_id = %(user_id)s;

-- In pages (keyset on (document_id, chunk_index), LIMIT), so a huge document is loaded
-- with a safe point between pages. after_document NULL: from the start.

-- name: index_chunks_page
SELECT c.id, c.document_id, c.chunk_index, c.text, c.embedding, d.title AS document_title
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.user_id = %(user_id)s AND c.embedding IS NOT NULL AND c.embedding_model = %(model)s
  AND c.document_id = ANY(%(documents)s::uuid[])
  AND (c.document_id, c.chunk_index)
      > (coalesce(%(after_document)s::uuid, '00000000-0000-0000-0000-000000000000'::uuid),
         %(after_index)s::int)
ORDER BY c.document_id, c.chunk_index
LIMIT %(limit)s;

-- name: index_all_chunks_page
SELECT c.id, c.document_id, c.chunk_index, c.text, c.embedding, d.title AS document_title
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.user_id = %(user_id)s AND c.embedding IS NOT NULL AND c.embedding_model = %(model)s
  AND (c.document_id, c.chunk_index)
      > (coalesce(%(after_document)s::uuid, '00000000-0000-0000-0000-000000000000'::uuid),
         %(after_index)s::int)
ORDER BY c.document_id, c.chunk_index
LIMIT %(limit)s;

-- name: index_other_models
SELECT count(*) AS n FROM (
    SELECT DISTINCT document_id FROM chunks
    WHERE user_id = %(user_id)s AND embedding IS NOT NULL
      AND (embedding_model IS NULL OR embedding_model <> %(model)s)
      AND document_id <> %(document_id)s::uuid
) o
WHERE NOT EXISTS (
    SELECT 1 FROM chunks c WHERE c.document_id = o.document_id AND c.embedding_model = %(model)s
);

-- name: document_embedding_model
SELECT embedding_model AS model, count(*) AS n FROM chunks
WHERE document_id = %(document_id)s::uuid AND user_id = %(user_id)s AND embedding IS NOT NULL
GROUP BY embedding_model ORDER BY n DESC LIMIT 1;
