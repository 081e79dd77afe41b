-- Named queries of export, import and the storage scan (SQLite). Every query is scoped by
-- user_id; an import never touches another user's rows (the upserts check the owner).
-- "+user_id" (not indexable) where a document is named: SQLite would otherwise pick the
-- user_id index and scan every chunk of the user, for every document of an import.

-- name: document_owner
SELECT user_id FROM documents WHERE id = :id;

-- name: chunk_owners
SELECT id, user_id, document_id FROM chunks
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: chunk_counts
SELECT document_id, count(*) AS n FROM chunks WHERE user_id = :user_id GROUP BY document_id;

-- name: count_chunks
SELECT count(*) AS n, max(chunk_index) AS last_index FROM chunks
WHERE +user_id = :user_id AND document_id = :document_id;

-- name: sample_chunks
SELECT id, chunk_index, text, start_offset, end_offset FROM chunks
WHERE +user_id = :user_id AND document_id = :document_id
ORDER BY chunk_index LIMIT :limit;

-- name: import_document
INSERT INTO documents (id, user_id, title, author, source_type, source_path, source_url, status,
                       word_count, page_count, chunk_count, storage_folder, metadata,
                       created_at, updated_at)
VALUES (:id, :user_id, :title, :author, :source_type, :source_path, :source_url, 'processing',
        :word_count, :page_count, :chunk_count, :storage_folder, :metadata,
        COALESCE(:created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- name: finish_import_document
UPDATE documents
SET status = 'ready', chunk_count = :chunk_count, error_message = NULL,
    word_count = COALESCE(word_count, :word_count), page_count = COALESCE(page_count, :page_count),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND user_id = :user_id
  AND (status IS NOT 'ready' OR chunk_count IS NOT :chunk_count OR error_message IS NOT NULL
       OR (word_count IS NULL AND :word_count IS NOT NULL)
       OR (page_count IS NULL AND :page_count IS NOT NULL));

-- name: park_chunk_indexes
UPDATE chunks SET chunk_index = -1 - chunk_index
WHERE +user_id = :user_id AND document_id = :document_id;

-- name: delete_chunks_except
DELETE FROM chunks
WHERE +user_id = :user_id AND document_id = :document_id
  AND id NOT IN (SELECT value FROM json_each(:keep));

-- name: upsert_chunk
INSERT INTO chunks (id, user_id, document_id, chunk_index, text, heading_path, start_offset,
                    end_offset, token_count, themes, importance, summary, concepts, polarity,
                    domain)
VALUES (:id, :user_id, :document_id, :chunk_index, :text, :heading_path, :start_offset,
        :end_offset, :token_count, :themes, :importance, :summary, :concepts, :polarity,
        :domain)
ON CONFLICT (id) DO UPDATE
SET chunk_index = excluded.chunk_index, text = excluded.text,
    heading_path = excluded.heading_path, start_offset = excluded.start_offset,
    end_offset = excluded.end_offset, token_count = excluded.token_count,
    themes = excluded.themes, importance = excluded.importance, summary = excluded.summary,
    concepts = excluded.concepts, polarity = excluded.polarity, domain = excluded.domain,
    embedding = CASE WHEN chunks.text = excluded.text THEN chunks.embedding END
WHERE chunks.user_id = excluded.user_id AND chunks.document_id = excluded.document_id;

-- name: merge_chunk_enrichment
UPDATE chunks
SET themes = COALESCE(:themes, themes), importance = COALESCE(:importance, importance),
    summary = COALESCE(:summary, summary), concepts = COALESCE(:concepts, concepts),
    polarity = COALESCE(:polarity, polarity), domain = COALESCE(:domain, domain)
WHERE +user_id = :user_id AND document_id = :document_id AND chunk_index = :chunk_index
  AND ((:themes IS NOT NULL AND themes IS NOT :themes)
       OR (:importance IS NOT NULL AND importance IS NOT :importance)
       OR (:summary IS NOT NULL AND summary IS NOT :summary)
       OR (:concepts IS NOT NULL AND concepts IS NOT :concepts)
       OR (:polarity IS NOT NULL AND polarity IS NOT :polarity)
       OR (:domain IS NOT NULL AND domain IS NOT :domain));

-- name: import_connection
INSERT INTO connections (id, user_id, source_chunk_id, target_chunk_id, source_document_id,
                         target_document_id, engine_scores, combined_score, reason,
                         user_validated, created_at)
SELECT :id, :user_id, :source_chunk_id, :target_chunk_id, :source_document_id,
       :target_document_id, :engine_scores, :combined_score, :reason, :user_validated,
       COALESCE(:created_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
WHERE EXISTS (SELECT 1 FROM chunks WHERE id = :source_chunk_id AND user_id = :user_id
                                     AND document_id = :source_document_id)
  AND EXISTS (SELECT 1 FROM chunks WHERE id = :target_chunk_id AND user_id = :user_id
                                     AND document_id = :target_document_id)
ON CONFLICT DO NOTHING;

-- name: export_connections
SELECT * FROM connections
WHERE +user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id)
ORDER BY created_at, id;

-- name: export_highlights
SELECT * FROM highlights
WHERE user_id = :user_id AND document_id = :document_id
ORDER BY start_offset, created_at, id;

-- name: chunk_spans
SELECT id, chunk_index, start_offset, end_offset FROM chunks
WHERE +user_id = :user_id AND document_id = :document_id
ORDER BY chunk_index;

-- name: missing_embeddings
SELECT id, text FROM chunks
WHERE +user_id = :user_id AND document_id = :document_id AND embedding IS NULL
ORDER BY chunk_index;

-- name: count_document_connections
SELECT count(*) AS n FROM connections
WHERE +user_id = :user_id
  AND (source_document_id = :document_id OR target_document_id = :document_id);
