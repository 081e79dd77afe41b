-- The in-memory embedding index of a long-running worker (rhizome.library.embedding_index):
-- per-document version stamps (migration 0005's triggers keep them), and the chunks of
-- the documents whose stamp moved.

-- name: index_versions
SELECT document_id, version FROM library_index_versions WHERE user_id = :user_id;

-- In pages (keyset on (document_id, chunk_index), LIMIT), so a huge document is loaded
-- with a safe point between pages. after_document NULL: from the start. A row-value
-- comparison, so each page is a range scan of the (document_id, chunk_index) index, not
-- a scan and sort of every chunk (an OR of the two conditions was, per page).

-- name: index_chunks_page
-- (+: through the (document_id, chunk_index) index, not by scanning the user's chunks)
SELECT c.id, c.document_id, c.chunk_index, c.text, c.embedding, d.title AS document_title
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE +c.user_id = :user_id AND c.embedding IS NOT NULL AND +c.embedding_model = :model
  AND c.document_id IN (SELECT value FROM json_each(:documents))
  AND (c.document_id, c.chunk_index) > (coalesce(:after_document, ''), :after_index)
ORDER BY c.document_id, c.chunk_index
LIMIT :limit;

-- name: index_all_chunks_page
-- (+: through the (document_id, chunk_index) index in order, not the (user_id, model)
-- index and a sort of all the user's chunks for every page)
SELECT c.id, c.document_id, c.chunk_index, c.text, c.embedding, d.title AS document_title
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE +c.user_id = :user_id AND c.embedding IS NOT NULL AND +c.embedding_model = :model
  AND (c.document_id, c.chunk_index) > (coalesce(:after_document, ''), :after_index)
ORDER BY c.document_id, c.chunk_index
LIMIT :limit;

-- name: index_other_models
SELECT count(*) AS n FROM (
    SELECT DISTINCT document_id FROM chunks
    WHERE user_id = :user_id AND embedding IS NOT NULL
      AND (embedding_model IS NULL OR embedding_model <> :model)
      AND document_id <> :document_id
) o
WHERE NOT EXISTS (
    SELECT 1 FROM chunks c WHERE c.document_id = o.document_id AND c.embedding_model = :model
);

-- name: document_embedding_model
SELECT embedding_model AS model, count(*) AS n FROM chunks
WHERE document_id = :document_id AND +user_id = :user_id AND embedding IS NOT NULL
GROUP BY embedding_model ORDER BY n DESC LIMIT 1;
